"""Training augmentation of the Omni-AVSR reference recipe, on decoded numpy clips and reproducible from a seed.

Audio: time masking (up to 0.4 s per second) then babble noise at an SNR drawn from {-5, 0, 5, 10, 15, 20 dB,
clean}. Video: random 88×88 crop then time masking (up to 10 frames per second). Everything draws from a
`numpy.random.Generator`, so a seed fixes the result.
"""

import os
from collections.abc import Sequence

import numpy as np

from ..media import MOUTH_CROP_SIZE, SAMPLING_RATE, VIDEO_FPS, load_audio


DEFAULT_SNR_LEVELS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, None)  # None: the clip stays clean


def noise_segment(noise: np.ndarray, length: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A random `length`-sample stretch of `noise`; a recording shorter than that is looped."""
    if len(noise) == 0:
        raise ValueError("The noise recording is empty.")
    rng = np.random.default_rng(rng)
    if len(noise) >= length:
        start = rng.integers(0, len(noise) - length + 1)
        return noise[start : start + length]
    start = rng.integers(0, len(noise))
    return np.take(noise, np.arange(start, start + length), mode="wrap")


def add_noise(
    audio: np.ndarray, noise: np.ndarray, snr_db: float | None, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Mix a random segment of `noise` into `audio` at exactly `snr_db`.

    The SNR is `10·log10(P_audio / P_noise)` with P the mean power over the mixed segment (the clip's length),
    the definition torchaudio's `add_noise` uses in the reference. `snr_db=None` returns the clip unchanged; so
    does a silent clip, whose SNR is undefined (the reference adds nothing either).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if snr_db is None:
        return audio.copy()
    segment = noise_segment(noise, len(audio), rng).astype(np.float64)
    audio_power = np.mean(np.square(audio, dtype=np.float64))
    noise_power = np.mean(np.square(segment))
    if audio_power == 0:
        return audio.copy()
    if noise_power == 0:
        raise ValueError(f"The noise segment drawn is silent, so no scaling reaches {snr_db} dB SNR.")
    scale = np.sqrt(audio_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * segment).astype(np.float32)


def time_mask(
    values: np.ndarray, window: int, stride: int, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Zero random spans along the first axis: one span per `stride` steps, each shorter than `window`.

    Draws as the reference's `AdaptiveTimeMask`: per span, one number in [0, window) bounds the start (a span is
    skipped when it is 0) and another is the span's length (clipped at the end); spans may overlap. For audio at
    16 kHz, `window=6400, stride=16000` masks up to 0.4 s per second; for 25 fps video, `window=10, stride=25`
    masks up to 9 frames per second (the reference's "10" is an exclusive bound).
    """
    rng = np.random.default_rng(rng)
    masked = np.array(values, copy=True)
    length = len(masked)
    if window <= 0 or length == 0:
        return masked
    num_spans = -(-length // stride)
    for start_bound, span in rng.integers(0, window, size=(num_spans, 2)):
        if start_bound == 0 or start_bound >= length:
            continue
        start = rng.integers(0, length - start_bound)
        masked[start : start + span] = 0
    return masked


def random_crop(frames: np.ndarray, size: int = MOUTH_CROP_SIZE, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Crop the same random `size`×`size` window from every frame of (frames, height, width[, channels])."""
    height, width = frames.shape[1:3]
    if height < size or width < size:
        raise ValueError(f"Cannot crop {size}×{size} from frames of {height}×{width}.")
    rng = np.random.default_rng(rng)
    top = rng.integers(0, height - size + 1)
    left = rng.integers(0, width - size + 1)
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


class AudioVisualAugmentation:
    """The reference's training augmentation for one clip; call it with the clip's arrays and a generator.

    Args:
        noise_path: babble-noise recording (any file `omni_avsr.load_audio` reads); `None` disables noise.
        snr_levels: SNRs in dB drawn uniformly per clip; `None` in the list means "no noise".
        audio_mask_window, audio_mask_stride: audio time mask in samples (see `time_mask`).
        video_mask_window, video_mask_stride: video time mask in frames.
        crop_size: side of the random crop; `None` keeps the frames whole (the processor centre-crops).
    """

    def __init__(
        self,
        noise_path: str | os.PathLike | None = None,
        snr_levels: Sequence[float | None] = DEFAULT_SNR_LEVELS,
        audio_mask_window: int = int(0.4 * SAMPLING_RATE),
        audio_mask_stride: int = SAMPLING_RATE,
        video_mask_window: int = 10,
        video_mask_stride: int = int(VIDEO_FPS),
        crop_size: int | None = MOUTH_CROP_SIZE,
    ):
        if not snr_levels:
            raise ValueError("snr_levels must name at least one SNR (use None for a clean clip).")
        self.noise = load_audio(noise_path) if noise_path is not None else None
        self.snr_levels = tuple(snr_levels)
        self.audio_mask_window = audio_mask_window
        self.audio_mask_stride = audio_mask_stride
        self.video_mask_window = video_mask_window
        self.video_mask_stride = video_mask_stride
        self.crop_size = crop_size

    @classmethod
    def noise_only(cls, noise_path: str | os.PathLike, snr_db: float) -> "AudioVisualAugmentation":
        """Noise at one fixed SNR and nothing else: the robustness evaluation of the paper."""
        return cls(noise_path, snr_levels=(snr_db,), audio_mask_window=0, video_mask_window=0, crop_size=None)

    def __call__(
        self, audio: np.ndarray | None, frames: np.ndarray | None, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Augment a clip's waveform and/or frames (either may be `None`); returns them in the same order."""
        rng = np.random.default_rng(rng)
        if audio is not None:
            audio = time_mask(audio, self.audio_mask_window, self.audio_mask_stride, rng)
            if self.noise is not None:
                snr_db = self.snr_levels[rng.integers(len(self.snr_levels))]
                audio = add_noise(audio, self.noise, snr_db, rng)
        if frames is not None:
            if self.crop_size is not None:
                frames = random_crop(frames, self.crop_size, rng)
            frames = time_mask(frames, self.video_mask_window, self.video_mask_stride, rng)
        return audio, frames
