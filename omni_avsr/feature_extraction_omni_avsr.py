"""The audio half of the Omni-AVSR processor: a waveform as the model reads it (mono, 16 kHz, finite, long enough, not
silent for speech recognition from audio alone) and its Whisper log-mel features, computed for the speech only.

Functions that the processor calls with its `WhisperFeatureExtractor`, not a feature-extractor class of its own: the
processor's folders name transformers' `WhisperFeatureExtractor` (`preprocessor_config.json`), and a class of ours in
its place would need remote code to load a folder that loads without it today.

Copied into Hub repositories with the processing file (a flat module, relative imports only).
"""

import numbers

import numpy as np
import torch

from .input_checks import check_finite
from .media import SAMPLING_RATE, check_clip_duration, check_min_duration


def prepare_audio(
    waveform, sampling_rate: int | None, resample: bool = False, name: str = "audio", task: str | None = None
) -> np.ndarray:
    """`waveform` as the processor reads it: float32 mono at 16 kHz (resampled when `resample`), or an error naming
    `name` for audio that is empty or shorter than `MIN_CLIP_SECONDS`, not finite, of an unknown layout or at
    another rate, or silent for `task="asr"` (see `check_not_silent`). The pipelines call it on each input, so
    that their errors name the input rather than its place in a batch."""
    if sampling_rate is None:
        raise ValueError(
            "`sampling_rate` is required with `audio` (expected 16000 Hz): a waveform at the wrong rate would be "
            "transcribed silently wrong (librosa.load, for one, returns 22050 Hz unless given sr=16000)."
        )
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, numbers.Integral) or sampling_rate <= 0:
        raise ValueError(
            f"sampling_rate must be a whole number of Hz above 0 (Omni-AVSR expects {SAMPLING_RATE}); got "
            f"{sampling_rate!r}."
        )
    waveform = _to_mono(np.asarray(waveform, dtype=np.float32), name)
    if waveform.size == 0:
        raise ValueError(f"{name} is empty.")
    check_min_duration(name, waveform.size / sampling_rate, f"{waveform.size} sample(s)")
    check_finite(name, waveform)
    if task == "asr":
        # Audio alone is not aligned to video: a clip too long is that before it is silent.
        check_clip_duration(name, waveform.size / sampling_rate)
        check_not_silent(waveform, name)
    if sampling_rate != SAMPLING_RATE:
        if not resample:
            raise ValueError(
                f"{name} is at {sampling_rate} Hz but Omni-AVSR expects {SAMPLING_RATE} Hz; resample it or pass "
                "resample=True."
            )
        import soxr

        waveform = soxr.resample(waveform, sampling_rate, SAMPLING_RATE).astype(np.float32)
    return waveform


def log_mel_features(extractor, waveforms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Whisper log-mel features of the 30 s window (`extractor`: a `WhisperFeatureExtractor`) and the mask of the frames that hold audio.

    Hand-written because `WhisperFeatureExtractor` computes all 3000 frames of the window even for a 2 s clip;
    here only the frames that touch the clip are computed and the rest (an all-zero window) is filled with the
    value the full computation gives, which is exactly the same output ~10× faster for LRS-length clips.
    """
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


def check_not_silent(waveform: np.ndarray, name: str) -> None:
    """Refuse digital silence (every sample zero) to speech recognition from audio alone: there is nothing to hear,
    and the model writes a transcript anyway. Audio-visual recognition takes it (a muted microphone: the lips carry
    the words), and so does training."""
    if not np.any(waveform):
        raise ValueError(
            f"{name} is digital silence (every sample is zero): nothing to transcribe with task='asr'; expected "
            "recorded audio, or task 'vsr' / 'avsr' when the video carries the words."
        )


def _to_mono(waveform: np.ndarray, name: str) -> np.ndarray:
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim == 2 and min(waveform.shape) <= 8:
        channel_axis = 0 if waveform.shape[0] <= 8 and waveform.shape[0] < waveform.shape[1] else 1
        return waveform.mean(axis=channel_axis)
    raise ValueError(
        f"{name} has shape {waveform.shape}; expected (samples,) or a multi-channel (channels, samples) / "
        "(samples, channels) array with at most 8 channels."
    )
