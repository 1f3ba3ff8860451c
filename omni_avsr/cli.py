"""The `omni-avsr` console command: transcribe lip-reading clips with an Omni-AVSR model, crop face videos."""

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor
from transformers.utils import logging as transformers_logging

from . import long_form
from .command_line import EXPECTED_ERRORS, add_debug_flag, check_crop_paths, report_error
from .configuration_omni_avsr import TASK_MODALITIES, TASKS
from .media import check_media_file
from .pipeline_omni_avsr import AudioVisualSpeechRecognitionPipeline, media_in_file
from .subtitles import SUBTITLE_FORMATS, write_subtitles
from .transcription_results import TranscriptionResults


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
video's own audio track) or audio files (.wav, .flac, ...), of any length. Face videos (frames larger than
128×128) are cropped to the speaker's mouth first, which needs pip install 'omni-avsr[crop]'; mouth crops
(e.g. auto-avsr's 96×96) are read as they are.

Long files: a file longer than 30 s (one clip of the model) is cut at pauses (voice-activity detection) into
segments of at most 16 s (--chunk-length), which are transcribed in batches of --batch-size; the file is read a
segment at a time, so memory does not grow with its length. --subtitles srt|vtt writes FILE.srt / FILE.vtt with
the segments' times (for any file)."""

CROP_DESCRIPTION = """\
Crop the speaker's mouth out of a face video: OUT is a 96×96, 25 fps mouth video (RGB, H.264) and, when the
input has audio, OUT's .wav beside it (16 kHz mono): the layout of auto-avsr's preprocessing and of LRS2/LRS3
as the recipes read them. The face is found in every frame (the largest one; frames without a face are
interpolated), aligned to a reference face and cropped around the mouth. Needs pip install 'omni-avsr[crop]'.

OUT and its .wav replace files of those names; for a silent input an earlier OUT's .wav is removed, so that
no stale audio is paired with the new video. OUT may be neither the input nor its .wav, nor write over them."""

APP_DESCRIPTION = """\
Serve a web page (Gradio: pip install 'omni-avsr[app]') to try a model: upload or record a video or audio clip,
see the mouth crops the model reads, transcribe it at every task × compression rate in one click with each cell's
cost, and add babble or white noise to the audio. --export-space DIR writes a Hugging Face Space folder that serves
the same page with --model loaded from the Hub."""

TRANSCRIBE_EXAMPLES = """\
examples:
  omni-avsr transcribe clip.mp4 --model ./Omni-AVSR-ST
  omni-avsr transcribe clips/*.mp4 --model ./Omni-AVSR-ST --task avsr --audio-rate 4 --video-rate 2 \\
      --batch-size 8 --output results.jsonl

  omni-avsr transcribe lecture.mp4 --model ./Omni-AVSR-ST --subtitles srt --output results.jsonl

One file prints its transcript; several print one "path<TAB>transcript" line each. A file that cannot be
transcribed is reported on stderr and the others go on; the exit status is then 1. The progress bar counts
seconds of media.

--output RESULTS.jsonl also writes one JSON line per file (path, text, task, rates, options), appended and
flushed as each finishes. Lines already in the file are kept: a rerun into the same file transcribes only the
files that have no line made with the same options, so rerunning an interrupted command finishes it. The
output may not be one of the inputs (nor a video's sibling .wav), and an existing file that is not such a
results file is refused, never overwritten. A long file also gets a line per segment as soon as the segment is
done, so an interrupted long file resumes at its last finished segment; its own line, with its "chunks" (segment
times and texts), follows when it is done. Subtitles are written next to --output (else next to the file)."""


LOADING_REPORT_LOGGERS = ("modeling_utils", "distributed.tensor_parallel")


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
    option("--audio-rate", type=positive_int, metavar="RATE", help="audio compression rate (default: the model's finest)")
    option("--video-rate", type=positive_int, metavar="RATE", help="video compression rate (default: the model's finest)")
    option("--num-beams", type=positive_int, metavar="N", help="beam size (default: the model's generation config)")
    option("--max-new-tokens", type=positive_int, metavar="N", help="longest transcript (default: the generation config)")
    option("--batch-size", type=positive_int, default=1, metavar="N", help="clips decoded together (default: 1)")
    option(
        "--output", metavar="RESULTS.jsonl",
        help="append one JSON line per file to this path; a rerun keeps its lines and skips the files already in it",
    )
    option("--device", help="cpu, cuda, cuda:1, ... (default: the first GPU if any, else cpu)")
    option(
        "--subtitles", action="append", choices=SUBTITLE_FORMATS, metavar="FORMAT",
        help="also write FILE.srt or FILE.vtt with each segment's times (srt or vtt; may be given twice)",
    )
    option(
        "--chunk-length", type=float, metavar="SECONDS",
        help="longest segment a long file is cut into, 1 to 30 (default: 16, the length the model was trained on)",
    )
    crop = commands.add_parser("crop", help="crop the mouth out of a face video", description=CROP_DESCRIPTION)
    crop.add_argument("input", metavar="IN.mp4", help="face video")
    crop.add_argument("output", metavar="OUT.mp4", help="mouth video to write (its .wav is written beside it)")
    app = commands.add_parser("app", help="serve a web page to try a model", description=APP_DESCRIPTION)
    option = app.add_argument
    option("--model", required=True, metavar="DIR_OR_ID", help="model folder or Hugging Face Hub id")
    option("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine only)")
    option("--port", type=positive_int, default=7860, help="port to serve on (default: 7860)")
    option("--examples", metavar="DIR", help="folder of example clips (default: the model's evaluation corpus)")
    option("--noise", metavar="FILE", help="babble noise for the noise slider (default: the evaluation's)")
    option("--device", help="cpu, cuda, cuda:1, ... (default: the first GPU if any, else cpu)")
    option("--max-upload-mb", type=positive_int, default=100, metavar="MB", help="largest upload (default: 100)")
    option("--export-space", metavar="DIR", help="write a Hugging Face Space folder serving --model (a Hub id) instead")
    for command in (transcribe, crop, app):
        add_debug_flag(command)
    return parser


def positive_int(value: str) -> int:
    """argparse type: a whole number ≥ 1 (beams, tokens, batch sizes and rates cannot be 0 or negative)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r} (expected a whole number ≥ 1)") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 1 (expected a whole number ≥ 1)")
    return number


def transcribe(args: argparse.Namespace) -> int:
    """Transcribe every file; returns the number of files that failed (each reported on stderr)."""
    for path in args.files:
        check_media_file(path)
    results = TranscriptionResults(args.output, args.files) if args.output else None
    subtitle_paths = _subtitle_paths(args.files, args.subtitles or [], args.output)
    if args.chunk_length is not None:
        long_form.segment_seconds(args.chunk_length)
    device = _check_device(args.device)
    args.model = os.path.expanduser(args.model)
    model, processor = _load_model_and_processor(args.model)
    transcriber = AudioVisualSpeechRecognitionPipeline(
        model=model, processor=processor, device=device, batch_size=args.batch_size
    )
    options = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens, "task": args.task}
    rates = {"audio": args.audio_rate, "video": args.video_rate}
    options.update({f"{modality}_rate": rate for modality, rate in rates.items()})
    if args.chunk_length is not None:
        options["chunk_length_s"] = args.chunk_length
    # What a results line records as the request, and what decides whether a rerun skips the file.
    requested = {"model": os.path.realpath(args.model) if _is_local_path(args.model) else args.model, **options}
    pending = [path for path in args.files if results is None or not results.is_done(path, requested)]
    if len(pending) < len(args.files):
        print(
            f"omni-avsr: {len(args.files) - len(pending)} of {len(args.files)} files already have results with these "
            f"options in {args.output}; transcribing the other {len(pending)}.",
            file=sys.stderr,
        )
    call_options = {name: value for name, value in options.items() if value is not None}
    # Checked once, before any file: a bad option (a task or rate the model lacks) is not a bad file.
    if args.task is not None:
        model.config.check_task(args.task)
    for modality, rate in rates.items():
        if rate is not None:
            model.config.check_rate(modality, rate)
    seconds = {path: _announced_seconds(path) for path in pending}
    # Long files, and every file when subtitles are asked for, go one at a time through the long-form path.
    segmented = {path for path in pending if subtitle_paths or long_form.is_long(seconds[path])}
    progress = _MediaProgress(sum(seconds.values()))
    failed = 0
    try:
        for path, result, error in _transcribe_files(
            transcriber, pending, segmented, call_options, args.batch_size, results, requested, progress
        ):
            progress.file_done(path, seconds[path])
            if error is not None:
                failed += 1
                progress.write(f"omni-avsr: error: {path}: {' '.join(str(error).split())}", file=sys.stderr)
                continue
            for chunk in result.get("chunks", ()):
                if "note" in chunk:
                    progress.write(f"omni-avsr: warning: {path}: {chunk['note']}", file=sys.stderr)
            progress.write(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}", file=sys.stdout)
            for subtitle_format, subtitle_path in subtitle_paths.get(path, {}).items():
                write_subtitles(result["chunks"], subtitle_path, subtitle_format)
            if results is not None:
                used_rates = {
                    f"{modality}_rate": model.config.check_rate(modality, rate)
                    if modality in TASK_MODALITIES[result["task"]]
                    else None
                    for modality, rate in rates.items()
                }
                record = {"path": path, "text": result["text"], "task": result["task"], **used_rates}
                if "chunks" in result:
                    record["chunks"] = result["chunks"]
                results.append({**record, "options": requested})
        progress.close()
    finally:
        if results is not None:
            results.close()
    return failed


class _MediaProgress(tqdm):
    """The command's progress bar, in seconds of media: a long file moves it segment by segment."""

    def __init__(self, total_seconds: float):
        super().__init__(
            total=round(total_seconds, 1), desc="Transcribing", unit="s", disable=None,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of media [{elapsed}<{remaining}]",
        )
        self.seconds_done: dict[str, float] = {}

    def segment_done(self, path: str, end: float) -> None:
        start = self.seconds_done.get(path, 0.0)
        self.seconds_done[path] = max(start, end)
        self.update(max(0.0, end - start))

    def file_done(self, path: str, seconds: float) -> None:
        self.update(max(0.0, seconds - self.seconds_done.pop(path, 0.0)))


def _transcribe_files(transcriber, paths, segmented, options, batch_size, results, requested, progress):
    """Yield `(path, result, error)` per file, in order: runs of clips in batches, long files one at a time, each
    finished segment saved to the results file at once (so that an interrupted long file resumes there)."""

    def save_segment(source, chunk):
        progress.segment_done(source, chunk["timestamp"][1])
        if results is not None:
            results.append({"path": source, "chunk": chunk, "options": requested})

    clips = []
    for path in paths:
        if path not in segmented:
            clips.append(path)
            continue
        yield from _transcribe_each(transcriber, clips, options, batch_size)
        clips = []
        done = results.done_chunks(path, requested) if results is not None else {}
        try:
            result = transcriber(
                path, return_timestamps=True, segment_callback=save_segment, done_chunks={path: done}, **options
            )
        except EXPECTED_ERRORS as error:
            yield path, None, error
        else:
            yield path, result, None
    yield from _transcribe_each(transcriber, clips, options, batch_size)


def _announced_seconds(path: str) -> float:
    """A file's duration as its container announces it (0 where it cannot be read: its error comes in its turn)."""
    try:
        return long_form.file_seconds(path, media_in_file(path)) or 0.0
    except EXPECTED_ERRORS:
        return 0.0


def _subtitle_paths(files: list[str], formats: list[str], output: str | None) -> dict[str, dict[str, Path]]:
    """Where each file's subtitles go: next to --output, else next to the file; refused when two files would write
    the same subtitle file, or a subtitle file would be one of the inputs."""
    paths, owners = {}, {}
    inputs = {os.path.realpath(path) for path in files}
    for path in files:
        folder = Path(output).parent if output else Path(path).parent
        for subtitle_format in dict.fromkeys(formats):
            target = folder / f"{Path(path).stem}.{subtitle_format}"
            key = os.path.realpath(target)
            if key in inputs or key in owners:
                clash = "is one of the inputs" if key in inputs else f"would also hold the subtitles of {owners[key]}"
                raise ValueError(
                    f"--subtitles: {target} {clash}; expected one subtitle file per input (rename the inputs or write "
                    "them with separate commands). Nothing was written."
                )
            owners[key] = path
            paths.setdefault(path, {})[subtitle_format] = target
    return paths


def _transcribe_each(transcriber, paths: list[str], options: dict, batch_size: int):
    """Yield `(path, result, None)` per file, or `(path, None, error)` for a file that cannot be transcribed.

    The pipeline streams batches; an expected error stops its stream inside the batch that holds the bad file, so that
    batch is redone one file at a time and the stream restarts after it: a bad file costs only its own result.
    """
    position = 0
    while position < len(paths):
        try:
            for result in transcriber((path for path in paths[position:]), **options):
                yield paths[position], result, None
                position += 1
        except EXPECTED_ERRORS:
            for path in paths[position : position + batch_size]:
                try:
                    result = transcriber(path, **options)
                except EXPECTED_ERRORS as error:
                    yield path, None, error
                else:
                    yield path, result, None
                position += 1


def _check_device(name: str | None) -> str | None:
    """`--device` checked before the model loads: a name torch knows, of a device this machine has."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name; expected cpu, cuda, cuda:N, mps, ...") from None
    if device.type == "cpu":
        return name
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise ValueError(f"--device {name}: this machine has no {device.type} device; expected cpu or a device it has.")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"--device {name}: this machine has {count} {device.type} device(s), {device.type}:0 to "
            f"{device.type}:{count - 1}."
        )
    return name


def _load_model_and_processor(name: str):
    """The model and processor, with failures that name the folder and what is wrong in it."""
    if _is_local_path(name) and not os.path.isdir(name):
        raise FileNotFoundError(
            f"Model folder not found: {name} (expected a folder with config.json or a Hub id such as "
            "org/Omni-AVSR-ST)."
        )
    # transformers logs a table of weights the folder lacks or has in excess; the pipeline refuses such a folder in
    # one line that names them. At that log level transformers also checks a tensor-parallel plan and lists every
    # layer "not sharded" (7 KB for one file), through a logger of its own.
    report_loggers = [logging.getLogger(f"transformers.{name}") for name in LOADING_REPORT_LOGGERS]
    levels = [report_logger.level for report_logger in report_loggers]
    for report_logger in report_loggers:
        report_logger.setLevel(logging.ERROR)
    try:
        # Weights of another shape are loaded as missing, so that the pipeline's weight check names them.
        model = AutoModelForSpeechSeq2Seq.from_pretrained(name, ignore_mismatched_sizes=True).eval()
    except SafetensorError as error:
        raise OSError(
            f"{name}: the model weights cannot be read ({error}); expected complete .safetensors files (a copy or "
            "download cut short?)."
        ) from error
    finally:
        for report_logger, level in zip(report_loggers, levels):
            report_logger.setLevel(level)
    try:
        processor = AutoProcessor.from_pretrained(name)
    except (*EXPECTED_ERRORS, TypeError) as error:
        missing = [
            file for file in ("processor_config.json", "tokenizer_config.json", "tokenizer.json")
            if os.path.isdir(name) and not os.path.isfile(os.path.join(name, file))
        ]
        absent = f" (the folder has no {', '.join(missing)})" if missing else ""
        raise OSError(
            f"{name}: the processor cannot be loaded{absent}: {error}; expected the processor and tokenizer files "
            "save_pretrained writes."
        ) from error
    return model, processor


def crop(args: argparse.Namespace) -> None:
    check_crop_paths(args.input, args.output)
    from .cropping.mouth_video import crop_video_file  # the optional `crop` extra: imported when asked for

    crops, audio_path = crop_video_file(args.input, args.output)
    written = args.output if audio_path is None else f"{args.output} and {audio_path}"
    found, total = int(crops.detected.sum()), len(crops.frames)
    interpolated = "" if found == total else f"; the other {total - found} interpolated"
    print(f"Wrote {written}: {total} mouth frames, the face found in {found}{interpolated}.")


def app(args: argparse.Namespace) -> None:
    if args.export_space is not None:
        from .app_space import export_space

        export_space(args.export_space, args.model, examples=args.examples, noise=args.noise)
        print(f"Wrote a Hugging Face Space for {args.model} into {args.export_space}.")
        return
    device = _check_device(args.device)
    from .app import serve  # Gradio, the optional `app` extra: imported only by this command

    name = os.path.expanduser(args.model)
    model, processor = _load_model_and_processor(name)
    serve(
        model, processor, name, host=args.host, port=args.port, examples=args.examples, noise=args.noise,
        device=device, max_upload_mb=args.max_upload_mb,
    )


def _is_local_path(name: str) -> bool:
    """Whether `--model` can only mean a local folder (a Hub id is `name` or `org/name`)."""
    return os.path.isabs(name) or name.startswith(".") or os.path.exists(name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Loading bars would break the one-line error contract; the transcription bar is this command's own.
    transformers_logging.disable_progress_bar()
    try:
        if args.command == "crop":
            crop(args)
            return 0
        if args.command == "app":
            app(args)
            return 0
        failed = transcribe(args)
    except EXPECTED_ERRORS as error:
        # Bad input (a file, a task, a rate, a model folder) or a missing extra: one line that names it.
        return report_error("omni-avsr", error, args.debug)
    if failed and len(args.files) > 1:
        where = f"; the others are in {args.output}" if args.output else ""
        return report_error("omni-avsr", ValueError(f"{failed} of {len(args.files)} files failed (see above){where}."))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
