"""The frozen LM in 4-bit / 8-bit (bitsandbytes): Omni-LoRA trains on top and the loss stays close to bf16's."""

import copy
import importlib.util

import pytest
import torch

from omni_avsr.training.arguments import ModelArguments
from omni_avsr.training.matryoshka import matryoshka_step
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode
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
    return keep_frozen_encoders_in_eval_mode(model.train())


def bf16_batch(processor):
    return {name: value.to(torch.bfloat16) if value.is_floating_point() else value
            for name, value in tiny_batch(processor).items()}


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantised_language_model_trains_lora_with_a_close_loss(processor, bits):
    pytest.importorskip("bitsandbytes", reason="the [quantization] extra")
    model = bf16_model(processor)
    batch = bf16_batch(processor)
    reference = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2)
    quantised = copy.deepcopy(model)
    quantize_language_model(quantised, bits)
    layer = quantised.model.language_model.layers[0]
    assert type(layer.self_attn.q_proj.base_layer).__name__ == ("Linear4bit" if bits == "4bit" else "Linear8bitLt")
    assert type(layer.mlp.down_proj).__name__ == type(layer.self_attn.q_proj.base_layer).__name__
    outputs = matryoshka_step(quantised, processor, batch, audio_rate=4, video_rate=2)
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
    with pytest.raises(ValueError, match="needs a frozen language model \\(--freeze_language_model true"):
        quantize_language_model(model, "4bit")


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_a_quantised_model_saves_a_plain_folder_that_loads_and_resumes(processor, bits, tmp_path):
    """Checkpoints hold the dequantised weights: `from_pretrained` loads them without bitsandbytes' layouts (the
    folder was refused before: packed NF4 shapes), and a resumed run quantises them again to the same model."""
    pytest.importorskip("bitsandbytes", reason="the [quantization] extra")
    from safetensors.torch import load_file

    from omni_avsr.modeling_omni_avsr import OmniAVSRForConditionalGeneration

    model = bf16_model(processor)
    quantize_language_model(model, bits)
    batch = bf16_batch(processor)
    reference = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    q_proj = "model.language_model.layers.0.self_attn.q_proj.base_layer."
    assert sorted(key for key in saved if key.startswith(q_proj)) == [q_proj + "weight"]
    assert saved[q_proj + "weight"].shape == (32, 32) and saved[q_proj + "weight"].dtype == torch.bfloat16

    reloaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).train()
    assert type(reloaded.model.language_model.layers[0].self_attn.q_proj.base_layer) is torch.nn.Linear
    dense_loss = matryoshka_step(reloaded, processor, batch, audio_rate=4, video_rate=2).loss
    assert float(dense_loss) == pytest.approx(float(reference.loss), rel=1e-3)

    resumed = bf16_model(processor)
    quantize_language_model(resumed, bits)
    result = resumed.load_state_dict(saved, strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) <= {"lm_head.weight"}
    resumed_loss = matryoshka_step(resumed, processor, batch, audio_rate=4, video_rate=2).loss
    assert float(resumed_loss) == pytest.approx(float(reference.loss), rel=1e-3)
