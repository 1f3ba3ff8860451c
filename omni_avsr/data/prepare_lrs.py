"""Prepare LRS2 / LRS3 as distributed (face tracks + transcripts) in the layout `load_lrs_dataset` reads.

    python -m omni_avsr.data.prepare_lrs --data-dir LRS3 --output-dir data/LRS3 --dataset lrs3 --subset test

reads every `.mp4` under `--data-dir/<folder>` for each of `--folders` (default: the subset's name; for LRS3's
training set `--folders trainval pretrain`), or the files a `--file-list` names (LRS2's `train.txt`, ...: one path
per line relative to `--data-dir`, without `.mp4`, the first word of the line), each with its transcript: the
`.txt` beside it, whose first line is `Text:  THE WORDS` and which may list word timings after a
`WORD START END ASDSCORE` line. It writes, under ROOT = `--output-dir`:

    <dataset>/<dataset>_video_seg16s/<path>.mp4   96×96 mouth crops, 25 fps, H.264 (`omni_avsr.cropping`)
    <dataset>/<dataset>_video_seg16s/<path>.wav   16 kHz mono, 640 samples per video frame
    labels/<dataset>_<subset>_transcript_lengths_seg16s.csv   dataset_name,rel_path,input_length,token_ids,text
    <dataset>_<subset>_seg16s_failures.tsv        file<TAB>reason for each clip left out (no face, unreadable, ...)
    <dataset>_<subset>_seg16s_progress.jsonl      one line per finished clip: what a rerun skips

A clip longer than `--seg-duration` seconds is cut at word boundaries into segments of at most that length
(`<path>_00.mp4`, `<path>_01.mp4`, ...; text: their words), as the reference recipe's `seg16s` label files; shorter
clips stay whole, with the `Text:` line as their text. Texts are lowercased and the braces of `{...}` markers
dropped (the reference keeps the word inside). The token-id column holds the text's UTF-8 byte values, as Mini-LRS
writes it: Omni-AVSR tokenises `text` with its language model's tokenizer and never reads that column.

Folders under `--data-dir` may be symlinks (each real folder is read once). Clips are cropped by parallel worker
processes. One that fails (no transcript, word timings out of order, unreadable, too short, no face) is listed in
the failures file, its reason naming the transcript's line where one is at fault, and the run goes on. A rerun
skips the clips the progress file lists as finished and retries the failed ones; the label file is rewritten at the
end of every run, also an interrupted one.
"""

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import re
import signal
import time
from pathlib import Path

from tqdm import tqdm

from ..command_line import EXPECTED_ERRORS, add_debug_flag, prepare_output_dir, report_error
from ..media import MAX_FACE_FRAME_SIDE, SAMPLES_PER_FRAME, VIDEO_FPS, load_clip
from .mini_lrs import token_ids, write_labels


WORD_TIMINGS_HEADER = "WORD START END"


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """What a preparation run makes.

    Attributes:
        dataset: the dataset name: the label files' first column and the folder under ROOT (`lrs2`, `lrs3`).
        subset: the label file's subset name (`train`, `val`, `test`, ...).
        seg_duration: longest clip in seconds; longer ones are cut into segments at word boundaries.
        min_frames: clips (and segments) with fewer video frames are left out, as too short; 12 is the reference
            preprocessing's own floor (its landmark-smoothing window).
    """

    dataset: str
    subset: str
    seg_duration: int = 16
    min_frames: int = 12

    def __post_init__(self):
        for name in ("dataset", "subset"):
            value = getattr(self, name)
            if not value or not re.fullmatch(r"[\w.-]+", value) or value in (".", ".."):
                raise ValueError(f"--{name} must be a plain name (letters, digits, ., -, _), got {value!r}.")
        if self.seg_duration < 1 or self.min_frames < 1:
            raise ValueError(
                f"--seg-duration and --min-frames must be at least 1, got {self.seg_duration} and {self.min_frames}."
            )

    @property
    def tag(self) -> str:
        return f"seg{self.seg_duration}s"

    @property
    def video_folder(self) -> str:
        """The folder under `ROOT/<dataset>` that holds the mouth videos (the start of every `rel_path`)."""
        return f"{self.dataset}_video_{self.tag}"

    def labels_path(self, root: Path) -> Path:
        return root / "labels" / f"{self.dataset}_{self.subset}_transcript_lengths_{self.tag}.csv"

    def failures_path(self, root: Path) -> Path:
        return root / f"{self.dataset}_{self.subset}_{self.tag}_failures.tsv"

    def progress_path(self, root: Path) -> Path:
        return root / f"{self.dataset}_{self.subset}_{self.tag}_progress.jsonl"


