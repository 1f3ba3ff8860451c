"""Our decoding against the official code's way of working: one clip at a time, audio padded to Whisper's 30 s.

Three `generate` runs over the same clips at the same beam width:

- `sequential_full_window`: the official way, one clip per call, the Whisper encoder on its full 30 s window;
- `batched_full_window`: all clips in one call (left-padded, masked), same window: the batching speed-up;
- `batched_trimmed_window`: one call with `audio_full_window=False` (Whisper on the speech only).

Then the trimmed window's effect on its own: encoder speed-up, how much the Whisper frames change on speech-like
audio (max abs and relative L2 difference over each clip's frames) and whether greedy tokens change. With random
weights these differences are an indication only: a trained Whisper attends differently to the padded silence.

    python benchmarks/bench_official_comparison.py             # mid size, 16 clips, ASR at rate 4, beam 15
    python benchmarks/bench_official_comparison.py --quick     # 4 clips, beam 5

Prints one JSON object on stdout, then a table on stderr.
"""

import argparse
import copy

import torch

from common import (
    add_common_arguments,
    apply_threads,
    build_config,
    build_model,
    build_processor,
    clip_durations,
    decoding_inputs,
    describe_batch,
    describe_config,
    emit,
    finish_machine_info,
    format_table,
    machine_info,
    make_batch,
    measure,
)


