"""Model cards: the script fills Table I and `model-index` from `results.json` and what the checkpoint says about
itself, and every code snippet of every card runs against a tiny model (Python in-process, the `omni-avsr` command in
a subprocess)."""

import contextlib
import io
import json
import re
import shlex
import subprocess

import pytest
import yaml
from huggingface_hub import ModelCard
from test_cli import omni_avsr_command
from test_media import write_clip
from test_pipeline_remote_code import hub_ready_folder

from omni_avsr.configuration_omni_avsr import LORA_VARIANTS as VARIANTS
from omni_avsr.model_card import TEMPLATE_DIR, describe_checkpoint, load_results, main, render_model_card


RESULTS = [
    {"task": "avsr", "audio_rate": 16, "video_rate": 5, "snr_db": None, "wer": 1.9, "num_words": 9890},
    {"task": "asr", "audio_rate": 4, "video_rate": None, "snr_db": None, "wer": 1.23, "num_words": 9890},
    {"task": "asr", "audio_rate": 16, "video_rate": None, "snr_db": None, "wer": 2.0, "num_words": 9890},
    {"task": "vsr", "audio_rate": None, "video_rate": 2, "snr_db": None, "wer": 26.8, "num_words": 9890},
    {"task": "vsr", "audio_rate": None, "video_rate": 5, "snr_db": None, "wer": 27.1, "num_words": 9890},
    {"task": "avsr", "audio_rate": 4, "video_rate": 2, "snr_db": None, "wer": 1.0, "num_words": 9890},
    {"task": "avsr", "audio_rate": 4, "video_rate": 5, "snr_db": None, "wer": 1.1, "num_words": 9890},
    {"task": "avsr", "audio_rate": 16, "video_rate": 2, "snr_db": None, "wer": 1.8, "num_words": 9890},
    {"task": "avsr", "audio_rate": 4, "video_rate": 2, "snr_db": -5, "wer": 18.0, "num_words": 9890},
    {"task": "avsr", "audio_rate": 4, "video_rate": 2, "snr_db": 5, "wer": 2.5, "num_words": 9890},
]
FENCED_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


@pytest.fixture(scope="module")
def card_model_dir(tmp_path_factory):
    """A tiny Hub-ready Omni-AVSR-ST folder: the checkpoint the cards describe and the snippets run against."""
    folder = tmp_path_factory.mktemp("cards") / "Omni-AVSR-ST"
    hub_ready_folder(folder, max_new_tokens=2)
    return folder


