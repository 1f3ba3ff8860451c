"""Training cost: seconds per step of Omni-AVSR against Llama-MTSK's pattern and three separate single-task models.

Paper Table II counts LLM passes per batch; this measures seconds, FLOPs and memory of one training step (forward
+ backward, no optimizer step) on the same batch:

- `omni`: our model's forward, one rate pair, the three tasks in ONE LM call (rows grouped by task).
- `mtsk`: Llama-MTSK's pattern built from the same model's pieces: encoders once, pooled at every rate, then
  C_A + C_V + C_A·C_V LM passes (ASR at each audio rate, VSR at each video rate, AVSR at each pair).
- `separate`: an ASR model with its own audio encoder, a VSR model with its own video encoder and an AVSR model
  with both, each a full forward + backward at the same rate pair.

Patterns run interleaved (one step of each per round) so load from other processes hits them alike. Round `r` uses
rate pair `r` of (4,2), (16,5), (4,5), (16,2): LM tokens are additive in the audio and video rates, so the first two
already give the mean over all pairs, i.e. the expected cost of a uniformly sampled step. Then `variants` times the
Omni step with speed-ups (bf16, trimmed audio window, per-task LM calls, ...) at the first pair, and the step is
profiled. MFU = FLOPs counted by torch's FlopCounterMode / step time / the matmul peak measured here.

    python benchmarks/bench_training.py --threads 1          # mid size, ~10 min on one core
    python benchmarks/bench_training.py --quick              # one round, two variants
    python benchmarks/bench_training.py --bf16-autocast --audio-window trimmed --variants ""   # fast settings
    python benchmarks/bench_training.py --size tiny          # seconds: checks the script works

On a machine shared with other jobs, `--threads 1` keeps wall time close to CPU time (both are reported).

Prints one JSON object on stdout, then a table on stderr.
"""

import argparse
import copy
import itertools
import statistics
from contextlib import nullcontext

import torch

from common import (
    add_common_arguments,
    apply_threads,
    build_config,
    build_model,
    build_processor,
    cast_media,
    clip_durations,
    count_flops,
    current_rss_mb,
    describe_batch,
    describe_config,
    emit,
    finish_machine_info,
    format_table,
    machine_info,
    make_batch,
    matmul_peak,
    measure,
    parameter_counts,
    peak_rss_mb,
    profile_top_ops,
    reset_peak_rss,
    time_once,
    utilisation,
)
from omni_avsr.configuration_omni_avsr import TASK_MODALITIES
from omni_avsr.processing_omni_avsr import media_inputs
from omni_avsr.training.matryoshka import matryoshka_step, multitask_inputs, task_losses
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode


VARIANTS = (
    "fp32", "bf16-autocast", "bf16-frozen", "trimmed-window", "bf16-frozen+trimmed-window", "per-task-lm-calls",
    "threads-1",
)
DEFAULT_VARIANTS = VARIANTS[:-1]
QUICK_VARIANTS = ("fp32", "bf16-frozen")


class LMCallRecorder:
    """Counts LM calls, task groups (LoRA routing groups) and token positions (padding included) of one model."""

    def __init__(self, model):
        self.model = model
        self.reset()
        self._handle = model.language_model.register_forward_pre_hook(self._record, with_kwargs=True)

    def close(self):
        self._handle.remove()

    def reset(self):
        self.calls = self.task_groups = self.token_positions = 0

    def _record(self, module, args, kwargs):
        embeds = kwargs["inputs_embeds"]
        routing = self.model.model._routed_lora_layers[0].adapter_routing
        self.calls += 1
        # A single (adapter set, all rows) group serves every row: count the tasks the rows hold instead.
        self.task_groups += len(routing) if routing and routing[0][1] is not None else 1
        self.token_positions += embeds.shape[0] * embeds.shape[1]


# ----- the three training patterns -----------------------------------------------------------------------------


def omni_step(model, processor, batch, audio_rate, video_rate):
    model.zero_grad(set_to_none=True)
    matryoshka_step(model, processor, batch, audio_rate=audio_rate, video_rate=video_rate).loss.backward()


def task_loss(model, processor, batch, task: str, media: dict) -> torch.Tensor:
    """One LM pass of one task, on media already projected (the training step's layout, routing and loss)."""
    inputs, logits_to_keep = multitask_inputs(processor, batch, [task], {m: value.rate for m, value in media.items()})
    embeddings = model.model.merge_media(model.model.embed_tokens(inputs["input_ids"]), inputs["input_ids"], media)
    logits = model(inputs_embeds=embeddings, task=[task], use_cache=False, logits_to_keep=logits_to_keep).logits
    return task_losses(logits, inputs["labels"], [task])[task]


