"""Mini-LRS: a synthetic audio-visual speech corpus in the LRS2/LRS3 (auto-avsr) layout, generated offline.

LRS2/LRS3 cannot be downloaded everywhere, and a recogniser that never learned anything cannot be judged. In
Mini-LRS both the audio (espeak-ng voices) and the lip video (a mouth drawn from the phoneme timing of the same
utterance) carry the words, so ASR, VSR and AVSR can all be trained and evaluated for real in minutes:

    python -m omni_avsr.data.mini_lrs --output-dir data/mini_lrs --num-train 1000 --num-test 200 --seed 0

writes, under ROOT = `--output-dir`:

    mini_lrs/mini_lrs_video/{train,test}/<speaker>/<clip>.mp4   25 fps, 96×96 mouth region, H.264
    mini_lrs/mini_lrs_video/{train,test}/<speaker>/<clip>.wav   16 kHz mono, exactly 640 samples per frame
    labels/mini_lrs_{train,test}.csv      no header: dataset_name,rel_path,input_length,token_ids,text
    noise/babble.wav                      babble of voices the corpus does not contain, 16 kHz
    lip_reading_floor.json                the best WER any lip reader can expect on the test split
    mini_lrs_config.json                  the settings, checked when an interrupted run is resumed

A rerun with the same settings reuses the clips already written and makes the rest; the label files only ever
list clips that exist. The same seed gives the same wav bytes and the same frames, with any number of workers.
"""

import argparse
import csv
import ctypes
import dataclasses
import json
import multiprocessing
import multiprocessing.pool
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from ..command_line import EXPECTED_ERRORS, available_cpus, prepare_output_dir, report_error
from .mini_lrs_babble import make_babble
from .mini_lrs_clip import DATASET_NAME, SAMPLE_RATE, ClipSpec, existing_clip_frames, write_clip
from .mini_lrs_espeak import EspeakSynthesizer
from .mini_lrs_floor import lip_reading_floor
from .mini_lrs_grammar import sample_sentences
from .mini_lrs_speakers import make_speaker


GENERATOR_VERSION = 1
SPLITS = ("train", "test")
CONFIG_FILE = "mini_lrs_config.json"
FLOOR_FILE = "lip_reading_floor.json"
BABBLE_FILE = os.path.join("noise", "babble.wav")
_SENTENCE_STREAM, _BABBLE_STREAM = 2, 3  # random streams of a seed besides the per-split clip streams 0 and 1


@dataclasses.dataclass(frozen=True)
class MiniLRSConfig:
    """What a corpus is made of; two runs with equal configs write identical corpora.

    `speakers` are the speaker numbers (`sNN`) used, in order; `None` means s01 to s{num_speakers}. A larger
    pretraining corpus can thus add speakers while leaving out the ones reserved for held-out tests (the demo holds
    out s09-s16: `speakers=(1, ..., 8, 17, ..., 40)`). `hold_out_speakers` > 0 keeps the last that many speakers for
    the test split only (speaker-independent evaluation, as in LRS3); 0 lets both splits share all speakers.
    `free_text_ratio` of each split's sentences are free text instead of GRID sentences. The test sentences depend on
    `seed`, `num_test` and `free_text_ratio` only, so a corpus with more training clips or other speakers keeps the
    same test sentences and never trains on them.
    """

    num_train: int = 1000
    num_test: int = 200
    seed: int = 0
    num_speakers: int = 8
    hold_out_speakers: int = 0
    free_text_ratio: float = 0.0
    babble_seconds: float = 120.0
    babble_talkers: int = 8
    speakers: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.speakers is not None:
            speakers = tuple(int(number) for number in self.speakers)
            if not speakers or min(speakers) < 1 or len(set(speakers)) != len(speakers):
                raise ValueError(f"speakers must be distinct speaker numbers from 1 up, got {list(self.speakers)}.")
            if self.num_speakers != len(speakers):
                raise ValueError(
                    f"num_speakers ({self.num_speakers}) must equal the number of speakers listed ({len(speakers)})."
                )
            object.__setattr__(self, "speakers", speakers)
        if self.num_train < 0 or self.num_test < 1:
            raise ValueError(f"Expected num_train >= 0 and num_test >= 1, got {self.num_train} and {self.num_test}.")
        if self.num_speakers < 1:
            raise ValueError(f"Expected at least one speaker, got num_speakers={self.num_speakers}.")
        if not 0 <= self.hold_out_speakers < self.num_speakers:
            raise ValueError(
                f"hold_out_speakers must be between 0 and num_speakers - 1 = {self.num_speakers - 1} so that "
                f"training keeps a speaker, got {self.hold_out_speakers}."
            )
        if not 0.0 <= self.free_text_ratio <= 1.0:
            raise ValueError(f"free_text_ratio must be between 0 and 1, got {self.free_text_ratio}.")
        if self.babble_seconds <= 0 or self.babble_talkers < 1:
            raise ValueError(
                f"Expected babble_seconds > 0 and babble_talkers >= 1, got {self.babble_seconds} and "
                f"{self.babble_talkers}."
            )


