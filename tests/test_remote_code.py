"""A saved Omni-AVSR folder loads in a fresh process without the package, offline, with `trust_remote_code`."""

import json
import os
import subprocess
import sys

import numpy as np
import torch
from tiny_models import randomize_lora, tiny_clips, tiny_model, tiny_processor

from transformers import AutoModel, AutoModelForSpeechSeq2Seq, AutoProcessor

FRESH_PROCESS_SCRIPT = """
import json, sys
import numpy as np
sys.modules["omni_avsr"] = None  # the package must not be importable: everything comes from the folder
from transformers import AutoModel, AutoModelForSpeechSeq2Seq, AutoProcessor
folder = sys.argv[1]
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
seq2seq = AutoModelForSpeechSeq2Seq.from_pretrained(folder, trust_remote_code=True)
inputs = np.load(folder + "/inputs.npz")
audio = [inputs["audio0"], inputs["audio1"]]
videos = [inputs["video0"], inputs["video1"]]
result = {"classes": [type(processor).__name__, type(model).__name__, type(seq2seq).__name__]}
for task in ("asr", "vsr", "avsr"):
    batch = processor(audio=audio, videos=videos, sampling_rate=16000, task=task, audio_rate=4, video_rate=2)
    result[task] = model.generate(**batch, max_new_tokens=6).tolist()
print(json.dumps(result))
"""


def test_fresh_process_remote_code_load_generates_identical_tokens(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    audio, videos = tiny_clips(2)
    np.savez(tmp_path / "inputs.npz", audio0=audio[0], audio1=audio[1], video0=videos[0], video1=videos[1])
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_omni_avsr.OmniAVSRConfig",
        "AutoModel": "modeling_omni_avsr.OmniAVSRForConditionalGeneration",
        "AutoModelForSpeechSeq2Seq": "modeling_omni_avsr.OmniAVSRForConditionalGeneration",
    }

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    fresh = json.loads(completed.stdout.strip().splitlines()[-1])
    assert fresh["classes"] == ["OmniAVSRProcessor", "OmniAVSRForConditionalGeneration", "OmniAVSRForConditionalGeneration"]

    for task in ("asr", "vsr", "avsr"):
        batch = processor(audio=audio, videos=videos, sampling_rate=16000, task=task, audio_rate=4, video_rate=2)
        expected = model.generate(**batch, max_new_tokens=6).tolist()
        assert fresh[task] == expected, task


def test_auto_classes_resolve_in_process(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)) is type(model)
    assert type(AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path)) is type(model)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is type(processor) and len(reloaded.tokenizer) == len(processor.tokenizer)
    torch.testing.assert_close(
        reloaded(text=["set blue"])["input_ids"], processor(text=["set blue"])["input_ids"]
    )
