"""Read a long recording a stretch at a time, so that memory holds one segment whatever the file's length.

`MediaStream.audio_blocks` streams a file's 16 kHz mono audio (for voice-activity detection); `MediaStream.segments`
streams its audio and 25 fps lip frames again and hands over each segment's media, in order. Frames are decoded,
turned to grayscale, resampled to 25 fps by their presentation timestamps and, for a face video, mouth-cropped with
the face tracked across chunk borders (`omni_avsr.cropping.streaming`). Audio is read as `load_clip` reads it: from
the sibling `.wav` when there is one, else from the container's track. A packet that cannot be decoded is skipped
(the last frame is held, missing audio is silence) and reported as a `MediaFault` with its time range, so a damaged
stretch costs only its own part of the transcript.

This module is copied into Hub repositories with the pipeline, so it stays flat and imports the optional cropping
package by name, only for face videos.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np
import soundfile
import soxr

from .media import (
    AUDIO_EXTENSIONS,
    MAX_FACE_FRAME_SIDE,
    SAMPLES_PER_FRAME,
    SAMPLING_RATE,
    TIMESTAMP_SLACK_S,
    VIDEO_FPS,
    _announced_audio_seconds,
    _announced_stream_seconds,
    _check_wav_is_complete,
    _shrink,
    _to_grayscale,
    check_media_file,
    cropping_package,
    is_mouth_crop,
    upright_rgb,
)
from .segmentation import Segment


_AUDIO_BLOCK_SECONDS = 10.0
_VIDEO_CHUNK_FRAMES = 125
_FAULT_MERGE_S = 1.0  # undecodable packets this close together are reported as one stretch
_GAP_TOLERANCE_S = 0.1  # audio timestamps further apart than the samples between them by this much: a hole


@dataclass(frozen=True)
class MediaFault:
    """A stretch of a recording that could not be used as it is: `what` happened from `start` to `end` seconds."""

    start: float
    end: float
    what: str

    def __str__(self) -> str:
        return f"{self.what} from {self.start:.2f} s to {self.end:.2f} s"


@dataclass
class SegmentMedia:
    """A segment's media: audio (16 kHz mono, 640 samples per frame) and/or frames (25 fps mouth crops, uint8), and
    for a face video whether each frame's face was found (`face_found`, else `None`)."""

    segment: Segment
    audio: np.ndarray | None
    frames: np.ndarray | None
    face_found: np.ndarray | None = None
    faults: list[MediaFault] = field(default_factory=list)


