"""Mouth cropping of a face video given a chunk of frames at a time, for videos too long to hold in memory.

`StreamingMouthCropper` gives the crops `MouthCropper` would give for the whole video, chunk by chunk: the face track
runs across chunk borders (landmarks interpolated over frames without a face and smoothed over the same window, with
the frames either side of a border), so a long file cropped a window at a time matches the same file cropped whole. A
frame is cropped once the frames its smoothing window reaches have landmarks, so it holds back half a window of
frames, plus a run of frames without a face until a face returns. A run longer than `max_gap_frames` is not held: its
frames keep the last face's landmarks (as the end of a video does), or are black before any face was seen, and their
`detected` flags say so; the caller reports such stretches.
"""

import numpy as np

from .mouth_cropper import MouthCropper, MouthCrops, NoFaceFoundError, _check_frames, _detect, _interpolate, _smooth


class StreamingMouthCropper:
    """Feed frames with `push` (any chunk sizes), then call `finish`; each returns the `MouthCrops` of the frames it
    completed, in order (`finish` returns the rest). `detected` is False for frames whose landmarks were interpolated
    or held."""

    def __init__(self, cropper: MouthCropper, source: str = "the video", max_gap_frames: int = 50):
        self.cropper = cropper
        self.source = source
        self.max_gap_frames = max_gap_frames
        window = cropper.config.smoothing_window
        self.half_window = window // 2 if window >= 2 else 0
        self._frames: list[np.ndarray] = []  # frames not cropped yet
        self._found: list[np.ndarray] = []  # their detected landmarks (NaN without a face)
        self._context = np.zeros((0, 68, 2))  # landmarks of the last frames cropped, for the smoothing window
        self.frames_done = 0
        self.faces_found = 0

    def push(self, frames: np.ndarray) -> MouthCrops:
        frames = _check_frames(frames, self.source)
        found = _detect(self.cropper.detector, frames)
        self.faces_found += int((~np.isnan(found).any(axis=(1, 2))).sum())
        self._frames += list(frames)
        self._found += list(found)
        return self._crop_ready(final=False)

    def finish(self) -> MouthCrops:
        if self.faces_found == 0:
            raise NoFaceFoundError(
                f"No face found in any of the {self.frames_done + len(self._frames)} frames of {self.source}; "
                "expected a video of a speaker's face (or frames that are already mouth crops, which need no cropping)."
            )
        return self._crop_ready(final=True)

    def _crop_ready(self, final: bool) -> MouthCrops:
        found = np.asarray(self._found, dtype=np.float64).reshape(-1, 68, 2)
        detected = ~np.isnan(found).any(axis=(1, 2))
        anchored = len(self._context) > 0
        if anchored:
            # The last frame cropped anchors the interpolation of frames without a face at the start of this chunk.
            found = np.concatenate([self._context[-1:], found])
            detected = np.concatenate([[True], detected])
        if not detected.any():
            if not final and len(found) <= self.max_gap_frames:
                return self._empty()
            return self._blank(len(self._frames))  # no face seen yet: nothing to hold
        tracked = _interpolate(found, detected)[int(anchored) :]
        detected = detected[int(anchored) :]
        trailing_gap = len(detected) - 1 - np.flatnonzero(detected)[-1] if detected.any() else len(detected)
        known = len(detected) if final or trailing_gap > self.max_gap_frames else len(detected) - trailing_gap
        ready = known if final else max(0, known - self.half_window)
        if ready == 0:
            return self._empty()
        window = np.concatenate([self._context, tracked[: ready + self.half_window]])
        smoothed = _smooth(window, self.cropper.config.smoothing_window)[len(self._context) :][:ready]
        crops = self.cropper.crop(
            np.stack(self._frames[:ready]), tracked[:ready], smoothed, detected[:ready], self.source, self.frames_done
        )
        self._context = np.concatenate([self._context, tracked[:ready]])[-max(self.half_window, 1) :]
        self._release(ready)
        return crops

    def _release(self, count: int) -> None:
        del self._frames[:count], self._found[:count]
        self.frames_done += count

    def _empty(self) -> MouthCrops:
        return self._blank(0)

    def _blank(self, count: int) -> MouthCrops:
        """Black crops for `count` frames that have no landmarks to crop by."""
        size = self.cropper.config.crop_size
        channels = self._frames[0].shape[2:] if self._frames else ()
        self._release(count)
        return MouthCrops(
            frames=np.zeros((count, size, size, *channels), np.uint8),
            landmarks=np.full((count, 68, 2), np.nan, np.float32),
            detected=np.zeros(count, bool),
            transforms=np.full((count, 2, 3), np.nan, np.float32),
        )
