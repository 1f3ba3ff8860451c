"""Processor for Omni-AVSR: the sequence layout and the tokenizer, with the audio (`feature_extraction_omni_avsr`) and
lip-video (`video_processing_omni_avsr`) preprocessing it composes, in one object as `AutoProcessor` loads it."""

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.processing_utils import AudioKwargs, ProcessingKwargs, TextKwargs, Unpack, VideosKwargs

from .configuration_omni_avsr import (
    DEFAULT_TASK_PROMPTS,
    MARKER_TOKENS,
    PLACEHOLDER_TOKENS,
    TASK_MODALITIES,
    TASKS,
    check_rate,
    check_task,
    default_task,
    sequence_token_ids,
)
from .feature_extraction_omni_avsr import check_not_silent, log_mel_features, prepare_audio
from .input_checks import check_batch_sizes, check_task_media
from .media import MAX_CLIP_SECONDS, MOUTH_CROP_SIZE, SAMPLING_RATE, align_audio_to_frames, check_clip_duration
from .modeling_omni_avsr import audio_encoder_frames, compressed_length
from .segmentation import DEFAULT_SEGMENT_SECONDS, check_segment_seconds
from .video_processing_omni_avsr import (
    check_video_kwargs,
    check_video_settings,
    normalize_frames,
    pad_videos,
    prepare_frames,
)


IGNORE_INDEX = -100
# The tensors each modality reaches the model as (the processor's output names).
MEDIA_INPUTS = {"audio": ("input_features", "input_features_mask"), "video": ("pixel_values_videos", "video_mask")}


def media_inputs(inputs) -> dict:
    """The media tensors of a batch (processor output or dict), by name."""
    return {name: inputs[name] for names in MEDIA_INPUTS.values() for name in names if name in inputs}


def pad_rows(
    rows: list[list[int]], value: int, side: str, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists padded with `value` on `side` into one (rows, `length`, default the longest) tensor, and its
    attention mask."""
    length = max(len(row) for row in rows) if length is None else length
    ids = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(length - len(row), length)
        ids[index, span] = torch.tensor(row, dtype=torch.long)
        mask[index, span] = 1
    return ids, mask


@dataclass
class SequenceTokens:
    """The token ids an Omni-AVSR sequence is made of, and its layout (written once: the processor expands
    placeholders with it, the training step lays out its rows with it).

    A task's sequence: `[BOS] <audio> A… </audio> <video> V… </video> PROMPT` (ASR drops the video block, VSR the
    audio block; LMs without BOS, like Qwen2, start at the first marker), where A and V are placeholder tokens, one
    per media token.
    """

    audio_start: int | None
    audio_end: int | None
    video_start: int | None
    video_end: int | None
    audio_placeholder: int | None
    video_placeholder: int | None
    bos: int | None
    prompts: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_tokenizer(cls, tokenizer, task_prompts: dict[str, str]) -> "SequenceTokens":
        """Read the ids from a tokenizer that has the markers and placeholders (`OmniAVSRProcessor.prepare_tokenizer`)."""
        return cls(**sequence_token_ids(tokenizer, task_prompts))

    @classmethod
    def from_config(cls, config) -> "SequenceTokens":
        """The ids an `OmniAVSRConfig` stores (`config.set_token_ids`): for configs without a tokenizer at hand."""
        config.check_token_ids()
        return cls(
            audio_start=config.audio_start_token_id,
            audio_end=config.audio_end_token_id,
            video_start=config.video_start_token_id,
            video_end=config.video_end_token_id,
            audio_placeholder=config.audio_token_id,
            video_placeholder=config.video_token_id,
            bos=config.bos_token_id,
            prompts={task: list(ids) for task, ids in config.prompt_token_ids.items()},
        )

    def prompt_ids(
        self, task: str, num_audio_tokens: int = 0, num_video_tokens: int = 0, prompt: list[int] | None = None
    ) -> list[int]:
        """The ids the LM reads before the transcript; `prompt` (ids) replaces the task's instruction."""
        ids = [] if self.bos is None else [self.bos]
        modalities = TASK_MODALITIES[task]
        if "audio" in modalities:
            ids += [self.audio_start] + [self.audio_placeholder] * num_audio_tokens + [self.audio_end]
        if "video" in modalities:
            ids += [self.video_start] + [self.video_placeholder] * num_video_tokens + [self.video_end]
        return ids + list(self.prompts[task] if prompt is None else prompt)

    def batch_prompt_ids(self, task: str, token_counts: dict[str, list[int]], prompts=None) -> list[list[int]]:
        """`prompt_ids` of every clip of a batch, from each modality's tokens per clip (`{"audio": [...], ...}`)."""
        batch_size = len(next(iter(token_counts.values())))
        return [
            self.prompt_ids(
                task,
                num_audio_tokens=token_counts["audio"][index] if "audio" in TASK_MODALITIES[task] else 0,
                num_video_tokens=token_counts["video"][index] if "video" in TASK_MODALITIES[task] else 0,
                prompt=None if prompts is None else prompts[index],
            )
            for index in range(batch_size)
        ]


