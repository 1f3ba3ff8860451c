"""Cut a long recording into segments no longer than the model was trained on, at pauses in the speech.

Omni-AVSR reads one clip of up to 30 s and was trained on segments of up to 16 s (LRS3's, cut at word boundaries), so a
longer recording is transcribed a segment at a time. Pauses come from Silero VAD (the `silero-vad` package, which
ships its model): its speech probability for every 32 ms of audio, computed a block at a time so that a long file is
never held in memory, becomes speech regions by Silero's own rule (`get_speech_timestamps_from_probs`, which splits a
region longer than the limit at its longest silence); the regions are then packed, in order, into segments no longer
than the limit. Every cut lies in a pause whenever the speech has one within the limit. Where `silero-vad` is not
installed (a Hub folder loaded with remote code), an energy rule stands in for it, with a warning.

A silent video (lip reading without audio) has no pauses to find: it is cut into consecutive windows of the limit,
without overlap. The model gives no word timings, so overlapping windows could not be merged without guessing; a fixed
cut costs at most the word it falls in.

This module is copied into Hub repositories with the pipeline, so it stays flat; `silero_vad` is imported by name
only when a recording is segmented.
"""

import importlib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .media import VIDEO_FPS


DEFAULT_SEGMENT_SECONDS = 16.0
"""The longest segment by default: LRS3's training segments, the length Omni-AVSR was trained on."""
VAD_SAMPLING_RATE = 16000
VAD_WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
MIN_SEGMENT_SECONDS = 1.0
SPEECH_PAD_SECONDS = 0.3
"""Kept on each side of detected speech: the lips move before the sound starts and after it ends (a /p/ closes them
first), so a segment cut at the sound's edge loses visemes. On the long-form test recording (20 Mini-LRS test clips,
the demo's model) pads of 0.1, 0.2, 0.3 and 0.5 s gave lip reading 20.0, 10.8, 9.2 and 25.8 % WER (the clips one by
one: 9.2 %; the pads are kept within the segment limit, so at 0.5 s the 2.96 s limit of that model left too little
for a sentence, which was split)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording, in seconds from its start."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def check_segment_seconds(seconds: float | None, max_clip_seconds: float) -> float:
    """The longest segment asked for (`chunk_length_s`), or the default; refused outside what the model can read."""
    if seconds is None:
        return DEFAULT_SEGMENT_SECONDS
    if not isinstance(seconds, (int, float)) or not MIN_SEGMENT_SECONDS <= seconds <= max_clip_seconds:
        raise ValueError(
            f"chunk_length_s={seconds!r}: expected a length in seconds from {MIN_SEGMENT_SECONDS:g} to "
            f"{max_clip_seconds:g} (the Whisper encoder's window, the longest clip the model reads; it was trained on "
            f"segments of up to {DEFAULT_SEGMENT_SECONDS:g} s, the default)."
        )
    return float(seconds)


class SpeechProbabilities:
    """Speech probability of every 32 ms window of a 16 kHz recording, fed a block at a time (any block sizes)."""

    def __init__(self):
        silero = _silero()
        self._model = silero.load_silero_vad() if silero is not None else None
        if self._model is None:
            warnings.warn(
                "silero-vad is not installed: long recordings are cut at pauses found by an energy rule, which takes "
                "loud noise for speech (pip install silero-vad).",
                stacklevel=2,
            )
        self._pending = np.zeros(0, np.float32)
        self.probabilities: list[float] = []
        self.num_samples = 0

    def feed(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, dtype=np.float32)
        self.num_samples += len(audio)
        self._pending = np.concatenate([self._pending, audio])
        whole = len(self._pending) // VAD_WINDOW_SAMPLES * VAD_WINDOW_SAMPLES
        if whole:
            self._score(self._pending[:whole])
            self._pending = self._pending[whole:]

    def finish(self) -> list[float]:
        """The probabilities of every window, the last one zero-padded."""
        if len(self._pending):
            self._score(np.pad(self._pending, (0, VAD_WINDOW_SAMPLES - len(self._pending))))
            self._pending = np.zeros(0, np.float32)
        return self.probabilities

    def _score(self, audio: np.ndarray) -> None:
        windows = audio.reshape(-1, VAD_WINDOW_SAMPLES)
        if self._model is None:
            self.probabilities += _energy_speech_probabilities(windows)
            return
        with torch.inference_mode():
            for window in torch.from_numpy(windows):
                self.probabilities.append(float(self._model(window[None], VAD_SAMPLING_RATE)))


def speech_segments(
    audio_blocks: Iterable[np.ndarray], max_seconds: float = DEFAULT_SEGMENT_SECONDS, duration: float | None = None
) -> list[Segment]:
    """Segments of at most `max_seconds` covering the speech of a 16 kHz recording given as consecutive blocks."""
    scorer = SpeechProbabilities()
    for block in audio_blocks:
        scorer.feed(block)
    probabilities = scorer.finish()
    duration = scorer.num_samples / VAD_SAMPLING_RATE if duration is None else duration
    return segments_from_probabilities(probabilities, scorer.num_samples, max_seconds, duration)


def segments_from_probabilities(
    probabilities: list[float], num_samples: int, max_seconds: float, duration: float
) -> list[Segment]:
    """Speech regions by Silero's rule (each at most `max_seconds`), packed in order into segments of at most
    `max_seconds`: a segment spans its regions and the pauses between them, and ends where the next region would take
    it past the limit, so every cut falls in a pause."""
    silero = _silero()
    regions = silero.get_speech_timestamps_from_probs(
        probabilities,
        sampling_rate=VAD_SAMPLING_RATE,
        max_speech_duration_s=max_seconds,  # Silero keeps room for both pads within it
        audio_length_samples=num_samples,
        speech_pad_ms=round(1000 * SPEECH_PAD_SECONDS),
        min_silence_duration_ms=200,
    ) if silero is not None else _energy_regions(probabilities, num_samples, max_seconds)
    segments = []
    for region in regions:
        start = region["start"] / VAD_SAMPLING_RATE
        end = min(region["end"] / VAD_SAMPLING_RATE, duration)
        if end <= start:
            continue
        if segments and end - segments[-1].start <= max_seconds:
            segments[-1] = Segment(segments[-1].start, end)
        else:
            segments.append(Segment(start, end))
    return [_whole_frames(segment, max_seconds) for segment in segments]


def fixed_windows(duration: float, max_seconds: float = DEFAULT_SEGMENT_SECONDS) -> list[Segment]:
    """Consecutive windows of `max_seconds` (in whole frames; the last one shorter) covering `duration` seconds: a
    silent video's rule."""
    window = math.floor(max_seconds * VIDEO_FPS + 1e-6)
    total = max(1, round(duration * VIDEO_FPS))
    return [Segment(first / VIDEO_FPS, min(first + window, total) / VIDEO_FPS) for first in range(0, total, window)]