def plan_clips(config: MiniLRSConfig) -> dict[str, list[ClipSpec]]:
    """Every clip of the corpus, per split: sentence, speaker (in turn, so speakers get equal shares) and seed."""
    speakers = [make_speaker(number - 1) for number in speaker_numbers(config)]
    num_train_speakers = config.num_speakers - config.hold_out_speakers
    split_speakers = {
        "train": speakers[:num_train_speakers],
        "test": speakers[num_train_speakers:] if config.hold_out_speakers else speakers,
    }
    rng = np.random.default_rng([config.seed, _SENTENCE_STREAM])
    sentences = dict(zip(SPLITS, sample_sentences(config.num_train, config.num_test, config.free_text_ratio, rng)))
    return {
        split: [
            ClipSpec(
                split=split,
                index=index,
                speaker=split_speakers[split][index % len(split_speakers[split])],
                sentence=sentence,
                seed=(config.seed, split_code, index),
            )
            for index, sentence in enumerate(sentences[split])
        ]
        for split_code, split in enumerate(SPLITS)
    }


def speaker_numbers(config: MiniLRSConfig) -> tuple[int, ...]:
    """The speaker numbers of a corpus, in order (s01 is 1)."""
    return config.speakers if config.speakers is not None else tuple(range(1, config.num_speakers + 1))


