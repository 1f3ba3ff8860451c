"""Fill an Omni-AVSR model-card template (`model_cards/`) with the results of an evaluation.

    python -m omni_avsr.model_card --variant ST --results results.json --output README.md [--model-name ...]

`results.json` is what the evaluation writes: a list of rows `{"task", "audio_rate", "video_rate", "snr_db", "wer",
"num_words"}` with `null` where a field does not apply (`snr_db: null` for clean audio). The card gets a results
table in the paper's Table I layout (one column per task × rate, one row per noise condition) and one `model-index`
entry per row, the metadata the Hub shows as evaluation results.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from .configuration_omni_avsr import TASK_MODALITIES, TASKS


VARIANTS = ("S", "T", "ST")
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_cards"
DATASETS = {"lrs3": "LRS3", "lrs2": "LRS2"}
# `model-index` task types: the Hub's speech-recognition task for ASR, this project's pipeline task names otherwise.
TASK_TYPES = {
    "asr": "automatic-speech-recognition",
    "vsr": "visual-speech-recognition",
    "avsr": "audio-visual-speech-recognition",
}
TASK_NAMES = {
    "asr": "Speech recognition from audio (ASR)",
    "vsr": "Lip reading (VSR)",
    "avsr": "Audio-visual speech recognition (AVSR)",
}
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def load_results(path: str | Path) -> list[dict]:
    """Read and check `results.json`; errors name the row and the field."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path} must hold a non-empty list of result rows.")
    seen = set()
    for index, row in enumerate(rows):
        where = f"{path}, row {index}"
        if not isinstance(row, dict) or row.get("task") not in TASKS:
            raise ValueError(f"{where}: 'task' must be one of {', '.join(TASKS)}, got {row!r}.")
        for modality in ("audio", "video"):
            rate = row.get(f"{modality}_rate")
            needed = modality in TASK_MODALITIES[row["task"]]
            if not ((isinstance(rate, int) and rate > 0) if needed else rate is None):
                expected = "a positive integer" if needed else "null"
                raise ValueError(
                    f"{where}: '{modality}_rate' must be {expected} for task {row['task']!r}, got {rate!r}."
                )
        if row.get("snr_db") is not None and not isinstance(row["snr_db"], (int, float)):
            raise ValueError(f"{where}: 'snr_db' must be a number or null (clean), got {row['snr_db']!r}.")
        if not isinstance(row.get("wer"), (int, float)):
            raise ValueError(f"{where}: 'wer' must be a number (percent), got {row.get('wer')!r}.")
        key = _cell(row) + (row.get("snr_db"),)
        if key in seen:
            raise ValueError(f"{where}: a second result for {_label(_cell(row))} at {_condition(row.get('snr_db'))}.")
        seen.add(key)
    return rows


