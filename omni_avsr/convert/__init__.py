"""Converters of other checkpoint formats (the official Omni-AVSR, fairseq AV-HuBERT, CTranslate2 Whisper)."""

from collections.abc import Mapping

import numpy as np
import torch

from ..input_checks import check_finite


def check_finite_weights(weights: Mapping, source: str) -> None:
    """Refuse a checkpoint holding NaN or infinite weights (a run that diverged), naming the weight: converted, it
    would be saved and reported as done, and transcribe nothing."""
    for name, values in weights.items():
        if isinstance(values, torch.Tensor):
            floating = values.is_floating_point()
        else:
            floating = np.issubdtype(np.asarray(values).dtype, np.floating)
        if floating:
            check_finite(f"{source}: {name}", values)


def load_converted_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a converted state dict into `model` (strictly), or name the checkpoint and the weights that do not fit the
    model its config describes (missing, unexpected, of another shape) instead of torch's traceback."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        details = " ".join(str(error).split())
        raise ValueError(
            f"{source}: its weights do not fit the model its config describes ({details[:400]}); expected a "
            "checkpoint whose config and weights belong together."
        ) from error
