"""Lip frames decoded once per corpus and kept on disk, memory-mapped, for training runs that read them many times.

Decoding a clip (H.264 to RGB to grayscale, and mouth cropping for face videos) costs about a sixth of a small lip
reader's training step, and every epoch of every run pays it again. A `FrameCache` decodes each clip of a table
once into one flat uint8 file next to an index; reading a clip is then a slice of a memory map, shared by DataLoader
workers and by runs through the page cache. The cache's name is a hash of the media files' paths, sizes and
modification times, so a corpus that changes gets a new cache instead of stale frames; the folder of caches can be
deleted at any time. Hand-written rather than a `datasets` Arrow cache: Arrow's fingerprint follows the table, not
the media files the table points at, and a memory map reads a clip without any conversion.
"""

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..media import load_clip


CACHE_FORMAT_VERSION = 1
_FRAMES_FILE = "frames.uint8"
_INDEX_FILE = "index.json"


class FrameCache:
    """The decoded frames of a fixed list of clips (see the module docstring); open one with `open_or_build`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = json.loads((self.folder / _INDEX_FILE).read_text(encoding="utf-8"))
        self._clips = {path: (offset, tuple(shape)) for path, offset, shape in index["clips"]}
        self.grayscale = index["grayscale"]
        size = (self.folder / _FRAMES_FILE).stat().st_size
        self._frames = np.memmap(self.folder / _FRAMES_FILE, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    @classmethod
    def open_or_build(
        cls,
        cache_dir: str | os.PathLike,
        paths: Sequence[str],
        *,
        grayscale: bool = True,
        workers: int = 1,
        progress: bool = True,
    ) -> "FrameCache":
        """The cache of `paths` under `cache_dir`: opened when it exists, else decoded with `workers` processes.

        Several processes asking for the same cache (the ranks of a distributed run) decode it once: the first takes
        a lock and builds it, the others wait and open it. A build is written under a temporary name and renamed when
        complete, so an interrupted one leaves nothing that could be mistaken for a cache.
        """
        cache_dir = Path(cache_dir)
        paths = sorted(set(os.fspath(path) for path in paths))
        folder = cache_dir / cache_key(paths, grayscale)
        if (folder / _INDEX_FILE).is_file():
            return cls(folder)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / _INDEX_FILE).is_file():
                _build(folder, paths, grayscale, workers, progress)
        return cls(folder)

    def __contains__(self, path: str) -> bool:
        return os.fspath(path) in self._clips

    def __len__(self) -> int:
        return len(self._clips)

    def frames(self, path: str | os.PathLike) -> np.ndarray:
        """The clip's frames, (frames, height, width) uint8 (read-only: a view of the memory map)."""
        path = os.fspath(path)
        if path not in self._clips:
            raise KeyError(f"{path} is not in the frame cache {self.folder}; it holds the clips it was built for.")
        offset, shape = self._clips[path]
        return self._frames[offset : offset + int(np.prod(shape))].reshape(shape)


def cache_key(paths: Sequence[str], grayscale: bool) -> str:
    """A name that changes when any media file is replaced, grows, shrinks or is touched."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT_VERSION, grayscale]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode(task: tuple[str, bool]) -> np.ndarray:
    path, grayscale = task
    return load_clip(path, audio=False, grayscale=grayscale, max_seconds=None).frames


def _build(folder: Path, paths: list[str], grayscale: bool, workers: int, progress: bool) -> None:
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    clips, offset = [], 0
    tasks = [(path, grayscale) for path in paths]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # Before the progress bar starts its thread: forking a process with threads is unsafe.
            pool = stack.enter_context(multiprocessing.Pool(workers))
            decoded = pool.imap(_decode, tasks, chunksize=8)
        else:
            decoded = map(_decode, tasks)
        bar = stack.enter_context(tqdm(total=len(paths), unit="clip", desc="Decoding frames once", disable=not progress))
        with open(partial / _FRAMES_FILE, "wb") as file:
            for path, frames in zip(paths, decoded):
                file.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
                clips.append([path, offset, list(frames.shape)])
                offset += frames.size
                bar.update()
    index = {"format_version": CACHE_FORMAT_VERSION, "grayscale": grayscale, "clips": clips}
    (partial / _INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)  # a folder without an index is what a crash mid-rename could leave
    os.replace(partial, folder)
