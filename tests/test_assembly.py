"""A model assembled from components by the training script is saved with a processor that describes it: its rates
and tasks, not the paper's defaults."""

import json

import numpy as np
import torch
from test_training import TINY_COMPONENTS

from omni_avsr import OmniAVSRForConditionalGeneration
from omni_avsr.training.arguments import ModelArguments
from omni_avsr.training.assembly import build_model_and_processor
from transformers import AutoProcessor


def test_assembled_model_with_other_rates_and_tasks_gets_a_processor_whose_defaults_it_accepts(tmp_path):
    for name, config in TINY_COMPONENTS.items():
        (tmp_path / name).write_text(json.dumps(config))
    model_args = ModelArguments(
        language_model=str(tmp_path / "language_model.json"),
        audio_encoder=str(tmp_path / "audio_encoder.json"),
        video_encoder=str(tmp_path / "video_encoder.json"),
        tokenizer_vocab_size=64,
        audio_rates=[2, 8],
        tasks=["asr", "vsr"],
        projector_hidden_size=16,
        lora_rank=2,
        video_lora_rank=2,
    )
    model, processor = build_model_and_processor(model_args, ["set blue at a one now", "bin red by z two soon"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")

    loaded = AutoProcessor.from_pretrained(tmp_path / "model")
    model = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    assert (loaded.audio_rates, loaded.tasks) == ([2, 8], ["asr", "vsr"])
    loaded.check_model(model.config, "the assembled model")
    rng = np.random.default_rng(0)
    inputs = loaded(audio=rng.standard_normal(16000).astype(np.float32), sampling_rate=16000, task="asr")
    assert inputs["audio_rate"] == 2
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
