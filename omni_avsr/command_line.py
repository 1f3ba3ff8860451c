"""What every command of the package shares: expected failures end in one line on stderr, and output paths are
checked before any work starts, so that a command that cannot write fails instead of reporting success."""

import os
import sys
from pathlib import Path


EXPECTED_ERRORS = (OSError, ValueError, ImportError)
"""Failures caused by the input (a file, a folder, a setting) or a missing optional extra: reported in one line,
never as a traceback."""


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity, where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def report_error(prog: str, error: BaseException) -> int:
    """Print `prog: error: message` on one line of stderr and return the exit status 1."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 1


def prepare_output_dir(path: str | os.PathLike, option: str = "output folder") -> Path:
    """Create the folder a command writes into (or accept an existing one), and refuse one it cannot write.

    `save_pretrained` only logs an error for a path that is a file and returns, writing nothing; this refuses it first.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{option} {path} is a file; expected a folder (new or existing) to write into.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create the {option} {path}: {error.strerror or error}.") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write into the {option} {path}: permission denied.")
    return path


def check_output_file(path: str | os.PathLike, option: str = "output file") -> Path:
    """Refuse an output file path that is a folder or whose folder cannot be written, before any work starts."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; expected a file path.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"The folder of the {option} {path} does not exist: {folder}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write the {option} {path}: its folder {folder} is not writable.")
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file next to `path`, then rename it into place: an interrupted write leaves the
    previous file (if any) whole, never a cut one."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
