"""Decode lip-reading clips into the arrays Omni-AVSR consumes: 16 kHz mono audio and 25 fps frames.

This module is copied into Hub repositories as custom code, so it stays flat and imports only third-party
libraries (numpy, soundfile, soxr, PyAV, and decord when installed). Face videos are cropped to the mouth by the
optional `omni_avsr.cropping` (`pip install 'omni-avsr[crop]'`), imported by name only when a face video comes in.
"""

import importlib
import os
import warnings
from dataclasses import dataclass

import av
import numpy as np
import soundfile
import soxr


SAMPLING_RATE = 16000
VIDEO_FPS = 25.0
SAMPLES_PER_FRAME = 640  # SAMPLING_RATE / VIDEO_FPS: one video frame spans 640 audio samples
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
MAX_DURATION_MISMATCH_S = 1.0
MAX_MOUTH_CROP_SIDE = 128
CROP_EXTRA = "pip install 'omni-avsr[crop]'"

# ITU-R 601-2 luma weights, the ones torchvision's Grayscale applies in the reference pipeline.
_LUMA_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


@dataclass
class Clip:
    """A decoded clip.

    Attributes:
        path: the media file the clip was read from.
        audio: float32 waveform at `sampling_rate` (mono), or `None` when audio was not requested.
        frames: uint8 frames at `fps`, shaped (frames, height, width) in grayscale or (frames, height, width, 3)
            in RGB, or `None` for audio-only files or when video was not requested.
        sampling_rate: always 16000.
        fps: 25.0 when `frames` is set, else `None`.
    """

    path: str
    audio: np.ndarray | None
    frames: np.ndarray | None
    sampling_rate: int = SAMPLING_RATE
    fps: float | None = VIDEO_FPS


