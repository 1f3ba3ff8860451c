"""Mouth-cropping speed (`omni_avsr.cropping`) in frames per second, against the video's own 25 fps.

Stages, each timed on the same decoded frames: `decode` (the face video to RGB frames), `landmarks` (dlib's face
detector + 68-point predictor on every frame), `align` (interpolation, smoothing, the similarity fit and the warp
into 96×96 crops, from the landmarks found), `crop` (landmarks + align: what `load_clip` adds for a face video).
`realtime_factor` is frames/s over 25: above 1, cropping keeps up with the video. CPU time per frame is reported
too, since wall time on a shared machine depends on its load. `--scales 2` also times the frames upscaled 2× (a
448×448 face video), as the detector's cost grows with the pixels.

    python benchmarks/bench_cropping.py                                  # the real LRS3 clip, 3 repeats
    python benchmarks/bench_cropping.py --video face.mp4 --scales 1 2 --json-out cropping.json
"""

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
from common import emit, finish_machine_info, format_table, machine_info

from omni_avsr.cropping import DlibLandmarkDetector, MouthCropper
from omni_avsr.media import VIDEO_FPS, load_clip


DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lrs3_test_clip.mp4"


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of `repeats` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus)), result


def stage(name: str, frames: int, wall: float, cpu: float) -> dict:
    return {
        "stage": name,
        "frames_per_s": round(frames / wall, 1),
        "ms_per_frame": round(1000 * wall / frames, 3),
        "cpu_ms_per_frame": round(1000 * cpu / frames, 3),
        "realtime_factor": round(frames / wall / VIDEO_FPS, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help="face video (default: the shared LRS3 clip)")
    parser.add_argument("--frames", type=int, help="use only the first N frames")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="also time the frames resized ×S")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1: one core)")
    parser.add_argument("--json-out", help="also write the JSON report to this file")
    args = parser.parse_args()
    if not os.path.isfile(args.video):
        raise SystemExit(f"Video not found: {args.video} (give a face video with --video).")
    cv2.setNumThreads(args.threads)
    machine = machine_info()

    decode_wall, decode_cpu, clip = timed(
        lambda: load_clip(args.video, audio=False, grayscale=False, crop_mouth=False), args.repeats
    )
    source = clip.frames[: args.frames]
    decode = stage("decode", len(clip.frames), decode_wall, decode_cpu)
    detector = DlibLandmarkDetector()
    cropper = MouthCropper(detector=detector)
    runs = []
    for scale in args.scales:
        height, width = (round(side * scale) for side in source.shape[1:3])
        frames = source if scale == 1 else np.stack([cv2.resize(frame, (width, height)) for frame in source])
        landmarks_wall, landmarks_cpu, found = timed(lambda: [detector(frame) for frame in frames], args.repeats)
        align_wall, align_cpu, _ = timed(lambda: cropper(frames, landmarks=found), args.repeats)
        crop_wall, crop_cpu, crops = timed(lambda: cropper(frames), args.repeats)
        runs.append(
            {
                "frame_size": f"{width}x{height}",
                "frames": len(frames),
                "detected": int(crops.detected.sum()),
                "stages": [
                    stage("landmarks", len(frames), landmarks_wall, landmarks_cpu),
                    stage("align", len(frames), align_wall, align_cpu),
                    stage("crop", len(frames), crop_wall, crop_cpu),
                ],
            }
        )

    report = {
        "video": os.path.basename(args.video),
        "video_fps": VIDEO_FPS,
        "crop_frames_per_s": runs[0]["stages"][2]["frames_per_s"],
        "crop_realtime_factor": runs[0]["stages"][2]["realtime_factor"],
        "decode": decode,
        "runs": runs,
        "cv2_threads": args.threads,
        "repeats": args.repeats,
        "machine": finish_machine_info(machine),
    }
    rows = [[run["frame_size"], run["frames"], run["detected"], *row.values()] for run in runs for row in run["stages"]]
    rows.append(["", len(clip.frames), "", *decode.values()])
    headers = ["frames", "n", "found", "stage", "frames/s", "ms/frame", "CPU ms/frame", "× real time"]
    emit(report, format_table(headers, rows), args.json_out)


if __name__ == "__main__":
    main()
