"""Convert a fairseq AV-HuBERT checkpoint into an [`AVHubertVideoModel`] folder.

Usage:
    python -m omni_avsr.convert.avhubert CHECKPOINT.pt OUTPUT_DIR [--dtype float32|bfloat16]

The checkpoint is read with [`load_fairseq_checkpoint`] (no code from it runs, fairseq is not needed), the model
dimensions come from its own config, and every tensor of its state dict is either renamed to our layout or dropped
because only AV-HuBERT pre-training uses it. The functions below are reused by the Omni-AVSR converter, whose
checkpoints embed the same fairseq AV-HuBERT (plus LoRA on the attention queries and values) under `video_encoder.`.
"""

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from peft import LoraConfig

from ..command_line import EXPECTED_ERRORS, add_debug_flag, prepare_output_dir, report_error
from ..configuration_avhubert import AVHubertVideoConfig
from ..modeling_avhubert import AVHubertVideoModel
from . import check_finite_weights, load_converted_weights
from .fairseq_checkpoint import load_fairseq_checkpoint


AVHUBERT_LORA_SCALING = 2
"""Omni-AVSR adds `2 * lora_up(lora_down(x))` to AV-HuBERT's queries and values, whatever the rank."""

AVHUBERT_LORA_TARGET_MODULES = ("q_proj", "v_proj")
LORA_ADAPTER_NAME = "default"

# fairseq `activation_fn` -> transformers activation with the same formula.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_accurate": "gelu_new",
    "gelu_fast": "gelu_new",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
    "swish": "swish",
}

# Fields that decide the architecture: a checkpoint without them is not an AV-HuBERT we can rebuild.
_REQUIRED_FIELDS = (
    "encoder_embed_dim",
    "encoder_layers",
    "encoder_attention_heads",
    "encoder_ffn_embed_dim",
    "conv_pos",
    "conv_pos_groups",
    "layer_norm_first",
)

# AV-HuBERT's own dataclass defaults, which fairseq also applies to configs saved before a field existed.
_FAIRSEQ_DEFAULTS = {
    "activation_fn": "gelu",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "dropout_input": 0.0,
    "encoder_layerdrop": 0.0,
    "modality_fuse": "concat",
    "resnet_relu_type": "prelu",
    "sub_encoder_layers": 0,
}

# Keys that only AV-HuBERT pre-training uses (masking, cluster prediction, the audio branch): name -> regex.
DROPPED_KEY_PATTERNS = {
    "mask_emb": r"mask_emb",
    "label_embs_concat": r"label_embs_concat",
    "final_proj.*": r"final_proj\..+",
    "target_glu.*": r"target_glu\..+",
    "feature_extractor_audio.*": r"feature_extractor_audio\..+",
}

_RESNET_BLOCK_PARTS = {
    "conv1": "conv1",
    "bn1": "norm1",
    "relu1": "act1",
    "conv2": "conv2",
    "bn2": "norm2",
    "relu2": "act2",
    "downsample.0": "downsample.0",
    "downsample.1": "downsample.1",
}
_RESNET_BLOCK_PART_PATTERN = "|".join(re.escape(part) for part in _RESNET_BLOCK_PARTS)
_ENCODER_LAYER_PARTS = {
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}
_POS_CONV_PARTS = {
    "bias": "bias",
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
    "parametrizations.weight.original0": "parametrizations.weight.original0",
    "parametrizations.weight.original1": "parametrizations.weight.original1",
}
_LORA_PROJECTIONS = {"Q": "q_proj", "V": "v_proj"}
_LORA_MATRICES = {"down": "lora_A", "up": "lora_B"}


class AVHubertStateDictConversion(NamedTuple):
    """Result of [`convert_avhubert_state_dict`]."""

    state_dict: dict[str, torch.Tensor]
    """Tensors under [`AVHubertVideoModel`] names (peft LoRA names for `q_proj`/`v_proj` when LoRA was found)."""
    dropped_keys: list[str]
    """Input keys (with prefix) deliberately left out because only pre-training uses them."""
    lora_rank: int | None
    """Rank of the official AV-HuBERT LoRA found in the checkpoint, `None` without LoRA."""


