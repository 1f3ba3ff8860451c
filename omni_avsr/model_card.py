"""Write the Hub model card of an Omni-AVSR checkpoint from the checkpoint itself and its evaluation results.

    python -m omni_avsr.model_card --model CHECKPOINT_DIR --results results.json --output README.md [--model-name ...]

Everything the card states about the checkpoint comes from its own files: the variant, tasks, rates, components
(names where the checkpoint records them, else their architecture and size), Omni-LoRA settings and parameter counts
from `config.json`, what trained from `training_args.json`, the decoding defaults from `generation_config.json`, the
training steps from `trainer_state.json`.
The results come from the evaluation's `results.json`: a list of rows `{"task", "audio_rate", "video_rate",
"snr_db", "wer", "num_words", "measured_on"}` (`null` where a field does not apply, `snr_db: null` for clean audio),
where `measured_on` records the corpus, split, clips and decoding settings (see
`omni_avsr.training.evaluation.measurement_record`). Files written before that record existed are read too, with the
corpus given as `--dataset`. The card gets a results table in the paper's Table I layout (one column per task ×
rate, one row per noise condition) and one `model-index` entry per row, the metadata the Hub shows as evaluation
results. The template (`model_cards/Omni-AVSR-<variant>.md`) adds the paper's own numbers, labelled as the paper's.
"""

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard
from transformers import GenerationConfig

from .command_line import EXPECTED_ERRORS, check_output_file, report_error, write_text_atomically
from .configuration_omni_avsr import TASK_MODALITIES, TASKS, OmniAVSRConfig
from .media import MOUTH_CROP_SIZE, VIDEO_FPS
from .modeling_omni_avsr import AUDIO_FRAMES_PER_SECOND, OmniAVSRForConditionalGeneration
from .training.arguments import OmniAVSRTrainingArguments
from .training.policy import freeze
from .training.trainer import TRAINING_ARGS_FILE


PROG = "python -m omni_avsr.model_card"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_cards"
# Display names of the corpora this project reads; any other corpus keeps its own name.
CORPUS_NAMES = {"lrs3": "LRS3", "lrs2": "LRS2", "mini_lrs": "Mini-LRS"}
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
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def load_results(path: str | Path) -> tuple[list[dict], dict | None]:
    """Read and check `results.json`: its rows and the `measured_on` record they share (`None` for files written
    before the record existed); errors name the row and the field."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"Results file not found: {path}") from None
    except ValueError as error:
        raise ValueError(f"{path} is not a JSON results file ({error}); expected the evaluation's results.json.") from None
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
        if row.get("measured_on") != rows[0].get("measured_on"):
            raise ValueError(
                f"{where}: measured on {row.get('measured_on')}, but row 0 on {rows[0].get('measured_on')}; expected "
                "the rows of one evaluation."
            )
        key = _cell(row) + (row.get("snr_db"),)
        if key in seen:
            raise ValueError(f"{where}: a second result for {_label(_cell(row))} at {_condition(row.get('snr_db'))}.")
        seen.add(key)
    measured_on = rows[0].get("measured_on")
    if measured_on is not None and not (isinstance(measured_on, dict) and isinstance(measured_on.get("corpus"), str)):
        raise ValueError(f"{path}, row 0: 'measured_on' must be a record with a 'corpus', got {measured_on!r}.")
    return rows, measured_on


def describe_checkpoint(model_dir: str | Path) -> dict:
    """What the card states about the checkpoint, read from its folder: config, parameter counts (the model is built
    on the meta device, so nothing is allocated), generation defaults and, when present, the training state."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir}: no config.json; expected an Omni-AVSR checkpoint folder.")
    config = OmniAVSRConfig.from_pretrained(model_dir)
    missing = [modality for modality in ("audio", "video") if not config.has_modality(modality)]
    if missing:
        raise ValueError(
            f"--model {model_dir} has no {' or '.join(missing)} encoder; the Omni-AVSR card templates describe "
            "audio-visual checkpoints (audio and video encoders)."
        )
    policy = training_policy(model_dir)
    with torch.device("meta"):
        model = OmniAVSRForConditionalGeneration(config)
    freeze(model, policy["freeze_audio_encoder"], policy["freeze_video_encoder"], policy["freeze_language_model"])
    state_file = model_dir / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else None
    generation_file = model_dir / "generation_config.json"
    generation = GenerationConfig.from_pretrained(model_dir) if generation_file.is_file() else None
    return {
        "config": config,
        "policy": policy,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "trainable_parameters": sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad),
        "generation": generation,
        "training_state": state,
    }