class OmniAVSRAudioKwargs(AudioKwargs, total=False):
    """`resample`: resample audio that is not at 16 kHz (with soxr) instead of refusing it (default: refuse)."""

    resample: bool | None


class OmniAVSRProcessorKwargs(ProcessingKwargs, total=False):
    audio_kwargs: OmniAVSRAudioKwargs
    videos_kwargs: VideosKwargs
    text_kwargs: TextKwargs


# What each structured group may hold, and why the rest of transformers' keys cannot apply. A flat argument goes to
# every group that takes it (transformers' routing), so only keys given inside a group's own dict are checked.
SUPPORTED_CALL_KWARGS = {
    "audio_kwargs": (
        {"sampling_rate", "resample", "return_tensors"},
        "the audio encoder reads Whisper's fixed 30 s window, so audio padding and truncation are not settings",
    ),
    "videos_kwargs": (
        {"do_sample_frames", "fps", "num_frames", "return_tensors"},
        "the lips are read at every frame of a 25 fps clip, cropped and normalised as the processor's "
        "video_crop_size / video_mean / video_std say",
    ),
    "text_kwargs": (
        {
            "padding", "padding_side", "max_length", "pad_to_multiple_of", "truncation", "add_special_tokens",
            "return_attention_mask", "return_tensors",
        },
        "the processor lays out the sequence itself",
    ),
}