class MediaStream:
    """A media file read in order, a stretch at a time (see the module docstring).

    Args:
        path: the file (`.mp4` and other containers, or an audio file).
        audio, video: which media to read; refused when the file lacks it.
        crop_mouth: `"auto"` crops face videos (frames over 128 pixels) and keeps mouth crops, `True` / `False` force it.
    """

    def __init__(self, path: str | os.PathLike, *, audio: bool = True, video: bool = True, crop_mouth="auto"):
        self.path = os.fspath(path)
        check_media_file(self.path)
        self.crop_mouth = crop_mouth
        self.faults: list[MediaFault] = []
        is_audio_file = self.path.lower().endswith(AUDIO_EXTENSIONS)
        sibling = os.path.splitext(self.path)[0] + ".wav"
        self.audio_path = None
        if audio:
            self.audio_path = self.path if is_audio_file or not os.path.isfile(sibling) else sibling
            _check_wav_is_complete(self.audio_path)
            if not is_audio_file and self.audio_path == self.path and not _has_stream(self.path, "audio"):
                raise ValueError(
                    f"{self.path} has no audio stream and no sibling .wav file; read it with audio=False for video only."
                )
        self.has_video = video and not is_audio_file
        if video and not self.has_video:
            raise ValueError(f"{self.path} is an audio file; it has no lip video to read.")
        if self.has_video and not _has_stream(self.path, "video"):
            raise ValueError(f"{self.path} contains no video frames (no video stream).")
        seconds = []
        if self.has_video:
            seconds.append(_announced_stream_seconds(self.path, "video"))
        if self.audio_path is not None:
            seconds.append(_announced_audio_seconds(self.audio_path))
        known = [value for value in seconds if value is not None]
        self.duration = max(known) if known else None

    def audio_blocks(self) -> Iterator[np.ndarray]:
        """The audio as consecutive float32 blocks at 16 kHz, mono (channels averaged, as `load_audio`)."""
        if self.audio_path is None:
            raise ValueError(f"{self.path} is read without audio.")
        try:
            info = soundfile.info(self.audio_path)
        except soundfile.SoundFileError:
            yield from self._container_audio_blocks()
            return
        resampler = None if info.samplerate == SAMPLING_RATE else soxr.ResampleStream(info.samplerate, SAMPLING_RATE, 1)
        block_size = int(_AUDIO_BLOCK_SECONDS * info.samplerate)
        with soundfile.SoundFile(self.audio_path) as file:
            for block in file.blocks(blocksize=block_size, dtype="float32", always_2d=True):
                yield _to_16k_mono(block.T, resampler, last=False)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)

    def _container_audio_blocks(self) -> Iterator[np.ndarray]:
        try:
            with av.open(self.audio_path) as container:
                stream = container.streams.audio[0]
                rate = stream.codec_context.sample_rate
                resampler = None if rate == SAMPLING_RATE else soxr.ResampleStream(rate, SAMPLING_RATE, 1)
                to_float = av.AudioResampler(format="fltp")  # the sample format only: layout and rate stay the file's
                start, emitted = None, 0
                for frame in self._decoded(container, stream, "undecodable audio (silence in its place)"):
                    if frame.time is not None:
                        start = frame.time if start is None else start
                        missing = round((frame.time - start) * rate) - emitted
                        if missing > _GAP_TOLERANCE_S * rate:
                            yield _to_16k_mono(np.zeros((1, missing), np.float32), resampler, last=False)
                            emitted += missing
                    for converted in to_float.resample(frame):
                        samples = converted.to_ndarray()
                        emitted += samples.shape[1]
                        yield _to_16k_mono(samples, resampler, last=False)
                for converted in to_float.resample(None):
                    yield _to_16k_mono(converted.to_ndarray(), resampler, last=False)
                if resampler is not None:
                    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        except av.error.FFmpegError as error:
            raise ValueError(f"Could not decode audio from {self.audio_path}: {error}") from error

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The video as consecutive chunks of 25 fps grayscale frames (mouth crops for a face video), each with
        whether its frames' face was found (`None` for a video of mouth crops)."""
        cropper = None
        for chunk in self._raw_frames():
            if cropper is None and self._needs_cropping(chunk.shape):
                cropper = _streaming_cropper(self.path, chunk.shape)
            if cropper is None:
                yield chunk, None
                continue
            crops = cropper.push(chunk)
            if len(crops.frames):
                yield crops.frames, crops.detected
        if cropper is not None:
            crops = cropper.finish()
            if len(crops.frames):
                yield crops.frames, crops.detected

    def _needs_cropping(self, shape: tuple) -> bool:
        return self.crop_mouth is True or (self.crop_mouth == "auto" and not is_mouth_crop(*shape[1:3]))

    def _raw_frames(self) -> Iterator[np.ndarray]:
        """Decoded frames at 25 fps by presentation time, by `load_clip`'s rule: the frame at instant k / 25 is the last
        one shown by then (the first frame's time is 0, as the audio's first sample), and the video lasts until its
        last frame's start plus the interval before it. Frames are turned upright and face video beyond full HD is
        shrunk, as `load_clip` does."""
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                interval = 1 / float(stream.average_rate or VIDEO_FPS)
                chunk, shown, start, time, target = [], None, None, -interval, 0
                for frame in self._decoded(container, stream, "undecodable video (the last frame held)"):
                    previous = time
                    if frame.time is None:
                        time += interval
                    else:
                        start = frame.time if start is None else start
                        time = frame.time - start
                    interval = time - previous if shown is not None and time > previous else interval
                    image = _to_grayscale(_shrink(upright_rgb(frame)[None], MAX_FACE_FRAME_SIDE)[0])
                    # Instants before this frame's time show the frame before it (the first frame, before any).
                    while target / VIDEO_FPS + TIMESTAMP_SLACK_S < time:
                        chunk.append(image if shown is None else shown)
                        target += 1
                    shown = image
                    if len(chunk) >= _VIDEO_CHUNK_FRAMES:
                        yield np.stack(chunk)
                        chunk = []
                if shown is None:
                    raise ValueError(f"{self.path} contains no video frames.")
                while target / VIDEO_FPS + TIMESTAMP_SLACK_S < time + interval:
                    chunk.append(shown)
                    target += 1
                yield np.stack(chunk)
        except av.error.FFmpegError as error:
            raise ValueError(f"Could not decode video from {self.path}: {error}") from error

    def segments(self, segments: list[Segment], audio: bool = True, video: bool = True) -> Iterator[SegmentMedia]:
        """Each segment's media, in order (segments sorted, not overlapping). Segment bounds are rounded to whole
        frames; audio and frames of a segment cover the same frames (the audio padded with silence at the end)."""
        audio_stream = _SampleBuffer(self.audio_blocks()) if audio and self.audio_path is not None else None
        frame_stream = _FrameBuffer(self.frames()) if video and self.has_video else None
        for segment in segments:
            first = round(segment.start * VIDEO_FPS)
            last = max(first + 1, round(segment.end * VIDEO_FPS))
            frames = face_found = None
            if frame_stream is not None:
                frames, face_found = frame_stream.take(first, last)
                if frames is not None:
                    last = first + len(frames)
            samples = None
            if audio_stream is not None:
                samples = audio_stream.take(first * SAMPLES_PER_FRAME, last * SAMPLES_PER_FRAME)
            span = Segment(first / VIDEO_FPS, last / VIDEO_FPS)
            faults = [fault for fault in self.faults if fault.start < span.end and fault.end > span.start]
            yield SegmentMedia(span, samples, frames, face_found, faults)

    def _decoded(self, container, stream, fault: str) -> Iterator:
        """The stream's decoded frames in order; a packet that cannot be decoded is noted as `fault` and skipped."""
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                self._packet_fault(packet, fault)
                continue
            yield from decoded

    def _packet_fault(self, packet: av.Packet, what: str) -> None:
        """Record a packet that could not be decoded; faults of one kind less than a second apart make one range."""
        start = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else 0.0
        length = float(packet.duration * packet.time_base) if packet.duration and packet.time_base else 1 / VIDEO_FPS
        last = next((fault for fault in reversed(self.faults) if fault.what == what), None)
        if last is not None and last.start <= start <= last.end + _FAULT_MERGE_S:
            self.faults[self.faults.index(last)] = MediaFault(last.start, max(last.end, start + length), what)
        else:
            self.faults.append(MediaFault(start, start + length, what))


