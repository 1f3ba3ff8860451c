"""Which checkpoint a training run resumes from: the last COMPLETE one in `--output_dir`.

A run killed while `Trainer` writes `checkpoint-N` leaves a partial folder; `get_last_checkpoint` would pick it and
the rerun would stop ("Can't find a valid checkpoint") until it is deleted by hand. `Trainer` writes
`trainer_state.json` after the weights, optimizer, scheduler and RNG states, so a folder whose state file reads and
whose weights open is complete.
"""

import json
import logging
import os
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import sort_checkpoints


logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


def incomplete_checkpoint_reason(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a checkpoint `Trainer` can resume from, or `None` when it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    try:
        state = json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"it has no {TRAINER_STATE_FILE}, which Trainer writes last"
    except (OSError, ValueError):
        return f"its {TRAINER_STATE_FILE} is cut short or unreadable"
    if not isinstance(state, dict) or "global_step" not in state:
        return f"its {TRAINER_STATE_FILE} has no global_step"
    if (folder / WEIGHTS_INDEX_FILE).is_file():
        try:
            shards = sorted(set(json.loads((folder / WEIGHTS_INDEX_FILE).read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"its {WEIGHTS_INDEX_FILE} is unreadable"
    elif (folder / WEIGHTS_FILE).is_file():
        shards = [WEIGHTS_FILE]
    else:
        return f"it has no model weights ({WEIGHTS_FILE})"
    for shard in shards:
        try:
            with safe_open(folder / shard, framework="pt"):
                pass
        except (OSError, SafetensorError):
            return f"its weights file {shard} is missing or cut short"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` folder of highest N in `output_dir` that is complete; incomplete ones are named in a warning
    and left in place (`Trainer` writes the step again when training reaches it)."""
    if not os.path.isdir(output_dir):
        return None
    for folder in reversed(sort_checkpoints(str(output_dir))):
        reason = incomplete_checkpoint_reason(folder)
        if reason is None:
            return folder
        logger.warning("Skipping %s: %s (the run was probably stopped while writing it).", folder, reason)
    return None


def checkpoint_to_resume(training_args) -> str | None:
    """`--resume_from_checkpoint` when given (refused if incomplete), else the last complete checkpoint in
    `--output_dir`, else `None` (a fresh run)."""
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is not None:
        reason = incomplete_checkpoint_reason(checkpoint)
        if reason is not None:
            raise ValueError(
                f"--resume_from_checkpoint {checkpoint}: cannot resume, {reason}; expected a complete checkpoint-N "
                f"folder (the last complete one in --output_dir is {last_complete_checkpoint(training_args.output_dir)})."
            )
        return checkpoint
    checkpoint = last_complete_checkpoint(training_args.output_dir)
    if checkpoint is not None:
        logger.info("Resuming from %s, the last complete checkpoint in --output_dir", checkpoint)
    return checkpoint
