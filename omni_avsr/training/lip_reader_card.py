"""Package a trained CTC lip reader as the Hugging Face folder the project ships, with a card that says how it was made.

    python -m omni_avsr.training.lip_reader_card --model outputs/lip_reader/model \
        --heldout outputs/lip_reader/heldout --output pretrained/mini_lrs_lip_reader --command "make lip-reader"

The folder holds what `AVHubertForCTC` / `AVHubertVideoModel.from_pretrained` and `OmniAVSRProcessor.from_pretrained`
read (config, safetensors weights, tokenizer, processor settings), `README.md` (the card) and `training_record.json`:
the command, commit, corpora and their speakers and sentence split, steps, wall time, machine, the WER curve and the
CTC WER on the demo's test split and on held-out speakers, including the WER of the first `CHECK_CLIPS` test clips,
which `tests/test_shipped_lip_reader.py` decodes again so that a stale or broken folder fails.
"""

import argparse
import json
import platform
import shutil
import subprocess
from pathlib import Path

from ..command_line import EXPECTED_ERRORS, prepare_output_dir, report_error, write_text_atomically
from .evaluation import word_error_rate


CHECK_CLIPS = 40
SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "processor_config.json")
RESULTS_FILE = "lip_reading_results.json"
CURVE_FILE = "lip_reading_curve.jsonl"
RECORD_FILE = "training_record.json"


def training_record(
    model_dir: Path, heldout_dir: Path, command: str, commit: str | None = None, note: str | None = None
) -> dict:
    """Everything the card states, read from the training run's folder and the held-out evaluation's."""
    results = json.loads((model_dir / RESULTS_FILE).read_text())
    heldout = json.loads((heldout_dir / RESULTS_FILE).read_text())
    state = json.loads((model_dir / "trainer_state.json").read_text())
    train = json.loads((model_dir / "train_results.json").read_text())
    arguments = json.loads((model_dir / "run_arguments.json").read_text())
    check = results["transcripts"][:CHECK_CLIPS]
    check_wer, check_words = word_error_rate([t["reference"] for t in check], [t["hypothesis"] for t in check])
    curve = [json.loads(line) for line in (model_dir / CURVE_FILE).read_text().splitlines() if line.strip()]
    corpora = {
        "training": _corpus(arguments["data_root"], "train"),
        "test": _corpus(arguments.get("test_data_root") or arguments["data_root"], "test"),
        "heldout": _corpus(heldout["data_root"], "test"),
    }
    trained_speakers = set(corpora["training"]["speakers"])
    if trained_speakers & set(corpora["heldout"]["speakers"]):
        raise ValueError(
            f"The held-out speakers {corpora['heldout']['speakers']} include speakers the lip reader was trained on "
            f"({sorted(trained_speakers)}); expected speakers no training clip has."
        )
    return {
        "command": command,
        "commit": commit or _git_commit(),
        "machine": _machine(),
        "note": note,
        "architecture": {key: value for key, value in json.loads((model_dir / "config.json").read_text()).items()
                         if key in ARCHITECTURE_KEYS},
        "training": {
            "steps": state["global_step"],
            "epochs": round(state["epoch"], 2),
            "wall_seconds": round(train["train_runtime"], 1),
            "arguments": arguments,
        },
        "corpora": corpora,
        "wer": {
            "test": {"wer": round(results["wer"], 2), "num_words": results["num_words"], "num_clips": results["num_clips"]},
            "heldout": {"wer": round(heldout["wer"], 2), "num_words": heldout["num_words"], "num_clips": heldout["num_clips"]},
            "check": {"wer": round(check_wer, 2), "num_words": check_words, "num_clips": len(check)},
        },
        "curve": curve,
    }


ARCHITECTURE_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "frontend_channels",
    "resnet_channels", "frontend_spatial_stride", "frontend_input_pooling", "vocab_size",
)


def _corpus(root: str, split: str) -> dict:
    """A Mini-LRS corpus's settings, and the speakers and sentences of one split."""
    root = Path(root)
    settings = json.loads((root / "mini_lrs_config.json").read_text())
    rows = [line.split(",", 4) for line in (root / "labels" / f"mini_lrs_{split}.csv").read_text().splitlines()]
    return {
        "root": str(root),
        "settings": settings,
        "split": split,
        "clips": len(rows),
        "sentences": len({row[4] for row in rows}),
        "speakers": sorted({row[1].split("/")[2] for row in rows}),
    }


