"""Build the model and processor `run_speech_recognition.py` trains: from a checkpoint or from components."""

import json
from pathlib import Path

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..components import find_smollm2_gguf, load_language_model
from ..configuration_avhubert import AVHubertVideoConfig
from ..configuration_omni_avsr import OmniAVSRConfig, text_vocabulary_size
from ..convert import load_converted_weights
from ..convert.avhubert import avhubert_config_from_fairseq, convert_avhubert_state_dict
from ..convert.fairseq_checkpoint import load_fairseq_checkpoint
from ..modeling_avhubert import AVHubertVideoModel
from ..modeling_omni_avsr import OmniAVSRForConditionalGeneration
from ..processing_omni_avsr import OmniAVSRProcessor
from .arguments import ModelArguments
from .tokenizer import train_bpe_tokenizer


def build_model_and_processor(
    model_args: ModelArguments, training_texts: list[str] | None = None
) -> tuple[OmniAVSRForConditionalGeneration, OmniAVSRProcessor]:
    """Load an Omni-AVSR checkpoint, or assemble a new model from an LM and the encoders named in `model_args`."""
    if model_args.model_name_or_path is not None:
        model = OmniAVSRForConditionalGeneration.from_pretrained(model_args.model_name_or_path)
        processor = OmniAVSRProcessor.from_pretrained(model_args.model_name_or_path)
        processor.check_model(model.config, model_args.model_name_or_path)
        return model, processor
    if model_args.language_model is None:
        raise ValueError("Give --model_name_or_path (an Omni-AVSR folder) or --language_model to assemble a new model.")
    if model_args.audio_encoder is None and model_args.video_encoder is None:
        raise ValueError("A new model needs --audio_encoder, --video_encoder or both.")
    language_model, tokenizer = _language_model(model_args, training_texts)
    audio_encoder, feature_extractor = _audio_encoder(model_args.audio_encoder)
    model = assemble_model(
        language_model=language_model,
        tokenizer=OmniAVSRProcessor.prepare_tokenizer(tokenizer),
        audio_encoder=audio_encoder,
        video_encoder=_video_encoder(model_args.video_encoder),
        **model_args.omni_avsr_options(),
    )
    # The processor saved with the model must default to the model's own rates and tasks, not the paper's.
    return model, OmniAVSRProcessor.for_model(model.config, feature_extractor, tokenizer)


def assemble_model(
    language_model: PreTrainedModel,
    tokenizer,
    audio_encoder: PreTrainedModel | None = None,
    video_encoder: PreTrainedModel | None = None,
    **config_kwargs,
) -> OmniAVSRForConditionalGeneration:
    """A new Omni-AVSR model from pretrained parts: a causal LM, its tokenizer with the Omni-AVSR markers and
    placeholders (`OmniAVSRProcessor.prepare_tokenizer`), a Whisper encoder (`WhisperModel.encoder` or
    `WhisperEncoder`) and/or an `AVHubertVideoModel`. `config_kwargs` are `OmniAVSRConfig` options (rates,
    `lora_variant`, ...). The LM's embeddings are resized to cover the tokenizer but its placeholders (new rows: mean
    of the old ones) before copying.
    """
    vocabulary = text_vocabulary_size(tokenizer)
    if language_model.get_input_embeddings().num_embeddings < vocabulary:
        language_model.resize_token_embeddings(vocabulary)
    config = OmniAVSRConfig(
        audio_config=audio_encoder.config if audio_encoder is not None else None,
        video_config=video_encoder.config if video_encoder is not None else None,
        text_config=language_model.config,
        **config_kwargs,
    )
    config.set_token_ids(tokenizer)
    model = OmniAVSRForConditionalGeneration(config)
    for target, source in (
        (model.model.audio_tower, audio_encoder),
        (model.model.video_tower, video_encoder),
        (model.model.language_model, language_model.get_decoder()),
    ):
        if source is not None:
            _load_into_lora_wrapped(target, source.state_dict())
    if not config.tie_word_embeddings:
        model.lm_head.load_state_dict(language_model.get_output_embeddings().state_dict())
    return model


def _load_into_lora_wrapped(module: nn.Module, state_dict: dict) -> None:
    """Load a plain state dict into `module` whose linear layers may be wrapped by peft (`x.base_layer.weight`)."""
    target_keys = set(module.state_dict())
    mapped = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        wrapped_key = f"{prefix}.base_layer.{leaf}"
        mapped[key if key in target_keys or wrapped_key not in target_keys else wrapped_key] = value
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    missing = [key for key in missing if ".lora_" not in key]
    if missing or unexpected:
        raise ValueError(
            f"Component weights do not fit the {type(module).__name__} built from the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )


def _is_config_file(path: str) -> bool:
    return path.endswith(".json")


def _language_model(model_args: ModelArguments, training_texts: list[str] | None):
    source = model_args.language_model
    if not _is_config_file(source):
        model, tokenizer = load_language_model(find_smollm2_gguf() if source == "smollm2" else source)
        if model_args.tokenizer is not None:
            tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer)
        return model, tokenizer
    if model_args.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer)
    elif training_texts:
        tokenizer = train_bpe_tokenizer(training_texts, model_args.tokenizer_vocab_size)
    else:
        raise ValueError(
            f"The LM {source} is trained from scratch: give --tokenizer, or training data to fit a BPE tokenizer on."
        )
    tokenizer = OmniAVSRProcessor.prepare_tokenizer(tokenizer)
    config = AutoConfig.for_model(**json.loads(Path(source).read_text()))
    config.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, name, getattr(tokenizer, name))
    return AutoModelForCausalLM.from_config(config), tokenizer


def _audio_encoder(source: str | None):
    if source is None:
        return None, WhisperFeatureExtractor()
    if _is_config_file(source):
        config = WhisperConfig.from_json_file(source)
        return WhisperEncoder(config), WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    if AutoConfig.from_pretrained(source).architectures == ["WhisperEncoder"]:
        encoder = WhisperEncoder.from_pretrained(source)  # an encoder-only folder, e.g. from convert.ctranslate2_whisper
    else:
        encoder = WhisperModel.from_pretrained(source).get_encoder()
    return encoder, WhisperFeatureExtractor.from_pretrained(source)


def _video_encoder(source: str | None):
    if source is None:
        return None
    if _is_config_file(source):
        return AVHubertVideoModel(AVHubertVideoConfig.from_json_file(source))
    path = Path(source)
    if path.suffix in (".pt", ".pth"):
        checkpoint = load_fairseq_checkpoint(path)
        model = AVHubertVideoModel(avhubert_config_from_fairseq(checkpoint["cfg"]["model"]))
        load_converted_weights(model, convert_avhubert_state_dict(checkpoint["model"]).state_dict, source)
        return model
    return AVHubertVideoModel.from_pretrained(source)
