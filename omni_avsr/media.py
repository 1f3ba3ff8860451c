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
MOUTH_CROP_SIZE = 88
"""The side of the square lip crop the video encoder reads: the processor's centre crop and training's random crop."""
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
MAX_DURATION_MISMATCH_S = 1.0
MAX_MOUTH_CROP_SIDE = 128
MAX_FACE_FRAME_SIDE = 1920
"""Face video to be cropped is decoded at most this large (full HD): larger frames are shrunk while decoding, by the
smallest whole factor that brings their longest side to it, so that a 4K clip does not need 4 times the memory of a
1080p one (30 s of 4K in RGB is 18.7 GB). The mouth crops keep nothing a 1080p frame lacks: the model reads
`MOUTH_CROP_SIZE` crops, made from LRS3's 224×224 face tracks."""
CROP_EXTRA = "pip install 'omni-avsr[crop]'"
MAX_CLIP_SECONDS = 30.0
"""The longest clip Omni-AVSR transcribes: the Whisper encoder's window (480,000 samples at 16 kHz). Video-only clips
are held to the same limit (750 frames at 25 fps), so that every task accepts the same clips."""
TIMESTAMP_SLACK_S = 1e-3  # frame timestamps are rounded to the container's time base
MIN_CLIP_SECONDS = 0.1
"""The shortest clip transcribed, audio or video (3 frames at 25 fps): no word is shorter, so a shorter input (one
sample, one frame) is a mistake, not a clip, and the model would still write a transcript for it."""
# A container's announced duration may be off by a few frames: only a clearly longer one is refused before decoding;
# the decoded length is then checked exactly.
_DURATION_METADATA_SLACK_S = 1.0

# ITU-R 601-2 luma weights, the ones torchvision's Grayscale applies in the reference pipeline: frames read from a
# file and RGB frames given to the processor become grayscale with the same weights.
LUMA_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


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
    max_seconds: float | None = MAX_CLIP_SECONDS,
    max_frame_side: int | None = None,
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

    Clips longer than `max_seconds` (default: `MAX_CLIP_SECONDS`, the model's window) are refused, from the
    container's announced duration before anything is decoded and exactly while decoding, which stops there; `None`
    decodes any length.

    Frames longer than `max_frame_side` pixels on a side are shrunk while decoding by a whole factor (each pixel the
    mean of a block); by default face video that is cropped here is held to `MAX_FACE_FRAME_SIDE`, other frames are
    decoded at their own size.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a folder.
        ValueError: the file cannot be decoded, lacks the requested stream, or is longer than `max_seconds`; no
            face in a face video.
        ImportError: a face video to crop without the `crop` extra installed.
    """
    path = os.fspath(path)
    if not (audio or video):
        raise ValueError(f"Nothing to load from {path}: both audio and video are disabled.")
    if crop_mouth not in ("auto", True, False):
        raise ValueError(f"crop_mouth must be 'auto', True or False, got {crop_mouth!r}.")
    check_media_file(path)

    if path.lower().endswith(AUDIO_EXTENSIONS):
        return Clip(path=path, audio=load_audio(path, max_seconds=max_seconds) if audio else None, frames=None, fps=None)

    if max_frame_side is None and crop_mouth is not False:
        max_frame_side = MAX_FACE_FRAME_SIDE  # mouth crops are far smaller: only face video is shrunk
    frames = _decode_frames(path, grayscale, max_seconds, max_frame_side) if video else None
    if frames is not None and (crop_mouth is True or (crop_mouth == "auto" and not is_mouth_crop(*frames.shape[1:3]))):
        frames = crop_mouths(frames, path)
    waveform = load_audio(path, max_seconds=max_seconds) if audio else None
    if frames is not None and waveform is not None:
        waveform = align_audio_to_frames(waveform, len(frames), path)
    return Clip(path=path, audio=waveform, frames=frames, fps=VIDEO_FPS if frames is not None else None)


def load_audio(path: str | os.PathLike, *, max_seconds: float | None = None) -> np.ndarray:
    """Read a file's audio as a float32 16 kHz mono waveform (channels averaged).

    For a video file, the sibling `.wav` with the same stem is read when it exists (the LRS layout), else the
    container's first audio stream. A WAV cut short of the length its header announces is refused. With
    `max_seconds`, longer audio is refused from its announced length before it is decoded, and exactly after.
    """
    path = os.fspath(path)
    check_media_file(path)
    if not path.lower().endswith(AUDIO_EXTENSIONS):
        sibling_wav = os.path.splitext(path)[0] + ".wav"
        if os.path.isfile(sibling_wav):
            path = sibling_wav

    _check_wav_is_complete(path)
    if max_seconds is not None:
        _check_announced_duration(path, _announced_audio_seconds(path), max_seconds)
    try:
        samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
        samples = samples.T
    except soundfile.SoundFileError:
        samples, sampling_rate = _decode_audio_stream(path)

    if samples.shape[1] == 0:
        raise ValueError(f"{path} contains no audio samples.")
    if max_seconds is not None:
        check_clip_duration(path, samples.shape[1] / sampling_rate, max_seconds)
    waveform = samples.mean(axis=0, dtype=np.float32)
    if sampling_rate != SAMPLING_RATE:
        waveform = soxr.resample(waveform, sampling_rate, SAMPLING_RATE)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def check_media_file(path: str) -> None:
    """Refuse a path that is missing or a folder, saying which."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; expected a media file (.mp4, .wav, ...).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Media file not found: {path}")


