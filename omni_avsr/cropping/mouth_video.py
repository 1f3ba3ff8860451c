"""Mouth videos on disk in the auto-avsr layout: a 96×96 25 fps `.mp4` and the 16 kHz mono `.wav` beside it."""

import os
from pathlib import Path

import numpy as np
import soundfile

from ..data.mini_lrs_render import write_mp4
from ..command_line import check_crop_paths
from ..media import MAX_FACE_FRAME_SIDE, SAMPLING_RATE, VIDEO_FPS, load_clip
from ..pipeline_omni_avsr import media_in_file
from .mouth_cropper import MouthCropper, MouthCrops


def write_mouth_video(video_path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray | None) -> Path | None:
    """Write RGB mouth frames as H.264 and, when given, the waveform as 16-bit PCM beside it (same stem, `.wav`).

    Both files are written under temporary names, then renamed, the video last: a video that exists is complete, and
    so is its audio, and a write that fails (a full disk) leaves the files of an earlier video as they were, and no
    temporary file. Without audio, a `.wav` left beside the path by an earlier video is removed, so that no reader
    pairs the new video with the old audio. Returns the audio's path, or None without audio.
    """
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    audio_path = video_path.with_suffix(".wav")
    partial_audio = audio_path.with_name(f".{audio_path.name}.partial")
    partial_video = video_path.with_name(f".{video_path.name}.partial")
    try:
        if audio is not None:
            soundfile.write(partial_audio, audio, SAMPLING_RATE, subtype="PCM_16", format="WAV")
        write_mp4(partial_video, frames, fps=int(VIDEO_FPS))
        if audio is not None:
            os.replace(partial_audio, audio_path)
        else:
            audio_path.unlink(missing_ok=True)
        os.replace(partial_video, video_path)
    finally:
        partial_audio.unlink(missing_ok=True)
        partial_video.unlink(missing_ok=True)
    return audio_path if audio is not None else None


def crop_video_file(
    input_path: str | os.PathLike, output_path: str | os.PathLike, cropper: MouthCropper | None = None
) -> tuple[MouthCrops, Path | None]:
    """Crop the mouth out of a face video file into `output_path` (+ its `.wav` when the input has audio).

    Returns the crops and the path of the `.wav` written (None for a silent video).
    """
    input_path = os.fspath(input_path)
    output_path = check_crop_paths(input_path, output_path)
    has_audio = "audio" in media_in_file(input_path)
    clip = load_clip(input_path, audio=has_audio, grayscale=False, crop_mouth=False, max_frame_side=MAX_FACE_FRAME_SIDE)
    crops = (cropper or MouthCropper())(clip.frames, source=input_path)
    return crops, write_mouth_video(output_path, crops.frames, clip.audio)
