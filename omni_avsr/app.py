"""`omni-avsr app`: a web page to try an Omni-AVSR checkpoint, in Gradio (the Hugging Face Hub's own framework).

Upload or record a clip (or pick an example), see the mouth crops and the audio the model reads, transcribe it at
every task × compression rate in one click (encoders once per clip) with each cell's cost, and add noise to watch
lip video hold up where audio fails. The work itself is in `omni_avsr.app_backend` and `omni_avsr.app_media`.
"""

import os
from functools import partial
from pathlib import Path

from .app_backend import (
    LATENCY_COLUMN,
    TOKENS_COLUMN,
    AppBackend,
    cost_table,
    grid_summary,
    grid_table,
    needs_long_form,
)
from .app_media import (
    MAX_UPLOAD_MB,
    Example,
    corpus_of,
    examples_in,
    load_seen_clip,
    mouth_strip,
    playable_audio,
    write_crop_video,
)
from .command_line import EXPECTED_ERRORS


APP_EXTRA = "pip install 'omni-avsr[app]'"
try:
    import gradio as gr
except ImportError as error:
    raise ImportError(f"omni-avsr app needs Gradio, the optional extra: {APP_EXTRA} ({error}).") from error


DEFAULT_PORT = 7860
SNR_RANGE_DB = (-10, 20)
# Gradio deletes the files it served (crops, audio) an hour after they were made, and keeps none across restarts.
CACHE_LIFETIME_S = 3600


def build_page(backend: AppBackend, model_name: str, examples: list[Example] = ()) -> gr.Blocks:
    """The page: inputs and examples on the left; what the model sees, the transcripts and their cost on the right."""
    config = backend.model.config
    # No analytics: the page sends nothing to third parties.
    with gr.Blocks(
        title="Omni-AVSR", delete_cache=(CACHE_LIFETIME_S, CACHE_LIFETIME_S), analytics_enabled=False
    ) as page:
        gr.Markdown(
            f"## Omni-AVSR: speech recognition from audio, lips or both\n"
            f"Model `{model_name}`: tasks {', '.join(task.upper() for task in config.tasks)}; audio rates "
            f"{', '.join(map(str, config.audio_rates))}, video rates {', '.join(map(str, config.video_rates))}, "
            "chosen now, at inference. A lower rate gives the language model more tokens per second of media: "
            "more accurate, slower."
        )
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(
                    label="Video: a speaker's face or mouth crops", sources=["upload", "webcam"], elem_id="video-input"
                )
                audio = gr.Audio(
                    label="Audio: a clip alone, or the video's soundtrack", sources=["upload", "microphone"],
                    type="filepath", elem_id="audio-input",
                )
                reference = gr.Textbox(label="Reference transcript (optional; adds the WER)", elem_id="reference")
                cells = gr.CheckboxGroup(
                    backend.cell_labels, value=backend.cell_labels, label="Tasks × rates", elem_id="cells"
                )
                with gr.Row():
                    noise = gr.Radio(list(backend.noise.kinds), value="clean", label="Noise", elem_id="noise")
                    snr = gr.Slider(*SNR_RANGE_DB, value=0, step=1, label="SNR (dB)", elem_id="snr")
                run = gr.Button("Transcribe at every task × rate", variant="primary", elem_id="run")
                if examples:
                    gr.Examples(
                        [[example.video, example.audio, example.text] for example in examples],
                        inputs=[video, audio, reference], label="Example clips",
                    )
            with gr.Column(scale=3):
                strip = gr.Image(label="Mouth crops the model reads", interactive=False, elem_id="crops")
                with gr.Row():
                    crop_video = gr.Video(label="Mouth crops, 25 fps", interactive=False, elem_id="crop-video")
                    with gr.Column():
                        face = gr.Textbox(label="Face", interactive=False, elem_id="face")
                        heard = gr.Audio(label="Audio the model hears", interactive=False, elem_id="heard")
                summary = gr.Markdown(elem_id="summary")
                table = gr.Dataframe(label="Transcripts", interactive=False, wrap=True, elem_id="table")
                plot = gr.LinePlot(
                    x=TOKENS_COLUMN, y=LATENCY_COLUMN, color="task", label="Cost against compression rate",
                    elem_id="cost",
                )
        # Moving the SNR slider means "add noise": pick the first kind when the clip is still clean.
        snr.input(lambda kind: backend.noise.kinds[1] if kind == "clean" else kind, noise, noise)
        run.click(
            partial(transcribe_page, backend),
            [video, audio, cells, noise, snr, reference],
            [strip, crop_video, face, heard, summary, table, plot],
        )
    return page