def check_min_duration(name: str, seconds: float, length: str) -> None:
    """Refuse a clip shorter than `MIN_CLIP_SECONDS` (`length` says how long it is, in its own units)."""
    if seconds < MIN_CLIP_SECONDS:
        raise ValueError(
            f"{name} lasts {seconds:.3g} s ({length}); expected a clip of at least {MIN_CLIP_SECONDS:g} s: nothing "
            "shorter holds a word."
        )


def check_clip_duration(name: str, seconds: float, max_seconds: float = MAX_CLIP_SECONDS) -> None:
    """Refuse a clip (a file, or an array named `name`) longer than `max_seconds`: the one length rule of files, arrays
    given to the processor and pipeline inputs."""
    if seconds > max_seconds:
        raise _clip_too_long(name, max_seconds, seconds)


def _clip_too_long(name: str, max_seconds: float, seconds: float | None = None) -> ValueError:
    """The error for a clip past `max_seconds`; `seconds=None` when decoding stopped at the limit."""
    lasts = f"{seconds:.2f} s" if seconds is not None else f"more than {max_seconds:g} s"
    return _ClipTooLong(
        f"{name} lasts {lasts}; Omni-AVSR transcribes clips of up to {max_seconds:g} s (the Whisper encoder's "
        "window). Longer recordings go through the long-form path, which cuts them at pauses: the pipelines (any "
        "length; return_timestamps=True for segment times) or `omni-avsr transcribe`."
    )


def _check_announced_duration(path: str, seconds: float | None, max_seconds: float) -> None:
    """Refuse, before decoding, a file whose container announces clearly more than `max_seconds`."""
    if seconds is not None and seconds > max_seconds + _DURATION_METADATA_SLACK_S:
        check_clip_duration(path, seconds, max_seconds)


def _announced_audio_seconds(path: str) -> float | None:
    """The audio duration a file's header announces, without decoding it (`None` when it announces none)."""
    try:
        info = soundfile.info(path)
        return info.frames / info.samplerate if info.samplerate else None
    except soundfile.SoundFileError:
        return _announced_stream_seconds(path, "audio")


def _announced_stream_seconds(path: str, kind: str) -> float | None:
    """The duration the container announces for its first `kind` stream (or for itself), without decoding."""
    try:
        with av.open(path) as container:
            streams = getattr(container.streams, kind)
            if streams and streams[0].duration is not None and streams[0].time_base is not None:
                return float(streams[0].duration * streams[0].time_base)
            return container.duration / av.time_base if container.duration is not None else None
    except av.error.FFmpegError:
        return None  # decoding reports what is wrong with the file


