"""AV-HuBERT fairseq → AVHubertVideoModel conversion, checked against the official implementation's own outputs."""

import json
import os
from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file

from omni_avsr.convert.avhubert import (
    avhubert_config_from_fairseq,
    avhubert_lora_config,
    convert_avhubert_state_dict,
    main,
    merge_avhubert_lora,
)
from omni_avsr.convert.fairseq_checkpoint import load_fairseq_checkpoint
from omni_avsr.modeling_avhubert import AVHubertVideoModel


SHARED_DIR = Path(os.environ.get("OMNI_AVSR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
PARITY_DIR = SHARED_DIR / "parity"
VIDEO_ENCODER_PREFIX = "video_encoder."
TOLERANCE = 1e-4
PRETRAINING_ONLY_KEYS = [
    "feature_extractor_audio.proj.bias",
    "feature_extractor_audio.proj.weight",
    "final_proj.bias",
    "final_proj.weight",
    "label_embs_concat",
    "mask_emb",
]


@pytest.fixture(scope="module")
def official():
    """The official Omni-AVSR-S state dict, its fairseq AV-HuBERT config, the training video batch and its output."""
    if not (PARITY_DIR / "S").is_dir():
        pytest.skip(f"official parity fixture not available at {PARITY_DIR}")
    state_dict = {
        **load_file(PARITY_DIR / "common_state_dict.safetensors"),
        **load_file(PARITY_DIR / "S" / "state_dict_part.safetensors"),
    }
    return {
        "state_dict": state_dict,
        "cfg": json.loads((PARITY_DIR / "S" / "configs" / "avhubert_fairseq_cfg.json").read_text()),
        "video": load_file(PARITY_DIR / "S" / "inputs.safetensors")["batch.video"],
        "expected": load_file(PARITY_DIR / "S" / "expected_intermediates.safetensors")[
            "train.avhubert_extract_finetune"
        ],
    }


@pytest.fixture(scope="module")
def fairseq_state_dict(official):
    return {
        key[len(VIDEO_ENCODER_PREFIX) :]: tensor
        for key, tensor in official["state_dict"].items()
        if key.startswith(VIDEO_ENCODER_PREFIX)
    }


@pytest.fixture(scope="module")
def checkpoint_path(official, fairseq_state_dict, tmp_path_factory):
    """The fixture's AV-HuBERT (with its LoRA) saved the way fairseq saves a checkpoint."""
    path = tmp_path_factory.mktemp("fairseq") / "avhubert_tiny.pt"
    torch.save(
        {
            "args": None,
            "cfg": official["cfg"],
            "model": fairseq_state_dict,
            "optimizer_history": [{"criterion_name": "AVHubertCriterion", "num_updates": 0}],
            "task_state": {},
            "extra_state": {"previous_training_time": 0.0},
        },
        path,
    )
    return path


def _max_abs_diff(model: AVHubertVideoModel, official) -> float:
    with torch.no_grad():
        output = model.eval()(official["video"]).last_hidden_state
    assert output.shape == official["expected"].shape
    return (output.float() - official["expected"]).abs().max().item()


def test_matches_official_video_encoder_with_lora(official, checkpoint_path):
    """Safe load → convert → AVHubertVideoModel + peft LoRA reproduces the official `extract_finetune` output."""
    checkpoint = load_fairseq_checkpoint(checkpoint_path)
    config = avhubert_config_from_fairseq(checkpoint["cfg"]["model"])
    conversion = convert_avhubert_state_dict(checkpoint["model"])
    assert conversion.lora_rank == 4

    model = AVHubertVideoModel(config)
    peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), model.encoder, adapter_name="default"
    )
    model.load_state_dict(conversion.state_dict, strict=True)

    assert _max_abs_diff(model, official) <= TOLERANCE


def test_lora_config_helper_reproduces_the_official_lora(official, fairseq_state_dict):
    conversion = convert_avhubert_state_dict(fairseq_state_dict)
    lora_config = avhubert_lora_config(conversion.lora_rank)
    assert (lora_config.r, lora_config.lora_alpha, set(lora_config.target_modules)) == (4, 8, {"q_proj", "v_proj"})
    model = AVHubertVideoModel(avhubert_config_from_fairseq(official["cfg"]["model"]))
    peft.inject_adapter_in_model(lora_config, model.encoder)
    model.load_state_dict(conversion.state_dict, strict=True)


def test_merged_lora_matches_official(official, fairseq_state_dict):
    """Folding the LoRA into q/v (what the CLI saves) computes the official LoRA-patched encoder."""
    conversion = convert_avhubert_state_dict(fairseq_state_dict)
    merged = AVHubertVideoModel(avhubert_config_from_fairseq(official["cfg"]["model"]))
    merged.load_state_dict(merge_avhubert_lora(conversion.state_dict), strict=True)
    assert _max_abs_diff(merged, official) <= TOLERANCE


def test_config_comes_from_the_checkpoint(official):
    config = avhubert_config_from_fairseq(official["cfg"]["model"])
    model_cfg = official["cfg"]["model"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        model_cfg["encoder_embed_dim"],
        model_cfg["encoder_layers"],
        model_cfg["encoder_attention_heads"],
        model_cfg["encoder_ffn_embed_dim"],
    )
    assert (config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups) == (128, 16)
    assert (config.hidden_dropout, config.attention_dropout, config.feat_proj_dropout, config.layerdrop) == (
        0.1,
        0.1,
        0.1,
        0.05,
    )
    assert config.modality_fuse == "concat" and config.hidden_act == "gelu"


