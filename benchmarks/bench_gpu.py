"""Full-size Omni-AVSR on one NVIDIA GPU: training samples/s, model FLOP utilisation, peak memory, decoding latency.

The paper's shapes (`paper_config("ST", backbone)`: Whisper-medium encoder, AV-HuBERT Large, and by default
Llama-3.2-1B, Llama-3.2-3B and Llama-3.1-8B, the last with activation checkpointing) with random weights: frozen parts in bf16, LoRA and projectors (the trained parts) in fp32 with AdamW, like bf16 mixed-precision
training. A training step is forward + backward + optimizer step on `--clips` clips with the rate pair cycling over
all pairs. MFU = FLOPs of a step (torch's FlopCounterMode) / step time / the GPU's dense bf16 peak from NVIDIA's
datasheet (picked from the GPU name; H100 SXM and H200: 989 TFLOP/s) and, for reference, / a bf16 matmul peak
measured here. Decoding latency: one clip per call at every task and rate, greedy and beam 15, `--new-tokens`
tokens (min = max). Sized to finish in under 8 minutes on an H100/H200 (not yet run on one: no GPU has been lent).
Without a GPU it refuses (exit 2, naming --smoke) rather than run full-size models on a CPU.

    python benchmarks/bench_gpu.py                 # on a CUDA machine
    python benchmarks/bench_gpu.py --backbones llama-3.2-1b --steps 8
    python benchmarks/bench_gpu.py --smoke         # tiny model on whatever device there is (CPU here)

Prints one JSON object on stdout, then a table on stderr.
"""

import argparse
import itertools
import time

import torch

from bench_training import omni_step, rate_pair_order, to_frozen_bf16
from common import (
    build_config,
    build_model,
    build_processor,
    clip_durations,
    count_flops,
    decoding_inputs,
    describe_batch,
    describe_config,
    emit,
    finish_machine_info,
    format_table,
    machine_info,
    make_batch,
    matmul_peak,
    parameter_counts,
)
from omni_avsr.presets import BACKBONES, paper_config
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode


# NVIDIA datasheet dense (no sparsity) BF16 tensor-core peaks, TFLOP/s; the first name fragment that matches wins.
DATASHEET_BF16_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
)


def datasheet_peak(gpu_name: str) -> tuple[float | None, str]:
    for fragment, tflops in DATASHEET_BF16_TFLOPS:
        if fragment in gpu_name:
            return tflops * 1e12, f"NVIDIA datasheet dense bf16 for {fragment}: {tflops} TFLOP/s"
    return None, "no datasheet peak known for this device; only the measured matmul peak is used"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def paper_batch(processor, durations, config, transcript_tokens: int, seed: int) -> dict:
    """Speech-like media; labels are random ids of the LM's vocabulary (no Llama-3 tokenizer offline) + EOS."""
    batch = make_batch(processor, durations, seed=seed, text=False)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.eos_token_id, (len(durations), transcript_tokens), generator=generator)
    batch["labels"] = torch.cat([ids, torch.full((len(durations), 1), config.eos_token_id)], dim=1)
    return batch