def write_card(record: dict) -> str:
    """The card's Markdown."""
    wer = record["wer"]
    training, corpora = record["training"], record["corpora"]
    curve = "\n".join(
        f"| {point['step']} | {point['seconds'] / 60:.1f} | {point['wer']:.1f} |" for point in record["curve"]
    )
    return f"""---
library_name: transformers
tags: [lip-reading, visual-speech-recognition, avhubert, ctc, omni-avsr]
---

# Mini-LRS lip reader (AV-HuBERT architecture, CTC)

The pretrained video encoder of the Omni-AVSR demo, as Whisper tiny.en is its pretrained audio encoder: a small
AV-HuBERT-architecture video encoder with a CTC head over a BPE vocabulary, trained by this project's own recipe
on Mini-LRS, the project's synthetic audio-visual corpus (drawn mouths, espeak-ng voices, GRID sentences). It reads
25 fps grayscale 88×88 mouth crops. It has never seen a real face: it is a stand-in for the paper's AV-HuBERT, for
the demo, not a lip reader for real video.

```python
from omni_avsr import AVHubertVideoModel
from omni_avsr.modeling_avhubert import AVHubertForCTC

encoder = AVHubertVideoModel.from_pretrained("pretrained/mini_lrs_lip_reader")   # the encoder alone
lip_reader = AVHubertForCTC.from_pretrained("pretrained/mini_lrs_lip_reader")    # with its CTC head
```

## How it was made

- Command: `{record['command']}` (commit `{record['commit']}`).
- Machine: {record['machine']}.{' ' + record['note'] if record.get('note') else ''}
- Architecture: {_architecture(record['architecture'])}.
- Training: {_training(training)}.
- Training data: `{corpora['training']['root']}`, the `train` split: {corpora['training']['clips']} clips,
  {corpora['training']['sentences']} sentences, speakers {_speakers(corpora['training']['speakers'])}; Mini-LRS settings
  `{json.dumps(corpora['training']['settings'])}`. Speakers s09-s16 are reserved for held-out tests and never trained on.
  The corpus has the demo's seed and test size, so its test sentences are the demo's and no training clip says one.

## CTC WER (greedy decoding)

| test set | clips | words | WER % |
|---|---|---|---|
| the demo's test split (`{corpora['test']['root']}`, speakers {_speakers(corpora['test']['speakers'])}) | {wer['test']['num_clips']} | {wer['test']['num_words']} | {wer['test']['wer']:.1f} |
| held-out speakers (`{corpora['heldout']['root']}`, speakers {_speakers(corpora['heldout']['speakers'])}) | {wer['heldout']['num_clips']} | {wer['heldout']['num_words']} | {wer['heldout']['wer']:.1f} |
| the first {wer['check']['num_clips']} clips of the demo's test split (the check `tests/test_shipped_lip_reader.py` repeats) | {wer['check']['num_clips']} | {wer['check']['num_words']} | {wer['check']['wer']:.1f} |

The lip-reading floor of the demo's test split (words that look alike on the lips, see `docs/mini_lrs.md`) is about
2.9 %.

## WER on the demo's test split during training

| step | wall time (min) | WER % |
|---|---|---|
{curve}
"""


def _training(training: dict) -> str:
    arguments = training["arguments"]
    return (
        f"{training['steps']} steps ({training['epochs']} epochs) of at most {arguments['max_frames_per_batch']} frames, "
        f"AdamW at lr {arguments['learning_rate']} (cosine, {arguments['warmup_steps']} warm-up steps), no augmentation, "
        f"{training['wall_seconds'] / 60:.1f} minutes of wall time"
    )


def _architecture(config: dict) -> str:
    return (
        f"{config['num_hidden_layers']} transformer layers × {config['hidden_size']} ({config['num_attention_heads']} "
        f"heads, feed-forward {config['intermediate_size']}), ResNet-18 front-end of "
        f"{config['frontend_channels']}-{config['resnet_channels'][-1]} channels with a stride-"
        f"{config['frontend_spatial_stride']} stem reading the crop average-pooled by "
        f"{config['frontend_input_pooling']}, CTC over {config['vocab_size']} tokens"
    )


def _speakers(speakers: list[str]) -> str:
    return ", ".join(speakers) if len(speakers) <= 4 else f"{speakers[0]}-{speakers[-1]} ({len(speakers)}: {', '.join(speakers)})"


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return commit + ("+uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        flags = next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split()
        vector = "AVX-512 with bf16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else "no AVX2"
        cores = cpuinfo.count("processor\t:")
        return f"{model}, {cores} cores, {vector}, CPU only"
    except (OSError, StopIteration):
        return model


def package(
    model_dir: Path, heldout_dir: Path, output: Path, command: str, commit: str | None = None, note: str | None = None
) -> dict:
    """Write the shipped folder: the model's files, the card and the training record."""
    record = training_record(model_dir, heldout_dir, command, commit, note)
    prepare_output_dir(output, "--output")
    for name in SHIPPED_FILES:
        shutil.copyfile(model_dir / name, output / name)
    write_text_atomically(output / RECORD_FILE, json.dumps(record, indent=1) + "\n")
    write_text_atomically(output / "README.md", write_card(record))
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m omni_avsr.training.lip_reader_card", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="the output folder of run_lip_reading_ctc.py")
    parser.add_argument("--heldout", required=True, type=Path, help="the output folder of its held-out evaluation")
    parser.add_argument("--output", required=True, type=Path, help="the folder to ship (created or replaced)")
    parser.add_argument("--command", required=True, help="the command that made the model, for the card")
    parser.add_argument("--commit", help="the commit whose code trained it (default: the checkout's HEAD now)")
    parser.add_argument("--note", help="a sentence on how the run went (e.g. what else shared the machine)")
    args = parser.parse_args(argv)
    try:
        record = package(args.model, args.heldout, args.output, args.command, args.commit, args.note)
    except (*EXPECTED_ERRORS, KeyError) as error:
        parser.exit(report_error(parser.prog, error))
    print(
        f"Wrote {args.output}: CTC WER {record['wer']['test']['wer']:.1f} % on the demo's test split, "
        f"{record['wer']['heldout']['wer']:.1f} % on held-out speakers."
    )


if __name__ == "__main__":
    main()
