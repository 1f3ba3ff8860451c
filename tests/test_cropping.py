"""Mouth cropping (the `crop` extra): on the real LRS3 face track every frame gets a crop whose mouth is centred at
the reference scale, as a second, independent detection pass on the aligned frames measures; faces lost for a few
frames are interpolated, the largest of two faces is the one cropped, a video without a face is a clear error;
mouth-crop clips pass through untouched, and the processor refuses face video with advice instead of a crop."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_media import write_video
from tiny_models import tiny_processor

from omni_avsr import load_clip
from omni_avsr.cli import main
from omni_avsr.media import is_mouth_crop


cv2 = pytest.importorskip("cv2", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")

from omni_avsr.cropping import MouthCropConfig, MouthCropper, NoFaceFoundError  # noqa: E402
from omni_avsr.cropping.landmarks import PREDICTOR_FILE, face_recognition_model_path  # noqa: E402
from omni_avsr.cropping.reference_face import (  # noqa: E402
    MEAN_SHAPE,
    REFERENCE_FACE,
    STABLE_POINTS,
    STABLE_POINTS_RMS_RADIUS,
    read_dlib_mean_shape,
)


CROP = 96
MARGIN = 80  # the aligned frame around the crop in which the face is detected again: 96 + 2 × 80 = 256


@pytest.fixture(scope="module")
def face_frames(real_clip_path):
    return load_clip(real_clip_path, audio=False, grayscale=False, crop_mouth=False).frames


@pytest.fixture(scope="module")
def cropper():
    return MouthCropper()


@pytest.fixture(scope="module")
def cropped(cropper, face_frames):
    return cropper(face_frames, source="lrs3_test_clip.mp4")


def rms_radius(points):
    return float(np.sqrt(np.mean(np.sum(np.square(points - points.mean(axis=0)), axis=1))))


def redetect_in_aligned_frames(frames, transforms, face_detector, frame_indices):
    """Detect the face again in each frame aligned as its crop was, with the crop in the middle of a 256×256 view.

    Returns the mouth centre's offset from the crop's centre (px, per frame) and the face's scale relative to the
    reference face (the stable points' spread), for the frames where the face is found again.
    """
    predictor = __import__("dlib").shape_predictor(face_recognition_model_path(PREDICTOR_FILE))
    offsets, scales = [], []
    for index in frame_indices:
        to_view = transforms[index].astype(np.float64)
        to_view[:, 2] += MARGIN
        view = cv2.cvtColor(cv2.warpAffine(frames[index], to_view, (CROP + 2 * MARGIN,) * 2), cv2.COLOR_RGB2GRAY)
        boxes = face_detector(view)
        if not boxes:
            continue
        points = np.array([(p.x, p.y) for p in predictor(view, max(boxes, key=lambda b: b.area())).parts()], float)
        offsets.append(points[48:68].mean(axis=0) - (MARGIN + CROP / 2))
        scales.append(rms_radius(points[list(STABLE_POINTS)]) / STABLE_POINTS_RMS_RADIUS)
    return np.array(offsets), np.array(scales)


def test_reference_face_is_dlibs_mean_shape_at_the_calibrated_scale():
    stored = read_dlib_mean_shape(face_recognition_model_path(PREDICTOR_FILE))
    np.testing.assert_allclose(stored, MEAN_SHAPE, atol=5e-5)  # the table is the model file's, to 4 decimals
    assert rms_radius(REFERENCE_FACE[list(STABLE_POINTS)]) == pytest.approx(STABLE_POINTS_RMS_RADIUS, abs=1e-3)
    mouth = REFERENCE_FACE[48:68].mean(axis=0)
    assert mouth == pytest.approx([128.0, 164.9], abs=0.05)
    # The 96×96 crop around the mouth spans from above the nose tip (33) to below the chin (8).
    assert mouth[1] - CROP / 2 < REFERENCE_FACE[33, 1] and REFERENCE_FACE[8, 1] < mouth[1] + CROP / 2


def test_every_frame_of_the_real_clip_gets_a_mouth_crop(face_frames, cropped):
    assert cropped.frames.shape == (155, CROP, CROP, 3) and cropped.frames.dtype == np.uint8
    assert cropped.detected.all(), "dlib finds the face in all 155 frames of this clip"
    assert cropped.landmarks.shape == (155, 68, 2) and cropped.transforms.shape == (155, 2, 3)
    # Aligned crops are not blank and differ frame to frame (the lips move).
    assert cropped.frames.std() > 20 and np.abs(np.diff(cropped.frames.astype(int), axis=0)).mean() > 2


def test_mouth_is_centred_at_the_reference_scale_when_detected_again(face_frames, cropped):
    """An independent pass: the face detected afresh in the aligned frames the crops are cut from.

    Measured on this clip (dlib 20.0.1): with the HOG detector on all 155 frames, the face is found again in 153;
    the mouth centre is 0.72 px from the crop centre on average, the largest offsets (up to 11.3 px) in frames
    88–99, where the head turns furthest and the two detections of a profile face disagree; the face's scale is
    0.984 of the reference on average (0.834–1.033). With dlib's CNN face detector (a second detector) on every 10th
    frame: found in 16 of 16, mean offset 0.65 px, largest 3.3 px (frame 90), scale 0.985 (0.918–1.031).
    """
    hog = __import__("dlib").get_frontal_face_detector()
    offsets, scales = redetect_in_aligned_frames(face_frames, cropped.transforms, hog, range(len(face_frames)))
    distances = np.linalg.norm(offsets, axis=1)
    assert len(offsets) >= 150
    assert distances.mean() < 1.0 and np.median(distances) < 0.6 and distances.max() < 12.0
    assert np.abs(offsets.mean(axis=0)).max() < 0.2, "no bias in either direction"
    assert 0.97 < scales.mean() < 1.0 and scales.min() > 0.8 and scales.max() < 1.05

    cnn = __import__("dlib").cnn_face_detection_model_v1(face_recognition_model_path("mmod_human_face_detector.dat"))
    offsets, scales = redetect_in_aligned_frames(
        face_frames, cropped.transforms, lambda view: [found.rect for found in cnn(view, 0)], range(0, 155, 10)
    )
    distances = np.linalg.norm(offsets, axis=1)
    assert len(offsets) == 16
    assert distances.mean() < 1.0 and distances.max() < 4.0
    assert 0.97 < scales.mean() < 1.0 and scales.min() > 0.9 and scales.max() < 1.05


def test_cropping_is_deterministic_and_precomputed_landmarks_give_the_same_crops(cropper, face_frames, cropped):
    again = MouthCropper(detector=cropper.detector)(face_frames)
    np.testing.assert_array_equal(again.frames, cropped.frames)
    given = MouthCropper(detector=lambda frame: pytest.fail("no detection with landmarks given"))
    from_landmarks = given(face_frames, landmarks=list(cropped.landmarks))
    np.testing.assert_array_equal(from_landmarks.frames, cropped.frames)
    gray = cropper(np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in face_frames[:20]]))
    assert gray.frames.shape == (20, CROP, CROP) and gray.detected.all()


def test_a_face_lost_for_a_few_frames_is_interpolated(cropper, face_frames, cropped):
    frames = face_frames[:40].copy()
    frames[20:25] = 0  # the face disappears for 5 frames (0.2 s)
    result = cropper(frames)
    assert result.frames.shape == (40, CROP, CROP, 3)
    assert result.detected.tolist() == [True] * 20 + [False] * 5 + [True] * 15
    for offset, index in enumerate(range(20, 25), start=1):
        expected = result.landmarks[19] + offset / 6 * (result.landmarks[25] - result.landmarks[19])
        np.testing.assert_allclose(result.landmarks[index], expected, atol=1e-3)
    np.testing.assert_array_equal(result.landmarks[:20], cropped.landmarks[:20])


def test_of_two_faces_the_largest_is_cropped(cropper, face_frames):
    frames = face_frames[:10]
    small = np.stack([cv2.resize(frame, (168, 168), interpolation=cv2.INTER_AREA) for frame in frames])
    canvas = np.zeros((10, 224, 224 + 168, 3), np.uint8)
    canvas[:, :168, :168] = small  # the smaller face on the left, the full-size one on the right
    canvas[:, :, 168:] = frames
    faces = __import__("dlib").get_frontal_face_detector()(canvas[0], 0)
    assert len(faces) == 2, "both faces are visible to the detector"
    result = cropper(canvas)
    assert result.landmarks[..., 0].min() > 168, "every landmark lies on the larger face"
    alone = cropper(frames).landmarks + [168, 0]
    assert np.abs(result.landmarks - alone).mean() < 1.0  # measured 4.0 px at most: the box differs in context


def test_interpolation_and_smoothing_with_a_scripted_detector():
    """The cropper's own steps, without dlib: misses at the ends are held, inner misses linear."""
    base = REFERENCE_FACE.astype(np.float32) * 0.5 + 20
    shifts = {index: np.float32(index) for index in (2, 3, 6)}

    def detector(frame):
        index = int(frame[0, 0])
        return base + shifts[index] if index in shifts else None

    frames = np.zeros((9, 180, 180), np.uint8)
    frames[:, 0, 0] = np.arange(9)
    result = MouthCropper(MouthCropConfig(smoothing_window=0), detector=detector)(frames)
    assert result.detected.tolist() == [False, False, True, True, False, False, True, False, False]
    expected_shift = [2, 2, 2, 3, 4, 5, 6, 6, 6]
    shifts_found = (result.landmarks - base).reshape(9, -1)
    np.testing.assert_allclose(shifts_found, np.repeat(np.array(expected_shift, np.float32)[:, None], 136, axis=1), atol=1e-4)
    # Pure translations of one face: every crop transform has the same rotation and scale, and maps the mouth to
    # the crop's centre.
    rotation_scale = result.transforms[:, :, :2]
    np.testing.assert_allclose(rotation_scale, np.broadcast_to(rotation_scale[0], (9, 2, 2)), atol=1e-4)
    mouths = np.einsum("tij,tj->ti", result.transforms[:, :, :2], result.landmarks[:, 48:68].mean(axis=1))
    np.testing.assert_allclose(mouths + result.transforms[:, :, 2], np.full((9, 2), CROP / 2), atol=1e-3)


def test_no_face_is_a_clear_error_naming_the_file(tmp_path):
    path = write_video(tmp_path / "empty_room.mp4", num_frames=10, size=160)
    with pytest.raises(NoFaceFoundError, match=r"No face found in any of the 10 frames of .*empty_room\.mp4"):
        load_clip(path, audio=False)
    with pytest.raises(ValueError, match="landmark entries for 3 frames"):
        MouthCropper()(np.zeros((3, 160, 160), np.uint8), landmarks=[None])


def test_a_mouth_crop_clip_passes_through_unchanged(tmp_path, monkeypatch):
    path = write_video(tmp_path / "mouth.mp4", num_frames=12, size=96)
    untouched = load_clip(path, audio=False, crop_mouth=False).frames
    monkeypatch.setitem(sys.modules, "omni_avsr.cropping", None)  # "auto" must not even need the extra
    np.testing.assert_array_equal(load_clip(path, audio=False).frames, untouched)
    assert is_mouth_crop(96, 96) and is_mouth_crop(128, 88) and not is_mouth_crop(224, 224)
    with pytest.raises(ImportError, match=r"face video \(160×160 frames\).*pip install 'omni-avsr\[crop\]'"):
        load_clip(write_video(tmp_path / "face.mp4", num_frames=3, size=160), audio=False)
    with pytest.raises(ValueError, match="crop_mouth must be 'auto', True or False"):
        load_clip(path, crop_mouth="yes")


def test_the_processor_refuses_face_video_and_says_how_to_crop_it():
    processor = tiny_processor()
    face_video = np.zeros((10, 224, 224), np.uint8)
    expected = r"videos\[0\] frames are 224×224: face video, not mouth crops.*omni-avsr crop IN.mp4 OUT.mp4"
    with pytest.raises(ValueError, match=expected):
        processor(videos=[face_video])
    assert processor(videos=[np.zeros((10, 96, 96), np.uint8)])["pixel_values_videos"].shape == (1, 10, 1, 88, 88)


def test_crop_command_writes_the_auto_avsr_layout(real_clip_path, tmp_path, cropped, capsys):
    output = tmp_path / "out" / "mouth.mp4"
    assert main(["crop", str(real_clip_path), str(output)]) == 0
    assert "155 mouth frames, the face found in 155." in capsys.readouterr().out
    clip = load_clip(output, grayscale=False)
    assert clip.frames.shape == (155, CROP, CROP, 3) and clip.audio.shape == (155 * 640,)
    assert np.abs(clip.frames.astype(int) - cropped.frames).mean() < 3, "H.264 keeps the crops"
    np.testing.assert_allclose(clip.audio, load_clip(real_clip_path, crop_mouth=False).audio, atol=1e-4)

    assert main(["crop", str(tmp_path / "nope.mp4"), str(output)]) == 1
    assert capsys.readouterr().err.strip() == f"omni-avsr: error: Media file not found: {tmp_path / 'nope.mp4'}"
    assert main(["crop", str(output), str(output)]) == 1
    assert f"OUT {output} would overwrite the input;" in capsys.readouterr().err


def test_cropping_benchmark_prints_its_json(real_clip_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    arguments = ["--video", str(real_clip_path), "--frames", "10", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", ["bench_cropping.py", *arguments])
    importlib.import_module("bench_cropping").main()
    report = json.loads(capsys.readouterr().out)
    assert {"crop_frames_per_s", "crop_realtime_factor", "decode", "runs", "machine"} <= set(report)
    assert [row["stage"] for row in report["runs"][0]["stages"]] == ["landmarks", "align", "crop"]
    assert report["runs"][0]["detected"] == 10
