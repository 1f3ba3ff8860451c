"""Reuse a frozen video encoder's output across training steps instead of recomputing it for every epoch.

With a pretrained lip reader frozen (and no LoRA on it) and the video not augmented, the encoder maps each clip to the
same features at every step; on a CPU it was most of the cost of a joint training step. `cache_frozen_video_encoder`
makes the encoder key every clip by the bytes of its frames, run only on clips it has not seen, and keep their
features, so each clip is encoded once per run.
"""

import hashlib

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput


class FrozenVideoEncoderCache:
    """Stands in for a frozen `AVHubertVideoModel.forward`; the features of every clip seen are kept in memory (a clip
    of 2 s at hidden size 192 takes 38 kB in fp32).

    A clip's features do not depend on the batch it comes in (the encoder masks padded frames), so features computed
    in one batch serve the clip in any other. Calls that ask for hidden states or attentions go to the encoder.
    """

    def __init__(self, encoder_forward, hidden_size: int):
        self.encoder_forward = encoder_forward
        self.hidden_size = hidden_size
        self.features: dict[bytes, torch.Tensor] = {}

    def __call__(self, pixel_values_videos: torch.Tensor, video_mask: torch.Tensor | None = None, **kwargs):
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            return self.encoder_forward(pixel_values_videos, video_mask=video_mask, **kwargs)
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device)
        lengths = video_mask.sum(-1).tolist()
        keys = [_clip_key(pixel_values_videos[row, :length]) for row, length in enumerate(lengths)]
        missing = [row for row, key in enumerate(keys) if key not in self.features]
        if missing:
            with torch.no_grad():
                encoded = self.encoder_forward(
                    pixel_values_videos[missing], video_mask=video_mask[missing], return_dict=True
                ).last_hidden_state
            for index, row in enumerate(missing):
                self.features[keys[row]] = encoded[index, : lengths[row]].clone()
        hidden_states = pixel_values_videos.new_zeros(batch_size, num_frames, self.hidden_size)
        for row, key in enumerate(keys):
            hidden_states[row, : lengths[row]] = self.features[key]
        return BaseModelOutput(last_hidden_state=hidden_states)


def cache_frozen_video_encoder(encoder: nn.Module) -> FrozenVideoEncoderCache:
    """Make `encoder` reuse each clip's features (see the module docstring). Its forward is replaced on this instance
    only, as accelerate's hooks do, so its weights and their names in checkpoints stay as they are. The trainer keeps a
    frozen encoder in eval mode at every step (`training.policy`: no dropout), so its output is a function of the
    frames."""
    if any(parameter.requires_grad for parameter in encoder.parameters()):
        raise ValueError(
            "Only a frozen video encoder (no trainable parameters, no LoRA) can reuse its output: a trained encoder's "
            "output changes at every step."
        )
    cache = FrozenVideoEncoderCache(encoder.forward, encoder.config.hidden_size)
    encoder.forward = cache
    return cache


def _clip_key(frames: torch.Tensor) -> bytes:
    return hashlib.blake2b(frames.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