def render(variant, checkpoint, repo_id="org/Omni-AVSR"):
    template = (TEMPLATE_DIR / f"Omni-AVSR-{variant}.md").read_text(encoding="utf-8")
    return render_model_card(
        template, RESULTS, checkpoint, model_name=f"Omni-AVSR-{variant}", repo_id=repo_id, dataset="lrs3"
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_card_metadata_and_results_table(variant, card_model_dir):
    rendered = render(variant, describe_checkpoint(card_model_dir))
    data = front_matter(rendered)
    assert data["pipeline_tag"] == "automatic-speech-recognition"
    assert (data["datasets"], data["metrics"], data["library_name"]) == (["lrs3"], ["wer"], "transformers")
    assert "base_model" not in data  # the tiny checkpoint's components record no Hub id
    expected_tags = {"audio-visual-speech-recognition", "visual-speech-recognition", "lip-reading", "custom_code"}
    assert expected_tags <= set(data["tags"])

    (model_index,) = data["model-index"]
    assert model_index["name"] == f"Omni-AVSR-{variant}"
    entries = {(entry["task"]["type"], entry["dataset"]["config"]): entry for entry in model_index["results"]}
    assert list(entries) == [
        ("automatic-speech-recognition", "clean"),
        ("visual-speech-recognition", "clean"),
        ("audio-visual-speech-recognition", "clean"),
        ("audio-visual-speech-recognition", "babble 5 dB"),
        ("audio-visual-speech-recognition", "babble -5 dB"),
    ]
    clean_avsr = entries[("audio-visual-speech-recognition", "clean")]
    assert clean_avsr["dataset"] == {"name": "LRS3", "type": "lrs3", "config": "clean", "split": "test"}
    assert [(metric["name"], metric["value"]) for metric in clean_avsr["metrics"]] == [
        ("WER (AVSR 4,2)", 1.0), ("WER (AVSR 4,5)", 1.1), ("WER (AVSR 16,2)", 1.8), ("WER (AVSR 16,5)", 1.9),
    ]
    noisiest = entries[("audio-visual-speech-recognition", "babble -5 dB")]
    assert noisiest["dataset"]["args"] == {"noise": "babble", "snr_db": -5}

    text = ModelCard(rendered).text
    assert "{{" not in text and "}}" not in text
    assert "WER (%) of this checkpoint on the LRS3 test set (9,890 reference words)" in text
    assert "| condition | ASR 4 | ASR 16 | VSR 2 | VSR 5 | AVSR 4,2 | AVSR 4,5 | AVSR 16,2 | AVSR 16,5 | Avg |" in text
    assert "| clean | 1.2 | 2.0 | 26.8 | 27.1 | 1.0 | 1.1 | 1.8 | 1.9 | 7.9 |" in text
    assert "| babble 5 dB | – | – | – | – | 2.5 | – | – | – | – |" in text
    assert "| babble -5 dB | – | – | – | – | 18.0 | – | – | – | – |" in text
    for needle in ("the paper reports for its own", "1.5 · L_vsr", "learning rate 1e-3", "8 epochs", "## Limitations",
                   "arXiv:2511.07253", f"**{variant}** variant", "| language model | Llama (2 layers × 32, 39 tokens), frozen",
                   "Omni-LoRA (ST, rank 4, scale 2)", "- **Training run**: not recorded in the checkpoint folder",
                   "greedy search and at most 2 new tokens", "- **Evaluated on**: LRS3 (given as --dataset"):
        assert needle in text, needle


def test_script_writes_the_card_and_rejects_bad_results(tmp_path, capsys, card_model_dir):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    output = tmp_path / "README.md"
    assert main(["--model", str(card_model_dir), "--results", str(results), "--output", str(output), "--model-name",
                 "My-ST", "--repo-id", "org/My-ST", "--dataset", "lrs2"]) == 0
    card = output.read_text(encoding="utf-8")
    assert front_matter(card)["model-index"][0]["name"] == "My-ST"
    assert "on the LRS2 test set" in card and 'model="org/My-ST"' in card

    results.write_text(json.dumps([{**RESULTS[1], "video_rate": 2}]))
    assert main(["--model", str(card_model_dir), "--results", str(results), "--output", str(tmp_path / "bad.md"),
                 "--dataset", "lrs3"]) == 1
    assert "row 0: 'video_rate' must be null for task 'asr', got 2." in capsys.readouterr().err
    assert not (tmp_path / "bad.md").exists()


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "must hold a non-empty list"),
        ([{**RESULTS[0], "task": "lipreading"}], "'task' must be one of asr, vsr, avsr"),
        ([{**RESULTS[3], "video_rate": None}], "'video_rate' must be a positive integer for task 'vsr'"),
        ([{**RESULTS[0], "wer": "1.9%"}], "'wer' must be a number (percent)"),
        ([RESULTS[0], RESULTS[0]], "a second result for AVSR 16,5 at clean"),
    ],
)
def test_bad_results_rows_are_named(tmp_path, rows, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_results(path)


@pytest.fixture(scope="module")
def snippet_workspace(card_model_dir, tmp_path_factory):
    """The tiny Hub-ready model and the media the snippets name (`clip.mp4` + `clip.wav`)."""
    work = tmp_path_factory.mktemp("work")
    write_clip(work, "clip", num_frames=15)
    return card_model_dir, work


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def snippets(language: str, checkpoint: dict, command_prefix: str = "") -> list[str]:
    """The cards' code blocks in `language` (lines starting with `command_prefix` only, when given), with the model id
    as `MODEL_ID`. The three cards share them, so each distinct snippet runs once, against the ST model."""
    per_card = []
    for variant in VARIANTS:
        card = render(variant, checkpoint, repo_id="MODEL_ID")
        blocks = [code for lang, code in FENCED_BLOCK.findall(card) if lang == language]
        if command_prefix:
            blocks = [line for block in blocks for line in block.splitlines() if line.startswith(command_prefix)]
        per_card.append(blocks)
    assert per_card[0] and all(blocks == per_card[0] for blocks in per_card)
    return per_card[0]


def test_python_snippets_run_against_a_tiny_model(snippet_workspace, monkeypatch):
    folder, work = snippet_workspace
    blocks = snippets("python", describe_checkpoint(folder))
    assert len(blocks) == 3
    monkeypatch.chdir(work)
    for block in blocks:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block.replace("MODEL_ID", str(folder)), "card snippet", "exec"), {"__name__": "__main__"})
        assert printed.getvalue().strip(), block


def test_shell_snippets_run_the_installed_command(snippet_workspace):
    folder, work = snippet_workspace
    for line in snippets("bash", describe_checkpoint(folder), command_prefix="omni-avsr "):
        argv = [str(folder) if arg == "MODEL_ID" else arg for arg in shlex.split(line)]
        completed = subprocess.run(
            [omni_avsr_command(), *argv[1:]], cwd=work, capture_output=True, text=True, timeout=600
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert len(completed.stdout.splitlines()) == 1


def test_templates_front_matter_is_valid_yaml():
    for variant in VARIANTS:
        metadata = front_matter((TEMPLATE_DIR / f"Omni-AVSR-{variant}.md").read_text(encoding="utf-8"))
        assert metadata["pipeline_tag"] == "automatic-speech-recognition"
        assert "model-index" not in metadata  # the script adds it from the results
