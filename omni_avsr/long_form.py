"""Long-form transcription: a recording of any length as a sequence of segments, each transcribed as one clip.

The pipelines call this module for a file longer than one clip (`MAX_CLIP_SECONDS`), or when asked for timestamps or a
segment length. A file is read twice, a stretch at a time (`media_stream.MediaStream`): once for its audio, cut at
pauses by voice-activity detection (`segmentation`), then for each segment's media, which the pipeline batches like
separate clips. The transcript is the segments' texts in order, and with timestamps transformers' convention for
speech recognition: `{"text": ..., "chunks": [{"timestamp": (start_s, end_s), "text": ...}, ...]}`.

Faults cost only their own stretch: a segment in which a face video shows no face for most frames is transcribed
from the audio alone (task `asr`) when the task is `avsr`, and left empty for `vsr`; a segment with undecodable
packets is transcribed from what was decoded. Such chunks carry a `"note"` saying what happened and where.

This module is copied into Hub repositories with the pipeline, so it stays flat.
"""

from collections.abc import Iterator

import numpy as np

from .configuration_omni_avsr import TASK_MODALITIES
from .media import MAX_CLIP_SECONDS, MIN_CLIP_SECONDS, SAMPLES_PER_FRAME, VIDEO_FPS
from .media_stream import MediaStream, SegmentMedia
from .segmentation import Segment, check_segment_seconds, fixed_windows, speech_segments


MIN_FACE_FRACTION = 0.5
"""A segment of a face video whose face was found in fewer of its frames than this is a stretch without a face."""


def file_segments(
    path: str, task: str, available: set[str], max_seconds: float, done: dict | None = None
) -> Iterator[dict]:
    """The items of a long file for the pipeline: one per segment still to transcribe (`done` maps segment times
    to chunks already transcribed), in order; `is_last` on the final one. Yields one empty item when there is
    nothing to transcribe (no speech, or every segment done), so that the file still gets its result."""
    needs = TASK_MODALITIES[task]
    # Audio, when the file has it, finds the pauses even for lip reading; a silent video is cut into fixed windows.
    stream = MediaStream(path, audio="audio" in available, video="video" in needs)
    if stream.audio_path is not None:
        plan = speech_segments(stream.audio_blocks(), max_seconds, stream.duration)
    else:
        plan = fixed_windows(stream.duration or max_seconds, max_seconds)
    yield from _items(stream.segments(_pending(plan, done), audio="audio" in needs, video="video" in needs), task, path)


def array_segments(
    audio: np.ndarray | None, frames: np.ndarray | None, task: str, max_seconds: float, done: dict | None = None
) -> Iterator[dict]:
    """The items of a long recording given as arrays (16 kHz audio, 25 fps mouth crops), as `file_segments`."""
    needs = TASK_MODALITIES[task]
    if audio is not None:
        plan = speech_segments([audio], max_seconds)
    else:
        plan = fixed_windows(len(frames) / VIDEO_FPS, max_seconds)

    def media() -> Iterator[SegmentMedia]:
        for segment in _pending(plan, done):
            first = round(segment.start * VIDEO_FPS)
            last = max(first + 1, round(segment.end * VIDEO_FPS))
            if frames is not None and "video" in needs:
                last = min(last, len(frames))
            yield SegmentMedia(
                Segment(first / VIDEO_FPS, last / VIDEO_FPS),
                _slice_audio(audio, first, last) if "audio" in needs else None,
                frames[first:last] if frames is not None and "video" in needs else None,
            )

    yield from _items(media(), task, None)


def is_long(seconds: float | None) -> bool:
    """Whether a recording of this many seconds is longer than one clip the model reads."""
    return seconds is not None and seconds > MAX_CLIP_SECONDS


def file_seconds(path: str, available: set[str]) -> float | None:
    """A file's duration as its container (or WAV header) announces it, without decoding it."""
    return MediaStream(path, audio="audio" in available, video="video" in available).duration


def segment_seconds(chunk_length_s: float | None, default: float | None = None) -> float:
    """The longest segment: `chunk_length_s` when given, else `default` (the processor's `segment_seconds`)."""
    return check_segment_seconds(chunk_length_s if chunk_length_s is not None else default, MAX_CLIP_SECONDS)


def merge_chunks(outputs: list[dict], done: dict | None = None) -> tuple[str, list[dict]]:
    """The transcript and its chunks in time order, from the segments' outputs and the chunks already done."""
    chunks = [output["chunk"] for output in outputs if output.get("chunk") is not None]
    chunks += list((done or {}).values())
    chunks.sort(key=lambda chunk: chunk["timestamp"][0])
    return " ".join(chunk["text"] for chunk in chunks if chunk["text"]), chunks


def chunk_key(timestamp) -> tuple[float, float]:
    """How a segment is recognised across runs (its times, to the millisecond)."""
    return round(float(timestamp[0]), 3), round(float(timestamp[1]), 3)


def _pending(plan: list[Segment], done: dict | None) -> list[Segment]:
    """The segments still to transcribe; one shorter than a clip can be (the tail of a fixed window) holds no word."""
    return [
        segment for segment in plan
        if segment.duration >= MIN_CLIP_SECONDS and chunk_key((segment.start, segment.end)) not in (done or {})
    ]


def _items(media: Iterator[SegmentMedia], task: str, source: str | None) -> Iterator[dict]:
    previous = None
    for segment_media in media:
        if previous is not None:
            yield {**previous, "is_last": False}
        previous = _item(segment_media, task, source)
    yield {**(previous or _empty_item(task, source)), "is_last": True}


def _item(media: SegmentMedia, task: str, source: str | None) -> dict:
    notes = [str(fault) for fault in media.faults]
    segment_task, audio, frames = task, media.audio, media.frames
    if "video" in TASK_MODALITIES[task] and _lacks_face(media):
        where = f"{media.segment.start:.2f} s to {media.segment.end:.2f} s"
        if task == "avsr":
            segment_task, frames = "asr", None
            notes.append(f"no face from {where}: transcribed from the audio alone (asr)")
        else:
            notes.append(f"no face from {where}: no lip reading possible, left empty")
            audio = frames = None
    return {
        "task": segment_task,
        "audio": audio,
        "frames": frames,
        "segment": (media.segment.start, media.segment.end),
        "note": "; ".join(notes) or None,
        "source": source,
    }


def _empty_item(task: str, source: str | None) -> dict:
    return {"task": task, "audio": None, "frames": None, "segment": None, "note": None, "source": source}


def _lacks_face(media: SegmentMedia) -> bool:
    if media.frames is None:
        return True
    return media.face_found is not None and media.face_found.mean() < MIN_FACE_FRACTION


def _slice_audio(audio: np.ndarray | None, first: int, last: int) -> np.ndarray | None:
    if audio is None:
        return None
    samples = audio[first * SAMPLES_PER_FRAME : last * SAMPLES_PER_FRAME]
    return np.pad(samples, (0, (last - first) * SAMPLES_PER_FRAME - len(samples)))
