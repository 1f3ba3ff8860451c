"""Elastic inference: decoding speed per task × compression rate(s) × batch size × beam width.

One row per (task, rates, batch size, beams): `clips_per_s`, `rtf` (processing seconds / media seconds) and
`llm_input_tokens_per_s_media` (LM input tokens, media + markers + prompt, per second of media: the cost the rates
choose). A random-weight LM rarely emits EOS, so every row generates exactly `--new-tokens` tokens
(`min_new_tokens = max_new_tokens`; the paper's limit is 32) and rows are comparable. The decode MFU (FLOPs of the
whole `generate` call counted by torch's FlopCounterMode / its time / the matmul peak measured here) is given for
AVSR at the finest rates.

By default the audio encoder sees the speech only (`audio_full_window=False`): with Whisper's 30 s window the
encoder costs the same at every rate and hides the elasticity; `bench_official_comparison.py` measures that
window's cost. `--audio-window full` times the model's default instead.

    python benchmarks/bench_inference.py                 # mid size, fp32, batch 1 and 8, greedy and beam 15
    python benchmarks/bench_inference.py --quick         # finest and coarsest rates, batch 1 and 4
    python benchmarks/bench_inference.py --dtype bf16     # whole model in bf16

Prints one JSON object on stdout, then a table on stderr.
"""

import argparse
import itertools

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
    decoding_inputs,
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
    utilisation,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class PrefillRecorder:
    """LM input tokens of the prefill (first LM call of a `generate`), padding excluded, per beam."""

    def __init__(self, model):
        self.prefill_tokens = None
        model.language_model.base_model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None or self.prefill_tokens is not None:
            return
        mask = kwargs.get("attention_mask")
        self.prefill_tokens = int(mask.sum()) if mask is not None else embeds.shape[0] * embeds.shape[1]


def task_settings(config, quick: bool) -> list[tuple[str, int | None, int | None]]:
    """(task, audio rate, video rate) for every task and rate (pair); `quick`: finest and coarsest rates only."""
    audio_rates = config.audio_rates if not quick else [min(config.audio_rates), max(config.audio_rates)]
    video_rates = config.video_rates if not quick else [min(config.video_rates), max(config.video_rates)]
    settings = [("asr", rate, None) for rate in audio_rates] + [("vsr", None, rate) for rate in video_rates]
    pairs = itertools.product(audio_rates, video_rates)
    if quick:
        pairs = zip(audio_rates, video_rates)
    return settings + [("avsr", audio, video) for audio, video in pairs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 and 8 (--quick: 1 and 4)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 15])
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per clip (min = max)")
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip duration (clips spread ±0.4 s)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per row (median)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--audio-window", choices=["trimmed", "full"], default="trimmed")
    parser.add_argument("--quick", action="store_true", help="finest and coarsest rates, batch sizes 1 and 4")
    args = parser.parse_args()
    args.batch_sizes = args.batch_sizes or ([1, 4] if args.quick else [1, 8])
    apply_threads(args.threads)
    machine = machine_info()
    dtype = DTYPES[args.dtype]
    peak = matmul_peak(dtype)

    processor = build_processor(args.size)
    config = build_config(args.size, processor, audio_full_window=args.audio_window == "full")
    model = build_model(config, seed=args.seed).eval().to(dtype)
    recorder = PrefillRecorder(model)
    durations = clip_durations(max(args.batch_sizes), args.seconds, 0.4)
    batch = cast_media(make_batch(processor, durations, seed=args.seed, text=False), dtype)

    def generate(task, audio_rate, video_rate, batch_size, beams):
        return model.generate(
            **decoding_inputs(config, processor, batch, task, batch_size, audio_rate=audio_rate, video_rate=video_rate),
            num_beams=beams, do_sample=False, min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens,
        )

    settings = task_settings(config, args.quick)
    with torch.no_grad():
        # Warm-up: one clip per task, so first-call costs (allocator, kernel set-up) stay out of the rows.
        for task, audio_rate, video_rate in settings:
            generate(task, audio_rate, video_rate, 1, 1)
        rows, timings = [], []
        for (task, audio_rate, video_rate), batch_size, beams in itertools.product(
            settings, sorted(args.batch_sizes), sorted(args.beams)
        ):
            recorder.prefill_tokens = None
            timing = measure(lambda: generate(task, audio_rate, video_rate, batch_size, beams), 0, args.repeats)
            media_seconds = sum(durations[:batch_size])
            timings.append(timing)
            rows.append({
                "task": task,
                "audio_rate": audio_rate,
                "video_rate": video_rate,
                "batch_size": batch_size,
                "beams": beams,
                "seconds": round(timing.median_s, 3),
                "cpu_s": round(timing.cpu_median_s, 3),
                "spread": round(timing.spread, 3),
                "clips_per_s": round(batch_size / timing.median_s, 3),
                "rtf": round(timing.median_s / media_seconds, 4),
                "llm_input_tokens_per_s_media": round(recorder.prefill_tokens / beams / media_seconds, 2),
            })
        finest = ("avsr", min(config.audio_rates), min(config.video_rates))
        decode_mfu = {}
        for row, timing in zip(rows, timings):
            if (row["task"], row["audio_rate"], row["video_rate"]) != finest:
                continue
            if row["batch_size"] == max(args.batch_sizes) and row["beams"] > 1:
                # The largest beam × batch row would double the run time for one more number.
                continue
            flops = count_flops(lambda: generate(*finest, row["batch_size"], row["beams"]))
            row["gflop"] = round(flops / 1e9, 1)
            decode_mfu[f"bs{row['batch_size']}_beam{row['beams']}"] = utilisation(flops, timing, peak)

    report = {
        "benchmark": "inference",
        "config": {
            "size": args.size,
            "model": describe_config(config),
            "parameters": parameter_counts(model),
            "batch": describe_batch(batch, durations),
            "dtype": args.dtype,
            "new_tokens": args.new_tokens,
            "generated_tokens_fixed": True,
            "repeats": args.repeats,
        },
        "machine": finish_machine_info(machine),
        "matmul_peak": {args.dtype: peak.as_dict()},
        "rows": rows,
        f"decode_mfu_{args.dtype}": decode_mfu,
    }
    table = format_table(
        ["task", "a", "v", "bs", "beams", "s", "cpu_s", "clips/s", "rtf", "LM tok/s media"],
        [
            [r["task"], r["audio_rate"] or "-", r["video_rate"] or "-", r["batch_size"], r["beams"], r["seconds"],
             r["cpu_s"], r["clips_per_s"], r["rtf"], r["llm_input_tokens_per_s_media"]]
            for r in rows
        ],
    )
    table += f"\ndecode MFU ({args.dtype}, AVSR at the finest rates): {decode_mfu}"
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