def _check_wav_is_complete(path: str) -> None:
    """Refuse a WAV cut short of the audio its header announces.

    Hand-written because libsndfile sizes a WAV by its file length, so a file cut mid-stream reads as a shorter clip
    without an error; this walks the RIFF chunk headers to the `data` chunk and compares its announced size.
    """
    with open(path, "rb") as file:
        header = file.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return
        file_size = os.fstat(file.fileno()).st_size
        while len(chunk := file.read(8)) == 8:
            chunk_size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                available = file_size - file.tell()
                # Streaming writers leave the size at 0 or 0xFFFFFFFF: the length is then unknown, not wrong.
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size:
                    raise ValueError(
                        f"{path} is truncated: its header announces {chunk_size} bytes of audio but the file holds "
                        f"{available} ({100 * available / chunk_size:.0f} %); it was cut mid-stream, re-export it."
                    )
                return
            file.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


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
    """The 96×96 mouth crops of a face video's frames, by the optional `omni_avsr.cropping`."""
    return cropping_package(path, frames.shape).crop_mouths(frames, source=path)


def cropping_package(path: str, shape: tuple):
    """The optional `omni_avsr.cropping` package, for the face video `path` of frames `shape`, or an error naming the
    extra.

    Imported by name, not at the top: this file is copied into Hub repositories, which must load without the extra
    (and transformers checks that every module a copied file imports is installed).
    """
    try:
        return importlib.import_module("omni_avsr.cropping")
    except ImportError as error:
        raise ImportError(
            f"{path} is a face video ({shape[1]}×{shape[2]} frames); cropping its mouth needs the optional extra: "
            f"{CROP_EXTRA} ({error})."
        ) from error


def _decode_frames(path: str, grayscale: bool, max_seconds: float | None, max_side: int | None = None) -> np.ndarray:
    """25 fps frames, upright, shrunk to at most `max_side` pixels a side; with `max_seconds`, a longer video is refused
    from its announced duration, else as soon as decoding passes the limit, so that a long or large video is never
    decoded whole."""
    max_frames = None
    if max_seconds is not None:
        _check_announced_duration(path, _announced_stream_seconds(path, "video"), max_seconds)
        max_frames = int(max_seconds * VIDEO_FPS + 1e-6)
    try:
        return _decode_frames_with_decord(path, grayscale, max_frames, max_side)
    except _ClipTooLong:
        raise
    except Exception:  # decord missing or failing (it raises RuntimeError or DECORDError): PyAV gets the last word
        return _decode_frames_with_pyav(path, grayscale, max_frames, max_side)


class _ClipTooLong(ValueError):
    """A clip longer than the `max_seconds` it was loaded with (not a decoder failure, so no PyAV retry)."""


def _to_grayscale(frames: np.ndarray) -> np.ndarray:
    # Element-wise rather than `frames @ weights`: a matmul runs on BLAS threads, which oversubscribe the CPUs
    # when every DataLoader worker decodes at once.
    luma = frames[..., 0] * LUMA_WEIGHTS[0]
    luma += frames[..., 1] * LUMA_WEIGHTS[1]
    luma += frames[..., 2] * LUMA_WEIGHTS[2]
    return np.rint(luma, out=luma).astype(np.uint8)


# Decoded frames held at once before they are converted (grayscale, shrunk): 64 frames of a 224×224 face track,
# 2 of a 1080p frame, 1 of a 4K one (25 MB).
_DECODE_CHUNK_FRAMES = 64
_DECODE_CHUNK_BYTES = 16 * 2**20


