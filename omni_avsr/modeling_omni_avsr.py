"""Omni-AVSR: one audio-visual LLM for ASR, VSR and AVSR with compression rates chosen at inference time.

This file holds the model: encoders, compression, projectors, the merge at the placeholders, the LM with Omni-LoRA,
the LM head, `forward` and `generate`'s hooks. What it refuses is in `input_checks.py`, the names of earlier layouts in
`conversion_mapping_omni_avsr.py`; the efficient-matryoshka training step, the training policy (what trains) and the
assembly from pretrained parts are the training layer's (`omni_avsr/training/`: matryoshka.py, policy.py,
assembly.py).
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, DynamicCache, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.generation import LogitsProcessorList
from transformers.activations import ACT2FN
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
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

from .configuration_omni_avsr import TASK_MODALITIES, OmniAVSRConfig
from .conversion_mapping_omni_avsr import CHECKPOINT_RENAMES
from .input_checks import FiniteLogitsCheck, check_generate_inputs, check_media, placeholder_mask
from .modeling_avhubert import AVHubertVideoModel
from .omni_lora import OmniLoraLinear, add_lora_adapters, lora_layers, reset_lora_parameters, set_adapter_routing


# Folders of earlier layouts load under today's names.
register_checkpoint_conversion_mapping(
    "omni_avsr", [WeightRenaming(old, new) for old, new in CHECKPOINT_RENAMES.items()], overwrite=True
)


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


# Whisper encoder frames per second of audio: 100 log-mel frames, halved by its convolutions.
AUDIO_FRAMES_PER_SECOND = 50
# The official code never keeps fewer than 25 Whisper frames (0.5 s), even for shorter clips.
MIN_AUDIO_FRAMES = 25


def kept_mel_frames(num_mel_frames: torch.Tensor, max_mel_frames: int) -> torch.Tensor:
    """Log-mel frames of a clip that the audio path keeps: at least `MIN_AUDIO_FRAMES` encoder frames' worth (a
    shorter clip keeps some of the silence after it, as the official code), at most the Whisper window."""
    return num_mel_frames.clamp(min=2 * MIN_AUDIO_FRAMES, max=max_mel_frames)


def audio_encoder_frames(num_mel_frames: torch.Tensor, max_mel_frames: int) -> torch.Tensor:
    """Whisper frames kept for a clip of `num_mel_frames` log-mel frames: Whisper's convolutions halve them."""
    return kept_mel_frames(num_mel_frames, max_mel_frames) // 2


