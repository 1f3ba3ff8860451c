"""Tiny random Omni-AVSR models, tokenizer and batches for fast CPU tests."""

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    WhisperConfig,
    WhisperFeatureExtractor,
)

from omni_avsr import AVHubertVideoConfig, OmniAVSRConfig, OmniAVSRForConditionalGeneration, OmniAVSRProcessor
from omni_avsr.configuration_omni_avsr import text_vocabulary_size
from omni_avsr.training.policy import freeze


def tiny_tokenizer(with_bos: bool = True) -> PreTrainedTokenizerFast:
    """Character-level tokenizer (Llama-like: adds BOS when tokenizing; or Qwen-like: no BOS at all)."""
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2}
    for char in "abcdefghijklmnopqrstuvwxyz '.,?":
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    if with_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>" if with_bos else None, eos_token="</s>", unk_token="<unk>"
    )


def tiny_processor(with_bos: bool = True) -> OmniAVSRProcessor:
    return OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tiny_tokenizer(with_bos))


def tiny_config(
    processor: OmniAVSRProcessor, llm: str = "llama", audio: bool = True, video: bool = True, vocab_size=None, **kwargs
):
    text_kwargs = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        # By default the LM's vocabulary ends before the placeholders (as assembled or converted models' does).
        vocab_size=vocab_size or text_vocabulary_size(processor.tokenizer), tie_word_embeddings=True,
    )
    text_config = LlamaConfig(**text_kwargs) if llm == "llama" else Qwen2Config(**text_kwargs)
    options = dict(lora_rank=4, lora_alpha=8, video_lora_rank=4, video_lora_alpha=8, projector_hidden_size=48)
    options.update(kwargs)
    config = OmniAVSRConfig(
        audio_config=WhisperConfig(
            d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=80
        ) if audio else None,
        video_config=AVHubertVideoConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, frontend_channels=8,
            resnet_channels=[8, 8, 16, 16],
        ) if video else None,
        text_config=text_config,
        **options,
    )
    config.set_token_ids(processor.tokenizer)
    return config


def tiny_model(
    processor: OmniAVSRProcessor, seed: int = 0, freeze_language_model: bool = True, **kwargs
) -> OmniAVSRForConditionalGeneration:
    """A tiny model under the paper's training policy (encoders frozen, and the LM unless `freeze_language_model` is
    False); `kwargs` are config options."""
    torch.manual_seed(seed)
    model = OmniAVSRForConditionalGeneration(tiny_config(processor, **kwargs))
    freeze(model, language_model=freeze_language_model)
    return model


def randomize_lora(model, seed: int = 0, std: float = 0.1) -> None:
    """LoRA B starts at zero (no gradient reaches A); give every adapter weight a random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_decoding_model(max_new_tokens: int = 4, seed: int = 0):
    """A tiny model (eval mode) that writes tokens when it decodes (its LoRA made random: LoRA B starts at zero) and
    its processor; `saved_model` writes them as a folder."""
    processor = tiny_processor()
    model = tiny_model(processor, seed=seed).eval()
    randomize_lora(model, std=0.3)
    model.generation_config.max_new_tokens = max_new_tokens
    return model, processor


def saved_model(model, processor, folder):
    """The folder a pipeline or the CLI loads: the model and its processor saved into `folder`."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


TRANSCRIPTS = ["set blue at a one now", "bin red", "place green by z nine soon"]


def tiny_clips(num_clips: int = 3, seed: int = 0, seconds=(1.6, 1.2, 2.0)):
    """Random waveforms and 96×96 uint8 frame stacks of matching durations (25 fps, 640 samples per frame)."""
    rng = np.random.default_rng(seed)
    audio, videos = [], []
    for index in range(num_clips):
        frames = int(seconds[index % len(seconds)] * 25)
        audio.append(rng.standard_normal(frames * 640).astype(np.float32) * 0.1)
        videos.append(rng.integers(0, 256, size=(frames, 96, 96), dtype=np.uint8))
    return audio, videos


def tiny_batch(processor: OmniAVSRProcessor, num_clips: int = 3, seed: int = 0, text: bool = True):
    audio, videos = tiny_clips(num_clips, seed)
    return processor(
        audio=audio,
        videos=videos,
        text=TRANSCRIPTS[:num_clips] if text else None,
        sampling_rate=16000,
        return_tensors="pt",
    )
