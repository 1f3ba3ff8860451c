"""Whether a model's checkpoint holds exactly the weights its config describes, for the code that transcribes with a
folder (the pipelines, `omni-avsr transcribe`, the training script's evaluation of a folder).

transformers loads a folder whose config.json was edited or copied from another checkpoint (other rates, LoRA variant,
projector layout) with a warning: the weights it lacks are initialised at random, the ones it holds in excess dropped.
Training from such a folder may mean it; transcribing with it never does. transformers keeps no record of what a
checkpoint lacked, so this reads the checkpoint's file headers (names and shapes, not the tensors) again.

This module is copied into Hub repositories next to the pipelines, so it stays flat.
"""

import json

from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from .conversion_mapping_omni_avsr import rename_checkpoint_keys


def checkpoint_shapes(name_or_path: str) -> dict[str, tuple[int, ...]] | None:
    """Name → shape of every tensor of a folder's (or Hub repository's) safetensors weights, under this layout's
    names; None where there are none to read (a model built in memory)."""
    index = cached_file(name_or_path, SAFE_WEIGHTS_INDEX_NAME, _raise_exceptions_for_missing_entries=False)
    if index is not None:
        with open(index, encoding="utf-8") as file:
            shards = sorted(set(json.load(file)["weight_map"].values()))
    else:
        shards = [SAFE_WEIGHTS_NAME]
    shapes = {}
    for shard in shards:
        path = cached_file(name_or_path, shard, _raise_exceptions_for_missing_entries=False)
        if path is None:
            return None
        with safe_open(path, framework="pt") as weights:
            shapes.update({key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()})
    return rename_checkpoint_keys(shapes)


def check_checkpoint_weights(model) -> None:
    """Refuse to transcribe with a model whose checkpoint (`model.name_or_path`) does not hold exactly its weights,
    naming them. A model built in memory (no checkpoint) passes; so does one loaded from a folder that covers it."""
    source = model.name_or_path
    saved = checkpoint_shapes(source) if source else None
    if saved is None:
        return
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items() if name not in tied}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected) - tied)
    mismatched = sorted(name for name in set(expected) & set(saved) if expected[name] != saved[name])
    if mismatched:
        shapes = "; ".join(f"{name} (checkpoint {saved[name]}, model {expected[name]})" for name in mismatched[:3])
        raise ValueError(
            f"{source}: {len(mismatched)} weights do not have the shape its config.json gives them: {shapes}. Expected "
            "the config.json saved with these weights (projector_hidden_size, lora_rank, encoder sizes, ...)."
        )
    if missing or unexpected:
        found = [f"{len(keys)} {kind} ({_listed(keys)})" for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ValueError(
            f"{source}: its weights do not cover the model its config.json describes: {' and '.join(found)} weights, "
            "so it would transcribe with randomly initialised ones. Expected the config.json saved with these weights "
            "(the same audio_rates, video_rates, lora_variant, tasks, projector layout); a model trained from the "
            "folder (which may add weights) transcribes once saved with them."
        )


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
