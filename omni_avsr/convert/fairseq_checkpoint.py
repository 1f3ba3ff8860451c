"""Load fairseq checkpoints (`.pt` pickles) without running code from them and without fairseq installed.

A fairseq checkpoint is a pickle holding the model state dict next to Python objects: the config (a plain dict, an
omegaconf `DictConfig`, or an `argparse.Namespace` called `args` in older versions), the task state (fairseq
`Dictionary` objects), optimizer history and training metrics (sometimes numpy values). Plain `torch.load` would
import fairseq/omegaconf and let the pickle call any function it names. Instead:

1. the globals the pickle names are listed statically (nothing is unpickled) and any global outside the allow-list
   is refused with an error naming it;
2. the file is then read by torch's restricted `weights_only` unpickler, which enforces the same allow-list:
   torch's tensor globals plus `_SAFE_GLOBALS`, i.e. inert stand-ins for the fairseq/omegaconf classes (they only
   store the pickled data), `argparse.Namespace`, and numpy's array/scalar constructors.
"""

import _compat_pickle
import argparse
import io
import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


try:
    from numpy._core import multiarray as _numpy_multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _numpy_multiarray


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a global (function or class) that a fairseq checkpoint has no reason to contain."""


class FairseqDictionary:
    """Inert stand-in for `fairseq.data.dictionary.Dictionary`: its symbols, counts and special indices as data."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"fairseq Dictionary state must be a dict, got {type(state).__name__}.")
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.__dict__.get("symbols", []))

    def __repr__(self) -> str:
        return f"FairseqDictionary(num_symbols={len(self)})"


class OmegaConfNode:
    """Inert stand-in for omegaconf containers (`DictConfig`, `ListConfig`) and value nodes (`AnyNode`, ...)."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"omegaconf node state must be a dict, got {type(state).__name__}.")
        self.state = state

    def to_plain(self) -> Any:
        """The node's value as plain Python data (containers hold their children in `_content`, values in `_val`)."""
        if "_content" in self.state:
            return _to_plain(self.state["_content"])
        return _to_plain(self.state.get("_val"))


class OmegaConfMetadata:
    """Inert stand-in for omegaconf's `Metadata` / `ContainerMetadata` records (typing info we never need)."""

    def __setstate__(self, state):
        self.state = state


