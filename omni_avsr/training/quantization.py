"""The frozen language model in 4-bit (NF4) or 8-bit (int8) with bitsandbytes, Omni-LoRA on top (QLoRA-style), so
that a 7B-8B backbone trains on one 24-48 GB GPU."""

import importlib.util

import torch
from torch import nn


QUANTIZATION_CHOICES = ("4bit", "8bit")


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
    if not model.config.freeze_language_model:
        raise ValueError("quantize_language_model needs freeze_language_model=True: quantised weights do not train.")
    import bitsandbytes as bnb

    device = model.lm_head.weight.device
    compute_dtype = torch.bfloat16
    for parent in list(model.model.language_model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or name.startswith("lora_") or child.weight.requires_grad:
                continue
            weight = child.weight.data.to(compute_dtype)
            has_bias = child.bias is not None
            if quantization == "4bit":
                layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=has_bias,
                                          compute_dtype=compute_dtype, quant_type="nf4")
                layer.weight = bnb.nn.Params4bit(weight.cpu(), requires_grad=False, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=has_bias,
                                            has_fp16_weights=False)
                layer.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False)
            if has_bias:
                layer.bias = nn.Parameter(child.bias.data.to(compute_dtype), requires_grad=False)
            setattr(parent, name, layer.to(device))
