"""Face video → aligned 96×96 mouth crops, the input the lip-reading models were trained on.

The steps follow the preprocessing of the reference recipe (auto-avsr): landmarks of the largest face in every
frame; frames without a face get landmarks interpolated linearly from the nearest frames that have one (held at
the ends); the landmarks are smoothed over a 12-frame window, which steadies the face's shape, rotation and scale,
while the position stays the frame's own; a similarity transform (rotation, uniform scale, translation, fitted
robustly by least median of squares) takes the stable points onto the reference face in its 256×256 frame; the
crop is the square centred on the mouth landmarks there. The transform and the cut are applied as one warp straight
into the 96×96 output, so the mouth is centred to the sub-pixel and a mouth near the frame's edge still gives a
full crop (padded with black). Everything is deterministic: the same frames give the same crops.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from .landmarks import DlibLandmarkDetector
from .reference_face import MOUTH_POINTS, REFERENCE_FACE, STABLE_POINTS


NUM_LANDMARKS = 68


class NoFaceFoundError(ValueError):
    """No frame of a video shows a face the detector finds."""


@dataclass(frozen=True)
class MouthCropConfig:
    """How mouth crops are made.

    Attributes:
        crop_size: side of the square crops (96: auto-avsr's, whose 88×88 centre the video encoder reads).
        smoothing_window: frames the landmarks are averaged over (the frame and `smoothing_window // 2` either side).
        detector_upsample: passed to `DlibLandmarkDetector(upsample=...)` when no detector is given.
    """

    crop_size: int = 96
    smoothing_window: int = 12
    detector_upsample: int = 0

    def __post_init__(self):
        if self.crop_size < 1 or self.smoothing_window < 0 or self.detector_upsample < 0:
            raise ValueError(
                f"MouthCropConfig needs crop_size ≥ 1, smoothing_window ≥ 0 and detector_upsample ≥ 0, got {self}."
            )


@dataclass
class MouthCrops:
    """What `MouthCropper` returns for a clip of T frames.

    Attributes:
        frames: uint8 (T, crop_size, crop_size), or (T, crop_size, crop_size, 3) for RGB input.
        landmarks: float32 (T, 68, 2) landmarks in the input frames' pixels: the detector's (or the given) ones,
            interpolated where `detected` is False.
        detected: bool (T,), whether the frame's landmarks were found rather than interpolated.
        transforms: float32 (T, 2, 3) affine maps from input-frame pixels to crop pixels (`cv2.warpAffine` form).
    """

    frames: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    transforms: np.ndarray


class MouthCropper:
    """Crops the mouth out of face video, aligned to the reference face.

    Args:
        config: a `MouthCropConfig` (default: the reference's settings).
        detector: a landmark detector (see `omni_avsr.cropping.landmarks`); default: `DlibLandmarkDetector`, made on
            first use, so a cropper given precomputed landmarks needs no dlib.
    """

    def __init__(self, config: MouthCropConfig | None = None, detector: Callable | None = None):
        self.config = config or MouthCropConfig()
        self._detector = detector

    @property
    def detector(self) -> Callable:
        if self._detector is None:
            self._detector = DlibLandmarkDetector(upsample=self.config.detector_upsample)
        return self._detector

    def __call__(
        self, frames: np.ndarray, landmarks: Sequence | np.ndarray | None = None, source: str = "the video"
    ) -> MouthCrops:
        """Crop every frame of `frames`, (T, H, W) grayscale or (T, H, W, 3) RGB uint8.

        `landmarks`, when given, replaces detection: T entries of (68, 2) (x, y) pixels, `None` or NaN for frames
        without a face (auto-avsr's landmark files have this form). `source` names the video in errors.

        Raises:
            NoFaceFoundError: no frame has a face.
            ValueError: the frames or landmarks do not have the shapes above.
        """
        frames = _check_frames(frames, source)
        if landmarks is None:
            found = _detect(self.detector, frames)
        else:
            found = _landmark_array(landmarks, len(frames), source)
        detected = ~np.isnan(found).any(axis=(1, 2))
        if not detected.any():
            raise NoFaceFoundError(
                f"No face found in any of the {len(frames)} frames of {source}; expected a video of a speaker's face "
                "(or frames that are already mouth crops, which need no cropping)."
            )
        tracked = _interpolate(found, detected)
        smoothed = _smooth(tracked, self.config.smoothing_window)
        return self.crop(frames, tracked, smoothed, detected, source)

    def crop(
        self,
        frames: np.ndarray,
        tracked: np.ndarray,
        smoothed: np.ndarray,
        detected: np.ndarray,
        source: str,
        first_index: int = 0,
    ) -> MouthCrops:
        """Warp each frame into its crop, given its landmarks and their smoothed version (the last step of
        `__call__`, shared with `StreamingMouthCropper`); `first_index` numbers the frames in errors."""
        transforms = np.stack(
            [
                self._crop_transform(*points, source, first_index + index)
                for index, points in enumerate(zip(smoothed, tracked))
            ]
        )
        size = (self.config.crop_size, self.config.crop_size)
        crops = np.stack(
            [
                cv2.warpAffine(frame, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                for frame, transform in zip(frames, transforms)
            ]
        )
        return MouthCrops(
            frames=crops, landmarks=tracked.astype(np.float32), detected=detected, transforms=transforms.astype(np.float32)
        )

    def _crop_transform(self, smoothed: np.ndarray, points: np.ndarray, source: str, index: int) -> np.ndarray:
        """The map from frame pixels to crop pixels: onto the reference face as the smoothed landmarks fit it, then
        the frame's own mouth centre to the crop's centre."""
        stable = list(STABLE_POINTS)
        to_reference, _ = cv2.estimateAffinePartial2D(smoothed[stable], REFERENCE_FACE[stable], method=cv2.LMEDS)
        if to_reference is None:
            raise ValueError(f"{source}, frame {index}: the face landmarks are degenerate (no similarity fits them).")
        mouth = to_reference[:, :2] @ points[MOUTH_POINTS].mean(axis=0) + to_reference[:, 2]
        to_crop = to_reference.copy()
        to_crop[:, 2] += self.config.crop_size / 2 - mouth
        return to_crop


def _check_frames(frames: np.ndarray, source: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)):
        raise ValueError(
            f"{source}: frames of dtype {frames.dtype} and shape {frames.shape}; expected uint8 (frames, height, "
            "width) grayscale or (frames, height, width, 3) RGB."
        )
    if len(frames) == 0:
        raise ValueError(f"{source} has no frames.")
    return frames


def _detect(detector: Callable, frames: np.ndarray) -> np.ndarray:
    found = np.full((len(frames), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    for index, frame in enumerate(frames):
        points = detector(frame)
        if points is not None:
            found[index] = points
    return found


def _landmark_array(landmarks: Sequence | np.ndarray, num_frames: int, source: str) -> np.ndarray:
    if len(landmarks) != num_frames:
        raise ValueError(
            f"{source}: {len(landmarks)} landmark entries for {num_frames} frames; expected one per frame."
        )
    found = np.full((num_frames, NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    for index, points in enumerate(landmarks):
        if points is None:
            continue
        points = np.asarray(points, dtype=np.float32)
        if points.shape != (NUM_LANDMARKS, 2):
            raise ValueError(
                f"{source}: landmarks of frame {index} have shape {points.shape}; expected ({NUM_LANDMARKS}, 2) "
                "(x, y) pixels in the 68-point markup, or None for a frame without a face."
            )
        found[index] = points
    return found


def _interpolate(found: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Landmarks of the frames without a face, linear between the nearest detections (the edge ones held)."""
    if detected.all():
        return found
    known = np.flatnonzero(detected)
    flat = found.reshape(len(found), -1)
    every_frame = np.arange(len(found))
    tracked = np.stack([np.interp(every_frame, known, column[known]) for column in flat.T], axis=1)
    return tracked.reshape(found.shape).astype(np.float32)


def _smooth(tracked: np.ndarray, window: int) -> np.ndarray:
    """Average each landmark over the window, then move the shape back onto the frame's own centroid."""
    if window < 2 or len(tracked) < 2:
        return tracked.astype(np.float64)
    smoothed = uniform_filter1d(tracked.astype(np.float64), size=2 * (window // 2) + 1, axis=0, mode="nearest")
    return smoothed + (tracked.mean(axis=1, keepdims=True) - smoothed.mean(axis=1, keepdims=True))
