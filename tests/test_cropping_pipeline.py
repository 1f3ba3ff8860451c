"""Face videos through the pipelines: `pipeline(...)("face.mp4", task="vsr")` and `omni-avsr transcribe` crop the
mouth and transcribe it; a Hub folder saved by `save_pretrained` still loads and runs on mouth clips where the crop
extra is missing, and there a face video gets the error that names the extra."""

import json
import os
import subprocess
import sys

import pytest
from test_media import write_video
from test_pipeline_remote_code import hub_ready_folder
from tiny_models import randomize_lora, tiny_model, tiny_processor

from omni_avsr import OmniAVSRProcessor, load_clip
from omni_avsr.cli import main
from transformers import pipeline


def test_face_video_end_to_end_through_the_pipeline_and_the_command(real_clip_path, tmp_path, capsys):
    pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    model.generation_config.max_new_tokens = 4
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    face = tmp_path / "face.mp4"
    face.write_bytes(real_clip_path.read_bytes())

    recognizer = pipeline("audio-visual-speech-recognition", model=str(tmp_path / "model"))
    result = recognizer(str(face), task="vsr")
    assert result["task"] == "vsr" and isinstance(result["text"], str)

    crops = load_clip(face, audio=False).frames
    assert crops.shape == (155, 96, 96)
    inputs = OmniAVSRProcessor.from_pretrained(tmp_path / "model")(videos=[crops], task="vsr")
    tokens = model.generate(**inputs)[:, inputs["input_ids"].shape[1]:]
    assert result["text"] == processor.decode_transcripts(tokens)[0]

    assert main(["transcribe", str(face), "--model", str(tmp_path / "model"), "--task", "vsr"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].strip() == result["text"].strip()


WITHOUT_EXTRA_SCRIPT = """
import json, sys
for name in ("cv2", "dlib", "omni_avsr.cropping"):
    sys.modules[name] = None  # the crop extra is not installed
import omni_avsr
from transformers import pipeline
folder, mouth, face = sys.argv[1:4]
avsr = pipeline("audio-visual-speech-recognition", model=folder, trust_remote_code=True)
result = {"module": type(avsr).__module__.split(".")[0], "mouth": avsr(mouth, task="vsr")}
try:
    avsr(face, task="vsr")
except ImportError as error:
    result["face_error"] = str(error)
print(json.dumps(result))
"""


def test_a_saved_hub_folder_works_without_the_crop_extra(tmp_path):
    folder = tmp_path / "Omni-AVSR-tiny"
    hub_ready_folder(folder)
    copied_code = (folder / "media.py").read_text()
    assert "from .cropping" not in copied_code and "import omni_avsr.cropping" not in copied_code
    assert not (folder / "cropping").exists()
    mouth = write_video(tmp_path / "mouth.mp4", num_frames=15, size=96)
    face = write_video(tmp_path / "face.mp4", num_frames=15, size=160)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA_SCRIPT, str(folder), str(mouth), str(face)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["module"] == "transformers_modules" and result["mouth"]["task"] == "vsr"
    assert "face.mp4 is a face video (160×160 frames)" in result["face_error"]
    assert "pip install 'omni-avsr[crop]'" in result["face_error"]
