"""The web app's media: uploads in a temporary folder, what the model sees of a clip, noise, example clips.

Nothing here imports Gradio: the page (`omni_avsr.app`) hands file paths in and shows the arrays that come out.
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from .data.augment import add_noise
from .data.mini_lrs_render import write_mp4
from .media import (
    AUDIO_EXTENSIONS,
    MAX_CLIP_SECONDS,
    SAMPLING_RATE,
    VIDEO_FPS,
    cropping_package,
    is_mouth_crop,
    load_audio,
    load_clip,
)
from .pipeline_omni_avsr import media_in_file


MAX_UPLOAD_MB = 100
NOISE_KINDS = ("clean", "babble", "white noise")
STRIP_CROPS = 8
MAX_EXAMPLES = 4
SOUNDTRACK_FOLDER = "soundtrack"
OUTPUT_FOLDER = "shown"
# The noise drawn for a given clip and SNR is always the same, so a rerun shows the model, not a new noise draw.
NOISE_SEED = 0


class Workspace:
    """A temporary folder holding one request's files, removed on exit.

    Uploads are copied in under their own (sanitised) names, so the loaders' errors name the user's file; `message`
    drops the folder from them, leaving the one line the CLI prints for that file.
    """

    def __init__(
        self, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_CLIP_SECONDS,
        root: str | os.PathLike | None = None,
    ):
        self.max_upload_mb = max_upload_mb
        self.max_seconds = max_seconds
        self.root = root
        self.folder = None

    def __enter__(self) -> "Workspace":
        self.folder = Path(tempfile.mkdtemp(prefix="omni-avsr-app-", dir=self.root))
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def add_media(self, video: str | None, audio: str | None) -> Path:
        """Copy the request's files in, in the LRS layout: the video and, when an audio file comes with it, that
        audio as the `.wav` of the same name (the video's soundtrack); an audio file alone keeps its own name.
        Returns the path the loaders read."""
        if video is None and audio is None:
            raise ValueError("No media given: upload or record a video or an audio file, or pick an example.")
        if video is None:
            return self._copy(audio, self.folder)
        video_path = self._copy(video, self.folder)
        if audio is not None:
            if video_path.suffix.lower() in AUDIO_EXTENSIONS:
                raise ValueError(
                    f"{video_path.name} was given as the video but is an audio file; expected a video (.mp4, .webm, "
                    "...) to go with the audio, or that file alone as the audio."
                )
            # Decoded from its own copy, so that its errors name the user's audio file.
            soundtrack = load_audio(self._copy(audio, self.folder / SOUNDTRACK_FOLDER), max_seconds=self.max_seconds)
            soundfile.write(video_path.with_suffix(".wav"), soundtrack, SAMPLING_RATE, subtype="FLOAT")
        return video_path

    def output(self, name: str) -> Path:
        """A path for a file the page shows (apart from the uploads, which may have any name)."""
        folder = self.folder / OUTPUT_FOLDER
        folder.mkdir(exist_ok=True)
        return folder / name

    def message(self, error: BaseException) -> str:
        """The error as one line, naming the user's files without this folder."""
        text = str(error)
        for folder in (self.folder / SOUNDTRACK_FOLDER, self.folder):
            text = text.replace(f"{folder}{os.sep}", "")
        return " ".join(text.split())

    def _copy(self, source: str, folder: Path) -> Path:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Media file not found: {os.path.basename(source)}")
        megabytes = os.path.getsize(source) / 2**20
        if megabytes > self.max_upload_mb:
            raise ValueError(
                f"{os.path.basename(source)} is {megabytes:.1f} MB; this page takes files of up to "
                f"{self.max_upload_mb:g} MB."
            )
        folder.mkdir(exist_ok=True)
        target = folder / _safe_name(source)
        shutil.copyfile(source, target)
        return target


def _safe_name(path: str) -> str:
    """The file's own name with anything but letters, digits, `.`, `-` and `_` replaced (it names a file here)."""
    name = re.sub(r"[^\w.-]", "_", os.path.basename(path)).lstrip(".")
    return name[-100:] or "upload"


@dataclass
class SeenClip:
    """What the model reads of a clip.

    Attributes:
        audio: 16 kHz mono waveform (aligned to the frames when both exist), or None.
        frames: uint8 grayscale mouth crops at 25 fps, or None.
        face: one sentence on where the crops come from (the face found in how many frames, or crops already).
        seconds: the clip's duration.
    """

    audio: np.ndarray | None
    frames: np.ndarray | None
    face: str
    seconds: float

    @property
    def modalities(self) -> set[str]:
        return {name for name, value in (("audio", self.audio), ("video", self.frames)) if value is not None}


def load_seen_clip(path: str | os.PathLike) -> SeenClip:
    """Decode a clip as the pipelines do (`load_clip`: 25 fps grayscale, 16 kHz audio, clips up to 30 s), keeping
    the face detector's per-frame result, which the pipelines drop, for the page to show."""
    path = os.fspath(path)
    available = media_in_file(path)
    clip = load_clip(path, audio="audio" in available, video="video" in available, crop_mouth=False)
    frames = clip.frames
    if frames is None:
        face = "No video: the file is audio only, so only ASR can read it."
    elif is_mouth_crop(*frames.shape[1:3]):
        face = f"Mouth crops already ({frames.shape[1]}×{frames.shape[2]}): read as they are, no face detection."
    else:
        crops = cropping_package(path, frames.shape).default_cropper()(frames, source=path)
        frames, found = crops.frames, int(crops.detected.sum())
        missed = len(frames) - found
        face = f"Face found in {found} of {len(frames)} frames" + (f" ({missed} interpolated)." if missed else ".")
    length = len(frames) / VIDEO_FPS if frames is not None else len(clip.audio) / SAMPLING_RATE
    return SeenClip(audio=clip.audio, frames=frames, face=face, seconds=length)


def mouth_strip(frames: np.ndarray, count: int = STRIP_CROPS) -> np.ndarray:
    """`count` crops spread evenly over the clip, side by side with a 2-pixel white gap: an image of the lips."""
    picked = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]
    gap = np.full((frames.shape[1], 2), 255, dtype=np.uint8)
    return np.concatenate([part for crop in picked for part in (crop, gap)][:-1], axis=1)


