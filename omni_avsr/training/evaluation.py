"""Word error rate of every task × compression rate, clean and in babble noise (the paper's Tables I and III)."""

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import evaluate
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..command_line import prepare_output_dir, write_text_atomically
from ..configuration_omni_avsr import TASK_MODALITIES
from ..media import VIDEO_FPS
from ..modeling_omni_avsr import AUDIO_FRAMES_PER_SECOND
from ..processing_omni_avsr import media_inputs, pad_rows
from ..data.augment import add_noise


@dataclass(frozen=True)
class EvaluationCell:
    """One entry of the WER grid; `None` where a field does not apply (`snr_db=None`: clean audio)."""

    task: str
    audio_rate: int | None
    video_rate: int | None
    snr_db: float | None = None

    @property
    def llm_tokens_per_second(self) -> float:
        """Media tokens the LM reads per second of input: the cost axis of the elastic trade-off."""
        tokens = AUDIO_FRAMES_PER_SECOND / self.audio_rate if self.audio_rate else 0.0
        return tokens + (VIDEO_FPS / self.video_rate if self.video_rate else 0.0)

    @property
    def label(self) -> str:
        rates = ",".join(str(rate) for rate in (self.audio_rate, self.video_rate) if rate is not None)
        return f"{self.task.upper()} {rates}"


def evaluation_cells(config, snrs_db=(None,), tasks=None) -> list[EvaluationCell]:
    """Every task × rate (pair) of the model, at each SNR; noise only touches tasks that hear audio."""
    cells = []
    for snr_db in snrs_db:
        for task in tasks or config.tasks:
            modalities = TASK_MODALITIES[task]
            if snr_db is not None and "audio" not in modalities:
                continue
            audio_rates = config.audio_rates if "audio" in modalities else [None]
            video_rates = config.video_rates if "video" in modalities else [None]
            cells += [EvaluationCell(task, ra, rv, snr_db) for ra in audio_rates for rv in video_rates]
    return cells


WER_METRIC_PATH = Path(__file__).resolve().parents[1] / "metrics" / "wer"


@functools.cache
def wer_metric():
    """The project's `evaluate` WER metric (a local folder: it loads without the Hub)."""
    return evaluate.load(str(WER_METRIC_PATH))


def word_error_rate(references: list[str], hypotheses: list[str]) -> tuple[float, int]:
    """Corpus WER in percent (total edits / total reference words) and the number of reference words."""
    scores = wer_metric().compute(predictions=hypotheses, references=references)
    return scores["wer"], scores["num_words"]


def measurement_record(
    dataset, data_root, labels, split: str, model_name: str, decoding: dict, noise_path=None, noise_seed: int = 0
) -> dict:
    """What a WER table was measured on, stored in each of its rows (`measured_on`) so that a model card states it
    and a resumed evaluation never mixes two measurements: the corpus (the label rows' `dataset_name`) and its root,
    the label file and split, the number of clips, the model, the decoding settings and the noise (recording and
    seed of the SNR rows)."""
    names = sorted(set(dataset.with_format(None)["dataset_name"]))
    noise = {"path": str(Path(noise_path).resolve()), "seed": noise_seed} if noise_path is not None else None
    return {
        "corpus": "+".join(names),
        "data_root": str(Path(data_root).resolve()),
        "labels": str(labels),
        "split": split,
        "num_clips": len(dataset),
        "model": str(model_name),
        "decoding": dict(sorted(decoding.items())),
        "noise": noise,
    }