def load_clip(
    path: str | os.PathLike,
    *,
    audio: bool = True,
    video: bool = True,
    grayscale: bool = True,
    crop_mouth: bool | str = "auto",
) -> Clip:
    """Decode a clip the way the reference recipe feeds it to the model.

    Video files (`.mp4`, ...) give frames resampled to 25 fps (grayscale by default, which is what the video
    encoder takes) and audio from the sibling `.wav` when there is one, else from the container's audio stream.
    When both are decoded, the waveform is cut or zero-padded at the end to exactly `frames × 640` samples, as the
    reference does; a warning names the file when the two durations differ by more than one second. Audio files
    (`.wav`, `.flac`, ...) give audio only.

    `crop_mouth` says whether the frames become 96×96 mouth crops (`omni_avsr.cropping`, the `crop` extra):
    `"auto"` crops face videos and keeps clips that are already mouth crops as they are (the rule is
    `is_mouth_crop`), `True` always crops, `False` never does.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded, or lacks the requested stream; no face in a face video.
        ImportError: a face video to crop without the `crop` extra installed.
    """
    path = os.fspath(path)
    if not (audio or video):
        raise ValueError(f"Nothing to load from {path}: both audio and video are disabled.")
    if crop_mouth not in ("auto", True, False):
        raise ValueError(f"crop_mouth must be 'auto', True or False, got {crop_mouth!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Media file not found: {path}")

    if path.lower().endswith(AUDIO_EXTENSIONS):
        return Clip(path=path, audio=load_audio(path) if audio else None, frames=None, fps=None)

    frames = _decode_frames(path) if video else None
    if frames is not None:
        if crop_mouth is True or (crop_mouth == "auto" and not is_mouth_crop(*frames.shape[1:3])):
            frames = crop_mouths(frames, path)
        if grayscale:
            frames = _to_grayscale(frames)
    waveform = load_audio(path) if audio else None
    if frames is not None and waveform is not None:
        waveform = align_audio_to_frames(waveform, len(frames), path)
    return Clip(path=path, audio=waveform, frames=frames, fps=VIDEO_FPS if frames is not None else None)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read a file's audio as a float32 16 kHz mono waveform (channels averaged).

    For a video file, the sibling `.wav` with the same stem is read when it exists (the LRS layout), else the
    container's first audio stream.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Media file not found: {path}")
    if not path.lower().endswith(AUDIO_EXTENSIONS):
        sibling_wav = os.path.splitext(path)[0] + ".wav"
        if os.path.isfile(sibling_wav):
            path = sibling_wav

    try:
        samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
        samples = samples.T
    except soundfile.SoundFileError:
        samples, sampling_rate = _decode_audio_stream(path)

    if samples.shape[1] == 0:
        raise ValueError(f"{path} contains no audio samples.")
    waveform = samples.mean(axis=0, dtype=np.float32)
    if sampling_rate != SAMPLING_RATE:
        waveform = soxr.resample(waveform, sampling_rate, SAMPLING_RATE)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _decode_audio_stream(path: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with PyAV into a float32 (channels, samples) array and its rate."""
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(
                    f"{path} has no audio stream and no sibling .wav file; load it with audio=False for video only."
                )
            stream = container.streams.audio[0]
            # Only the sample format is converted (to planar float); layout and rate stay as in the file.
            resampler = av.AudioResampler(format="fltp")
            chunks = [
                resampled.to_ndarray()
                for frame in container.decode(stream)
                for resampled in resampler.resample(frame)
            ]
            chunks.extend(resampled.to_ndarray() for resampled in resampler.resample(None))
            sampling_rate = stream.codec_context.sample_rate
    except av.error.FFmpegError as error:
        raise ValueError(f"Could not decode audio from {path}: {error}") from error
    if not chunks:
        raise ValueError(f"{path} contains no audio samples.")
    return np.concatenate(chunks, axis=1), sampling_rate


def is_mouth_crop(height: int, width: int) -> bool:
    """Whether frames of this size are mouth crops already: the one rule `load_clip` and the processor apply.

    Mouth-crop clips are small (auto-avsr's preprocessing and Mini-LRS write 96×96), face videos are not (LRS2 and
    LRS3 face tracks are 224×224, a webcam 640×480), so frames at most 128 pixels on either side count as mouth crops.
    """
    return max(height, width) <= MAX_MOUTH_CROP_SIDE


def not_a_mouth_crop_error(name: str, height: int, width: int) -> ValueError:
    """The error for face-video frames where mouth crops are expected, saying how to crop them."""
    return ValueError(
        f"{name} frames are {height}×{width}: face video, not mouth crops (at most {MAX_MOUTH_CROP_SIDE}×"
        f"{MAX_MOUTH_CROP_SIDE}, e.g. auto-avsr's 96×96). Crop the mouth first: omni_avsr.load_clip(path) does it for "
        "a face video file, omni_avsr.cropping.crop_mouths(frames) for frames, `omni-avsr crop IN.mp4 OUT.mp4` "
        f"writes a mouth video ({CROP_EXTRA})."
    )


def crop_mouths(frames: np.ndarray, path: str) -> np.ndarray:
    """The 96×96 mouth crops of a face video's frames, by the optional `omni_avsr.cropping`.

    Imported by name here, not at the top: this file is copied into Hub repositories, which must load without the
    extra (and transformers checks that every module a copied file imports is installed).
    """
    try:
        cropping = importlib.import_module("omni_avsr.cropping")
    except ImportError as error:
        height, width = frames.shape[1:3]
        raise ImportError(
            f"{path} is a face video ({height}×{width} frames); cropping its mouth needs the optional extra: "
            f"{CROP_EXTRA} ({error})."
        ) from error
    return cropping.crop_mouths(frames, source=path)


def _decode_frames(path: str) -> np.ndarray:
    try:
        return _decode_frames_with_decord(path)
    except Exception:  # decord missing or failing (it raises RuntimeError or DECORDError): PyAV gets the last word
        return _decode_frames_with_pyav(path)


def _to_grayscale(frames: np.ndarray) -> np.ndarray:
    # Element-wise rather than `frames @ weights`: a matmul runs on BLAS threads, which oversubscribe the CPUs
    # when every DataLoader worker decodes at once.
    luma = frames[..., 0] * _LUMA_WEIGHTS[0]
    luma += frames[..., 1] * _LUMA_WEIGHTS[1]
    luma += frames[..., 2] * _LUMA_WEIGHTS[2]
    return np.rint(luma, out=luma).astype(np.uint8)


def _decode_frames_with_decord(path: str) -> np.ndarray:
    import decord

    # One decoding thread per clip: DataLoader workers provide the parallelism.
    reader = decord.VideoReader(path, num_threads=1)
    if len(reader) == 0:
        raise RuntimeError(f"decord found no frames in {path}")
    indices = _frame_indices_at_target_fps(len(reader), reader.get_avg_fps(), path)
    return reader.get_batch(indices).asnumpy()


def _decode_frames_with_pyav(path: str) -> np.ndarray:
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path} contains no video frames (no video stream).")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
    except av.error.FFmpegError as error:
        raise ValueError(f"Could not decode video from {path}: {error}") from error
    if not frames:
        raise ValueError(f"{path} contains no video frames.")
    return np.stack(frames)[_frame_indices_at_target_fps(len(frames), fps, path)]


def _frame_indices_at_target_fps(num_frames: int, fps: float, path: str) -> np.ndarray:
    """Indices of the source frames shown at each 25 fps instant, preserving the clip's duration."""
    if not fps > 0:
        warnings.warn(f"{path} reports no frame rate; assuming {VIDEO_FPS:g} fps.", stacklevel=5)
        fps = VIDEO_FPS
    if abs(fps - VIDEO_FPS) < 1e-3:
        return np.arange(num_frames)
    num_target_frames = max(1, round(num_frames * VIDEO_FPS / fps))
    source_positions = np.arange(num_target_frames) * (fps / VIDEO_FPS)
    return np.minimum((source_positions + 1e-6).astype(np.int64), num_frames - 1)


def align_audio_to_frames(waveform: np.ndarray, num_frames: int, path: str) -> np.ndarray:
    """Cut or zero-pad `waveform` to `num_frames × 640` samples (the reference's alignment); warn past 1 s apart."""
    target_length = num_frames * SAMPLES_PER_FRAME
    audio_seconds = len(waveform) / SAMPLING_RATE
    video_seconds = num_frames / VIDEO_FPS
    if abs(audio_seconds - video_seconds) > MAX_DURATION_MISMATCH_S:
        warnings.warn(
            f"{path}: audio lasts {audio_seconds:.2f} s but video lasts {video_seconds:.2f} s; "
            "the audio is cut or zero-padded at the end to the video's length.",
            stacklevel=3,
        )
    if len(waveform) >= target_length:
        return waveform[:target_length]
    return np.pad(waveform, (0, target_length - len(waveform)))
