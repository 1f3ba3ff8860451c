"""`omni-avsr app --export-space DIR`: a Hugging Face Space folder that serves the page of `omni-avsr app` with a model
loaded from the Hub.

The folder holds `app.py` (the same command), `requirements.txt` (this package's dependencies with the `crop` extra;
Spaces install Gradio themselves, at the header's `sdk_version`), a README whose header configures the Space, a copy
of the `omni_avsr` package (it is not on PyPI) and, when given, example clips and babble noise.
"""

import importlib.metadata
import os
import shutil
from pathlib import Path

from huggingface_hub.utils import validate_repo_id
from packaging.requirements import Requirement

from .app_media import examples_in
from .command_line import prepare_output_dir


SPACE_EXTRAS = ("crop",)

APP_TEMPLATE = '''"""Omni-AVSR on a Hugging Face Space: the page of `omni-avsr app`, serving {model_id} from the Hub."""

import sys

from omni_avsr.cli import main


sys.exit(main({argv!r}))
'''

README_TEMPLATE = """---
title: Omni-AVSR
emoji: 👄
colorFrom: indigo
colorTo: pink
sdk: gradio
sdk_version: {gradio_version}
python_version: "3.11"
app_file: app.py
pinned: false
license: apache-2.0
models:
  - {model_id}
short_description: Speech recognition from audio, lips or both, at any rate
---

# Omni-AVSR: {model_id}

One model that recognises speech from audio (ASR), from the speaker's lips (VSR) or from both (AVSR), at
compression rates chosen at inference time. Upload or record a clip, or pick an example; the page shows the mouth
crops the model reads, transcribes the clip at every task × rate in one click (the encoders run once) with each
cell's cost, and adds noise to the audio to show lip video holding up where audio fails.

Made with `omni-avsr app --export-space` from the `omni_avsr` package (copied here, with its dependencies in
`requirements.txt`); the same page runs locally with `omni-avsr app --model {model_id}`.
"""


def export_space(
    directory: str | os.PathLike,
    model_id: str,
    examples: str | os.PathLike | None = None,
    noise: str | os.PathLike | None = None,
) -> Path:
    """Write the Space folder for `model_id` (a Hub id) into `directory` (new or empty); returns its path."""
    if os.path.exists(model_id):
        raise ValueError(
            f"--export-space needs --model to be the Hub id the Space loads (org/name), got the local path {model_id}; "
            "push the model to the Hub first (AudioVisualSpeechRecognitionPipeline(...).push_to_hub)."
        )
    validate_repo_id(model_id)
    try:
        gradio_version = importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError(
            f"--export-space writes the Gradio version into the Space's header: pip install 'omni-avsr[app]' ({error})."
        ) from error
    clips = examples_in(examples) if examples is not None else []
    if noise is not None and not os.path.isfile(noise):
        raise FileNotFoundError(f"Noise file not found: {noise}; expected a babble recording (.wav).")
    directory = prepare_output_dir(directory, "--export-space folder")
    if any(directory.iterdir()):
        raise ValueError(f"--export-space folder {directory} is not empty; expected a new or empty folder.")

    argv = ["app", "--model", model_id, "--host", "0.0.0.0", "--port", "7860"]
    if clips:
        (directory / "examples").mkdir()
        for clip in clips:
            _copy_example(clip, directory / "examples")
        argv += ["--examples", "examples"]
    if noise is not None:
        (directory / "noise").mkdir()
        shutil.copyfile(noise, directory / "noise" / Path(noise).name)
        argv += ["--noise", f"noise/{Path(noise).name}"]
    (directory / "app.py").write_text(APP_TEMPLATE.format(model_id=model_id, argv=argv), encoding="utf-8")
    (directory / "requirements.txt").write_text("\n".join(space_requirements()) + "\n", encoding="utf-8")
    (directory / "README.md").write_text(
        README_TEMPLATE.format(model_id=model_id, gradio_version=gradio_version), encoding="utf-8"
    )
    shutil.copytree(Path(__file__).parent, directory / "omni_avsr", ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def space_requirements() -> list[str]:
    """This package's requirements, with the `crop` extra, as the installed package declares them."""
    requirements = []
    for line in importlib.metadata.requires("omni-avsr") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in SPACE_EXTRAS):
            requirement.marker = None
            requirements.append(str(requirement))
    return requirements


def _copy_example(clip, folder: Path) -> None:
    """An example in `examples_in`'s layout: the video (or audio file), its `.wav` soundtrack, its `.txt` transcript."""
    main = Path(clip.video or clip.audio)
    shutil.copyfile(main, folder / main.name)
    if clip.video and clip.audio:
        shutil.copyfile(clip.audio, folder / f"{main.stem}.wav")
    if clip.text:
        (folder / f"{main.stem}.txt").write_text(clip.text + "\n", encoding="utf-8")
