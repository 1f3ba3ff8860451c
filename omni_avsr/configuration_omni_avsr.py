"""Configuration of Omni-AVSR: one audio-visual LLM for ASR, VSR and AVSR at elastic compression rates.

Besides the config class, this module names what the config's fields refer to: the tasks and the media each reads,
the markers and placeholders whose ids it stores, and the rules a requested task or rate follows (the processor, the
model, the pipelines and the command line all call them). Plain Python only: the sequence layout lives in the
processor, the length formulas in the model.
"""

import operator

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

from .configuration_avhubert import AVHubertVideoConfig


TASKS = ("asr", "vsr", "avsr")
TASK_MODALITIES = {"asr": ("audio",), "vsr": ("video",), "avsr": ("audio", "video")}
LORA_VARIANTS = ("S", "T", "ST")
DEFAULT_TASK_PROMPTS = {
    "asr": "Transcribe speech to text.",
    "vsr": "Transcribe video to text.",
    "avsr": "Transcribe speech and video to text.",
}
# The official markers around each modality's tokens, and the placeholders the processor repeats once per media token
# (replaced by the projected media features inside the model, so their embeddings are never read).
MARKER_TOKENS = ("<audio>", "</audio>", "<video>", "</video>")
AUDIO_PLACEHOLDER = "<|AUDIO|>"
VIDEO_PLACEHOLDER = "<|VIDEO|>"
PLACEHOLDER_TOKENS = (AUDIO_PLACEHOLDER, VIDEO_PLACEHOLDER)

logger = logging.get_logger(__name__)


def check_task(task, tasks) -> str:
    """`task` if it is one of `tasks` (a model's or a processor's), else a ValueError that lists them."""
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}.")
    if task not in tasks:
        raise ValueError(f"task={task!r} is not one of this model's tasks ({', '.join(tasks)}).")
    return task


def default_task(available_modalities, tasks, source: str = "the input") -> str:
    """The task for media that offer `available_modalities`: `avsr` with both, else the task of the one present."""
    for task in ("avsr", "asr", "vsr"):
        if task in tasks and set(TASK_MODALITIES[task]) <= set(available_modalities):
            return task
    raise ValueError(
        f"None of this model's tasks ({', '.join(tasks)}) can transcribe {source}, which has "
        f"{' and '.join(sorted(available_modalities)) or 'no media'}."
    )


def check_rate(modality: str, rate, rates) -> int:
    """`rate` as an int if it is one of `rates`; `None` gives the finest (smallest) rate, whatever their order.

    Integers of any kind count (numpy's, a one-element integer tensor): `operator.index` takes them and refuses
    floats and strings."""
    if rate is None:
        return min(rates)
    try:
        value = operator.index(rate)
    except TypeError:
        value = None
    if isinstance(rate, bool) or value is None:
        raise ValueError(f"{modality}_rate must be an integer, one of {sorted(rates)}; got {rate!r}.")
    if value not in rates:
        raise ValueError(
            f"{modality}_rate={rate} is not one of this model's {modality} rates "
            f"({', '.join(str(choice) for choice in sorted(rates))}): the rates it was trained with."
        )
    return value


def sequence_token_ids(tokenizer, task_prompts: dict[str, str]) -> dict:
    """The ids of the markers, placeholders and task prompts in `tokenizer` (one that has them:
    `OmniAVSRProcessor.prepare_tokenizer`), and the BOS id when the tokenizer starts its sequences with it."""
    ids = {}
    for name, token in zip(
        ("audio_start", "audio_end", "video_start", "video_end", "audio_placeholder", "video_placeholder"),
        (*MARKER_TOKENS, *PLACEHOLDER_TOKENS),
    ):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"The tokenizer has no {token!r} token; expected the Omni-AVSR markers {', '.join(MARKER_TOKENS)} "
                f"and placeholders {', '.join(PLACEHOLDER_TOKENS)}. Add them with "
                "OmniAVSRProcessor.prepare_tokenizer(tokenizer)."
            )
        ids[name] = token_id
    # Start with BOS only where the LM's own tokenizer does (Llama 3: yes; Qwen2, SmolLM2: no).
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    prompts = {task: tokenizer(prompt, add_special_tokens=False)["input_ids"] for task, prompt in task_prompts.items()}
    return {**ids, "bos": tokenizer.bos_token_id if adds_bos else None, "prompts": prompts}


