"""Bad inputs at the entry points users call: the `omni-avsr` command, media loading, the processor, the model's
`generate` and loading, the pipelines, the corpus loaders, the checkpoint converters and writers, model cards and the
evaluation.

Each row of the table states the error: an exception type, or the exit status of a command (which must then print
exactly one error line, no traceback). The message must name the file or field and say what was expected, and every
file that existed before the call must be left as it was.
"""

import hashlib
import importlib.util
import json
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file
from test_cli import model_dir  # noqa: F401 (fixture)
from test_media import sine, write_clip, write_video
from test_training import REPO
from tiny_models import tiny_clips, tiny_config, tiny_model, tiny_processor, tiny_tokenizer
from transformers import WhisperFeatureExtractor, pipeline

from omni_avsr import (
    AudioVisualSpeechRecognitionPipeline,
    OmniAVSRConfig,
    OmniAVSRForConditionalGeneration,
    OmniAVSRProcessor,
)
from omni_avsr.cli import main as omni_avsr
from omni_avsr.command_line import run_script
from omni_avsr.convert.avhubert import main as convert_avhubert
from omni_avsr.convert.ctranslate2_whisper import main as convert_ctranslate2_whisper
from omni_avsr.convert.ctranslate2_whisper import read_ctranslate2_model
from omni_avsr.convert.fairseq_checkpoint import load_fairseq_checkpoint
from omni_avsr.convert.official import load_official_state_dict
from omni_avsr.convert.official import main as convert_official
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.data.mini_lrs import main as generate_mini_lrs
from omni_avsr.data.prepare_lrs import main as prepare_lrs_main
from omni_avsr.media import load_audio, load_clip
from omni_avsr.model_card import load_results
from omni_avsr.model_card import main as model_card
from omni_avsr.training.checkpoints import checkpoint_to_resume
from omni_avsr.training.evaluation import evaluate_wer, evaluation_cells


class Workspace:
    """A fresh folder per case with helpers that write the inputs it needs; `{root}` and `{model}` in a case's
    expected message stand for the folder and the tiny model."""

    def __init__(self, root: Path, model: Path):
        self.root, self.model = root, model

    def clip(self, name="clip", num_frames=15) -> Path:
        """`name.mp4` (mouth crops) and its sibling `name.wav`."""
        return write_clip(self.root, name, num_frames=num_frames)

    def file(self, name: str, content: str | bytes = "keep me\n") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def cut(self, name: str, source: Path, fraction: float = 0.25) -> Path:
        """A copy of `source` cut short, as by an interrupted copy or download."""
        data = source.read_bytes()
        return self.file(name, data[: int(len(data) * fraction)])

    def wav(self, name="speech.wav", seconds=1.0) -> Path:
        soundfile.write(self.root / name, sine(seconds), 16000)
        return self.root / name

    def model_copy(self, name: str) -> Path:
        return Path(shutil.copytree(self.model, self.root / name))

    def labels(self, text: str | bytes) -> Path:
        """A corpus with two 5-frame clips (`lrs3/spk/0.mp4`, `lrs3/spk/1.mp4`) and `labels/test.csv`."""
        (self.root / "lrs3" / "spk").mkdir(parents=True, exist_ok=True)
        for index in range(2):
            write_clip(self.root / "lrs3" / "spk", str(index), num_frames=5)
        return self.file("labels/test.csv", text)

    def results(self, rows) -> Path:
        return self.file("results.json", json.dumps(rows))

    def edited_model(self, name: str, **config) -> Path:
        """A copy of the tiny model whose config.json says `config` (e.g. other rates) about the same weights."""
        folder = self.model_copy(name)
        edited = {**json.loads((folder / "config.json").read_text()), **config}
        (folder / "config.json").write_text(json.dumps(edited))
        return folder

    def edited_processor(self, name: str, **settings) -> Path:
        folder = self.model_copy(name)
        edited = {**json.loads((folder / "processor_config.json").read_text()), **settings}
        (folder / "processor_config.json").write_text(json.dumps(edited))
        return folder

    def nan_model(self, name: str, weight: str) -> Path:
        """A copy of the tiny model with NaN in one weight, as a diverged training run saves it."""
        folder = self.model_copy(name)
        weights = load_file(folder / "model.safetensors")
        weights[weight][0] = float("nan")
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        return folder

    def silent_wav(self, name: str = "silence.wav") -> Path:
        """A second of digital silence (every sample zero), as a muted recorder writes."""
        soundfile.write(self.root / name, np.zeros(16000, np.float32), 16000)
        return self.root / name

    def ctranslate2_model(self, name: str, variables: dict[str, np.ndarray]) -> Path:
        """A folder `name` holding a CTranslate2 `model.bin` of `variables`."""
        (self.root / name).mkdir()
        write_ctranslate2_model(self.root / name / "model.bin", variables)
        return self.root / name

    def fairseq_avhubert(self, name: str, layer_norm_weight: torch.Tensor) -> Path:
        """A fairseq AV-HuBERT checkpoint of a small config whose state dict holds only the final LayerNorm."""
        config = {"_name": "av_hubert", "encoder_embed_dim": 32, "encoder_layers": 1, "encoder_attention_heads": 2,
                  "encoder_ffn_embed_dim": 64, "conv_pos": 16, "conv_pos_groups": 4, "layer_norm_first": True}
        state_dict = {"encoder.layer_norm.weight": layer_norm_weight, "encoder.layer_norm.bias": torch.zeros(32)}
        torch.save({"cfg": {"model": config}, "model": state_dict}, self.root / name)
        return self.root / name

    def nan_wav(self, name: str = "nan.wav") -> Path:
        samples = sine(1.0)
        samples[100] = np.nan
        soundfile.write(self.root / name, samples, 16000, subtype="FLOAT")
        return self.root / name


