"""Component configurations of the paper's setting (shapes only: weights come from checkpoints or random init)."""

from transformers import LlamaConfig, WhisperConfig

from .configuration_avhubert import AVHubertVideoConfig
from .configuration_omni_avsr import OmniAVSRConfig


# Llama-3.2-1B's tokenizer (128,256 tokens) plus <pad>, <audio>, </audio>, <video>, </video>.
LLAMA_3_2_VOCAB_WITH_MARKERS = 128256 + 5


def whisper_medium_encoder_config() -> WhisperConfig:
    return WhisperConfig(
        d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096, num_mel_bins=80,
        decoder_layers=24, decoder_attention_heads=16, decoder_ffn_dim=4096, vocab_size=51864,
    )


def avhubert_large_config() -> AVHubertVideoConfig:
    return AVHubertVideoConfig()


def llama_3_2_1b_config(vocab_size: int = LLAMA_3_2_VOCAB_WITH_MARKERS) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=vocab_size, tie_word_embeddings=True, rms_norm_eps=1e-5,
        max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001,
        rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
            "low_freq_factor": 1.0, "original_max_position_embeddings": 8192,
        },
    )


def paper_config(lora_variant: str = "ST", **kwargs) -> OmniAVSRConfig:
    """Omni-AVSR with Whisper-medium, AV-HuBERT Large and Llama-3.2-1B shapes (the paper's main setting)."""
    vocab = LLAMA_3_2_VOCAB_WITH_MARKERS
    ids = dict(
        bos_token_id=128000, eos_token_id=128001, pad_token_id=vocab - 5, audio_start_token_id=vocab - 4,
        audio_end_token_id=vocab - 3, video_start_token_id=vocab - 2, video_end_token_id=vocab - 1,
        prompt_token_ids={"asr": [3, 4, 5, 6, 7], "vsr": [3, 8, 5, 6, 7], "avsr": [3, 4, 9, 8, 5, 6, 7]},
    )
    ids.update(kwargs)
    return OmniAVSRConfig(
        audio_config=whisper_medium_encoder_config(),
        video_config=avhubert_large_config(),
        text_config=llama_3_2_1b_config(vocab),
        lora_variant=lora_variant,
        **ids,
    )
