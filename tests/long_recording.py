"""A long recording made of Mini-LRS test clips with pauses between them, for the long-form tests and benchmark."""

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile

from omni_avsr.data.mini_lrs import MiniLRSConfig, generate_corpus
from omni_avsr.media import SAMPLES_PER_FRAME, SAMPLING_RATE, VIDEO_FPS, load_clip


@dataclass
class LongRecording:
    """`video`: mouth video with its audio as an AAC track; `paired`: the same video with a sibling `.wav` instead.
    `clips` are the Mini-LRS clips in the order they were placed, `speech` each clip's speech (start, end) in
    seconds of the recording, `texts` their transcripts."""

    video: Path
    paired: Path
    clips: list[str]
    speech: list[tuple[float, float]]
    texts: list[str]
    seconds: float


def mini_lrs_test_clips(root: Path, num_clips: int) -> tuple[list[str], list[str]]:
    """`num_clips` Mini-LRS test clips (generated into `root` if needed): their paths and transcripts."""
    generate_corpus(root, MiniLRSConfig(num_train=0, num_test=num_clips, babble_seconds=2.0, babble_talkers=1),
                    progress=False)
    lines = (root / "labels" / "mini_lrs_test.csv").read_text().splitlines()
    rows = [line.split(",", 4) for line in lines]
    return [str(root / "mini_lrs" / row[1]) for row in rows], [row[4] for row in rows]


def build_long_recording(
    clips: list[str], texts: list[str], folder: Path, pauses: tuple[float, float] = (0.6, 1.4), seed: int = 0
) -> LongRecording:
    """Place the clips one after another with a pause of random length (in `pauses`) before each, the mouth still."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    audio_parts, frame_parts, speech, offset = [], [], [], 0
    for path in clips:
        clip = load_clip(path, grayscale=False)
        pause = round(rng.uniform(*pauses) * VIDEO_FPS)
        still = clip.frames[:1] if not frame_parts else frame_parts[-1][-1:]
        frame_parts += [np.repeat(still, pause, axis=0), clip.frames]
        audio_parts += [np.zeros(pause * SAMPLES_PER_FRAME, np.float32), clip.audio]
        loud = np.flatnonzero(np.abs(clip.audio) > 0.02 * np.abs(clip.audio).max())
        start = (offset + pause) / VIDEO_FPS
        speech.append((start + loud[0] / SAMPLING_RATE, start + loud[-1] / SAMPLING_RATE))
        offset += pause + len(clip.frames)
    frames, audio = np.concatenate(frame_parts), np.concatenate(audio_parts)
    video, paired = folder / "recording.mp4", folder / "paired.mp4"
    write_mouth_video(video, frames, audio)
    write_mouth_video(paired, frames)
    soundfile.write(paired.with_suffix(".wav"), audio, SAMPLING_RATE)
    return LongRecording(video, paired, list(clips), speech, list(texts), len(frames) / VIDEO_FPS)


def write_mouth_video(path: Path, frames: np.ndarray, audio: np.ndarray | None = None) -> Path:
    """H.264 video of RGB `frames` at 25 fps, with `audio` (16 kHz mono) as an AAC track when given."""
    with av.open(str(path), "w") as container:
        video_stream = container.add_stream("libx264", rate=int(VIDEO_FPS))
        video_stream.height, video_stream.width = frames.shape[1:3]
        video_stream.pix_fmt = "yuv420p"
        video_stream.options = {"preset": "ultrafast", "crf": "12"}
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=SAMPLING_RATE)
            audio_stream.layout = "mono"
        for frame in frames:
            container.mux(video_stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(video_stream.encode())
        if audio_stream is not None:
            for start in range(0, len(audio), 1024):
                chunk = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].copy(), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = SAMPLING_RATE, start
                container.mux(audio_stream.encode(chunk))
            container.mux(audio_stream.encode())
    return path
