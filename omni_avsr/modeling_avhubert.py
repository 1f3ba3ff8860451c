"""AV-HuBERT's video path as a native PyTorch / Transformers model (no fairseq)."""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2Attention,
    Wav2Vec2EncoderLayerStableLayerNorm,
    Wav2Vec2EncoderStableLayerNorm,
    Wav2Vec2PositionalConvEmbedding,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_avhubert import AVHubertVideoConfig


class AVHubertBasicBlock(nn.Module):
    """ResNet basic block with PReLU activations, as in AV-HuBERT's lip front-end (torchvision's block uses ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.PReLU(num_parameters=out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.PReLU(num_parameters=out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states if self.downsample is None else self.downsample(hidden_states)
        hidden_states = self.act1(self.norm1(self.conv1(hidden_states)))
        hidden_states = self.norm2(self.conv2(hidden_states))
        return self.act2(hidden_states + residual)


class AVHubertVisualFrontend(nn.Module):
    """3D convolution stem over (time, height, width) followed by a per-frame 2D ResNet-18 and global pooling; the crop
    is first average-pooled when `config.frontend_input_pooling` > 1."""

    def __init__(self, config: AVHubertVideoConfig):
        super().__init__()
        pooling = config.frontend_input_pooling
        self.input_pool = nn.AvgPool3d((1, pooling, pooling)) if pooling > 1 else nn.Identity()
        channels = config.frontend_channels
        stride = config.frontend_spatial_stride
        self.conv3d = nn.Conv3d(
            1, channels, kernel_size=(5, 7, 7), stride=(1, stride, stride), padding=(2, 3, 3), bias=False
        )
        self.norm3d = nn.BatchNorm3d(channels)
        self.act3d = nn.PReLU(num_parameters=channels)
        self.pool3d = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        stages = []
        in_channels = channels
        for stage_index, out_channels in enumerate(config.resnet_channels):
            stride = 1 if stage_index == 0 else 2
            blocks = [AVHubertBasicBlock(in_channels, out_channels, stride)]
            blocks += [
                AVHubertBasicBlock(out_channels, out_channels) for _ in range(config.resnet_blocks_per_stage - 1)
            ]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.output_size = in_channels

    def forward(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`pixel_values` (batch, 1, frames, height, width) → (batch, frames, output_size).

        The 2D trunk runs on valid frames only; padded frames get zeros (the encoder zeroes them anyway).
        """
        batch_size, _, num_frames = pixel_values.shape[:3]
        hidden_states = self.pool3d(self.act3d(self.norm3d(self.conv3d(self.input_pool(pixel_values)))))
        hidden_states = hidden_states.transpose(1, 2).flatten(0, 1)
        flat_mask = frame_mask.flatten()
        frames = hidden_states[flat_mask]
        for stage in self.stages:
            frames = stage(frames)
        frames = frames.mean(dim=(2, 3))
        features = frames.new_zeros(batch_size * num_frames, frames.shape[-1])
        features[flat_mask] = frames
        return features.view(batch_size, num_frames, -1)


class AVHubertVideoPreTrainedModel(PreTrainedModel):
    config: AVHubertVideoConfig
    base_model_prefix = "avhubert"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["Wav2Vec2EncoderLayerStableLayerNorm"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "hidden_states": Wav2Vec2EncoderLayerStableLayerNorm,
        "attentions": OutputRecorder(Wav2Vec2Attention, index=1, layer_name="encoder"),
    }

    @classmethod
    def is_custom_code(cls) -> bool:
        """Written to transformers' own conventions (guarded `nn.init` calls, parameter tying only), so loading treats
        it as a library model: weights missing from a checkpoint get the init of the sub-model that owns them (the
        remote-code fallback skips modules without parameters of their own, e.g. Whisper's sinusoidal positions)."""
        return False

    @torch.no_grad()
    def _init_weights(self, module):
        """Kaiming init for the convolutional front-end (as AV-HuBERT), wav2vec2's init for the positional conv."""
        if isinstance(module, Wav2Vec2PositionalConvEmbedding):
            kernel_size, in_channels = module.conv.kernel_size[0], module.conv.in_channels
            nn.init.normal_(module.conv.weight, mean=0, std=2 * (1.0 / (kernel_size * in_channels)) ** 0.5)
            nn.init.constant_(module.conv.bias, 0)
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.PReLU):
            nn.init.constant_(module.weight, 0.25)
        elif isinstance(module, nn.Conv1d):
            return
        else:
            super()._init_weights(module)