@torch.no_grad()
def evaluate_wer(
    model,
    processor,
    dataset,
    cells: list[EvaluationCell],
    noise: np.ndarray | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    seed: int = 0,
    output_dir: str | Path | None = None,
    measured_on: dict | None = None,
    **generate_kwargs,
) -> list[dict]:
    """Decode `dataset` (rows with `audio`, `frames`, `text`) for every cell; returns result rows.

    Media are decoded, processed and run through the encoders once per SNR and batch, and reused by every cell of
    that SNR (each cell only compresses, projects and decodes). With `output_dir`, results are written after each
    SNR condition (`results.json`, replaced whole: an interruption leaves the previous file), so an interrupted run
    keeps what it finished and a rerun skips conditions already there. Every row carries `measured_on` (see
    `measurement_record`); a `results.json` measured on something else is refused, not mixed in.
    """
    if any(cell.snr_db is not None for cell in cells) and noise is None:
        raise ValueError("Cells with an SNR need a babble-noise recording (`noise`).")
    model.eval()
    results_path = Path(output_dir) / "results.json" if output_dir is not None else None
    rows = json.loads(results_path.read_text()) if results_path is not None and results_path.exists() else []
    for index, row in enumerate(rows):
        if row.get("measured_on") != measured_on:
            raise ValueError(
                f"{results_path}, row {index}: measured on {row.get('measured_on')}, not on {measured_on}; expected "
                "results of this same evaluation to resume. Use another output folder or move the file away."
            )
    done = {(row["task"], row["audio_rate"], row["video_rate"], row["snr_db"]) for row in rows}
    pending = [cell for cell in cells if (cell.task, cell.audio_rate, cell.video_rate, cell.snr_db) not in done]
    for snr_db in dict.fromkeys(cell.snr_db for cell in pending):
        condition = [cell for cell in pending if cell.snr_db == snr_db]
        hypotheses = {cell: [] for cell in condition}
        references = []
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate_rows)
        description = "clean" if snr_db is None else f"{snr_db:g} dB babble"
        for batch_index, clips in enumerate(tqdm(loader, desc=f"Decoding ({description}, {len(condition)} cells)")):
            references += clips["text"]
            audio = clips["audio"]
            if snr_db is not None:
                audio = [
                    add_noise(waveform, noise, snr_db, np.random.default_rng((seed, batch_index * batch_size + i)))
                    for i, waveform in enumerate(audio)
                ]
            modalities = {modality for cell in condition for modality in TASK_MODALITIES[cell.task]}
            encoded = encode_clips(model, processor, audio, clips["frames"], modalities)
            for cell in condition:
                hypotheses[cell] += decode_cell(model, processor, encoded, cell, **generate_kwargs)
        for cell in condition:
            wer, num_words = word_error_rate(references, hypotheses[cell])
            row = {**asdict(cell), "wer": round(wer, 3), "num_words": num_words}
            rows.append(row if measured_on is None else {**row, "measured_on": measured_on})
        if results_path is not None:
            results_path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(results_path, json.dumps(rows, indent=1))
    return rows


def encode_clips(model, processor, audio: list | None, frames: list | None, modalities) -> dict:
    """Run a batch of clips through the processor and the encoders of `modalities` once: what `decode_cell` decodes
    at any task and rates (the WER grid, the web app's grid of every task × rate)."""
    inputs = processor(
        audio=audio if "audio" in modalities else None,
        videos=frames if "video" in modalities else None,
        sampling_rate=processor.feature_extractor.sampling_rate,
    )
    return model.model.encode_media(**media_inputs(inputs.to(model.device)), modalities=modalities)


def decode_cell(model, processor, encoded: dict, cell: EvaluationCell, **generate_kwargs) -> list[str]:
    """The transcripts of a cell's task at its rates, from media `encode_clips` encoded: compressed and projected at
    the rates, merged into the prompt the processor lays out for their token counts, and decoded with the prompt
    prefilled once per clip (not per beam)."""
    rates = {"audio": cell.audio_rate, "video": cell.video_rate}
    features = {
        modality: model.model.project_media(modality, *encoded[modality], rates[modality])
        for modality in TASK_MODALITIES[cell.task]
    }
    counts = {modality: value.token_lengths.tolist() for modality, value in features.items()}
    rows, _ = processor.task_rows(cell.task, counts)
    input_ids, attention_mask = (tensor.to(model.device) for tensor in pad_rows(rows, processor.tokenizer.pad_token_id, "left"))
    inputs_embeds = model.model.merge_media(model.model.embed_tokens(input_ids), input_ids, features)
    tokens = model.generate(
        inputs_embeds=inputs_embeds, attention_mask=attention_mask, task=cell.task, share_prompt_prefill=True,
        **generate_kwargs,
    )
    return processor.decode_transcripts(tokens)


def _collate_rows(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in ("audio", "frames", "text")}


def results_markdown(rows: list[dict]) -> str:
    """Table I layout (one column per task × rate, one row per condition) and Table III layout (SNR sweep)."""
    cells = [EvaluationCell(row["task"], row["audio_rate"], row["video_rate"], row["snr_db"]) for row in rows]
    wer = {cell: row["wer"] for cell, row in zip(cells, rows)}
    columns = list(dict.fromkeys(EvaluationCell(c.task, c.audio_rate, c.video_rate) for c in cells))
    conditions = list(dict.fromkeys(cell.snr_db for cell in cells))
    lines = ["## WER (%) by task and compression rates (Table I layout)", ""]
    if rows and rows[0].get("measured_on"):
        lines += [describe_measurement(rows[0]["measured_on"]), ""]
    lines.append("| condition | " + " | ".join(column.label for column in columns) + " | Avg |")
    lines.append("|---" * (len(columns) + 2) + "|")
    for snr_db in conditions:
        values = [wer.get(EvaluationCell(c.task, c.audio_rate, c.video_rate, snr_db)) for c in columns]
        present = [value for value in values if value is not None]
        name = "clean" if snr_db is None else f"babble {snr_db:g} dB"
        formatted = ["–" if value is None else f"{value:.1f}" for value in values]
        lines.append(f"| {name} | " + " | ".join(formatted) + f" | {np.mean(present):.1f} |")
    noisy = [snr for snr in conditions if snr is not None]
    if noisy:
        lines += ["", "## WER (%) in babble noise (Table III layout)", ""]
        lines.append("| task, rates | clean | " + " | ".join(f"{snr:g} dB" for snr in noisy) + " |")
        lines.append("|---" * (len(noisy) + 2) + "|")
        for column in columns:
            values = [wer.get(EvaluationCell(column.task, column.audio_rate, column.video_rate, snr)) for snr in [None, *noisy]]
            if any(value is not None for value in values[1:]):
                lines.append(
                    f"| {column.label} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in values) + " |"
                )
    return "\n".join(lines) + "\n"