def write_ctranslate2_model(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A CTranslate2 `model.bin` (binary version 6, the layout `read_ctranslate2_model` reads) of float32 and int32
    `variables`, without aliases."""

    def string(text: str) -> bytes:
        data = text.encode() + b"\0"
        return struct.pack("<H", len(data)) + data

    data = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for key, array in variables.items():
        data += string(key) + struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape)
        data += struct.pack("<BI", {"float32": 0, "int32": 3}[array.dtype.name], array.nbytes) + array.tobytes()
    path.write_bytes(data + struct.pack("<I", 0))


@dataclass(frozen=True)
class Case:
    prepare: Callable[[Workspace], Callable[[], object]]  # writes the inputs, returns the call to make
    error: type[BaseException] | int  # the exception raised, or the exit status of a command
    says: tuple[str, ...]  # in the message: the file or field, and what was expected


def transcribe(ws: Workspace, *argv, model=None):
    return partial(omni_avsr, ["transcribe", *map(str, argv), "--model", str(model or ws.model)])


LORA_KEY = "llm.model.layers.0.self_attn.lora_down_Q.weight"


def convert_official_checkpoint(ws: Workspace, name: str, state_dict: dict[str, torch.Tensor]):
    """The official converter on a safetensors checkpoint of `state_dict` (the other files it needs are never read)."""
    save_file(state_dict, ws.root / name)
    return partial(convert_official, [str(ws.root / name), str(ws.root / "OUT"), "--llm-config", "x", "--tokenizer",
                                      "x", "--whisper-config", "x", "--avhubert-config", "x"])


def crop(source: Path, output: Path):
    return partial(omni_avsr, ["crop", str(source), str(output)])


def prepare_lrs(ws: Workspace, *argv):
    """`prepare_lrs` on a raw tree of one (mouth-sized) clip, `ROOT/raw/test/spk1/00001.mp4`, with `argv` added."""
    (ws.root / "raw" / "test" / "spk1").mkdir(parents=True)
    write_video(ws.root / "raw" / "test" / "spk1" / "00001.mp4", num_frames=15)
    command = ["--data-dir", ws.root / "raw", "--dataset", "lrs3", "--subset", "test", "--no-progress", *argv]
    return partial(prepare_lrs_main, list(map(str, command)))


@cache
def _script_module(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_script(name: str, *argv):
    """`python NAME ARGV...` as its `__main__` runs it, in this process (a recipe of `--report_to none`)."""
    main = _script_module(name).main

    def call():
        with mock.patch.object(sys, "argv", [name, *map(str, argv), "--report_to", "none"]):
            return run_script(main, name)

    return call


ROW = {"task": "asr", "audio_rate": 4, "video_rate": None, "snr_db": None, "wer": 7.7, "num_words": 120}
RECORD = {
    "corpus": "mini_lrs", "data_root": "/data/mini_lrs", "labels": "mini_lrs_test.csv", "split": "test",
    "num_clips": 20, "model": "m", "decoding": {"max_new_tokens": 16, "num_beams": 1}, "noise": None,
}


def _cut_checkpoint(ws: Workspace) -> Path:
    folder = ws.root / "run" / "checkpoint-4"
    folder.mkdir(parents=True)
    save_file({"weight": torch.zeros(64, 64)}, folder / "model.safetensors")
    ws.cut("run/checkpoint-4/model.safetensors", folder / "model.safetensors", 0.5)

    class Arguments:
        output_dir, resume_from_checkpoint = ws.root / "run", str(folder)

    return Arguments


def _model_without(ws: Workspace, name: str, file: str) -> Path:
    folder = ws.model_copy(name)
    (folder / file).unlink()
    return folder


def _model_with_cut_weights(ws: Workspace) -> Path:
    folder = ws.model_copy("cut-model")
    ws.cut("cut-model/model.safetensors", folder / "model.safetensors", 0.5)
    return folder


def _evaluate_into_other_results(ws: Workspace):
    ws.results([{**ROW, "measured_on": RECORD}])
    processor = tiny_processor()
    model = tiny_model(processor)
    other = {**RECORD, "num_clips": 200}
    return partial(evaluate_wer, model, processor, [], evaluation_cells(model.config), output_dir=ws.root, measured_on=other)


@cache
def _omni():
    """The tiny model and its processor, shared by the processor, generate and pipeline rows (none changes them)."""
    processor = tiny_processor()
    return tiny_model(processor).eval(), processor


def _processor_settings(**settings):
    return partial(OmniAVSRProcessor, WhisperFeatureExtractor(feature_size=80), tiny_tokenizer(), **settings)


def _waveforms(bad_value=None, seconds=None):
    """Two waveforms; with `bad_value`, one sample of the second is it."""
    audio, _ = tiny_clips(2)
    if seconds is not None:
        audio[1] = np.zeros(int(seconds * 16000), np.float32)
    if bad_value is not None:
        audio[1] = audio[1].copy()
        audio[1][7] = bad_value
    return audio


def _process(**call):
    return partial(_omni()[1], **call)


def _generate(task="avsr", model=None, **changes):
    """`model.generate` on the processor's batch of two clips with `changes` (tensors or options; None drops one)."""
    model = model or _omni()[0]
    audio, videos = tiny_clips(2)
    inputs = {**_omni()[1](audio=audio, videos=videos, sampling_rate=16000, task=task), **changes}
    return partial(model.generate, **{name: value for name, value in inputs.items() if value is not None},
                   max_new_tokens=2)


def _batch(task="avsr"):
    audio, videos = tiny_clips(2)
    return _omni()[1](audio=audio, videos=videos, sampling_rate=16000, task=task)


def _with_value(name: str, value, task="avsr"):
    """The batch's `name` tensor with one element set to `value`."""
    tensor = _batch(task)[name].clone()
    tensor.view(-1)[3] = value
    return tensor


def _with_empty_mask(name: str, task="avsr"):
    """The batch's `name` mask with the second clip's row all zeros."""
    mask = _batch(task)[name].clone()
    mask[1] = 0
    return mask


@cache
def _model_with_marker_id(token_id: int):
    """The tiny model with its config's `<video>` id set to `token_id` (a config edited, or of another tokenizer)."""
    model = tiny_model(_omni()[1]).eval()
    model.config.video_start_token_id = token_id
    return model


def _with_id(token_id: int):
    input_ids = _batch("asr")["input_ids"].clone()
    input_ids[0, -1] = token_id
    return input_ids


@cache
def _model_without_token_ids():
    """A model whose config never got its token ids (`set_token_ids` not called)."""
    config = tiny_config(_omni()[1]).to_dict()
    for name in ("audio_token_id", "video_token_id", "pad_token_id", "eos_token_id", "prompt_token_ids"):
        config[name] = None
    return OmniAVSRForConditionalGeneration(OmniAVSRConfig(**config)).eval()


def _model_with_nan(weight: str):
    processor = _omni()[1]
    model = tiny_model(processor).eval()
    with torch.no_grad():
        model.get_parameter(weight).view(-1)[0] = float("nan")
    return model


def _pipeline(task="audio-visual-speech-recognition", model=None):
    model, processor = (model, None) if model is not None else _omni()
    return pipeline(task, model=model, processor=processor)


def _transcribe_input(task, inputs, **options):
    return partial(_pipeline(task), inputs, **options)


def _clip_dict(**entries):
    audio, videos = tiny_clips(1)
    return {"audio": audio[0], "sampling_rate": 16000, "frames": videos[0], **entries}


SPEECH, AUDIO_VISUAL = "automatic-speech-recognition", "audio-visual-speech-recognition"
NO_COVER = "its weights do not cover the model its config.json describes"

CASES = {
    # The `omni-avsr transcribe` command: one error line, a non-zero exit status, the inputs untouched.
    "cli: --output is the input": Case(
        lambda ws: transcribe(ws, ws.clip(), "--output", ws.root / "clip.mp4"), 1,
        ("--output {root}/clip.mp4 is one of the input files", "expected a results file that no input reads"),
    ),
    "cli: --output is the video's sibling .wav": Case(
        lambda ws: transcribe(ws, ws.clip(), "--output", ws.root / "clip.wav"), 1,
        ("--output {root}/clip.wav is the sibling .wav the input {root}/clip.mp4 takes its audio from",),
    ),
    "cli: --output is not a results file": Case(
        lambda ws: transcribe(ws, ws.clip(), "--output", ws.file("notes.txt")), 1,
        ("--output {root}/notes.txt exists and is not a results file", "line 1", "expected a new file or an earlier"),
    ),
    "cli: --output is a folder": Case(
        lambda ws: transcribe(ws, ws.clip(), "--output", ws.root), 1, ("--output {root} is a folder; expected a file",),
    ),
    "cli: --output in a missing folder": Case(
        lambda ws: transcribe(ws, ws.clip(), "--output", ws.root / "nowhere" / "r.jsonl"), 1,
        ("--output {root}/nowhere/r.jsonl does not exist: {root}/nowhere",),
    ),
    "cli: a folder as a media file": Case(
        lambda ws: transcribe(ws, ws.root), 1, ("{root} is a folder; expected a media file",),
    ),
    "cli: a missing media file": Case(
        lambda ws: transcribe(ws, ws.root / "absent.mp4"), 1, ("Media file not found: {root}/absent.mp4",),
    ),
    "cli: an undecodable media file": Case(
        lambda ws: transcribe(ws, ws.cut("broken.mp4", ws.clip(), 0.3)), 1,
        ("{root}/broken.mp4", "Could not read {root}/broken.mp4 as a media file"),
    ),
    "cli: a WAV cut mid-stream": Case(
        lambda ws: transcribe(ws, ws.cut("cut.wav", ws.wav())), 1,
        ("{root}/cut.wav is truncated", "header announces"),
    ),
    "cli: a long silent video of frames too small to be mouth crops": Case(
        lambda ws: transcribe(ws, write_video(ws.root / "long.mp4", num_frames=800, size=16)), 1,
        ("{root}/long.mp4 from 0.00 s to 16.00 s frames are 16×16", "expected mouth crops of at least 88×88"),
    ),
    "cli: --device that is no device name": Case(
        lambda ws: transcribe(ws, ws.clip(), "--device", "gpu"), 1,
        ("--device 'gpu' is not a device name", "expected cpu, cuda, cuda:N"),
    ),
    "cli: --device this machine lacks": Case(
        lambda ws: transcribe(ws, ws.clip(), "--device", "cuda:97"), 1, ("--device cuda:97: this machine has",),
    ),
    "cli: --num-beams 0": Case(
        lambda ws: transcribe(ws, ws.clip(), "--num-beams", "0"), 2,
        ("argument --num-beams", "expected a whole number ≥ 1"),
    ),
    "cli: --batch-size -1": Case(
        lambda ws: transcribe(ws, ws.clip(), "--batch-size", "-1"), 2,
        ("argument --batch-size", "expected a whole number ≥ 1"),
    ),
    "cli: --max-new-tokens 1.5": Case(
        lambda ws: transcribe(ws, ws.clip(), "--max-new-tokens", "1.5"), 2,
        ("argument --max-new-tokens", "invalid int value: '1.5' (expected a whole number ≥ 1)"),
    ),
    "cli: a model folder that does not exist": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.root / "no-model"), 1,
        ("Model folder not found: {root}/no-model", "expected a folder with config.json"),
    ),
    "cli: model weights cut short": Case(
        lambda ws: transcribe(ws, ws.clip(), model=_model_with_cut_weights(ws)), 1,
        ("{root}/cut-model: the model weights cannot be read", "expected complete .safetensors files"),
    ),
    "cli: a model folder without tokenizer.json": Case(
        lambda ws: transcribe(ws, ws.clip(), model=_model_without(ws, "no-tokenizer", "tokenizer.json")), 1,
        ("{root}/no-tokenizer: the processor cannot be loaded (the folder has no tokenizer.json)",
         "expected the processor and tokenizer files"),
    ),
    "cli: a model folder without config.json": Case(
        lambda ws: transcribe(ws, ws.clip(), model=_model_without(ws, "no-config", "config.json")), 1,
        ("{root}/no-config", "config.json"),
    ),
    "cli: a model folder whose config lists other rates than its weights": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_model("other-rates", audio_rates=[4, 8])), 1,
        (f"{{root}}/other-rates: {NO_COVER}", "4 missing (model.audio_projectors.8.linear_1.bias",
         "4 unexpected (model.audio_projectors.16.linear_1.bias", "Expected the config.json saved with these weights"),
    ),
    "cli: a model folder whose config gives one projector for all rates": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_model("shared", projector_per_rate=False)), 1,
        (f"{{root}}/shared: {NO_COVER}", "8 missing (model.audio_projectors.shared.linear_1.bias", "16 unexpected"),
    ),
    "cli: a model folder whose projectors are of another width": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_model("width", projector_hidden_size=40)), 1,
        ("{root}/width: 12 weights do not have the shape its config.json gives them",
         "model.audio_projectors.16.linear_1.bias (checkpoint (48,), model (40,))"),
    ),
    "cli: a model folder with NaN weights": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.nan_model("nan", "model.language_model.norm.weight")), 1,
        ("{root}/clip.mp4: The model's logits are NaN or infinite",
         "the weights model.language_model.norm.weight hold NaN", "expected a checkpoint with finite weights"),
    ),
    "cli: processor_config.json with video_std 0": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_processor("std0", video_std=0)), 1,
        ("{root}/std0: the processor cannot be loaded", "video_std must be a finite number above 0", "got 0"),
    ),
    "cli: a WAV holding a NaN sample": Case(
        lambda ws: transcribe(ws, ws.nan_wav()), 1,
        ("{root}/nan.wav: {root}/nan.wav holds 1 NaN or infinite value(s)", "expected finite numbers"),
    ),
    "cli: a WAV of digital silence": Case(
        lambda ws: transcribe(ws, ws.silent_wav()), 1,
        ("{root}/silence.wav: {root}/silence.wav is digital silence (every sample is zero)", "task='asr'"),
    ),
    "cli: a processor that lists other rates than its model": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_processor("rates", audio_rates=[4, 8])), 1,
        ("{root}/rates: its processor (processor_config.json and tokenizer) and its model (config.json) disagree: "
         "audio rates [4, 8] (processor) vs [4, 16] (model)", "Expected the processor saved with this model"),
    ),
    "cli: a processor that lists other tasks than its model": Case(
        lambda ws: transcribe(ws, ws.clip(), model=ws.edited_processor("tasks", tasks=["asr"])), 1,
        ("{root}/tasks: its processor", "tasks ['asr'] (processor) vs ['asr', 'vsr', 'avsr'] (model)"),
    ),
    # The `omni-avsr crop` command: OUT and its .wav are checked against the input before any cropping.
    "crop: OUT whose .wav is the input's own audio": Case(
        lambda ws: crop(ws.clip(), ws.root / "clip.mkv"), 1,
        ("OUT {root}/clip.mkv would overwrite the input's audio {root}/clip.wav",
         "expected an output path whose video and .wav are neither the input nor its audio"),
    ),
    "crop: OUT is the input": Case(
        lambda ws: crop(ws.clip(), ws.root / "clip.mp4"), 1, ("OUT {root}/clip.mp4 would overwrite the input",),
    ),
    "crop: OUT named as audio": Case(
        lambda ws: crop(ws.clip(), ws.root / "mouth.wav"), 1,
        ("OUT {root}/mouth.wav is an audio file name; expected a video path (.mp4)",),
    ),
    "crop: OUT is a folder": Case(
        lambda ws: crop(ws.clip(), ws.root), 1, ("OUT {root} is a folder; expected a video file path (.mp4)",),
    ),
    "crop: OUT inside a file": Case(
        lambda ws: crop(ws.clip(), ws.file("notes.txt") / "mouth.mp4"), 1,
        ("OUT {root}/notes.txt/mouth.mp4 cannot be written: {root}/notes.txt is a file; expected a folder",),
    ),
    "crop: a WAV as the input": Case(
        lambda ws: crop(ws.wav(), ws.root / "mouth.mp4"), 1,
        ("{root}/speech.wav is an audio file; expected a face video",),
    ),
    "crop: a folder as the input": Case(
        lambda ws: crop(ws.root, ws.root / "mouth.mp4"), 1, ("{root} is a folder; expected a media file",),
    ),
    # The processor.
    "processor: a NaN sample": Case(
        lambda ws: _process(audio=_waveforms(np.nan), sampling_rate=16000), ValueError,
        ("audio[1] holds 1 NaN or infinite value(s)", "expected finite numbers"),
    ),
    "processor: an infinite sample": Case(
        lambda ws: _process(audio=_waveforms(-np.inf), sampling_rate=16000, task="asr"), ValueError,
        ("audio[1] holds 1 NaN or infinite value(s)", "expected finite numbers"),
    ),
    "processor: a float64 sample past float32's range": Case(
        lambda ws: _process(audio=[_waveforms()[0].astype(np.float64) * 1e300], sampling_rate=16000), ValueError,
        ("audio[0] holds", "NaN or infinite value(s)"),
    ),
    "processor: frames given as floats": Case(
        lambda ws: _process(videos=[np.full((5, 96, 96), np.nan, np.float32)]), ValueError,
        ("videos[0] has dtype float32; expected uint8 frames",),
    ),
    "processor: video_std=0": Case(
        lambda ws: _processor_settings(video_std=0), ValueError,
        ("video_std must be a finite number above 0", "got 0"),
    ),
    "processor: a negative video_std": Case(
        lambda ws: _processor_settings(video_std=-0.165), ValueError, ("video_std must be a finite number above 0",),
    ),
    "processor: a NaN video_mean": Case(
        lambda ws: _processor_settings(video_mean=float("nan")), ValueError,
        ("video_mean must be a number in [0, 1]", "got nan"),
    ),
    "processor: a negative video_mean": Case(
        lambda ws: _processor_settings(video_mean=-0.4), ValueError,
        ("video_mean must be a number in [0, 1]", "got -0.4"),
    ),
    "processor: sampling_rate as a string": Case(
        lambda ws: _process(audio=_waveforms(), sampling_rate="16000"), ValueError,
        ("sampling_rate must be a whole number of Hz above 0", "got '16000'"),
    ),
    "processor: sampling_rate 0": Case(
        lambda ws: _process(audio=_waveforms(), sampling_rate=0, resample=True), ValueError,
        ("sampling_rate must be a whole number of Hz above 0", "got 0"),
    ),
    "processor: an empty audio list": Case(
        lambda ws: _process(audio=[], sampling_rate=16000, task="asr"), ValueError,
        ("`audio` is an empty list; expected at least one clip",),
    ),
    "processor: an empty videos list": Case(
        lambda ws: _process(videos=[]), ValueError, ("`videos` is an empty list; expected at least one clip",),
    ),
    "processor: a waveform longer than the window": Case(
        lambda ws: _process(audio=_waveforms(seconds=31.0), sampling_rate=16000), ValueError,
        ("audio[1] lasts 31.00 s", "clips of up to 30 s"),
    ),
    "processor: frames longer than the window": Case(
        lambda ws: _process(videos=[np.zeros((751, 96, 96), np.uint8)]), ValueError,
        ("videos[0] lasts 30.04 s", "clips of up to 30 s"),
    ),
    "processor: one audio sample": Case(
        lambda ws: _process(audio=[np.ones(1, np.float32)], sampling_rate=16000), ValueError,
        ("audio[0] lasts 6.25e-05 s (1 sample(s)); expected a clip of at least 0.1 s",),
    ),
    "processor: a one-frame video": Case(
        lambda ws: _process(videos=[np.zeros((1, 96, 96), np.uint8)]), ValueError,
        ("videos[0] lasts 0.04 s (1 frame(s)); expected a clip of at least 0.1 s",),
    ),
    "processor: digital silence to transcribe from audio alone": Case(
        lambda ws: _process(audio=[np.zeros(16000, np.float32)], sampling_rate=16000, task="asr"), ValueError,
        ("audio[0] is digital silence (every sample is zero): nothing to transcribe with task='asr'",),
    ),
    "processor: text the tokenizer cannot represent": Case(
        lambda ws: _process(text=["fine", "Ça va"]), ValueError,
        ("text[1] ('Ça va') has characters this tokenizer cannot represent: 'Ç'; they would become <unk>",),
    ),
    # The model: generate and from_pretrained.
    "generate: NaN in input_features": Case(
        lambda ws: _generate(task="asr", input_features=_with_value("input_features", float("nan"), "asr")), ValueError,
        ("input_features holds 1 NaN or infinite value(s)", "expected finite numbers"),
    ),
    "generate: inf in pixel_values_videos": Case(
        lambda ws: _generate(pixel_values_videos=_with_value("pixel_values_videos", float("inf"))), ValueError,
        ("pixel_values_videos holds 1 NaN or infinite value(s)",),
    ),
    "generate: NaN weights": Case(
        lambda ws: _generate(model=_model_with_nan("model.audio_projectors.4.linear_1.weight")), ValueError,
        ("The model's logits are NaN or infinite", "the weights model.audio_projectors.4.linear_1.weight hold NaN"),
    ),
    "generate: num_beams=0": Case(
        lambda ws: _generate(num_beams=0), ValueError, ("num_beams must be a whole number ≥ 1, got 0",),
    ),
    "generate: num_beams=2.0": Case(
        lambda ws: _generate(num_beams=2.0), ValueError, ("num_beams must be a whole number ≥ 1, got 2.0",),
    ),
    "generate: num_return_sequences=-1": Case(
        lambda ws: _generate(num_return_sequences=-1), ValueError,
        ("num_return_sequences must be a whole number ≥ 1, got -1",),
    ),
    "generate: input_features_mask of another batch": Case(
        lambda ws: _generate(task="asr", input_features_mask=_batch("asr")["input_features_mask"][:1]), ValueError,
        ("input_features_mask has shape (1, 3000); expected (2, 3000)",),
    ),
    "generate: video_mask of another batch": Case(
        lambda ws: _generate(video_mask=_batch()["video_mask"][:1]), ValueError,
        ("video_mask has shape (1, 40); expected (2, 40)",),
    ),
    "generate: attention_mask of another batch": Case(
        lambda ws: _generate(attention_mask=_batch()["attention_mask"][:1]), ValueError,
        ("attention_mask has shape (1, ", "one entry per token of input_ids"),
    ),
    "generate: input_ids of another batch than the media": Case(
        lambda ws: _generate(input_ids=_batch()["input_ids"][:1], attention_mask=_batch()["attention_mask"][:1]),
        ValueError, ("input_features holds 2 clip(s) but input_ids has 1 row(s)", "expected one row per clip"),
    ),
    "generate: an empty batch of media": Case(
        lambda ws: partial(_omni()[0].generate, input_features=torch.zeros(0, 80, 3000),
                           input_features_mask=torch.zeros(0, 3000, dtype=torch.long), task="asr"), ValueError,
        ("input_features is an empty batch (0 clips); expected at least one clip",),
    ),
    "generate: an id past the vocabulary": Case(
        lambda ws: _generate(task="asr", input_ids=_with_id(10_000)), ValueError,
        ("is 10000: outside the language model's vocabulary (0 to 38)", "expected the ids this model's processor"),
    ),
    "generate: a negative id": Case(
        lambda ws: _generate(task="asr", input_ids=_with_id(-100)), ValueError,
        ("is -100: outside the language model's vocabulary",),
    ),
    "generate: features of another number of mel bins": Case(
        lambda ws: _generate(task="asr", input_features=torch.zeros(2, 128, 3000)), ValueError,
        ("input_features has 128 mel bins; this model's audio encoder reads 80",),
    ),
    "generate: a video_mask that marks no frame of a clip": Case(
        lambda ws: _generate(video_mask=_with_empty_mask("video_mask")), ValueError,
        ("video_mask marks no frame of clip(s) [1]; expected at least one frame per clip",),
    ),
    "generate: an input_features_mask that marks no frame of a clip": Case(
        lambda ws: _generate(task="asr", input_features_mask=_with_empty_mask("input_features_mask", "asr")),
        ValueError, ("input_features_mask marks no frame of clip(s) [1]",),
    ),
    "generate: a marker id outside the vocabulary": Case(
        lambda ws: _generate(model=_model_with_marker_id(10_000)), ValueError,
        ("OmniAVSRConfig: video_start_token_id 10000 outside the language model's vocabulary (0 to 38)",),
    ),
    "generate: a config without token ids": Case(
        lambda ws: _generate(model=_model_without_token_ids()), ValueError,
        ("OmniAVSRConfig has no audio_token_id", "call config.set_token_ids(processor.tokenizer)"),
    ),
    "forward: a config without token ids": Case(
        lambda ws: partial(_model_without_token_ids(), **_batch()), ValueError,
        ("OmniAVSRConfig has no audio_token_id", "call config.set_token_ids(processor.tokenizer)"),
    ),
    "forward: a marker id outside the vocabulary": Case(
        lambda ws: partial(_model_with_marker_id(10_000), **_batch()), ValueError,
        ("OmniAVSRConfig: video_start_token_id 10000 outside the language model's vocabulary",),
    ),
    "from_pretrained: projectors of another width than the weights": Case(  # transformers' own refusal
        lambda ws: partial(OmniAVSRForConditionalGeneration.from_pretrained,
                           ws.edited_model("width", projector_hidden_size=40)), RuntimeError,
        ("You set `ignore_mismatched_sizes` to `False`, thus raising an error",),
    ),
    # The pipelines.
    "pipeline: a folder as a media file": Case(
        lambda ws: _transcribe_input(AUDIO_VISUAL, str(ws.root)), IsADirectoryError,
        ("{root} is a folder; expected a media file",),
    ),
    "pipeline: a segment length past the window": Case(
        lambda ws: _transcribe_input(SPEECH, str(ws.wav("long.wav", seconds=31.5)), chunk_length_s=45), ValueError,
        ("chunk_length_s=45: expected a length in seconds from 1 to 30", "the longest clip the model reads"),
    ),
    "pipeline: NaN in a dict's audio": Case(
        lambda ws: _transcribe_input(AUDIO_VISUAL, _clip_dict(audio=_waveforms(np.nan)[1][:25600])), ValueError,
        ("the input dict's 'audio' holds 1 NaN or infinite value(s)",),
    ),
    "pipeline: sampling_rate as a string": Case(
        lambda ws: _transcribe_input(SPEECH, {"raw": _waveforms()[0], "sampling_rate": "16000"}), ValueError,
        ("sampling_rate must be a whole number of Hz above 0", "got '16000'"),
    ),
    "pipeline: num_beams=0": Case(
        lambda ws: _transcribe_input(AUDIO_VISUAL, _clip_dict(), num_beams=0), ValueError,
        ("num_beams must be a whole number ≥ 1, got 0",),
    ),
    "pipeline: an empty list": Case(
        lambda ws: _transcribe_input(AUDIO_VISUAL, []), ValueError,
        ("The pipeline got an empty list of inputs; expected at least one",),
    ),
    "pipeline: a processor of another number of mel bins": Case(
        lambda ws: partial(AudioVisualSpeechRecognitionPipeline, model=_omni()[0],
                           processor=OmniAVSRProcessor(WhisperFeatureExtractor(feature_size=128), tiny_tokenizer())),
        ValueError,
        ("128 mel bins (processor) vs 80 (audio encoder)",),
    ),
    "pipeline: one audio sample": Case(
        lambda ws: _transcribe_input(SPEECH, {"raw": np.ones(1, np.float32), "sampling_rate": 16000}), ValueError,
        ("the input dict's 'raw' lasts 6.25e-05 s (1 sample(s)); expected a clip of at least 0.1 s",),
    ),
    "pipeline: digital silence to the speech-recognition pipeline": Case(
        lambda ws: _transcribe_input(SPEECH, np.zeros(16000, np.float32)), ValueError,
        ("the input waveform is digital silence",),
    ),
    "pipeline: a one-frame video": Case(
        lambda ws: _transcribe_input(AUDIO_VISUAL, {"frames": np.zeros((1, 96, 96), np.uint8)}), ValueError,
        ("the input dict's 'frames' lasts 0.04 s (1 frame(s))",),
    ),
    "pipeline: a model folder whose config lists other rates": Case(
        lambda ws: partial(pipeline, SPEECH, model=str(ws.edited_model("other-rates", audio_rates=[16, 8]))),
        ValueError,
        (f"{{root}}/other-rates: {NO_COVER}", "4 missing (model.audio_projectors.8.", "(model.audio_projectors.4."),
    ),
    "pipeline: a model folder of another LoRA variant": Case(
        lambda ws: partial(pipeline, AUDIO_VISUAL, model=str(ws.edited_model("variant", lora_variant="T"))), ValueError,
        (f"{{root}}/variant: {NO_COVER}", "8 unexpected (model.language_model.layers.0.self_attn.q_proj.lora_A.shared"),
    ),
    "pipeline: a model folder whose video encoder has no LoRA": Case(
        lambda ws: partial(pipeline, AUDIO_VISUAL, model=str(ws.edited_model("no-video-lora", video_lora_rank=0))),
        ValueError, (f"{{root}}/no-video-lora: {NO_COVER}", "q_proj.base_layer.bias"),
    ),
    # Media loading.
    "media: a folder": Case(lambda ws: partial(load_clip, ws.root), IsADirectoryError, ("{root} is a folder; expected a media file",)),
    "media: a WAV cut mid-stream": Case(
        lambda ws: partial(load_audio, ws.cut("cut.wav", ws.wav(seconds=2.0))), ValueError,
        ("{root}/cut.wav is truncated: its header announces 64000 bytes of audio", "re-export it"),
    ),
    "media: a silent video longer than the window": Case(
        lambda ws: partial(load_clip, write_video(ws.root / "long.mp4", num_frames=800, size=16), audio=False), ValueError,
        ("{root}/long.mp4 lasts 32.00 s", "clips of up to 30 s", "Longer recordings go through the long-form path"),
    ),
    "media: an audio file longer than the window": Case(
        lambda ws: partial(load_clip, ws.wav("long.wav", seconds=31.5)), ValueError,
        ("{root}/long.wav lasts 31.50 s", "clips of up to 30 s"),
    ),
    "media: a sibling .wav far longer than its video": Case(
        lambda ws: partial(load_clip, write_clip(ws.root, "clip", num_frames=15, audio_seconds=40.0)), ValueError,
        ("{root}/clip.wav lasts 40.00 s", "clips of up to 30 s"),
    ),
    # Corpus loaders.
    "labels: an unterminated quote": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels('lrs3,spk/0.mp4,5,1,"first\nlrs3,spk/1.mp4,5,1,second\n')),
        ValueError, ("{root}/labels/test.csv, line 1", "a quoted text closed on its own line"),
    ),
    "labels: a quoted text over two lines": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels('lrs3,spk/0.mp4,5,1,"first\nclip"\nlrs3,spk/1.mp4,5,1,b\n')),
        ValueError, ("{root}/labels/test.csv, line 1: a quoted field runs over 2 lines", "expected one clip per line"),
    ),
    "labels: not UTF-8": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels("lrs3,spk/0.mp4,5,1,ok\nlrs3,spk/1.mp4,5,1,café\n".encode("latin-1"))),
        ValueError, ("{root}/labels/test.csv, line 2: not UTF-8 text (byte 0xe9)", "label files must be UTF-8"),
    ),
    "labels: too few fields": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels("lrs3,spk/0.mp4,5\n")), ValueError,
        ("{root}/labels/test.csv, line 1: expected 5 comma-separated fields", "got 3"),
    ),
    "labels: an empty transcript": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels("lrs3,spk/0.mp4,5,1,ok\nlrs3,spk/1.mp4,5,1,  \n")),
        ValueError, ("{root}/labels/test.csv, line 2: the transcript is empty; expected the words spoken",),
    ),
    "labels: a NUL in a transcript": Case(
        lambda ws: partial(load_lrs_dataset, ws.root, ws.labels("lrs3,spk/0.mp4,5,1,o\x00k\nlrs3,spk/1.mp4,5,1,b\n")),
        ValueError, ("{root}/labels/test.csv, line 1: the transcript holds control characters (U+0000)",),
    ),
    "training: resuming from a checkpoint cut short": Case(
        lambda ws: partial(checkpoint_to_resume, _cut_checkpoint(ws)), ValueError,
        ("--resume_from_checkpoint {root}/run/checkpoint-4: cannot resume", "trainer_state.json",
         "expected a complete checkpoint-N folder"),
    ),
    # The training scripts, run as `python run_*.py ...`: one error line, before any work.
    "training script: no --data_root": Case(
        lambda ws: training_script("run_speech_recognition.py", "--output_dir", ws.root / "run"), 1,
        ("--data_root is required",),
    ),
    "training script: --output_dir is a file": Case(
        lambda ws: training_script("run_speech_recognition.py", "--data_root", ws.root, "--output_dir", ws.file("OUT")),
        1, ("--output_dir {root}/OUT is a file; expected a folder",),
    ),
    "training script: --train_tasks outside --tasks": Case(
        lambda ws: training_script("run_speech_recognition.py", "--data_root", ws.root, "--output_dir", ws.root / "run",
                                   "--do_train", "--language_model", "lm.json", "--audio_encoder", "whisper.json",
                                   "--video_encoder", "avhubert.json", "--tasks", "asr", "vsr",
                                   "--train_tasks", "avsr"),
        1, ("--train_tasks ['avsr']: ['avsr'] not among the model's tasks ['asr', 'vsr'] (from --tasks)",),
    ),
    "training script: a transcript the tokenizer cannot represent": Case(
        lambda ws: training_script("run_speech_recognition.py", "--model_name_or_path", ws.model,
                                   "--data_root", ws.root,
                                   "--train_labels", ws.labels("lrs3,spk/0.mp4,5,1,ok\nlrs3,spk/1.mp4,5,1,BIN\n"),
                                   "--do_train", "--output_dir", ws.root / "run"), 1,
        ("{root}/labels/test.csv, line 2 ('BIN') has characters this tokenizer cannot represent: 'B', 'I', 'N'",
         "--lowercase_text"),
    ),
    "lip-reading script: --output_dir is a file": Case(
        lambda ws: training_script("run_lip_reading_ctc.py", "--data_root", ws.root, "--output_dir", ws.file("OUT")),
        1, ("--output_dir {root}/OUT is a file; expected a folder",),
    ),
    # LRS preparation.
    "prepare_lrs: --output-dir is a file": Case(
        lambda ws: prepare_lrs(ws, "--output-dir", ws.file("OUT")), 1,
        ("--output-dir {root}/OUT is a file; expected a folder",),
    ),
    "prepare_lrs: --output-dir inside a file": Case(
        lambda ws: prepare_lrs(ws, "--output-dir", ws.file("OUT") / "prepared"), 1,
        ("Cannot create the --output-dir {root}/OUT/prepared",),
    ),
    "prepare_lrs: a missing --file-list": Case(
        lambda ws: prepare_lrs(ws, "--output-dir", ws.root / "prepared", "--file-list", ws.root / "list.txt"), 1,
        ("--file-list {root}/list.txt not found; expected a file listing one clip per line",),
    ),
    "fairseq loader: a checkpoint cut short": Case(
        lambda ws: partial(load_fairseq_checkpoint, ws.cut("cut.pt", _torch_file(ws, "full.pt"), 0.5)), ValueError,
        ("{root}/cut.pt is not a fairseq checkpoint",),
    ),
    "fairseq loader: a folder": Case(
        lambda ws: partial(load_fairseq_checkpoint, ws.root), IsADirectoryError,
        ("{root} is a folder; expected a fairseq checkpoint file",),
    ),
    # Converters and writers.
    "avhubert converter: OUT is an existing file": Case(
        lambda ws: partial(convert_avhubert, [str(ws.file("in.pt")), str(ws.file("OUT"))]), 1,
        ("output folder {root}/OUT is a file; expected a folder",),
    ),
    "whisper converter: OUT is an existing file": Case(
        lambda ws: partial(convert_ctranslate2_whisper, [str(ws.file("OUT"))]), 1,
        ("output folder {root}/OUT is a file; expected a folder",),
    ),
    "official converter: OUT is an existing file": Case(
        lambda ws: partial(convert_official, [str(ws.file("in.pth")), str(ws.file("OUT")), "--llm-config", "x", "--tokenizer",
                                     "x", "--whisper-config", "x", "--avhubert-config", "x"]), 1,
        ("output folder {root}/OUT is a file; expected a folder",),
    ),
    "official converter: a safetensors file cut short": Case(
        lambda ws: partial(load_official_state_dict, [ws.cut("cut.safetensors", _safetensors_file(ws), 0.5)]), ValueError,
        ("{root}/cut.safetensors cannot be read as a checkpoint", "expected a complete safetensors file"),
    ),
    "official converter: a .pth cut short": Case(
        lambda ws: partial(load_official_state_dict, [ws.cut("cut.pth", _torch_file(ws, "full.pth"), 0.5)]), ValueError,
        ("{root}/cut.pth cannot be read as a checkpoint", "a torch state dict"),
    ),
    "whisper converter: a model.bin cut short": Case(
        lambda ws: partial(read_ctranslate2_model, ws.file("model.bin", b"\x06\x00\x00\x00\x05\x00abcd")), ValueError,
        ("{root}/model.bin is cut short or corrupt", "expected a complete CTranslate2 model.bin"),
    ),
    "whisper converter: a model.bin without the encoder's layers": Case(
        lambda ws: partial(convert_ctranslate2_whisper, [str(ws.root / "OUT"), "--source", str(ws.ctranslate2_model(
            "partial", {"encoder/conv1/weight": np.zeros((32, 80, 3), np.float32)}))]), 1,
        ("{root}/partial: no encoder/num_heads variable; expected every variable of a CTranslate2 Whisper encoder",),
    ),
    "whisper converter: NaN weights": Case(
        lambda ws: partial(convert_ctranslate2_whisper, [str(ws.root / "OUT"), "--source", str(ws.ctranslate2_model(
            "nan", {"encoder/conv1/weight": np.full((32, 80, 3), np.nan, np.float32)}))]), 1,
        ("{root}/nan: encoder/conv1/weight holds 7680 NaN or infinite value(s)",),
    ),
    "avhubert converter: weights that do not fit the checkpoint's config": Case(
        lambda ws: partial(convert_avhubert, [str(ws.fairseq_avhubert("partial.pt", torch.ones(32))),
                                              str(ws.root / "OUT")]),
        1, ("{root}/partial.pt: its weights do not fit the model its config describes",
            "Missing key(s) in state_dict", "expected a checkpoint whose config and weights belong together"),
    ),
    "avhubert converter: NaN weights": Case(
        lambda ws: partial(convert_avhubert, [str(ws.fairseq_avhubert("nan.pt", torch.full((32,), torch.nan))),
                                              str(ws.root / "OUT")]), 1,
        ("{root}/nan.pt: encoder.layer_norm.weight holds 32 NaN or infinite value(s)",),
    ),
    "official converter: a state dict without the language model": Case(
        lambda ws: convert_official_checkpoint(ws, "partial.safetensors", {LORA_KEY: torch.zeros(4, 32)}), 1,
        ("{root}/partial.safetensors: no llm.model.embed_tokens.weight; expected the state dict of a whole official",),
    ),
    "official converter: NaN weights": Case(
        lambda ws: convert_official_checkpoint(ws, "nan.safetensors", {
            LORA_KEY: torch.zeros(4, 32), "llm.model.embed_tokens.weight": torch.full((8, 32), torch.inf)}), 1,
        ("{root}/nan.safetensors: llm.model.embed_tokens.weight holds 256 NaN or infinite value(s)",),
    ),
    "mini-lrs generator: --output-dir is an existing file": Case(
        lambda ws: partial(generate_mini_lrs, ["--output-dir", str(ws.file("OUT")), "--no-progress"]), 1,
        ("--output-dir {root}/OUT is a file; expected a folder",),
    ),
    # Model cards.
    "model card: --output is a folder": Case(
        lambda ws: partial(model_card, ["--model", str(ws.model), "--results", str(ws.results([ROW])), "--output",
                               str(ws.root), "--dataset", "lrs3"]), 1,
        ("--output {root} is a folder; expected a file path",),
    ),
    "model card: --model without config.json": Case(
        lambda ws: partial(model_card, ["--model", str(ws.root), "--results", str(ws.results([ROW])), "--output",
                               str(ws.root / "README.md")]), 1,
        ("--model {root}: no config.json; expected an Omni-AVSR checkpoint folder",),
    ),
    "model card: results that are not JSON": Case(
        lambda ws: partial(model_card, ["--model", str(ws.model), "--results", str(ws.file("results.json", "{oops")),
                               "--output", str(ws.root / "README.md")]), 1,
        ("{root}/results.json is not a JSON results file", "expected the evaluation's results.json"),
    ),
    "model card: results without a corpus and no --dataset": Case(
        lambda ws: partial(model_card, ["--model", str(ws.model), "--results", str(ws.results([ROW])), "--output",
                               str(ws.root / "README.md")]), 1,
        ("do not record their corpus", "pass --dataset NAME"),
    ),
    "model card: --dataset contradicting the results": Case(
        lambda ws: partial(model_card, ["--model", str(ws.model), "--results", str(ws.results([{**ROW, "measured_on": RECORD}])),
                               "--output", str(ws.root / "README.md"), "--dataset", "lrs3"]), 1,
        ("--dataset lrs3: the results record that they were measured on 'mini_lrs'", "expected the same corpus"),
    ),
    "model card: rows of two measurements": Case(
        lambda ws: partial(load_results, ws.results([{**ROW, "measured_on": RECORD},
                                            {**ROW, "audio_rate": 16, "measured_on": {**RECORD, "num_clips": 5}}])),
        ValueError, ("{root}/results.json, row 1: measured on", "expected the rows of one evaluation"),
    ),
    # Evaluation.
    "evaluation: results.json of another measurement in the output folder": Case(
        _evaluate_into_other_results, ValueError,
        ("{root}/results.json, row 0: measured on", "expected results of this same evaluation"),
    ),
}


