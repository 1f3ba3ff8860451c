"""Sharded training on existing engines: FSDP2 through accelerate (recipes/accelerate/fsdp.yaml) gives the
single-process losses with two CPU processes, and the DeepSpeed ZeRO-3 recipe loads and wraps the model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "sharded_training_script.py"
FSDP_CONFIG = REPO / "recipes" / "accelerate" / "fsdp.yaml"
ZERO3_CONFIG = REPO / "recipes" / "accelerate" / "deepspeed_zero3.yaml"


def _run(*command, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]


def test_fsdp_two_processes_match_one(tmp_path):
    """Frozen LLM and encoders sharded with the trained LoRA and projectors, activation checkpointing on, a rate pair
    per step that leaves the other projectors without gradients: the same losses as one process on the same batches."""
    _run(sys.executable, str(SCRIPT), "--out", str(tmp_path / "single.json"))
    _run(
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547", str(SCRIPT),
        "--fsdp-config", str(FSDP_CONFIG), "--out", str(tmp_path / "fsdp.json"),
    )
    single = json.loads((tmp_path / "single.json").read_text())
    sharded = json.loads((tmp_path / "fsdp.json").read_text())
    assert sharded["world_size"] == 2
    # Each decoder layer, encoder layer and projector is its own shard group (the model's `_no_split_modules`).
    assert {"FSDPLlamaDecoderLayer", "FSDPWhisperEncoderLayer", "FSDPWav2Vec2EncoderLayerStableLayerNorm",
            "FSDPOmniAVSRProjector", "FSDPCheckpointWrapper"} <= set(sharded["sharded"])
    assert sharded["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert len(set(single["losses"])) == len(single["losses"]), "the weights change between steps"


def test_fsdp_recipe_wraps_every_layer_of_any_backbone():
    """accelerate's transformer wrap policy finds every class the model names as a unit (and no class it lacks)."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    sys.path.insert(0, str(REPO / "tests"))
    from sharded_training_script import fsdp_plugin
    from tiny_models import tiny_model, tiny_processor

    plugin = fsdp_plugin(str(FSDP_CONFIG))
    for llm, decoder_layer in (("llama", "LlamaDecoderLayer"), ("qwen2", "Qwen2DecoderLayer")):
        model = tiny_model(tiny_processor(), llm=llm)
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        wrapped = {type(module).__name__ for module in model.modules() if policy(module)}
        assert wrapped == {decoder_layer, "WhisperEncoderLayer", "Wav2Vec2EncoderLayerStableLayerNorm",
                           "OmniAVSRProjector"}
    config = yaml.safe_load(FSDP_CONFIG.read_text())
    assert config["distributed_type"] == "FSDP" and config["mixed_precision"] == "bf16"


def test_deepspeed_zero3_recipe_wraps_and_trains_like_one_process(tmp_path):
    """ZeRO-3 from the recipe partitions every parameter and gives the single-process losses while every projector
    it updates got a gradient. After a projector goes unused it drifts: ZeRO keeps parameters in flat partitions, so
    an unused one gets a zero gradient and AdamW still moves it by its momentum and weight decay, where DDP, FSDP2
    and one process skip a parameter without gradient (the paper's behaviour). Losses stay close, not equal."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is the [scale] extra: pip install -e '.[scale]'")
    clip = str(yaml.safe_load(ZERO3_CONFIG.read_text())["deepspeed_config"]["gradient_clipping"])
    _run(sys.executable, str(SCRIPT), "--clip-grad-norm", clip, "--out", str(tmp_path / "single.json"))
    _run(
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29548", str(SCRIPT),
        "--deepspeed-config", str(ZERO3_CONFIG), "--out", str(tmp_path / "zero3.json"),
    )
    single = json.loads((tmp_path / "single.json").read_text())["losses"]
    zero3 = json.loads((tmp_path / "zero3.json").read_text())
    assert zero3["world_size"] == 2 and zero3["sharded"] == ["partitioned"]
    # Steps 1 and 2 use projectors that have no optimizer state yet elsewhere: identical.
    assert zero3["losses"][:2] == pytest.approx(single[:2], rel=1e-5)
    assert zero3["losses"][2:] == pytest.approx(single[2:], rel=1e-3)


def test_sharding_that_cannot_happen_is_refused(monkeypatch, tmp_path):
    """No silent fallback to an unsharded run: FSDP without a GPU, DeepSpeed without its package."""
    import importlib.util

    import torch

    from omni_avsr.training.arguments import OmniAVSRTrainingArguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="FSDP was asked for .* no GPU is available"):
        OmniAVSRTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"\[scale\] extra"):
        OmniAVSRTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