@dataclasses.dataclass(frozen=True)
class Transcript:
    """A clip's `.txt`: the `Text:` line and the (word, start s, end s) timings that follow, if any."""

    text: str
    words: tuple[tuple[str, float, float], ...]


@dataclasses.dataclass(frozen=True)
class Segment:
    """Frames `[start, end)` of a clip and what is said in them."""

    start: int
    end: int
    text: str


class ClipFailure(Exception):
    """A clip that cannot be prepared; the message is the reason the failures file gives."""


def normalise_text(text: str) -> str:
    return " ".join(text.replace("{", "").replace("}", "").split()).lower()


def read_transcript(path: Path) -> Transcript:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ClipFailure(f"no transcript: {path.name} is missing beside the video") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ClipFailure(f"unreadable transcript {path.name}: {error}") from None
    if not lines or not lines[0].startswith("Text:"):
        raise ClipFailure(f"bad transcript: the first line of {path.name} does not start with 'Text:'")
    words = []
    timings = False
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith(WORD_TIMINGS_HEADER):
            timings = True
        elif timings and line.strip():
            fields = line.split()
            try:
                word = (fields[0], float(fields[1]), float(fields[2]))
            except (IndexError, ValueError):
                raise ClipFailure(
                    f"bad transcript: {path.name}, line {number}: expected 'WORD START END ...', got {line!r}"
                ) from None
            _check_word_timing(word, words[-1] if words else None, f"{path.name}, line {number}")
            words.append(word)
    return Transcript(text=normalise_text(lines[0][len("Text:") :]), words=tuple(words))


def _check_word_timing(word: tuple[str, float, float], previous: tuple[str, float, float] | None, where: str) -> None:
    """Refuse word timings out of order (a word that ends before it starts, or starts before the word before it):
    segments cut at them would hold words in the wrong order, labelled with audio and video that do not say them."""
    name, start, end = word
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
        raise ClipFailure(
            f"bad transcript: {where}: word {name!r} runs from {start} s to {end} s; expected 0 ≤ START ≤ END"
        )
    if previous is not None and start < previous[1]:
        raise ClipFailure(
            f"bad transcript: {where}: word {name!r} starts at {start} s, before the word before it ({previous[0]!r} "
            f"at {previous[1]} s); expected word timings in the order the words are spoken"
        )


def plan_segments(transcript: Transcript, num_frames: int, seg_duration: int) -> list[Segment]:
    """The whole clip when it is short enough, else segments of at most `seg_duration` s cut between words.

    A segment starts at its first word's start and ends at its last word's end; words are added while the segment
    stays within `seg_duration` (a single longer word is cut at that length).
    """
    max_frames = round(seg_duration * VIDEO_FPS)
    if num_frames <= max_frames:
        return [Segment(0, num_frames, transcript.text)]
    if not transcript.words:
        raise ClipFailure(
            f"too long to keep whole: {num_frames / VIDEO_FPS:.1f} s (over {seg_duration} s) and the transcript "
            "has no word timings to cut it at"
        )
    groups, current = [], []
    for word in transcript.words:
        if current and word[2] - current[0][1] > seg_duration:
            groups.append(current)
            current = []
        current.append(word)
    groups.append(current)
    segments = []
    for group in groups:
        start = min(math.floor(group[0][1] * VIDEO_FPS), num_frames)
        end = min(math.ceil(group[-1][2] * VIDEO_FPS), num_frames, start + max_frames)
        segments.append(Segment(start, end, normalise_text(" ".join(word[0] for word in group))))
    return segments


