"""Omni-AVSR: one audio-visual LLM for ASR, VSR and AVSR with compression rates chosen at inference time."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, DynamicCache, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import ModelOutput

from .configuration_omni_avsr import TASK_MODALITIES, TASKS, OmniAVSRConfig
from .modeling_avhubert import AVHubertVideoModel
from .omni_lora import (
    OmniLoraLinear,
    add_lora_adapters,
    lora_layers,
    reset_lora_parameters,
    set_adapter_routing,
)


IGNORE_INDEX = -100
# The official code never keeps fewer than 25 Whisper frames (0.5 s), even for shorter clips.
MIN_AUDIO_FRAMES = 25


@dataclass
class OmniAVSROutput(ModelOutput):
    r"""
    Output of a multi-task (training or validation) forward pass.

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
    `max(length // rate, 1)` tokens: a tail shorter than the rate is dropped (as the official code), except that a clip
    shorter than one window still gives one token (the mean of its frames).
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
    return compressed, torch.clamp(lengths // rate, min=1)


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


class OmniAVSRForConditionalGeneration(OmniAVSRPreTrainedModel, GenerationMixin):
    r"""
    Omni-AVSR. Training (`labels` given) runs every configured task on one batch with efficient matryoshka: one audio
    and one video rate are sampled per step (unless `audio_rate` / `video_rate` are given), the encoders run once,
    and the three task sequences go through the LM in ONE call with task-routed Omni-LoRA. Decoding
    (`generate(task=..., audio_rate=..., video_rate=...)`) returns only the new tokens.

    Sequence of a task (Llama-style LMs start with BOS; LMs without one, like Qwen2, do not):
    `[BOS] <audio> A… </audio> <video> V… </video> PROMPT transcript EOS` (ASR drops the video block, VSR the audio).
    """

    def __init__(self, config: OmniAVSRConfig):
        super().__init__(config)
        if config.audio_config is None and config.video_config is None:
            raise ValueError("OmniAVSRConfig needs at least one encoder: audio_config, video_config or both.")
        text_hidden_size = config.text_config.hidden_size
        self.audio_encoder = WhisperEncoder(config.audio_config) if config.audio_config is not None else None
        self.video_encoder = AVHubertVideoModel(config.video_config) if config.video_config is not None else None
        self.audio_projectors = self._build_projectors("audio", text_hidden_size)
        self.video_projectors = self._build_projectors("video", text_hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
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
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            max_new_tokens=128,
        )
        self.apply_freezing()

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

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load as usual, then re-apply the configured freezing (loading creates fresh trainable parameters)."""
        model = super().from_pretrained(*args, **kwargs)
        model.apply_freezing()
        return model

    @classmethod
    def from_components(
        cls,
        language_model: PreTrainedModel,
        tokenizer,
        audio_encoder: PreTrainedModel | None = None,
        video_encoder: PreTrainedModel | None = None,
        **config_kwargs,
    ) -> "OmniAVSRForConditionalGeneration":
        """Assemble a model from pretrained parts: a causal LM, its tokenizer with the Omni-AVSR markers (see
        `OmniAVSRProcessor`), a Whisper encoder (`WhisperModel.encoder` or `WhisperEncoder`) and/or an
        `AVHubertVideoModel`. `config_kwargs` are `OmniAVSRConfig` options (rates, `lora_variant`, ...).
        The LM's embeddings are resized to the tokenizer (new rows: mean of the old ones) before copying.
        """
        if language_model.get_input_embeddings().num_embeddings < len(tokenizer):
            language_model.resize_token_embeddings(len(tokenizer))
        config = OmniAVSRConfig(
            audio_config=audio_encoder.config if audio_encoder is not None else None,
            video_config=video_encoder.config if video_encoder is not None else None,
            text_config=language_model.config,
            **config_kwargs,
        )
        config.set_token_ids(tokenizer)
        model = cls(config)
        for target, source in (
            (model.audio_encoder, audio_encoder),
            (model.video_encoder, video_encoder),
            (model.language_model, language_model),
        ):
            if source is not None:
                _load_into_lora_wrapped(target, source.state_dict())
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
        """Train LoRA adapters and projectors; the encoders and the LM only when the config unfreezes them."""
        frozen_prefixes = tuple(
            prefix
            for prefix, frozen in (
                ("audio_encoder.", self.config.freeze_audio_encoder),
                ("video_encoder.", self.config.freeze_video_encoder),
                ("language_model.", self.config.freeze_language_model),
            )
            if frozen
        )
        for name, param in self.named_parameters():
            param.requires_grad = ".lora_" in name or not name.startswith(frozen_prefixes)

    def train(self, mode: bool = True):
        """Frozen encoders stay in eval mode (no dropout, fixed BatchNorm statistics) while the rest trains."""
        super().train(mode)
        for encoder, frozen in (
            (self.audio_encoder, self.config.freeze_audio_encoder),
            (self.video_encoder, self.config.freeze_video_encoder),
        ):
            if encoder is not None and frozen:
                encoder.eval()
        return self

    def resize_token_embeddings(self, *args, **kwargs):
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        self.apply_freezing()
        return embeddings

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        self.language_model.set_output_embeddings(new_embeddings)

    # ----- media → LM embeddings -------------------------------------------------------------------------------

    def get_audio_features(
        self,
        input_features: torch.Tensor,
        input_features_mask: torch.Tensor,
        rate: int,
        official_padding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper log-mel (batch, mels, 3000) → projected audio tokens (batch, tokens, hidden) and token counts."""
        hidden_states, lengths = self.encode_audio(input_features, input_features_mask, official_padding)
        compressed, token_lengths = compress_frames(hidden_states, lengths, rate, self.config.compression)
        return self._project("audio", compressed, rate), token_lengths

    def encode_audio(
        self, input_features: torch.Tensor, input_features_mask: torch.Tensor, official_padding: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper encoder frames (batch, frames, dim), cut after the longest clip, and the frames kept per clip."""
        expected_frames = 2 * self.config.audio_config.max_source_positions
        if input_features.shape[-1] != expected_frames:
            raise ValueError(
                f"input_features has {input_features.shape[-1]} mel frames; the Whisper encoder takes exactly "
                f"{expected_frames} ({expected_frames // 100} s, longer audio does not fit its window). Use the "
                "processor, which pads every clip to the window and rejects longer ones."
            )
        # Clips shorter than MIN_AUDIO_FRAMES keep some of the silence that follows them (as the official code).
        mel_lengths = input_features_mask.sum(-1).clamp(min=2 * MIN_AUDIO_FRAMES, max=expected_frames)
        input_features = input_features.to(self.audio_encoder.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_audio_encoder):
            if self.config.audio_full_window:
                hidden_states = self.audio_encoder(input_features).last_hidden_state
            else:
                hidden_states = self._encode_audio_trimmed(input_features, mel_lengths)
        lengths = mel_lengths // 2
        if official_padding:
            lengths = torch.full_like(lengths, int(lengths.max()))
        return hidden_states[:, : int(lengths.max())], lengths

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

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        video_mask: torch.Tensor | None,
        rate: int,
        official_padding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lip video (batch, frames, 1, 88, 88) → projected video tokens (batch, tokens, hidden) and token counts."""
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_mask is None or official_padding:
            video_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device)
        pixel_values_videos = pixel_values_videos.to(self.video_encoder.dtype)
        hidden_states = self.video_encoder(pixel_values_videos, video_mask=video_mask).last_hidden_state
        compressed, token_lengths = compress_frames(
            hidden_states, video_mask.sum(-1), rate, self.config.compression
        )
        return self._project("video", compressed, rate), token_lengths

    def _project(self, modality: str, features: torch.Tensor, rate: int) -> torch.Tensor:
        projectors = self.audio_projectors if modality == "audio" else self.video_projectors
        projector = projectors[str(rate)] if self.config.projector_per_rate else projectors["shared"]
        return projector(features.to(projector.linear_1.weight.dtype))

    def _build_sequences(
        self,
        tasks: list[str],
        media: dict[str, tuple[torch.Tensor, torch.Tensor]],
        labels: torch.Tensor | None,
        padding_side: str,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Lay out `[BOS] <audio> A </audio> <video> V </video> PROMPT [transcript]` for every task and clip.

        Rows are grouped by task (all clips of `tasks[0]`, then `tasks[1]`, ...). Padding uses the pad token's
        embedding; `labels` (transcript ids + EOS, right-padded with -100) become the targets.
        """
        embed_tokens = self.get_input_embeddings()
        device = embed_tokens.weight.device

        def embed(ids):
            return embed_tokens(torch.as_tensor(ids, device=device, dtype=torch.long))

        config = self.config
        markers = {
            "audio": (embed([config.audio_start_token_id]), embed([config.audio_end_token_id])),
            "video": (embed([config.video_start_token_id]), embed([config.video_end_token_id])),
        }
        bos = [embed([config.bos_token_id])] if config.bos_token_id is not None else []
        if labels is not None:
            target_embeds = embed(labels.masked_fill(labels == IGNORE_INDEX, config.pad_token_id))
        batch_size = next(iter(media.values()))[0].shape[0]
        rows, row_labels = [], []
        for task in tasks:
            prompt = embed(config.prompt_token_ids[task])
            for index in range(batch_size):
                pieces = list(bos)
                for modality in TASK_MODALITIES[task]:
                    features, lengths = media[modality]
                    start, end = markers[modality]
                    pieces += [start, features[index, : int(lengths[index])], end]
                pieces.append(prompt)
                prefix_length = sum(piece.shape[0] for piece in pieces)
                if labels is not None:
                    pieces.append(target_embeds[index])
                    row_labels.append(F.pad(labels[index], (prefix_length, 0), value=IGNORE_INDEX))
                rows.append(torch.cat([piece.to(prompt.dtype) for piece in pieces]))
        max_length = max(row.shape[0] for row in rows)
        pad_embed = embed([config.pad_token_id])
        inputs_embeds = prompt.new_empty(len(rows), max_length, prompt.shape[-1])
        attention_mask = torch.zeros(len(rows), max_length, dtype=torch.long, device=device)
        for row_index, row in enumerate(rows):
            span = slice(0, row.shape[0]) if padding_side == "right" else slice(max_length - row.shape[0], None)
            inputs_embeds[row_index] = pad_embed.expand(max_length, -1)
            inputs_embeds[row_index, span] = row
            attention_mask[row_index, span] = 1
        packed_labels = None
        if labels is not None:
            packed_labels = torch.full((len(rows), max_length), IGNORE_INDEX, dtype=torch.long, device=device)
            for row_index, row_label in enumerate(row_labels):
                packed_labels[row_index, : row_label.shape[0]] = row_label
        return inputs_embeds, attention_mask, packed_labels

    # ----- argument checks -------------------------------------------------------------------------------------

    def _check_rate(self, modality: str, rate: int | None) -> int:
        rates = self.config.rates(modality)
        if rate is None:
            return rates[0]
        if rate not in rates:
            raise ValueError(f"{modality}_rate={rate} is not one of this model's {modality} rates {rates}.")
        return rate

    def _check_task(self, task: str) -> None:
        if task not in self.config.tasks:
            raise ValueError(
                f"Unknown task {task!r}: this model was configured for tasks {self.config.tasks} (all tasks: {TASKS})."
            )

    def _check_inputs(self, tasks, input_features, input_features_mask, pixel_values_videos, labels=None):
        for task in tasks:
            self._check_task(task)
            if "audio" in TASK_MODALITIES[task] and input_features is None:
                raise ValueError(f"Task {task!r} needs audio: pass input_features (and input_features_mask).")
            if "video" in TASK_MODALITIES[task] and pixel_values_videos is None:
                raise ValueError(f"Task {task!r} needs lip video: pass pixel_values_videos (and video_mask).")
        if input_features is not None and input_features_mask is None:
            raise ValueError(
                "input_features_mask is required with input_features: it tells how much of the 30 s Whisper window "
                "is speech (OmniAVSRProcessor returns it)."
            )
        if pixel_values_videos is not None and (pixel_values_videos.ndim != 5 or pixel_values_videos.shape[2] != 1):
            raise ValueError(
                "pixel_values_videos must have shape (batch, frames, 1, height, width) (grayscale), got "
                f"{tuple(pixel_values_videos.shape)}."
            )
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

    def _encode_media(
        self, tasks, input_features, input_features_mask, pixel_values_videos, video_mask, audio_rate, video_rate,
        official_padding=False,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        modalities = {modality for task in tasks for modality in TASK_MODALITIES[task]}
        media = {}
        if "audio" in modalities:
            media["audio"] = self.get_audio_features(input_features, input_features_mask, audio_rate, official_padding)
        if "video" in modalities:
            media["video"] = self.get_video_features(pixel_values_videos, video_mask, video_rate, official_padding)
        return media

    def _route_adapters(self, tasks: list[str], rows_per_task: int | None) -> None:
        routing = [(tuple(self.config.lora_adapter_names(task)), rows_per_task) for task in tasks]
        if "T" not in self.config.lora_variant:
            routing = [(("shared",), None)]
        set_adapter_routing(self._routed_lora_layers, routing)

    def _sample_rate(self, modality: str) -> int:
        rates = self.config.rates(modality)
        return rates[int(torch.randint(len(rates), ()))]

    # ----- forward / generate ----------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        task: str | None = None,
        tasks: list[str] | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        output_logits: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> OmniAVSROutput | CausalLMOutputWithPast:
        r"""
        With `labels`: the multi-task loss on media inputs. `tasks` restricts the tasks (default: the config's);
        `audio_rate` / `video_rate` fix the rates (sampled per step in training, the finest rate in eval mode).

        Without `labels`: one LM step on `input_ids` / `inputs_embeds` for `task` (what `generate` calls).
        """
        if labels is not None:
            return self._multitask_forward(
                input_features, input_features_mask, pixel_values_videos, video_mask, labels,
                tasks or self.config.tasks, audio_rate, video_rate, output_logits,
            )
        if input_features is not None or pixel_values_videos is not None:
            raise ValueError(
                "forward() on media needs `labels` (to compute the loss); to transcribe, call generate(..., task=...)."
            )
        if task is not None:
            self._check_task(task)
            self._route_adapters([task], None)
        return self.language_model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _multitask_forward(
        self, input_features, input_features_mask, pixel_values_videos, video_mask, labels, tasks, audio_rate,
        video_rate, output_logits,
    ) -> OmniAVSROutput:
        self._check_inputs(tasks, input_features, input_features_mask, pixel_values_videos, labels)
        if self.config.has_modality("audio"):
            audio_rate = self._check_rate("audio", audio_rate if audio_rate or not self.training else self._sample_rate("audio"))
        if self.config.has_modality("video"):
            video_rate = self._check_rate("video", video_rate if video_rate or not self.training else self._sample_rate("video"))
        official_padding = self.config.train_padding == "official"
        media = self._encode_media(
            tasks, input_features, input_features_mask, pixel_values_videos, video_mask, audio_rate, video_rate,
            official_padding,
        )
        inputs_embeds, _, packed_labels = self._build_sequences(tasks, media, labels, padding_side="right")
        # Right padding + causal attention: real tokens never see the padding, so no mask is needed.
        batch_size = labels.shape[0]
        self._route_adapters(tasks, batch_size)
        hidden_states = self.language_model.base_model(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state
        lm_head = self.get_output_embeddings()
        shift_labels = packed_labels[:, 1:]
        target_mask = shift_labels != IGNORE_INDEX
        # Logits only where there is a target: the LM head is a large share of a step's cost.
        logits = lm_head(hidden_states[:, :-1][target_mask]).float()
        token_losses = F.cross_entropy(logits, shift_labels[target_mask], reduction="none")
        token_rows = torch.arange(len(shift_labels), device=shift_labels.device)[:, None].expand_as(shift_labels)
        token_tasks = token_rows[target_mask] // batch_size
        task_losses = {task: token_losses[token_tasks == index].mean() for index, task in enumerate(tasks)}
        loss = sum(self.config.task_weight(task) * task_loss for task, task_loss in task_losses.items())
        task_logits = task_labels = None
        if output_logits:
            all_logits = lm_head(hidden_states).float()
            rows = {task: slice(index * batch_size, (index + 1) * batch_size) for index, task in enumerate(tasks)}
            task_logits = {task: all_logits[rows[task]] for task in tasks}
            task_labels = {task: packed_labels[rows[task]] for task in tasks}
        return OmniAVSROutput(
            loss=loss,
            **{f"{task}_loss": task_loss for task, task_loss in task_losses.items()},
            audio_rate=audio_rate if "audio" in media else None,
            video_rate=video_rate if "video" in media else None,
            task_logits=task_logits,
            task_labels=task_labels,
        )

    @torch.no_grad()
    def generate(
        self,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_mask: torch.LongTensor | None = None,
        task: str | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        **generate_kwargs,
    ) -> torch.LongTensor:
        r"""
        Transcribe a batch with `task` (`"asr"`, `"vsr"`, `"avsr"`; default: `"avsr"` when both media are given,
        else the one the inputs allow) at `audio_rate` / `video_rate` (default: each modality's finest rate).
        Clips are left-padded so a batch gives the same tokens as one clip at a time. Other keyword arguments go to
        `GenerationMixin.generate` (`num_beams`, `max_new_tokens`, `generation_config`, ...). Returns only the new
        token ids.
        """
        for name in ("input_ids", "inputs_embeds", "labels"):
            if generate_kwargs.get(name) is not None:
                raise ValueError(f"generate() builds the prompt from the media itself; do not pass {name}.")
        generate_kwargs.pop("attention_mask", None)
        if task is None:
            task = "avsr" if input_features is not None and pixel_values_videos is not None else (
                "asr" if input_features is not None else "vsr"
            )
        self._check_inputs([task], input_features, input_features_mask, pixel_values_videos)
        audio_rate = self._check_rate("audio", audio_rate) if "audio" in TASK_MODALITIES[task] else None
        video_rate = self._check_rate("video", video_rate) if "video" in TASK_MODALITIES[task] else None
        media = self._encode_media(
            [task], input_features, input_features_mask, pixel_values_videos, video_mask, audio_rate, video_rate
        )
        inputs_embeds, attention_mask, _ = self._build_sequences([task], media, None, padding_side="left")
        generation_config = generate_kwargs.get("generation_config") or self.generation_config
        copies = max(
            generate_kwargs.get("num_beams", generation_config.num_beams) or 1,
            generate_kwargs.get("num_return_sequences", generation_config.num_return_sequences) or 1,
        )
        if copies > 1 and generate_kwargs.get("cache") is None:
            # `generate` repeats each prompt once per beam BEFORE its prefill: the long media prompt would go through
            # the LM `num_beams` times. Prefill it once per clip and hand over the cache repeated per beam instead.
            generate_kwargs["cache"] = self._prefill_prompt(inputs_embeds[:, :-1], attention_mask[:, :-1], task)
            generate_kwargs["cache"].batch_repeat_interleave(copies)
        return super().generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, task=task, **generate_kwargs
        )

    def _prefill_prompt(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, task: str) -> DynamicCache:
        """The LM's cache over the prompt, with the positions `generate` derives from the left-padded mask."""
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        cache = DynamicCache(config=self.config.text_config)
        self._route_adapters([task], None)
        self.language_model.base_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            use_cache=True,
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


__all__ = ["OmniAVSRForConditionalGeneration", "OmniAVSRPreTrainedModel", "OmniAVSROutput", "OmniAVSRProjector"]