class TypeReference:
    """Placeholder for a type that omegaconf metadata only refers to (e.g. `typing.Any`); it cannot be called."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"TypeReference({self.name!r})"


def _dict_from_defaultdict(*args):
    """Stand-in for `collections.defaultdict` (omegaconf's resolver cache): a plain dict, the factory is ignored."""
    return {}


def _safe_globals() -> list[tuple[Any, str]]:
    """Every global a legitimate fairseq checkpoint may name beyond torch's own, with the object that replaces it."""
    allowed: list[tuple[Any, str]] = [
        (argparse.Namespace, "argparse.Namespace"),
        (FairseqDictionary, "fairseq.data.dictionary.Dictionary"),
        (OmegaConfNode, "omegaconf.dictconfig.DictConfig"),
        (OmegaConfNode, "omegaconf.listconfig.ListConfig"),
        (OmegaConfMetadata, "omegaconf.base.Metadata"),
        (OmegaConfMetadata, "omegaconf.base.ContainerMetadata"),
        (_dict_from_defaultdict, "collections.defaultdict"),
    ]
    for node in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode"):
        allowed.append((OmegaConfNode, f"omegaconf.nodes.{node}"))
    for type_name in ("typing.Any", "typing.Dict", "typing.List") + tuple(
        f"builtins.{name}" for name in ("dict", "list", "str", "int", "float", "bool", "object")
    ):
        allowed.append((TypeReference(type_name), type_name))
    for numpy_module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((_numpy_multiarray._reconstruct, f"{numpy_module}._reconstruct"))
        allowed.append((_numpy_multiarray.scalar, f"{numpy_module}.scalar"))
    allowed += [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for code in "?bBhHiIlLqQefdgFDG":
        dtype_class = type(np.dtype(code))
        allowed.append((dtype_class, f"numpy.dtypes.{dtype_class.__name__}"))
    return allowed


_SAFE_GLOBALS = _safe_globals()
_SAFE_GLOBAL_NAMES = {name for _, name in _SAFE_GLOBALS}
# Non-torch globals that torch's weights_only unpickler allows by itself; `torch.*` globals are checked by torch.
_TORCH_DEFAULT_GLOBAL_NAMES = {
    "collections.OrderedDict",
    "collections.Counter",
    "_codecs.encode",
    "builtins.set",
    "builtins.complex",
    "builtins.bytearray",
}
_PICKLE_PROTO_OPCODE = 0x80
_TORCH_SAVE_PICKLE_PROTOCOL = 2
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLES_IN_LEGACY_TORCH_FILE = 5  # magic number, protocol, system info, the object, storage keys
_STRING_OPCODES = {
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_OPCODES_THAT_PUSH_NOTHING = {"PROTO", "FRAME", "STOP", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}


def _python3_global(module: str, name: str) -> str:
    """Protocol-2 pickles may name Python 2 modules (`commands.Popen`); unpickling maps them as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _globals_in_pickle(stream: IO[bytes]) -> tuple[set[str], int]:
    """Names of the globals one pickle refers to, and its protocol, read from its opcodes without executing it.

    `STACK_GLOBAL` (protocol 4+) takes module and name from the two values pushed before it (strings, possibly
    fetched from the memo), so the scan tracks the most recent pushes; an unresolvable one counts as forbidden.
    """
    found, memo, pushed, protocol = set(), {}, [], 0
    for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name == "PROTO":
            protocol = argument
        elif opcode.name in ("GLOBAL", "INST"):
            found.add(_python3_global(*argument.split(" ", 1)))
            pushed.append(None)
        elif opcode.name == "STACK_GLOBAL":
            module, name = ([None, None] + pushed)[-2:]
            found.add(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "<unresolvable>")
            pushed.append(None)
        elif opcode.name in _STRING_OPCODES:
            pushed.append(argument)
        elif opcode.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[argument] = pushed[-1] if pushed else None
        elif opcode.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(argument))
        elif opcode.name not in _OPCODES_THAT_PUSH_NOTHING:
            pushed.append(None)
    return found, protocol


def _is_zip(path: Path) -> bool:
    """Zip-format torch checkpoint? Decided by the first bytes, as torch.load decides it."""
    with open(path, "rb") as file:
        return file.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def _globals_in_checkpoint(path: Path) -> tuple[set[str], int]:
    """Globals and highest pickle protocol of a torch.save file: every pickle of a zip checkpoint, or the leading
    pickles of a legacy one. The format is told apart by the first bytes, as torch does, so the scan reads what
    torch will unpickle.
    """
    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as archive:
                entries = [entry for entry in archive.infolist() if entry.filename.endswith(".pkl")]
                if not any(entry.filename.rsplit("/", 1)[-1] == "data.pkl" for entry in entries):
                    raise ValueError("the zip archive has no data.pkl")
                scans = [_globals_in_pickle(io.BytesIO(archive.read(entry))) for entry in entries]
        else:
            with open(path, "rb") as file:
                if file.peek(1)[:1] != bytes([_PICKLE_PROTO_OPCODE]):
                    raise ValueError("expected a torch.save file (zip archive or pickle)")
                scans = [_globals_in_pickle(file)]
                while len(scans) < _PICKLES_IN_LEGACY_TORCH_FILE and file.peek(1)[:1] == bytes([_PICKLE_PROTO_OPCODE]):
                    scans.append(_globals_in_pickle(file))
        return set().union(*(names for names, _ in scans)), max(protocol for _, protocol in scans)
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a fairseq checkpoint: {error}.") from None


def _to_plain(value: Any) -> Any:
    """Recursively turn config objects (Namespace, omegaconf stand-ins) into dicts, lists and scalars."""
    if isinstance(value, argparse.Namespace):
        return {key: _to_plain(item) for key, item in vars(value).items()}
    if isinstance(value, OmegaConfNode):
        return value.to_plain()
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(item) for item in value)
    return value


def _config_from_args(args: dict) -> dict:
    """Old checkpoints keep one flat `args` namespace; expose it as `cfg["model"]` / `cfg["task"]` like fairseq."""
    return {
        "model": {**args, "_name": args.get("arch")},
        "task": {**args, "_name": args.get("task")},
    }


def _forbidden_globals(path: Path) -> list[str]:
    """Globals of the file outside the allow-list, found without unpickling anything.

    `torch.*` globals are judged by torch's own allow-list: statically for zip checkpoints; in a legacy
    (protocol 2) pickle torch.load refuses them itself, and a newer protocol, which torch.save never writes, is
    refused here together with all of its torch globals.
    """
    names, protocol = _globals_in_checkpoint(path)
    torch_names = {name for name in names if name.startswith("torch.")}
    forbidden = names - torch_names - _SAFE_GLOBAL_NAMES - _TORCH_DEFAULT_GLOBAL_NAMES
    if torch_names and _is_zip(path):
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            forbidden |= torch_names & set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    elif protocol > _TORCH_SAVE_PICKLE_PROTOCOL:
        forbidden |= torch_names
    return sorted(forbidden)


def _torch_refusal_reason(error: Exception) -> str:
    """The reason torch's weights_only unpickler gives, without its advice on how to allow the global."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+Please use|$)", str(error), flags=re.MULTILINE)
    if match:
        return match.group(1).rstrip(".")
    return [line.strip() for line in str(error).splitlines() if line.strip()][-1]


def load_fairseq_checkpoint(path: str | Path) -> dict:
    """Load a fairseq `.pt` checkpoint safely and return it as a dict with a plain-dict config.

    The result holds the file's entries unchanged (`model` state dict, `task_state` with
    [`FairseqDictionary`] stand-ins, `optimizer_history`, ...), except that `cfg` is a plain nested dict
    (`cfg["model"]`, `cfg["task"]`, ...) whether it was stored as a dict, an omegaconf `DictConfig` or only as an
    `argparse.Namespace` under `args` (then `args` becomes a dict too).

    Raises:
        FileNotFoundError: `path` does not exist.
        UnsafeCheckpointError: the file names a global outside the allow-list; nothing from it was run.
        ValueError: the file is not a torch/fairseq checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a fairseq checkpoint file (.pt).")
    if not path.is_file():
        raise FileNotFoundError(f"No fairseq checkpoint at {path}: the file does not exist.")
    forbidden = _forbidden_globals(path)
    if forbidden:
        raise UnsafeCheckpointError(
            f"Refusing to load {path}: it references {', '.join(forbidden)}, which a fairseq checkpoint never "
            "contains (allowed: tensors, configs, fairseq Dictionary objects, numpy values). Nothing was executed."
        )
    with torch.serialization.safe_globals(_SAFE_GLOBALS):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: {_torch_refusal_reason(error)}. Nothing was executed."
            ) from None
        except (OSError, RuntimeError, EOFError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{path} is not a readable fairseq checkpoint: {error}") from None
    return _normalize_checkpoint(checkpoint, path)


def _normalize_checkpoint(checkpoint: Any, path: Path) -> dict:
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(
            f"{path} is not a fairseq checkpoint: expected a dict with a 'model' state dict and 'cfg' or 'args', "
            f"found {found}."
        )
    checkpoint = dict(checkpoint)
    args = _to_plain(checkpoint.get("args"))
    cfg = _to_plain(checkpoint.get("cfg"))
    if cfg is None and args is None:
        raise ValueError(f"{path} is not a fairseq checkpoint: it has neither a 'cfg' nor an 'args' entry.")
    if cfg is not None and not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected 'cfg' to be a dict-like config, found {type(cfg).__name__}.")
    if args is not None and not isinstance(args, dict):
        raise ValueError(f"{path}: expected 'args' to be an argparse.Namespace, found {type(args).__name__}.")
    checkpoint["args"] = args
    checkpoint["cfg"] = cfg if cfg is not None else _config_from_args(args)
    return checkpoint


__all__ = ["FairseqDictionary", "UnsafeCheckpointError", "load_fairseq_checkpoint"]
