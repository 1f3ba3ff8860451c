"""Lip-reader training speed in video frames per second: clips decoded at every step or read from the frame cache,
the crop read whole or average-pooled, on the same batches.

A training step of `run_lip_reading_ctc.py` is timed in two parts: `data` (reading the batch's clips, decoding them
unless they come from the cache, and the collator's normalisation and padding) and `step` (forward, CTC loss,
backward and AdamW). Frames per second count the clips' real frames.

    python benchmarks/bench_lip_reader.py --data-root outputs/demo/mini_lrs
    python benchmarks/bench_lip_reader.py --data-root outputs/demo/mini_lrs --steps 60 --json-out lip_reader.json
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import apply_threads, emit, finish_machine_info, format_table, machine_info
from transformers import WhisperFeatureExtractor

from omni_avsr import AVHubertVideoConfig, OmniAVSRProcessor
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.data.lrs import load_lrs_dataset, use_frame_cache
from omni_avsr.data.sampler import FrameBudgetBatchSampler
from omni_avsr.modeling_avhubert import AVHubertForCTC
from omni_avsr.training.tokenizer import train_bpe_tokenizer


REPO = Path(__file__).resolve().parents[1]
CONFIGURATIONS = {
    "decoded, 88x88 (the demo's lip reader before)": {"frame_cache": False, "frontend_input_pooling": 1},
    "cached, 88x88": {"frame_cache": True, "frontend_input_pooling": 1},
    "cached, pooled to 44x44 (the shipped lip reader)": {"frame_cache": True, "frontend_input_pooling": 2},
}


def run(dataset, processor, architecture: dict, pooling: int, steps: int, max_frames: int) -> dict:
    config = AVHubertVideoConfig.from_dict(
        {
            **architecture,
            "frontend_input_pooling": pooling,
            "vocab_size": len(processor.tokenizer),
            "pad_token_id": processor.tokenizer.pad_token_id,
            "eos_token_id": processor.tokenizer.eos_token_id,
        }
    )
    torch.manual_seed(0)
    model = AVHubertForCTC(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collator = OmniAVSRDataCollator(processor)
    sampler = FrameBudgetBatchSampler.from_dataset(dataset, max_frames, seed=0)
    batches = iter(sampler)
    data_seconds = step_seconds = 0.0
    frames = 0
    for index in range(steps + 3):  # the first 3 steps warm up (allocations, oneDNN kernels)
        start = time.perf_counter()
        batch = collator([dataset[row] for row in next(batches)])
        loaded = time.perf_counter()
        loss = model(batch["pixel_values_videos"], video_mask=batch["video_mask"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        done = time.perf_counter()
        if index >= 3:
            data_seconds += loaded - start
            step_seconds += done - loaded
            frames += int(batch["video_mask"].sum())
    total = data_seconds + step_seconds
    return {
        "frames_per_s": round(frames / total, 1),
        "data_ms_per_step": round(1000 * data_seconds / steps, 1),
        "model_ms_per_step": round(1000 * step_seconds / steps, 1),
        "data_share": round(data_seconds / total, 3),
        "frames": frames,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True, help="a Mini-LRS (or LRS) corpus root")
    parser.add_argument("--labels", default="mini_lrs_train.csv")
    parser.add_argument("--architecture", default=str(REPO / "recipes" / "lip_reader" / "avhubert.json"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-frames", type=int, default=200, help="frames per batch (the recipe's 200)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    apply_threads(args.threads)
    machine = machine_info()
    architecture = json.loads(Path(args.architecture).read_text())
    decoded = load_lrs_dataset(args.data_root, args.labels, modalities=("video",))
    cached = load_lrs_dataset(args.data_root, args.labels, modalities=("video",))
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        use_frame_cache(cached, cache_dir, workers=1)
        cache_seconds = time.perf_counter() - start
        tokenizer = train_bpe_tokenizer(decoded.with_format(None)["text"], 256)
        processor = OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
        runs = {
            name: run(cached if options["frame_cache"] else decoded, processor, architecture,
                      options["frontend_input_pooling"], args.steps, args.max_frames)
            for name, options in CONFIGURATIONS.items()
        }
    baseline = next(iter(runs.values()))["frames_per_s"]
    for result in runs.values():
        result["speedup"] = round(result["frames_per_s"] / baseline, 2)
    report = {
        "corpus": args.data_root,
        "clips": len(decoded),
        "cache_build_s": round(cache_seconds, 1),
        "steps": args.steps,
        "max_frames_per_batch": args.max_frames,
        "runs": runs,
        "machine": finish_machine_info(machine),
    }
    rows = [[name, *result.values()] for name, result in runs.items()]
    headers = ["configuration", "frames/s", "data ms/step", "model ms/step", "data share", "frames", "speed-up"]
    emit(report, format_table(headers, rows), args.json_out)


if __name__ == "__main__":
    main()
