"""The video half of the Omni-AVSR processor: lip videos as the video encoder reads them (uint8 mouth crops of a
clip's length, centre-cropped to `video_crop_size`, grayscale, AV-HuBERT's normalisation, padded to the longest clip).

Functions that the processor calls with its `video_crop_size`, `video_mean` and `video_std`, not a video processor of
its own: a custom video-processor attribute of the processor did not load through `AutoProcessor` (measured for issue
25), so the settings stay in `processor_config.json` and these apply them.

Copied into Hub repositories with the processing file (a flat module, relative imports only).
"""

import math
import numbers

import numpy as np

from .media import (
    LUMA_WEIGHTS,
    MOUTH_CROP_SIZE,
    VIDEO_FPS,
    check_clip_duration,
    check_min_duration,
    is_mouth_crop,
    not_a_mouth_crop_error,
)


def prepare_frames(frames, crop_size: int, name: str = "videos") -> np.ndarray:
    """`frames` as (frames, height, width, channels) uint8 mouth crops, or an error naming `name` for frames of
    another type, layout or size, none at all, or more than a clip of `MAX_CLIP_SECONDS` at 25 fps (as audio
    longer than the Whisper window is refused). Channels-first frames (frames, 1 or 3, height, width), as torchcodec
    decodes them and transformers' video processors take them, are moved to channels-last. The pipelines call it on
    each input."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"{name} has dtype {frames.dtype}; expected uint8 frames in [0, 255].")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim == 4 and frames.shape[1] in (1, 3) and frames.shape[-1] not in (1, 3):
        frames = frames.transpose(0, 2, 3, 1)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} has shape {frames.shape}; expected (frames, height, width), (frames, height, width, 1 or 3 "
            "channels) or (frames, 1 or 3 channels, height, width)."
        )
    num_frames, height, width = frames.shape[:3]
    if num_frames == 0:
        raise ValueError(f"{name} has no frames.")
    check_min_duration(name, num_frames / VIDEO_FPS, f"{num_frames} frame(s)")
    check_clip_duration(name, num_frames / VIDEO_FPS)
    if not is_mouth_crop(height, width):
        raise not_a_mouth_crop_error(name, height, width)
    if height < crop_size or width < crop_size:
        raise ValueError(
            f"{name} frames are {height}×{width}; expected mouth crops of at least {crop_size}×{crop_size} (auto-avsr "
            "preprocessing gives 96×96)."
        )
    return frames


def normalize_frames(frames: np.ndarray, crop_size: int, mean: float, std: float) -> np.ndarray:
    """Centre crop, grayscale and AV-HuBERT's normalisation of frames `prepare_frames` accepted."""
    height, width = frames.shape[1:3]
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    pixels = frames[:, top : top + crop_size, left : left + crop_size].astype(np.float32) / 255.0
    if pixels.shape[-1] == 3:
        # ITU-R 601 luma on [0, 1] values, as torchvision's `Grayscale` in the official recipe.
        pixels = pixels @ LUMA_WEIGHTS
    else:
        pixels = pixels[..., 0]
    return (pixels - mean) / std


def check_video_settings(crop_size, mean, std) -> None:
    """Refuse video settings (given, or read from `processor_config.json`) that would make every clip an empty crop
    or NaN / ±inf pixels (a zero std divides by zero)."""
    if isinstance(crop_size, bool) or not isinstance(crop_size, numbers.Integral) or crop_size < 1:
        raise ValueError(
            f"video_crop_size must be a whole number of pixels ≥ 1 (default {MOUTH_CROP_SIZE}), got {crop_size!r}."
        )
    if not _is_number(mean) or not 0.0 <= mean <= 1.0:
        raise ValueError(
            f"video_mean must be a number in [0, 1], the mean of grayscale pixels scaled to [0, 1] (default 0.421); "
            f"got {mean!r}."
        )
    if not _is_number(std) or not (math.isfinite(std) and std > 0):
        raise ValueError(
            f"video_std must be a finite number above 0, the std of grayscale pixels scaled to [0, 1] (default 0.165); "
            f"got {std!r}."
        )


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def pad_videos(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised clips zero-padded (zero: the mean pixel) to the longest, as (batch, frames, 1, crop, crop), and the
    mask of their frames."""
    max_frames = max(clip.shape[0] for clip in clips)
    crop = clips[0].shape[-1]
    pixel_values = np.zeros((len(clips), max_frames, 1, crop, crop), dtype=np.float32)
    video_mask = np.zeros((len(clips), max_frames), dtype=np.int64)
    for index, clip in enumerate(clips):
        pixel_values[index, : clip.shape[0], 0] = clip
        video_mask[index, : clip.shape[0]] = 1
    return pixel_values, video_mask


def check_video_kwargs(videos_kwargs: dict) -> None:
    """Frame sampling settings are accepted only where they mean "every frame of a 25 fps clip": the lips are read
    frame by frame at the rate the video encoder was trained on."""
    if videos_kwargs.get("do_sample_frames") or videos_kwargs.get("num_frames") is not None:
        raise ValueError(
            "do_sample_frames / num_frames would drop frames, but Omni-AVSR reads every frame of a 25 fps lip video; "
            "expected them unset."
        )
    fps = videos_kwargs.get("fps")
    if fps is not None and fps != VIDEO_FPS:
        raise ValueError(
            f"fps={fps!r}, but Omni-AVSR reads {VIDEO_FPS:g} fps lip videos; expected a clip at {VIDEO_FPS:g} fps "
            "(omni_avsr.load_clip resamples a video to it)."
        )
