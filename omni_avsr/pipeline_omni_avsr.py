"""Pipelines for Omni-AVSR: `automatic-speech-recognition` (audio) and `audio-visual-speech-recognition` (audio, lip
video or both).

This module is copied into Hub repositories next to the weights (`config.custom_pipelines`), so it stays flat: only
relative imports of flat modules and third-party imports.
"""

import logging
import os
from collections.abc import Iterator

import av
import numpy as np
import torch
from transformers import AutoModelForSpeechSeq2Seq
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY, AutomaticSpeechRecognitionPipeline
from transformers.pipelines.base import ChunkPipeline

from .checkpoint_weights import check_checkpoint_weights
from .configuration_omni_avsr import TASK_MODALITIES
from .input_checks import check_task_media
from .long_form import array_segments, file_seconds, file_segments, is_long, merge_chunks, segment_seconds
from .media import (
    AUDIO_EXTENSIONS,
    SAMPLING_RATE,
    VIDEO_FPS,
    align_audio_to_frames,
    check_clip_duration,
    check_media_file,
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
# Stock speech-recognition options that have no meaning here: long recordings are cut at pauses without overlap (no
# stride), the model has one language and no CTC decoder.
UNSUPPORTED_OPTIONS = {
    "stride_length_s": "long recordings are cut at pauses, without overlapping windows to stride over",
    "return_language": "Omni-AVSR transcribes English only",
    "decoder_kwargs": "Omni-AVSR decodes with generate(), not a CTC decoder",
}


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

    Long recordings: a file or arrays longer than one clip (`MAX_CLIP_SECONDS`) are cut at pauses into segments of at
    most `chunk_length_s` (default: the processor's `segment_seconds`, the length of the clips the model was trained
    on, 16 s where unrecorded; at most 30 s) and transcribed segment by
    segment, in batches of `batch_size`, reading the file a segment at a time. `return_timestamps=True` (on any
    input) adds transformers' `"chunks": [{"timestamp": (start_s, end_s), "text": ...}, ...]`, in order and not
    overlapping; a chunk whose media had a fault carries a `"note"` (see `omni_avsr.long_form`). Two options serve
    tools that save work as it is done (the `omni-avsr` command): `segment_callback(source, chunk)` is called with
    each chunk as soon as its batch is decoded (`source`: the input's path, `None` for arrays), and `done_chunks`
    (`{source: {long_form.chunk_key(timestamp): chunk}}`, what an interrupted run already transcribed) are not
    transcribed again.

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
        check_checkpoint_weights(model)
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

    def _sanitize_parameters(
        self,
        task=None,
        audio_rate=None,
        video_rate=None,
        generate_kwargs=None,
        return_timestamps=None,
        chunk_length_s=None,
        segment_callback=None,
        done_chunks=None,
        **kwargs,
    ):
        for name, reason in UNSUPPORTED_OPTIONS.items():
            if kwargs.pop(name, None) is not None:
                raise ValueError(f"`{name}` is not supported by Omni-AVSR pipelines: {reason}.")
        if return_timestamps not in (None, True, False):
            raise ValueError(
                f"return_timestamps={return_timestamps!r}: expected True (segment times) or False; Omni-AVSR gives no "
                "word timings."
            )
        generate_kwargs = {**(generate_kwargs or {}), **kwargs}
        task = generate_kwargs.pop("task", task)
        audio_rate = generate_kwargs.pop("audio_rate", audio_rate)
        video_rate = generate_kwargs.pop("video_rate", video_rate)
        preprocess_params, forward_params, postprocess_params = {}, dict(generate_kwargs), {}
        if task is not None:
            preprocess_params["task"] = self._check_task(task)
        for modality, rate in (("audio", audio_rate), ("video", video_rate)):
            if rate is not None:
                forward_params[f"{modality}_rate"] = self._check_rate(modality, rate)
        if return_timestamps is not None:
            preprocess_params["return_timestamps"] = postprocess_params["return_timestamps"] = return_timestamps
        if chunk_length_s is not None:
            preprocess_params["chunk_length_s"] = segment_seconds(chunk_length_s)
        if segment_callback is not None:
            forward_params["segment_callback"] = segment_callback
        if done_chunks is not None:
            preprocess_params["done_chunks"] = postprocess_params["done_chunks"] = done_chunks
        return preprocess_params, forward_params, postprocess_params

    def _check_task(self, task: str) -> str:
        return self.model.config.check_task(task)

    def _check_rate(self, modality: str, rate) -> int:
        return self.model.config.check_rate(modality, rate)

    def _default_task(self, available: set[str], source: str) -> str:
        return self.model.config.default_task(available, source)

    def preprocess(self, inputs, task=None, return_timestamps=False, chunk_length_s=None, done_chunks=None):
        source = os.fspath(inputs) if isinstance(inputs, (str, os.PathLike)) else None
        done = (done_chunks or {}).get(source)
        long_form_options = {"timestamps": return_timestamps, "chunk_length_s": chunk_length_s, "done": done}
        if source is not None:
            yield from self._read_file(source, task, **long_form_options)
        elif isinstance(inputs, dict):
            yield from self._read_dict(inputs, task, **long_form_options)
        else:
            raise ValueError(
                f"The {AUDIO_VISUAL_TASK} pipeline takes a media file path or a dict with 'audio' (+ 'sampling_rate') "
                f"and/or 'frames', got {type(inputs).__name__}."
            )

    def _read_file(self, path: str, task: str | None, timestamps, chunk_length_s, done) -> Iterator[dict]:
        available = media_in_file(path)
        task = task or self._default_task(available, path)
        check_task_media(task, available, path)
        needs = TASK_MODALITIES[task]
        if timestamps or chunk_length_s is not None or is_long(file_seconds(path, available)):
            max_seconds = segment_seconds(chunk_length_s, self.processor.segment_seconds)
            for item in file_segments(path, task, available, max_seconds, done):
                yield self._segment_item(item, path)
            return
        clip = load_clip(path, audio="audio" in needs, video="video" in needs)
        yield self._clip_item(task, clip.audio, SAMPLING_RATE, clip.frames, audio_name=path, frames_name=path)

    def _read_dict(self, inputs: dict, task: str | None, timestamps, chunk_length_s, done) -> Iterator[dict]:
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
        check_task_media(task, available, "the input dict")
        needs = TASK_MODALITIES[task]
        audio = _as_numpy(audio) if "audio" in needs else None
        frames = _as_numpy(frames) if "video" in needs else None
        yield from self._media_items(
            task, audio, inputs.get("sampling_rate"), frames, "the input dict's 'audio'", "the input dict's 'frames'",
            timestamps, chunk_length_s, done,
        )

    def _media_items(
        self, task, audio, sampling_rate, frames, audio_name, frames_name, timestamps, chunk_length_s, done
    ) -> Iterator[dict]:
        """The items of media given as arrays: one clip, or the segments of a long recording."""
        if audio is not None:
            audio = self.processor.prepare_audio(audio, sampling_rate, resample=True, name=audio_name)
        seconds = len(audio) / SAMPLING_RATE if audio is not None else len(frames) / VIDEO_FPS
        if timestamps or chunk_length_s is not None or is_long(seconds):
            if frames is not None and audio is not None:
                audio = align_audio_to_frames(audio, len(frames), audio_name)
            max_seconds = segment_seconds(chunk_length_s, self.processor.segment_seconds)
            segments = array_segments(audio, frames, task, max_seconds, done)
            for item in segments:
                yield self._segment_item(item, None)
            return
        yield self._clip_item(task, audio, SAMPLING_RATE, frames, audio_name, frames_name)

    def _clip_item(self, task, audio, sampling_rate, frames, audio_name: str, frames_name: str) -> dict:
        """One input's media under the processor's per-clip rules (16 kHz mono audio, aligned to the frames), with
        errors that name the input; `_forward` batches them."""
        if frames is not None:
            self.processor.prepare_frames(frames, frames_name)
        if audio is not None:
            audio = self.processor.prepare_audio(audio, sampling_rate, resample=True, name=audio_name, task=task)
            if frames is not None:
                audio = align_audio_to_frames(audio, len(frames), audio_name)
            check_clip_duration(audio_name, len(audio) / SAMPLING_RATE)
        return {
            "task": task, "audio": audio, "frames": frames, "segment": None, "note": None, "source": None, "is_last": True,
        }

    def _segment_item(self, item: dict, source: str | None) -> dict:
        """A long recording's segment under the same per-clip rules; its errors name the segment."""
        if item["segment"] is None:
            return item
        start, end = item["segment"]
        name = f"{source or 'the input'} from {start:.2f} s to {end:.2f} s"
        if item["frames"] is not None:
            self.processor.prepare_frames(item["frames"], name)
        if item["audio"] is not None:
            self.processor.prepare_audio(item["audio"], SAMPLING_RATE, name=name)
        return item

    def _forward(self, model_inputs, audio_rate=None, video_rate=None, segment_callback=None, **generate_kwargs):
        """Run the processor and `generate` once per group of clips that share a task (items without media, a long
        recording's empty segments, get no tokens)."""
        batched = isinstance(model_inputs["task"], list)
        columns = {key: value if batched else [value] for key, value in model_inputs.items()}
        num_clips = len(columns["task"])
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        groups = {}
        for index in range(num_clips):
            if columns["audio"][index] is not None or columns["frames"][index] is not None:
                groups.setdefault(columns["task"][index], []).append(index)
        rows = [torch.zeros(0, dtype=torch.long)] * num_clips
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
        texts = self.processor.decode_transcripts([row.tolist() for row in rows])
        chunks = [
            None if segment is None else _chunk(segment, text, note)
            for segment, text, note in zip(columns["segment"], texts, columns["note"])
        ]
        if segment_callback is not None:
            for source, chunk in zip(columns["source"], chunks):
                if chunk is not None:
                    segment_callback(source, chunk)
        outputs = {
            "text": texts, "chunk": chunks, "task": columns["task"], "source": columns["source"],
            "is_last": columns["is_last"],
        }
        return outputs if batched else {key: value[0] for key, value in outputs.items()}

    def postprocess(self, model_outputs, return_timestamps=False, done_chunks=None):
        done = (done_chunks or {}).get(model_outputs[0]["source"])
        if len(model_outputs) == 1 and model_outputs[0]["chunk"] is None and not done and not return_timestamps:
            return {"text": model_outputs[0]["text"], "task": model_outputs[0]["task"]}
        text, chunks = merge_chunks(model_outputs, done)
        result = {"text": text, "task": _main_task(model_outputs)}
        if return_timestamps:
            result["chunks"] = chunks
        return result

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

    def preprocess(self, inputs, task="asr", return_timestamps=False, chunk_length_s=None, done_chunks=None):
        source = os.fspath(inputs) if isinstance(inputs, (str, os.PathLike)) else None
        done = (done_chunks or {}).get(source)
        long_form_options = {"timestamps": return_timestamps, "chunk_length_s": chunk_length_s, "done": done}
        if source is not None:
            yield from self._read_file(source, task, **long_form_options)
            return
        if isinstance(inputs, dict):
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
        yield from self._media_items(task, audio, sampling_rate, None, name, name, **long_form_options)

    def postprocess(self, model_outputs, **kwargs):
        result = super().postprocess(model_outputs, **kwargs)
        del result["task"]
        return result


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


def _chunk(segment: tuple[float, float], text: str, note: str | None) -> dict:
    chunk = {"timestamp": (round(segment[0], 3), round(segment[1], 3)), "text": text}
    if note:
        chunk["note"] = note
    return chunk


def _main_task(outputs: list[dict]) -> str:
    """The task of a recording: the one asked for, even where a segment fell back to another (its chunk says so)."""
    tasks = [output["task"] for output in outputs]
    return max(tasks, key=lambda task: (len(TASK_MODALITIES[task]), tasks.count(task)))


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
