"""Pipelines for Omni-AVSR: `automatic-speech-recognition` (audio) and `audio-visual-speech-recognition` (audio, lip
video or both).

This module is copied into Hub repositories next to the weights (`config.custom_pipelines`), so it stays flat: only
relative imports of flat modules and third-party imports.
"""

import logging
import os

import av
import numpy as np
import torch
from transformers import AutoModelForSpeechSeq2Seq
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY, AutomaticSpeechRecognitionPipeline
from transformers.pipelines.base import ChunkPipeline

from .configuration_omni_avsr import TASK_MODALITIES
from .media import (
    AUDIO_EXTENSIONS,
    MAX_CLIP_SECONDS,
    SAMPLING_RATE,
    align_audio_to_frames,
    check_clip_duration,
    check_media_file,
    load_audio,
    load_clip,
)


AUDIO_VISUAL_TASK = "audio-visual-speech-recognition"
SPEECH_RECOGNITION_TASK = "automatic-speech-recognition"
# `config.custom_pipelines` of a Hub-ready folder: both tasks resolve to the pipeline file saved next to the weights.
CUSTOM_PIPELINES = {
    SPEECH_RECOGNITION_TASK: {
        "impl": "pipeline_omni_avsr.OmniAVSRSpeechRecognitionPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "multimodal",
    },
    AUDIO_VISUAL_TASK: {
        "impl": "pipeline_omni_avsr.AudioVisualSpeechRecognitionPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "multimodal",
    },
}
# Stock speech-recognition options that have no meaning for a model that transcribes whole clips (≤ 30 s) at once.
UNSUPPORTED_OPTIONS = ("chunk_length_s", "stride_length_s", "return_timestamps", "return_language", "decoder_kwargs")


def is_omni_avsr_model(model) -> bool:
    return getattr(model.config, "model_type", None) == "omni_avsr"


