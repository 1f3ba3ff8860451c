"""Convert an official Omni-AVSR checkpoint (a state dict of the reference `AVSR_LLMs`) into a Transformers folder.

    python -m omni_avsr.convert.official CHECKPOINT [CHECKPOINT ...] OUTPUT_DIR \
        --llm-config LLM_DIR_OR_JSON --tokenizer TOKENIZER_DIR \
        --whisper-config WHISPER_DIR_OR_JSON --avhubert-config AVHUBERT_CFG_JSON_OR_PT \
        [--audio-rates 4 16] [--video-rates 2 5] [--lora-rank-factor 32 --lora-alpha 4]

The variant (S / T / ST), the projector form (per rate or shared, with or without LayerNorm), the compression
(average pooling or stacking) and the LoRA bottlenecks are read from the checkpoint's keys and shapes. What a state
dict cannot tell — the rates, the LoRA scale (the official `--rank` reduction factor and `--alpha`), the component
configs and the tokenizer — comes from the command line. Every key is mapped or listed as dropped; any other key is
an error.
"""

import argparse
import json
import pickle
import re
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, WhisperConfig, WhisperFeatureExtractor

from ..command_line import EXPECTED_ERRORS, add_debug_flag, prepare_output_dir, report_error
from ..configuration_omni_avsr import OmniAVSRConfig, text_vocabulary_size
from ..conversion_mapping_omni_avsr import rename_checkpoint_keys
from ..modeling_omni_avsr import OmniAVSRForConditionalGeneration
from ..processing_omni_avsr import OmniAVSRProcessor
from . import check_finite_weights, load_converted_weights
from .avhubert import avhubert_config_from_fairseq, convert_avhubert_state_dict
from .fairseq_checkpoint import load_fairseq_checkpoint


PROG = "python -m omni_avsr.convert.official"
OFFICIAL_TASKS = {"audio": "asr", "video": "vsr", "audiovisual": "avsr"}
PROMPT_BUFFERS = {"prompt_audio": "asr", "prompt_video": "vsr", "prompt_audiovisual": "avsr"}
# The video-encoder LoRA of the official code is always scaled by 2 (`scaling_lora`).
OFFICIAL_VIDEO_LORA_SCALE = 2.0


