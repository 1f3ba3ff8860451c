"""The training policy of an Omni-AVSR run (the training arguments' `--freeze_*` and `--lora_dropout`): which
parameters train, which encoders stay in eval mode, and the LoRA dropout. The model itself holds none of it: loaded or
built, every parameter has `requires_grad` as transformers models do, and its forward never turns gradients off.

The paper's policy is the default: the encoders and the language model frozen, the LoRA adapters (the LM's
Omni-LoRA, the video encoder's) and the projectors trained; frozen encoders run in eval mode (no dropout, fixed
BatchNorm statistics) while the rest trains.
"""

import logging

from torch import nn

from ..configuration_omni_avsr import TRAINING_POLICY_KEYS, OmniAVSRConfig
from ..omni_lora import set_lora_dropout


logger = logging.getLogger(__name__)


def freeze(model, audio_encoder: bool = True, video_encoder: bool = True, language_model: bool = True) -> None:
    """Train the LoRA adapters and the projectors; the encoders and the language model (its head included) only
    where not frozen. Frozen encoders are put in eval mode."""
    frozen_prefixes = tuple(
        prefix
        for prefix, frozen in (
            ("model.audio_tower.", audio_encoder),
            ("model.video_tower.", video_encoder),
            ("model.language_model.", language_model),
            ("lm_head.", language_model),
        )
        if frozen
    )
    for name, param in model.named_parameters():
        param.requires_grad = ".lora_" in name or not name.startswith(frozen_prefixes)
    keep_frozen_encoders_in_eval_mode(model, audio_encoder, video_encoder)


def frozen_encoders(model, audio_encoder: bool, video_encoder: bool) -> list[nn.Module]:
    towers = ((model.audio_tower, audio_encoder), (model.video_tower, video_encoder))
    return [tower for tower, frozen in towers if tower is not None and frozen]


def apply_training_policy(model, args) -> None:
    """What `args` (`OmniAVSRTrainingArguments`) say trains, and the LM adapters' dropout."""
    freeze(model, args.freeze_audio_encoder, args.freeze_video_encoder, args.freeze_language_model)
    set_lora_dropout(model.language_model, args.lora_dropout)


def keep_frozen_encoders_in_eval_mode(model, audio_encoder: bool = True, video_encoder: bool = True):
    """Undo, for the frozen encoders, a `model.train()` (`Trainer` calls it before every step); returns `model`."""
    for encoder in frozen_encoders(model, audio_encoder, video_encoder):
        encoder.eval()
    return model


def warn_of_an_earlier_policy(model_name_or_path: str, args) -> None:
    """A folder saved before the training policy left the model's config holds its run's policy in config.json
    (`freeze_*`, `lora_dropout`, `train_padding`); a run training from it applies its own arguments instead, so say
    where they differ (the paper's policy by default)."""
    saved, _ = OmniAVSRConfig.get_config_dict(model_name_or_path)
    differences = [
        f"{name} {saved[name]!r} there, {getattr(args, name)!r} here"
        for name in TRAINING_POLICY_KEYS
        if name in saved and saved[name] != getattr(args, name)
    ]
    if differences:
        logger.warning(
            "%s was trained with another policy than this run's arguments (%s): pass the --%s of the earlier run to "
            "continue it.", model_name_or_path, "; ".join(differences), " / --".join(name.split()[0] for name in differences),
        )