def avhubert_config_from_fairseq(model_cfg: Mapping) -> AVHubertVideoConfig:
    """Build an [`AVHubertVideoConfig`] from a fairseq AV-HuBERT model config (`checkpoint["cfg"]["model"]`).

    Rejects variants our model does not implement instead of converting them into something that computes
    differently: post-LayerNorm encoders, ReLU front-ends and per-modality sub-encoders.
    """
    if model_cfg.get("_name", "av_hubert") != "av_hubert":
        raise ValueError(
            f"Expected the config of a fairseq AV-HuBERT pre-training model (_name 'av_hubert'), got "
            f"{model_cfg['_name']!r}; fine-tuned AV-HuBERT checkpoints (av_hubert_seq2seq, ...) are not supported."
        )
    missing = [field for field in _REQUIRED_FIELDS if field not in model_cfg]
    if missing:
        raise ValueError(
            f"The fairseq model config lacks {', '.join(missing)}; an AV-HuBERT config needs all of "
            f"{', '.join(_REQUIRED_FIELDS)}."
        )
    cfg = {**_FAIRSEQ_DEFAULTS, **{key: value for key, value in model_cfg.items() if value is not None}}
    if not cfg["layer_norm_first"]:
        raise ValueError(
            "Only pre-LayerNorm AV-HuBERT encoders (layer_norm_first=True, as AV-HuBERT Base/Large) can be converted: "
            "AVHubertVideoModel's transformer is Wav2Vec2EncoderStableLayerNorm. The checkpoint has "
            f"layer_norm_first={cfg['layer_norm_first']!r}."
        )
    if cfg["resnet_relu_type"] != "prelu":
        raise ValueError(
            "Expected resnet_relu_type='prelu' (AVHubertVideoModel's ResNet uses PReLU), got "
            f"{cfg['resnet_relu_type']!r}."
        )
    if cfg["sub_encoder_layers"] != 0:
        raise ValueError(
            "Expected sub_encoder_layers=0 (no per-modality transformer before fusion), got "
            f"{cfg['sub_encoder_layers']}."
        )
    if cfg["activation_fn"] not in _ACTIVATIONS:
        raise ValueError(
            f"Unsupported fairseq activation_fn {cfg['activation_fn']!r}; expected one of {', '.join(_ACTIVATIONS)}."
        )
    return AVHubertVideoConfig(
        hidden_size=cfg["encoder_embed_dim"],
        num_hidden_layers=cfg["encoder_layers"],
        num_attention_heads=cfg["encoder_attention_heads"],
        intermediate_size=cfg["encoder_ffn_embed_dim"],
        hidden_act=_ACTIVATIONS[cfg["activation_fn"]],
        hidden_dropout=cfg["dropout"],
        attention_dropout=cfg["attention_dropout"],
        activation_dropout=cfg["activation_dropout"],
        feat_proj_dropout=cfg["dropout_input"],
        layerdrop=cfg["encoder_layerdrop"],
        num_conv_pos_embeddings=cfg["conv_pos"],
        num_conv_pos_embedding_groups=cfg["conv_pos_groups"],
        modality_fuse=cfg["modality_fuse"],
    )


def _rename_rules(lora_found: bool) -> list[tuple[re.Pattern, Callable[[re.Match], str]]]:
    """(fairseq key pattern, function giving our key) pairs; q/v projections move under `base_layer` with LoRA."""

    def attention_projection(match: re.Match) -> str:
        layer, projection, parameter = match.groups()
        base = ".base_layer" if lora_found and projection in AVHUBERT_LORA_TARGET_MODULES else ""
        return f"encoder.layers.{layer}.attention.{projection}{base}.{parameter}"

    rules = {
        r"feature_extractor_video\.resnet\.frontend3D\.0\.weight": lambda m: "frontend.conv3d.weight",
        r"feature_extractor_video\.resnet\.frontend3D\.1\.(\w+)": lambda m: f"frontend.norm3d.{m[1]}",
        r"feature_extractor_video\.resnet\.frontend3D\.2\.weight": lambda m: "frontend.act3d.weight",
        rf"feature_extractor_video\.resnet\.trunk\.layer(\d+)\.(\d+)\.({_RESNET_BLOCK_PART_PATTERN})\.(\w+)": (
            lambda m: f"frontend.stages.{int(m[1]) - 1}.{m[2]}.{_RESNET_BLOCK_PARTS[m[3]]}.{m[4]}"
        ),
        r"feature_extractor_video\.proj\.(weight|bias)": lambda m: f"frontend_projection.{m[1]}",
        r"layer_norm\.(weight|bias)": lambda m: f"feature_layer_norm.{m[1]}",
        r"post_extract_proj\.(weight|bias)": lambda m: f"feature_projection.{m[1]}",
        r"encoder\.pos_conv\.0\.(bias|weight_g|weight_v|parametrizations\.weight\.original[01])": (
            lambda m: f"encoder.pos_conv_embed.conv.{_POS_CONV_PARTS[m[1]]}"
        ),
        r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)": attention_projection,
        r"encoder\.layers\.(\d+)\.self_attn\.lora_(down|up)_(Q|V)\.weight": (
            lambda m: f"encoder.layers.{m[1]}.attention.{_LORA_PROJECTIONS[m[3]]}."
            f"{_LORA_MATRICES[m[2]]}.{LORA_ADAPTER_NAME}.weight"
        ),
        r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)": (
            lambda m: f"encoder.layers.{m[1]}.{_ENCODER_LAYER_PARTS[m[2]]}.{m[3]}"
        ),
        r"encoder\.layer_norm\.(weight|bias)": lambda m: f"encoder.layer_norm.{m[1]}",
    }
    return [(re.compile(pattern), rename) for pattern, rename in rules.items()]


