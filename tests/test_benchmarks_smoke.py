"""Each benchmark's main path runs at the tiny size and prints one JSON object with its documented keys.

No timing is asserted: benchmarks measure, tests only check that they run.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch


BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"

CASES = {
    "bench_app": (
        ["--size", "tiny", "--seconds", "1", "--new-tokens", "2", "--repeats", "1"],
        ["model", "clip", "cells", "same_transcripts", "one_click_s", "one_by_one_s", "one_click_from_file_s",
         "one_by_one_from_file_s", "one_by_one_over_one_click", "one_by_one_over_one_click_from_file",
         "one_click_encoder_s", "one_click_cell_s", "config", "machine"],
    ),
    "bench_training": (
        ["--size", "tiny", "--seconds", "1", "--rounds", "1", "--variants", "fp32", "--variant-repeats", "1"],
        ["omni_step_s", "mtsk_step_s", "separate_step_s", "omni_over_mtsk", "omni_over_separate", "peak_rss_mb",
         "llm_passes_per_batch", "llm_calls_per_batch", "train_mfu_fp32", "train_mfu_bf16", "profile_top_ops",
         "matmul_peak", "config", "machine"],
    ),
    "bench_inference": (
        ["--size", "tiny", "--seconds", "1", "--quick", "--batch-sizes", "1", "--beams", "1", "2", "--new-tokens", "2"],
        ["rows", "decode_mfu_fp32", "matmul_peak", "config", "machine"],
    ),
    "bench_official_comparison": (
        ["--size", "tiny", "--seconds", "1", "--clips", "2", "--beams", "2", "--new-tokens", "2"],
        ["runs", "batched_over_sequential", "ours_over_official", "trimmed_window", "config", "machine"],
    ),
    "bench_sequence_merge": (
        ["--size", "tiny", "--clips", "3", "--seconds", "1", "--repeats", "1"],
        ["cases", "rates", "config", "machine"],
    ),
    "bench_scaling": (
        ["--smoke", "--batch-frames", "50", "--clip-seconds", "1", "--utterance-seconds", "1", "--new-tokens", "2",
         "--variants", "S", "ST", "--measure", "tiny", "--measure-clips", "1", "--measure-seconds", "1"],
        ["backbones", "setting", "measured_on_cpu", "machine"],
    ),
    "bench_gpu": (
        ["--smoke"],
        ["gpu_name", "train_samples_per_s", "train_mfu", "train_mfu_vs_measured_matmul", "peak_gpu_memory_gb",
         "decoding", "config", "runs"],
    ),
}


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS_DIR))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops do not gain from threads, and on a busy machine OpenMP threads wait on each other (measured: 4×)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_prints_documented_json(script, monkeypatch, capsys):
    arguments, keys = CASES[script]
    monkeypatch.setattr(sys, "argv", [script, *arguments])
    importlib.import_module(script).main()
    report = json.loads(capsys.readouterr().out)
    assert set(keys) <= set(report), sorted(set(keys) - set(report))
    if script == "bench_inference":
        row_keys = {"task", "audio_rate", "video_rate", "batch_size", "beams", "clips_per_s", "rtf",
                    "llm_input_tokens_per_s_media"}
        assert report["rows"] and all(row_keys <= set(row) for row in report["rows"])
    if script == "bench_sequence_merge":
        assert all(case["max_abs_difference"] == 0 for case in report["cases"].values()), "both layouts agree"
    if script == "bench_scaling":
        row = report["backbones"]["tiny"]
        assert set(row["parameters"]) == {"S", "ST"} and set(row["train_step_tflops"]) == {"4,2", "16,5"}
        assert {"one_gpu_bf16", "one_gpu_4bit", "fsdp_8_gpus_bf16"} <= set(row["fits_80gb"])
        # The meta-device count is the real step's: same FLOPs, same peak of live tensor bytes.
        for measured in report["measured_on_cpu"]:
            assert measured["flops_counted_over_measured"] == 1.0, measured
            assert measured["peak_counted_over_measured"] == pytest.approx(1.0, abs=0.02), measured
    if script == "bench_app":
        assert report["same_transcripts"] and len(report["one_click_cell_s"]) == 8
    if script == "bench_training":
        assert report["llm_passes_per_batch"] == {"omni": 3, "mtsk": 8, "separate": 3}
        assert report["llm_calls_per_batch"] == {"omni": 1, "mtsk": 8, "separate": 3}


def test_bench_gpu_refuses_full_size_runs_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bench_gpu = importlib.import_module("bench_gpu")
    with pytest.raises(SystemExit) as refusal:
        bench_gpu.main([])
    assert refusal.value.code == 2
    message = capsys.readouterr().err
    assert "no CUDA GPU" in message and "llama-3.1-8b" in message and "--smoke" in message


def test_bench_gpu_arguments(monkeypatch):
    bench_gpu = importlib.import_module("bench_gpu")
    assert bench_gpu.parse_arguments(["--smoke"]).backbones == ["tiny"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    defaults = bench_gpu.parse_arguments([])
    assert defaults.backbones == ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"]
    assert defaults.checkpointed == ["llama-3.1-8b"]
    chosen = bench_gpu.parse_arguments(["--backbones", "qwen2.5-7b", "--checkpointed", "qwen2.5-7b"])
    assert chosen.backbones == chosen.checkpointed == ["qwen2.5-7b"]
    with pytest.raises(SystemExit):
        bench_gpu.parse_arguments(["--backbones", "llama-4"])


def test_learning_curves_read_every_task_loss(tmp_path):
    """The joint run logs `asr_loss` / `vsr_loss` / `avsr_loss` beside `loss`: each is a curve, eval logs are not."""
    plot_learning_curves = importlib.import_module("plot_learning_curves")
    history = [
        {"step": 25, "loss": 5.0, "asr_loss": 1.0, "vsr_loss": 2.0, "avsr_loss": 1.5, "grad_norm": 3.0},
        {"step": 50, "loss": 4.0, "asr_loss": 0.8, "vsr_loss": 1.8, "avsr_loss": 1.2, "grad_norm": 2.0},
        {"step": 50, "eval_loss": 4.5},
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 100}))
    (tmp_path / "train_results.json").write_text(json.dumps({"train_runtime": 120.0}))
    curves = plot_learning_curves.learning_curves(tmp_path)
    assert curves["steps"] == [25, 50] and curves["minutes"] == [0.5, 1.0]
    assert curves["losses"] == {
        "asr_loss": [1.0, 0.8], "avsr_loss": [1.5, 1.2], "loss": [5.0, 4.0], "vsr_loss": [2.0, 1.8]
    }


def test_bench_lip_reader_times_every_configuration(mini_corpus, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_lip_reader", "--data-root", str(mini_corpus), "--steps", "1"])
    importlib.import_module("bench_lip_reader").main()
    report = json.loads(capsys.readouterr().out)
    assert len(report["runs"]) == 3 and report["clips"] == 24
    for run in report["runs"].values():
        assert {"frames_per_s", "data_ms_per_step", "model_ms_per_step", "data_share", "speedup"} <= set(run)
        assert run["frames"] > 0


def test_bench_long_form_measures_each_length_and_task(real_clip_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
    arguments = ["--video", str(real_clip_path), "--minutes", "0.1", "0.2", "--tasks", "asr", "vsr",
                 "--work-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["bench_long_form", *arguments])
    importlib.import_module("bench_long_form").main()
    report = json.loads(capsys.readouterr().out)
    assert [(run["minutes"], run["task"]) for run in report["runs"]] == [(0.1, "asr"), (0.1, "vsr"), (0.2, "asr"),
                                                                          (0.2, "vsr")]
    assert all(run["peak_rss_mb"] > 0 and run["chunks"] >= 1 for run in report["runs"])
    assert set(report["summary"]) == {"asr", "vsr"} and "peak_rss_0.2min_over_0.1min" in report["summary"]["vsr"]
