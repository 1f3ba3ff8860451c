"""The web app's one click against the pipeline: every task × rate cell of one clip.

`one_click`: what `omni-avsr app` runs on a click (`omni_avsr.app_backend.transcribe_grid`): each modality's
features and encoder once, then per cell only compression, projection and decoding. `one_by_one`: the same cells
decoded one call at a time through `AudioVisualSpeechRecognitionPipeline` (features and encoders again per cell).
Both are timed from decoded arrays and from the clip's files (decoding included: the click decodes the file once,
the pipeline once per cell). Both give the same transcripts (checked, `same_transcripts`).

    python benchmarks/bench_app.py --model outputs/demo/omni_avsr_st            # a trained model, its decoding
    python benchmarks/bench_app.py --model DIR --clip clip.mp4                   # a clip of yours
    python benchmarks/bench_app.py --size mid                                    # random mid-size model, 3 s clip

Without `--clip`, the clip is 3 s of speech-like audio and lip-like 96×96 frames (`common.py`), written as an mp4
and its `.wav`. A random model's LM rarely emits EOS, so then every cell generates exactly `--new-tokens` tokens;
a trained model decodes with its generation config. Prints one JSON object on stdout, then a table on stderr.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from common import (
    add_common_arguments,
    apply_threads,
    build_config,
    build_model,
    build_processor,
    describe_config,
    emit,
    finish_machine_info,
    format_table,
    lip_like_video,
    machine_info,
    measure,
    speech_like_waveform,
)
from omni_avsr import AudioVisualSpeechRecognitionPipeline
from omni_avsr.app_backend import transcribe_grid
from omni_avsr.app_media import load_seen_clip
from omni_avsr.cli import _load_model_and_processor
from omni_avsr.data.mini_lrs_render import write_mp4
from omni_avsr.media import SAMPLING_RATE
from omni_avsr.training.evaluation import evaluation_cells


def write_synthetic_clip(folder: Path, seconds: float, seed: int) -> Path:
    """A speech-like clip in the LRS layout: `clip.mp4` (96×96 mouth crops, 25 fps) and `clip.wav`."""
    rng = np.random.default_rng(seed)
    audio, frames = speech_like_waveform(seconds, rng), lip_like_video(seconds, rng)
    write_mp4(folder / "clip.mp4", np.repeat(frames[..., None], 3, axis=-1))
    soundfile.write(folder / "clip.wav", audio, SAMPLING_RATE, subtype="FLOAT")
    return folder / "clip.mp4"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--model", help="an Omni-AVSR folder (default: a random model of --size)")
    parser.add_argument("--clip", help="a clip file (default: a synthetic speech-like clip of --seconds)")
    parser.add_argument("--seconds", type=float, default=3.0, help="synthetic clip length (default: 3)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per cell for a random model (default: 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each arm (median reported)")
    args = parser.parse_args()
    apply_threads(args.threads)
    machine = machine_info()

    if args.model:
        model, processor = _load_model_and_processor(args.model)
        model_name = args.model
    else:
        processor = build_processor(args.size)
        model = build_model(build_config(args.size, processor), seed=args.seed).eval()
        model.generation_config.max_new_tokens = model.generation_config.min_new_tokens = args.new_tokens
        model_name = f"random {args.size}"
    recognizer = AudioVisualSpeechRecognitionPipeline(model=model, processor=processor)
    cells = evaluation_cells(model.config)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.clip) if args.clip else write_synthetic_clip(Path(folder), args.seconds, args.seed)
        clip = load_seen_clip(path)
        both = {"audio": clip.audio, "sampling_rate": SAMPLING_RATE, "frames": clip.frames}

        def one_click(source=None):
            seen = clip if source is None else load_seen_clip(source)
            return transcribe_grid(model, processor, seen.audio, seen.frames, cells)

        def one_by_one(source=None):
            return [
                recognizer(both if source is None else str(source), task=cell.task, audio_rate=cell.audio_rate,
                           video_rate=cell.video_rate)["text"]
                for cell in cells
            ]

        grid = one_click()
        same = [result.text for result in grid.cells] == one_by_one()
        timings = {
            "one_click": measure(one_click, repeats=args.repeats),
            "one_by_one": measure(one_by_one, repeats=args.repeats),
            "one_click_from_file": measure(lambda: one_click(path), repeats=args.repeats),
            "one_by_one_from_file": measure(lambda: one_by_one(path), repeats=args.repeats),
        }

    report = {
        "model": model_name,
        "clip": {"source": args.clip or f"synthetic {args.seconds:g} s", "seconds": round(clip.seconds, 2)},
        "cells": [cell.label for cell in cells],
        "same_transcripts": same,
        **{f"{arm}_s": timing.as_dict() for arm, timing in timings.items()},
        "one_by_one_over_one_click": round(timings["one_by_one"].median_s / timings["one_click"].median_s, 3),
        "one_by_one_over_one_click_from_file": round(
            timings["one_by_one_from_file"].median_s / timings["one_click_from_file"].median_s, 3
        ),
        "one_click_encoder_s": {modality: round(s, 4) for modality, s in grid.encoder_seconds.items()},
        "one_click_cell_s": {result.cell.label: round(result.seconds, 4) for result in grid.cells},
        "config": describe_config(model.config),
        "machine": finish_machine_info(machine),
    }
    rows = [[arm, f"{timing.median_s:.3f}", f"{timing.cpu_median_s:.3f}", f"{timing.spread:.2f}"]
            for arm, timing in timings.items()]
    table = format_table([f"arm ({len(cells)} cells)", "wall s", "cpu s", "spread"], rows)
    table += (
        f"\none by one / one click: {report['one_by_one_over_one_click']}x from arrays, "
        f"{report['one_by_one_over_one_click_from_file']}x from the file; same transcripts: {same}"
    )
    emit(report, table, args.json_out)


if __name__ == "__main__":
    main()
