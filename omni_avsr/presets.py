"""Component configurations of the paper's settings (shapes only: weights come from checkpoints or random init).

`BACKBONES` holds the published config shapes of every LLM the paper scales over (Fig. 3: Llama 3.2-1B / 3B,
Llama 3.1-8B, Qwen 2.5 0.5B to 32B); `paper_config(lora_variant, backbone)` puts one of them behind the paper's
encoders (Whisper-medium, AV-HuBERT Large), rates and Omni-LoRA.
"""

from dataclasses import dataclass

from transformers import LlamaConfig, PreTrainedConfig, Qwen2Config, WhisperConfig

from .configuration_avhubert import AVHubertVideoConfig
from .configuration_omni_avsr import MARKER_TOKENS, OmniAVSRConfig


# Rows the Omni-AVSR tokenizer adds to an LM's: the four markers and a pad token (the placeholders lie past the
# vocabulary and are never embedded).
ADDED_TOKENS = len(MARKER_TOKENS) + 1

LLAMA_3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192}


@dataclass(frozen=True)
class Backbone:
    """The published shape of one LLM (its `config.json` on the Hub) and the ids Omni-AVSR needs from its tokenizer.

    `tokenizer_size` is what the tokenizer holds; `vocab_size` the embedding rows of the checkpoint. Qwen2.5 ships
    spare rows (151,936 or 152,064 for 151,665 tokens), so the markers fit without resizing; Llama 3 has none.
    """

    family: str  # "llama" or "qwen2"
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tokenizer_size: int
    tie_word_embeddings: bool
    rms_norm_eps: float
    rope_parameters: dict
    max_position_embeddings: int
    bos_token_id: int | None
    eos_token_id: int
    published_parameters: int  # the checkpoint's parameter count, as its safetensors index reports it

    @property
    def embedding_rows(self) -> int:
        """Embedding rows of an Omni-AVSR model on this LLM: the checkpoint's, or more if the markers do not fit."""
        return max(self.vocab_size, self.tokenizer_size + ADDED_TOKENS)

    def text_config(self, vocab_size: int | None = None) -> PreTrainedConfig:
        """The LLM's transformers config; `vocab_size=None` gives the Omni-AVSR embedding rows."""
        config_class = LlamaConfig if self.family == "llama" else Qwen2Config
        return config_class(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.hidden_size // self.num_attention_heads,
            vocab_size=self.embedding_rows if vocab_size is None else vocab_size,
            tie_word_embeddings=self.tie_word_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            rope_parameters=dict(self.rope_parameters),
            max_position_embeddings=self.max_position_embeddings,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
        )


def _llama(hidden, intermediate, layers, heads, tied, rope_factor, published) -> Backbone:
    return Backbone(
        "llama", hidden, intermediate, layers, heads, 8, vocab_size=128256, tokenizer_size=128256,
        tie_word_embeddings=tied, rms_norm_eps=1e-5, rope_parameters={**LLAMA_3_ROPE, "factor": rope_factor},
        max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001, published_parameters=published,
    )


def _qwen2_5(hidden, intermediate, layers, heads, kv_heads, vocab, tied, published, rms_norm_eps=1e-6) -> Backbone:
    return Backbone(
        "qwen2", hidden, intermediate, layers, heads, kv_heads, vocab_size=vocab, tokenizer_size=151665,
        tie_word_embeddings=tied, rms_norm_eps=rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, max_position_embeddings=32768,
        bos_token_id=None, eos_token_id=151643, published_parameters=published,
    )


BACKBONES = {
    "llama-3.2-1b": _llama(2048, 8192, 16, 32, tied=True, rope_factor=32.0, published=1_235_814_400),
    "llama-3.2-3b": _llama(3072, 8192, 28, 24, tied=True, rope_factor=32.0, published=3_212_749_824),
    "llama-3.1-8b": _llama(4096, 14336, 32, 32, tied=False, rope_factor=8.0, published=8_030_261_248),
    "qwen2.5-0.5b": _qwen2_5(896, 4864, 24, 14, 2, 151936, tied=True, published=494_032_768),
    "qwen2.5-1.5b": _qwen2_5(1536, 8960, 28, 12, 2, 151936, tied=True, published=1_543_714_304),
    "qwen2.5-3b": _qwen2_5(2048, 11008, 36, 16, 2, 151936, tied=True, published=3_085_938_688),
    "qwen2.5-7b": _qwen2_5(3584, 18944, 28, 28, 4, 152064, tied=False, published=7_615_616_512),
    "qwen2.5-14b": _qwen2_5(5120, 13824, 48, 40, 8, 152064, tied=False, published=14_770_033_664, rms_norm_eps=1e-5),
    "qwen2.5-32b": _qwen2_5(5120, 27648, 64, 40, 8, 152064, tied=False, published=32_763_876_352),
}
PAPER_BACKBONE = "llama-3.2-1b"


def backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def whisper_medium_encoder_config() -> WhisperConfig:
    return WhisperConfig(
        d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096, num_mel_bins=80,
        decoder_layers=24, decoder_attention_heads=16, decoder_ffn_dim=4096, vocab_size=51864,
    )


def avhubert_large_config() -> AVHubertVideoConfig:
    return AVHubertVideoConfig()


def paper_config(lora_variant: str = "ST", backbone_name: str = PAPER_BACKBONE, **kwargs) -> OmniAVSRConfig:
    """Omni-AVSR with Whisper-medium, AV-HuBERT Large and the shapes of `backbone_name` (default: Llama-3.2-1B, the
    paper's main setting). The pad token and the markers take the rows after the tokenizer's, the placeholders the
    ids after the embeddings; the prompts are stand-in
    ids (no tokenizer offline) of the official prompts' lengths."""
    shape = backbone(backbone_name)
    first_added = shape.tokenizer_size
    ids = dict(
        bos_token_id=shape.bos_token_id, eos_token_id=shape.eos_token_id, pad_token_id=first_added,
        audio_start_token_id=first_added + 1, audio_end_token_id=first_added + 2, video_start_token_id=first_added + 3,
        video_end_token_id=first_added + 4,
        prompt_token_ids={"asr": [3, 4, 5, 6, 7], "vsr": [3, 8, 5, 6, 7], "avsr": [3, 4, 9, 8, 5, 6, 7]},
    )
    ids.update(kwargs)
    return OmniAVSRConfig(
        audio_config=whisper_medium_encoder_config(),
        video_config=avhubert_large_config(),
        text_config=shape.text_config(),
        lora_variant=lora_variant,
        **ids,
    )