def test_every_key_is_mapped_or_dropped(fairseq_state_dict):
    conversion = convert_avhubert_state_dict(fairseq_state_dict)

    assert conversion.dropped_keys == PRETRAINING_ONLY_KEYS
    assert len(conversion.state_dict) + len(conversion.dropped_keys) == len(fairseq_state_dict)
    state = conversion.state_dict
    official_bn = "feature_extractor_video.resnet.trunk.layer2.0.downsample.1."
    for statistic in ("running_mean", "running_var", "num_batches_tracked"):
        converted = state[f"frontend.stages.1.0.downsample.1.{statistic}"]
        assert torch.equal(converted, fairseq_state_dict[official_bn + statistic])
    assert torch.equal(
        state["encoder.pos_conv_embed.conv.parametrizations.weight.original0"],
        fairseq_state_dict["encoder.pos_conv.0.weight_g"],
    )
    assert torch.equal(
        state["encoder.layers.1.attention.q_proj.lora_A.default.weight"],
        fairseq_state_dict["encoder.layers.1.self_attn.lora_down_Q.weight"],
    )
    assert torch.equal(
        state["encoder.layers.1.attention.v_proj.lora_B.default.weight"],
        fairseq_state_dict["encoder.layers.1.self_attn.lora_up_V.weight"],
    )
    assert "encoder.layers.0.attention.k_proj.weight" in state
    assert "encoder.layers.0.attention.q_proj.base_layer.weight" in state


def test_prefix_selects_the_video_encoder_of_an_omni_avsr_state_dict(official, fairseq_state_dict):
    conversion = convert_avhubert_state_dict(official["state_dict"], prefix=VIDEO_ENCODER_PREFIX)
    assert conversion.dropped_keys == [VIDEO_ENCODER_PREFIX + key for key in PRETRAINING_ONLY_KEYS]
    assert conversion.state_dict.keys() == convert_avhubert_state_dict(fairseq_state_dict).state_dict.keys()


def test_without_lora_projections_keep_plain_names(fairseq_state_dict):
    without_lora = {key: tensor for key, tensor in fairseq_state_dict.items() if ".lora_" not in key}
    conversion = convert_avhubert_state_dict(without_lora)
    assert conversion.lora_rank is None
    assert "encoder.layers.0.attention.q_proj.weight" in conversion.state_dict


def test_unknown_keys_are_listed():
    state = {
        "mask_emb": torch.zeros(3),
        "bogus.weight": torch.zeros(1),
        "encoder.layers.0.self_attn.extra": torch.zeros(1),
    }
    with pytest.raises(ValueError, match=r"bogus\.weight, encoder\.layers\.0\.self_attn\.extra"):
        convert_avhubert_state_dict(state)


def test_incomplete_lora_is_rejected():
    state = {
        "encoder.layers.0.self_attn.lora_down_Q.weight": torch.zeros(4, 8),
        "encoder.layers.0.self_attn.lora_up_Q.weight": torch.zeros(8, 4),
    }
    with pytest.raises(ValueError, match="lora_down_V"):
        convert_avhubert_state_dict(state)


def test_weight_norm_over_the_wrong_dimension_is_rejected():
    state = {
        "encoder.pos_conv.0.weight_g": torch.ones(64, 1, 1),  # weight norm over dim=0
        "encoder.pos_conv.0.weight_v": torch.ones(64, 4, 128),
    }
    with pytest.raises(ValueError, match=r"expected \(1, 1, 128\)"):
        convert_avhubert_state_dict(state)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"layer_norm_first": False}, "layer_norm_first"),
        ({"resnet_relu_type": "relu"}, "resnet_relu_type='prelu'"),
        ({"sub_encoder_layers": 2}, "sub_encoder_layers=0"),
        ({"activation_fn": "softsign"}, "activation_fn"),
        ({"encoder_embed_dim": None}, "lacks encoder_embed_dim"),
        ({"_name": "av_hubert_seq2seq"}, "pre-training model"),
    ],
)
def test_unsupported_configs_are_rejected(override, message):
    model_cfg = {
        "encoder_embed_dim": 64,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_embed_dim": 128,
        "conv_pos": 128,
        "conv_pos_groups": 16,
        "layer_norm_first": True,
        **override,
    }
    model_cfg = {key: value for key, value in model_cfg.items() if value is not None}
    with pytest.raises(ValueError, match=message):
        avhubert_config_from_fairseq(model_cfg)


def test_cli_converts_to_a_loadable_folder(official, checkpoint_path, tmp_path, capsys):
    output_dir = tmp_path / "avhubert"
    main([str(checkpoint_path), str(output_dir)])

    printed = capsys.readouterr().out
    assert "Dropped 6 pre-training-only tensors" in printed and "Merged the LoRA (rank 4, scale 2)" in printed
    assert (output_dir / "config.json").is_file() and (output_dir / "model.safetensors").is_file()
    model = AVHubertVideoModel.from_pretrained(output_dir)
    assert _max_abs_diff(model, official) <= TOLERANCE


def test_cli_bfloat16(checkpoint_path, tmp_path):
    output_dir = tmp_path / "avhubert_bf16"
    main([str(checkpoint_path), str(output_dir), "--dtype", "bfloat16"])
    model = AVHubertVideoModel.from_pretrained(output_dir, dtype="auto")
    assert model.frontend.conv3d.weight.dtype == torch.bfloat16
    assert model.frontend.norm3d.num_batches_tracked.dtype == torch.int64