def _torch_file(ws: Workspace, name: str) -> Path:
    path = ws.root / name
    torch.save({"cfg": {"model": {}}, "model": {"weight": torch.zeros(64, 64)}}, path)
    return path


def _safetensors_file(ws: Workspace) -> Path:
    path = ws.root / "full.safetensors"
    save_file({"weight": torch.zeros(64, 64)}, path)
    return path


def _snapshot(*folders: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, model_dir, tmp_path, capsys):
    case = CASES[name]
    call = case.prepare(Workspace(tmp_path, model_dir))
    before = _snapshot(tmp_path, model_dir)
    if isinstance(case.error, int):
        try:
            status = call()
        except SystemExit as exit_info:  # argparse and the corpus generator exit this way
            status = exit_info.code
        captured = capsys.readouterr()
        assert status == case.error, captured.err
        assert "Traceback" not in captured.err and captured.out == ""
        (message,) = [line for line in captured.err.splitlines() if ": error: " in line]
    else:
        with pytest.raises(case.error) as error_info:
            call()
        message = str(error_info.value)
    for needle in case.says:
        assert needle.format(root=tmp_path, model=model_dir) in message, message
    after = _snapshot(tmp_path, model_dir)
    assert {path: after.get(path) for path in before} == before, "a file that was there was changed or removed"


def test_the_table_covers_every_entry_point_kind():
    kinds = {name.split(":")[0].split()[0] for name in CASES}
    assert {"cli", "crop", "media", "processor", "generate", "forward", "from_pretrained", "pipeline", "labels",
            "training", "lip-reading", "prepare_lrs", "fairseq", "avhubert", "whisper", "official", "mini-lrs", "model",
            "evaluation"} <= kinds
    assert len(CASES) >= 110