class OmniAVSRProcessor(ProcessorMixin):
    r"""
    Turns waveforms, lip videos and transcripts into Omni-AVSR inputs.

    - audio → `input_features` (Whisper log-mel, padded to the 30 s window) and `input_features_mask` (the Whisper
      feature extractor's mask, renamed so it does not collide with the text mask). Each waveform is first normalised
      to zero mean and unit variance over the clip, as the official recipe does before feature extraction.
    - videos → `pixel_values_videos` (batch, frames, 1, crop, crop) and `video_mask` (batch, frames): centre crop,
      grayscale, scaled to [0, 1], normalised with AV-HuBERT's mean and std, zero-padded (in normalised space) to
      the longest clip. Training's random crop is an augmentation applied before (`AudioVisualAugmentation`), so
      the centre crop of an 88×88 frame is then a no-op.
    - with a `task` (or a `prompt`): `input_ids` / `attention_mask`, the sequence the model reads —
      `[BOS] <audio> <|AUDIO|>… </audio> <video> <|VIDEO|>… </video> PROMPT`, one placeholder per media token at the
      chosen rates — followed by the transcript and EOS when `text` is given, with `labels` (-100 on the prompt);
      and `task`, `audio_rate`, `video_rate`, which `model(**inputs)` / `model.generate(**inputs)` take as they are.
    - without a task: the media only, and `labels` holding each transcript + EOS (right-padded with -100): a training
      batch, whose every task's rows the training step lays out (`omni_avsr.training.matryoshka`).
    - text alone: `input_ids` / `attention_mask` as the tokenizer gives them.

    The tokenizer gets the `<audio>`, `</audio>`, `<video>`, `</video>` markers, the `<|AUDIO|>`, `<|VIDEO|>`
    placeholders and a `<pad>` token when it lacks them; the LM's embeddings must cover every id but the placeholders
    (see `omni_avsr.training.assembly.assemble_model`).

    Args:
        feature_extractor (`WhisperFeatureExtractor`): computes log-mel features.
        tokenizer (`PreTrainedTokenizerBase`): the LM's tokenizer.
        video_crop_size (`int`, defaults to 88): side of the square lip crop fed to the video encoder.
        video_mean (`float`, defaults to 0.421): normalisation mean of grayscale pixels in [0, 1].
        video_std (`float`, defaults to 0.165): normalisation std.
        normalize_waveform (`bool`, defaults to `True`): zero-mean/unit-variance normalisation of each waveform.
        audio_rates, video_rates (`list[int]`, default `[4, 16]` and `[2, 5]`): the model's compression rates (a
            copy of its config's), to validate a requested rate and default to the finest.
        tasks (`list[str]`, *optional*): the model's tasks (default: all).
        task_prompts (`dict[str, str]`, *optional*): the instruction after the media for each task (the model's).
        segment_seconds (`float`, defaults to 16.0): the longest segment a long recording is cut into (the pipelines'
            default `chunk_length_s`): the length of the clips the model was trained on, which the training script
            records here (LRS3's segments are at most 16 s).
    """

    valid_processor_kwargs = OmniAVSRProcessorKwargs
    text_kwargs = {"padding": True, "padding_side": "left"}

    def __init__(
        self,
        feature_extractor=None,
        tokenizer=None,
        video_crop_size: int = MOUTH_CROP_SIZE,
        video_mean: float = 0.421,
        video_std: float = 0.165,
        normalize_waveform: bool = True,
        audio_rates: list[int] | tuple[int, ...] = (4, 16),
        video_rates: list[int] | tuple[int, ...] = (2, 5),
        tasks: list[str] | tuple[str, ...] | None = None,
        task_prompts: dict[str, str] | None = None,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    ):
        check_video_settings(video_crop_size, video_mean, video_std)
        self.segment_seconds = check_segment_seconds(segment_seconds, MAX_CLIP_SECONDS)
        self.video_crop_size = video_crop_size
        self.video_mean = video_mean
        self.video_std = video_std
        self.normalize_waveform = normalize_waveform
        self.audio_rates = list(audio_rates)
        self.video_rates = list(video_rates)
        self.tasks = list(tasks or TASKS)
        self.task_prompts = {**DEFAULT_TASK_PROMPTS, **(task_prompts or {})}
        if self._auto_class is not None:
            # What `save_pretrained` writes for remote code, set from the start so that a processor's dict is the
            # same before saving, after saving and once loaded (loading drops the key).
            self.auto_map = {self._auto_class: f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"}
        super().__init__(feature_extractor, self.prepare_tokenizer(tokenizer))

    @classmethod
    def for_model(cls, config, feature_extractor, tokenizer, **kwargs) -> "OmniAVSRProcessor":
        """A processor whose rates, tasks and prompts are those of an `OmniAVSRConfig`."""
        return cls(
            feature_extractor=feature_extractor,
            tokenizer=tokenizer,
            audio_rates=config.audio_rates,
            video_rates=config.video_rates,
            tasks=config.tasks,
            task_prompts=config.task_prompts,
            **kwargs,
        )

    def check_model(self, config, source: str) -> None:
        """Refuse to serve a model (its `OmniAVSRConfig`) this processor does not describe: other rates or tasks (the
        processor would default to a rate or task the model refuses, one the user never asked for), another number
        of mel bins than the audio encoder reads, or other marker and placeholder ids. `source` names the folder."""
        differences = []
        for modality in ("audio", "video"):
            ours, theirs = sorted(getattr(self, f"{modality}_rates")), sorted(config.rates(modality))
            if config.has_modality(modality) and ours != theirs:
                differences.append(f"{modality} rates {ours} (processor) vs {theirs} (model)")
        if sorted(self.tasks) != sorted(config.tasks):
            differences.append(f"tasks {self.tasks} (processor) vs {list(config.tasks)} (model)")
        mel_bins = getattr(self.feature_extractor, "feature_size", None)
        if config.has_modality("audio") and mel_bins != config.audio_config.num_mel_bins:
            differences.append(f"{mel_bins} mel bins (processor) vs {config.audio_config.num_mel_bins} (audio encoder)")
        if config.audio_token_id is not None:
            tokens = self.sequence_tokens
            ids = {
                "<audio>": (tokens.audio_start, config.audio_start_token_id),
                "</audio>": (tokens.audio_end, config.audio_end_token_id),
                "<video>": (tokens.video_start, config.video_start_token_id),
                "</video>": (tokens.video_end, config.video_end_token_id),
                "<|AUDIO|>": (tokens.audio_placeholder, config.audio_token_id),
                "<|VIDEO|>": (tokens.video_placeholder, config.video_token_id),
            }
            differences += [
                f"{token} is id {ours} (processor) vs {theirs} (model)"
                for token, (ours, theirs) in ids.items()
                if ours != theirs
            ]
        if differences:
            raise ValueError(
                f"{source}: its processor (processor_config.json and tokenizer) and its model (config.json) disagree: "
                f"{'; '.join(differences)}. Expected the processor saved with this model "
                "(OmniAVSRProcessor.for_model(config, feature_extractor, tokenizer) makes one)."
            )

    @staticmethod
    def prepare_tokenizer(tokenizer):
        """Add the Omni-AVSR markers, placeholders and a pad token when missing (in place); returns the tokenizer.

        The placeholders are added last, after the pad token, so that they lie past the LM's vocabulary of a model
        whose embeddings cover the rest.
        """
        if tokenizer is None:
            return tokenizer
        vocab = tokenizer.get_vocab()
        missing = [token for token in MARKER_TOKENS if token not in vocab]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        missing = [token for token in PLACEHOLDER_TOKENS if token not in vocab]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        return tokenizer

    @property
    def sequence_tokens(self) -> SequenceTokens:
        if getattr(self, "_sequence_tokens", None) is None:
            self._sequence_tokens = SequenceTokens.from_tokenizer(self.tokenizer, self.task_prompts)
        return self._sequence_tokens

    def __call__(
        self,
        audio=None,
        videos=None,
        text=None,
        task: str | None = None,
        audio_rate: int | None = None,
        video_rate: int | None = None,
        prompt: str | list[str] | None = None,
        **kwargs: Unpack[OmniAVSRProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Args:
            audio (`np.ndarray` or list of them): 16 kHz waveforms, shape (samples,); (channels, samples) or
                (samples, channels) with up to 8 channels is downmixed to mono.
            videos (`np.ndarray` or list of them): uint8 frames (frames, height, width), (frames, height, width,
                channels) or (frames, channels, height, width) with 1 or 3 channels, 25 fps mouth crops (auto-avsr:
                96×96). With `audio` too, each waveform is cut or zero-padded to its clip's `frames × 640` samples (a
                warning past 1 s of mismatch).
            text (`str` or list of `str`): transcripts. Alone, they are tokenised as the tokenizer does (`input_ids`,
                `attention_mask`); with a task, they follow the prompt (and `labels` mark them); with media and no
                task, they are the `labels` of a training batch.
            task (`str`, *optional*): `"asr"`, `"vsr"` or `"avsr"`: lay out that task's sequence (`input_ids`). Without
                a task (and without `prompt`) only the media and the transcripts are returned: a training batch.
            audio_rate, video_rate (`int`, *optional*): compression rates of the sequence (default: the finest).
            prompt (`str` or list of `str`, *optional*): an instruction of your own (context words, ...) instead of
                the task's; with no `task`, the task follows from the media.
            kwargs: transformers' processor arguments, flat or grouped (`audio_kwargs`, `videos_kwargs`,
                `text_kwargs`, `common_kwargs`), routed as transformers routes them:
                - `sampling_rate` (required with `audio`: unlike transformers' feature extractors, which warn and
                  assume their rate, a missing rate is refused, because `librosa.load` returns 22.05 kHz by default
                  and such audio would be transcribed silently wrong) and `resample` (default False: refuse audio at
                  another rate than 16 kHz).
                - `padding` (default True: the longest row), `max_length`, `pad_to_multiple_of`, `truncation`,
                  `padding_side` (default `"left"`, for generation) of `input_ids`; a row is never cut (that would
                  drop media placeholders or words), so one longer than `max_length` is refused.
                - `do_sample_frames`, `fps`, `num_frames`: accepted only as "every frame of a 25 fps clip".
                - `return_tensors`: `"pt"` (default) or `"np"`.
                A name no part of the processor takes is refused (transformers ignores it with a warning), so that a
                misspelt or misplaced setting is not silently dropped.
        """
        output_kwargs = self._merge_call_kwargs(kwargs)
        if audio is None and videos is None and text is None:
            raise ValueError("OmniAVSRProcessor needs at least one of `audio`, `videos` or `text`.")
        audio_kwargs, text_kwargs = output_kwargs["audio_kwargs"], output_kwargs["text_kwargs"]
        return_tensors = output_kwargs["common"]["return_tensors"]
        data = {}
        batch_sizes = {}
        clips, waveforms = None, []
        if videos is not None:
            check_video_kwargs(output_kwargs["videos_kwargs"])
            clips = [
                normalize_frames(self.prepare_frames(clip, f"videos[{index}]"), *self.video_settings)
                for index, clip in enumerate(_as_batch(videos, "videos"))
            ]
            batch_sizes["videos"] = len(clips)
            data["pixel_values_videos"], data["video_mask"] = pad_videos(clips)
        if audio is not None:
            num_frames = [clip.shape[0] for clip in clips] if clips is not None else None
            waveforms = self._prepare_waveforms(
                audio, audio_kwargs.get("sampling_rate"), bool(audio_kwargs.get("resample")), num_frames
            )
            batch_sizes["audio"] = len(waveforms)
            data["input_features"], data["input_features_mask"] = log_mel_features(self.feature_extractor, waveforms)
        texts = None
        if text is not None:
            texts = [text] if isinstance(text, str) else _as_batch(text, "text")
            batch_sizes["text"] = len(texts)
        check_batch_sizes(batch_sizes)
        if task is None and prompt is None:
            if texts is not None and not data:
                data.update(self._tokenize_text(texts, text_kwargs))
            elif texts is not None:
                data["labels"] = self._transcript_labels(texts)
        else:
            data.update(self._sequences(data, texts, task, audio_rate, video_rate, prompt, text_kwargs))
            if data["task"] == "asr":
                for index, waveform in enumerate(waveforms):
                    check_not_silent(waveform, f"audio[{index}]")
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _merge_call_kwargs(self, kwargs: dict) -> dict:
        """transformers' structured kwargs, with a clear error for a name no part of the processor takes or a setting
        the processor cannot apply. A flat setting goes to every group that takes it (transformers' routing), so it is
        refused only when none of those groups can apply it (`padding` applies to the text, not to the audio)."""
        groups = set(SUPPORTED_CALL_KWARGS) | {"common_kwargs", "images_kwargs"}
        takers = {
            group: set(OmniAVSRProcessorKwargs.__annotations__[group].__annotations__) for group in SUPPORTED_CALL_KWARGS
        }
        unexpected = sorted(key for key in set(kwargs) - groups if not any(key in keys for keys in takers.values()))
        if unexpected:
            raise ValueError(
                f"Unexpected arguments to OmniAVSRProcessor: {unexpected}; expected audio/videos/text, task, audio_rate, "
                "video_rate, prompt, transformers' processor arguments (sampling_rate, resample, padding, max_length, "
                "padding_side, return_tensors, ...) or the structured audio_kwargs/videos_kwargs/text_kwargs/"
                "common_kwargs."
            )
        for group, (supported, reason) in SUPPORTED_CALL_KWARGS.items():
            flat = {
                key for key in set(kwargs) & takers[group]
                if not any(key in SUPPORTED_CALL_KWARGS[other][0] for other in takers if key in takers[other])
            }
            unsupported = sorted(set(kwargs.get(group) or {}) - supported | flat)
            if unsupported:
                raise ValueError(
                    f"{group} {unsupported} cannot be applied by OmniAVSRProcessor: {reason}. Expected only "
                    f"{sorted(supported)} in {group}."
                )
        if kwargs.get("images_kwargs"):
            raise ValueError("OmniAVSRProcessor takes no images: expected audio and/or lip videos, not images_kwargs.")
        # Not the tokenizer's own init kwargs: a tokenizer saved with padding_side="right" must not turn the
        # generation prompts' left padding around (the processor pads the ids itself).
        merged = self._merge_kwargs(OmniAVSRProcessorKwargs, **kwargs)
        padding_side = merged["text_kwargs"].get("padding_side", "left")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        merged["text_kwargs"]["padding_side"] = padding_side
        return_tensors = next(
            (merged[group]["return_tensors"] for group in ("text_kwargs", "audio_kwargs", "videos_kwargs")
             if merged[group].get("return_tensors") is not None),
            "pt",
        )
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}.")
        merged["common"] = {"return_tensors": return_tensors}
        return merged

    def _tokenize_text(self, texts: list[str], text_kwargs: dict) -> dict:
        """Text alone, tokenised as the tokenizer does with the call's text settings (characters it cannot represent
        are refused, as for transcripts)."""
        self.transcript_ids(texts, [f"text[{index}]" for index in range(len(texts))])
        settings = {key: value for key, value in text_kwargs.items() if key != "return_tensors"}
        encoded = self.tokenizer(texts, **settings)
        return {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}

    def _sequences(self, data, texts, task, audio_rate, video_rate, prompt, text_kwargs: dict) -> dict:
        """`input_ids`, `attention_mask` (and `labels` with transcripts) of one task, placeholders expanded."""
        available = {modality for modality, key in (("audio", "input_features"), ("video", "pixel_values_videos")) if key in data}
        task = check_task(task, self.tasks) if task is not None else default_task(available, self.tasks)
        check_task_media(task, available, "this processor call")
        needs = TASK_MODALITIES[task]
        rates = {
            f"{modality}_rate": check_rate(modality, rate, self.rates(modality))
            for modality, rate in (("audio", audio_rate), ("video", video_rate))
            if modality in needs
        }
        counts = self.media_token_counts(data, **rates)
        batch_size = len(next(iter(counts.values())))
        transcripts = None
        if texts is not None:
            eos = self.tokenizer.eos_token_id
            names = [f"text[{index}]" for index in range(len(texts))]
            transcripts = [ids + [eos] for ids in self.transcript_ids(texts, names)]
        rows, row_labels = self.task_rows(task, counts, transcripts, self._prompt_ids(prompt, batch_size))
        length = padded_length([len(row) for row in rows], text_kwargs)
        padding_side = text_kwargs["padding_side"]
        input_ids, attention_mask = pad_rows(rows, self.tokenizer.pad_token_id, padding_side, length)
        output = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        if texts is not None:
            output["labels"] = pad_rows(row_labels, IGNORE_INDEX, padding_side, length)[0].numpy()
        for modality in {"audio", "video"} - set(needs):
            # The task does not read this modality: its tensors would only travel to the model unused.
            for name in MEDIA_INPUTS[modality]:
                data.pop(name, None)
        return {**output, "task": task, **rates}

    def rates(self, modality: str) -> list[int]:
        return self.audio_rates if modality == "audio" else self.video_rates

    def media_token_counts(self, media, audio_rate: int | None = None, video_rate: int | None = None) -> dict:
        """LM tokens of each clip at the given rates (`{"audio": [...], "video": [...]}`, a modality per rate given),
        from the processed media's masks (numpy arrays or tensors; a video without `video_mask` counts every frame)."""
        counts = {}
        if audio_rate is not None:
            mask_lengths = torch.as_tensor(media["input_features_mask"]).sum(-1)
            frames = audio_encoder_frames(mask_lengths, self.feature_extractor.nb_max_frames)
            counts["audio"] = compressed_length(frames, audio_rate).tolist()
        if video_rate is not None:
            if media.get("video_mask") is not None:
                frames = torch.as_tensor(media["video_mask"]).sum(-1)
            else:
                batch_size, num_frames = media["pixel_values_videos"].shape[:2]
                frames = torch.full((batch_size,), num_frames)
            counts["video"] = compressed_length(frames, video_rate).tolist()
        return counts

    def task_rows(
        self, task: str, token_counts: dict[str, list[int]], transcripts=None, prompts=None
    ) -> tuple[list[list[int]], list[list[int]]]:
        """The token ids of `task`'s sequence for each clip (`token_counts` media tokens per modality), unpadded:
        the prompt, then the clip's transcript ids when `transcripts` are given; and the labels (-100 on the prompt).
        `prompts` (ids, one per clip, or None) replace the task's instruction."""
        rows = self.sequence_tokens.batch_prompt_ids(task, token_counts, prompts)
        labels = [[IGNORE_INDEX] * len(row) for row in rows]
        if transcripts is not None:
            rows = [row + list(transcript) for row, transcript in zip(rows, transcripts)]
            labels = [label + list(transcript) for label, transcript in zip(labels, transcripts)]
        return rows, labels

    def _prompt_ids(self, prompt, batch_size: int) -> list[list[int] | None]:
        if prompt is None:
            return [None] * batch_size
        prompts = [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch_size or not all(isinstance(text, str) for text in prompts):
            raise ValueError(f"prompt must be a string or one string per clip ({batch_size}), got {prompt!r}.")
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompts]

    def _prepare_waveforms(
        self, audio, sampling_rate: int | None, resample: bool, num_frames: list[int] | None
    ) -> list[np.ndarray]:
        waveforms = []
        max_seconds = self.feature_extractor.n_samples / SAMPLING_RATE
        for index, waveform in enumerate(_as_batch(audio, "audio")):
            name = f"audio[{index}]"
            waveform = self.prepare_audio(waveform, sampling_rate, resample, name)
            if num_frames is not None and index < len(num_frames):
                # Audio-visual clips: the waveform spans exactly the video, as the reference aligns them.
                waveform = align_audio_to_frames(waveform, num_frames[index], name)
            check_clip_duration(name, waveform.shape[0] / SAMPLING_RATE, max_seconds)
            if self.normalize_waveform:
                waveform = (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-8)
            waveforms.append(waveform)
        return waveforms

    def prepare_audio(
        self, waveform, sampling_rate: int | None, resample: bool = False, name: str = "audio", task: str | None = None
    ) -> np.ndarray:
        """`feature_extraction_omni_avsr.prepare_audio`: the pipelines call it on each input, so that their errors
        name the input rather than its place in a batch."""
        return prepare_audio(waveform, sampling_rate, resample, name, task)

    def prepare_frames(self, frames, name: str = "videos") -> np.ndarray:
        """`video_processing_omni_avsr.prepare_frames` at this processor's crop size; the pipelines call it on each
        input."""
        return prepare_frames(frames, self.video_crop_size, name)

    @property
    def video_settings(self) -> tuple[int, float, float]:
        """The crop size, mean and std `normalize_frames` applies."""
        return self.video_crop_size, self.video_mean, self.video_std

    def _transcript_labels(self, texts: list[str]) -> np.ndarray:
        eos_id = self.tokenizer.eos_token_id
        names = [f"text[{index}]" for index in range(len(texts))]
        ids = [row + [eos_id] for row in self.transcript_ids(texts, names)]
        return pad_rows(ids, IGNORE_INDEX, "right")[0].numpy()

    def transcript_ids(self, texts: list[str], names: list[str]) -> list[list[int]]:
        """The token ids of each transcript (no special tokens). A transcript with characters the tokenizer cannot
        represent is refused, naming it (`names`, e.g. a label file and line) and them: they would become its unknown
        token, and labels full of `<unk>` train a model that writes nothing useful. Byte-level tokenizers (Llama 3,
        Qwen2, SmolLM2) represent every text; small vocabularies (a BPE fitted to lower-case transcripts) do not."""
        rows = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        unknown_id = self.tokenizer.unk_token_id
        if unknown_id is not None:
            for row, text, name in zip(rows, texts, names):
                if unknown_id in row:
                    raise self._unrepresentable_text_error(text, name)
        return rows

    def _unrepresentable_text_error(self, text: str, name: str) -> ValueError:
        unknown_id = self.tokenizer.unk_token_id
        characters = sorted(
            {
                character
                for character in text
                if unknown_id in self.tokenizer(character, add_special_tokens=False)["input_ids"]
            }
        )
        lowered = text.lower()
        hint = ""
        if lowered != text and unknown_id not in self.tokenizer(lowered, add_special_tokens=False)["input_ids"]:
            hint = (
                " Lower-cased, as the recipe's transcripts are, it can be (the training scripts' --lowercase_text "
                "lower-cases every transcript)."
            )
        return ValueError(
            f"{name} ({text[:60]!r}) has characters this tokenizer cannot represent: "
            f"{', '.join(repr(character) for character in characters) or 'some'}; they would become "
            f"{self.tokenizer.unk_token}. Expected text in the tokenizer's alphabet.{hint}"
        )

    def decode_transcripts(self, sequences) -> list[str]:
        """Transcripts from generated ids (only the new tokens): special tokens dropped, surrounding spaces stripped."""
        if torch.is_tensor(sequences):
            sequences = sequences.tolist()
        return [text.strip() for text in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    @property
    def model_input_names(self) -> list[str]:
        return [
            "input_ids", "attention_mask", "input_features", "input_features_mask", "pixel_values_videos",
            "video_mask", "labels",
        ]


def padded_length(lengths: list[int], text_kwargs: dict) -> int:
    """The length every row of `input_ids` is padded to under transformers' text settings (`padding`, `max_length`,
    `pad_to_multiple_of`, `truncation`). A row is never cut: a media placeholder or a word less is another input."""
    padding = text_kwargs.get("padding", True)
    max_length = text_kwargs.get("max_length")
    longest = max(lengths)
    if padding in (False, "do_not_pad"):
        if len(set(lengths)) > 1:
            raise ValueError(
                f"padding={padding!r}, but the rows are {sorted(set(lengths))} tokens long; expected padding=True "
                "(the default) or 'max_length' for a batch of different lengths."
            )
        length = longest
    elif padding in (True, "longest"):
        length = longest
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length (the length to pad every row to).")
        length = max_length
    else:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad'; got {padding!r}.")
    limit = max_length if (padding == "max_length" or text_kwargs.get("truncation")) else None
    if limit is not None and longest > limit:
        raise ValueError(
            f"A row of input_ids is {longest} tokens, longer than max_length={limit}, and rows are never cut (that "
            "would drop media placeholders or transcript words); expected max_length of at least the longest row, "
            "or shorter media."
        )
    multiple = text_kwargs.get("pad_to_multiple_of")
    return length if not multiple else -(-length // multiple) * multiple


def _as_batch(inputs, name: str) -> list:
    """A single array (or one clip given as a tensor) becomes a batch of one; an empty list is refused."""
    batch = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not batch:
        raise ValueError(f"`{name}` is an empty list; expected at least one clip.")
    return batch


__all__ = ["OmniAVSRProcessor"]
