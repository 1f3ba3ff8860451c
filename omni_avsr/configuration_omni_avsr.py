"""Configuration of Omni-AVSR: one audio-visual LLM for ASR, VSR and AVSR at elastic compression rates."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_avhubert import AVHubertVideoConfig


TASKS = ("asr", "vsr", "avsr")
TASK_MODALITIES = {"asr": ("audio",), "vsr": ("video",), "avsr": ("audio", "video")}
LORA_VARIANTS = ("S", "T", "ST")
DEFAULT_TASK_PROMPTS = {
    "asr": "Transcribe speech to text.",
    "vsr": "Transcribe video to text.",
    "avsr": "Transcribe speech and video to text.",
}


@strict
class OmniAVSRConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniAVSRForConditionalGeneration`].

    A frozen audio encoder (Whisper) and a frozen video encoder (AV-HuBERT) feed a frozen causal LM through
    per-modality projectors after temporal compression. The LM is adapted with Omni-LoRA on its attention
    projections. The defaults reproduce the paper's setting (audio rates {4, 16}, video rates {2, 5}, projector width
    2048, LM LoRA bottleneck 64 with scale 0.125, video LoRA bottleneck 64 with scale 2, task weights 1 / 1.5 / 1).

    Args:
        audio_config (`WhisperConfig` or `dict`, *optional*): the audio encoder; `None` builds a model without audio
            (VSR only).
        video_config (`AVHubertVideoConfig` or `dict`, *optional*): the video encoder; `None` builds a model without
            video (ASR only).
        text_config (`PreTrainedConfig` or `dict`, *optional*): any causal LM config (Llama, Qwen2, ...).
        audio_rates (`list[int]`, defaults to `[4, 16]`): audio compression rates (encoder frames per LM token).
        video_rates (`list[int]`, defaults to `[2, 5]`): video compression rates.
        compression (`str`, defaults to `"avg_pool"`): `"avg_pool"` averages `rate` consecutive frames, `"stack"`
            concatenates them (the projector input then grows with the rate).
        projector_per_rate (`bool`, defaults to `True`): one projector per modality and rate (the paper) or one
            shared by all rates of a modality (avg_pool only).
        projector_hidden_size (`int`, defaults to 2048): hidden width of the two-layer projectors.
        projector_hidden_act (`str`, defaults to `"relu"`): projector activation.
        projector_layer_norm (`bool`, defaults to `False`): a LayerNorm after the projector. The released
            checkpoints have none in their per-rate projectors (a quirk of the official code), hence the default.
        lora_variant (`str`, defaults to `"ST"`): Omni-LoRA variant: `"S"` one adapter shared by all tasks, `"T"` one
            adapter per task, `"ST"` both, their deltas summed.
        lora_rank (`int`, defaults to 64): LoRA bottleneck (peft `r`).
        lora_alpha (`float`, defaults to 8): peft `lora_alpha`; the delta is scaled by `lora_alpha / lora_rank`.
        lora_dropout (`float`, defaults to 0.0): dropout on the LoRA input.
        lora_target_modules (`list[str]`, defaults to `["q_proj", "v_proj"]`): LM modules that get Omni-LoRA.
        video_lora_rank (`int`, defaults to 64): LoRA bottleneck on the video encoder's Q and V; 0 disables it.
        video_lora_alpha (`float`, defaults to 128): its peft `lora_alpha` (scale 2 with rank 64).
        tasks (`list[str]`, *optional*): tasks the model trains on (any of `"asr"`, `"vsr"`, `"avsr"`); defaults to
            every task whose encoders are present. `["asr"]` gives a single-task baseline.
        task_weights (`list[float]`, defaults to `[1.0, 1.5, 1.0]`): loss weights of asr, vsr, avsr.
        task_prompts (`dict[str, str]`, *optional*): the instruction that follows the media for each task.
        prompt_token_ids (`dict[str, list[int]]`, *optional*): the tokenised prompts, set by
            [`~OmniAVSRConfig.set_token_ids`] so that a model built from its config alone can train and generate.
        audio_start_token_id, audio_end_token_id, video_start_token_id, video_end_token_id (`int`, *optional*): ids of
            the `<audio>`, `</audio>`, `<video>`, `</video>` markers.
        bos_token_id (`int`, *optional*): id that starts every sequence (Llama); `None` for LMs without one (Qwen2).
        eos_token_id (`int`, *optional*): id that ends a transcript.
        pad_token_id (`int`, *optional*): id used to pad text.
        freeze_audio_encoder, freeze_video_encoder, freeze_language_model (`bool`, default `True`): frozen parts keep
            their weights (LoRA and projectors always train). Frozen encoders also stay in eval mode in training.
        train_padding (`str`, defaults to `"masked"`): how the training forward treats a padded batch. `"masked"`: each
            clip keeps its own length (padded frames are masked in the video encoder and dropped before the LM), so
            a clip's loss does not depend on its batch-mates. `"official"`: the official implementation's batching,
            for reproducing its numbers: padded video frames are attended and every clip gets as many audio/video
            tokens as the longest clip (audio cut at `max(longest, 0.5 s)`). Generation always uses `"masked"`.
        audio_full_window (`bool`, defaults to `True`): run the Whisper encoder on its full 30 s window, as Whisper
            was trained and the official code does. `False` encodes only up to the longest clip of the batch (with
            masking, so results do not depend on batch-mates): much faster for short clips, but the encoder output
            changes (see `benchmarks/bench_inference.py` for the measured speed-up and difference).
        initializer_range (`float`, defaults to 0.02): std of the projector initialiser.

    Example:

    ```python
    >>> from transformers import LlamaConfig, WhisperConfig
    >>> from omni_avsr import AVHubertVideoConfig, OmniAVSRConfig, OmniAVSRForConditionalGeneration

    >>> config = OmniAVSRConfig(
    ...     audio_config=WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128),
    ...     video_config=AVHubertVideoConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    ...     text_config=LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128),
    ...     lora_variant="ST",
    ... )
    ```
    """

    model_type = "omni_avsr"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper", optional=True),
        "video_config": SubConfigSpec(config_class=AVHubertVideoConfig, optional=True),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    audio_config: dict | PreTrainedConfig | None = None
    video_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    audio_rates: list[int] | tuple[int, ...] = (4, 16)
    video_rates: list[int] | tuple[int, ...] = (2, 5)
    compression: str = "avg_pool"
    projector_per_rate: bool = True
    projector_hidden_size: int = 2048
    projector_hidden_act: str = "relu"
    projector_layer_norm: bool = False
    lora_variant: str = "ST"
    lora_rank: int = 64
    lora_alpha: float | int = 8
    lora_dropout: float | int = 0.0
    lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "v_proj")
    video_lora_rank: int = 64
    video_lora_alpha: float | int = 128
    tasks: list[str] | tuple[str, ...] | None = None
    task_weights: list[float] | tuple[float, ...] = (1.0, 1.5, 1.0)
    task_prompts: dict[str, str] | None = None
    prompt_token_ids: dict[str, list[int]] | None = None
    audio_start_token_id: int | None = None
    audio_end_token_id: int | None = None
    video_start_token_id: int | None = None
    video_end_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    freeze_audio_encoder: bool = True
    freeze_video_encoder: bool = True
    freeze_language_model: bool = True
    train_padding: str = "masked"
    audio_full_window: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.audio_rates = [int(rate) for rate in self.audio_rates]
        self.video_rates = [int(rate) for rate in self.video_rates]
        self.lora_target_modules = list(self.lora_target_modules)
        self.task_weights = [float(weight) for weight in self.task_weights]
        self.task_prompts = {**DEFAULT_TASK_PROMPTS, **(self.task_prompts or {})}
        super().__post_init__(**kwargs)
        if self.tasks is None:
            self.tasks = [task for task in TASKS if all(self.has_modality(m) for m in TASK_MODALITIES[task])]
        self.tasks = [task for task in TASKS if task in self.tasks]

    def has_modality(self, modality: str) -> bool:
        return (self.audio_config if modality == "audio" else self.video_config) is not None

    def rates(self, modality: str) -> list[int]:
        return self.audio_rates if modality == "audio" else self.video_rates

    def task_weight(self, task: str) -> float:
        return self.task_weights[TASKS.index(task)]

    def lora_adapter_names(self, task: str | None = None) -> list[str]:
        """Adapters active for `task` (all of them when `task` is None): `shared` and/or the task's own adapter."""
        names = ["shared"] if "S" in self.lora_variant else []
        if "T" in self.lora_variant:
            names += self.tasks if task is None else [task]
        return names

    def set_token_ids(self, tokenizer) -> None:
        """Read the marker, BOS/EOS/pad and prompt token ids from a tokenizer that already has the markers.

        Use [`OmniAVSRProcessor`] (or `OmniAVSRProcessor.prepare_tokenizer`) to add `<audio>`, `</audio>`,
        `<video>`, `</video>` and a pad token to an LM tokenizer first.
        """
        markers = {
            "audio_start_token_id": "<audio>",
            "audio_end_token_id": "</audio>",
            "video_start_token_id": "<video>",
            "video_end_token_id": "</video>",
        }
        for field_name, token in markers.items():
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise ValueError(
                    f"The tokenizer has no {token!r} token; expected the Omni-AVSR markers <audio>, </audio>, <video>, "
                    "</video>. Add them with OmniAVSRProcessor.prepare_tokenizer(tokenizer)."
                )
            setattr(self, field_name, token_id)
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; add one with OmniAVSRProcessor.prepare_tokenizer(tokenizer).")
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no EOS token; Omni-AVSR needs one to end transcripts.")
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id
        # Start with BOS only where the LM's own tokenizer does (Llama 3: yes; Qwen2, SmolLM2: no).
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        self.bos_token_id = tokenizer.bos_token_id if adds_bos else None
        self.prompt_token_ids = {
            task: tokenizer(prompt, add_special_tokens=False)["input_ids"] for task, prompt in self.task_prompts.items()
        }

    def validate_architecture(self):
        """Part of `@strict`-powered validation: reject settings the model cannot build."""
        if self.compression not in ("avg_pool", "stack"):
            raise ValueError(f"compression must be 'avg_pool' or 'stack', got {self.compression!r}.")
        if self.compression == "stack" and not self.projector_per_rate:
            raise ValueError("compression='stack' needs projector_per_rate=True: the projector input grows with the rate.")
        if self.lora_variant not in LORA_VARIANTS:
            raise ValueError(f"lora_variant must be one of {LORA_VARIANTS}, got {self.lora_variant!r}.")
        if self.train_padding not in ("masked", "official"):
            raise ValueError(f"train_padding must be 'masked' or 'official', got {self.train_padding!r}.")
        if len(self.task_weights) != len(TASKS):
            raise ValueError(f"task_weights needs one weight per task {TASKS}, got {list(self.task_weights)}.")
        for modality in ("audio", "video"):
            rates = self.rates(modality)
            if self.has_modality(modality) and (not rates or any(rate < 1 for rate in rates)):
                raise ValueError(f"{modality}_rates must be a non-empty list of positive integers, got {rates}.")
            if len(set(rates)) != len(rates):
                raise ValueError(f"{modality}_rates has duplicates: {rates}.")
        for task in self.tasks or ():
            missing = [m for m in TASK_MODALITIES[task] if not self.has_modality(m)]
            if task not in TASKS or missing:
                raise ValueError(
                    f"Task {task!r} cannot be trained: tasks must be among {TASKS} and have their encoders "
                    f"(missing: {missing})."
                )


__all__ = ["OmniAVSRConfig"]
