"""The `omni-avsr` console command: transcribe lip-reading clips with an Omni-AVSR model, crop face videos."""

import argparse
import json
import os
import sys

from tqdm.auto import tqdm
from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor
from transformers.utils import logging as transformers_logging

from .configuration_omni_avsr import TASK_MODALITIES, TASKS
from .pipeline_omni_avsr import AudioVisualSpeechRecognitionPipeline


TRANSCRIBE_DESCRIPTION = """\
Transcribe speech in media files with an Omni-AVSR model: one model that recognises speech from audio, from
the speaker's lips, or from both.

Tasks (--task):
  asr   audio only (automatic speech recognition)
  vsr   lip video only (visual speech recognition, lip reading)
  avsr  audio and lip video together (audio-visual; most robust in noise)
  Without --task: avsr for a video with audio, vsr for a silent video, asr for an audio file.

Compression rates (--audio-rate, --video-rate):
  The model shortens each modality before its language model reads it, at a rate chosen now, at inference
  time. Audio rate 4 keeps 12.5 audio tokens per second, rate 16 keeps 3.125 (faster, a little less accurate);
  video rate 2 keeps 12.5 video tokens per second, rate 5 keeps 5. Only the rates the model was trained with
  are accepted (the paper's models: audio 4 or 16, video 2 or 5); the default is each modality's finest.

Input: .mp4 videos (the audio comes from a sibling .wav with the same name, as in LRS2/LRS3, or from the
video's own audio track) or audio files (.wav, .flac, ...) of up to 30 s. Face videos (frames larger than
128×128) are cropped to the speaker's mouth first, which needs pip install 'omni-avsr[crop]'; mouth crops
(e.g. auto-avsr's 96×96) are read as they are."""

CROP_DESCRIPTION = """\
Crop the speaker's mouth out of a face video: OUT is a 96×96, 25 fps mouth video (RGB, H.264) and, when the
input has audio, OUT's .wav beside it (16 kHz mono): the layout of auto-avsr's preprocessing and of LRS2/LRS3
as the recipes read them. The face is found in every frame (the largest one; frames without a face are
interpolated), aligned to a reference face and cropped around the mouth. Needs pip install 'omni-avsr[crop]'."""

TRANSCRIBE_EXAMPLES = """\
examples:
  omni-avsr transcribe clip.mp4 --model ./Omni-AVSR-ST
  omni-avsr transcribe clips/*.mp4 --model ./Omni-AVSR-ST --task avsr --audio-rate 4 --video-rate 2 \\
      --batch-size 8 --output results.jsonl

One file prints its transcript; several print one "path<TAB>transcript" line each. --output also writes one
JSON line per file (path, text, task, rates), as each finishes."""


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes end with a single line on stderr (exit status 2), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="omni-avsr", description="Omni-AVSR: speech recognition from audio, lip video or both."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe media files",
        description=TRANSCRIBE_DESCRIPTION,
        epilog=TRANSCRIBE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="media files to transcribe (.mp4, .wav, ...)")
    transcribe.add_argument("--model", required=True, metavar="DIR_OR_ID", help="model folder or Hugging Face Hub id")
    option = transcribe.add_argument
    option("--task", choices=TASKS, help="asr, vsr or avsr (default: from each file's media)")
    option("--audio-rate", type=int, metavar="RATE", help="audio compression rate (default: the model's finest)")
    option("--video-rate", type=int, metavar="RATE", help="video compression rate (default: the model's finest)")
    option("--num-beams", type=int, metavar="N", help="beam size (default: the model's generation config)")
    option("--max-new-tokens", type=int, metavar="N", help="longest transcript (default: the generation config)")
    option("--batch-size", type=int, default=1, metavar="N", help="clips decoded together (default: 1)")
    option("--output", metavar="RESULTS.jsonl", help="also write one JSON line per file to this path")
    option("--device", help="cpu, cuda, cuda:1, ... (default: the first GPU if any, else cpu)")
    crop = commands.add_parser("crop", help="crop the mouth out of a face video", description=CROP_DESCRIPTION)
    crop.add_argument("input", metavar="IN.mp4", help="face video")
    crop.add_argument("output", metavar="OUT.mp4", help="mouth video to write (its .wav is written beside it)")
    return parser


def transcribe(args: argparse.Namespace) -> None:
    missing = [path for path in args.files if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"Media file not found: {', '.join(missing)}")
    args.model = os.path.expanduser(args.model)
    if _is_local_path(args.model) and not os.path.isdir(args.model):
        raise FileNotFoundError(
            f"Model folder not found: {args.model} (expected a folder with config.json or a Hub id such as "
            "org/Omni-AVSR-ST)."
        )
    model = AutoModelForSpeechSeq2Seq.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    transcriber = AudioVisualSpeechRecognitionPipeline(
        model=model, processor=processor, device=args.device, batch_size=args.batch_size
    )
    options = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens, "task": args.task}
    rates = {"audio": args.audio_rate, "video": args.video_rate}
    options.update({f"{modality}_rate": rate for modality, rate in rates.items()})
    # A generator makes the pipeline stream: every result is printed and saved as soon as its batch is done.
    results = transcriber(
        (path for path in args.files), **{name: value for name, value in options.items() if value is not None}
    )
    output = open(args.output, "w", encoding="utf-8") if args.output else None
    try:
        progress = tqdm(zip(args.files, results), total=len(args.files), desc="Transcribing", unit="file", disable=None)
        for path, result in progress:
            progress.write(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}", file=sys.stdout)
            if output is not None:
                used_rates = {
                    f"{modality}_rate": model.config.check_rate(modality, rate)
                    if modality in TASK_MODALITIES[result["task"]]
                    else None
                    for modality, rate in rates.items()
                }
                record = {"path": path, "text": result["text"], "task": result["task"], **used_rates}
                output.write(json.dumps(record) + "\n")
                output.flush()
    finally:
        if output is not None:
            output.close()


def crop(args: argparse.Namespace) -> None:
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"Media file not found: {args.input}")
    from .cropping.mouth_video import crop_video_file  # the optional `crop` extra: imported when asked for

    crops, audio_path = crop_video_file(args.input, args.output)
    written = args.output if audio_path is None else f"{args.output} and {audio_path}"
    found, total = int(crops.detected.sum()), len(crops.frames)
    interpolated = "" if found == total else f"; the other {total - found} interpolated"
    print(f"Wrote {written}: {total} mouth frames, the face found in {found}{interpolated}.")


def _is_local_path(name: str) -> bool:
    """Whether `--model` can only mean a local folder (a Hub id is `name` or `org/name`)."""
    return os.path.isabs(name) or name.startswith(".") or os.path.exists(name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Loading bars would break the one-line error contract; the transcription bar is this command's own.
    transformers_logging.disable_progress_bar()
    try:
        {"transcribe": transcribe, "crop": crop}[args.command](args)
    except (OSError, ValueError, ImportError) as error:
        # Bad input (a file, a task, a rate, a model folder) or a missing extra: one line that names it.
        print(f"omni-avsr: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