def results_table(rows: list[dict], dataset: str) -> str:
    """Markdown table in the paper's Table I layout; the average covers rows that have every column."""
    columns = sorted({_cell(row) for row in rows}, key=_column_order)
    conditions = sorted({row.get("snr_db") for row in rows}, key=_condition_order)
    wer = {_cell(row) + (row.get("snr_db"),): row["wer"] for row in rows}
    header = ["condition", *(_label(column) for column in columns), "Avg"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for snr_db in conditions:
        values = [wer.get(column + (snr_db,)) for column in columns]
        cells = ["–" if value is None else f"{value:.1f}" for value in values]
        average = "–" if None in values else f"{sum(values) / len(values):.1f}"
        lines.append("| " + " | ".join([_condition(snr_db), *cells, average]) + " |")
    num_words = max(row.get("num_words") or 0 for row in rows)
    words = f", {num_words:,} reference words" if num_words else ""
    caption = (
        f"WER (%) on the {DATASETS[dataset]} test set{words}; lower is better. Columns: task and compression "
        "rate(s) (audio,video)."
    )
    return caption + "\n\n" + "\n".join(lines)


def eval_results(rows: list[dict], dataset: str) -> list[EvalResult]:
    """`model-index` entries: the Hub groups them by task and test condition (`dataset.config`: clean or the noise),
    with one WER metric per compression rate (pair)."""
    results = []
    for row in sorted(rows, key=lambda row: (_condition_order(row.get("snr_db")), _column_order(_cell(row)))):
        snr_db = row.get("snr_db")
        condition = _condition(snr_db)
        results.append(
            EvalResult(
                task_type=TASK_TYPES[row["task"]],
                task_name=TASK_NAMES[row["task"]],
                dataset_type=dataset,
                dataset_name=DATASETS[dataset] + ("" if snr_db is None else f" ({condition})"),
                dataset_config=condition,
                dataset_split="test",
                dataset_args=None if snr_db is None else {"noise": "babble", "snr_db": snr_db},
                metric_type="wer",
                metric_value=row["wer"],
                metric_name=f"WER ({_label(_cell(row))})",
            )
        )
    return results


def render_model_card(template: str, rows: list[dict], model_name: str, repo_id: str, dataset: str = "lrs3") -> str:
    """Fill the template's `{{ placeholders }}` and add the `model-index` metadata."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}.")
    values = {
        "model_name": model_name,
        "repo_id": repo_id,
        "dataset_name": DATASETS[dataset],
        "results_table": results_table(rows, dataset),
    }
    unknown = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if unknown:
        raise ValueError(f"The template has unknown placeholders {unknown}; expected only {sorted(values)}.")
    card = ModelCard(PLACEHOLDER.sub(lambda match: values[match.group(1)], template))
    card.data.model_name = model_name
    card.data.eval_results = eval_results(rows, dataset)
    return str(card)


def _cell(row: dict) -> tuple:
    return row["task"], row.get("audio_rate"), row.get("video_rate")


def _column_order(cell: tuple) -> tuple:
    task, audio_rate, video_rate = cell
    return TASKS.index(task), audio_rate or 0, video_rate or 0


def _condition_order(snr_db) -> tuple:
    """Clean first, then from the least to the most noise."""
    return snr_db is not None, -(snr_db or 0)


def _label(cell: tuple) -> str:
    task, *rates = cell
    return f"{task.upper()} {','.join(str(rate) for rate in rates if rate is not None)}"


def _condition(snr_db) -> str:
    return "clean" if snr_db is None else f"babble {snr_db:g} dB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omni_avsr.model_card",
        description="Write a Hub model card (README.md) for an Omni-AVSR checkpoint from its evaluation results.",
    )
    parser.add_argument("--variant", required=True, choices=VARIANTS, help="Omni-LoRA variant of the checkpoint")
    parser.add_argument("--results", required=True, help="results.json written by the evaluation")
    parser.add_argument("--output", required=True, help="where to write the card (README.md in the checkpoint folder)")
    parser.add_argument("--model-name", help="name shown on the card (default: Omni-AVSR-<variant>)")
    parser.add_argument("--repo-id", help="Hub id used in the usage examples (default: the model name)")
    parser.add_argument("--dataset", default="lrs3", choices=sorted(DATASETS), help="test set of the results")
    parser.add_argument("--template", help="card template (default: model_cards/Omni-AVSR-<variant>.md)")
    args = parser.parse_args(argv)
    model_name = args.model_name or f"Omni-AVSR-{args.variant}"
    template_path = Path(args.template or TEMPLATE_DIR / f"Omni-AVSR-{args.variant}.md")
    try:
        if not template_path.is_file():
            raise FileNotFoundError(f"Model-card template not found: {template_path} (pass --template).")
        card = render_model_card(
            template_path.read_text(encoding="utf-8"),
            load_results(args.results),
            model_name=model_name,
            repo_id=args.repo_id or model_name,
            dataset=args.dataset,
        )
    except (OSError, ValueError) as error:
        print(f"model_card: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    Path(args.output).write_text(card, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
