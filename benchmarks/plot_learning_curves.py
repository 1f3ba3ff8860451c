#!/usr/bin/env python
"""Learning curves of finished training runs: every logged loss against steps and against wall time.

    python benchmarks/plot_learning_curves.py outputs/lip_reader/model outputs/demo/asr_warmup \
        outputs/demo/omni_avsr_st --output docs/demo_learning_curves.png

Each folder is a `Trainer` output folder (its `trainer_state.json` holds the log history and `train_results.json`
the run's wall time). Trainer logs carry no timestamps, so a log's wall time is the run's measured runtime spread
evenly over its steps (the demo's steps cost about the same each). Prints the curves as JSON.
"""

import argparse
import json
from pathlib import Path

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(run_folder: Path) -> dict:
    """`{"steps": ..., "minutes": ..., "losses": {name: values}}` of one run folder."""
    state_file, results_file = run_folder / "trainer_state.json", run_folder / "train_results.json"
    for path in (state_file, results_file):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: expected the output folder of a finished Trainer run.")
    state = json.loads(state_file.read_text())
    runtime = json.loads(results_file.read_text())["train_runtime"]
    logs = [entry for entry in state["log_history"] if "loss" in entry]
    if not logs:
        raise ValueError(f"{state_file} logged no training loss.")
    names = sorted({key for entry in logs for key in entry if key == "loss" or key.endswith("_loss")})
    steps = [entry["step"] for entry in logs]
    return {
        "steps": steps,
        "minutes": [runtime / 60 * step / state["global_step"] for step in steps],
        "losses": {name: [entry.get(name) for entry in logs] for name in names},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="Trainer output folders")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()

    curves = {str(run): learning_curves(run) for run in args.runs}
    figure, axes = plt.subplots(len(curves), 2, figsize=(11, 3.2 * len(curves)), squeeze=False)
    for row, (run, curve) in enumerate(curves.items()):
        for column, x_name in enumerate(("steps", "minutes")):
            for name, values in curve["losses"].items():
                axes[row, column].plot(curve[x_name], values, label=name)
            axes[row, column].set(title=Path(run).name, xlabel=x_name, ylabel="training loss", yscale="log")
            axes[row, column].legend(fontsize=7)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=100)
    print(json.dumps(curves))


if __name__ == "__main__":
    main()
