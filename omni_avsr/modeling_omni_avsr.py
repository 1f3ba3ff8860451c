"""Omni-AVSR: one audio-visual LLM for ASR, VSR and AVSR with compression rates chosen at inference time."""

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, DynamicCache, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPast,
    BaseModelOutputWithPooling,
    CausalLMOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import ModelOutput, is_torchdynamo_compiling
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_omni_avsr import (
    IGNORE_INDEX,
    MEDIA_INPUTS,
    TASK_MODALITIES,
    OmniAVSRConfig,
    audio_encoder_frames,
    check_finite,
    compressed_length,
    kept_mel_frames,
    pad_rows,
    text_vocabulary_size,
)
from .modeling_avhubert import AVHubertVideoModel
from .omni_lora import (
    OmniLoraLinear,
    add_lora_adapters,
    lora_layers,
    reset_lora_parameters,
    set_adapter_routing,
)


# Parameter names of the first releases (`audio_encoder.*`, `language_model.model.*`, ...) and where they live in the
# `model` / `lm_head` layout. Folders written before it load through this map (`from_pretrained`'s `key_mapping`).
LEGACY_KEY_PREFIXES = {
    "language_model.lm_head.": "lm_head.",
    "language_model.model.": "model.language_model.",
    **{f"{name}.": f"model.{name}." for name in ("audio_encoder", "video_encoder", "audio_projectors", "video_projectors")},
}


def checkpoint_keys_to_model_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict in the first releases' layout to this model's parameter names."""
    renamed = {}
    for key, value in state_dict.items():
        legacy = next((prefix for prefix in LEGACY_KEY_PREFIXES if key.startswith(prefix)), None)
        renamed[key if legacy is None else LEGACY_KEY_PREFIXES[legacy] + key[len(legacy) :]] = value
    return renamed


@dataclass
class OmniAVSRMediaOutput(BaseModelOutputWithPooling):
    r"""
    What one modality's encoder and projector make of a batch of clips.

    last_hidden_state (`torch.FloatTensor` of shape `(batch, frames, encoder_dim)`): encoder frames (audio: cut after
        the longest clip).
    pooler_output (`torch.FloatTensor` of shape `(batch, tokens, text_hidden_size)`): the compressed and projected
        tokens that replace the placeholders, padded after each clip's `token_lengths`.
    frame_lengths (`torch.LongTensor` of shape `(batch,)`): encoder frames of each clip.
    token_lengths (`torch.LongTensor` of shape `(batch,)`): LM tokens of each clip at `rate`.
    rate (`int`): the compression rate.
    """

    frame_lengths: torch.LongTensor | None = None
    token_lengths: torch.LongTensor | None = None
    rate: int | None = None


@dataclass
class OmniAVSROutput(ModelOutput):
    r"""
    Output of a multi-task forward pass on a training batch (media + transcripts, no `input_ids`).

    loss (`torch.FloatTensor`): weighted sum of the per-task losses, `Σ_t task_weight[t] * loss_t`.
    asr_loss, vsr_loss, avsr_loss (`torch.FloatTensor`, *optional*): unweighted token-mean cross-entropy of each task
        that ran.
    audio_rate, video_rate (`int`, *optional*): the compression rates used (sampled in training unless given).
    task_logits (`dict[str, torch.FloatTensor]`, *optional*): per-task LM logits (batch, sequence, vocab), only with
        `output_logits=True`.
    task_labels (`dict[str, torch.LongTensor]`, *optional*): the labels aligned with `task_logits`.
    """

    loss: torch.FloatTensor | None = None
    asr_loss: torch.FloatTensor | None = None
    vsr_loss: torch.FloatTensor | None = None
    avsr_loss: torch.FloatTensor | None = None
    audio_rate: int | None = None
    video_rate: int | None = None
    task_logits: dict[str, torch.FloatTensor] | None = None
    task_labels: dict[str, torch.LongTensor] | None = None


class OmniAVSRProjector(nn.Module):
    """Two-layer MLP from encoder features to the LM's embedding space (optionally followed by a LayerNorm)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, hidden_act: str, layer_norm: bool):
        super().__init__()
        self.linear_1 = nn.Linear(input_size, hidden_size)
        self.act = ACT2FN[hidden_act]
        self.linear_2 = nn.Linear(hidden_size, output_size)
        self.norm = nn.LayerNorm(output_size) if layer_norm else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear_2(self.act(self.linear_1(features))))


