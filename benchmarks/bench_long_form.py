"""Long recordings: peak memory, wall time and real-time factor of transcribing a face video of 1, 3 and 10 minutes.

The video is the real LRS3 test clip (a 224×224 face track, 25 fps) looped to each length, with its audio as an AAC
track, so every task reads the container: voice-activity detection on the audio, frames decoded, converted and
mouth-cropped a window at a time, segments decoded in batches. Each (length, task) runs in a fresh process, so its
peak resident memory (`VmHWM`) is its own; a bounded long-form path shows about the same peak at 10 minutes as at
1, and a wall time that grows linearly with the length (the same seconds per minute of media).

    python benchmarks/bench_long_form.py                                   # a test-sized random model
    python benchmarks/bench_long_form.py --model outputs/demo/omni_avsr_st --json-out long_form.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit, finish_machine_info, format_table, load_tiny_models_helpers, machine_info, peak_rss_mb


REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "fixtures" / "lrs3_test_clip.mp4"


def looped_video(source: Path, minutes: float, folder: Path) -> Path:
    """`source` repeated to `minutes`, written once into `folder` (frames and AAC audio, as a phone would record)."""
    path = folder / f"{source.stem}_{minutes:g}min.mp4"
    if path.is_file():
        return path
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from long_recording import write_mouth_video

    from omni_avsr import load_clip

    clip = load_clip(source, grayscale=False, crop_mouth=False)
    repeats = int(np.ceil(minutes * 60 * 25 / len(clip.frames)))
    frames = np.concatenate([clip.frames] * repeats)[: round(minutes * 60 * 25)]
    audio = np.concatenate([clip.audio] * repeats)[: len(frames) * 640]
    partial = path.with_name(f".{path.name}.partial.mp4")
    write_mouth_video(partial, frames, audio)
    os.replace(partial, path)
    return path


def run_one(model: str, video: str, task: str, batch_size: int) -> dict:
    """One transcription in this process: its wall time and this process's peak memory."""
    from transformers import pipeline

    import omni_avsr  # noqa: F401  (registers the pipelines)

    recognizer = pipeline("audio-visual-speech-recognition", model=model, batch_size=batch_size)
    start = time.perf_counter()
    result = recognizer(video, task=task, return_timestamps=True)
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 2),
        # VmHWM, this process's own high-water mark: ru_maxrss would also count the benchmark's pages, which a
        # forked child holds until it runs this script.
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "chunks": len(result["chunks"]),
        "notes": sum("note" in chunk for chunk in result["chunks"]),
    }


def test_sized_model(folder: Path) -> str:
    """A random model of test size saved in `folder` (for measuring the path, not accuracy)."""
    if not (folder / "config.json").is_file():
        helpers = load_tiny_models_helpers()
        processor = helpers.tiny_processor()
        model = helpers.tiny_model(processor).eval()
        model.generation_config.max_new_tokens = 8
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return str(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an Omni-AVSR folder (default: a test-sized random model)")
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help="face video to loop (default: the LRS3 clip)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    parser.add_argument("--tasks", nargs="+", default=["asr", "vsr", "avsr"], choices=["asr", "vsr", "avsr"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work-dir", help="where the looped videos are kept (default: a temporary folder)")
    parser.add_argument("--json-out", help="also write the JSON report to this file")
    parser.add_argument("--run", nargs=2, metavar=("VIDEO", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.model, args.run[0], args.run[1], args.batch_size)))
        return
    if not os.path.isfile(args.video):
        raise SystemExit(f"Video not found: {args.video} (give a face video with --video).")
    machine = machine_info()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_long_form_"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or test_sized_model(work / "test_sized_model")
    runs = []
    for minutes in args.minutes:
        video = looped_video(Path(args.video), minutes, work)
        for task in args.tasks:
            command = [sys.executable, __file__, "--model", model, "--run", str(video), task,
                       "--batch-size", str(args.batch_size)]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            result.update(minutes=minutes, task=task, real_time_factor=round(result["wall_s"] / (60 * minutes), 3))
            runs.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    summary = {}
    shortest, longest = min(args.minutes), max(args.minutes)
    for task in args.tasks:
        by_length = {run["minutes"]: run for run in runs if run["task"] == task}
        summary[task] = {
            f"peak_rss_{longest:g}min_over_{shortest:g}min": round(
                by_length[longest]["peak_rss_mb"] / by_length[shortest]["peak_rss_mb"], 3
            ),
            "seconds_per_media_minute": {f"{m:g}": round(run["wall_s"] / m, 1) for m, run in by_length.items()},
        }
    report = {
        "video": f"{os.path.basename(args.video)} looped",
        "model": "test-sized random model" if args.model is None else args.model,
        "batch_size": args.batch_size,
        "runs": runs,
        "summary": summary,
        "machine": finish_machine_info(machine),
    }
    rows = [[run["minutes"], run["task"], run["wall_s"], run["real_time_factor"], run["peak_rss_mb"], run["chunks"]]
            for run in runs]
    emit(report, format_table(["minutes", "task", "wall s", "RTF", "peak RSS MB", "chunks"], rows), args.json_out)


if __name__ == "__main__":
    main()
