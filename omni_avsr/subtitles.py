"""Subtitle files (SubRip `.srt`, WebVTT `.vtt`) from a transcript's timed chunks, written with `pysubs2`."""

import os

import pysubs2

from .command_line import write_text_atomically


SUBTITLE_FORMATS = ("srt", "vtt")


def subtitles_text(chunks: list[dict], subtitle_format: str) -> str:
    """One numbered cue per chunk with text (`{"timestamp": (start_s, end_s), "text": ...}`, in order)."""
    if subtitle_format not in SUBTITLE_FORMATS:
        raise ValueError(f"Unknown subtitle format {subtitle_format!r}; expected one of {', '.join(SUBTITLE_FORMATS)}.")
    subtitles = pysubs2.SSAFile()
    for chunk in chunks:
        if chunk["text"]:
            start, end = (round(seconds * 1000) for seconds in chunk["timestamp"])
            subtitles.append(pysubs2.SSAEvent(start=start, end=end, text=chunk["text"]))
    return subtitles.to_string(subtitle_format)


def write_subtitles(chunks: list[dict], path: str | os.PathLike, subtitle_format: str) -> None:
    """Write the chunks' subtitles to `path` (replaced whole, never left half-written)."""
    write_text_atomically(path, subtitles_text(chunks, subtitle_format))
