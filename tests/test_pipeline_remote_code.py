"""A pipeline's `save_pretrained` / `push_to_hub` output is a Hub-ready folder: in a fresh process without the
package, offline, with `trust_remote_code=True`, both pipelines give the texts they give in-process."""

import json
import os
import subprocess
import sys

import numpy as np
import transformers.utils.hub
from huggingface_hub import ModelCard
from test_media import write_clip
from tiny_models import randomize_lora, tiny_clips, tiny_model, tiny_processor

from omni_avsr import AudioVisualSpeechRecognitionPipeline
from transformers import pipeline


HUB_FILES = {
    "config.json", "generation_config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
    "tokenizer_config.json", "configuration_omni_avsr.py", "configuration_avhubert.py", "modeling_omni_avsr.py",
    "modeling_avhubert.py", "omni_lora.py", "input_checks.py", "processing_omni_avsr.py",
    "feature_extraction_omni_avsr.py", "video_processing_omni_avsr.py", "media.py", "pipeline_omni_avsr.py",
    "conversion_mapping_omni_avsr.py", "checkpoint_weights.py",
}


def hub_ready_folder(folder, lora_variant="ST", max_new_tokens=4):
    """A tiny random Omni-AVSR saved the way it is published; returns (model, processor)."""
    processor = tiny_processor()
    model = tiny_model(processor, lora_variant=lora_variant).eval()
    randomize_lora(model, std=0.3)
    model.generation_config.max_new_tokens = max_new_tokens
    AudioVisualSpeechRecognitionPipeline(model=model, processor=processor).save_pretrained(folder)
    return model, processor


FRESH_PROCESS_SCRIPT = """
import json, sys
import numpy as np
sys.modules["omni_avsr"] = None  # the package must not be importable: everything comes from the folder
from transformers import pipeline
folder, media = sys.argv[1], sys.argv[2]
inputs = np.load(media + "/arrays.npz")
asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)
avsr = pipeline("audio-visual-speech-recognition", model=folder, trust_remote_code=True)
result = {
    "classes": [type(asr).__module__.split(".")[0], type(asr).__name__, type(avsr).__name__],
    "asr": asr([media + "/clip.wav", {"raw": inputs["audio"], "sampling_rate": 16000}], batch_size=2),
    "avsr": [
        avsr(media + "/clip.mp4", audio_rate=16, video_rate=5),
        avsr({"frames": inputs["frames"]}, generate_kwargs={"num_beams": 2}),
        avsr({"audio": inputs["audio"], "sampling_rate": 16000, "frames": inputs["frames"]}, task="asr"),
    ],
}
print(json.dumps(result))
"""


def test_saved_pipelines_run_in_a_fresh_process_without_the_package(tmp_path):
    folder, media = tmp_path / "Omni-AVSR-tiny", tmp_path / "media"
    model, processor = hub_ready_folder(folder)
    assert HUB_FILES <= set(os.listdir(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "automatic-speech-recognition": {
            "impl": "pipeline_omni_avsr.OmniAVSRSpeechRecognitionPipeline",
            "pt": ["AutoModelForSpeechSeq2Seq"],
            "type": "multimodal",
        },
        "audio-visual-speech-recognition": {
            "impl": "pipeline_omni_avsr.AudioVisualSpeechRecognitionPipeline",
            "pt": ["AutoModelForSpeechSeq2Seq"],
            "type": "multimodal",
        },
    }
    assert not hasattr(model.config, "custom_pipelines"), "saving must leave the in-memory config as it was"

    media.mkdir()
    write_clip(media, "clip", num_frames=15)
    audio, videos = tiny_clips(1, seconds=(0.6,))
    np.savez(media / "arrays.npz", audio=audio[0], frames=videos[0])
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env = {**os.environ, **offline}
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(folder), str(media)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    fresh = json.loads(completed.stdout.strip().splitlines()[-1])
    assert fresh["classes"] == [
        "transformers_modules", "OmniAVSRSpeechRecognitionPipeline", "AudioVisualSpeechRecognitionPipeline",
    ]

    asr = pipeline("automatic-speech-recognition", model=model, processor=processor)
    avsr = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    assert fresh["asr"] == asr([str(media / "clip.wav"), {"raw": audio[0], "sampling_rate": 16000}], batch_size=2)
    assert fresh["avsr"] == [
        avsr(str(media / "clip.mp4"), audio_rate=16, video_rate=5),
        avsr({"frames": videos[0]}, generate_kwargs={"num_beams": 2}),
        avsr({"audio": audio[0], "sampling_rate": 16000, "frames": videos[0]}, task="asr"),
    ]
    assert [result["task"] for result in fresh["avsr"]] == ["avsr", "vsr", "asr"]


def test_push_to_hub_uploads_the_hub_ready_folder(tmp_path, monkeypatch):
    processor = tiny_processor()
    model = tiny_model(processor)
    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload(self, working_dir, repo_id, **kwargs):
        uploaded[repo_id] = {
            name: open(os.path.join(working_dir, name), "rb").read() for name in os.listdir(working_dir)
        }

    monkeypatch.setattr(transformers.utils.hub, "hf_api", FakeApi)
    monkeypatch.setattr(transformers.utils.hub, "create_and_tag_model_card", lambda *args, **kwargs: ModelCard(""))
    monkeypatch.setattr(AudioVisualSpeechRecognitionPipeline, "_upload_modified_files", upload)
    pipeline("automatic-speech-recognition", model=model, processor=processor).push_to_hub("org/Omni-AVSR-tiny")

    files = uploaded["org/Omni-AVSR-tiny"]
    assert HUB_FILES <= set(files)
    assert set(json.loads(files["config.json"])["custom_pipelines"]) == {
        "automatic-speech-recognition", "audio-visual-speech-recognition",
    }