DEFAULT_BACKBONES = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")
# Trained with activation checkpointing by default, as an 8B run would be (bench_scaling.py: a 1,500-frame step
# needs 58 GB without it, 24 GB with it), so that one call also measures the recomputation's cost.
CHECKPOINTED_BY_DEFAULT = ("llama-3.1-8b",)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps: proves the script runs anywhere")
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), choices=list(BACKBONES),
                        help="LLM presets behind the paper's encoders, each trained and decoded in turn")
    parser.add_argument("--checkpointed", nargs="*", default=list(CHECKPOINTED_BY_DEFAULT), choices=list(BACKBONES),
                        help="backbones trained with activation checkpointing")
    parser.add_argument("--clips", type=int, default=16, help="clips per training step (the paper: ≤1500 frames)")
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip duration (clips spread ±0.4 s)")
    parser.add_argument("--transcript-tokens", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 15])
    parser.add_argument("--json-out", help="also write the JSON report to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.clips, args.seconds, args.warmup_steps, args.steps, args.new_tokens, args.beams = 2, 1.0, 1, 2, 4, [2]
        args.backbones = ["tiny"]
    elif not torch.cuda.is_available():
        parser.error(
            "no CUDA GPU here: the full-size runs (" + ", ".join(args.backbones) + ") need one (sized for under 8 minutes "
            "on an H100/H200). Use --smoke for the tiny model on this machine."
        )
    return args


def run_backbone(name: str, args, device, processor, spec_peak, measured_peak) -> dict:
    """Training steps (samples/s, MFU, peak memory) and decoding latency per task and rate of one backbone."""
    config = build_config("tiny", processor) if name == "tiny" else paper_config("ST", name)
    checkpointed = name in args.checkpointed
    # bf16 linears on a CPU cost milliseconds per call in this torch build: a CPU (smoke) run stays in fp32.
    media_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with device:
        model = build_model(config, seed=args.seed)
        model = keep_frozen_encoders_in_eval_mode((to_frozen_bf16(model) if media_dtype == torch.bfloat16 else model).train())
    if checkpointed:
        model.activation_checkpointing_enable({"use_reentrant": False})
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.1)
    durations = clip_durations(args.clips, args.seconds, 0.4)
    batch = paper_batch(processor, durations, config, args.transcript_tokens, args.seed)
    batch = {
        name: value.to(device, media_dtype if value.is_floating_point() else value.dtype)
        for name, value in batch.items()
    }
    pairs = rate_pair_order(config)

    def train_step(pair):
        omni_step(model, processor, batch, *pair)
        optimizer.step()

    for step in range(args.warmup_steps):
        train_step(pairs[step % len(pairs)])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times = [timed(lambda: train_step(pairs[step % len(pairs)]), device) for step in range(args.steps)]
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    timed_pairs = pairs[: min(args.steps, len(pairs))]
    step_flops = [count_flops(lambda pair=pair: omni_step(model, processor, batch, *pair)) for pair in timed_pairs]
    mean_flops = sum(step_flops) / len(step_flops)
    step_s = sum(step_times) / len(step_times)

    model.eval()
    settings = (
        [("asr", rate, None) for rate in config.audio_rates]
        + [("vsr", None, rate) for rate in config.video_rates]
        + [("avsr", a, v) for a, v in itertools.product(config.audio_rates, config.video_rates)]
    )
    decoding = []
    with torch.no_grad():
        for (task, audio_rate, video_rate), beams in itertools.product(settings, args.beams):
            inputs = decoding_inputs(config, processor, batch, task, 1, audio_rate=audio_rate, video_rate=video_rate)

            def generate():
                model.generate(
                    **inputs, num_beams=beams, do_sample=False, min_new_tokens=args.new_tokens,
                    max_new_tokens=args.new_tokens, share_prompt_prefill=True,
                )

            generate()
            decoding.append({
                "task": task, "audio_rate": audio_rate, "video_rate": video_rate, "beams": beams,
                "latency_s": round(timed(generate, device), 4),
            })
    result = {
        "backbone": name,
        "model": describe_config(config),
        "parameters": parameter_counts(model),
        "batch": describe_batch(batch, durations),
        "activation_checkpointing": checkpointed,
        "train_step_s": round(step_s, 4),
        "train_samples_per_s": round(args.clips / step_s, 2),
        "train_gflop_per_step": round(mean_flops / 1e9, 1),
        "train_mfu": round(mean_flops / step_s / spec_peak, 4) if spec_peak else None,
        "train_mfu_vs_measured_matmul": round(mean_flops / step_s / measured_peak, 4),
        "peak_gpu_memory_gb": round(peak_memory, 2) if peak_memory is not None else None,
        "decoding": decoding,
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv=None):
    args = parse_arguments(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = machine_info()
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)"
    spec_peak, peak_source = datasheet_peak(gpu_name)
    measured_peak = matmul_peak(
        torch.bfloat16, size=8192 if device.type == "cuda" else 1024, device=str(device)
    ).flops_per_s
    processor = build_processor("tiny")
    started = time.perf_counter()
    runs = [run_backbone(name, args, device, processor, spec_peak, measured_peak) for name in args.backbones]
    first = runs[0]
    report = {
        "benchmark": "gpu",
        "gpu_name": gpu_name,
        "config": {
            "encoders": "tiny (smoke)" if args.smoke else "Whisper-medium encoder, AV-HuBERT Large (random init)",
            "precision": "frozen parts bf16, LoRA + projectors fp32, AdamW" if device.type == "cuda" else "fp32",
            "steps": args.steps,
            "new_tokens": args.new_tokens,
        },
        "machine": finish_machine_info(machine),
        "peak_source": peak_source,
        "peak_tflops": round(spec_peak / 1e12, 1) if spec_peak else None,
        "matmul_peak_tflops_measured": round(measured_peak / 1e12, 2),
        "runs": runs,
        # The first backbone's figures at the top level, as before the backbone list.
        **{key: first[key] for key in ("train_samples_per_s", "train_mfu", "train_mfu_vs_measured_matmul",
                                       "peak_gpu_memory_gb", "decoding")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = format_table(
        ["backbone", "ckpt", "samples/s", "MFU", "MFU vs matmul", "peak GB"],
        [[run["backbone"], run["activation_checkpointing"], run["train_samples_per_s"], run["train_mfu"],
          run["train_mfu_vs_measured_matmul"], run["peak_gpu_memory_gb"]] for run in runs],
    )
    table += f"\n{gpu_name}; MFU against {peak_source}\n"
    table += format_table(
        ["backbone", "task", "a", "v", "beams", "latency_s"],
        [[run["backbone"], r["task"], r["audio_rate"] or "-", r["video_rate"] or "-", r["beams"], r["latency_s"]]
         for run in runs for r in run["decoding"]],
    )
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
