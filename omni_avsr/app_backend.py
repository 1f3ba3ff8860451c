"""What one click of the web app computes, without the page: every task × rate of a clip with the encoders run once
per clip and each step timed, or, for a file longer than a clip, the pipeline's long-form transcription."""

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .app_media import MAX_UPLOAD_MB, NoiseMixer, SeenClip, Workspace
from .configuration_omni_avsr import TASK_MODALITIES
from .long_form import file_seconds, is_long
from .pipeline_omni_avsr import AudioVisualSpeechRecognitionPipeline, media_in_file
from .training.evaluation import EvaluationCell, decode_cell, encode_clips, evaluation_cells, word_error_rate


MAX_LONG_FORM_SECONDS = 600.0  # the page's limit for a long file: ten minutes of CPU decoding is a long wait
TOKENS_COLUMN = "LLM media tokens / s"
LATENCY_COLUMN = "decode (ms)"


@dataclass
class CellResult:
    """One task × rate of a clip: its transcript and the seconds its compression, projection and decoding took."""

    cell: EvaluationCell
    text: str
    seconds: float


@dataclass
class GridResult:
    """Every cell of one click, the seconds each modality's features and encoder took (once, shared by the cells that
    read it) and the seconds of the whole click."""

    cells: list[CellResult]
    encoder_seconds: dict[str, float]
    seconds: float


@torch.no_grad()
def transcribe_grid(
    model, processor, audio: np.ndarray | None, frames: np.ndarray | None, cells: list[EvaluationCell],
    **generate_kwargs,
) -> GridResult:
    """Decode one clip at every cell with the WER evaluation's code: each modality's features and encoder once, then
    per cell only compression, projection and decoding."""
    start = time.perf_counter()
    media = {"audio": [audio] if audio is not None else None, "video": [frames] if frames is not None else None}
    encoded, encoder_seconds = {}, {}
    for modality in dict.fromkeys(modality for cell in cells for modality in TASK_MODALITIES[cell.task]):
        began = time.perf_counter()
        encoded.update(encode_clips(model, processor, media["audio"], media["video"], {modality}))
        encoder_seconds[modality] = time.perf_counter() - began
    results = []
    for cell in cells:
        began = time.perf_counter()
        (text,) = decode_cell(model, processor, encoded, cell, **generate_kwargs)
        results.append(CellResult(cell, text, time.perf_counter() - began))
    return GridResult(results, encoder_seconds, time.perf_counter() - start)


def needs_long_form(path: str | os.PathLike) -> bool:
    """Whether a file is longer than one clip, so that the pipelines transcribe it in segments."""
    return is_long(announced_seconds(path))


def transcribe_long_form(recognizer, path: str | os.PathLike) -> dict:
    """A file longer than a clip in one pipeline call with timestamps: `{"text", "chunks": [{"timestamp": (start,
    end), "text"}]}`."""
    seconds = announced_seconds(path)
    if seconds > MAX_LONG_FORM_SECONDS:
        raise ValueError(
            f"{os.fspath(path)} lasts {seconds:.0f} s; this page transcribes files of up to "
            f"{MAX_LONG_FORM_SECONDS:.0f} s."
        )
    return recognizer(os.fspath(path), return_timestamps=True)


def announced_seconds(path: str | os.PathLike) -> float:
    """The duration a file's header announces, without decoding it (0 when it announces none)."""
    path = os.fspath(path)
    return file_seconds(path, media_in_file(path)) or 0.0


