"""The frozen language model in 4-bit (NF4) or 8-bit (int8) with bitsandbytes, Omni-LoRA on top (QLoRA-style), so
that a 7B-8B backbone trains on one 24-48 GB GPU."""

import importlib.util

import torch
from torch import nn


QUANTIZATION_CHOICES = ("4bit", "8bit")
COMPUTE_DTYPE = torch.bfloat16


def check_quantization(quantization: str | None) -> None:
    """Refuse an unknown setting, or a quantised LM without its backend (never fall back to bf16 silently)."""
    if quantization is None:
        return
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(f"quantize_language_model must be one of {QUANTIZATION_CHOICES} or None, got {quantization!r}.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            f"quantize_language_model={quantization!r} needs bitsandbytes (>= 0.45 runs on CPU too); expected the "
            "[quantization] extra: pip install -e '.[quantization]'."
        )


def quantize_language_model(model, quantization: str | None) -> None:
    """Replace the LM's frozen linear layers (under Omni-LoRA: their base layers) by bitsandbytes ones, in place.

    The embeddings, the LM head (as transformers leaves it), the encoders and everything trained stay as they are.
    The model must be on the device it trains on: bitsandbytes quantises when the weights are moved there.
    """
    check_quantization(quantization)
    if quantization is None:
        return
    if any(param.requires_grad for name, param in model.language_model.named_parameters() if ".lora_" not in name):
        raise ValueError(
            "quantize_language_model needs a frozen language model (--freeze_language_model true, the default): "
            "quantised weights do not train."
        )
    import bitsandbytes as bnb

    device = model.lm_head.weight.device
    for parent in list(model.model.language_model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or name.startswith("lora_") or child.weight.requires_grad:
                continue
            has_bias = child.bias is not None
            if quantization == "4bit":
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=has_bias,
                                          compute_dtype=COMPUTE_DTYPE, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=has_bias,
                                            has_fp16_weights=False)
            _set_quantized_weight(layer, child.weight.data, device)
            if has_bias:
                layer.bias = nn.Parameter(child.bias.data.to(COMPUTE_DTYPE), requires_grad=False)
            layer.register_state_dict_post_hook(_save_dense_weight)
            layer.register_load_state_dict_pre_hook(_load_dense_weight)
            setattr(parent, name, layer.to(device))


def _set_quantized_weight(layer: nn.Module, weight: torch.Tensor, device: torch.device) -> None:
    """Quantise a dense weight into `layer` (bitsandbytes quantises when the parameter moves to `device`)."""
    import bitsandbytes as bnb

    weight = weight.detach().to("cpu", COMPUTE_DTYPE)
    if isinstance(layer, bnb.nn.Linear4bit):
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4").to(device)
    else:
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False).to(device)


def _save_dense_weight(layer: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """Save a quantised layer as the plain dense weight (dequantised): checkpoints then load with `from_pretrained`
    anywhere, bitsandbytes or not, and a resumed run quantises them again."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnb_functional

    for key in [key for key in state_dict if key.startswith(prefix) and key != prefix + "bias"]:
        del state_dict[key]
    weight = layer.weight
    if isinstance(layer, bnb.nn.Linear4bit):
        dense = bnb_functional.dequantize_4bit(weight.data, weight.quant_state)
    else:
        scales = weight.SCB if getattr(weight, "SCB", None) is not None else layer.state.SCB  # moved there by a forward
        dense = bnb_functional.int8_vectorwise_dequant(weight.data, scales)
    state_dict[prefix + "weight"] = dense.to(COMPUTE_DTYPE)


def _load_dense_weight(layer: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Quantise a dense weight (as `_save_dense_weight` writes) into the layer before the default loading copies it."""
    weight = state_dict.get(prefix + "weight")
    if weight is None or not weight.is_floating_point():
        return
    _set_quantized_weight(layer, weight, layer.weight.device)
    state_dict[prefix + "weight"] = layer.weight.data
