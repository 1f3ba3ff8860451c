"""Data-loading throughput: clips per second from files on disk to dataset rows, per DataLoader worker count.

Each stage is a way of building the dataset and its collate function; a stage runs through a DataLoader with the
frame-budget batch sampler for each worker count. Stages: `media` (decode audio + grayscale frames), `augment`
(decode, then the reference's training augmentation) and `collate` (decode, augment, then the processor through
the training collator: everything a training step waits for). Without `--data-root`, 96×96 25 fps clips of ~3 s are
generated in a temporary folder in the LRS layout.

    python benchmarks/bench_data.py                       # generated clips
    python benchmarks/bench_data.py --data-root ROOT --label-csv lrs3_test.csv --num-clips 500

Prints one JSON object, then a table.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
from transformers import WhisperFeatureExtractor

from omni_avsr.data.augment import AudioVisualAugmentation
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.data.sampler import FrameBudgetBatchSampler
from omni_avsr.media import SAMPLING_RATE, VIDEO_FPS
from omni_avsr.processing_omni_avsr import OmniAVSRProcessor
from omni_avsr.training.tokenizer import train_bpe_tokenizer


def generate_corpus(root: Path, num_clips: int, seconds: float, size: int) -> Path:
    """Write `num_clips` H.264 mouth-sized clips with sibling wavs and a label file; returns the label file."""
    num_frames = round(seconds * VIDEO_FPS)
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:size, 0:size] / size
    lines = []
    for index in range(num_clips):
        rel_path = f"bench_video/test/spk{index % 10:02d}/{index:05d}.mp4"
        video_path = root / "bench" / rel_path
        video_path.parent.mkdir(parents=True, exist_ok=True)
        # Smooth, moving texture: closer to a lip crop's bitrate than flat or white-noise frames.
        phase = rng.uniform(0, 2 * np.pi)
        with av.open(str(video_path), "w") as container:
            stream = container.add_stream("libx264", rate=int(VIDEO_FPS))
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for frame_index in range(num_frames):
                t = frame_index / VIDEO_FPS
                image = 127 + 60 * np.sin(6 * xs + 3 * t + phase) * np.cos(5 * ys - 2 * t)
                image += 20 * np.exp(-((xs - 0.5) ** 2 + (ys - 0.6 - 0.05 * np.sin(8 * t)) ** 2) / 0.02)
                rgb = np.repeat(image[..., None], 3, axis=2).clip(0, 255).astype(np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode())
        speech = 0.1 * rng.standard_normal(num_frames * SAMPLING_RATE // int(VIDEO_FPS))
        soundfile.write(video_path.with_suffix(".wav"), speech.astype(np.float32), SAMPLING_RATE)
        lines.append(f"bench,{rel_path},{num_frames},1 2 3,clip number {index}")
    label_csv = root / "labels" / "bench.csv"
    label_csv.parent.mkdir(parents=True, exist_ok=True)
    label_csv.write_text("\n".join(lines) + "\n")
    soundfile.write(root / "babble.wav", 0.1 * rng.standard_normal(30 * SAMPLING_RATE), SAMPLING_RATE)
    return label_csv


def keep_rows(rows):
    return rows


def media_stage(args):
    return load_lrs_dataset(args.data_root, args.label_csv), keep_rows


def augment_stage(args):
    augmentation = AudioVisualAugmentation(args.noise_path)
    return load_lrs_dataset(args.data_root, args.label_csv, augmentation=augmentation, seed=0), keep_rows


def collate_stage(args):
    """Decode, augment, then the processor (log-mel, lip crops, labels) through the training collator."""
    dataset = load_lrs_dataset(args.data_root, args.label_csv, augmentation=AudioVisualAugmentation(args.noise_path), seed=0)
    tokenizer = OmniAVSRProcessor.prepare_tokenizer(train_bpe_tokenizer(dataset.with_format(None)["text"], 256))
    return dataset, OmniAVSRDataCollator(OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer))


def batch_size(batch) -> int:
    """Clips in a batch: a list of rows, or a collated `BatchFeature` (a mapping of batched tensors)."""
    return len(batch["labels"]) if isinstance(batch, Mapping) else len(batch)


STAGES = {"media": media_stage, "augment": augment_stage, "collate": collate_stage}


def measure(dataset, collate_fn, num_workers: int, max_frames: int, passes: int) -> dict:
    """Seconds per full pass; the first pass (worker start-up, file cache) is a warm-up and not counted."""
    sampler = FrameBudgetBatchSampler.from_dataset(dataset, max_frames=max_frames, seed=0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
    )
    pass_seconds = []
    for _ in range(passes + 1):
        start = time.perf_counter()
        num_clips = sum(batch_size(batch) for batch in loader)
        pass_seconds.append(time.perf_counter() - start)
    seconds = statistics.median(pass_seconds[1:])
    return {
        "clips": num_clips,
        "seconds_per_pass": round(seconds, 4),
        "clips_per_second": round(num_clips / seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="corpus root in the LRS layout (default: generate clips)")
    parser.add_argument("--label-csv", help="label file, absolute or under DATA_ROOT/labels")
    parser.add_argument("--noise-path", type=Path, help="babble noise for the augment stage (generated by default)")
    parser.add_argument("--num-clips", type=int, default=240, help="clips to generate, or to keep from the corpus")
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    parser.add_argument("--frame-size", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stages", nargs="+", choices=sorted(STAGES), default=["media", "augment", "collate"])
    parser.add_argument("--max-frames", type=int, default=1500, help="frame budget per batch")
    parser.add_argument("--passes", type=int, default=3, help="timed passes after one warm-up pass")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.data_root is None:
            args.data_root = Path(scratch)
            args.label_csv = generate_corpus(args.data_root, args.num_clips, args.clip_seconds, args.frame_size)
            args.noise_path = args.noise_path or args.data_root / "babble.wav"
            source = f"generated {args.num_clips} clips, {args.frame_size}x{args.frame_size}, {args.clip_seconds} s"
        else:
            if args.label_csv is None:
                parser.error("--label-csv is required with --data-root")
            if args.noise_path is None and "augment" in args.stages:
                args.noise_path = Path(scratch) / "babble.wav"
                soundfile.write(args.noise_path, 0.1 * np.random.default_rng(0).standard_normal(480_000), 16_000)
            source = f"{args.data_root} / {args.label_csv}"

        results = []
        for stage in args.stages:
            dataset, collate_fn = STAGES[stage](args)
            dataset = dataset.select(range(min(args.num_clips, len(dataset))))
            for num_workers in args.workers:
                result = measure(dataset, collate_fn, num_workers, args.max_frames, args.passes)
                results.append({"stage": stage, "num_workers": num_workers, **result})

    report = {
        "benchmark": "data_loading",
        "source": source,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "max_frames_per_batch": args.max_frames,
        "results": results,
    }
    print(json.dumps(report))
    print(f"\n{'stage':<10}{'workers':>8}{'clips':>8}{'s/pass':>10}{'clips/s':>10}")
    for row in results:
        print(
            f"{row['stage']:<10}{row['num_workers']:>8}{row['clips']:>8}"
            f"{row['seconds_per_pass']:>10.3f}{row['clips_per_second']:>10.1f}"
        )


if __name__ == "__main__":
    main()