def training_policy(model_dir: Path) -> dict[str, bool]:
    """What the training run froze (`--freeze_*`): from the `training_args.json` the training script saves, else
    from the keys an older config.json held, else the paper's policy (the training arguments' defaults, and how the
    official checkpoints were trained)."""
    recorded = {}
    for name in (TRAINING_ARGS_FILE, "config.json"):
        if (model_dir / name).is_file():
            recorded = {**json.loads((model_dir / name).read_text(encoding="utf-8")), **recorded}
    defaults = {field.name: field.default for field in dataclasses.fields(OmniAVSRTrainingArguments)}
    names = ("freeze_audio_encoder", "freeze_video_encoder", "freeze_language_model")
    return {name: bool(recorded.get(name, defaults[name])) for name in names}


def render_model_card(
    template: str,
    rows: list[dict],
    checkpoint: dict,
    model_name: str,
    repo_id: str,
    measured_on: dict | None = None,
    dataset: str | None = None,
) -> str:
    """Fill the template's `{{ placeholders }}` and add the metadata (`model-index`, datasets, base models)."""
    corpus = _corpus(measured_on, dataset)
    config = checkpoint["config"]
    audio_rates, video_rates = config.audio_rates, config.video_rates
    values = {
        "model_name": model_name,
        "repo_id": repo_id,
        "results_table": results_table(rows, corpus, measured_on),
        "components_table": _components_table(checkpoint),
        "tokens_table": _tokens_table(config),
        "checkpoint_details": _checkpoint_details(checkpoint, corpus, measured_on),
        "component_sources": "; ".join(
            f"{role}: {_source(sub_config)}" for role, sub_config in _components(config).items()
        ),
        "decoding_defaults": _decoding_defaults(checkpoint["generation"]),
        "audio_rate": min(audio_rates),
        "coarse_audio_rate": max(audio_rates),
        "video_rate": min(video_rates),
        "coarse_video_rate": max(video_rates),
    }
    unknown = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if unknown:
        raise ValueError(f"The template has unknown placeholders {unknown}; expected only {sorted(values)}.")
    card = ModelCard(PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template))
    card.data.model_name = model_name
    card.data.datasets = [name.lower() for name in corpus.split("+")]
    base_models = [sub_config.name_or_path for sub_config in _components(config).values() if _hub_id(sub_config)]
    if base_models:
        card.data.base_model = base_models
    card.data.eval_results = eval_results(rows, corpus, (measured_on or {}).get("split", "test"))
    return str(card)


def results_table(rows: list[dict], corpus: str, measured_on: dict | None = None) -> str:
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
    details = []
    if measured_on is not None:
        details.append(f"{measured_on['num_clips']:,} clips")
    if num_words:
        details.append(f"{num_words:,} reference words")
    if measured_on is not None and _decoding_settings(measured_on):
        details.append(_decoding_settings(measured_on))
    split = (measured_on or {}).get("split", "test")
    caption = (
        f"WER (%) of this checkpoint on the {_corpus_name(corpus)} {split} set"
        f"{' (' + '; '.join(details) + ')' if details else ''}; lower is better. Columns: task and compression "
        "rate(s) (audio,video)."
    )
    return caption + "\n\n" + "\n".join(lines)


def eval_results(rows: list[dict], corpus: str, split: str = "test") -> list[EvalResult]:
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
                dataset_type=corpus.lower(),
                dataset_name=_corpus_name(corpus) + ("" if snr_db is None else f" ({condition})"),
                dataset_config=condition,
                dataset_split=split,
                dataset_args=None if snr_db is None else {"noise": "babble", "snr_db": snr_db},
                metric_type="wer",
                metric_value=row["wer"],
                metric_name=f"WER ({_label(_cell(row))})",
            )
        )
    return results


def _corpus(measured_on: dict | None, dataset: str | None) -> str:
    """The corpus the results were measured on: from their record, or `--dataset` for files without one."""
    recorded = measured_on["corpus"] if measured_on is not None else None
    if dataset is not None and recorded is not None and dataset.lower() != recorded.lower():
        raise ValueError(
            f"--dataset {dataset}: the results record that they were measured on {recorded!r}; expected the same "
            "corpus (or leave --dataset out)."
        )
    corpus = recorded or dataset
    if not corpus:
        raise ValueError(
            "The results do not record their corpus (written before results recorded what they were measured on): "
            "pass --dataset NAME (e.g. lrs3, mini_lrs), or evaluate again."
        )
    return corpus