class AudioVisualSpeechRecognitionPipeline(AutomaticSpeechRecognitionPipeline):
    r"""
    Transcribe speech from audio, lip video or both with an Omni-AVSR model.

    Inputs (one, or a list for batching with `batch_size`):
        - a path to a media file: `.mp4` (frames, and audio from the sibling `.wav` or the container) or an audio file
          (`.wav`, `.flac`, ...);
        - a dict with `"audio"` (waveform) and `"sampling_rate"` and/or `"frames"` (uint8 lip crops at 25 fps,
          (frames, height, width) grayscale or (frames, height, width, 3) RGB).

    Call options (also accepted in `generate_kwargs`): `task` (`"asr"`, `"vsr"` or `"avsr"`; default: `"avsr"` when
    the input has audio and video, else the task its modality allows), `audio_rate`, `video_rate` (compression rates
    the model was trained with; default: each modality's finest) and any `generate()` option (`num_beams`,
    `max_new_tokens`, ...). Decoding defaults come from the model's generation config alone, so the pipeline gives
    what `model.generate` gives.

    Returns `{"text": transcript, "task": task used}` per input.

    It subclasses the stock speech-recognition pipeline for its call conventions; the stock CTC/Whisper decoding paths
    are all replaced.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _default_generation_config = None

    def __init__(self, model, processor=None, **kwargs):
        if not is_omni_avsr_model(model):
            raise ValueError(
                f"The {AUDIO_VISUAL_TASK} pipeline runs Omni-AVSR models (model_type 'omni_avsr'), got a "
                f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', None)!r}); use the "
                f"{SPEECH_RECOGNITION_TASK!r} pipeline for audio-only models."
            )
        if processor is None:
            raise ValueError(
                "Omni-AVSR pipelines need the model's OmniAVSRProcessor: pass `processor=` or load the pipeline from a "
                "folder or Hub repository that holds `processor_config.json`."
            )
        # A folder whose config does not describe its weights would transcribe with random ones, and a processor that
        # is not the model's would pick rates and tasks the model refuses.
        model.check_weights_loaded()
        processor.check_model(model.config, model.name_or_path or type(model).__name__)
        # The processor holds the tokenizer and the feature extractor `pipeline()` may also have loaded.
        kwargs.pop("tokenizer", None)
        kwargs.pop("feature_extractor", None)
        # Pipeline's own set-up: the stock speech-recognition `__init__` only picks a CTC/seq2seq decoding path, which
        # this class replaces.
        ChunkPipeline.__init__(self, model, processor=processor, **kwargs)
        # Batches are collated as lists of raw media (the processor pads them in `_forward`). The collator needs a
        # tokenizer with a pad token; without a feature extractor it also skips its tokenizer/extractor padding-side
        # check, which does not apply to lists.
        self.tokenizer = processor.tokenizer
        self.feature_extractor = None

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and not inputs:
            # The stock pipeline reads `inputs[0]` and fails with an IndexError.
            raise ValueError("The pipeline got an empty list of inputs; expected at least one media file or input.")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, task=None, audio_rate=None, video_rate=None, generate_kwargs=None, **kwargs):
        for name in UNSUPPORTED_OPTIONS:
            if kwargs.pop(name, None) is not None:
                raise ValueError(
                    f"`{name}` is not supported by Omni-AVSR pipelines: they transcribe whole clips of up to 30 s "
                    "and give no timestamps. Split longer recordings into clips."
                )
        generate_kwargs = {**(generate_kwargs or {}), **kwargs}
        task = generate_kwargs.pop("task", task)
        audio_rate = generate_kwargs.pop("audio_rate", audio_rate)
        video_rate = generate_kwargs.pop("video_rate", video_rate)
        preprocess_params, forward_params = {}, dict(generate_kwargs)
        if task is not None:
            preprocess_params["task"] = self._check_task(task)
        for modality, rate in (("audio", audio_rate), ("video", video_rate)):
            if rate is not None:
                forward_params[f"{modality}_rate"] = self._check_rate(modality, rate)
        return preprocess_params, forward_params, {}

    def _check_task(self, task: str) -> str:
        return self.model.config.check_task(task)

    def _check_rate(self, modality: str, rate) -> int:
        return self.model.config.check_rate(modality, rate)

    def _default_task(self, available: set[str], source: str) -> str:
        return self.model.config.default_task(available, source)

    def preprocess(self, inputs, task=None):
        if isinstance(inputs, (str, os.PathLike)):
            item = self._read_file(os.fspath(inputs), task)
        elif isinstance(inputs, dict):
            item = self._read_dict(inputs, task)
        else:
            raise ValueError(
                f"The {AUDIO_VISUAL_TASK} pipeline takes a media file path or a dict with 'audio' (+ 'sampling_rate') "
                f"and/or 'frames', got {type(inputs).__name__}."
            )
        yield {"is_last": True, **item}

    def _read_file(self, path: str, task: str | None) -> dict:
        available = media_in_file(path)
        task = task or self._default_task(available, path)
        self._check_modalities(task, available, path)
        needs = TASK_MODALITIES[task]
        clip = load_clip(path, audio="audio" in needs, video="video" in needs)
        return self._item(task, clip.audio, SAMPLING_RATE, clip.frames, audio_name=path, frames_name=path)

    def _read_dict(self, inputs: dict, task: str | None) -> dict:
        unexpected = set(inputs) - {"audio", "sampling_rate", "frames"}
        if unexpected:
            raise ValueError(
                f"Unexpected keys {sorted(unexpected)} in the input dict; expected 'audio' (+ 'sampling_rate') "
                "and/or 'frames'."
            )
        audio, frames = inputs.get("audio"), inputs.get("frames")
        if audio is not None and inputs.get("sampling_rate") is None:
            raise ValueError(
                "The input dict has 'audio' but no 'sampling_rate'; give the waveform's sampling rate in Hz."
            )
        available = {name for name, value in (("audio", audio), ("video", frames)) if value is not None}
        task = task or self._default_task(available, "the input dict")
        self._check_modalities(task, available, "the input dict")
        needs = TASK_MODALITIES[task]
        return self._item(
            task,
            _as_numpy(audio) if "audio" in needs else None,
            inputs.get("sampling_rate"),
            _as_numpy(frames) if "video" in needs else None,
            audio_name="the input dict's 'audio'",
            frames_name="the input dict's 'frames'",
        )

    def _item(self, task, audio, sampling_rate, frames, audio_name: str, frames_name: str) -> dict:
        """One input's media under the processor's per-clip rules (16 kHz mono audio, aligned to the frames), with
        errors that name the input; `_forward` batches them."""
        if frames is not None:
            self.processor.prepare_frames(frames, frames_name)
        if audio is not None:
            audio = self.processor.prepare_audio(audio, sampling_rate, resample=True, name=audio_name, task=task)
            if frames is not None:
                audio = align_audio_to_frames(audio, len(frames), audio_name)
            check_clip_duration(audio_name, len(audio) / SAMPLING_RATE)
        return {"task": task, "audio": audio, "frames": frames}

    @staticmethod
    def _check_modalities(task: str, available: set[str], source: str) -> None:
        missing = [modality for modality in TASK_MODALITIES[task] if modality not in available]
        if missing:
            kind = {"audio": "audio", "video": "lip video"}
            raise ValueError(
                f"task={task!r} needs {' and '.join(kind[m] for m in TASK_MODALITIES[task])}, but {source} has no "
                f"{' or '.join(kind[m] for m in missing)}; use a task its media allow or give the missing input."
            )

    def _forward(self, model_inputs, audio_rate=None, video_rate=None, **generate_kwargs):
        """Run the processor and `generate` once per group of clips that share a task."""
        batched = isinstance(model_inputs["task"], list)
        columns = {key: value if batched else [value] for key, value in model_inputs.items()}
        num_clips = len(columns["task"])
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        groups = {}
        for index in range(num_clips):
            groups.setdefault(columns["task"][index], []).append(index)
        rows = [None] * num_clips
        for task, indices in groups.items():
            needs = TASK_MODALITIES[task]
            inputs = self.processor(
                audio=[columns["audio"][i] for i in indices] if "audio" in needs else None,
                videos=[columns["frames"][i] for i in indices] if "video" in needs else None,
                sampling_rate=SAMPLING_RATE,
                task=task,
                audio_rate=audio_rate,
                video_rate=video_rate,
            ).to(self.device)
            output = self.model.generate(**inputs, **generate_kwargs)
            prompt_length = inputs["input_ids"].shape[1]
            for index, row in zip(indices, getattr(output, "sequences", output)):
                rows[index] = row[prompt_length:]
        tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=self.tokenizer.pad_token_id)
        return {
            "tokens": tokens,
            "task": columns["task"] if batched else columns["task"][0],
            "is_last": columns["is_last"] if batched else columns["is_last"][0],
        }

    def postprocess(self, model_outputs):
        (output,) = model_outputs
        return {"text": self.processor.decode_transcripts(output["tokens"])[0], "task": output["task"]}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Write a Hub-ready folder: config and safetensors weights, the processor, the custom model/processor code,
        and both Omni-AVSR pipelines (`config.custom_pipelines` + this file), so that
        `pipeline(task, model=folder, trust_remote_code=True)` works without the `omni_avsr` package.
        `push_to_hub` saves through this method.

        The in-memory model config is left as it was: a folder with `custom_pipelines` makes `pipeline()` ask for
        `trust_remote_code=True`, even where `omni_avsr` is installed.
        """
        os.makedirs(save_directory, exist_ok=True)
        config = self.model.config
        previous = getattr(config, "custom_pipelines", None)
        config.custom_pipelines = CUSTOM_PIPELINES
        try:
            self.model.save_pretrained(save_directory, **kwargs)
        finally:
            if previous is None:
                del config.custom_pipelines
            else:
                config.custom_pipelines = previous
        self.processor.save_pretrained(save_directory)
        custom_object_save(self, save_directory)