def transcribe_page(backend: AppBackend, video, audio, labels, noise, snr_db, reference):
    """One click: shows what the model sees, then the transcripts. Files live in a request folder removed after the
    last update (Gradio has copied what it shows by then); bad input becomes the CLI's one-line message."""
    with backend.workspace() as workspace:
        try:
            path = workspace.add_media(video, audio)
            if needs_long_form(path):
                table = backend.transcribe_long_form(path)
                yield None, None, "", None, f"{path.name}: long-form transcription, with timestamps.", table, None
                return
            clip = backend.hear(load_seen_clip(path), noise, snr_db)
            cells = backend.chosen_cells(labels, clip, path.name)
            seen = (
                mouth_strip(clip.frames) if clip.frames is not None else None,
                write_crop_video(workspace.output("mouth_crops.mp4"), clip.frames) if clip.frames is not None else None,
                clip.face,
                playable_audio(clip.audio) if clip.audio is not None else None,
            )
            heard = "" if noise == "clean" or clip.audio is None else f" The audio has {noise} at {snr_db:g} dB SNR."
            yield *seen, f"Transcribing {len(cells)} task × rate cells…{heard}", None, None
            grid = backend.transcribe(clip, cells)
            yield *seen, grid_summary(grid, clip.seconds) + heard, grid_table(grid, reference), cost_table(grid)
        except EXPECTED_ERRORS as error:
            raise gr.Error(workspace.message(error), print_exception=False) from None


def serve(
    model,
    processor,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    examples: str | os.PathLike | None = None,
    noise: str | os.PathLike | None = None,
    device: str | None = None,
    max_upload_mb: float = MAX_UPLOAD_MB,
) -> None:
    """Serve the page of `model` until interrupted (example clips and babble as `example_clips` finds them)."""
    clips, corpus_noise = example_clips(model_name, examples)
    backend = AppBackend(
        model, processor, babble_path=noise or corpus_noise, max_upload_mb=max_upload_mb, device=device
    )
    launch(build_page(backend, model_name, clips), clips, host, port, max_upload_mb)


def example_clips(model_name: str, examples: str | os.PathLike | None = None) -> tuple[list[Example], str | None]:
    """The page's example clips, from the folder `examples`, else the test clips of the corpus the model was evaluated
    on (its `results.json`), else the model folder's `examples/`; and that corpus's babble noise, if any."""
    corpus_examples, corpus_noise = corpus_of(model_name) if os.path.isdir(model_name) else ([], None)
    if examples is not None:
        return examples_in(examples), corpus_noise
    own = Path(model_name) / "examples"
    return corpus_examples or (examples_in(own) if own.is_dir() else []), corpus_noise


def launch(page: gr.Blocks, clips: list[Example], host: str, port: int, max_upload_mb: float, **launch_kwargs):
    """Serve `page`, one click at a time, with uploads capped at `max_upload_mb` and the example clips' folders
    readable (Gradio serves nothing else from the disk)."""
    folders = {os.path.dirname(os.path.abspath(path)) for clip in clips for path in (clip.video, clip.audio) if path}
    return page.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb", allowed_paths=sorted(folders),
        show_error=True, **launch_kwargs,
    )