_LORA_KEY = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.lora_(down|up)_(Q|V)\.weight")
_DROPPED_KEYS = {name: re.compile(pattern) for name, pattern in DROPPED_KEY_PATTERNS.items()}


def _lora_rank(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Check that the official LoRA (if any) covers Q and V of every layer with one rank, and return that rank."""
    lora_keys = {key: tensor for key, tensor in state_dict.items() if _LORA_KEY.fullmatch(key)}
    if not lora_keys:
        return None
    layers = sorted(
        {int(match[1]) for key in state_dict if (match := re.fullmatch(r"encoder\.layers\.(\d+)\..+", key))}
    )
    expected = {
        f"encoder.layers.{layer}.self_attn.lora_{matrix}_{projection}.weight"
        for layer in layers
        for matrix in _LORA_MATRICES
        for projection in _LORA_PROJECTIONS
    }
    if set(lora_keys) != expected:
        missing = sorted(expected - set(lora_keys))
        raise ValueError(
            "AV-HuBERT LoRA must cover lora_{down,up}_{Q,V} of every encoder layer; missing: " + ", ".join(missing)
        )
    ranks = {tensor.shape[0] for key, tensor in lora_keys.items() if "lora_down" in key}
    ranks |= {tensor.shape[1] for key, tensor in lora_keys.items() if "lora_up" in key}
    if len(ranks) != 1:
        raise ValueError(f"AV-HuBERT LoRA matrices disagree on the rank: found ranks {sorted(ranks)}.")
    return ranks.pop()


def _check_pos_conv_shapes(state_dict: Mapping[str, torch.Tensor]) -> None:
    """fairseq applies weight norm over dim=2 of the positional conv: `weight_g` is (1, 1, kernel)."""
    weight_g, weight_v = state_dict.get("encoder.pos_conv.0.weight_g"), state_dict.get("encoder.pos_conv.0.weight_v")
    if weight_g is None or weight_v is None:
        return
    expected = (1, 1, weight_v.shape[-1])
    if weight_v.ndim != 3 or tuple(weight_g.shape) != expected:
        raise ValueError(
            f"encoder.pos_conv.0.weight_g has shape {tuple(weight_g.shape)} for weight_v {tuple(weight_v.shape)}; "
            f"expected {expected} (weight norm over the kernel dimension, dim=2, as fairseq's positional conv)."
        )


def convert_avhubert_state_dict(
    state_dict: Mapping[str, torch.Tensor], prefix: str = ""
) -> AVHubertStateDictConversion:
    """Rename a fairseq AV-HuBERT state dict to [`AVHubertVideoModel`]'s parameter names.

    Only keys starting with `prefix` (e.g. `"video_encoder."` in an Omni-AVSR checkpoint) are AV-HuBERT's; the others
    are ignored. Each AV-HuBERT key is either mapped or dropped (pre-training-only keys, see `DROPPED_KEY_PATTERNS`);
    any other key raises a `ValueError` listing it, so nothing is lost silently. BatchNorm running statistics and
    `num_batches_tracked` are kept. The official LoRA (`self_attn.lora_{down,up}_{Q,V}`) becomes peft's
    `attention.{q,v}_proj.lora_{A,B}.default.weight`, with the base weights under `base_layer`; build the model
    with [`avhubert_lora_config`] to load it, or fold it in with [`merge_avhubert_lora`].
    """
    own = {key[len(prefix) :]: tensor for key, tensor in state_dict.items() if key.startswith(prefix)}
    _check_pos_conv_shapes(own)
    lora_rank = _lora_rank(own)
    rules = _rename_rules(lora_found=lora_rank is not None)
    converted, dropped, unknown = {}, [], []
    for key, tensor in own.items():
        if any(pattern.fullmatch(key) for pattern in _DROPPED_KEYS.values()):
            dropped.append(prefix + key)
            continue
        for pattern, rename in rules:
            if match := pattern.fullmatch(key):
                converted[rename(match)] = tensor
                break
        else:
            unknown.append(prefix + key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) of the AV-HuBERT checkpoint are neither converted nor known pre-training-only "
            f"keys: {', '.join(sorted(unknown))}. Expected the keys of a fairseq AV-HuBERT (av_hubert) model."
        )
    return AVHubertStateDictConversion(converted, sorted(dropped), lora_rank)


def merge_avhubert_lora(
    state_dict: Mapping[str, torch.Tensor], scaling: float = AVHUBERT_LORA_SCALING
) -> dict[str, torch.Tensor]:
    """Fold peft-named LoRA weights into the q/v projections: `W + scaling * B @ A` (exact, the LoRA is linear).

    Gives a plain [`AVHubertVideoModel`] state dict that computes what the official LoRA-patched encoder computes.
    """
    merged = {}
    for key, tensor in state_dict.items():
        if ".lora_A." in key or ".lora_B." in key:
            continue
        if ".base_layer." in key:
            module = key.split(".base_layer.")[0]
            key = key.replace(".base_layer.", ".")
            if key.endswith(".weight"):
                lora_a = state_dict[f"{module}.lora_A.{LORA_ADAPTER_NAME}.weight"].float()
                lora_b = state_dict[f"{module}.lora_B.{LORA_ADAPTER_NAME}.weight"].float()
                tensor = (tensor.float() + scaling * lora_b @ lora_a).to(tensor.dtype)
        merged[key] = tensor
    return merged


def avhubert_lora_config(rank: int) -> LoraConfig:
    """peft `LoraConfig` reproducing the official AV-HuBERT LoRA: Q and V of every layer, delta scaled by 2."""
    return LoraConfig(
        r=rank,
        lora_alpha=AVHUBERT_LORA_SCALING * rank,
        lora_dropout=0.0,
        bias="none",
        target_modules=list(AVHUBERT_LORA_TARGET_MODULES),
    )


def _summarize_dropped(dropped_keys: list[str]) -> str:
    """'mask_emb (1), final_proj.* (2), ...' for the progress printout."""
    counts = {}
    for key in dropped_keys:
        name = next(name for name, pattern in _DROPPED_KEYS.items() if pattern.fullmatch(key))
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} ({count})" for name, count in counts.items())


def convert_avhubert_checkpoint(
    checkpoint_path: str | Path, output_dir: str | Path, dtype: torch.dtype = torch.float32
) -> AVHubertVideoModel:
    """Convert a fairseq AV-HuBERT `.pt` into a `save_pretrained` folder of [`AVHubertVideoModel`] and return it.

    A LoRA found in the checkpoint is merged into the q/v projections, since the saved model has no adapters.
    """
    prepare_output_dir(output_dir)
    checkpoint = load_fairseq_checkpoint(checkpoint_path)
    if "model" not in checkpoint["cfg"]:
        raise ValueError(f"{checkpoint_path}: the checkpoint config has no 'model' section.")
    config = avhubert_config_from_fairseq(checkpoint["cfg"]["model"])
    check_finite_weights(checkpoint["model"], str(checkpoint_path))
    conversion = convert_avhubert_state_dict(checkpoint["model"])
    state_dict = conversion.state_dict
    if conversion.lora_rank is not None:
        state_dict = merge_avhubert_lora(state_dict)
    model = AVHubertVideoModel(config)
    load_converted_weights(model, state_dict, str(checkpoint_path))
    # Reported once the whole checkpoint is known to convert: a refused one prints only its error line.
    print(
        f"{checkpoint_path}: AV-HuBERT, {config.num_hidden_layers} layers, width {config.hidden_size}, "
        f"{config.num_attention_heads} heads, FFN {config.intermediate_size}, fusion {config.modality_fuse!r}"
    )
    print(f"Mapped {len(conversion.state_dict)} tensors")
    if conversion.dropped_keys:
        print(
            f"Dropped {len(conversion.dropped_keys)} pre-training-only tensors: "
            f"{_summarize_dropped(conversion.dropped_keys)}"
        )
    if conversion.lora_rank is not None:
        print(f"Merged the LoRA (rank {conversion.lora_rank}, scale {AVHUBERT_LORA_SCALING:g}) into q_proj/v_proj")
    model.to(dtype).eval()
    model.save_pretrained(output_dir)
    print(f"Saved AVHubertVideoModel ({dtype}) to {output_dir}")
    return model


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omni_avsr.convert.avhubert",
        description="Convert a fairseq AV-HuBERT checkpoint into an AVHubertVideoModel folder (safetensors).",
    )
    parser.add_argument("checkpoint", type=Path, help="fairseq AV-HuBERT checkpoint (.pt), e.g. large_vox_iter5.pt")
    parser.add_argument("output_dir", type=Path, help="folder for the converted model (config + safetensors)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="dtype of the saved weights")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    try:
        convert_avhubert_checkpoint(args.checkpoint, args.output_dir, _DTYPES[args.dtype])
    except EXPECTED_ERRORS as error:
        return report_error(parser.prog, error, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