class OmniAVSRSpeechRecognitionPipeline(AudioVisualSpeechRecognitionPipeline):
    r"""
    The `automatic-speech-recognition` pipeline once `omni_avsr` is imported: Omni-AVSR models transcribe audio (task
    `asr`); every other model (Whisper, wav2vec2, ...) gets the stock `AutomaticSpeechRecognitionPipeline`, unchanged.

    Inputs as the stock pipeline: a waveform at 16 kHz (numpy array or tensor), a dict with `"raw"` (or `"array"`) and
    `"sampling_rate"`, or a path to an audio or video file. `audio_rate` and `generate()` options go through
    `generate_kwargs` or call keyword arguments. Returns `{"text": transcript}`.
    """

    # `pipeline()` reads these from the registered class for every model of the task: the stock models need a
    # tokenizer and a feature extractor, Omni-AVSR models a processor. None means "load when available".
    _load_processor = None
    _load_tokenizer = None
    _load_feature_extractor = None

    def __new__(cls, model=None, *args, **kwargs):
        # `model=None`: `copy` and `pickle` create the instance without arguments.
        if model is None or is_omni_avsr_model(model):
            return super().__new__(cls)
        has_components = kwargs.get("tokenizer") is not None and kwargs.get("feature_extractor") is not None
        if kwargs.get("processor") is None and not has_components:
            raise ValueError(
                f"Speech recognition with a {type(model).__name__} needs its tokenizer and feature extractor: none "
                "could be loaded from the model's folder; pass `tokenizer=` and `feature_extractor=`."
            )
        # Not an instance of `cls`, so Python does not run `__init__` again on it.
        return AutomaticSpeechRecognitionPipeline(model, *args, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(**kwargs)
        preprocess_params["task"] = self._check_task(preprocess_params.get("task", "asr"))
        return preprocess_params, forward_params, postprocess_params

    def _check_task(self, task: str) -> str:
        if task != "asr":
            raise ValueError(
                f"The {SPEECH_RECOGNITION_TASK} pipeline transcribes audio (task='asr'), got task={task!r}; use "
                f"pipeline({AUDIO_VISUAL_TASK!r}) for 'vsr' and 'avsr'."
            )
        return super()._check_task(task)

    def preprocess(self, inputs, task="asr"):
        if isinstance(inputs, (str, os.PathLike)):
            name = os.fspath(inputs)
            self._check_modalities(task, media_in_file(name), name)
            audio, sampling_rate = load_audio(name, max_seconds=MAX_CLIP_SECONDS), SAMPLING_RATE
        elif isinstance(inputs, dict):
            audio, sampling_rate, key = _audio_from_dict(inputs)
            name = f"the input dict's {key!r}"
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            audio, sampling_rate, name = _as_numpy(inputs), SAMPLING_RATE, "the input waveform"
        else:
            raise ValueError(
                f"The {SPEECH_RECOGNITION_TASK} pipeline takes a waveform at {SAMPLING_RATE} Hz (numpy array or "
                "tensor), a dict with 'raw' (or 'array') and 'sampling_rate', or a local audio/video file path; got "
                f"{type(inputs).__name__}."
            )
        yield {"is_last": True, **self._item(task, audio, sampling_rate, None, audio_name=name, frames_name=name)}

    def postprocess(self, model_outputs):
        return {"text": super().postprocess(model_outputs)["text"]}


def media_in_file(path: str) -> set[str]:
    """The media a file offers: `{"audio", "video"}` or a subset (a sibling `.wav` counts as audio, as in
    `load_clip`)."""
    check_media_file(path)
    if path.lower().endswith(AUDIO_EXTENSIONS):
        return {"audio"}
    try:
        with av.open(path) as container:
            streams = {"audio": container.streams.audio, "video": container.streams.video}
            available = {name for name, found in streams.items() if found}
    except av.error.FFmpegError as error:
        raise ValueError(f"Could not read {path} as a media file: {error}") from error
    if os.path.isfile(os.path.splitext(path)[0] + ".wav"):
        available.add("audio")
    return available


def _audio_from_dict(inputs: dict) -> tuple[np.ndarray, int, str]:
    """The waveform of a stock-style audio dict, its sampling rate and the key that held it."""
    if "stride" in inputs:
        raise ValueError("`stride` is only for CTC models; Omni-AVSR transcribes each clip whole.")
    keys = [key for key in ("raw", "array", "audio") if inputs.get(key) is not None]
    if len(keys) != 1 or inputs.get("sampling_rate") is None:
        raise ValueError(
            "An audio dict needs exactly one waveform under 'raw' (or 'array') and its 'sampling_rate' in Hz, got "
            f"keys {sorted(inputs)}."
        )
    return _as_numpy(inputs[keys[0]]), inputs["sampling_rate"], keys[0]


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def register_pipelines() -> None:
    """Register both pipelines with `transformers.pipeline`.

    The speech-recognition entry keeps the stock model classes and default model, since its pipeline class hands
    every non-Omni-AVSR model to the stock pipeline.
    """
    stock = PIPELINE_REGISTRY.supported_tasks[SPEECH_RECOGNITION_TASK]
    registry_logger = logging.getLogger("transformers.pipelines.base")
    level = registry_logger.level
    # Replacing the stock entry is intended; its "Overwriting pipeline" warning would greet every `import omni_avsr`.
    registry_logger.setLevel(logging.ERROR)
    try:
        PIPELINE_REGISTRY.register_pipeline(
            SPEECH_RECOGNITION_TASK,
            pipeline_class=OmniAVSRSpeechRecognitionPipeline,
            pt_model=stock["pt"],
            default=stock.get("default"),
            type=stock.get("type"),
        )
    finally:
        registry_logger.setLevel(level)
    PIPELINE_REGISTRY.register_pipeline(
        AUDIO_VISUAL_TASK,
        pipeline_class=AudioVisualSpeechRecognitionPipeline,
        pt_model=AutoModelForSpeechSeq2Seq,
        type="multimodal",
    )


__all__ = ["AudioVisualSpeechRecognitionPipeline", "OmniAVSRSpeechRecognitionPipeline", "register_pipelines"]