class AppBackend:
    """The model, its pipeline and the noise recordings the page works with.

    Args:
        model, processor: a loaded Omni-AVSR model and its processor.
        device: where the model runs (default: where it is).
        babble_path: babble noise to offer (e.g. the corpus's); white noise is always offered.
        max_upload_mb: the largest file the page takes.
        workdir: where request folders are made (default: the system's temporary folder).
        generate_kwargs: decoding options (default: the model's generation config).
    """

    def __init__(
        self, model, processor, device=None, babble_path=None, max_upload_mb: float = MAX_UPLOAD_MB, workdir=None,
        **generate_kwargs,
    ):
        # The pipeline refuses a checkpoint that does not cover its config, and moves the model to `device`.
        self.recognizer = AudioVisualSpeechRecognitionPipeline(model=model.eval(), processor=processor, device=device)
        self.model = self.recognizer.model
        self.processor = processor
        self.noise = NoiseMixer(babble_path)
        self.cells = evaluation_cells(model.config)
        self.max_upload_mb = max_upload_mb
        self.workdir = workdir
        self.generate_kwargs = generate_kwargs

    @property
    def cell_labels(self) -> list[str]:
        return [cell.label for cell in self.cells]

    def workspace(self) -> Workspace:
        return Workspace(self.max_upload_mb, MAX_LONG_FORM_SECONDS, root=self.workdir)

    def hear(self, clip: SeenClip, noise: str, snr_db: float) -> SeenClip:
        """The clip with `noise` added to its audio at `snr_db` (video unchanged)."""
        if clip.audio is None or noise == "clean":
            return clip
        return SeenClip(self.noise(clip.audio, noise, snr_db), clip.frames, clip.face, clip.seconds)

    def chosen_cells(self, labels: list[str], clip: SeenClip, name: str) -> list[EvaluationCell]:
        """The chosen cells the clip's media allow (a silent video: VSR only; an audio file: ASR only)."""
        chosen = [cell for cell in self.cells if cell.label in labels]
        if not chosen:
            raise ValueError(f"No task × rate chosen; expected some of {', '.join(self.cell_labels)}.")
        readable = [cell for cell in chosen if set(TASK_MODALITIES[cell.task]) <= clip.modalities]
        if not readable:
            has = " and ".join(sorted(clip.modalities))
            raise ValueError(
                f"None of the chosen cells ({', '.join(cell.label for cell in chosen)}) can read {name}, which has "
                f"{has} only; choose a task its media allow."
            )
        return readable

    def transcribe(self, clip: SeenClip, cells: list[EvaluationCell]) -> GridResult:
        return transcribe_grid(self.model, self.processor, clip.audio, clip.frames, cells, **self.generate_kwargs)

    def transcribe_long_form(self, path: str | os.PathLike) -> pd.DataFrame:
        chunks = transcribe_long_form(self.recognizer, path)["chunks"]
        return pd.DataFrame(
            [(*chunk["timestamp"], chunk["text"]) for chunk in chunks], columns=["start (s)", "end (s)", "transcript"]
        )


def grid_table(grid: GridResult, reference: str | None = None) -> pd.DataFrame:
    """The page's table: one row per cell, with the media tokens its LLM reads per second of media, its decoding
    time, its transcript and, when a reference transcript is given, its word error rate."""
    rows = []
    for result in grid.cells:
        cell = result.cell
        row = {
            "task": cell.task.upper(),
            "audio rate": cell.audio_rate or "–",
            "video rate": cell.video_rate or "–",
            TOKENS_COLUMN: round(cell.llm_tokens_per_second, 2),
            LATENCY_COLUMN: round(1000 * result.seconds),
            "transcript": result.text,
        }
        if reference and reference.strip():
            row["WER (%)"] = round(word_error_rate([reference], [result.text])[0], 1)
        rows.append(row)
    return pd.DataFrame(rows)


def cost_table(grid: GridResult) -> pd.DataFrame:
    """Decoding time against LLM tokens per second, one series per task: the plot of cost against rate."""
    return pd.DataFrame(
        [
            {"task": result.cell.task.upper(), TOKENS_COLUMN: result.cell.llm_tokens_per_second,
             LATENCY_COLUMN: 1000 * result.seconds}
            for result in grid.cells
        ]
    )


def grid_summary(grid: GridResult, seconds: float) -> str:
    """One sentence on where the click's time went."""
    names = {"audio": "audio features and encoder", "video": "video encoder"}
    encoders = " and ".join(f"{names[m]} {1000 * s:.0f} ms" for m, s in grid.encoder_seconds.items())
    decoding = sum(result.seconds for result in grid.cells)
    return (
        f"{len(grid.cells)} task × rate cells of a {seconds:.1f} s clip in {grid.seconds:.2f} s on this machine: "
        f"{encoders}, once for every cell, then {decoding:.2f} s of compression, projection and decoding "
        f"({LATENCY_COLUMN} per cell below)."
    )
