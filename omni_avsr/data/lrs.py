"""LRS2 / LRS3 (and any corpus in their auto-avsr layout) as a `datasets.Dataset` whose media decode lazily.

Layout: `ROOT/labels/<name>.csv` lists one clip per line, `dataset_name,rel_path,input_length,token_ids,text`
without a header; the clip is `ROOT/<dataset_name>/<rel_path>` (an `.mp4`, its audio in the sibling `.wav`) and
`input_length` counts its 25 fps video frames.
"""

import csv
import io
import os
import re
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..media import align_audio_to_frames, load_audio, load_clip
from .frame_cache import FrameCache


MODALITIES = ("audio", "video")
_NUM_LABEL_FIELDS = 5


class LRSTransform:
    """Decodes (and, for training, augments) a batch of rows; installed on the dataset by `load_lrs_dataset`.

    Augmentation draws from a generator seeded by `(seed, epoch, clip id)`, so a clip's augmentation does not
    depend on batch order or DataLoader workers; call `set_epoch` (or `set_augmentation_epoch(dataset, epoch)`)
    before each epoch. Workers copy the transform when their iterator starts, so with `persistent_workers=True`
    the epoch set later does not reach them.

    With a `frame_cache` (see `use_frame_cache`), frames are read from it instead of being decoded again.
    """

    def __init__(
        self,
        modalities: Sequence[str] = MODALITIES,
        augmentation: Callable | None = None,
        seed: int = 0,
        grayscale: bool = True,
    ):
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {tuple(modalities)}.")
        self.modalities = tuple(modalities)
        self.augmentation = augmentation
        self.seed = seed
        self.grayscale = grayscale
        self.frame_cache: FrameCache | None = None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        audios, videos = [], []
        for path, dataset_name, rel_path in zip(batch["path"], batch["dataset_name"], batch["rel_path"]):
            audio, frames = self._load(path)
            if self.augmentation is not None:
                clip_id = zlib.crc32(f"{dataset_name}/{rel_path}".encode())
                rng = np.random.default_rng((self.seed, self.epoch, clip_id))
                audio, frames = self.augmentation(audio, frames, rng)
            audios.append(audio)
            videos.append(frames)
        return {**batch, "audio": audios, "frames": videos}

    def _load(self, path: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.frame_cache is not None and "video" in self.modalities:
            frames = np.array(self.frame_cache.frames(path))  # a writable copy: augmentation and tensors need one
            audio = None
            if "audio" in self.modalities:
                audio = align_audio_to_frames(load_audio(path), len(frames), path)
            return audio, frames
        # No length limit here: `max_clip_frames` bounds the clips a table holds.
        clip = load_clip(
            path, audio="audio" in self.modalities, video="video" in self.modalities, grayscale=self.grayscale,
            max_seconds=None,
        )
        return clip.audio, clip.frames


def load_lrs_dataset(
    root: str | os.PathLike,
    label_csv: str | os.PathLike,
    *,
    modalities: Sequence[str] = MODALITIES,
    min_clip_frames: int | None = None,
    max_clip_frames: int | None = None,
    augmentation: Callable | None = None,
    seed: int = 0,
    grayscale: bool = True,
    lowercase: bool = False,
) -> Dataset:
    """Read a label CSV into a table of clips that decode when rows are accessed.

    Args:
        root: the corpus root (`ROOT` above).
        label_csv: the label file; a bare name not found as given is looked up in `ROOT/labels/`.
        modalities: what to decode, `("audio", "video")` or one of them (ASR-only work skips video decoding).
        min_clip_frames, max_clip_frames: drop clips whose `input_length` is outside these bounds.
        augmentation: called as `augmentation(audio, frames, rng)` after decoding, e.g.
            `omni_avsr.data.augment.AudioVisualAugmentation()` for training; `None` for evaluation.
        seed: seeds the augmentation (see `LRSTransform`).
        grayscale: decode frames as (frames, height, width) grayscale, the video encoder's input.
        lowercase: lower-case every transcript (the recipe's label files are lower-case, LRS2/LRS3's own transcripts
            upper-case: a tokenizer fitted to the one may not represent the other).

    Returns:
        A `datasets.Dataset` with columns `path` (absolute), `dataset_name`, `rel_path`, `num_frames`, `text`.
        Reading a row decodes it and adds `audio` (float32, 16 kHz mono; cut or padded to `num_frames × 640`
        samples when video is decoded too) and `frames` (uint8); a modality not decoded is `None`. `datasets`
        reads even a single column (`dataset["text"]`) through the transform, row by row: read plain columns
        from `dataset.with_format(None)` (or build the sampler with `FrameBudgetBatchSampler.from_dataset`).

    The CSV is parsed with proper quoting, so quoted text may hold commas, quotes and any UTF-8. The official
    files never quote; a line with more than five fields is read as an unquoted text that contains commas (the
    fields from the fifth on are joined back with ","). Lines are checked as they are read: a file that is not UTF-8,
    a quote left open (which would merge the rows after it into one transcript), a wrong field count,
    an `input_length` that is not a positive whole number, a `rel_path` that leaves `ROOT/<dataset_name>` (after
    resolving `..` and symlinks; the dataset folder itself may be a symlink), a missing media file or a transcript
    that is empty or holds control characters (a NUL byte, ...: nothing a speaker says) raise an error naming the CSV
    file and line.
    """
    root = Path(root)
    label_csv = _label_file(root, label_csv)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset root not found: {root}")

    columns = {"path": [], "dataset_name": [], "rel_path": [], "num_frames": [], "text": []}
    dataset_dirs, resolved_folders = {}, {}
    for line_number, fields in _read_label_lines(label_csv):
        where = f"{label_csv}, line {line_number}"
        dataset_name, rel_path, input_length, _token_ids, text = fields
        text = _check_text(text.lower() if lowercase else text, where)
        num_frames = _parse_num_frames(input_length, where)
        if (min_clip_frames is not None and num_frames < min_clip_frames) or (
            max_clip_frames is not None and num_frames > max_clip_frames
        ):
            continue
        if dataset_name not in dataset_dirs:
            dataset_dirs[dataset_name] = _dataset_dir(root, dataset_name, where)
        columns["path"].append(_media_path(dataset_dirs[dataset_name], rel_path, where, resolved_folders))
        columns["dataset_name"].append(dataset_name)
        columns["rel_path"].append(rel_path)
        columns["num_frames"].append(num_frames)
        columns["text"].append(text)

    if not columns["path"]:
        raise ValueError(
            f"{label_csv} lists no clips within min_clip_frames={min_clip_frames}, max_clip_frames={max_clip_frames}."
        )
    dataset = Dataset.from_dict(columns)  # types inferred (string, int64): 10× faster than encoding Features
    transform = LRSTransform(modalities, augmentation=augmentation, seed=seed, grayscale=grayscale)
    dataset.set_transform(transform)
    return dataset


def read_label_texts(
    root: str | os.PathLike, label_csv: str | os.PathLike, lowercase: bool = False
) -> Iterator[tuple[str, str]]:
    """`(where, text)` for each clip of a label file, `where` naming the file and line, the text as
    `load_lrs_dataset` reads it: for checks that need the line a transcript came from."""
    label_csv = _label_file(Path(root), label_csv)
    for line_number, fields in _read_label_lines(label_csv):
        where = f"{label_csv}, line {line_number}"
        yield where, _check_text(fields[-1].lower() if lowercase else fields[-1], where)


def concatenate_lrs_datasets(datasets: list[Dataset]) -> Dataset:
    """Join tables made by `load_lrs_dataset` (e.g. LRS2 + LRS3); the first one's decoding transform serves all."""
    if len(datasets) == 1:
        return datasets[0]
    combined = concatenate_datasets([dataset.with_format(None) for dataset in datasets])
    combined.set_transform(datasets[0].format["format_kwargs"]["transform"])
    return combined


def use_frame_cache(
    dataset: Dataset, cache_dir: str | os.PathLike, *, workers: int = 1, progress: bool = True
) -> FrameCache:
    """Decode the frames of every clip of a dataset made by `load_lrs_dataset` once into a `FrameCache` under
    `cache_dir` (or open the one already there) and read them from it from now on."""
    transform = _lrs_transform(dataset)
    if "video" not in transform.modalities:
        raise ValueError("This dataset decodes no video, so a frame cache has nothing to hold.")
    paths = dataset.with_format(None)["path"]
    transform.frame_cache = FrameCache.open_or_build(
        cache_dir, paths, grayscale=transform.grayscale, workers=workers, progress=progress
    )
    return transform.frame_cache


def set_augmentation_epoch(dataset: Dataset, epoch: int) -> None:
    """Set the epoch that seeds the augmentation of a dataset made by `load_lrs_dataset`."""
    _lrs_transform(dataset).set_epoch(epoch)


def _lrs_transform(dataset: Dataset) -> LRSTransform:
    transform = dataset.format["format_kwargs"].get("transform")
    if not isinstance(transform, LRSTransform):
        raise ValueError("The dataset has no LRSTransform; was it made by load_lrs_dataset?")
    return transform


def _label_file(root: Path, label_csv: str | os.PathLike) -> Path:
    """The label file: as given, or a bare name looked up in `ROOT/labels/`."""
    label_csv = Path(label_csv)
    if not label_csv.is_file() and not label_csv.is_absolute() and (root / "labels" / label_csv).is_file():
        label_csv = root / "labels" / label_csv
    if not label_csv.is_file():
        raise FileNotFoundError(f"Label file not found: {label_csv} (also looked in {root / 'labels'}).")
    return label_csv


def _check_text(text: str, where: str) -> str:
    """Refuse a transcript that cannot be the words of a clip: empty (it would teach the model to write nothing for
    speech) or holding control characters (a NUL byte, a tab: a damaged or binary file)."""
    if not text.strip():
        raise ValueError(f"{where}: the transcript is empty; expected the words spoken in the clip.")
    control = sorted({f"U+{ord(character):04X}" for character in text if unicodedata.category(character) == "Cc"})
    if control:
        raise ValueError(
            f"{where}: the transcript holds control characters ({', '.join(control)}); expected the words spoken in "
            "the clip as plain text."
        )
    return text


def _read_label_lines(label_csv: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield `(line_number, five fields)` per clip; blank lines are skipped.

    A transcript is one line: a quoted field that runs over a line end is an unterminated quote, which would
    otherwise swallow the rows after it into one transcript.
    """
    text = _read_utf8(label_csv)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line_number = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ValueError(
                f"{label_csv}, line {line_number}: not a valid CSV row ({error}); expected one clip per line, a "
                'quoted text closed on its own line (quotes inside it doubled: "").'
            ) from error
        first_line, line_number = line_number, reader.line_num + 1
        if any("\n" in field or "\r" in field for field in fields):
            raise ValueError(
                f"{label_csv}, line {first_line}: a quoted field runs over {reader.line_num - first_line + 1} lines "
                "(an unterminated quote?); expected one clip per line, quotes closed on the line they open."
            )
        if len(fields) <= 1 and not "".join(fields).strip():
            continue
        if len(fields) < _NUM_LABEL_FIELDS:
            raise ValueError(
                f"{label_csv}, line {first_line}: expected {_NUM_LABEL_FIELDS} comma-separated fields "
                f"(dataset_name,rel_path,input_length,token_ids,text), got {len(fields)}."
            )
        text_field = ",".join(fields[_NUM_LABEL_FIELDS - 1 :])
        yield first_line, [*fields[: _NUM_LABEL_FIELDS - 1], text_field]


def _read_utf8(label_csv: Path) -> str:
    """The label file's text (a UTF-8 byte-order mark dropped); other encodings are refused with the line."""
    data = label_csv.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{label_csv}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); label files must be UTF-8 "
            "(re-encode it, e.g. `iconv -f latin1 -t utf-8`)."
        ) from error