def passes_step(model, processor, batch, passes: list[tuple[str, dict]]):
    """Encode once, pool and project each needed rate once, then one LM pass per (task, rates) and one backward."""
    model.zero_grad(set_to_none=True)
    frames = model.model.encode_media(**media_inputs(batch))
    projected = {}
    loss = 0.0
    for task, rates in passes:
        media = {}
        for modality in TASK_MODALITIES[task]:
            key = (modality, rates[modality])
            if key not in projected:
                projected[key] = model.model.project_media(modality, *frames[modality], rates[modality])
            media[modality] = projected[key]
        loss = loss + model.config.task_weight(task) * task_loss(model, processor, batch, task, media)
    loss.backward()


def mtsk_passes(config) -> list[tuple[str, dict]]:
    return (
        [("asr", {"audio": rate}) for rate in config.audio_rates]
        + [("vsr", {"video": rate}) for rate in config.video_rates]
        + [("avsr", {"audio": a, "video": v}) for a, v in itertools.product(config.audio_rates, config.video_rates)]
    )


def per_task_passes(audio_rate, video_rate) -> list[tuple[str, dict]]:
    return [
        ("asr", {"audio": audio_rate}),
        ("vsr", {"video": video_rate}),
        ("avsr", {"audio": audio_rate, "video": video_rate}),
    ]


def task_inputs(batch: dict, task: str) -> dict:
    names = {"audio": ("input_features", "input_features_mask"), "video": ("pixel_values_videos", "video_mask")}
    keep = {"labels"} | {name for modality in TASK_MODALITIES[task] for name in names[modality]}
    return {name: value for name, value in batch.items() if name in keep}


def separate_step(models: dict, processor, batch, audio_rate, video_rate):
    for task, model in models.items():
        omni_step(model, processor, task_inputs(batch, task), audio_rate, video_rate)


# ----- precision ------------------------------------------------------------------------------------------------


def to_frozen_bf16(model):
    """Frozen weights (encoders, LM) in bf16; LoRA adapters and projectors, the trained parts, stay fp32."""
    model.to(torch.bfloat16)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model


def rate_pair_order(config) -> list[tuple[int, int]]:
    """All (audio, video) rate pairs, diagonal first: (4,2), (16,5), then (4,5), (16,2)."""
    pairs = list(itertools.product(range(len(config.audio_rates)), range(len(config.video_rates))))
    width = max(len(config.audio_rates), len(config.video_rates))
    pairs.sort(key=lambda ij: ((ij[0] - ij[1]) % width, ij[0]))
    return [(config.audio_rates[i], config.video_rates[j]) for i, j in pairs]


def run_patterns(omni, separate, processor, batch, pairs, rounds, recorders, context) -> dict:
    """Interleaved rounds (one warm-up): per pattern, step seconds, LM calls/tokens and peak RSS."""
    steps = {
        "omni": lambda pair: omni_step(omni, processor, batch, *pair),
        "mtsk": lambda pair: passes_step(omni, processor, batch, mtsk_passes(omni.config)),
        "separate": lambda pair: separate_step(separate, processor, batch, *pair),
    }
    samples = {name: [] for name in steps}
    peaks = {name: 0.0 for name in steps}
    lm_counts = {}
    for round_index in range(-1, rounds):
        pair = pairs[max(round_index, 0) % len(pairs)]
        for name, step in steps.items():
            for recorder in recorders[name]:
                recorder.reset()
            reset_peak_rss()
            with context():
                seconds = time_once(lambda: step(pair))
            peaks[name] = max(peaks[name], peak_rss_mb() or 0.0)
            if round_index >= 0:
                samples[name].append((pair, *seconds))
            lm_counts[name] = {
                key: sum(getattr(recorder, key) for recorder in recorders[name])
                for key in ("calls", "task_groups", "token_positions")
            }
    results = {}
    for name, timed in samples.items():
        walls, cpus = {}, {}
        for pair, wall, cpu in timed:
            walls.setdefault(f"{pair[0]},{pair[1]}", []).append(wall)
            cpus.setdefault(f"{pair[0]},{pair[1]}", []).append(cpu)
        per_pair = {pair: statistics.median(values) for pair, values in walls.items()}
        per_pair_cpu = {pair: statistics.median(values) for pair, values in cpus.items()}
        results[name] = {
            # Mean over the rate pairs timed: the expected cost of a step whose pair is sampled uniformly.
            "step_s": round(statistics.mean(per_pair.values()), 3),
            "step_cpu_s": round(statistics.mean(per_pair_cpu.values()), 3),
            "step_s_by_rates": {pair: round(value, 3) for pair, value in per_pair.items()},
            "samples_s": [round(wall, 3) for _, wall, _ in timed],
            "samples_cpu_s": [round(cpu, 3) for _, _, cpu in timed],
            "llm_calls_per_step": lm_counts[name]["calls"],
            "llm_passes_per_step": lm_counts[name]["task_groups"],
            "llm_token_positions_last_step": lm_counts[name]["token_positions"],
            "peak_rss_mb": round(peaks[name]),
        }
    return results


