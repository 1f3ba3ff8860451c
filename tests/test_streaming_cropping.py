"""Cropping a face video a chunk at a time gives the crops of cropping it whole, across chunk borders and gaps."""

import numpy as np
import pytest


pytest.importorskip("cv2", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")

from omni_avsr.cropping import MouthCropper, NoFaceFoundError  # noqa: E402
from omni_avsr.cropping.reference_face import REFERENCE_FACE  # noqa: E402
from omni_avsr.cropping.streaming import StreamingMouthCropper  # noqa: E402


def synthetic_video(num_frames: int, missing: set[int], seed: int = 0):
    """Frames that carry their index in the first pixels, and a detector that reads it back: a face that drifts and
    turns a little every frame, or none for the frames in `missing`."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, 160, 160), dtype=np.uint8)
    frames[:, 0, 0], frames[:, 0, 1] = np.arange(num_frames) // 256, np.arange(num_frames) % 256
    centre = REFERENCE_FACE.mean(axis=0)
    shapes = []
    for index in range(num_frames):
        angle = 0.05 * np.sin(index / 7)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (REFERENCE_FACE - centre) @ rotation.T * 0.5 + [80 + 3 * np.sin(index / 5), 80 + index % 4]
        shapes.append((points + rng.normal(0, 0.5, points.shape)).astype(np.float32))

    def detector(frame):
        index = int(frame[0, 0]) * 256 + int(frame[0, 1])
        return None if index in missing else shapes[index]

    return frames, detector


@pytest.mark.parametrize("chunk_sizes", [[7], [1, 40, 3], [64], [200]])
def test_chunks_give_the_crops_of_the_whole_video(chunk_sizes):
    missing = {0, 1, 30, 31, 32, 33, 34, 35, 36, 99}
    frames, detector = synthetic_video(120, missing)
    cropper = MouthCropper(detector=detector)
    whole = cropper(frames)
    stream = StreamingMouthCropper(cropper, max_gap_frames=50)
    pieces, start, turn = [], 0, 0
    while start < len(frames):
        size = chunk_sizes[turn % len(chunk_sizes)]
        pieces.append(stream.push(frames[start : start + size]))
        start, turn = start + size, turn + 1
    pieces.append(stream.finish())
    crops = np.concatenate([piece.frames for piece in pieces])
    assert crops.shape == whole.frames.shape
    np.testing.assert_allclose(np.concatenate([p.landmarks for p in pieces]), whole.landmarks, atol=1e-3)
    np.testing.assert_allclose(np.concatenate([p.transforms for p in pieces]), whole.transforms, atol=1e-3)
    assert np.abs(crops.astype(int) - whole.frames.astype(int)).max() <= 1
    np.testing.assert_array_equal(np.concatenate([p.detected for p in pieces]), whole.detected)


def test_memory_is_bounded_by_the_gap_limit_and_long_gaps_hold_the_last_face():
    missing = set(range(20, 100))
    frames, detector = synthetic_video(120, missing)
    stream = StreamingMouthCropper(MouthCropper(detector=detector), max_gap_frames=10)
    pieces, held = [], []
    for start in range(0, 120, 5):
        pieces.append(stream.push(frames[start : start + 5]))
        held.append(len(stream._frames))
    pieces.append(stream.finish())
    # Never more than the gap limit, half a smoothing window and one chunk waiting.
    assert max(held) <= 10 + 6 + 5
    detected = np.concatenate([piece.detected for piece in pieces])
    landmarks = np.concatenate([piece.landmarks for piece in pieces])
    np.testing.assert_array_equal(detected, [index not in missing for index in range(120)])
    # Deep inside the long gap every frame keeps the last face seen (frame 19's).
    np.testing.assert_allclose(landmarks[30:85], np.repeat(landmarks[19:20], 55, axis=0), atol=1e-4)


def test_a_video_without_any_face_is_refused_and_leading_faceless_frames_are_black():
    frames, detector = synthetic_video(40, set(range(40)))
    stream = StreamingMouthCropper(MouthCropper(detector=detector), source="talk.mp4", max_gap_frames=10)
    blank = stream.push(frames[:20])
    assert len(blank.frames) == 20 and not blank.frames.any() and not blank.detected.any()
    stream.push(frames[20:])
    with pytest.raises(NoFaceFoundError, match="talk.mp4"):
        stream.finish()
