"""Parameter names of earlier Omni-AVSR layouts and their names now, so that old folders keep loading: the first
releases' (`audio_encoder.*`, `language_model.model.*`, ...) and the encoders' before they became towers
(`model.audio_encoder.*`).

The modeling file registers them with transformers' conversion mapping (remote code too), so `from_pretrained` renames
them; `rename_checkpoint_keys` applies the same renames to a state dict (the official converter, the pipelines' weight
check). Copied into Hub repositories with the modeling file (flat, relative imports).
"""

import re



CHECKPOINT_RENAMES = {
    r"^language_model\.lm_head\.": "lm_head.",
    r"^language_model\.model\.": "model.language_model.",
    r"^(?:model\.)?audio_encoder\.": "model.audio_tower.",
    r"^(?:model\.)?video_encoder\.": "model.video_tower.",
    r"^audio_projectors\.": "model.audio_projectors.",
    r"^video_projectors\.": "model.video_projectors.",
}


def rename_checkpoint_keys(state_dict: dict) -> dict:
    """`state_dict` with each key of an earlier layout under its name now (`CHECKPOINT_RENAMES`)."""
    renamed = {}
    for key, value in state_dict.items():
        for old, new in CHECKPOINT_RENAMES.items():
            key = re.sub(old, new, key, count=1)
        renamed[key] = value
    return renamed