def variant_runner(name: str, omni, processor, batch, pair):
    """The model, batch and step function of one Omni speed-up variant (a modified copy of the model)."""
    model, inputs, context = omni, batch, nullcontext
    if "bf16-frozen" in name:
        model = to_frozen_bf16(copy.deepcopy(omni))
        inputs = cast_media(batch, torch.bfloat16)
    if "trimmed-window" in name:
        model = model if model is not omni else copy.deepcopy(omni)
        model.config.audio_full_window = False
    if name == "bf16-autocast":
        context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731

    def step():
        with context():
            if name == "per-task-lm-calls":
                passes_step(model, processor, inputs, per_task_passes(*pair))
            else:
                omni_step(model, processor, inputs, *pair)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip duration (clips spread ±0.4 s)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of the three patterns (after 1 warm-up)")
    parser.add_argument("--audio-window", choices=["full", "trimmed"], default="full", help="for the patterns")
    parser.add_argument("--bf16-autocast", action="store_true", help="run the patterns under CPU bf16 autocast")
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS),
        help=f"comma list of {VARIANTS} (applied to the pattern model; empty: none)",
    )
    parser.add_argument("--variant-repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round, variants fp32 and bf16-frozen, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.variants, args.variant_repeats = 1, ",".join(QUICK_VARIANTS), 1
    variants = [name for name in args.variants.split(",") if name]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    apply_threads(args.threads)
    machine = machine_info()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}

    processor = build_processor(args.size)
    full_window = args.audio_window == "full"
    omni = build_model(build_config(args.size, processor, audio_full_window=full_window), seed=args.seed)
    omni = keep_frozen_encoders_in_eval_mode(omni.train())
    single_task = {
        "asr": dict(video=False, tasks=["asr"], lora_variant="S"),
        "vsr": dict(audio=False, tasks=["vsr"], lora_variant="S"),
        "avsr": dict(tasks=["avsr"], lora_variant="S"),
    }
    separate = {
        task: keep_frozen_encoders_in_eval_mode(build_model(
            build_config(args.size, processor, audio_full_window=full_window, **options), seed=args.seed + 1 + index
        ).train())
        for index, (task, options) in enumerate(single_task.items())
    }
    durations = clip_durations(args.clips, args.seconds, 0.4)
    batch = make_batch(processor, durations, seed=args.seed)
    pairs = rate_pair_order(omni.config)
    omni_recorder = LMCallRecorder(omni)
    recorders = {
        "omni": [omni_recorder],
        "mtsk": [omni_recorder],
        "separate": [LMCallRecorder(model) for model in separate.values()],
    }
    rss_before_steps = current_rss_mb()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16_autocast else nullcontext
    patterns = run_patterns(omni, separate, processor, batch, pairs, args.rounds, recorders, autocast)
    for recorder in [omni_recorder, *recorders["separate"]]:
        recorder.close()

    first_pair = pairs[0]
    flops = {
        "omni": count_flops(lambda: omni_step(omni, processor, batch, *first_pair)),
        "mtsk": count_flops(lambda: passes_step(omni, processor, batch, mtsk_passes(omni.config))),
        "separate": count_flops(lambda: separate_step(separate, processor, batch, *first_pair)),
    }
    for name, pattern in patterns.items():
        pattern["gflop_per_step_at_first_pair"] = round(flops[name] / 1e9, 1)
    with torch.no_grad():
        # Encoder forwards: once per step for omni and mtsk, twice (each modality in two models) for separate.
        encoder_flops = count_flops(lambda: omni.model.encode_media(**media_inputs(batch)))

    variant_results = []
    profiles = {}
    baseline = None
    for name in variants:
        step = variant_runner(name, omni, processor, batch, first_pair)
        threads = torch.get_num_threads()
        if name == "threads-1":
            torch.set_num_threads(1)
        timing = measure(step, warmup=1, repeats=args.variant_repeats)
        if name in ("fp32", "bf16-autocast", "bf16-frozen"):
            profiles[name] = profile_top_ops(step)
        torch.set_num_threads(threads)
        baseline = timing if name == "fp32" else baseline
        peak = peaks["bf16"] if "bf16" in name else peaks["fp32"]
        # Precision and threads keep the fp32 step's ops; a shorter audio window or unpadded per-task rows do not.
        variant_flops = count_flops(step) if "trimmed" in name or name == "per-task-lm-calls" else flops["omni"]
        variant_results.append({
            "variant": name,
            **timing.as_dict(),
            "gflop": round(variant_flops / 1e9, 1),
            "speedup_vs_fp32": round(baseline.median_s / timing.median_s, 2) if baseline else None,
            "speedup_vs_fp32_cpu_time": round(baseline.cpu_median_s / timing.cpu_median_s, 2) if baseline else None,
            **utilisation(variant_flops, timing, peak),
        })
        del step

    by_variant = {row["variant"]: row for row in variant_results}
    omni_s, mtsk_s, separate_s = (patterns[name]["step_s"] for name in ("omni", "mtsk", "separate"))
    omni_cpu, mtsk_cpu, separate_cpu = (patterns[name]["step_cpu_s"] for name in ("omni", "mtsk", "separate"))
    bf16_rows = [row for row in variant_results if row["variant"] in ("bf16-autocast", "bf16-frozen")]
    best_bf16 = min(bf16_rows, key=lambda row: row["cpu_median_s"]) if bf16_rows else None
    report = {
        "benchmark": "training",
        "config": {
            "size": args.size,
            "model": describe_config(omni.config),
            "parameters": {"omni": parameter_counts(omni), **{t: parameter_counts(m) for t, m in separate.items()}},
            "batch": describe_batch(batch, durations),
            "precision": "bf16 autocast" if args.bf16_autocast else "fp32",
            "audio_window": args.audio_window,
            "optimizer_step": False,
            "rounds": args.rounds,
            "rate_pairs_timed": [f"{a},{v}" for a, v in pairs[: args.rounds]] if args.rounds < len(pairs) else "all",
            "variant_rate_pair": f"{first_pair[0]},{first_pair[1]}",
        },
        "machine": finish_machine_info(machine),
        "matmul_peak": {dtype: peak.as_dict() for dtype, peak in peaks.items()},
        "omni_step_s": omni_s,
        "mtsk_step_s": mtsk_s,
        "separate_step_s": separate_s,
        "omni_over_mtsk": round(omni_s / mtsk_s, 3),
        "omni_over_separate": round(omni_s / separate_s, 3),
        "omni_over_mtsk_cpu_time": round(omni_cpu / mtsk_cpu, 3),
        "omni_over_separate_cpu_time": round(omni_cpu / separate_cpu, 3),
        "omni_over_mtsk_flops": round(flops["omni"] / flops["mtsk"], 3),
        "omni_over_separate_flops": round(flops["omni"] / flops["separate"], 3),
        "encoders_gflop_forward": round(encoder_flops / 1e9, 1),
        "peak_rss_mb": round(max(pattern["peak_rss_mb"] for pattern in patterns.values())),
        "rss_before_steps_mb": round(rss_before_steps) if rss_before_steps else None,
        "llm_passes_per_batch": {name: pattern["llm_passes_per_step"] for name, pattern in patterns.items()},
        "llm_calls_per_batch": {name: pattern["llm_calls_per_step"] for name, pattern in patterns.items()},
        "patterns": patterns,
        "train_mfu_fp32": by_variant["fp32"]["mfu"] if "fp32" in by_variant else None,
        "train_mfu_fp32_cpu_time": by_variant["fp32"]["mfu_cpu_time"] if "fp32" in by_variant else None,
        "train_mfu_bf16": best_bf16["mfu"] if best_bf16 else None,
        "train_mfu_bf16_cpu_time": best_bf16["mfu_cpu_time"] if best_bf16 else None,
        "train_mfu_bf16_variant": best_bf16["variant"] if best_bf16 else None,
        "variants": variant_results,
        "profile_top_ops": profiles,
    }
    rows = [
        [name, pattern["step_s"], pattern["step_cpu_s"], pattern["llm_calls_per_step"],
         pattern["llm_passes_per_step"], pattern["llm_token_positions_last_step"],
         pattern["gflop_per_step_at_first_pair"], pattern["peak_rss_mb"]]
        for name, pattern in patterns.items()
    ]
    table = format_table(
        ["pattern", "step_s", "cpu_s", "LM calls", "LM passes", "LM tokens", "GFLOP", "peak RSS MB"], rows
    )
    table += (
        f"\nomni/mtsk {report['omni_over_mtsk']} (CPU time {report['omni_over_mtsk_cpu_time']}, FLOPs "
        f"{report['omni_over_mtsk_flops']})  omni/separate {report['omni_over_separate']} (CPU time "
        f"{report['omni_over_separate_cpu_time']}, FLOPs {report['omni_over_separate_flops']})\n\n"
    )
    table += format_table(
        ["variant", "median_s", "cpu_s", "spread", "speedup", "speedup cpu", "GFLOP", "MFU", "MFU cpu"],
        [
            [r["variant"], r["median_s"], r["cpu_median_s"], r["spread"], r["speedup_vs_fp32"],
             r["speedup_vs_fp32_cpu_time"], r["gflop"], r["mfu"], r["mfu_cpu_time"]]
            for r in variant_results
        ],
    )
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