def describe_measurement(measured_on: dict) -> str:
    """One sentence saying what a table was measured on (the corpus, split, clips and decoding settings)."""
    decoding = measured_on.get("decoding") or {}
    settings = ", ".join(f"{name} {value}" for name, value in decoding.items() if value is not None)
    return (
        f"Measured on {measured_on['corpus']} ({measured_on['split']} split, {measured_on['num_clips']} clips of "
        f"{measured_on['labels']}){'; decoding: ' + settings if settings else ''}."
    )


def plot_wer_against_tokens(rows: list[dict], path: str | Path) -> None:
    """WER against LLM media tokens per second, one line per task (solid: clean, dashed: each noise level)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    cells = [(EvaluationCell(row["task"], row["audio_rate"], row["video_rate"], row["snr_db"]), row["wer"]) for row in rows]
    for task in dict.fromkeys(cell.task for cell, _ in cells):
        for snr_db in dict.fromkeys(cell.snr_db for cell, _ in cells if cell.task == task):
            points = sorted((cell.llm_tokens_per_second, wer) for cell, wer in cells if cell.task == task and cell.snr_db == snr_db)
            label = task.upper() + ("" if snr_db is None else f" ({snr_db:g} dB)")
            axes.plot(*zip(*points), marker="o", linestyle="-" if snr_db is None else "--", label=label)
    axes.set_xlabel("LLM media tokens per second of input")
    axes.set_ylabel("WER (%)")
    axes.set_title("Omni-AVSR: accuracy against compression")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_wer_against_snr(rows: list[dict], path: str | Path) -> None:
    """WER against the babble's SNR (clean at the left), one line per task and rates: where audio fails and lips hold
    (the paper's Table III as a figure). Lip reading hears no noise: its clean WER is drawn across as a reference."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    levels = [None, *sorted({row["snr_db"] for row in rows if row["snr_db"] is not None}, reverse=True)]
    names = ["clean" if level is None else f"{level:g}" for level in levels]
    for row in rows:
        if row["snr_db"] is None and row["task"] == "vsr":
            cell = EvaluationCell(row["task"], row["audio_rate"], row["video_rate"])
            finest = row["video_rate"] == _finest_video_rate(rows)
            axes.axhline(row["wer"], linestyle=":", color="black" if finest else "grey", label=cell.label)
    for cell in dict.fromkeys(
        EvaluationCell(row["task"], row["audio_rate"], row["video_rate"]) for row in rows if row["task"] != "vsr"
    ):
        wer = {row["snr_db"]: row["wer"] for row in rows if (row["task"], row["audio_rate"], row["video_rate"]) ==
               (cell.task, cell.audio_rate, cell.video_rate)}
        points = [(index, wer[level]) for index, level in enumerate(levels) if level in wer]
        axes.plot(*zip(*points), marker="o", linestyle="-" if cell.task == "avsr" else "--", label=cell.label)
    axes.set_xticks(range(len(levels)), names)
    axes.set_xlabel("babble noise, SNR (dB)")
    axes.set_ylabel("WER (%)")
    axes.set_title("Omni-AVSR in babble noise")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _finest_video_rate(rows: list[dict]) -> int | None:
    rates = [row["video_rate"] for row in rows if row["video_rate"] is not None]
    return min(rates) if rates else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(rows: list[dict], output_dir: str | Path) -> str:
    """Write `results.json`, `results.md`, `wer_vs_tokens.png` and, with noisy rows, `wer_vs_snr.png`; returns the
    markdown."""
    output_dir = prepare_output_dir(output_dir, "--output_dir")
    write_text_atomically(output_dir / "results.json", json.dumps(rows, indent=1))
    markdown = results_markdown(rows)
    write_text_atomically(output_dir / "results.md", markdown)
    plot_wer_against_tokens(rows, output_dir / "wer_vs_tokens.png")
    if any(row["snr_db"] is not None for row in rows):
        plot_wer_against_snr(rows, output_dir / "wer_vs_snr.png")
    return markdown