def compressed_length(num_frames, rate: int):
    """Tokens left of `num_frames` encoder frames compressed by `rate` (ints or tensors): what the processor lays
    out placeholders for and `compress_frames` keeps.

    A tail shorter than the rate is dropped, as the official code's average pooling does, except that a clip
    shorter than one window still gives one token.
    """
    return num_frames // rate + (num_frames < rate)


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
        self.audio_tower = WhisperEncoder(config.audio_config) if config.audio_config is not None else None
        self.video_tower = AVHubertVideoModel(config.video_config) if config.video_config is not None else None
        self.audio_projectors = self._build_projectors("audio", text_hidden_size)
        self.video_projectors = self._build_projectors("video", text_hidden_size)
        self.language_model = AutoModel.from_config(config.text_config)
        if self.video_tower is not None and config.video_lora_rank > 0:
            add_lora_adapters(
                self.video_tower.encoder,
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
            routed=True,
        )
        self._routed_lora_layers = [layer for layer in lora_layers(self.language_model) if isinstance(layer, OmniLoraLinear)]
        # peft's injection freezes the layers it wraps; what trains is the training run's policy
        # (`omni_avsr.training.policy`): built, as loaded, every parameter requires grad, as in transformers.
        self.requires_grad_(True)
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

    def encode_audio(
        self, input_features: torch.Tensor, input_features_mask: torch.Tensor, **kwargs
    ) -> tuple[BaseModelOutputWithPooling, torch.Tensor]:
        """Whisper encoder frames (batch, frames, dim), cut after the longest clip, and the frames kept per clip."""
        check_media(self.config, input_features, input_features_mask)
        expected_frames = input_features.shape[-1]
        mel_lengths = kept_mel_frames(input_features_mask.sum(-1), expected_frames)
        input_features = input_features.to(self.audio_tower.dtype)
        if self.config.audio_full_window:
            outputs = self.audio_tower(input_features, **kwargs)
        else:
            outputs = BaseModelOutputWithPooling(last_hidden_state=self._encode_audio_trimmed(input_features, mel_lengths))
        lengths = mel_lengths // 2
        outputs.last_hidden_state = outputs.last_hidden_state[:, : int(lengths.max())]
        return outputs, lengths

    def _encode_audio_trimmed(self, input_features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Whisper's encoder on the speech only, not the 30 s window (`audio_full_window=False`).

        Written out because `WhisperEncoder.forward` refuses inputs shorter than its window. Frames after each clip
        are zeroed and masked, so a clip gives the same output alone or in a batch.
        """
        encoder = self.audio_tower
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
        **kwargs,
    ) -> OmniAVSRMediaOutput:
        r"""
        Whisper log-mel (batch, mels, 3000) → audio tokens in the LM's embedding space at `audio_rate` (default: the
        finest). `output_hidden_states` / `output_attentions` return the Whisper encoder's.
        """
        outputs, lengths = self.encode_audio(input_features, input_features_mask, **kwargs)
        return self.project_media("audio", outputs, lengths, audio_rate)

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_mask: torch.LongTensor | None = None,
        video_rate: int | None = None,
        **kwargs,
    ) -> OmniAVSRMediaOutput:
        r"""
        Lip video (batch, frames, 1, 88, 88) → video tokens in the LM's embedding space at `video_rate` (default: the
        finest; all frames count where `video_mask` is None). `output_hidden_states` / `output_attentions` return
        AV-HuBERT's.
        """
        outputs, lengths = self.encode_video(pixel_values_videos, video_mask, **kwargs)
        return self.project_media("video", outputs, lengths, video_rate)

    def encode_video(
        self, pixel_values_videos: torch.Tensor, video_mask: torch.Tensor | None, **kwargs
    ) -> tuple[BaseModelOutput, torch.Tensor]:
        """AV-HuBERT frames (batch, frames, dim) and the frames of each clip."""
        check_media(self.config, pixel_values_videos=pixel_values_videos, video_mask=video_mask)
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(batch_size, num_frames, dtype=torch.long, device=pixel_values_videos.device)
        pixel_values_videos = pixel_values_videos.to(self.video_tower.dtype)
        outputs = self.video_tower(pixel_values_videos, video_mask=video_mask, return_dict=True, **kwargs)
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

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, modality: str
    ) -> torch.BoolTensor:
        """Where the sequence holds the modality's placeholder token (batch, sequence): read from `input_ids`, or,
        without them, from `inputs_embeds` (possible where the placeholder has an embedding row)."""
        if input_ids is not None:
            return placeholder_mask(self.config, input_ids, modality)
        token_id = self.config.audio_token_id if modality == "audio" else self.config.video_token_id
        embeddings = self.get_input_embeddings()
        if token_id >= embeddings.num_embeddings:
            raise ValueError(
                f"inputs_embeds come with {modality} features, but this model's {modality} placeholder (id {token_id}) "
                f"lies past the language model's {embeddings.num_embeddings} embedding rows, so it cannot be found in "
                "embeddings: pass input_ids (the processor's) instead of inputs_embeds."
            )
        placeholder = embeddings(torch.tensor(token_id, device=inputs_embeds.device)).to(inputs_embeds.dtype)
        return (inputs_embeds == placeholder).all(-1)

    def merge_media(
        self, inputs_embeds: torch.Tensor, input_ids: torch.LongTensor | None, media: dict[str, OmniAVSRMediaOutput]
    ) -> torch.Tensor:
        """`inputs_embeds` with each modality's projected tokens (`get_audio_features` / `get_video_features`) at its
        placeholders (`get_placeholder_mask`): what `forward` does with the media, and what a caller that encoded the
        media once for several rates (the WER evaluation) gives `generate(inputs_embeds=...)`."""
        for modality, features in media.items():
            placeholders = self.get_placeholder_mask(input_ids, inputs_embeds, modality)
            inputs_embeds = self._place_tokens(inputs_embeds, placeholders, modality, features)
        return inputs_embeds

    def _place_tokens(
        self, inputs_embeds: torch.Tensor, placeholders: torch.BoolTensor, modality: str, features: OmniAVSRMediaOutput
    ) -> torch.Tensor:
        """Row `r` reads clip `r % clips` (rows repeat the clips, task group by task group, in training); the `i`-th
        placeholder of a row takes the clip's `i`-th token. Written with a gather and `torch.where` rather than
        `masked_scatter` of the valid tokens: that would need data-dependent shapes, which break `torch.compile`."""
        counts = placeholders.sum(-1)
        tokens = features.pooler_output
        num_rows = placeholders.shape[0]
        if num_rows % tokens.shape[0]:
            raise ValueError(
                f"The sequence has {num_rows} rows for {tokens.shape[0]} {modality} clips; expected one row per clip "
                "(or one group of rows per task)."
            )
        row_clip = torch.arange(num_rows, device=placeholders.device) % tokens.shape[0]
        expected = features.token_lengths.to(placeholders.device)[row_clip]
        # Data-dependent checks would break a compiled graph; they run eagerly.
        if not is_torchdynamo_compiling() and not (torch.all((counts == expected) | (counts == 0)) and counts.sum() > 0):
            raise ValueError(
                f"The {modality} placeholders of input_ids do not match the {modality} features: {counts.tolist()} "
                f"placeholders per row for {expected.tolist()} tokens per clip at rate {features.rate}. Build "
                "input_ids and media with the same processor call (same task and rates)."
            )
        position = (placeholders.cumsum(-1) - 1).clamp(min=0, max=tokens.shape[1] - 1)
        gathered = tokens.to(inputs_embeds.device, inputs_embeds.dtype)[row_clip[:, None], position]
        return torch.where(placeholders[..., None], gathered, inputs_embeds)

    def embed_tokens(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """LM embeddings of `input_ids`. Placeholders past the LM's vocabulary (converted models have no row for them)
        read the pad row; media replace them anyway."""
        self.config.check_token_ids()
        embeddings = self.get_input_embeddings()
        rowless = placeholder_mask(self.config, input_ids) & (input_ids >= embeddings.num_embeddings)
        return embeddings(input_ids.masked_fill(rowless, self.config.pad_token_id))

    def route_adapters(self, tasks: list[str], num_rows: int) -> None:
        """Give each group of rows the Omni-LoRA adapters of its task (`tasks` split the rows into equal groups).
        Without a task, the LM runs with the adapters every task shares: `shared` (S, ST), none (T)."""
        if "T" not in self.config.lora_variant or not tasks:
            routing = [(("shared",), None)] if "S" in self.config.lora_variant else []
        elif len(tasks) == 1:
            routing = [(tuple(self.config.lora_adapter_names(tasks[0])), None)]
        else:
            routing = [(tuple(self.config.lora_adapter_names(task)), num_rows // len(tasks)) for task in tasks]
        set_adapter_routing(self._routed_lora_layers, routing)

    def resolve_tasks(self, task, available_modalities) -> list[str]:
        """The tasks of the rows: given (one task, or a list of equal row groups), else the one the media given imply
        (`avsr` with both), else none (a text-only sequence: see `route_adapters`)."""
        if task is None:
            return [self.config.default_task(available_modalities)] if available_modalities else []
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
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        task (`str` or `list[str]`, *optional*): the task whose Omni-LoRA adapters the LM uses (default: the one the
            media imply; none for text alone, see `route_adapters`); a list splits the rows into equal groups, one per
            task, which all read the same clips.
        audio_rate, video_rate (`int`, *optional*): the rates the processor expanded the placeholders at.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(
                "Give exactly one of input_ids or inputs_embeds (processor(..., task=...) lays out input_ids; a "
                "training batch of clips and transcripts is laid out by omni_avsr.training.matryoshka)."
            )
        given = {"audio": input_features, "video": pixel_values_videos}
        tasks = self.resolve_tasks(task, {modality for modality, value in given.items() if value is not None})
        # Only the media the tasks read are encoded and merged (a mask without its media is left alone).
        read = {modality for name in tasks for modality in TASK_MODALITIES[name]}
        media = {}
        if "audio" in read and input_features is not None:
            media["audio"] = self.get_audio_features(input_features, input_features_mask, audio_rate)
        if "video" in read and pixel_values_videos is not None:
            media["video"] = self.get_video_features(pixel_values_videos, video_mask, video_rate)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        inputs_embeds = self.merge_media(inputs_embeds, input_ids, media)
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

    - `model(**processor(audio=..., videos=..., task=..., text=...))`: logits, and `loss` with labels, for one task
      (or, with `task` a list of row groups, for the efficient-matryoshka training batch that
      `omni_avsr.training.matryoshka` lays out: every task's rows in one LM call).
    - `model.generate(**processor(audio=..., videos=..., task=...))`: GenerationMixin's `generate`; like Voxtral, the
      returned sequences start with the prompt (`outputs[:, inputs["input_ids"].shape[1]:]` are the new tokens).
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

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

    @property
    def audio_tower(self):
        return self.model.audio_tower

    @property
    def video_tower(self):
        return self.model.video_tower

    @property
    def language_model(self):
        return self.model.language_model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save in this layout, whatever a folder was loaded from (transformers would write a folder of the first
        releases back under its old names, `CHECKPOINT_RENAMES` reversed); and also map `AutoModelForSpeechSeq2Seq` to
        this class for remote-code loading (`auto_map` holds one entry per auto class, `register_for_auto_class` sets
        one)."""
        if self._auto_class is not None:
            class_path = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModelForSpeechSeq2Seq": class_path}
        kwargs.setdefault("save_original_format", False)
        return super().save_pretrained(save_directory, *args, **kwargs)

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
        task: str | list[str] | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        One LM pass on the sequence the processor laid out (`input_ids`, or `inputs_embeds`), the media merged at its
        placeholders; `labels` aligned with `input_ids` give the token-mean cross-entropy.

        task (`str` or `list[str]`, *optional*): the task whose Omni-LoRA adapters the LM uses (default: the one the
            media imply; none for text alone, see `OmniAVSRModel.route_adapters`). A list splits the rows into equal
            groups, one per task, which all read the same clips: the efficient-matryoshka training batch
            (`omni_avsr.training.matryoshka`).
        audio_rate, video_rate (`int`, *optional*): the rates the processor expanded the placeholders at.
        """
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

    # ----- generate -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, share_prompt_prefill: bool = False, **kwargs):
        r"""
        GenerationMixin's `generate` (greedy, beam search, sampling, a `cache` to continue from, assisted decoding,
        `return_dict_in_generate`, ...), returning what it returns for the inputs it is given: with `input_ids` (the
        processor's), the prompt followed by the new tokens, so `outputs[:, inputs["input_ids"].shape[1]:]` is the
        transcript; with `inputs_embeds` alone, the new tokens.

        Three things happen first, once per call: the inputs are checked (values read on the host, never in
        training); the task and rates are read once, so that every step gets the adapters of the task the media imply
        when no `task` is given (only the first step reads the media); and a logits processor refuses NaN or infinite
        logits with their cause, where greedy search would silently pick a token from them.

        `share_prompt_prefill=True` makes beam search (and `num_return_sequences > 1`) prefill the prompt once per clip
        and hand `generate` the cache repeated per beam, where `generate` repeats each prompt per beam before its
        prefill and puts the long media prompt through the LM `num_beams` times (the WER evaluation uses it:
        `benchmarks/bench_inference.py` measures it). The tokens are the same; step 0 of `output_attentions` /
        `output_hidden_states` then covers the last prompt position only, where the default covers the prompt.
        """
        check_generate_inputs(self, input_ids, kwargs)
        given = {"audio": "input_features", "video": "pixel_values_videos"}
        available = {modality for modality, name in given.items() if kwargs.get(name) is not None}
        kwargs["task"] = self.model.resolve_tasks(kwargs.get("task"), available)
        for modality in ("audio", "video"):
            if kwargs.get(f"{modality}_rate") is not None:
                # Plain ints: `generate` would repeat a tensor (the processor's) per beam.
                kwargs[f"{modality}_rate"] = self.config.check_rate(modality, kwargs[f"{modality}_rate"])
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), FiniteLogitsCheck(self)])
        if share_prompt_prefill:
            kwargs = self._share_prompt_prefill(input_ids, kwargs)
        return super().generate(input_ids, **kwargs)

    def _share_prompt_prefill(self, input_ids, kwargs: dict) -> dict:
        """`kwargs` with the prompt's cache, prefilled once per clip and repeated per beam, in place of the media."""
        generation_config = kwargs.get("generation_config") or self.generation_config
        copies = max(
            kwargs.get("num_beams", generation_config.num_beams) or 1,
            kwargs.get("num_return_sequences", generation_config.num_return_sequences) or 1,
        )
        if copies == 1 or kwargs.get("cache", kwargs.get("past_key_values")) is not None:
            return kwargs
        media_names = ("input_features", "input_features_mask", "pixel_values_videos", "video_mask")
        media = {name: kwargs.pop(name) for name in media_names if kwargs.get(name) is not None}
        prompt = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": kwargs["inputs_embeds"]}
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is None:
            attention_mask = kwargs["attention_mask"] = torch.ones(
                next(iter(prompt.values())).shape[:2], dtype=torch.long, device=self.device
            )
        # The LM's cache over all of the prompt but its last token, at the positions `generate` derives.
        cache = DynamicCache(config=self.config.text_config)
        self.model(
            **{name: value[:, :-1] for name, value in prompt.items()},
            attention_mask=attention_mask[:, :-1],
            cache=cache,
            use_cache=True,
            task=kwargs["task"],
            audio_rate=kwargs.get("audio_rate"),
            video_rate=kwargs.get("video_rate"),
            **media,
        )
        cache.batch_repeat_interleave(copies)
        return {**kwargs, "cache": cache}


__all__ = [
    "OmniAVSRForConditionalGeneration",
    "OmniAVSRMediaOutput",
    "OmniAVSRModel",
    "OmniAVSRPreTrainedModel",
    "OmniAVSRProjector",
]