def _parse_num_frames(input_length: str, where: str) -> int:
    num_frames = int(input_length) if re.fullmatch(r"\s*\d+\s*", input_length) else 0
    if num_frames <= 0:
        raise ValueError(
            f"{where}: input_length must be a positive whole number of video frames, got {input_length!r}."
        )
    return num_frames


def _dataset_dir(root: Path, dataset_name: str, where: str) -> str:
    if dataset_name in ("", ".", "..") or "/" in dataset_name or "\\" in dataset_name:
        raise ValueError(f"{where}: dataset_name must be a folder name inside {root}, got {dataset_name!r}.")
    # Resolved once: the dataset folder may be a symlink (e.g. to another disk); the user placed it there.
    return os.path.realpath(root / dataset_name)


def _media_path(dataset_dir: str, rel_path: str, where: str, resolved_folders: dict[str, str]) -> str:
    """The clip's real path, refused unless it lies inside `dataset_dir` once `..` and symlinks are resolved."""
    if not rel_path or os.path.isabs(rel_path):
        raise ValueError(f"{where}: rel_path must be a relative path inside {dataset_dir}, got {rel_path!r}.")
    folder, name = os.path.split(os.path.join(dataset_dir, rel_path))
    # Folders are shared by many clips (one per speaker): resolving each once keeps large label files fast.
    if folder not in resolved_folders:
        resolved_folders[folder] = os.path.realpath(folder)
    path = os.path.normpath(os.path.join(resolved_folders[folder], name))
    if os.path.islink(path):
        path = os.path.realpath(path)
    if os.path.commonpath([path, dataset_dir]) != dataset_dir:
        raise ValueError(
            f"{where}: rel_path {rel_path!r} resolves to {path}, outside the dataset folder {dataset_dir}; refused."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: media file not found: {path}")
    return path