def prepare_clip(video_path: Path, rel_path: str, root: Path, config: PrepareConfig, cropper) -> dict:
    """Crop one clip (and its segments) into the output layout; returns its progress record.

    The record lists the label rows written, and as failures the segments left out as too short; a clip that
    fails as a whole raises `ClipFailure`.
    """
    from ..cropping import NoFaceFoundError
    from ..cropping.mouth_video import write_mouth_video

    transcript = read_transcript(video_path.with_suffix(".txt"))
    try:
        clip = load_clip(video_path, grayscale=False, crop_mouth=False, max_frame_side=MAX_FACE_FRAME_SIDE)
    except ValueError as error:
        raise ClipFailure(f"unreadable: {' '.join(str(error).split())}") from None
    if len(clip.frames) < config.min_frames:
        raise ClipFailure(f"too short: {len(clip.frames)} frames, fewer than {config.min_frames}")
    segments = plan_segments(transcript, len(clip.frames), config.seg_duration)
    try:
        crops = cropper(clip.frames, source=str(video_path)).frames
    except NoFaceFoundError as error:
        raise ClipFailure(f"no face: {error}") from None

    stem = os.path.splitext(rel_path)[0]
    rows, failures = [], []
    for index, segment in enumerate(segments):
        name = f"{stem}.mp4" if len(segments) == 1 else f"{stem}_{index:02d}.mp4"
        out_rel_path = f"{config.video_folder}/{name}"
        if segment.end - segment.start < config.min_frames or not segment.text:
            failures.append(
                {
                    "file": f"{video_path} (segment {index:02d}, {segment.start / VIDEO_FPS:.2f}–"
                    f"{segment.end / VIDEO_FPS:.2f} s)",
                    "reason": f"too short: {segment.end - segment.start} frames, fewer than {config.min_frames}"
                    if segment.text
                    else "no words in this segment",
                }
            )
            continue
        audio = clip.audio[segment.start * SAMPLES_PER_FRAME : segment.end * SAMPLES_PER_FRAME]
        write_mouth_video(root / config.dataset / out_rel_path, crops[segment.start : segment.end], audio)
        rows.append([config.dataset, out_rel_path, segment.end - segment.start, token_ids(segment.text), segment.text])
    return {"source": rel_path, "status": "done", "rows": rows, "failures": failures}


def find_clips(data_dir: Path, folders: list[str] | None, file_list: Path | None, subset: str) -> list[str]:
    """The clips' paths relative to `data_dir` (with `.mp4`), sorted."""
    if file_list is not None:
        if not file_list.is_file():
            raise FileNotFoundError(f"--file-list {file_list} not found; expected a file listing one clip per line.")
        lines = file_list.read_text(encoding="utf-8").splitlines()
        names = [line.split()[0] for line in lines if line.strip()]
        return sorted(name if name.endswith(".mp4") else f"{name}.mp4" for name in names)
    clips = []
    for folder in folders or [subset]:
        if not (data_dir / folder).is_dir():
            raise FileNotFoundError(
                f"{data_dir / folder} not found: --folders names folders inside --data-dir (LRS3: test, trainval, "
                "pretrain), or give --file-list."
            )
        clips.extend(path.relative_to(data_dir).as_posix() for path in _video_files(data_dir / folder))
    return sorted(clips)


def _video_files(folder: Path) -> list[Path]:
    """Every `.mp4` under `folder`, in symlinked folders too (a corpus put together from links to other disks;
    `Path.rglob` skips them), each real folder once, so that a link back up the tree is no endless loop."""
    files, seen = [], set()
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        files.extend(Path(directory) / name for name in names if name.endswith(".mp4"))
    return files


def read_progress(path: Path) -> dict[str, dict]:
    """The last record of each clip in a progress file; a line cut short by an interruption is ignored."""
    records = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[record["source"]] = record
    return records


def is_finished(record: dict | None, root: Path, dataset: str) -> bool:
    return (
        record is not None
        and record["status"] == "done"
        and all((root / dataset / row[1]).is_file() for row in record["rows"])
    )


def write_outputs(root: Path, config: PrepareConfig, clips: list[str], records: dict[str, dict]) -> tuple[int, int]:
    """Write the label file (finished clips, in `clips` order) and the failures file; returns their line counts."""
    rows = [row for clip in clips if clip in records for row in records[clip]["rows"]]
    write_labels(config.labels_path(root), rows)
    failures = [failure for clip in clips if clip in records for failure in records[clip]["failures"]]
    partial = config.failures_path(root).with_name(f".{config.failures_path(root).name}.partial")
    with open(partial, "w", encoding="utf-8") as file:
        file.write("file\treason\n")
        file.writelines(f"{failure['file']}\t{failure['reason']}\n" for failure in failures)
    os.replace(partial, config.failures_path(root))
    return len(rows), len(failures)


