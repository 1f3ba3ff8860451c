"""Processor for Omni-AVSR: Whisper log-mel features, lip-video preprocessing and the LM tokenizer in one object."""

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

from .media import align_audio_to_frames, is_mouth_crop, not_a_mouth_crop_error


MARKER_TOKENS = ("<audio>", "</audio>", "<video>", "</video>")
SAMPLING_RATE = 16000
IGNORE_INDEX = -100


class OmniAVSRProcessor(ProcessorMixin):
    r"""
    Turns waveforms, lip videos and transcripts into Omni-AVSR inputs.

    - audio → `input_features` (Whisper log-mel, padded to the 30 s window) and `input_features_mask` (the Whisper
      feature extractor's mask, renamed so it does not collide with a text mask). Each waveform is first normalised
      to zero mean and unit variance over the clip, as the official recipe does before feature extraction.
    - videos → `pixel_values_videos` (batch, frames, 1, crop, crop) and `video_mask` (batch, frames): centre crop,
      grayscale, scaled to [0, 1], normalised with AV-HuBERT's mean and std, zero-padded (in normalised space) to
      the longest clip. Training's random crop is an augmentation applied before (`AudioVisualAugmentation`), so
      the centre crop of an 88×88 frame is then a no-op.
    - text → `labels`: transcript ids + EOS, right-padded with -100 (the model builds the prompt itself).

    The tokenizer gets the `<audio>`, `</audio>`, `<video>`, `</video>` markers and a `<pad>` token when it lacks them;
    the model's embeddings must then cover `len(processor.tokenizer)` (see
    `OmniAVSRForConditionalGeneration.from_components`).

    Args:
        feature_extractor (`WhisperFeatureExtractor`): computes log-mel features.
        tokenizer (`PreTrainedTokenizerBase`): the LM's tokenizer.
        video_crop_size (`int`, defaults to 88): side of the square lip crop fed to the video encoder.
        video_mean (`float`, defaults to 0.421): normalisation mean of grayscale pixels in [0, 1].
        video_std (`float`, defaults to 0.165): normalisation std.
        normalize_waveform (`bool`, defaults to `True`): zero-mean/unit-variance normalisation of each waveform.
    """

    def __init__(
        self,
        feature_extractor=None,
        tokenizer=None,
        video_crop_size: int = 88,
        video_mean: float = 0.421,
        video_std: float = 0.165,
        normalize_waveform: bool = True,
    ):
        self.video_crop_size = video_crop_size
        self.video_mean = video_mean
        self.video_std = video_std
        self.normalize_waveform = normalize_waveform
        super().__init__(feature_extractor, self.prepare_tokenizer(tokenizer))

    @staticmethod
    def prepare_tokenizer(tokenizer):
        """Add the Omni-AVSR markers and a pad token when missing (in place); returns the tokenizer."""
        if tokenizer is None:
            return tokenizer
        missing = [token for token in MARKER_TOKENS if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        return tokenizer

    def __call__(
        self,
        audio=None,
        videos=None,
        text=None,
        sampling_rate: int | None = None,
        resample: bool = False,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        r"""
        Args:
            audio (`np.ndarray` or list of them): 16 kHz waveforms, shape (samples,); (channels, samples) or
                (samples, channels) with up to 8 channels is downmixed to mono.
            videos (`np.ndarray` or list of them): uint8 frames (frames, height, width) or (frames, height, width,
                channels) with 1 or 3 channels, 25 fps mouth crops (auto-avsr: 96×96). With `audio` too, each
                waveform is cut or zero-padded to its clip's `frames × 640` samples (a warning past 1 s of mismatch).
            text (`str` or list of `str`): transcripts, to build `labels`.
            sampling_rate (`int`): the audio's sampling rate; required with `audio`.
            resample (`bool`): resample audio that is not at 16 kHz instead of refusing it.
        """
        if kwargs:
            raise ValueError(f"Unexpected arguments to OmniAVSRProcessor: {sorted(kwargs)}.")
        if audio is None and videos is None and text is None:
            raise ValueError("OmniAVSRProcessor needs at least one of `audio`, `videos` or `text`.")
        data = {}
        batch_sizes = {}
        clips = None
        if videos is not None:
            clips = [self._prepare_frames(clip, index) for index, clip in enumerate(_as_list(videos))]
            batch_sizes["videos"] = len(clips)
            data["pixel_values_videos"], data["video_mask"] = _pad_videos(clips)
        if audio is not None:
            num_frames = [clip.shape[0] for clip in clips] if clips is not None else None
            waveforms = self._prepare_waveforms(audio, sampling_rate, resample, num_frames)
            batch_sizes["audio"] = len(waveforms)
            data["input_features"], data["input_features_mask"] = self._log_mel_features(waveforms)
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            batch_sizes["text"] = len(texts)
            data["labels"] = self._labels(texts)
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"Batch sizes disagree between inputs: {batch_sizes}.")
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _prepare_waveforms(
        self, audio, sampling_rate: int | None, resample: bool, num_frames: list[int] | None
    ) -> list[np.ndarray]:
        if sampling_rate is None:
            raise ValueError(
                "`sampling_rate` is required with `audio` (expected 16000 Hz): a waveform at the wrong rate would be "
                "transcribed silently wrong."
            )
        waveforms = []
        for index, waveform in enumerate(_as_list(audio)):
            waveform = _to_mono(np.asarray(waveform, dtype=np.float32), index)
            if waveform.size == 0:
                raise ValueError(f"audio[{index}] is empty.")
            if sampling_rate != SAMPLING_RATE:
                if not resample:
                    raise ValueError(
                        f"audio is at {sampling_rate} Hz but Omni-AVSR expects {SAMPLING_RATE} Hz; resample it or "
                        "pass resample=True."
                    )
                import soxr

                waveform = soxr.resample(waveform, sampling_rate, SAMPLING_RATE).astype(np.float32)
            if num_frames is not None and index < len(num_frames):
                # Audio-visual clips: the waveform spans exactly the video, as the reference aligns them.
                waveform = align_audio_to_frames(waveform, num_frames[index], f"audio[{index}]")
            max_samples = self.feature_extractor.n_samples
            if waveform.shape[0] > max_samples:
                raise ValueError(
                    f"audio[{index}] lasts {waveform.shape[0] / SAMPLING_RATE:.2f} s; the Whisper encoder's window is "
                    f"{max_samples / SAMPLING_RATE:.0f} s. Split longer recordings into segments."
                )
            if self.normalize_waveform:
                waveform = (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-8)
            waveforms.append(waveform)
        return waveforms

    def _log_mel_features(self, waveforms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Whisper log-mel features of the 30 s window and the mask of the frames that hold audio.

        Hand-written because `WhisperFeatureExtractor` computes all 3000 frames of the window even for a 2 s clip;
        here only the frames that touch the clip are computed and the rest (an all-zero window) is filled with the
        value the full computation gives, which is exactly the same output ~10× faster for LRS-length clips.
        """
        extractor = self.feature_extractor
        num_frames = extractor.n_samples // extractor.hop_length
        if getattr(extractor, "dither", 0.0) != 0.0 or not hasattr(extractor, "mel_filters"):
            features = extractor(
                waveforms, sampling_rate=SAMPLING_RATE, return_attention_mask=True, padding="max_length",
                return_tensors="np",
            )
            return features["input_features"], features["attention_mask"]
        window = torch.hann_window(extractor.n_fft)
        mel_filters = torch.from_numpy(extractor.mel_filters).float()
        features = np.empty((len(waveforms), mel_filters.shape[1], num_frames), dtype=np.float32)
        mask = np.zeros((len(waveforms), num_frames), dtype=np.int64)
        for index, waveform in enumerate(waveforms):
            # Zeros after the clip keep every frame that touches it exact (their windows and the end reflection
            # see zeros, as in the padded window); frames further on see only zeros.
            span = min(extractor.n_samples, len(waveform) + 2 * extractor.n_fft)
            padded = torch.zeros(span)
            padded[: len(waveform)] = torch.from_numpy(waveform)
            stft = torch.stft(padded, extractor.n_fft, extractor.hop_length, window=window, return_complex=True)
            exact = num_frames
            if span < extractor.n_samples:
                exact = min(num_frames, (span - extractor.n_fft // 2) // extractor.hop_length)
            log_spec = torch.clamp(mel_filters.T @ (stft[:, :exact].abs() ** 2), min=1e-10).log10()
            silence = -10.0  # log10 of the clamp floor: what an all-zero window gives
            floor = max(float(log_spec.max()), silence) - 8.0
            features[index] = (max(silence, floor) + 4.0) / 4.0
            features[index, :, :exact] = ((torch.maximum(log_spec, torch.tensor(floor)) + 4.0) / 4.0).numpy()
            mask[index, : -(-len(waveform) // extractor.hop_length)] = 1
        return features, mask

    def _prepare_frames(self, frames, index: int) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"videos[{index}] has dtype {frames.dtype}; expected uint8 frames in [0, 255].")
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
            raise ValueError(
                f"videos[{index}] has shape {frames.shape}; expected (frames, height, width) or (frames, height, "
                "width, 1 or 3 channels)."
            )
        num_frames, height, width = frames.shape[:3]
        crop = self.video_crop_size
        if num_frames == 0:
            raise ValueError(f"videos[{index}] has no frames.")
        if not is_mouth_crop(height, width):
            raise not_a_mouth_crop_error(f"videos[{index}]", height, width)
        if height < crop or width < crop:
            raise ValueError(
                f"videos[{index}] frames are {height}×{width}; expected mouth crops of at least {crop}×{crop} "
                "(auto-avsr preprocessing gives 96×96)."
            )
        top, left = (height - crop) // 2, (width - crop) // 2
        pixels = frames[:, top : top + crop, left : left + crop].astype(np.float32) / 255.0
        if pixels.shape[-1] == 3:
            # ITU-R 601 luma on [0, 1] values, as torchvision's `Grayscale` in the official recipe.
            pixels = pixels @ np.array([0.2989, 0.587, 0.114], dtype=np.float32)
        else:
            pixels = pixels[..., 0]
        return (pixels - self.video_mean) / self.video_std

    def _labels(self, texts: list[str]) -> np.ndarray:
        eos_id = self.tokenizer.eos_token_id
        ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos_id] for text in texts]
        labels = np.full((len(ids), max(len(row) for row in ids)), IGNORE_INDEX, dtype=np.int64)
        for row, row_ids in enumerate(ids):
            labels[row, : len(row_ids)] = row_ids
        return labels

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Decode generated ids into transcripts (special tokens dropped, surrounding spaces stripped)."""
        if torch.is_tensor(sequences):
            sequences = sequences.tolist()
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)
        return [text.strip() for text in texts]

    @property
    def model_input_names(self) -> list[str]:
        return ["input_features", "input_features_mask", "pixel_values_videos", "video_mask", "labels"]


def _as_list(inputs) -> list:
    """A single array (or one clip given as a tensor) becomes a batch of one."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def _to_mono(waveform: np.ndarray, index: int) -> np.ndarray:
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim == 2 and min(waveform.shape) <= 8:
        channel_axis = 0 if waveform.shape[0] <= 8 and waveform.shape[0] < waveform.shape[1] else 1
        return waveform.mean(axis=channel_axis)
    raise ValueError(
        f"audio[{index}] has shape {waveform.shape}; expected (samples,) or a multi-channel (channels, samples) / "
        "(samples, channels) array with at most 8 channels."
    )


def _pad_videos(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    max_frames = max(clip.shape[0] for clip in clips)
    crop = clips[0].shape[-1]
    pixel_values = np.zeros((len(clips), max_frames, 1, crop, crop), dtype=np.float32)
    video_mask = np.zeros((len(clips), max_frames), dtype=np.int64)
    for index, clip in enumerate(clips):
        pixel_values[index, : clip.shape[0], 0] = clip
        video_mask[index, : clip.shape[0]] = 1
    return pixel_values, video_mask


__all__ = ["OmniAVSRProcessor"]