def _decode_frames_with_decord(path: str, grayscale: bool, max_frames: int | None, max_side: int | None) -> np.ndarray:
    import decord

    # One decoding thread per clip: DataLoader workers provide the parallelism. decord turns frames upright itself.
    reader = decord.VideoReader(path, num_threads=1)
    if len(reader) == 0:
        raise RuntimeError(f"decord found no frames in {path}")
    timestamps = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    indices = _frame_indices_at_target_fps(len(reader), reader.get_avg_fps(), path, timestamps)
    if max_frames is not None and len(indices) > max_frames:
        raise _clip_too_long(path, max_frames / VIDEO_FPS, len(indices) / VIDEO_FPS)
    frames, start, chunk_frames = None, 0, 1
    while start < len(indices):
        chunk = reader.get_batch(indices[start : start + chunk_frames]).asnumpy()
        if frames is None:
            chunk_frames = int(np.clip(_DECODE_CHUNK_BYTES // chunk[0].nbytes, 1, _DECODE_CHUNK_FRAMES))
        chunk = _to_grayscale(_shrink(chunk, max_side)) if grayscale else _shrink(chunk, max_side)
        if frames is None:
            frames = np.empty((len(indices), *chunk.shape[1:]), dtype=np.uint8)
        frames[start : start + len(chunk)] = chunk
        start += len(chunk)
    return frames


def _decode_frames_with_pyav(path: str, grayscale: bool, max_frames: int | None, max_side: int | None) -> np.ndarray:
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path} contains no video frames (no video stream).")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames, times = [], []
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else len(frames) / (fps or VIDEO_FPS)
                # A frame shown past the window and the frame after it: the clip is too long, whatever follows.
                if max_frames is not None and times and time - times[0] > (max_frames + 1) / VIDEO_FPS + 1e-6:
                    raise _clip_too_long(path, max_frames / VIDEO_FPS)
                image = _shrink(upright_rgb(frame)[None], max_side)[0]
                frames.append(_to_grayscale(image) if grayscale else image)
                times.append(time)
    except av.error.FFmpegError as error:
        raise ValueError(f"Could not decode video from {path}: {error}") from error
    if not frames:
        raise ValueError(f"{path} contains no video frames.")
    indices = _frame_indices_at_target_fps(len(frames), fps, path, np.array(times))
    if max_frames is not None and len(indices) > max_frames:
        raise _clip_too_long(path, max_frames / VIDEO_FPS, len(indices) / VIDEO_FPS)
    return np.stack([frames[index] for index in indices])


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as RGB, turned upright by its display matrix, as decord does (a phone held upright records
    landscape frames and a 90° rotation)."""
    return np.rot90(frame.to_ndarray(format="rgb24"), k=round(frame.rotation / 90) % 4)


def _shrink(frames: np.ndarray, max_side: int | None) -> np.ndarray:
    """Frames (n, height, width[, 3]) shrunk by the smallest whole factor that makes both sides at most `max_side`,
    each pixel the mean of a factor × factor block (area interpolation at a whole factor: no aliasing, no library);
    a remainder of rows or columns that fills no block is dropped."""
    factor = -(-max(frames.shape[1:3]) // max_side) if max_side else 1
    if factor <= 1:
        return frames
    height, width = frames.shape[1] // factor, frames.shape[2] // factor
    blocks = frames[:, : height * factor, : width * factor].reshape(
        len(frames), height, factor, width, factor, *frames.shape[3:]
    )
    # Whole-number sums (a block of 16 × 16 pixels of 255 fits 16 bits), rounded to the nearest mean in place.
    sums = blocks.sum(axis=(2, 4), dtype=np.uint16 if factor <= 16 else np.uint32)
    sums += factor * factor // 2
    sums //= factor * factor
    return sums.astype(np.uint8)


def _frame_indices_at_target_fps(
    num_frames: int, fps: float, path: str, timestamps: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the source frames shown at each 25 fps instant, preserving the clip's duration.

    With the frames' presentation timestamps (seconds, in display order), the frame at instant k / 25 is the last one
    shown by then, and the clip lasts until the last frame's start plus the interval before it: a variable frame rate
    (a phone's, which drops frames in low light) stays aligned with the audio, where a constant average rate drifted up
    to a second from it. Timestamps that are missing or out of order fall back to frames evenly spaced at `fps`.
    """
    if timestamps is not None and len(timestamps) == num_frames and num_frames > 1:
        times = np.asarray(timestamps, dtype=np.float64) - timestamps[0]
        if np.all(np.isfinite(times)) and np.all(np.diff(times) > 0):
            duration = times[-1] + (times[-1] - times[-2])
            instants = np.arange(max(1, round(duration * VIDEO_FPS))) / VIDEO_FPS
            return np.searchsorted(times, instants + TIMESTAMP_SLACK_S, side="right") - 1
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