class _SampleBuffer:
    """Audio samples from consecutive blocks, taken by increasing sample ranges; what lies before is dropped."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self.blocks, self.buffer, self.offset = blocks, np.zeros(0, np.float32), 0

    def take(self, start: int, end: int) -> np.ndarray:
        while self.offset + len(self.buffer) < end:
            block = next(self.blocks, None)
            if block is None:
                break
            self.buffer = np.concatenate([self.buffer, block])
        drop = max(0, start - self.offset)
        self.buffer, self.offset = self.buffer[drop:], self.offset + drop
        samples = self.buffer[: end - self.offset]
        return np.pad(samples, (0, end - start - len(samples)))


class _FrameBuffer:
    """Frames (and face flags) from consecutive chunks, taken by increasing frame ranges; what lies before is dropped."""

    def __init__(self, chunks: Iterator[tuple[np.ndarray, np.ndarray | None]]):
        self.chunks, self.frames, self.found, self.offset = chunks, [], [], 0

    def take(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray | None]:
        while self.offset + len(self.frames) < end:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.frames += list(chunk[0])
            self.found += list(chunk[1]) if chunk[1] is not None else [None] * len(chunk[0])
        drop = max(0, start - self.offset)
        del self.frames[:drop], self.found[:drop]
        self.offset += drop
        count = max(0, min(end, self.offset + len(self.frames)) - start)
        if count == 0:
            return None, None  # the video ended before this segment
        found = self.found[:count]
        return np.stack(self.frames[:count]), None if found[0] is None else np.array(found, dtype=bool)


def _has_stream(path: str, kind: str) -> bool:
    try:
        with av.open(path) as container:
            return bool(getattr(container.streams, kind))
    except av.error.FFmpegError as error:
        raise ValueError(f"Could not read {path} as a media file: {error}") from error


def _to_16k_mono(samples: np.ndarray, resampler, last: bool) -> np.ndarray:
    mono = samples.mean(axis=0, dtype=np.float32)
    if resampler is None:
        return mono
    return resampler.resample_chunk(mono, last=last)


def _streaming_cropper(path: str, shape: tuple):
    cropping = cropping_package(path, shape)
    return cropping.StreamingMouthCropper(cropping.default_cropper(), source=path)