def text_vocabulary_size(tokenizer) -> int:
    """Embedding rows a language model needs for `tokenizer`: every id except placeholders past the rest (they are
    replaced by media features before the LM, and never predicted)."""
    placeholder_ids = {tokenizer.convert_tokens_to_ids(token) for token in PLACEHOLDER_TOKENS}
    size = len(tokenizer)
    while size - 1 in placeholder_ids:
        size -= 1
    return size


# Keys that older config.json files hold and that are training policy now, set by the training arguments of the same
# name (`OmniAVSRTrainingArguments`): read and left out, with a note.
TRAINING_POLICY_KEYS = (
    "train_padding", "freeze_audio_encoder", "freeze_video_encoder", "freeze_language_model", "lora_dropout",
)


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
        text_config (`PreTrainedConfig` or `dict`): any causal LM config (Llama, Qwen2, ...). Required to build a
            model; a config without one exists only as transformers' template for serialisation.
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
        audio_token_id, video_token_id (`int`, *optional*): ids of the `<|AUDIO|>` / `<|VIDEO|>` placeholders that the
            processor repeats once per media token and the model replaces by the projected media features. They may
            lie past the LM's vocabulary (converted and assembled models: the placeholders are never predicted); with
            embedding rows, `inputs_embeds` can carry them too.
        bos_token_id (`int`, *optional*): id that starts every sequence (Llama); `None` for LMs without one (Qwen2).
        eos_token_id (`int`, *optional*): id that ends a transcript.
        pad_token_id (`int`, *optional*): id used to pad text.
        audio_full_window (`bool`, defaults to `True`): run the Whisper encoder on its full 30 s window, as Whisper
            was trained and the official code does. `False` encodes only up to the longest clip of the batch (with
            masking, so results do not depend on batch-mates): much faster for short clips, but the encoder output
            changes (see `benchmarks/bench_inference.py` for the measured speed-up and difference). It is part of the
            model, not an inference switch: the projectors and adapters learnt the features of one window, so a
            checkpoint is decoded with the window it was trained with.
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
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", optional=True),
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
    audio_token_id: int | None = None
    video_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    audio_full_window: bool = True
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        for name in sorted(set(kwargs) & set(TRAINING_POLICY_KEYS)):
            logger.info(
                f"OmniAVSRConfig: {name}={kwargs.pop(name)!r} in an older config.json is training policy now, not the "
                f"model's: the training scripts' --{name} sets it."
            )
        self.audio_rates = [int(rate) for rate in self.audio_rates]
        self.video_rates = [int(rate) for rate in self.video_rates]
        self.lora_target_modules = list(self.lora_target_modules)
        self.task_weights = [float(weight) for weight in self.task_weights]
        self.task_prompts = {**DEFAULT_TASK_PROMPTS, **(self.task_prompts or {})}
        super().__post_init__(**kwargs)
        if self.text_config is not None:
            # The LM head shares the input embeddings exactly when the LM's own config says so.
            self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        if self.tasks is None:
            self.tasks = [task for task in TASKS if all(self.has_modality(m) for m in TASK_MODALITIES[task])]
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown:
            raise ValueError(f"OmniAVSRConfig: unknown tasks {unknown}; expected some of {list(TASKS)}.")
        self.tasks = [task for task in TASKS if task in self.tasks]
        if self.audio_token_id is None and self.prompt_token_ids is not None and self.text_config is not None:
            # A folder saved before the placeholders existed: the processor appends them after the LM's vocabulary.
            self.audio_token_id = self.text_config.vocab_size
            self.video_token_id = self.text_config.vocab_size + 1

    def has_modality(self, modality: str) -> bool:
        return (self.audio_config if modality == "audio" else self.video_config) is not None

    def rates(self, modality: str) -> list[int]:
        return self.audio_rates if modality == "audio" else self.video_rates

    def check_task(self, task) -> str:
        return check_task(task, self.tasks)

    def check_rate(self, modality: str, rate=None) -> int:
        """A rate this model was trained with; `None` gives the finest."""
        return check_rate(modality, rate, self.rates(modality))

    def default_task(self, available_modalities, source: str = "the input") -> str:
        """`avsr` for media with audio and video, else the task their one modality allows."""
        return default_task(available_modalities, self.tasks, source)

    def task_weight(self, task: str) -> float:
        return self.task_weights[TASKS.index(task)]

    def lora_adapter_names(self, task: str | None = None) -> list[str]:
        """Adapters active for `task` (all of them when `task` is None): `shared` and/or the task's own adapter."""
        names = ["shared"] if "S" in self.lora_variant else []
        if "T" in self.lora_variant:
            names += self.tasks if task is None else [task]
        return names

    def check_token_ids(self) -> None:
        """Refuse a config whose token ids were never set (`set_token_ids`): the model cannot lay out, embed nor end
        its sequences without them."""
        missing = [
            name
            for name in ("audio_token_id", "video_token_id", "pad_token_id", "eos_token_id")
            if getattr(self, name) is None
        ]
        if missing or self.prompt_token_ids is None:
            raise ValueError(
                f"OmniAVSRConfig has no {', '.join(missing) or 'prompt_token_ids'}: call "
                "config.set_token_ids(processor.tokenizer) (a converted or saved Omni-AVSR folder has them)."
            )
        # The ids the model embeds itself (markers, BOS/EOS/pad, prompts) must be rows of the LM's embeddings; only the
        # placeholders, replaced by media before the LM, may lie past them.
        vocabulary = getattr(self.text_config, "vocab_size", None)
        if vocabulary is not None:
            names = ("audio_start_token_id", "audio_end_token_id", "video_start_token_id", "video_end_token_id",
                     "bos_token_id", "eos_token_id", "pad_token_id")
            ids = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
            ids.update(
                {f"prompt_token_ids[{task!r}]": max(prompt) for task, prompt in self.prompt_token_ids.items() if prompt}
            )
            outside = [f"{name} {value}" for name, value in ids.items() if not 0 <= value < vocabulary]
            if outside:
                raise ValueError(
                    f"OmniAVSRConfig: {', '.join(outside)} outside the language model's vocabulary (0 to "
                    f"{vocabulary - 1}); expected the ids of the tokenizer its embeddings were made for "
                    "(config.set_token_ids(tokenizer) with that tokenizer)."
                )

    def set_token_ids(self, tokenizer) -> None:
        """Read the marker, placeholder, BOS/EOS/pad and prompt token ids from a tokenizer that already has the
        markers and placeholders.

        Use [`OmniAVSRProcessor`] (or `OmniAVSRProcessor.prepare_tokenizer`) to add `<audio>`, `</audio>`,
        `<video>`, `</video>`, `<|AUDIO|>`, `<|VIDEO|>` and a pad token to an LM tokenizer first.
        """
        ids = sequence_token_ids(tokenizer, self.task_prompts)
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; add one with OmniAVSRProcessor.prepare_tokenizer(tokenizer).")
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no EOS token; Omni-AVSR needs one to end transcripts.")
        self.audio_start_token_id, self.audio_end_token_id = ids["audio_start"], ids["audio_end"]
        self.video_start_token_id, self.video_end_token_id = ids["video_start"], ids["video_end"]
        self.audio_token_id, self.video_token_id = ids["audio_placeholder"], ids["video_placeholder"]
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = ids["bos"]
        self.prompt_token_ids = ids["prompts"]

    def validate_architecture(self):
        """Part of `@strict`-powered validation: reject settings the model cannot build."""
        if self.compression not in ("avg_pool", "stack"):
            raise ValueError(f"compression must be 'avg_pool' or 'stack', got {self.compression!r}.")
        if self.compression == "stack" and not self.projector_per_rate:
            raise ValueError("compression='stack' needs projector_per_rate=True: the projector input grows with the rate.")
        if self.lora_variant not in LORA_VARIANTS:
            raise ValueError(f"lora_variant must be one of {LORA_VARIANTS}, got {self.lora_variant!r}.")
        if len(self.task_weights) != len(TASKS):
            raise ValueError(f"task_weights needs one weight per task {TASKS}, got {list(self.task_weights)}.")
        for modality in ("audio", "video"):
            rates = self.rates(modality)
            if self.has_modality(modality) and (not rates or any(rate < 1 for rate in rates)):
                raise ValueError(f"{modality}_rates must be a non-empty list of positive integers, got {rates}.")
            if len(set(rates)) != len(rates):
                raise ValueError(f"{modality}_rates has duplicates: {rates}.")
        for task in self.tasks or ():
            missing = [m for m in TASK_MODALITIES.get(task, ()) if not self.has_modality(m)]
            if missing:
                raise ValueError(f"Task {task!r} cannot be trained: this config has no {' or '.join(missing)} encoder.")


__all__ = ["OmniAVSRConfig"]