def prepare(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: PrepareConfig,
    folders: list[str] | None = None,
    file_list: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Prepare (or finish preparing) the clips under `data_dir` into `output_dir`; returns a summary of the run."""
    data_dir, root = Path(data_dir), Path(output_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir} not found; expected the folder of the raw LRS2/LRS3 clips.")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}.")
    clips = find_clips(data_dir, folders, Path(file_list) if file_list else None, config.subset)
    if not clips:
        raise ValueError(f"No .mp4 clips found under {data_dir} (folders {folders or [config.subset]}).")
    prepare_output_dir(root, "--output-dir")
    progress_path = config.progress_path(root)
    records = read_progress(progress_path)
    pending = [clip for clip in clips if not is_finished(records.get(clip), root, config.dataset)]
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(pending) or 1))

    start = time.perf_counter()
    tasks = [(data_dir, clip, root, config) for clip in pending]
    try:
        if pending:
            _load_cropper()  # here, so a missing extra is one error, and forked workers share the loaded model
            # Workers are forked before the progress bar's thread starts: forking a process with threads is unsafe.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            description = f"Cropping {config.dataset} {config.subset}"
            with (
                multiprocessing.get_context(method).Pool(workers, initializer=_start_worker) as pool,
                open(progress_path, "a", encoding="utf-8") as journal,
                tqdm(total=len(pending), unit="clip", desc=description, disable=not progress) as bar,
            ):
                for record in pool.imap_unordered(_prepare_in_worker, tasks):
                    journal.write(json.dumps(record) + "\n")
                    journal.flush()
                    records[record["source"]] = record
                    bar.update()
    finally:
        num_rows, num_failures = write_outputs(root, config, clips, records)
    seconds = time.perf_counter() - start
    return {
        "clips": len(clips),
        "skipped_finished": len(clips) - len(pending),
        "prepared": sum(records[clip]["status"] == "done" for clip in pending),
        "failed": sum(records[clip]["status"] == "failed" for clip in pending),
        "label_rows": num_rows,
        "failures": num_failures,
        "seconds": round(seconds, 2),
        "labels": str(config.labels_path(root)),
        "failures_file": str(config.failures_path(root)),
        "workers": workers,
    }


_cropper = None


def _load_cropper():
    """The process's cropper, its landmark model loaded (forked workers inherit it; spawned ones load their own)."""
    global _cropper
    if _cropper is None:
        from ..cropping import DlibLandmarkDetector, MouthCropper

        _cropper = MouthCropper(detector=DlibLandmarkDetector())  # ImportError here without the `crop` extra
    return _cropper


def _start_worker() -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which stops the workers
    cv2.setNumThreads(1)  # the workers are the parallelism


def _prepare_in_worker(task: tuple[Path, str, Path, PrepareConfig]) -> dict:
    data_dir, rel_path, root, config = task
    video_path = data_dir / rel_path
    try:
        return prepare_clip(video_path, rel_path, root, config, _load_cropper())
    except ClipFailure as failure:
        reason = str(failure)
    except Exception as error:  # one bad clip never stops the run: its reason goes to the failures file
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
    failure = {"file": str(video_path), "reason": reason}
    return {"source": rel_path, "status": "failed", "rows": [], "failures": [failure]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m omni_avsr.data.prepare_lrs",
        description="Crop raw LRS2/LRS3 face tracks to mouth videos + 16 kHz wavs and write their label file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = PrepareConfig(dataset="lrs3", subset="test")
    parser.add_argument("--data-dir", required=True, help="the raw corpus (LRS3: holds test/, trainval/, pretrain/)")
    parser.add_argument("--output-dir", required=True, help="ROOT of the prepared corpus (resumed if it exists)")
    parser.add_argument("--dataset", required=True, help="dataset name: lrs2, lrs3, ...")
    parser.add_argument("--subset", required=True, help="subset name of the label file: train, val, test, ...")
    parser.add_argument("--folders", nargs="+", help="folders inside --data-dir to read (default: the subset)")
    parser.add_argument("--file-list", help="file listing the clips instead (paths relative to --data-dir)")
    parser.add_argument("--seg-duration", type=int, default=defaults.seg_duration, help="longest segment, s")
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames, help="shortest clip kept, frames")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    try:
        config = PrepareConfig(args.dataset, args.subset, args.seg_duration, args.min_frames)
        summary = prepare(
            args.data_dir, args.output_dir, config, args.folders, args.file_list, args.workers, not args.no_progress
        )
    except EXPECTED_ERRORS as error:
        parser.exit(report_error(parser.prog, error, args.debug))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