def compress_frames(
    features: torch.Tensor, lengths: torch.Tensor, rate: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shorten (batch, frames, dim) features by `rate`, per clip.

    `avg_pool` averages each window of `rate` frames (as `nn.AvgPool1d`), `stack` concatenates them. A clip keeps
    `compressed_length(length, rate)` tokens: a tail shorter than the rate is dropped (as the official code), except
    that a clip shorter than one window still gives one token (the mean of its frames).
    """
    batch_size, num_frames, dim = features.shape
    num_windows = -(-num_frames // rate)
    padded = F.pad(features, (0, 0, 0, num_windows * rate - num_frames))
    frame_mask = torch.arange(num_windows * rate, device=features.device)[None, :] < lengths[:, None]
    windows = (padded * frame_mask[..., None].to(padded.dtype)).view(batch_size, num_windows, rate, dim)
    if mode == "avg_pool":
        counts = frame_mask.view(batch_size, num_windows, rate).sum(-1, keepdim=True).clamp(min=1)
        compressed = windows.sum(2) / counts.to(windows.dtype)
    else:
        compressed = windows.flatten(2)
    return compressed, compressed_length(lengths, rate)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` derives them, so a padded row reads like an unpadded one."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


class OmniAVSRPreTrainedModel(PreTrainedModel):
    config: OmniAVSRConfig
    base_model_prefix = "model"
    input_modalities = ("audio", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["WhisperEncoderLayer", "Wav2Vec2EncoderLayerStableLayerNorm", "OmniAVSRProjector"]
    _skip_keys_device_placement = "cache"
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True
    # The loss is a weighted sum of per-task token means; Trainer must not rescale it with `num_items_in_batch`.
    accepts_loss_kwargs = False

    @classmethod
    def is_custom_code(cls) -> bool:
        """Written to transformers' own conventions (guarded `nn.init` calls, parameter tying only), so loading treats
        it as a library model: weights missing from a checkpoint get the init of the sub-model that owns them (the
        remote-code fallback skips modules without parameters of their own, e.g. Whisper's sinusoidal positions)."""
        return False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, OmniAVSRProjector):
            for linear in (module.linear_1, module.linear_2):
                nn.init.normal_(linear.weight, std=self.config.initializer_range)
                nn.init.zeros_(linear.bias)
        super()._init_weights(module)

    def initialize_weights(self):
        """Let peft's LoRA init (B = 0: the model starts as its frozen parts) win over the sub-models' normal init.

        Only adapters that were not loaded from a checkpoint are re-initialised.
        """
        pending = [
            layer
            for layer in lora_layers(self)
            if not all(getattr(param, "_is_hf_initialized", False) for param in layer.lora_A.parameters())
        ]
        super().initialize_weights()
        for layer in pending:
            reset_lora_parameters(layer)


class OmniAVSRModel(OmniAVSRPreTrainedModel):
    r"""
    The encoders (Whisper for audio, AV-HuBERT for lip video), the per-rate projectors and the language model with
    Omni-LoRA, without the LM head. `forward` merges the projected media into the LM sequence at the processor's
    placeholders and runs the LM with the adapters of the task (or tasks, by row group).
    """

    def __init__(self, config: OmniAVSRConfig):
        super().__init__(config)
        if config.audio_config is None and config.video_config is None:
            raise ValueError("OmniAVSRConfig needs at least one encoder: audio_config, video_config or both.")
        if config.text_config is None:
            raise ValueError(
                "OmniAVSRConfig has no text_config: give the language model's config (e.g. LlamaConfig or Qwen2Config)."
            )
        text_hidden_size = config.text_config.hidden_size
        self.audio_encoder = WhisperEncoder(config.audio_config) if config.audio_config is not None else None
        self.video_encoder = AVHubertVideoModel(config.video_config) if config.video_config is not None else None
        self.audio_projectors = self._build_projectors("audio", text_hidden_size)
        self.video_projectors = self._build_projectors("video", text_hidden_size)
        self.language_model = AutoModel.from_config(config.text_config)
        if self.video_encoder is not None and config.video_lora_rank > 0:
            add_lora_adapters(
                self.video_encoder.encoder,
                ["default"],
                rank=config.video_lora_rank,
                alpha=config.video_lora_alpha,
                target_modules=["q_proj", "v_proj"],
            )
        add_lora_adapters(
            self.language_model,
            config.lora_adapter_names(),
            rank=config.lora_rank,
            alpha=config.lora_alpha,
            target_modules=config.lora_target_modules,
            dropout=config.lora_dropout,
            routed=True,
        )
        self._routed_lora_layers = [layer for layer in lora_layers(self.language_model) if isinstance(layer, OmniLoraLinear)]
        self.post_init()

    def layer_classes(self) -> set[str]:
        """The units of sharding (accelerate's FSDP transformer wrap policy) and of device maps: `post_init` gathers
        the sub-models' `_no_split_modules`, of which only the classes this model holds are kept (the Whisper
        encoder names its decoder's layers too, and accelerate refuses a class it cannot find in the model)."""
        present = {type(module).__name__ for module in self.modules()}
        return {name for name in self._no_split_modules if name in present}

    def _build_projectors(self, modality: str, output_size: int) -> nn.ModuleDict | None:
        encoder_config = self.config.audio_config if modality == "audio" else self.config.video_config
        if encoder_config is None:
            return None
        rates = self.config.rates(modality) if self.config.projector_per_rate else ["shared"]

        def projector(rate):
            input_size = encoder_config.hidden_size * (rate if self.config.compression == "stack" else 1)
            return OmniAVSRProjector(
                input_size,
                self.config.projector_hidden_size,
                output_size,
                self.config.projector_hidden_act,
                self.config.projector_layer_norm,
            )

        return nn.ModuleDict({str(rate): projector(rate) for rate in rates})

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    # ----- media → LM embeddings -------------------------------------------------------------------------------

    def check_media(self, input_features=None, input_features_mask=None, pixel_values_videos=None, video_mask=None):
        """Refuse media tensors of the wrong shape, without their masks (or masks without them), empty batches, or
        batches of different sizes. Shapes only: no host sync, so the training forward runs it too."""
        for mask_name, mask, media_name, media in (
            ("input_features_mask", input_features_mask, "input_features", input_features),
            ("video_mask", video_mask, "pixel_values_videos", pixel_values_videos),
        ):
            if mask is not None and media is None:
                raise ValueError(f"{mask_name} was given without {media_name}; expected both (the processor's output).")
            if media is not None and media.ndim > 0 and media.shape[0] == 0:
                raise ValueError(f"{media_name} is an empty batch (0 clips); expected at least one clip.")
        sizes = {}
        if input_features is not None:
            if self.audio_encoder is None:
                raise ValueError("This model has no audio encoder (a VSR-only model): do not pass input_features.")
            expected_frames = 2 * self.config.audio_config.max_source_positions
            if input_features.ndim != 3 or input_features.shape[-1] != expected_frames:
                raise ValueError(
                    f"input_features has shape {tuple(input_features.shape)}; the Whisper encoder takes (batch, mel "
                    f"bins, {expected_frames}) ({expected_frames // 100} s, longer audio does not fit its window). Use "
                    "the processor, which pads every clip to the window and rejects longer ones."
                )
            mel_bins = self.config.audio_config.num_mel_bins
            if input_features.shape[1] != mel_bins:
                raise ValueError(
                    f"input_features has {input_features.shape[1]} mel bins; this model's audio encoder reads "
                    f"{mel_bins}. Expected the features of this model's processor (a feature extractor with "
                    f"feature_size={mel_bins})."
                )
            if input_features_mask is None:
                raise ValueError(
                    "input_features_mask is required with input_features: it tells how much of the 30 s Whisper "
                    "window is speech (OmniAVSRProcessor returns it)."
                )
            if tuple(input_features_mask.shape) != (input_features.shape[0], expected_frames):
                raise ValueError(
                    f"input_features_mask has shape {tuple(input_features_mask.shape)}; expected "
                    f"{(input_features.shape[0], expected_frames)}, one entry per mel frame of input_features."
                )
            sizes["input_features"] = input_features.shape[0]
        if pixel_values_videos is not None:
            if self.video_encoder is None:
                raise ValueError("This model has no video encoder (an ASR-only model): do not pass pixel_values_videos.")
            if pixel_values_videos.ndim != 5 or pixel_values_videos.shape[2] != 1:
                raise ValueError(
                    "pixel_values_videos must have shape (batch, frames, 1, height, width) (grayscale), got "
                    f"{tuple(pixel_values_videos.shape)}."
                )
            if video_mask is not None and tuple(video_mask.shape) != tuple(pixel_values_videos.shape[:2]):
                raise ValueError(
                    f"video_mask has shape {tuple(video_mask.shape)}; expected {tuple(pixel_values_videos.shape[:2])}, "
                    "one entry per frame of pixel_values_videos."
                )
            sizes["pixel_values_videos"] = pixel_values_videos.shape[0]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Batch sizes disagree: {sizes}.")

    def encode_audio(
        self, input_features: torch.Tensor, input_features_mask: torch.Tensor, official_padding: bool = False, **kwargs
    ) -> tuple[BaseModelOutputWithPooling, torch.Tensor]:
        """Whisper encoder frames (batch, frames, dim), cut after the longest clip, and the frames kept per clip."""
        self.check_media(input_features, input_features_mask)
        expected_frames = input_features.shape[-1]
        mel_lengths = kept_mel_frames(input_features_mask.sum(-1), expected_frames)
        input_features = input_features.to(self.audio_encoder.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_audio_encoder):
            if self.config.audio_full_window:
                outputs = self.audio_encoder(input_features, **kwargs)
            else:
                outputs = BaseModelOutputWithPooling(last_hidden_state=self._encode_audio_trimmed(input_features, mel_lengths))
        lengths = mel_lengths // 2
        if official_padding:
            lengths = torch.full_like(lengths, int(lengths.max()))
        outputs.last_hidden_state = outputs.last_hidden_state[:, : int(lengths.max())]
        return outputs, lengths

    def _encode_audio_trimmed(self, input_features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Whisper's encoder on the speech only, not the 30 s window (`audio_full_window=False`).

        Written out because `WhisperEncoder.forward` refuses inputs shorter than its window. Frames after each clip
        are zeroed and masked, so a clip gives the same output alone or in a batch.
        """
        encoder = self.audio_encoder
        num_mel = int(mel_lengths.max()) + int(mel_lengths.max()) % 2
        mel_mask = (torch.arange(num_mel, device=input_features.device)[None, :] < mel_lengths[:, None])[:, None, :]
        hidden_states = F.gelu(encoder.conv1(input_features[..., :num_mel] * mel_mask)) * mel_mask
        hidden_states = F.gelu(encoder.conv2(hidden_states)).permute(0, 2, 1)
        frame_mask = torch.arange(hidden_states.shape[1], device=hidden_states.device)[None, :] < (
            (mel_lengths[:, None] + 1) // 2
        )
        hidden_states = hidden_states + encoder.embed_positions.weight[: hidden_states.shape[1]]
        hidden_states = F.dropout(hidden_states, p=encoder.dropout, training=encoder.training)
        attention_mask = create_bidirectional_mask(
            config=encoder.config, inputs_embeds=hidden_states, attention_mask=frame_mask
        )
        for layer in encoder.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return encoder.layer_norm(hidden_states)

    @can_return_tuple
    def get_audio_features(
        self,
        input_features: torch.FloatTensor,
        input_features_mask: torch.LongTensor,
        audio_rate: int | None = None,
        official_padding: bool = False,
        **kwargs,
    ) -> OmniAVSRMediaOutput:
        r"""
        Whisper log-mel (batch, mels, 3000) → audio tokens in the LM's embedding space at `audio_rate` (default: the
        finest). `output_hidden_states` / `output_attentions` return the Whisper encoder's. `official_padding` gives
        every clip the longest clip's length (the reference's training batches, `train_padding="official"`).
        """
        outputs, lengths = self.encode_audio(input_features, input_features_mask, official_padding, **kwargs)
        return self.project_media("audio", outputs, lengths, audio_rate)

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_mask: torch.LongTensor | None = None,
        video_rate: int | None = None,
        official_padding: bool = False,
        **kwargs,
    ) -> OmniAVSRMediaOutput:
        r"""
        Lip video (batch, frames, 1, 88, 88) → video tokens in the LM's embedding space at `video_rate` (default: the
        finest). `output_hidden_states` / `output_attentions` return AV-HuBERT's. `official_padding` attends to padded
        frames (the reference's training batches, `train_padding="official"`).
        """
        outputs, lengths = self.encode_video(pixel_values_videos, video_mask, official_padding, **kwargs)
        return self.project_media("video", outputs, lengths, video_rate)

    def encode_video(
        self, pixel_values_videos: torch.Tensor, video_mask: torch.Tensor | None, official_padding: bool = False, **kwargs
    ) -> tuple[BaseModelOutput, torch.Tensor]:
        """AV-HuBERT frames (batch, frames, dim) and the frames of each clip."""
        self.check_media(pixel_values_videos=pixel_values_videos, video_mask=video_mask)
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_mask is None or official_padding:
            video_mask = torch.ones(batch_size, num_frames, dtype=torch.long, device=pixel_values_videos.device)
        pixel_values_videos = pixel_values_videos.to(self.video_encoder.dtype)
        outputs = self.video_encoder(pixel_values_videos, video_mask=video_mask, return_dict=True, **kwargs)
        return outputs, video_mask.sum(-1)

    def encode_media(
        self, input_features=None, input_features_mask=None, pixel_values_videos=None, video_mask=None, modalities=None
    ) -> dict[str, tuple[ModelOutput, torch.Tensor]]:
        """Each given modality (of `modalities`, default: all) through its encoder once: `{modality: (encoder output,
        frames per clip)}`, which `project_media` turns into tokens at any rate (e.g. every cell of a WER grid)."""
        modalities = {"audio", "video"} if modalities is None else set(modalities)
        encoded = {}
        if input_features is not None and "audio" in modalities:
            encoded["audio"] = self.encode_audio(input_features, input_features_mask)
        if pixel_values_videos is not None and "video" in modalities:
            encoded["video"] = self.encode_video(pixel_values_videos, video_mask)
        return encoded

    def project_media(
        self, modality: str, encoder_outputs: ModelOutput, frame_lengths: torch.Tensor, rate: int | None = None
    ) -> OmniAVSRMediaOutput:
        """Compress encoder frames by `rate` and project them: a modality's tokens at another rate reuse its encoder
        output (the WER evaluation encodes each clip once for every rate)."""
        rate = self.config.check_rate(modality, rate)
        compressed, token_lengths = compress_frames(
            encoder_outputs.last_hidden_state, frame_lengths, rate, self.config.compression
        )
        projectors = self.audio_projectors if modality == "audio" else self.video_projectors
        projector = projectors[str(rate)] if self.config.projector_per_rate else projectors["shared"]
        return OmniAVSRMediaOutput(
            last_hidden_state=encoder_outputs.last_hidden_state,
            pooler_output=projector(compressed.to(projector.linear_1.weight.dtype)),
            hidden_states=getattr(encoder_outputs, "hidden_states", None),
            attentions=getattr(encoder_outputs, "attentions", None),
            frame_lengths=frame_lengths,
            token_lengths=token_lengths,
            rate=rate,
        )

    def get_placeholder_mask(self, input_ids: torch.LongTensor, modality: str) -> torch.BoolTensor:
        """Where `input_ids` hold the modality's placeholder token (batch, sequence)."""
        token_id = self.config.audio_token_id if modality == "audio" else self.config.video_token_id
        return input_ids == token_id

    def merge_media(
        self, inputs_embeds: torch.Tensor, input_ids: torch.LongTensor, modality: str, features: OmniAVSRMediaOutput
    ) -> torch.Tensor:
        """Put each clip's tokens at its row's placeholders.

        Row `r` reads clip `r % clips` (rows repeat the clips, task group by task group, in training); the `i`-th
        placeholder of a row takes the clip's `i`-th token. Written with a gather and `torch.where` rather than
        `masked_scatter` of the valid tokens: that would need data-dependent shapes, which break `torch.compile`.
        """
        placeholders = self.get_placeholder_mask(input_ids, modality)
        counts = placeholders.sum(-1)
        tokens = features.pooler_output
        if input_ids.shape[0] % tokens.shape[0]:
            raise ValueError(
                f"input_ids has {input_ids.shape[0]} rows for {tokens.shape[0]} {modality} clips; expected one row per "
                "clip (or one group of rows per task)."
            )
        row_clip = torch.arange(input_ids.shape[0], device=input_ids.device) % tokens.shape[0]
        expected = features.token_lengths.to(input_ids.device)[row_clip]
        # Data-dependent checks would break a compiled graph; they run eagerly.
        if not is_torchdynamo_compiling() and not (torch.all((counts == expected) | (counts == 0)) and counts.sum() > 0):
            raise ValueError(
                f"The {modality} placeholders of input_ids do not match the {modality} features: {counts.tolist()} "
                f"placeholders per row for {expected.tolist()} tokens per clip at rate {features.rate}. Build "
                "input_ids and media with the same processor call (same rates)."
            )
        position = (placeholders.cumsum(-1) - 1).clamp(min=0, max=tokens.shape[1] - 1)
        gathered = tokens.to(inputs_embeds.device, inputs_embeds.dtype)[row_clip[:, None], position]
        return torch.where(placeholders[..., None], gathered, inputs_embeds)

    def check_input_ids(self, input_ids: torch.LongTensor) -> None:
        """Refuse ids that are neither in the LM's embeddings nor a media placeholder (ids of another tokenizer?),
        which would fail deep inside the embedding lookup. It reads the ids on the host: `generate` runs it, the
        training forward does not."""
        self.config.check_token_ids()
        vocabulary = self.get_input_embeddings().num_embeddings
        placeholders = (input_ids == self.config.audio_token_id) | (input_ids == self.config.video_token_id)
        outside = ((input_ids < 0) | (input_ids >= vocabulary)) & ~placeholders
        if outside.any():
            row, position = (int(index) for index in outside.nonzero()[0])
            raise ValueError(
                f"input_ids[{row}, {position}] is {int(input_ids[row, position])}: outside the language model's "
                f"vocabulary (0 to {vocabulary - 1}) and not a media placeholder ({self.config.audio_token_id}, "
                f"{self.config.video_token_id}); expected the ids this model's processor (its tokenizer) gives."
            )

    def embed_tokens(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """LM embeddings of `input_ids`; placeholders (which may lie past the LM's vocabulary) read the pad row."""
        self.config.check_token_ids()
        placeholders = (input_ids == self.config.audio_token_id) | (input_ids == self.config.video_token_id)
        return self.get_input_embeddings()(input_ids.masked_fill(placeholders, self.config.pad_token_id))

    def route_adapters(self, tasks: list[str], num_rows: int) -> None:
        """Give each group of rows the Omni-LoRA adapters of its task (`tasks` split the rows into equal groups)."""
        if "T" not in self.config.lora_variant:
            routing = [(("shared",), None)]
        elif len(tasks) == 1:
            routing = [(tuple(self.config.lora_adapter_names(tasks[0])), None)]
        else:
            routing = [(tuple(self.config.lora_adapter_names(task)), num_rows // len(tasks)) for task in tasks]
        set_adapter_routing(self._routed_lora_layers, routing)

    def resolve_tasks(self, task, input_features, pixel_values_videos) -> list[str]:
        """The tasks of the rows: given (one task or a list of row groups), or the one the media present imply."""
        if task is None:
            available = {
                modality for modality, value in (("audio", input_features), ("video", pixel_values_videos)) if value is not None
            }
            if not available:
                if "T" in self.config.lora_variant:
                    raise ValueError(
                        "Pass task= ('asr', 'vsr' or 'avsr'): without media the model cannot tell which task's "
                        "adapters to use."
                    )
                return [self.config.tasks[0]]
            return [self.config.default_task(available)]
        tasks = [task] if isinstance(task, str) else list(task)
        return [self.config.check_task(name) for name in tasks]

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_mask: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        task: str | list[str] | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        audio_features: OmniAVSRMediaOutput | None = None,
        video_features: OmniAVSRMediaOutput | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        task (`str` or `list[str]`, *optional*): the task whose Omni-LoRA adapters the LM uses (default: the one the
            media imply); a list splits the rows into equal groups, one per task.
        audio_rate, video_rate (`int`, *optional*): the rates the processor expanded the placeholders at.
        audio_features, video_features (`OmniAVSRMediaOutput`, *optional*): media already encoded by
            `get_audio_features` / `get_video_features`, instead of `input_features` / `pixel_values_videos`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids or inputs_embeds.")
        tasks = self.resolve_tasks(task, input_features, pixel_values_videos)
        # The tasks' modalities are merged; media a task does not read are left out.
        read = {modality for name in tasks for modality in TASK_MODALITIES[name]}
        media = {"audio": audio_features, "video": video_features}
        if input_features is not None and "audio" in read:
            media["audio"] = self.get_audio_features(input_features, input_features_mask, audio_rate)
        if pixel_values_videos is not None and "video" in read:
            media["video"] = self.get_video_features(pixel_values_videos, video_mask, video_rate)
        media = {modality: features if modality in read else None for modality, features in media.items()}
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
            for modality, features in media.items():
                if features is not None:
                    inputs_embeds = self.merge_media(inputs_embeds, input_ids, modality, features)
            prefill = cache is None or cache.get_seq_length() == 0
            if all(features is None for features in media.values()) and prefill and not is_torchdynamo_compiling():
                placeholders = (input_ids == self.config.audio_token_id) | (input_ids == self.config.video_token_id)
                if placeholders.any():
                    raise ValueError(
                        "input_ids hold media placeholders but no media were given: pass the input_features / "
                        "pixel_values_videos the processor returned with them."
                    )
        elif any(features is not None for features in media.values()):
            raise ValueError("Media go with input_ids (their placeholders say where); inputs_embeds are used as given.")
        if position_ids is None and attention_mask is not None and attention_mask.ndim == 2:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = positions_from_mask(attention_mask)[:, past:]
        self.route_adapters(tasks, inputs_embeds.shape[0])
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )


class OmniAVSRForConditionalGeneration(OmniAVSRPreTrainedModel, GenerationMixin):
    r"""
    Omni-AVSR: [`OmniAVSRModel`] and the LM head.

    - `model(**processor(audio=..., videos=..., task=..., text=...))`: logits, and `loss` with labels, for one task.
    - `model.generate(**processor(audio=..., videos=..., task=...))`: GenerationMixin's `generate`; like Voxtral, the
      returned sequences start with the prompt (`outputs[:, inputs["input_ids"].shape[1]:]` are the new tokens).
    - A training batch (media + transcripts in `labels`, no `input_ids`, as `OmniAVSRDataCollator` gives) trains every
      configured task with efficient matryoshka: one audio and one video rate are sampled per step (unless given),
      the encoders run once, and the three task sequences go through the LM in ONE call with Omni-LoRA routed per row.
    - `generate` on media alone (no `input_ids`) lays out the `task`'s prompt itself and returns only the new tokens.
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # Set by `generate` for its first forward (the prefill), whatever the decoding method: that forward checks that its
    # logits are finite, once per call, so that the training forward never waits on the device for it.
    _check_next_logits = False

    def __init__(self, config: OmniAVSRConfig):
        super().__init__(config)
        self.model = OmniAVSRModel(config)
        text_config = config.text_config
        self.lm_head = nn.Linear(text_config.hidden_size, text_config.vocab_size, bias=False)
        self.post_init()
        self._no_split_modules = self.model._no_split_modules = self.model.layer_classes()
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            max_new_tokens=128,
        )
        self.apply_freezing()

    @property
    def audio_encoder(self):
        return self.model.audio_encoder

    @property
    def video_encoder(self):
        return self.model.video_encoder

    @property
    def language_model(self):
        return self.model.language_model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load as usual (folders of the first releases too, through their parameter names), then re-apply the
        configured freezing (loading creates fresh trainable parameters).

        Weights of the wrong shape are refused, naming them (pass `ignore_mismatched_sizes=True` to initialise them
        anew). Weights the model has and the checkpoint lacks, or the reverse, are kept in `checkpoint_gaps`: training
        from a folder may add parameters, but inference must not run on initialised ones (`check_weights_loaded`).
        """
        legacy = {"^" + re.escape(old): new for old, new in LEGACY_KEY_PREFIXES.items()}
        kwargs["key_mapping"] = {**legacy, **(kwargs.get("key_mapping") or {})}
        output_loading_info = kwargs.pop("output_loading_info", False)
        ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
        # Mismatched weights are loaded as "ignored" so that the refusal below can name them and the folder.
        model, loading_info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
        mismatched = sorted(loading_info["mismatched_keys"])
        if mismatched and not ignore_mismatched_sizes:
            shapes = "; ".join(
                f"{key} (checkpoint {tuple(saved)}, model {tuple(built)})" for key, saved, built in mismatched[:3]
            )
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(mismatched)} weights do not have the shape its config.json "
                f"gives them: {shapes}. Expected the config.json saved with these weights (projector_hidden_size, "
                "lora_rank, encoder sizes, ...); pass ignore_mismatched_sizes=True to initialise them anew for "
                "training."
            )
        model.checkpoint_gaps = {
            "source": str(pretrained_model_name_or_path),
            "missing": sorted(loading_info["missing_keys"] | {key for key, _, _ in mismatched}),
            "unexpected": sorted(loading_info["unexpected_keys"]),
        }
        model.apply_freezing()
        return (model, loading_info) if output_loading_info else model

    def check_weights_loaded(self) -> None:
        """Refuse to transcribe with a model whose checkpoint did not hold exactly its weights (a config.json edited
        or from another checkpoint: other rates, LoRA variant, projector layout): the weights it lacks were
        initialised at random, and the ones it does not use were dropped. Training fills such weights: `train()`
        forgets the gaps. The pipelines and the command line call it; a model built in memory passes."""
        gaps = getattr(self, "checkpoint_gaps", None)
        if gaps is None or not (gaps["missing"] or gaps["unexpected"]):
            return

        def listed(keys):
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

        found = [f"{len(gaps[kind])} {kind} ({listed(gaps[kind])})" for kind in ("missing", "unexpected") if gaps[kind]]
        raise ValueError(
            f"{gaps['source']}: its weights do not cover the model its config.json describes: {' and '.join(found)} "
            "weights, so it would transcribe with randomly initialised ones. Expected the config.json saved with "
            "these weights (the same audio_rates, video_rates, lora_variant, tasks, projector layout); training from "
            "the folder (from_pretrained, then train) may add weights."
        )

    @classmethod
    def from_components(
        cls,
        language_model: PreTrainedModel,
        tokenizer,
        audio_encoder: PreTrainedModel | None = None,
        video_encoder: PreTrainedModel | None = None,
        **config_kwargs,
    ) -> "OmniAVSRForConditionalGeneration":
        """Assemble a model from pretrained parts: a causal LM, its tokenizer with the Omni-AVSR markers and
        placeholders (see `OmniAVSRProcessor`), a Whisper encoder (`WhisperModel.encoder` or `WhisperEncoder`) and/or
        an `AVHubertVideoModel`. `config_kwargs` are `OmniAVSRConfig` options (rates, `lora_variant`, ...).
        The LM's embeddings are resized to cover the tokenizer but its placeholders (new rows: mean of the old ones)
        before copying.
        """
        vocabulary = text_vocabulary_size(tokenizer)
        if language_model.get_input_embeddings().num_embeddings < vocabulary:
            language_model.resize_token_embeddings(vocabulary)
        config = OmniAVSRConfig(
            audio_config=audio_encoder.config if audio_encoder is not None else None,
            video_config=video_encoder.config if video_encoder is not None else None,
            text_config=language_model.config,
            **config_kwargs,
        )
        config.set_token_ids(tokenizer)
        model = cls(config)
        for target, source in (
            (model.model.audio_encoder, audio_encoder),
            (model.model.video_encoder, video_encoder),
            (model.model.language_model, language_model.get_decoder() if language_model is not None else None),
        ):
            if source is not None:
                _load_into_lora_wrapped(target, source.state_dict())
        if not config.tie_word_embeddings:
            model.lm_head.load_state_dict(language_model.get_output_embeddings().state_dict())
        model.apply_freezing()
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also map `AutoModelForSpeechSeq2Seq` to this class for remote-code loading (`auto_map` holds one entry per
        auto class and `register_for_auto_class` sets only one)."""
        if self._auto_class is not None:
            class_path = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModelForSpeechSeq2Seq": class_path}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def apply_freezing(self) -> None:
        """Train LoRA adapters and projectors; the encoders and the LM (its head included) only when the config
        unfreezes them."""
        frozen_prefixes = tuple(
            prefix
            for prefix, frozen in (
                ("model.audio_encoder.", self.config.freeze_audio_encoder),
                ("model.video_encoder.", self.config.freeze_video_encoder),
                ("model.language_model.", self.config.freeze_language_model),
                ("lm_head.", self.config.freeze_language_model),
            )
            if frozen
        )
        for name, param in self.named_parameters():
            param.requires_grad = ".lora_" in name or not name.startswith(frozen_prefixes)

    def train(self, mode: bool = True):
        """Frozen encoders stay in eval mode (no dropout, fixed BatchNorm statistics) while the rest trains. Weights
        the checkpoint lacked get trained from here on, so `check_weights_loaded` no longer refuses them."""
        super().train(mode)
        if mode:
            self.checkpoint_gaps = None
        for encoder, frozen in (
            (self.model.audio_encoder, self.config.freeze_audio_encoder),
            (self.model.video_encoder, self.config.freeze_video_encoder),
        ):
            if encoder is not None and frozen:
                encoder.eval()
        return self

    def resize_token_embeddings(self, *args, **kwargs):
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        self.apply_freezing()
        return embeddings

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_audio_features(self, *args, **kwargs) -> OmniAVSRMediaOutput:
        return self.model.get_audio_features(*args, **kwargs)

    def get_video_features(self, *args, **kwargs) -> OmniAVSRMediaOutput:
        return self.model.get_video_features(*args, **kwargs)

    # ----- forward --------------------------------------------------------------------------------------------

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_mask: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        task: str | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        tasks: list[str] | None = None,
        output_logits: bool = False,
        **kwargs,
    ) -> CausalLMOutputWithPast | OmniAVSROutput:
        r"""
        With `input_ids` (or `inputs_embeds`): one LM pass on the sequence the processor laid out, the media merged at
        its placeholders; `labels` aligned with `input_ids` give the token-mean cross-entropy.

        Without them, a training batch: `labels` are the transcripts (ids + EOS, -100 padding) and every task in
        `tasks` (default: the config's) is trained in one LM call; `audio_rate` / `video_rate` fix the rates (sampled
        per step in training, the finest in eval mode); `output_logits=True` adds per-task logits and labels.
        """
        if input_ids is None and inputs_embeds is None:
            if labels is None:
                raise ValueError(
                    "forward() needs input_ids (from processor(..., task=...)) or, for a training batch of media, "
                    "`labels` holding the transcripts."
                )
            return self._multitask_forward(
                input_features, input_features_mask, pixel_values_videos, video_mask, labels,
                tasks or self.config.tasks, audio_rate, video_rate, output_logits,
            )
        outputs = self.model(
            input_ids=input_ids,
            input_features=input_features,
            input_features_mask=input_features_mask,
            pixel_values_videos=pixel_values_videos,
            video_mask=video_mask,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            task=task,
            audio_rate=audio_rate,
            video_rate=video_rate,
            return_dict=True,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        if self._check_next_logits:
            self._check_next_logits = False
            if not torch.isfinite(logits[:, -1]).all():
                raise self._non_finite_logits_error()
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _multitask_forward(
        self, input_features, input_features_mask, pixel_values_videos, video_mask, labels, tasks, audio_rate,
        video_rate, output_logits,
    ) -> OmniAVSROutput:
        tasks = [self.config.check_task(task) for task in tasks]
        self._check_tasks_have_media(tasks, input_features, pixel_values_videos, labels)
        if self.config.has_modality("audio"):
            audio_rate = audio_rate if audio_rate is not None or not self.training else self._sample_rate("audio")
        if self.config.has_modality("video"):
            video_rate = video_rate if video_rate is not None or not self.training else self._sample_rate("video")
        official_padding = self.config.train_padding == "official"
        needed = {modality for task in tasks for modality in TASK_MODALITIES[task]}
        media = {}
        if "audio" in needed:
            media["audio"] = self.model.get_audio_features(
                input_features, input_features_mask, audio_rate, official_padding=official_padding
            )
        if "video" in needed:
            media["video"] = self.model.get_video_features(
                pixel_values_videos, video_mask, video_rate, official_padding=official_padding
            )
        input_ids, packed_labels = self._training_sequences(tasks, media, labels)
        # Right padding + causal attention: real tokens never see the padding, so no mask is needed.
        hidden_states = self.model(
            input_ids=input_ids,
            task=tasks,
            audio_features=media.get("audio"),
            video_features=media.get("video"),
            use_cache=False,
            return_dict=True,
        ).last_hidden_state
        batch_size = labels.shape[0]
        shift_labels = packed_labels[:, 1:]
        target_mask = shift_labels != IGNORE_INDEX
        # Logits only where there is a target: the LM head is a large share of a step's cost.
        logits = self.lm_head(hidden_states[:, :-1][target_mask]).float()
        token_losses = F.cross_entropy(logits, shift_labels[target_mask], reduction="none")
        token_rows = torch.arange(len(shift_labels), device=shift_labels.device)[:, None].expand_as(shift_labels)
        token_tasks = token_rows[target_mask] // batch_size
        task_losses = {task: token_losses[token_tasks == index].mean() for index, task in enumerate(tasks)}
        loss = sum(self.config.task_weight(task) * task_loss for task, task_loss in task_losses.items())
        task_logits = task_labels = None
        if output_logits:
            all_logits = self.lm_head(hidden_states).float()
            rows = {task: slice(index * batch_size, (index + 1) * batch_size) for index, task in enumerate(tasks)}
            task_logits = {task: all_logits[rows[task]] for task in tasks}
            task_labels = {task: packed_labels[rows[task]] for task in tasks}
        return OmniAVSROutput(
            loss=loss,
            **{f"{task}_loss": task_loss for task, task_loss in task_losses.items()},
            audio_rate=media["audio"].rate if "audio" in media else None,
            video_rate=media["video"].rate if "video" in media else None,
            task_logits=task_logits,
            task_labels=task_labels,
        )

    def _training_sequences(
        self, tasks: list[str], media: dict[str, OmniAVSRMediaOutput], labels: torch.Tensor
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Every task's row for every clip, grouped by task: the prompt with its placeholders, then the transcript
        (teacher forcing), right-padded; and the labels (-100 outside the transcript)."""
        tokens = self.config.sequence_tokens()
        counts = {modality: features.token_lengths.tolist() for modality, features in media.items()}
        transcripts = labels.tolist()
        rows, row_labels = [], []
        for task in tasks:
            for prefix, transcript in zip(tokens.batch_prompt_ids(task, counts), transcripts):
                rows.append(prefix + [self.config.pad_token_id if token == IGNORE_INDEX else token for token in transcript])
                row_labels.append([IGNORE_INDEX] * len(prefix) + transcript)
        input_ids, _ = pad_rows(rows, self.config.pad_token_id, "right")
        packed_labels, _ = pad_rows(row_labels, IGNORE_INDEX, "right")
        return input_ids.to(labels.device), packed_labels.to(labels.device)

    def _check_tasks_have_media(self, tasks, input_features, pixel_values_videos, labels=None) -> None:
        for task in tasks:
            if "audio" in TASK_MODALITIES[task] and input_features is None:
                raise ValueError(f"Task {task!r} needs audio: pass input_features (and input_features_mask).")
            if "video" in TASK_MODALITIES[task] and pixel_values_videos is None:
                raise ValueError(f"Task {task!r} needs lip video: pass pixel_values_videos (and video_mask).")
        sizes = {
            name: tensor.shape[0]
            for name, tensor in (
                ("input_features", input_features),
                ("pixel_values_videos", pixel_values_videos),
                ("labels", labels),
            )
            if tensor is not None
        }
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Batch sizes disagree: {sizes}.")

    def _sample_rate(self, modality: str) -> int:
        rates = self.config.rates(modality)
        return rates[int(torch.randint(len(rates), ()))]

    # ----- generate -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_mask: torch.LongTensor | None = None,
        task: str | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        **generate_kwargs,
    ):
        r"""
        GenerationMixin's `generate` (greedy, beam search, sampling, a `cache` to continue from, prompt-lookup assisted
        decoding, `return_dict_in_generate`, ...) on the sequence the processor laid out. Like Voxtral, the returned
        sequences start with `input_ids`: slice `[:, input_ids.shape[1]:]` for the transcript. (A draft
        `assistant_model` is refused: `generate` hands it the prompt without the media.)

        Without `input_ids`, the prompt of `task` (default: `avsr` with both media, else the task the media allow)
        is laid out here at `audio_rate` / `video_rate` (default: the finest) and only the new tokens are returned,
        as `generate` does for a prompt given as `inputs_embeds` (which also works, with `task`, for media merged
        beforehand, e.g. by `prompt_embeddings`).

        Beam search (and `num_return_sequences > 1`) prefills the prompt once per clip and hands `generate` the cache
        repeated per beam: `generate` would otherwise repeat each prompt per beam before its prefill, putting the
        long media prompt through the LM `num_beams` times. `share_prompt_prefill=False` turns this off.
        """
        share_prefill = generate_kwargs.pop("share_prompt_prefill", True)
        if generate_kwargs.get("labels") is not None:
            raise ValueError("generate() takes no labels; use forward() to score a transcript.")
        inputs_embeds = generate_kwargs.pop("inputs_embeds", None)
        media = {
            "input_features": input_features,
            "input_features_mask": input_features_mask,
            "pixel_values_videos": pixel_values_videos,
            "video_mask": video_mask,
        }
        self.model.check_media(**media)
        if inputs_embeds is not None and (input_features is not None or pixel_values_videos is not None):
            raise ValueError("Media go with input_ids (their placeholders say where); inputs_embeds are used as given.")
        self._check_generate_inputs(input_ids, inputs_embeds, media, generate_kwargs)
        task = self.model.resolve_tasks(task, input_features, pixel_values_videos)[0]
        needs = ()
        cache = generate_kwargs.get("cache", generate_kwargs.get("past_key_values"))
        if inputs_embeds is None and (cache is None or cache.get_seq_length() == 0):
            # A prompt read from scratch needs its media; one continued from a cache has them in the cache.
            self._check_tasks_have_media([task], input_features, pixel_values_videos)
            needs = TASK_MODALITIES[task]
        # Only the media the task reads go to the LM's prompt.
        media = {name: media[name] for modality in needs for name in MEDIA_INPUTS[modality] if media[name] is not None}
        rates = {
            f"{modality}_rate": self.config.check_rate(modality, rate) if modality in needs else None
            for modality, rate in (("audio", audio_rate), ("video", video_rate))
        }
        new_tokens_only = input_ids is None and inputs_embeds is None
        if new_tokens_only:
            input_ids, generate_kwargs["attention_mask"] = self._prompt_from_media(task, media, rates)
        prompt = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        if generate_kwargs.get("attention_mask") is None:
            generate_kwargs["attention_mask"] = torch.ones(next(iter(prompt.values())).shape[:2], dtype=torch.long,
                                                           device=self.device)
        generation_config = generate_kwargs.get("generation_config") or self.generation_config
        copies = max(
            generate_kwargs.get("num_beams", generation_config.num_beams) or 1,
            generate_kwargs.get("num_return_sequences", generation_config.num_return_sequences) or 1,
        )
        if share_prefill and copies > 1 and generate_kwargs.get("cache") is None:
            generate_kwargs["cache"] = self._prefill_prompt(prompt, generate_kwargs["attention_mask"], task, media, rates)
            generate_kwargs["cache"].batch_repeat_interleave(copies)
            media = {}
        # Tokens picked from NaN scores decode to an empty or garbage transcript, with no error.
        self._check_next_logits = True
        try:
            outputs = super().generate(**prompt, task=task, **media, **rates, **generate_kwargs)
        finally:
            self._check_next_logits = False
        if not new_tokens_only:
            return outputs
        prompt_length = input_ids.shape[1]
        if isinstance(outputs, torch.Tensor):
            return outputs[:, prompt_length:]
        outputs.sequences = outputs.sequences[:, prompt_length:]
        return outputs

    def _check_generate_inputs(self, input_ids, inputs_embeds, media: dict, generate_kwargs: dict) -> None:
        """What `generate` refuses before any work (inputs from the processor pass): non-finite media or embeddings,
        a clip whose mask marks no frame (it would be transcribed from padding alone), prompts and masks that disagree
        with each other or the media, ids outside the vocabulary, beam counts that are not whole numbers ≥ 1. Reading
        values syncs with the device once per call, never in training."""
        for name, values in (*media.items(), ("inputs_embeds", inputs_embeds)):
            if values is not None and values.is_floating_point():
                check_finite(name, values)
        for name in ("input_features_mask", "video_mask"):
            if media[name] is not None and media[name].ndim == 2:
                empty = (media[name].sum(-1) == 0).nonzero().flatten().tolist()
                if empty:
                    raise ValueError(
                        f"{name} marks no frame of clip(s) {empty}; expected at least one frame per clip (a clip "
                        "without media has nothing to transcribe)."
                    )
        prompt_name, prompt = ("input_ids", input_ids) if input_ids is not None else ("inputs_embeds", inputs_embeds)
        if prompt is not None:
            if prompt.shape[0] == 0:
                raise ValueError(f"{prompt_name} is an empty batch (0 rows); expected at least one clip.")
            attention_mask = generate_kwargs.get("attention_mask")
            if attention_mask is not None and tuple(attention_mask.shape) != tuple(prompt.shape[:2]):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected {tuple(prompt.shape[:2])}, one "
                    f"entry per token of {prompt_name}."
                )
            for name in ("input_features", "pixel_values_videos"):
                if media[name] is not None and media[name].shape[0] != prompt.shape[0]:
                    raise ValueError(
                        f"{name} holds {media[name].shape[0]} clip(s) but {prompt_name} has {prompt.shape[0]} row(s); "
                        "expected one row per clip (the processor's output as it is)."
                    )
        if input_ids is not None:
            self.model.check_input_ids(input_ids)
        generation_config = generate_kwargs.get("generation_config") or self.generation_config
        for name in ("num_beams", "num_return_sequences"):
            value = generate_kwargs.get(name, getattr(generation_config, name))
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}.")

    def _non_finite_logits_error(self) -> ValueError:
        """The error for NaN or ±inf logits from finite inputs (`generate` checked them): it names the weights that
        are not finite, or else the arithmetic that overflowed."""
        tensors = (*self.named_parameters(), *self.named_buffers())
        broken = [
            name for name, tensor in tensors
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
        ]
        if broken:
            listed = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
            cause = f"the weights {listed} hold NaN or infinite values (a corrupt or diverged checkpoint?)"
        else:
            cause = f"the weights are finite, so the {self.dtype} arithmetic overflowed (try float32 or bfloat16)"
        return ValueError(
            f"The model's logits are NaN or infinite: {cause}. No transcript is returned; expected a checkpoint with "
            "finite weights."
        )

    def prompt_embeddings(
        self, task: str, audio_features: OmniAVSRMediaOutput | None = None, video_features: OmniAVSRMediaOutput | None = None
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """The left-padded prompt of `task` with media already encoded merged in, and its attention mask: what
        `generate(inputs_embeds=..., attention_mask=..., task=...)` takes. Lets a caller encode clips once and decode
        them at several rates (`OmniAVSRModel.project_media`)."""
        features = {"audio": audio_features, "video": video_features}
        missing = [modality for modality in TASK_MODALITIES[task] if features[modality] is None]
        if missing:
            raise ValueError(f"task={task!r} needs the {' and '.join(missing)} features.")
        features = {modality: features[modality] for modality in TASK_MODALITIES[task]}
        counts = {modality: value.token_lengths.tolist() for modality, value in features.items()}
        input_ids, attention_mask = self.prompt_input_ids(task, counts, self.device)
        inputs_embeds = self.model.embed_tokens(input_ids)
        for modality, value in features.items():
            inputs_embeds = self.model.merge_media(inputs_embeds, input_ids, modality, value)
        return inputs_embeds, attention_mask

    def _prompt_from_media(self, task: str, media: dict, rates: dict) -> tuple[torch.LongTensor, torch.LongTensor]:
        """`input_ids` and attention mask of `task`'s prompt for media without them (left-padded, as the processor)."""
        counts = {}
        if "input_features" in media:
            frames = audio_encoder_frames(media["input_features_mask"].sum(-1), media["input_features"].shape[-1])
            counts["audio"] = compressed_length(frames, rates["audio_rate"]).tolist()
        if "pixel_values_videos" in media:
            batch_size, num_frames = media["pixel_values_videos"].shape[:2]
            frames = media["video_mask"].sum(-1) if "video_mask" in media else torch.full((batch_size,), num_frames)
            counts["video"] = compressed_length(frames, rates["video_rate"]).tolist()
        return self.prompt_input_ids(task, counts, next(iter(media.values())).device)

    def prompt_input_ids(
        self, task: str, token_counts: dict[str, list[int]], device=None
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Left-padded `input_ids` and attention mask of `task`'s prompt for clips with `token_counts` media tokens
        (`{"audio": [...], "video": [...]}`), as the processor lays them out."""
        rows = self.config.sequence_tokens().batch_prompt_ids(task, token_counts)
        input_ids, attention_mask = pad_rows(rows, self.config.pad_token_id, "left")
        return input_ids.to(device), attention_mask.to(device)

    def _prefill_prompt(self, prompt: dict, attention_mask, task: str, media: dict, rates: dict) -> DynamicCache:
        """The LM's cache over all of the prompt but its last token, at the positions `generate` derives."""
        cache = DynamicCache(config=self.config.text_config)
        self.model(
            **{name: value[:, :-1] for name, value in prompt.items()},
            attention_mask=attention_mask[:, :-1],
            cache=cache,
            use_cache=True,
            task=task,
            **media,
            **rates,
        )
        return cache


def _load_into_lora_wrapped(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a plain state dict into `module` whose linear layers may be wrapped by peft (`x.base_layer.weight`)."""
    target_keys = set(module.state_dict())
    mapped = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        wrapped_key = f"{prefix}.base_layer.{leaf}"
        mapped[key if key in target_keys or wrapped_key not in target_keys else wrapped_key] = value
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    missing = [key for key in missing if ".lora_" not in key]
    if missing or unexpected:
        raise ValueError(
            f"Component weights do not fit the {type(module).__name__} built from the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )


__all__ = [
    "OmniAVSRForConditionalGeneration",
    "OmniAVSRMediaOutput",
    "OmniAVSRModel",
    "OmniAVSRPreTrainedModel",
    "OmniAVSROutput",
    "OmniAVSRProjector",
]