class AVHubertVideoModel(AVHubertVideoPreTrainedModel):
    """AV-HuBERT encoder run on lip video only (the audio half of its fused input is zeros).

    Input: grayscale mouth crops `pixel_values_videos` of shape (batch, frames, 1, height, width), normalised with
    AV-HuBERT's mean 0.421 / std 0.165, and an optional `video_mask` (batch, frames) marking real frames. With a mask,
    padded frames neither reach the 2D trunk nor leak into real frames through attention or the positional
    convolution, so a clip gives the same features alone or in a padded batch.
    """

    # A lip reader's folder (`AVHubertForCTC`) loads as its encoder: the CTC head is left out on purpose.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: AVHubertVideoConfig):
        super().__init__(config)
        self.frontend = AVHubertVisualFrontend(config)
        self.frontend_projection = nn.Linear(self.frontend.output_size, config.hidden_size)
        fused_size = 2 * config.hidden_size if config.modality_fuse == "concat" else config.hidden_size
        self.feature_layer_norm = nn.LayerNorm(fused_size, eps=config.layer_norm_eps)
        self.feature_projection = (
            nn.Linear(fused_size, config.hidden_size) if config.modality_fuse == "concat" else nn.Identity()
        )
        self.feature_dropout = nn.Dropout(config.feat_proj_dropout)
        self.encoder = Wav2Vec2EncoderStableLayerNorm(config)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        r"""
        `output_hidden_states=True` gives the input of each transformer layer (wav2vec2's convention);
        `output_attentions=True` their attention weights (eager attention: `attn_implementation="eager"`).
        """
        if pixel_values_videos.ndim != 5 or pixel_values_videos.shape[2] != 1:
            raise ValueError(
                "AVHubertVideoModel expects pixel_values_videos of shape (batch, frames, 1, height, width) "
                f"(grayscale), got {tuple(pixel_values_videos.shape)}."
            )
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device)
        video_mask = video_mask.bool()
        pixel_values = pixel_values_videos * video_mask[:, :, None, None, None].to(pixel_values_videos.dtype)
        features = self.frontend(pixel_values.transpose(1, 2), video_mask)
        features = self.frontend_projection(features)
        if self.config.modality_fuse == "concat":
            features = torch.cat([torch.zeros_like(features), features], dim=-1)
        features = self.feature_projection(self.feature_layer_norm(features))
        features = self.feature_dropout(features)
        return self.encoder(features, attention_mask=video_mask, **kwargs)


class AVHubertForCTC(AVHubertVideoPreTrainedModel):
    """The video encoder with a CTC head: a lip reader without an LLM.

    Omni-AVSR starts from an AV-HuBERT already fine-tuned for lip reading; this gives a video encoder trained from
    scratch (e.g. on Mini-LRS) that same starting point. `AVHubertVideoModel.from_pretrained` on a saved
    `AVHubertForCTC` loads the encoder alone.
    """

    def __init__(self, config: AVHubertVideoConfig):
        super().__init__(config)
        if config.vocab_size is None or config.pad_token_id is None:
            raise ValueError(
                "AVHubertForCTC needs config.vocab_size (the tokenizer's size) and config.pad_token_id (the CTC "
                f"blank); got vocab_size={config.vocab_size}, pad_token_id={config.pad_token_id}."
            )
        self.avhubert = AVHubertVideoModel(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch, target_length)`, *optional*): transcript ids; -100, the blank and
            `config.eos_token_id` are left out of the CTC targets, so Omni-AVSR's labels can be used as they are.
        """
        outputs = self.avhubert(pixel_values_videos, video_mask=video_mask, return_dict=True, **kwargs)
        logits = self.lm_head(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            if self.config.eos_token_id is not None:
                labels = labels.masked_fill(labels == self.config.eos_token_id, -100)
            if video_mask is None:
                frame_counts = torch.full((logits.shape[0],), logits.shape[1], device=logits.device)
            else:
                frame_counts = video_mask.sum(-1)
            loss = self.loss_function(
                logits=logits,
                labels=labels,
                logit_lengths=frame_counts.long(),
                blank_token_id=self.config.pad_token_id,
                reduction=self.config.ctc_loss_reduction,
                zero_infinity=self.config.ctc_zero_infinity,
            )
        return CausalLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    def greedy_decode(self, logits: torch.Tensor, video_mask: torch.Tensor | None = None) -> list[list[int]]:
        """Best-path CTC decoding: the argmax token per frame, repeats merged, blanks removed."""
        best = logits.argmax(-1)
        frame_counts = video_mask.sum(-1).tolist() if video_mask is not None else [best.shape[1]] * best.shape[0]
        token_ids = []
        for path, count in zip(best.tolist(), frame_counts):
            merged = [token for index, token in enumerate(path[:count]) if index == 0 or token != path[index - 1]]
            token_ids.append([token for token in merged if token != self.config.pad_token_id])
        return token_ids


__all__ = ["AVHubertForCTC", "AVHubertVideoModel", "AVHubertVideoPreTrainedModel"]