def frame_differences(full: torch.Tensor, trimmed: torch.Tensor, lengths: torch.Tensor) -> dict:
    """Max abs and relative L2 difference between two encoders' frames, over each clip's own frames."""
    max_abs, relative_l2 = [], []
    reference_frames = torch.cat([full[index, :length] for index, length in enumerate(lengths.tolist())])
    for index, length in enumerate(lengths.tolist()):
        reference, other = full[index, :length].float(), trimmed[index, :length].float()
        max_abs.append(float((reference - other).abs().max()))
        relative_l2.append(float((reference - other).norm() / reference.norm()))
    return {
        "max_abs_diff": round(max(max_abs), 4),
        "relative_l2_diff_mean": round(sum(relative_l2) / len(relative_l2), 4),
        "relative_l2_diff_max": round(max(relative_l2), 4),
        "reference_abs_mean": round(float(reference_frames.abs().mean()), 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip duration (clips spread ±0.4 s)")
    parser.add_argument("--task", choices=["asr", "avsr"], default="asr", help="a task with audio")
    parser.add_argument("--beams", type=int, default=15)
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per clip (min = max)")
    parser.add_argument("--quick", action="store_true", help="4 clips, beam 5")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.beams = 4, 5
    apply_threads(args.threads)
    machine = machine_info()

    processor = build_processor(args.size)
    full = build_model(build_config(args.size, processor), seed=args.seed).eval()
    trimmed = copy.deepcopy(full)
    trimmed.config.audio_full_window = False
    durations = clip_durations(args.clips, args.seconds, 0.4)
    batch = make_batch(processor, durations, seed=args.seed, text=False)
    rates = dict(audio_rate=min(full.config.audio_rates), video_rate=min(full.config.video_rates))

    def generate(model, clip_slice, beams):
        """New tokens of the clips of `clip_slice`, their prompts prefilled once per clip (as the evaluation does)."""
        clips = {name: value[clip_slice] for name, value in batch.items()}
        inputs = decoding_inputs(model.config, processor, clips, args.task, len(clips["input_features"]), **rates)
        return model.generate(
            **inputs, num_beams=beams, do_sample=False, min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens,
            share_prompt_prefill=True,
        )[:, inputs["input_ids"].shape[1]:]

    def one_at_a_time():
        for index in range(args.clips):
            generate(full, slice(index, index + 1), args.beams)

    runs = {
        "sequential_full_window": one_at_a_time,
        "batched_full_window": lambda: generate(full, slice(None), args.beams),
        "batched_trimmed_window": lambda: generate(trimmed, slice(None), args.beams),
    }
    media_seconds = sum(durations)
    with torch.no_grad():
        generate(full, slice(0, 1), 1)  # warm-up
        generate(trimmed, slice(0, 1), 1)
        results = {}
        for name, run in runs.items():
            timing = measure(run, warmup=0, repeats=1)
            results[name] = {
                "seconds": round(timing.median_s, 3),
                "cpu_s": round(timing.cpu_median_s, 3),
                "clips_per_s": round(args.clips / timing.median_s, 3),
                "rtf": round(timing.median_s / media_seconds, 4),
            }

        features, mask = batch["input_features"], batch["input_features_mask"]
        encoder_timings = {
            name: measure(lambda model=model: model.model.encode_audio(features, mask), warmup=0, repeats=1)
            for name, model in (("full_window", full), ("trimmed_window", trimmed))
        }
        full_frames, lengths = full.model.encode_audio(features, mask)
        trimmed_frames, _ = trimmed.model.encode_audio(features, mask)
        full_frames, trimmed_frames = full_frames.last_hidden_state, trimmed_frames.last_hidden_state
        greedy_full = generate(full, slice(None), 1)
        greedy_trimmed = generate(trimmed, slice(None), 1)

    tokens_changed = (greedy_full != greedy_trimmed).any(-1)
    sequential_s = results["sequential_full_window"]["seconds"]
    report = {
        "benchmark": "official_comparison",
        "config": {
            "size": args.size,
            "model": describe_config(full.config),
            "batch": describe_batch(batch, durations),
            "task": args.task,
            **rates,
            "beams": args.beams,
            "new_tokens": args.new_tokens,
            "generated_tokens_fixed": True,
            "dtype": "fp32",
            "audio": "speech-like (harmonics, moving formants, syllable envelope)",
        },
        "machine": finish_machine_info(machine),
        "runs": results,
        "batched_over_sequential": round(sequential_s / results["batched_full_window"]["seconds"], 2),
        "batched_over_sequential_cpu_time": round(
            results["sequential_full_window"]["cpu_s"] / results["batched_full_window"]["cpu_s"], 2
        ),
        "ours_over_official": round(sequential_s / results["batched_trimmed_window"]["seconds"], 2),
        "trimmed_window": {
            "encoder_speedup": round(
                encoder_timings["full_window"].median_s / encoder_timings["trimmed_window"].median_s, 2
            ),
            "encoder_seconds": {name: round(timing.median_s, 3) for name, timing in encoder_timings.items()},
            "encoder_speedup_cpu_time": round(
                encoder_timings["full_window"].cpu_median_s / encoder_timings["trimmed_window"].cpu_median_s, 2
            ),
            "generate_speedup": round(
                results["batched_full_window"]["seconds"] / results["batched_trimmed_window"]["seconds"], 2
            ),
            **frame_differences(full_frames, trimmed_frames, lengths),
            "greedy_clips_with_changed_tokens": int(tokens_changed.sum()),
            "greedy_changed_token_fraction": round(float((greedy_full != greedy_trimmed).float().mean()), 4),
            "clips": args.clips,
        },
    }
    table = format_table(
        ["run", "seconds", "cpu_s", "clips/s", "rtf"],
        [[name, r["seconds"], r["cpu_s"], r["clips_per_s"], r["rtf"]] for name, r in results.items()],
    )
    window = report["trimmed_window"]
    table += (
        f"\nbatched/sequential {report['batched_over_sequential']}x  ours/official {report['ours_over_official']}x"
        f"\ntrimmed window: encoder {window['encoder_speedup']}x, generate {window['generate_speedup']}x, "
        f"max |Δ| {window['max_abs_diff']}, rel L2 {window['relative_l2_diff_mean']} (mean), greedy tokens changed in "
        f"{window['greedy_clips_with_changed_tokens']}/{args.clips} clips"
    )
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