def _whole_frames(segment: Segment, max_seconds: float) -> Segment:
    """The segment on the 25 fps frame grid that its media are cut on, no longer than `max_seconds`."""
    first = round(segment.start * VIDEO_FPS)
    last = max(first + 1, min(round(segment.end * VIDEO_FPS), first + math.floor(max_seconds * VIDEO_FPS + 1e-6)))
    return Segment(first / VIDEO_FPS, last / VIDEO_FPS)


def _silero():
    """The `silero_vad` package, or `None` where it is not installed. Importing it sets torch to one thread for the
    whole process; the model's decoding needs them all, so the count is put back."""
    threads = torch.get_num_threads()
    try:
        return importlib.import_module("silero_vad")
    except ImportError:
        return None
    finally:
        torch.set_num_threads(threads)


def _energy_speech_probabilities(windows: np.ndarray) -> list[float]:
    """A stand-in for Silero: 1 for windows louder than -40 dBFS, else 0."""
    level = 10 * np.log10(np.mean(np.square(windows, dtype=np.float64), axis=1) + 1e-12)
    return (level > -40.0).astype(float).tolist()


def _energy_regions(probabilities: list[float], num_samples: int, max_seconds: float) -> list[dict]:
    """Runs of loud windows, joined across gaps shorter than 0.2 s, cut so that each fits `max_seconds` once padded,
    then padded as Silero pads (into at most half of the gap to a neighbour)."""
    limit = (max_seconds - 2 * SPEECH_PAD_SECONDS) * VAD_SAMPLING_RATE - VAD_WINDOW_SAMPLES  # Silero's own limit
    loud = np.flatnonzero(np.asarray(probabilities) > 0.5)
    regions = []
    for index in loud:
        start, end = index * VAD_WINDOW_SAMPLES, min((index + 1) * VAD_WINDOW_SAMPLES, num_samples)
        if regions and start - regions[-1]["end"] < 0.2 * VAD_SAMPLING_RATE and end - regions[-1]["start"] <= limit:
            regions[-1]["end"] = end
        else:
            regions.append({"start": start, "end": end})
    pad = round(SPEECH_PAD_SECONDS * VAD_SAMPLING_RATE)
    padded = []
    for index, region in enumerate(regions):
        before = regions[index - 1]["end"] if index else -2 * pad
        after = regions[index + 1]["start"] if index + 1 < len(regions) else num_samples + 2 * pad
        padded.append({
            "start": max(0, region["start"] - min(pad, (region["start"] - before) // 2)),
            "end": min(num_samples, region["end"] + min(pad, (after - region["end"]) // 2)),
        })
    return padded