def write_crop_video(path: str | os.PathLike, frames: np.ndarray) -> str:
    """The crops as a playable H.264 mp4 (gray frames as RGB, what browsers play)."""
    write_mp4(path, np.repeat(frames[..., None], 3, axis=-1), fps=int(VIDEO_FPS))
    return os.fspath(path)


def playable_audio(audio: np.ndarray) -> tuple[int, np.ndarray]:
    """16-bit audio for the page's player; a mix louder than full scale is scaled down rather than clipped."""
    peak = float(np.abs(audio).max(initial=0.0))
    scaled = audio / peak if peak > 1.0 else audio
    return SAMPLING_RATE, np.round(scaled * 32767).astype(np.int16)


class NoiseMixer:
    """Adds babble (a recording, e.g. the corpus's) or white noise to a clip's audio at an SNR."""

    def __init__(self, babble_path: str | os.PathLike | None = None):
        self.babble = load_audio(babble_path) if babble_path is not None else None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in NOISE_KINDS if kind != "babble" or self.babble is not None)

    def __call__(self, audio: np.ndarray, kind: str, snr_db: float) -> np.ndarray:
        if kind not in self.kinds:
            raise ValueError(f"Unknown noise {kind!r}; expected one of {', '.join(self.kinds)}.")
        if kind == "clean":
            return audio
        rng = np.random.default_rng(NOISE_SEED)
        noise = self.babble if kind == "babble" else rng.standard_normal(len(audio)).astype(np.float32)
        return add_noise(audio, noise, snr_db, rng)


@dataclass(frozen=True)
class Example:
    """An example clip: a video and/or an audio file, and its transcript when known."""

    video: str | None
    audio: str | None
    text: str = ""


def corpus_of(model_dir: str | os.PathLike) -> tuple[list[Example], str | None]:
    """Test clips and babble noise of the corpus a model was evaluated on, as its `results.json` records them
    (`measured_on`: the corpus root, label file and noise); nothing when there is no such file or corpus."""
    results = Path(model_dir) / "results.json"
    if not results.is_file():
        return [], None
    rows = json.loads(results.read_text())
    measured_on = rows[0].get("measured_on") if rows else None
    if not measured_on:
        return [], None
    noise = (measured_on.get("noise") or {}).get("path")
    noise = noise if noise is not None and os.path.isfile(noise) else None
    labels = Path(measured_on["data_root"]) / "labels" / measured_on["labels"]
    if not labels.is_file():
        return [], noise
    from .data.lrs import load_lrs_dataset

    table = load_lrs_dataset(measured_on["data_root"], labels).with_format(None)
    examples = []
    for row in table.select(range(min(MAX_EXAMPLES, len(table)))):
        soundtrack = Path(row["path"]).with_suffix(".wav")
        examples.append(Example(row["path"], str(soundtrack) if soundtrack.is_file() else None, row["text"]))
    return examples, noise


def examples_in(folder: str | os.PathLike) -> list[Example]:
    """The example clips of a folder (a model's `examples/`, a Space's): videos with their `.wav` soundtrack when
    there is one, audio files alone, and the transcript in a `.txt` of the same name when there is one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"Examples folder not found: {folder}; expected a folder of .mp4 / .wav clips.")
    files = sorted(path for path in folder.iterdir() if path.is_file())
    videos = [path for path in files if path.suffix.lower() == ".mp4"]
    soundtracks = {path.with_suffix(".wav") for path in videos}
    audios = [path for path in files if path.suffix.lower() in AUDIO_EXTENSIONS and path not in soundtracks]
    examples = []
    for path in (videos + audios)[:MAX_EXAMPLES]:
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
        if path in videos:
            soundtrack = path.with_suffix(".wav")
            examples.append(Example(str(path), str(soundtrack) if soundtrack.is_file() else None, text))
        else:
            examples.append(Example(None, str(path), text))
    return examples