def _corpus_name(corpus: str) -> str:
    return " + ".join(CORPUS_NAMES.get(name.lower(), name) for name in corpus.split("+"))


def _components(config) -> dict:
    return {
        "audio encoder": config.audio_config,
        "video encoder": config.video_config,
        "language model": config.text_config,
    }


def _hub_id(sub_config) -> bool:
    """Whether a component's recorded source is a Hub id (`org/name`) rather than a local folder or nothing."""
    name = sub_config.name_or_path or ""
    return bool(HUB_ID.fullmatch(name)) and not os.path.exists(name)


def _source(sub_config) -> str:
    name = sub_config.name_or_path or ""
    if _hub_id(sub_config):
        return f"[`{name}`](https://huggingface.co/{name})"
    if name:
        return f"a local folder `{Path(name).name}`"
    return "source not recorded in the checkpoint"


def _architecture(sub_config) -> str:
    """`Llama, 16 layers × 2048` from a component's config."""
    kind = {"whisper": "Whisper encoder", "avhubert_video": "AV-HuBERT"}.get(
        sub_config.model_type, type(sub_config).__name__.removesuffix("Config")
    )
    layers = getattr(sub_config, "encoder_layers", None) or sub_config.num_hidden_layers
    size = f"{layers} layers × {sub_config.hidden_size}"
    vocabulary = getattr(sub_config, "vocab_size", None) if sub_config.model_type not in ("whisper", "avhubert_video") else None
    return f"{kind} ({size}{f', {vocabulary:,} tokens' if vocabulary else ''})"


def _frozen(frozen: bool) -> str:
    return "frozen" if frozen else "trained"


def _components_table(checkpoint: dict) -> str:
    config, policy = checkpoint["config"], checkpoint["policy"]
    video_lora = (
        f", LoRA rank {config.video_lora_rank} on its attention" if config.video_lora_rank else ", no LoRA"
    )
    compression = "average pooling" if config.compression == "avg_pool" else "stacking"
    projectors = "per modality and rate" if config.projector_per_rate else "per modality (shared by its rates)"
    scale = config.lora_alpha / config.lora_rank
    rows = [
        ("audio encoder", f"{_architecture(config.audio_config)}, {_frozen(policy['freeze_audio_encoder'])}, "
         f"{AUDIO_FRAMES_PER_SECOND} frames/s; {_source(config.audio_config)}"),
        ("video encoder", f"{_architecture(config.video_config)}, {_frozen(policy['freeze_video_encoder'])}{video_lora}; "
         f"{VIDEO_FPS:g} fps grayscale {MOUTH_CROP_SIZE}×{MOUTH_CROP_SIZE} mouth crops; {_source(config.video_config)}"),
        ("compression", f"{compression} over time: audio rate {_or(config.audio_rates)}, video rate "
         f"{_or(config.video_rates)}"),
        ("projectors", f"one 2-layer MLP ({config.projector_hidden_size} wide) {projectors}, into the language "
         "model's embeddings"),
        ("language model", f"{_architecture(config.text_config)}, {_frozen(policy['freeze_language_model'])}, with "
         f"Omni-LoRA ({config.lora_variant}, rank {config.lora_rank}, scale {scale:g}) on "
         f"{', '.join(config.lora_target_modules)}; {_source(config.text_config)}"),
        ("parameters", f"{_millions(checkpoint['parameters'])} in all, {_millions(checkpoint['trainable_parameters'])} "
         "trained"),
    ]
    return "\n".join(["| part | this checkpoint |", "|---|---|", *(f"| {part} | {text} |" for part, text in rows)])


def _tokens_table(config) -> str:
    columns = [(f"audio {rate}", 50 / rate) for rate in sorted(config.audio_rates)]
    columns += [(f"video {rate}", 25 / rate) for rate in sorted(config.video_rates)]
    return "\n".join(
        [
            "| rate | " + " | ".join(name for name, _ in columns) + " |",
            "|---|" + "---|" * len(columns),
            "| tokens/s | " + " | ".join(f"{tokens:g}" for _, tokens in columns) + " |",
        ]
    )


