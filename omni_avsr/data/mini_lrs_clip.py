"""One Mini-LRS clip: a sentence spoken by a speaker, as a 16 kHz wav and a 25 fps mouth video that agree.

Everything random in a clip (pauses around the speech, loudness, head motion, noise) comes from the clip's own
seed, so a clip is the same whichever worker process makes it and whatever was made before.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..media import SAMPLES_PER_FRAME, SAMPLING_RATE
from .mini_lrs_espeak import EspeakSynthesizer
from .mini_lrs_grammar import Sentence
from .mini_lrs_render import FPS, render_mouth_frames, write_mp4
from .mini_lrs_speakers import Speaker
from .mini_lrs_visemes import mouth_trajectory


SAMPLE_RATE = SAMPLING_RATE
DATASET_NAME = "mini_lrs"
_PAUSE_SECONDS = (0.1, 0.35)


@dataclass(frozen=True)
class ClipSpec:
    """What a clip says and who says it; `seed` is the entropy of its random generator."""

    split: str
    index: int
    speaker: Speaker
    sentence: Sentence
    seed: tuple[int, ...]

    @property
    def rel_path(self) -> str:
        """The video's path under `ROOT/mini_lrs/`, as in the label CSV; the wav has the same stem."""
        return f"{DATASET_NAME}_video/{self.split}/{self.speaker.speaker_id}/{self.index:05d}.mp4"


@dataclass(frozen=True)
class Clip:
    """`audio`: float32 at 16 kHz, 640 samples per frame; `frames`: RGB uint8 (frames, 96, 96, 3)."""

    audio: np.ndarray
    frames: np.ndarray


def make_clip(spec: ClipSpec, synthesizer: EspeakSynthesizer) -> Clip:
    """Speak the sentence, pad it with a short pause either side, and draw the mouth from its phoneme timing.

    The video has ceil(seconds × 25) frames and the audio exactly 640 samples (40 ms at 16 kHz) per frame.
    """
    rng = np.random.default_rng(spec.seed)
    utterance = synthesizer.synthesize(
        spec.sentence.spoken_text, spec.speaker.voice, seed=int(rng.integers(2**31 - 1))
    )
    speech = soxr.resample(utterance.samples.astype(np.float32) / 32768, utterance.sample_rate, SAMPLE_RATE)
    speech = speech * np.float32(rng.uniform(0.6, 0.95))
    lead = round(rng.uniform(*_PAUSE_SECONDS) * SAMPLE_RATE)
    trail = round(rng.uniform(*_PAUSE_SECONDS) * SAMPLE_RATE)
    num_frames = math.ceil((lead + len(speech) + trail) / SAMPLES_PER_FRAME)
    audio = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
    audio[lead : lead + len(speech)] = np.clip(speech, -1, 1)

    phonemes = tuple((name, start + lead / SAMPLE_RATE) for name, start in utterance.phonemes)
    trajectory = mouth_trajectory(phonemes, audio, SAMPLE_RATE, FPS)
    return Clip(audio, render_mouth_frames(trajectory, spec.speaker, rng))


def write_clip(root: Path, spec: ClipSpec, synthesizer: EspeakSynthesizer) -> int:
    """Write the clip's mp4 and wav under `root/mini_lrs/`, each complete or not at all; returns its frame count.

    Files are written under a temporary name and renamed, the mp4 last, so an interrupted run leaves no partial
    clip: a clip exists when its mp4 does.
    """
    clip = make_clip(spec, synthesizer)
    video_path = root / DATASET_NAME / spec.rel_path
    video_path.parent.mkdir(parents=True, exist_ok=True)
    audio_path = video_path.with_suffix(".wav")
    partial_audio = audio_path.with_name(f".{audio_path.name}.partial")
    partial_video = video_path.with_name(f".{video_path.name}.partial")
    soundfile.write(partial_audio, clip.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(partial_audio, audio_path)
    write_mp4(partial_video, clip.frames)
    os.replace(partial_video, video_path)
    return len(clip.frames)


def existing_clip_frames(root: Path, spec: ClipSpec) -> int | None:
    """The frame count of a clip a previous run finished (from its wav's length), or None if it is not there."""
    video_path = root / DATASET_NAME / spec.rel_path
    audio_path = video_path.with_suffix(".wav")
    if not (video_path.is_file() and audio_path.is_file()):
        return None
    return soundfile.info(audio_path).frames // SAMPLES_PER_FRAME
