"""Mini-LRS generation speed: clips per second written (speech, mouth video, wav, mp4), per worker count.

Generates a fresh corpus in a temporary folder (or `--output-dir`) for each worker count; `seconds` counts the
clips only, `total_seconds` adds the lip-reading floor and the babble noise. `worker_cpu_ms_per_clip` is the CPU
time the workers spent per clip: on a machine shared with other jobs, clips/s depends on their load, this not.

    python benchmarks/bench_mini_lrs.py                          # 200 clips, one worker per CPU core
    python benchmarks/bench_mini_lrs.py --clips 500 --workers 1 2

Prints one JSON object on stdout (the last worker count's run at the top level, every run under `runs`; also
written to `--json-out` when given), and one readable line per run on stderr.
"""

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

from omni_avsr.data.mini_lrs import MiniLRSConfig, generate_corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200, help="clips to generate; a fifth of them are test clips")
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count()])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--babble-seconds", type=float, default=60.0)
    parser.add_argument("--output-dir", help="keep the corpora here (one subfolder per worker count)")
    parser.add_argument("--json-out", help="also write the JSON result to this file")
    args = parser.parse_args()

    num_test = max(1, args.clips // 5)
    config = MiniLRSConfig(
        num_train=args.clips - num_test, num_test=num_test, seed=args.seed, babble_seconds=args.babble_seconds
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_mini_lrs_") as scratch:
        for workers in args.workers:
            root = Path(args.output_dir or scratch) / f"workers_{workers}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            summary = generate_corpus(root, config, workers=workers, progress=False)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if summary["new_clips"] != args.clips:
                raise SystemExit(f"{root} already held clips; pass an empty --output-dir to measure generation.")
            cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            runs.append({**summary, "worker_cpu_ms_per_clip": round(1000 * cpu_seconds / args.clips, 1)})

    result = {**runs[-1], "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(), "runs": runs}
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(
            f"Mini-LRS: {run['clips']} clips in {run['seconds']:.1f} s = {run['clips_per_s']:.1f} clips/s with "
            f"{run['workers']} worker(s) ({run['worker_cpu_ms_per_clip']:.0f} ms of CPU per clip); with floor and "
            f"{args.babble_seconds:g} s of babble {run['total_seconds']:.1f} s; "
            f"lip-reading floor {run['lip_reading_floor_wer_percent']:.2f}% WER",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