def _checkpoint_details(checkpoint: dict, corpus: str, measured_on: dict | None) -> str:
    config = checkpoint["config"]
    weights = ", ".join(f"{task} {weight:g}" for task, weight in zip(TASKS, config.task_weights))
    state = checkpoint["training_state"]
    if state is not None and state.get("global_step"):
        epochs = state.get("num_train_epochs") or state.get("epoch")
        training = f"{state['global_step']:,} steps" + (f" ({epochs:g} epochs)" if epochs else "")
        training += " (`trainer_state.json`)"
    else:
        training = "not recorded in the checkpoint folder (no `trainer_state.json`)"
    if measured_on is not None:
        evaluated = (
            f"{_corpus_name(corpus)}, {measured_on['split']} split ({measured_on['num_clips']:,} clips of "
            f"`{Path(measured_on['labels']).name}`)"
        )
        if _decoding_settings(measured_on):
            evaluated += f"; {_decoding_settings(measured_on)}"
    else:
        evaluated = f"{_corpus_name(corpus)} (given as --dataset: the results do not record their clips or decoding)"
    lines = [
        f"- **Variant**: Omni-LoRA {config.lora_variant}; tasks {', '.join(config.tasks)}; loss weights {weights}.",
        f"- **Compression rates**: audio {_or(config.audio_rates)}, video {_or(config.video_rates)}.",
        *(f"- **{role.capitalize()}**: {_architecture(sub)}; {_source(sub)}." for role, sub in _components(config).items()),
        f"- **Parameters**: {_millions(checkpoint['parameters'])}, of which {_millions(checkpoint['trainable_parameters'])} "
        "trained (projectors, LoRA and any unfrozen part).",
        f"- **Training run**: {training}.",
        f"- **Evaluated on**: {evaluated}.",
    ]
    return "\n".join(lines)


def _decoding_defaults(generation: GenerationConfig | None) -> str:
    if generation is None:
        return "none is saved, so transformers' defaults apply (greedy search, 20 tokens in all)"
    search = "greedy search" if (generation.num_beams or 1) == 1 else f"beam search with {generation.num_beams} beams"
    if generation.do_sample:
        search = "sampling"
    if generation.max_new_tokens is not None:
        return f"{search} and at most {generation.max_new_tokens} new tokens"
    return f"{search} and at most {generation.max_length} tokens in all"


def _decoding_settings(measured_on: dict) -> str:
    decoding = measured_on.get("decoding") or {}
    beams, tokens = decoding.get("num_beams"), decoding.get("max_new_tokens")
    settings = []
    if beams is not None:
        settings.append("greedy decoding" if beams == 1 else f"beam search with {beams} beams")
    if tokens is not None:
        settings.append(f"at most {tokens} new tokens")
    return ", ".join(settings)


def _or(rates: list[int]) -> str:
    return " or ".join(str(rate) for rate in sorted(rates))


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 1e5 else f"{count:,}"


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
        prog=PROG,
        description="Write a Hub model card (README.md) for an Omni-AVSR checkpoint from its own files and its "
        "evaluation results.",
    )
    parser.add_argument("--model", required=True, help="the checkpoint folder (config.json, generation_config.json)")
    parser.add_argument("--results", required=True, help="results.json written by the evaluation of this checkpoint")
    parser.add_argument("--output", required=True, help="where to write the card (README.md in the checkpoint folder)")
    parser.add_argument("--model-name", help="name shown on the card (default: Omni-AVSR-<variant>)")
    parser.add_argument("--repo-id", help="Hub id used in the usage examples (default: the model name)")
    parser.add_argument(
        "--dataset",
        help="corpus of the results (any name: lrs3, lrs2, mini_lrs, ...); default: the one the results record",
    )
    parser.add_argument("--template", help="card template (default: model_cards/Omni-AVSR-<variant>.md)")
    args = parser.parse_args(argv)
    try:
        check_output_file(args.output, "--output")
        checkpoint = describe_checkpoint(args.model)
        variant = checkpoint["config"].lora_variant
        model_name = args.model_name or f"Omni-AVSR-{variant}"
        template_path = Path(args.template or TEMPLATE_DIR / f"Omni-AVSR-{variant}.md")
        if not template_path.is_file():
            raise FileNotFoundError(f"Model-card template not found: {template_path} (pass --template).")
        rows, measured_on = load_results(args.results)
        card = render_model_card(
            template_path.read_text(encoding="utf-8"),
            rows,
            checkpoint,
            model_name=model_name,
            repo_id=args.repo_id or model_name,
            measured_on=measured_on,
            dataset=args.dataset,
        )
        write_text_atomically(args.output, card)
    except EXPECTED_ERRORS as error:
        return report_error(PROG, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
