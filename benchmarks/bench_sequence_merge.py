"""Merging media into the LM sequence: the per-row loop the model used before the Transformers contract against the
placeholder merge it uses now, on the same features.

Both build the training rows of one step — every task for every clip of a batch (16 clips by default), media tokens
at one rate pair — and the prompt of one decoding call (one task, left-padded):

- `per_row_loop`: the layout of commit 667149f, kept here as the baseline: for every task and clip, the embeddings of
  BOS, markers, the clip's valid media tokens (a host sync per row to read its length), prompt and transcript are
  concatenated, then copied row by row into a padded tensor;
- `placeholder_merge`: the ids laid out once by the processor (one host sync per modality for the token counts),
  embedded, and each modality's tokens gathered to its placeholders in one `torch.where`.

The two must give the same embeddings (checked, `max_abs_difference`). Timings are medians of `--repeats`, wall and
CPU time, measured in the same run, interleaved.

    python benchmarks/bench_sequence_merge.py --threads 1            # mid size, 16 clips
    python benchmarks/bench_sequence_merge.py --size tiny --clips 4  # seconds

Prints one JSON object on stdout, then a table on stderr.
"""

import argparse

import torch

from common import (
    add_common_arguments,
    apply_threads,
    build_config,
    build_model,
    build_processor,
    clip_durations,
    describe_batch,
    describe_config,
    emit,
    finish_machine_info,
    format_table,
    machine_info,
    make_batch,
    measure,
)
from omni_avsr.configuration_omni_avsr import TASK_MODALITIES
from omni_avsr.processing_omni_avsr import IGNORE_INDEX, pad_rows


def per_row_loop(model, tasks, media, labels, padding_side):
    """The pre-contract layout (baseline): embeddings concatenated per task and clip, then padded row by row."""
    config = model.config
    embed_tokens = model.get_input_embeddings()

    def embed(ids):
        return embed_tokens(torch.as_tensor(ids, dtype=torch.long))

    markers = {
        "audio": (embed([config.audio_start_token_id]), embed([config.audio_end_token_id])),
        "video": (embed([config.video_start_token_id]), embed([config.video_end_token_id])),
    }
    bos = [embed([config.bos_token_id])] if config.bos_token_id is not None else []
    target_embeds = None if labels is None else embed(labels.masked_fill(labels == IGNORE_INDEX, config.pad_token_id))
    batch_size = next(iter(media.values())).pooler_output.shape[0]
    rows = []
    for task in tasks:
        prompt = embed(config.prompt_token_ids[task])
        for index in range(batch_size):
            pieces = list(bos)
            for modality in TASK_MODALITIES[task]:
                features = media[modality]
                start, end = markers[modality]
                pieces += [start, features.pooler_output[index, : int(features.token_lengths[index])], end]
            pieces.append(prompt)
            if target_embeds is not None:
                pieces.append(target_embeds[index])
            rows.append(torch.cat(pieces))
    length = max(row.shape[0] for row in rows)
    pad = embed([config.pad_token_id])
    inputs_embeds = prompt.new_empty(len(rows), length, prompt.shape[-1])
    for row_index, row in enumerate(rows):
        span = slice(0, row.shape[0]) if padding_side == "right" else slice(length - row.shape[0], None)
        inputs_embeds[row_index] = pad.expand(length, -1)
        inputs_embeds[row_index, span] = row
    return inputs_embeds


def placeholder_merge(model, processor, tasks, media, labels, padding_side):
    """The current layout: ids laid out once by the processor, then each modality's tokens gathered to its
    placeholders."""
    counts = {modality: features.token_lengths.tolist() for modality, features in media.items()}
    transcripts = None if labels is None else [[t for t in row if t != IGNORE_INDEX] for row in labels.tolist()]
    rows = [row for task in tasks for row in processor.task_rows(task, counts, transcripts)[0]]
    input_ids, _ = pad_rows(rows, processor.tokenizer.pad_token_id, padding_side)
    read = {modality for task in tasks for modality in TASK_MODALITIES[task]}
    return model.model.merge_media(model.model.embed_tokens(input_ids), input_ids, {m: media[m] for m in read})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip duration (clips spread ±0.4 s)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    apply_threads(args.threads)
    machine = machine_info()

    processor = build_processor(args.size)
    model = build_model(build_config(args.size, processor), seed=args.seed).eval()
    durations = clip_durations(args.clips, args.seconds, 0.4)
    batch = make_batch(processor, durations, seed=args.seed)
    audio_rate, video_rate = min(model.config.audio_rates), min(model.config.video_rates)
    with torch.no_grad():
        media = {
            "audio": model.get_audio_features(batch["input_features"], batch["input_features_mask"], audio_rate),
            "video": model.get_video_features(batch["pixel_values_videos"], batch["video_mask"], video_rate),
        }
    cases = {
        "training_rows": (list(model.config.tasks), batch["labels"], "right"),
        "decoding_prompt": (["avsr"], None, "left"),
    }
    results = {}
    with torch.no_grad():
        for name, (tasks, labels, side) in cases.items():
            baseline = per_row_loop(model, tasks, media, labels, side)
            ours = placeholder_merge(model, processor, tasks, media, labels, side)
            # The training rows of the baseline carry the batch's whole padded label block; the same tokens after.
            width = min(baseline.shape[1], ours.shape[1])
            valid = slice(None, width) if side == "right" else slice(-width, None)
            difference = float((baseline[:, valid] - ours[:, valid]).abs().max())
            timings = {}
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                steps = {
                    "per_row_loop": lambda: per_row_loop(model, tasks, media, labels, side),
                    "placeholder_merge": lambda: placeholder_merge(model, processor, tasks, media, labels, side),
                }
                for method, step in steps.items():
                    timing = measure(step, warmup=0, repeats=1)
                    timings.setdefault(method, []).append((timing.median_s, timing.cpu_median_s))
            medians = {
                method: {
                    "seconds": round(sorted(wall for wall, _ in values)[len(values) // 2], 6),
                    "cpu_s": round(sorted(cpu for _, cpu in values)[len(values) // 2], 6),
                }
                for method, values in timings.items()
            }
            results[name] = {
                "rows": baseline.shape[0],
                "sequence_length": ours.shape[1],
                **medians,
                "loop_over_merge": round(medians["per_row_loop"]["seconds"] / medians["placeholder_merge"]["seconds"], 3),
                "max_abs_difference": difference,
            }
    report = {
        "benchmark": "sequence_merge",
        "cases": results,
        "rates": {"audio": audio_rate, "video": video_rate},
        "config": {"size": args.size, "model": describe_config(model.config), "batch": describe_batch(batch, durations)},
        "machine": finish_machine_info(machine),
    }
    table = format_table(
        ["case", "rows", "length", "per-row loop s", "merge s", "loop / merge", "max |diff|"],
        [
            [name, row["rows"], row["sequence_length"], row["per_row_loop"]["seconds"],
             row["placeholder_merge"]["seconds"], row["loop_over_merge"], f"{row['max_abs_difference']:.1e}"]
            for name, row in results.items()
        ],
    )
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
