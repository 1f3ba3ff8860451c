"""The backbone presets have their published shapes: built on the meta device, each LLM has exactly the parameter
count of its released checkpoint, and an Omni-AVSR model on it adds the paper's encoders, projectors and LoRA."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from omni_avsr import OmniAVSRForConditionalGeneration
from omni_avsr.presets import BACKBONES, backbone, paper_config


def decoder_parameters(shape) -> int:
    """Parameters of a Llama / Qwen2 decoder from its shape, written out: embeddings (and an untied head), per layer
    Q, K, V, O (Qwen2: biases on Q, K, V), the gated MLP and two RMSNorms, and the final norm."""
    hidden, head_dim = shape.hidden_size, shape.hidden_size // shape.num_attention_heads
    kv = shape.num_key_value_heads * head_dim
    attention = 2 * hidden * hidden + 2 * hidden * kv + ((hidden + 2 * kv) if shape.family == "qwen2" else 0)
    layer = attention + 3 * hidden * shape.intermediate_size + 2 * hidden
    embeddings = shape.vocab_size * hidden * (1 if shape.tie_word_embeddings else 2)
    return embeddings + shape.num_hidden_layers * layer + hidden


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_meta_built_llm_has_the_published_parameter_count(name):
    shape = backbone(name)
    with torch.device("meta"):
        language_model = AutoModelForCausalLM.from_config(shape.text_config(shape.vocab_size))
    counted = sum(param.numel() for param in language_model.parameters())
    assert counted == shape.published_parameters == decoder_parameters(shape)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b"])
def test_paper_config_puts_the_backbone_behind_the_paper_encoders(name):
    shape = backbone(name)
    config = paper_config("ST", name)
    with torch.device("meta"):
        model = OmniAVSRForConditionalGeneration(config)
    lm = sum(param.numel() for key, param in model.named_parameters()
             if key.startswith(("model.language_model.", "lm_head.")) and ".lora_" not in key)
    assert lm == decoder_parameters(shape) + (shape.embedding_rows - shape.vocab_size) * shape.hidden_size * (
        1 if shape.tie_word_embeddings else 2
    )
    # The markers and pad token sit inside the embeddings, the placeholders right after them.
    assert max(config.pad_token_id, config.video_end_token_id) < shape.embedding_rows == config.audio_token_id
    assert config.bos_token_id == shape.bos_token_id and config.tie_word_embeddings == shape.tie_word_embeddings
    # ST LoRA (rank 64 on Q and V: shared + 3 task adapters) on every decoder layer, as the trainable LLM part.
    head_dim = shape.hidden_size // shape.num_attention_heads
    per_adapter = shape.num_hidden_layers * 64 * (
        2 * shape.hidden_size + shape.hidden_size + shape.num_key_value_heads * head_dim
    )
    lm_lora = sum(param.numel() for key, param in model.named_parameters()
                  if key.startswith("model.language_model.") and ".lora_" in key)
    assert lm_lora == 4 * per_adapter


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="llama-3.2-1b, llama-3.2-3b"):
        paper_config("ST", "llama-4")