def parse_speaker_numbers(text: str) -> tuple[int, ...]:
    """Speaker numbers from a list such as `1-8,17-40` (ranges inclusive)."""
    numbers = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*s?(\d+)\s*(?:-\s*s?(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(f"--speakers: expected numbers and ranges such as 1-8,17-40, got {part.strip()!r}.")
        numbers += range(int(match[1]), int(match[2] or match[1]) + 1)
    return tuple(numbers)


def token_ids(text: str) -> str:
    """The label CSV's token-id column. The official files hold auto-avsr SentencePiece ids, which Omni-AVSR
    ignores (it tokenises `text` with its LLM's tokenizer); Mini-LRS has no such model and writes the UTF-8 byte
    values of the text instead, a deterministic stand-in that any reader can decode back."""
    return " ".join(str(byte) for byte in text.encode("utf-8"))


def write_labels(path: Path, rows: list[tuple[str, str, int, str, str]]) -> None:
    """Write a label CSV (no header, standard CSV quoting so any text round-trips), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as file:
        csv.writer(file, lineterminator="\n").writerows(rows)
    os.replace(partial, path)


def generate_corpus(
    output_dir: str | os.PathLike, config: MiniLRSConfig, workers: int | None = None, progress: bool = True
) -> dict:
    """Write (or finish writing) the corpus of `config` under `output_dir`; returns a summary of the run.

    `workers` processes make the clips (default: one per available CPU core); the result does not depend on how
    many. An interrupted or failed run still writes label files, listing the clips finished so far.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    root = Path(output_dir)
    _claim_output_dir(root, config)
    plan = plan_clips(config)
    frames = {}  # (split, index) → frame count of every finished clip
    pending = []
    for split in SPLITS:
        for spec in plan[split]:
            existing = existing_clip_frames(root, spec)
            if existing is None:
                pending.append(spec)
            else:
                frames[split, spec.index] = existing
    workers = max(1, min(workers or available_cpus(), len(pending)))

    synthesizer = EspeakSynthesizer()
    start = time.perf_counter()
    try:
        if pending:
            # The workers start before the progress bar's thread does: forking a process with threads is unsafe.
            with (
                _worker_pool(workers, synthesizer.library_path) as pool,
                tqdm(total=len(pending), unit="clip", desc="Mini-LRS clips", disable=not progress) as bar,
            ):
                for spec, num_frames in pool.imap_unordered(_write_clip_in_worker, [(root, s) for s in pending]):
                    frames[spec.split, spec.index] = num_frames
                    bar.update()
    finally:
        for split in SPLITS:
            finished = [(spec, spec.sentence.text) for spec in plan[split] if (split, spec.index) in frames]
            rows = [
                (DATASET_NAME, spec.rel_path, frames[split, spec.index], token_ids(text), text)
                for spec, text in finished
            ]
            write_labels(root / "labels" / f"{DATASET_NAME}_{split}.csv", rows)
    clip_seconds = time.perf_counter() - start

    floor = lip_reading_floor(plan["test"], synthesizer)
    (root / FLOOR_FILE).write_text(json.dumps(floor, indent=2) + "\n", encoding="utf-8")
    babble_path = root / BABBLE_FILE
    if not babble_path.is_file():
        rng = np.random.default_rng([config.seed, _BABBLE_STREAM])
        # The babble's talkers come after the corpus's last speaker, so no voice of the corpus is in it.
        first_talker = max(speaker_numbers(config))
        babble = make_babble(synthesizer, config.babble_seconds, config.babble_talkers, first_talker, rng)
        babble_path.parent.mkdir(parents=True, exist_ok=True)
        partial = babble_path.with_name(f".{babble_path.name}.partial")
        soundfile.write(partial, babble, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(partial, babble_path)
    return {
        "clips": len(frames),
        "new_clips": len(pending),
        "seconds": round(clip_seconds, 3),
        "clips_per_s": round(len(pending) / clip_seconds, 2) if pending else None,
        "total_seconds": round(time.perf_counter() - start, 3),
        "workers": workers,
        "lip_reading_floor_wer_percent": floor["wer_percent"],
    }


def _claim_output_dir(root: Path, config: MiniLRSConfig) -> None:
    """Record the settings in a new output folder, or check that an existing corpus was made with the same."""
    settings = {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(config)}
    if config.speakers is None:
        del settings["speakers"]  # corpora made before the option existed resume with the same settings
    else:
        settings["speakers"] = list(config.speakers)
    prepare_output_dir(root, "--output-dir")
    config_path = root / CONFIG_FILE
    if config_path.is_file():
        previous = json.loads(config_path.read_text(encoding="utf-8"))
        if previous != settings:
            differences = ", ".join(
                f"{key}: {previous.get(key)!r} there, {value!r} now"
                for key, value in settings.items()
                if previous.get(key) != value
            )
            raise ValueError(
                f"{root} holds a Mini-LRS corpus made with other settings ({differences}); pass a new "
                "--output-dir, or the same settings to resume it."
            )
        return
    config_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _worker_pool(workers: int, espeak_library: str) -> multiprocessing.pool.Pool:
    """Processes that write clips (`_write_clip_in_worker`), sharing the main process's copy of espeak-ng."""
    # Fork where the platform has it: workers start at once, without importing the package again.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers, initializer=_start_worker, initargs=(espeak_library,))


_worker_synthesizer = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def _start_worker(espeak_library: str) -> None:
    """Set a worker up. It uses the main process's copy of espeak-ng, which outlives it: workers are killed at the
    end, so a copy of their own would never be deleted."""
    global _worker_synthesizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which stops the workers
    _keep_freed_memory()
    _worker_synthesizer = EspeakSynthesizer(library_path=espeak_library)


def _keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of returning it to the system at once.

    A clip allocates and frees some 50 MB of short-lived arrays, interleaved with espeak-ng and x264 that
    allocate and free their own; by default much of it goes back to the system and comes back page by page,
    which costs as much as drawing the clip (a third of the time). Worker processes only; other platforms keep
    their default.
    """
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallopt"):
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest glibc accepts


def _write_clip_in_worker(task: tuple[Path, ClipSpec]) -> tuple[ClipSpec, int]:
    root, spec = task
    return spec, write_clip(root, spec, _worker_synthesizer)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m omni_avsr.data.mini_lrs",
        description="Generate Mini-LRS, a synthetic audio-visual speech corpus in the LRS3 (auto-avsr) layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = MiniLRSConfig()
    parser.add_argument("--output-dir", required=True, help="corpus root (created; an existing one is resumed)")
    parser.add_argument("--num-train", type=int, default=defaults.num_train, help="training clips")
    parser.add_argument("--num-test", type=int, default=defaults.num_test, help="test clips")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of sentences, pauses, motion, noise")
    parser.add_argument(
        "--num-speakers", type=int, default=None, help=f"speakers s01..sN (voice + face; default {defaults.num_speakers})"
    )
    parser.add_argument(
        "--speakers",
        default=None,
        help="the speaker numbers to use instead of s01..sN, e.g. 1-8,17-40 (keeps s09-s16, the demo's held-out "
        "speakers, out of a pretraining corpus)",
    )
    parser.add_argument(
        "--hold-out-speakers",
        type=int,
        default=defaults.hold_out_speakers,
        help="keep the last N speakers for the test split only (0: both splits share all speakers)",
    )
    parser.add_argument(
        "--free-text-ratio",
        type=float,
        default=defaults.free_text_ratio,
        help="fraction of sentences that are free text (3-8 common words) instead of GRID sentences",
    )
    parser.add_argument("--babble-seconds", type=float, default=defaults.babble_seconds, help="babble length, s")
    parser.add_argument("--babble-talkers", type=int, default=defaults.babble_talkers, help="voices in the babble")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU core)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    args = parser.parse_args(argv)

    try:
        speakers = parse_speaker_numbers(args.speakers) if args.speakers is not None else None
        num_speakers = args.num_speakers
        if num_speakers is None:
            num_speakers = len(speakers) if speakers else defaults.num_speakers
        config = MiniLRSConfig(
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
            num_speakers=num_speakers,
            speakers=speakers,
            hold_out_speakers=args.hold_out_speakers,
            free_text_ratio=args.free_text_ratio,
            babble_seconds=args.babble_seconds,
            babble_talkers=args.babble_talkers,
        )
    except ValueError as error:
        parser.error(str(error))
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}.")
    try:
        summary = generate_corpus(args.output_dir, config, workers=args.workers, progress=not args.no_progress)
    except EXPECTED_ERRORS as error:
        parser.exit(report_error(parser.prog, error))
    rate = f", {summary['clips_per_s']} clips/s with {summary['workers']} workers" if summary["new_clips"] else ""
    print(
        f"Mini-LRS in {args.output_dir}: {summary['clips']} clips ({summary['new_clips']} new, "
        f"{summary['seconds']} s{rate}); lip-reading floor on the test split: "
        f"{summary['lip_reading_floor_wer_percent']:.2f}% WER ({FLOOR_FILE})."
    )
    return summary


if __name__ == "__main__":
    main()