def load_official_state_dict(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Merge `.safetensors` / `.pt` / `.pth` / `.ckpt` files (plain state dicts or Lightning checkpoints) into one dict."""
    state_dict = {}
    for path in paths:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; expected a checkpoint file (.safetensors, .pt, .pth, .ckpt).")
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint not found: {path}")
        try:
            if path.suffix == ".safetensors":
                part = load_file(path)
            else:
                part = torch.load(path, map_location="cpu", weights_only=True)
        except (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(
                f"{path} cannot be read as a checkpoint ({' '.join(str(error).split())[:200]}); expected a complete "
                "safetensors file or a torch state dict (a file cut short by an interrupted download fails so)."
            ) from error
        if isinstance(part, dict) and isinstance(part.get("state_dict"), dict):
            part = {key.removeprefix("model."): value for key, value in part["state_dict"].items()}
        if not isinstance(part, dict) or not all(torch.is_tensor(value) for value in part.values()):
            raise ValueError(f"{path} is not a state dict of tensors (nor a Lightning checkpoint holding one).")
        state_dict.update(part)
    return state_dict


def detect_layout(state_dict: dict[str, torch.Tensor]) -> dict:
    """Read the official model's structure from its keys and shapes."""
    keys = state_dict.keys()
    if any(key.endswith("lora_down_Q_shared.weight") for key in keys):
        variant = "ST"
    elif any(re.search(r"lora_down_Q\.(audio|video|audiovisual)\.weight$", key) for key in keys):
        variant = "T"
    elif any(key.startswith("llm.") and key.endswith("lora_down_Q.weight") for key in keys):
        variant = "S"
    else:
        raise ValueError("No LLM LoRA keys (llm.model.layers.N.self_attn.lora_down_Q*) found: not an Omni-AVSR checkpoint.")
    layout = {"variant": variant}
    for modality in ("audio", "video"):
        prefix = f"{modality}_proj."
        names = [key[len(prefix) :] for key in keys if key.startswith(prefix)]
        if not names:
            layout[modality] = None
            continue
        per_rate = all(re.match(r"\d+\.\d+\.", name) for name in names)
        first = f"{prefix}0.0." if per_rate else f"{prefix}0."
        norm = f"{prefix}0.3.weight" if per_rate else f"{prefix}3.weight"
        count = len({name.split(".")[0] for name in names}) if per_rate else 1
        layout[modality] = {
            "per_rate": per_rate,
            "num_projectors": count,
            "layer_norm": norm in state_dict,
            "input_size": state_dict[first + "weight"].shape[1],
            "hidden_size": state_dict[first + "weight"].shape[0],
        }
    lora_down = next(state_dict[key] for key in keys if key.startswith("llm.") and "lora_down_Q" in key)
    layout["lora_rank"] = lora_down.shape[0]
    video_lora = [key for key in keys if key.startswith("video_encoder.") and key.endswith("lora_down_Q.weight")]
    layout["video_lora_rank"] = state_dict[video_lora[0]].shape[0] if video_lora else 0
    return layout


def _llm_key(key: str) -> str:
    """`llm.model.layers.N.self_attn.lora_{down,up}_{Q,V}[.task|_shared].weight` and plain LM keys → our names."""
    match = re.match(r"llm\.(model\.layers\.\d+\.self_attn)\.lora_(down|up)_([QV])(_shared|\.\w+)?\.weight$", key)
    if match:
        module, direction, projection, adapter = match.groups()
        adapter = "shared" if adapter in (None, "_shared") else OFFICIAL_TASKS[adapter[1:]]
        lora = "lora_A" if direction == "down" else "lora_B"
        return f"language_model.{module}.{projection.lower()}_proj.{lora}.{adapter}.weight"
    match = re.match(r"llm\.(model\.layers\.\d+\.self_attn\.[qv]_proj)\.(weight|bias)$", key)
    if match:
        return f"language_model.{match.group(1)}.base_layer.{match.group(2)}"
    return "language_model." + key.removeprefix("llm.")


def _projector_key(key: str, layout: dict, rates: dict[str, list[int]]) -> str:
    modality, rest = key.split("_proj.", 1)
    parts = rest.split(".")
    if layout[modality]["per_rate"]:
        projector, (layer, leaf) = str(rates[modality][int(parts[0])]), parts[1:]
    else:
        projector, (layer, leaf) = "shared", parts
    name = {"0": "linear_1", "2": "linear_2", "3": "norm"}[layer]
    return f"{modality}_projectors.{projector}.{name}.{leaf}"


def convert_official_state_dict(
    state_dict: dict[str, torch.Tensor], layout: dict, rates: dict[str, list[int]]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map every official key to our saved layout; returns the new state dict and the dropped keys."""
    converted, dropped = {}, []
    video_state = {}
    for key, value in state_dict.items():
        if key in PROMPT_BUFFERS:
            dropped.append(key)  # recomputed from the tokenised prompts (checked against these buffers)
        elif key.startswith("audio_encoder."):
            converted[key] = value
        elif key.startswith("video_encoder."):
            video_state[key.removeprefix("video_encoder.")] = value
        elif key.startswith(("audio_proj.", "video_proj.")):
            converted[_projector_key(key, layout, rates)] = value
        elif key.startswith("llm."):
            converted[_llm_key(key)] = value
        else:
            raise ValueError(f"Unknown key in the official checkpoint: {key!r}.")
    if video_state:
        video = convert_avhubert_state_dict(video_state)
        converted.update({f"video_encoder.{key}": value for key, value in video.state_dict.items()})
        dropped += [f"video_encoder.{key}" for key in video.dropped_keys]
    return converted, dropped


def build_config(layout, state_dict, text_config, whisper_config, avhubert_config, tokenizer, args) -> OmniAVSRConfig:
    rates = {"audio": args.audio_rates, "video": args.video_rates}
    for modality in ("audio", "video"):
        if layout[modality] and layout[modality]["per_rate"] and layout[modality]["num_projectors"] != len(rates[modality]):
            raise ValueError(
                f"The checkpoint has {layout[modality]['num_projectors']} {modality} projectors but "
                f"--{modality}-rates gives {rates[modality]}: pass the rates it was trained with, in order."
            )
    encoder_sizes = {"audio": whisper_config.d_model, "video": avhubert_config.hidden_size if avhubert_config else None}
    present = [m for m in ("audio", "video") if layout[m]]
    first = layout[present[0]]
    compression = "avg_pool" if first["input_size"] == encoder_sizes[present[0]] else "stack"
    text_config.vocab_size = state_dict["llm.model.embed_tokens.weight"].shape[0]
    lora_scale = args.lora_alpha / args.lora_rank_factor
    config = OmniAVSRConfig(
        audio_config=whisper_config if layout["audio"] else None,
        video_config=avhubert_config if layout["video"] else None,
        text_config=text_config,
        audio_rates=rates["audio"],
        video_rates=rates["video"],
        compression=compression,
        projector_per_rate=first["per_rate"],
        projector_hidden_size=first["hidden_size"],
        projector_layer_norm=first["layer_norm"],
        lora_variant=layout["variant"],
        lora_rank=layout["lora_rank"],
        lora_alpha=lora_scale * layout["lora_rank"],
        video_lora_rank=layout["video_lora_rank"],
        video_lora_alpha=OFFICIAL_VIDEO_LORA_SCALE * layout["video_lora_rank"],
        task_weights=args.task_weights,
        task_prompts={"asr": args.prompt_asr, "vsr": args.prompt_vsr, "avsr": args.prompt_avsr},
    )
    config.set_token_ids(tokenizer)
    return config


def check_prompt_buffers(model: OmniAVSRForConditionalGeneration, state_dict: dict[str, torch.Tensor]) -> None:
    """The official prompt buffers are the frozen embeddings of the tokenised prompts: they must match ours."""
    embed = model.get_input_embeddings()
    for buffer, task in PROMPT_BUFFERS.items():
        if buffer not in state_dict:
            continue
        ours = embed(torch.tensor(model.config.prompt_token_ids[task]))[None]
        theirs = state_dict[buffer].to(ours.dtype)
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-5):
            raise ValueError(
                f"The checkpoint's {buffer} does not embed the prompt {model.config.task_prompts[task]!r} with this "
                "tokenizer; pass the prompts it was trained with (--prompt-asr/--prompt-vsr/--prompt-avsr) and its "
                "tokenizer."
            )


def _load_json_config(path: Path) -> dict:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"Config not found: {file}")
    return json.loads(file.read_text())


def _avhubert_model_cfg(path: Path) -> dict:
    if path.suffix in (".pt", ".pth"):
        cfg = load_fairseq_checkpoint(path)["cfg"]
    else:
        cfg = _load_json_config(path)
    return cfg.get("model", cfg)


def convert(args) -> OmniAVSRForConditionalGeneration:
    if args.output_dir is not None:
        prepare_output_dir(args.output_dir)
    state_dict = load_official_state_dict(args.checkpoints)
    source = ", ".join(map(str, args.checkpoints))
    check_finite_weights(state_dict, source)
    if "llm.model.embed_tokens.weight" not in state_dict:
        raise ValueError(
            f"{source}: no llm.model.embed_tokens.weight; expected the state dict of a whole official Omni-AVSR model "
            "(LLM, LoRA, projectors and encoders)."
        )
    layout = detect_layout(state_dict)
    print(f"Detected Omni-AVSR-{layout['variant']}: {json.dumps({k: layout[k] for k in ('audio', 'video')})}")
    llm_json = _load_json_config(args.llm_config)
    text_config = AutoConfig.for_model(**llm_json)
    whisper_config = WhisperConfig(**_load_json_config(args.whisper_config)) if layout["audio"] else None
    avhubert_config = avhubert_config_from_fairseq(_avhubert_model_cfg(args.avhubert_config)) if layout["video"] else None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if args.feature_extractor_config is None:
        feature_extractor = WhisperFeatureExtractor(feature_size=whisper_config.num_mel_bins if whisper_config else 80)
    elif args.feature_extractor_config.is_dir():
        feature_extractor = WhisperFeatureExtractor.from_pretrained(args.feature_extractor_config)
    else:
        feature_extractor = WhisperFeatureExtractor.from_json_file(args.feature_extractor_config)
    tokenizer = OmniAVSRProcessor.prepare_tokenizer(tokenizer)
    vocabulary = text_vocabulary_size(tokenizer)
    if vocabulary != state_dict["llm.model.embed_tokens.weight"].shape[0]:
        raise ValueError(
            f"The tokenizer has {vocabulary} tokens (with the Omni-AVSR markers) but the checkpoint's "
            f"embedding has {state_dict['llm.model.embed_tokens.weight'].shape[0]} rows: pass the tokenizer the "
            "checkpoint was trained with."
        )
    config = build_config(layout, state_dict, text_config, whisper_config, avhubert_config, tokenizer, args)
    processor = OmniAVSRProcessor.for_model(config, feature_extractor, tokenizer)
    converted, dropped = convert_official_state_dict(
        state_dict, layout, {"audio": config.audio_rates, "video": config.video_rates}
    )
    converted = rename_checkpoint_keys(converted)
    model = OmniAVSRForConditionalGeneration(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(f"Conversion does not cover the model: missing {missing[:10]}, unexpected {unexpected[:10]}.")
    for key, value in converted.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} != model shape {tuple(expected[key].shape)}.")
    load_converted_weights(model, {key: value.to(expected[key].dtype) for key, value in converted.items()}, source)
    check_prompt_buffers(model, state_dict)
    print(f"Mapped {len(converted)} tensors; dropped {len(dropped)} (prompt buffers, AV-HuBERT pre-training heads).")
    if args.output_dir is not None:
        model.to(getattr(torch, args.dtype)).save_pretrained(args.output_dir)
        processor.save_pretrained(args.output_dir)
        print(f"Saved to {args.output_dir}")
    return model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoint file(s) (merged in order), then OUTPUT_DIR")
    parser.add_argument("--llm-config", type=Path, required=True, help="the LLM's config.json or its folder")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder of the tokenizer used in training")
    parser.add_argument("--whisper-config", type=Path, required=True, help="Whisper config.json or its folder")
    parser.add_argument("--feature-extractor-config", type=Path, help="Whisper preprocessor_config.json or its folder")
    parser.add_argument(
        "--avhubert-config", type=Path, required=True,
        help="AV-HuBERT fairseq checkpoint (.pt, its cfg is read safely) or its cfg as JSON",
    )
    parser.add_argument("--audio-rates", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--video-rates", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--lora-rank-factor", type=float, default=32, help="official --rank (a reduction factor)")
    parser.add_argument("--lora-alpha", type=float, default=4, help="official --alpha (scale = alpha / rank factor)")
    parser.add_argument("--task-weights", type=float, nargs=3, default=[1.0, 1.5, 1.0])
    parser.add_argument("--prompt-asr", default="Transcribe speech to text.")
    parser.add_argument("--prompt-vsr", default="Transcribe video to text.")
    parser.add_argument("--prompt-avsr", default="Transcribe speech and video to text.")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.error("give at least one checkpoint file and the output folder")
    args.checkpoints, args.output_dir = args.paths[:-1], args.paths[-1]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        convert(args)
    except EXPECTED_ERRORS as error:
        return report_error(PROG, error, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
