"""The frozen LM in 4-bit / 8-bit (bitsandbytes): Omni-LoRA trains on top and the loss stays close to bf16's."""

import copy
import importlib.util

import pytest
import torch

from omni_avsr.training.arguments import ModelArguments
from omni_avsr.training.quantization import quantize_language_model
from tiny_models import randomize_lora, tiny_batch, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def bf16_model(processor):
    model = tiny_model(processor).to(torch.bfloat16)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    randomize_lora(model)
    return model.train()


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantised_language_model_trains_lora_with_a_close_loss(processor, bits):
    pytest.importorskip("bitsandbytes", reason="the [quantization] extra")
    model = bf16_model(processor)
    batch = {name: value.to(torch.bfloat16) if value.is_floating_point() else value
             for name, value in tiny_batch(processor).items()}
    reference = model(**batch, audio_rate=4, video_rate=2)
    quantised = copy.deepcopy(model)
    quantize_language_model(quantised, bits)
    layer = quantised.model.language_model.layers[0]
    assert type(layer.self_attn.q_proj.base_layer).__name__ == ("Linear4bit" if bits == "4bit" else "Linear8bitLt")
    assert type(layer.mlp.down_proj).__name__ == type(layer.self_attn.q_proj.base_layer).__name__
    outputs = quantised(**batch, audio_rate=4, video_rate=2)
    for task in ("asr", "vsr", "avsr"):
        assert outputs[f"{task}_loss"] != reference[f"{task}_loss"], "the LM really is quantised"
        assert float(outputs[f"{task}_loss"]) == pytest.approx(float(reference[f"{task}_loss"]), rel=1e-2)  # NF4 on 32-wide layers
    outputs.loss.backward()
    lora = [param for name, param in quantised.named_parameters() if ".lora_" in name and "language_model" in name]
    assert lora and all(param.grad is not None and param.grad.abs().sum() > 0 for param in lora)


def test_quantisation_without_its_backend_or_with_an_unknown_setting_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="must be one of"):
        ModelArguments(quantize_language_model="3bit")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "bitsandbytes" else find_spec(name, *args)
    )
    with pytest.raises(ImportError, match=r"\[quantization\] extra"):
        ModelArguments(quantize_language_model="4bit")


def test_a_trained_language_model_is_not_quantised(processor):
    pytest.importorskip("bitsandbytes", reason="the [quantization] extra")
    model = tiny_model(processor, freeze_language_model=False)
    with pytest.raises(ValueError, match="freeze_language_model=True"):
        quantize_language_model(model, "4bit")
