"""What every command of the package shares: expected failures end in one line on stderr, and output paths are
checked before any work starts, so that a command that cannot write fails instead of reporting success."""

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .media import AUDIO_EXTENSIONS, check_media_file


EXPECTED_ERRORS = (OSError, ValueError, ImportError)
"""Failures caused by the input (a file, a folder, a setting) or a missing optional extra: reported in one line,
never as a traceback."""


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity, where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


DEBUG_VARIABLE = "OMNI_AVSR_DEBUG"
"""Set to 1 in the environment, every command prints the traceback of an expected failure before its error line (the
training scripts' own `--debug` is `TrainingArguments`' debugging option, so they take only this)."""


def add_debug_flag(parser) -> None:
    """The `--debug` option of a command: show the traceback behind an error line."""
    parser.add_argument(
        "--debug", action="store_true", help=f"on an error, print its traceback too (or set {DEBUG_VARIABLE}=1)"
    )


def report_error(prog: str, error: BaseException, debug: bool = False) -> int:
    """Print `prog: error: message` on one line of stderr and return the exit status 1; with `debug` (or
    `OMNI_AVSR_DEBUG=1`) the traceback comes first."""
    if debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        traceback.print_exception(error, file=sys.stderr)
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 1


def run_script(main: Callable[[], object], prog: str) -> int:
    """Run a script's `main`: an expected failure ends in one error line and the exit status 1 (see `report_error`),
    not a traceback."""
    try:
        main()
    except EXPECTED_ERRORS as error:
        return report_error(prog, error)
    return 0


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


def check_crop_paths(input_path: str, output_path: str | os.PathLike) -> Path:
    """Refuse, before any work, an input of `omni-avsr crop` that is not a video file, or an output that would
    overwrite the input or the audio it is read with (OUT and the `.wav` written or removed beside it may be neither
    the input nor the input's own sibling `.wav`) or cannot be written. Returns OUT as a path."""
    check_media_file(input_path)
    if input_path.lower().endswith(AUDIO_EXTENSIONS):
        raise ValueError(f"{input_path} is an audio file; expected a face video (.mp4, ...) to crop the mouth out of.")
    output_path = Path(output_path)
    own_audio = os.path.splitext(input_path)[0] + ".wav"
    protected = {
        os.path.realpath(input_path): "the input", os.path.realpath(own_audio): f"the input's audio {own_audio}"
    }
    for path, written in ((output_path, ""), (output_path.with_suffix(".wav"), " with the .wav written beside it")):
        if os.path.realpath(path) in protected:
            raise ValueError(
                f"OUT {output_path} would overwrite {protected[os.path.realpath(path)]}{written}; expected an output "
                "path whose video and .wav are neither the input nor its audio."
            )
    if output_path.suffix.lower() in AUDIO_EXTENSIONS:
        raise ValueError(f"OUT {output_path} is an audio file name; expected a video path (.mp4), its .wav beside it.")
    if output_path.is_dir():
        raise IsADirectoryError(f"OUT {output_path} is a folder; expected a video file path (.mp4).")
    # The folders OUT needs are created; the nearest one that exists must be a folder that can be written.
    existing = next(folder for folder in (output_path.parent, *output_path.parent.parents) if folder.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"OUT {output_path} cannot be written: {existing} is a file; expected a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"OUT {output_path} cannot be written: the folder {existing} is not writable.")
    return output_path


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
