"""The training scripts end to end on a tiny Mini-LRS corpus: training, resume, WER tables, DDP, the lip reader."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omni_avsr.data.mini_lrs import main as mini_lrs_main
from omni_avsr.training import lip_reader_card


REPO = Path(__file__).resolve().parents[1]
TINY_COMPONENTS = {
    "audio_encoder.json": {
        "model_type": "whisper", "d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64, "decoder_layers": 1, "num_mel_bins": 80,
    },
    "video_encoder.json": {
        "model_type": "avhubert_video", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
        "frontend_channels": 8, "resnet_channels": [8, 8, 16, 16], "layerdrop": 0.0,
    },
    "language_model.json": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
    },
}


def _recipe(tmp_path: Path, corpus: Path, **overrides) -> Path:
    components = tmp_path / "components"
    components.mkdir(exist_ok=True)
    for name, config in TINY_COMPONENTS.items():
        (components / name).write_text(json.dumps(config))
    recipe = {
        "language_model": str(components / "language_model.json"),
        "audio_encoder": str(components / "audio_encoder.json"),
        "video_encoder": str(components / "video_encoder.json"),
        "tokenizer_vocab_size": 64,
        "lora_rank": 4, "lora_alpha": 8, "video_lora_rank": 4, "video_lora_alpha": 8, "projector_hidden_size": 64,
        "freeze_audio_encoder": False, "freeze_video_encoder": False, "freeze_language_model": False,
        "audio_full_window": False,
        "data_root": str(corpus),
        "train_labels": ["mini_lrs_train.csv"],
        "test_labels": "mini_lrs_test.csv",
        "noise_path": str(corpus / "noise" / "babble.wav"),
        "max_frames_per_batch": 300,
        "learning_rate": 3e-3,
        "warmup_steps": 0,
        "logging_steps": 1,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "do_train": True,
        "max_steps": 8,
        **overrides,
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def _run(*args, timeout=900, launcher=(sys.executable,), script="run_speech_recognition.py"):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(
        [*launcher, str(REPO / script), *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def _losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def test_training_lowers_the_loss_and_logs_every_task(mini_corpus, tmp_path):
    """The validation loss (fixed finest rates, no augmentation) drops over a few steps; logs carry every task."""
    _run(
        _recipe(
            tmp_path, mini_corpus, max_steps=10, eval_labels="mini_lrs_train.csv", eval_strategy="steps",
            eval_steps=10, eval_on_start=True, per_device_eval_batch_size=8,
        )
    )
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert {"asr_loss", "vsr_loss", "avsr_loss"} <= set(logged[0])
    eval_losses = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    assert eval_losses[10] < 0.9 * eval_losses[0], eval_losses
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "processor_config.json").exists()


def test_resume_from_checkpoint_continues_exactly(mini_corpus, tmp_path):
    """Resuming from the step-3 checkpoint gives steps 4–6 the same losses as the uninterrupted run
    (same data order, augmentation, sampled rates, dropout and optimizer state)."""
    full = tmp_path / "full"
    full.mkdir()
    _run(_recipe(full, mini_corpus, max_steps=6, save_steps=3))
    uninterrupted = _losses(full / "run")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(full / "run" / "checkpoint-3", resumed_dir / "run" / "checkpoint-3")
    recipe = _recipe(resumed_dir, mini_corpus, max_steps=6, save_steps=3)
    _run(recipe, "--resume_from_checkpoint", str(resumed_dir / "run" / "checkpoint-3"))
    resumed = _losses(resumed_dir / "run")
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6), (step, resumed, uninterrupted)


def test_predict_writes_every_task_and_rate_cell(mini_corpus, tmp_path):
    _run(_recipe(tmp_path, mini_corpus, max_steps=2, do_predict=True, eval_snrs=[0], num_beams=2, max_new_tokens=8))
    output = tmp_path / "run"
    rows = json.loads((output / "results.json").read_text())
    clean = {(row["task"], row["audio_rate"], row["video_rate"]) for row in rows if row["snr_db"] is None}
    assert clean == {
        ("asr", 4, None), ("asr", 16, None), ("vsr", None, 2), ("vsr", None, 5),
        ("avsr", 4, 2), ("avsr", 4, 5), ("avsr", 16, 2), ("avsr", 16, 5),
    }
    noisy = {(row["task"], row["audio_rate"], row["video_rate"]) for row in rows if row["snr_db"] == 0}
    assert noisy == {cell for cell in clean if cell[0] != "vsr"}
    assert all(row["num_words"] > 0 and 0 <= row["wer"] for row in rows)
    measured_on = rows[0]["measured_on"]
    assert all(row["measured_on"] == measured_on for row in rows)
    assert {key: measured_on[key] for key in ("corpus", "data_root", "labels", "split", "num_clips", "decoding")} == {
        "corpus": "mini_lrs", "data_root": str(mini_corpus.resolve()), "labels": "mini_lrs_test.csv", "split": "test",
        "num_clips": 8, "decoding": {"max_new_tokens": 8, "num_beams": 2},
    }
    assert measured_on["noise"] == {"path": str((mini_corpus / "noise" / "babble.wav").resolve()), "seed": 0}
    table = (output / "results.md").read_text()
    for header in ("ASR 4", "ASR 16", "VSR 2", "VSR 5", "AVSR 4,2", "AVSR 16,5", "babble 0 dB", "Lip-reading floor"):
        assert header in table
    assert (output / "wer_vs_tokens.png").stat().st_size > 10_000
    assert (output / "wer_vs_snr.png").stat().st_size > 10_000


def test_two_process_ddp_ends_with_identical_weights(mini_corpus, tmp_path):
    """torchrun with 2 processes (gloo on CPU): unsampled projectors get no gradient, and DDP must still keep the
    replicas identical; the script fingerprints every rank's weights after training and compares them."""
    completed = _run(
        _recipe(tmp_path, mini_corpus, max_steps=3, save_strategy="no"),
        launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"),
    )
    fingerprints = dict(re.findall(r"Rank (\d): DDP replicas identical, weight fingerprint (\w+)", completed.stderr))
    assert set(fingerprints) == {"0", "1"} and fingerprints["0"] == fingerprints["1"], completed.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_lip_reader_trains_and_becomes_the_video_encoder(mini_corpus, tmp_path):
    """run_lip_reading_ctc.py lowers the CTC loss, records its test WER at every checkpoint and at the end, evaluates
    a trained folder on another corpus, is packaged with its card, and run_speech_recognition.py takes the folder as
    --video_encoder (the demo's pretrained video encoder)."""
    lip_reader_dir = tmp_path / "lip_reader"
    lip_reader_recipe = tmp_path / "lip_reader.json"
    lip_reader_recipe.write_text(
        json.dumps(
            {
                "video_encoder": str(_recipe(tmp_path, mini_corpus).parent / "components" / "video_encoder.json"),
                "tokenizer_vocab_size": 64, "data_root": str(mini_corpus), "train_labels": ["mini_lrs_train.csv"],
                "test_labels": "mini_lrs_test.csv", "max_frames_per_batch": 300, "learning_rate": 3e-3,
                "logging_steps": 1, "report_to": "none", "max_steps": 12, "save_steps": 6, "seed": 0,
                "frame_cache_dir": str(tmp_path / "frame_cache"), "do_train": True, "do_predict": True,
                "output_dir": str(lip_reader_dir),
            }
        )
    )
    completed = _run(lip_reader_recipe, script="run_lip_reading_ctc.py")
    losses = _losses(lip_reader_dir)
    first, last = [losses[step] for step in (1, 2)], [losses[step] for step in range(9, 13)]
    assert sum(last) / len(last) < 0.85 * sum(first) / len(first), losses
    results = json.loads((lip_reader_dir / "lip_reading_results.json").read_text())
    assert results["num_words"] > 0 and results["wer"] >= 0 and results["num_clips"] == len(results["transcripts"]) == 8
    assert "CTC lip reading, greedy: WER" in completed.stdout
    curve = [json.loads(line) for line in (lip_reader_dir / "lip_reading_curve.jsonl").read_text().splitlines()]
    assert [point["step"] for point in curve] == [6, 12] and curve[-1]["wer"] == round(results["wer"], 2)
    assert 0 < curve[0]["seconds"] < curve[1]["seconds"]
    assert json.loads((lip_reader_dir / "run_arguments.json").read_text())["max_steps"] == 12

    # A trained folder evaluated on its own: the same transcripts; on held-out speakers, then packaged with its card.
    evaluation = tmp_path / "evaluation"
    _run(
        "--model_name_or_path", lip_reader_dir, "--data_root", mini_corpus, "--test_labels", "mini_lrs_test.csv",
        "--do_predict", "--report_to", "none", "--output_dir", evaluation, script="run_lip_reading_ctc.py",
    )
    again = json.loads((evaluation / "lip_reading_results.json").read_text())
    assert again["transcripts"] == results["transcripts"] and again["data_root"] == str(mini_corpus)
    with pytest.raises(ValueError, match="include speakers the lip reader was trained on"):
        lip_reader_card.package(lip_reader_dir, evaluation, tmp_path / "shipped", "the test's command")
    heldout_corpus, heldout = tmp_path / "heldout_corpus", tmp_path / "heldout"
    mini_lrs_main(["--output-dir", str(heldout_corpus), "--num-train", "0", "--num-test", "4", "--num-speakers", "10",
                   "--hold-out-speakers", "2", "--babble-seconds", "2", "--no-progress"])
    _run(
        "--model_name_or_path", lip_reader_dir, "--data_root", heldout_corpus, "--test_labels", "mini_lrs_test.csv",
        "--do_predict", "--report_to", "none", "--output_dir", heldout, script="run_lip_reading_ctc.py",
    )
    record = lip_reader_card.package(lip_reader_dir, heldout, tmp_path / "shipped", "the test's command")
    assert record["corpora"]["heldout"]["speakers"] == ["s09", "s10"] and record["training"]["steps"] == 12
    assert record["wer"]["test"]["wer"] == round(results["wer"], 2) and record["curve"] == curve
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "the test's command" in card and f"{record['wer']['heldout']['wer']:.1f}" in card

    _run(_recipe(tmp_path, mini_corpus, video_encoder=str(tmp_path / "shipped"), max_steps=1))
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_train_tasks_trains_only_the_named_tasks(mini_corpus, tmp_path):
    """--train_tasks asr (the demo's warm-up of a from-scratch LM) logs and trains the ASR loss alone, and the saved
    model keeps every task so that the next run can train them all."""
    _run(_recipe(tmp_path, mini_corpus, max_steps=2, train_tasks=["asr"]))
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert all("asr_loss" in entry and "vsr_loss" not in entry and "avsr_loss" not in entry for entry in logged)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tasks"] == ["asr", "vsr", "avsr"]
