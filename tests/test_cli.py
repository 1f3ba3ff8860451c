"""`omni-avsr transcribe`: the installed command transcribes many files as the pipeline does; bad input ends in one
line on stderr with a non-zero exit status."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from test_media import sine, write_clip, write_video
from tiny_models import saved_model, tiny_decoding_model

from omni_avsr import AudioVisualSpeechRecognitionPipeline
from omni_avsr.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_model(*tiny_decoding_model(max_new_tokens=4), tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clips")
    write_clip(directory, "first", num_frames=20)
    write_clip(directory, "second", num_frames=15)
    write_video(directory / "silent.mp4", num_frames=15)
    soundfile.write(directory / "speech.wav", sine(0.6, hz=220.0), 16000)
    return directory


def omni_avsr_command() -> str:
    """The console script installed next to this interpreter (setup.py's `omni-avsr` entry point)."""
    script = Path(sys.executable).parent / "omni-avsr"
    return str(script) if script.exists() else shutil.which("omni-avsr")


def test_console_command_transcribes_many_files_like_the_pipeline(model_dir, media_dir, tmp_path):
    files = [str(media_dir / name) for name in ("first.mp4", "second.mp4", "silent.mp4", "speech.wav")]
    output = tmp_path / "results.jsonl"
    completed = subprocess.run(
        [omni_avsr_command(), "transcribe", *files, "--model", str(model_dir), "--audio-rate", "16",
         "--video-rate", "5", "--num-beams", "2", "--batch-size", "3", "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    recognizer = AudioVisualSpeechRecognitionPipeline(
        model=AutoModelForSpeechSeq2Seq.from_pretrained(model_dir).eval(),
        processor=AutoProcessor.from_pretrained(model_dir),
    )
    expected = [recognizer(path, audio_rate=16, video_rate=5, num_beams=2) for path in files]
    assert completed.stdout.splitlines() == [f"{path}\t{result['text']}" for path, result in zip(files, expected)]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    options = {"model": os.path.realpath(model_dir), "num_beams": 2, "max_new_tokens": None, "task": None, "audio_rate": 16,
               "video_rate": 5}
    assert records == [
        {"path": files[0], "text": expected[0]["text"], "task": "avsr", "audio_rate": 16, "video_rate": 5, "options": options},
        {"path": files[1], "text": expected[1]["text"], "task": "avsr", "audio_rate": 16, "video_rate": 5, "options": options},
        {"path": files[2], "text": expected[2]["text"], "task": "vsr", "audio_rate": None, "video_rate": 5, "options": options},
        {"path": files[3], "text": expected[3]["text"], "task": "asr", "audio_rate": 16, "video_rate": None, "options": options},
    ]


def test_one_file_prints_only_its_transcript_and_rates_default_to_the_finest(model_dir, media_dir, tmp_path, capsys):
    output = tmp_path / "one.jsonl"
    clip = str(media_dir / "first.mp4")
    assert main(["transcribe", clip, "--model", str(model_dir), "--task", "vsr", "--output", str(output)]) == 0
    (record,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert record["task"] == "vsr" and record["audio_rate"] is None and record["video_rate"] == 2
    assert capsys.readouterr().out == record["text"] + "\n"


def test_help_explains_tasks_rates_and_gives_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("asr ", "vsr ", "avsr ", "lip", "--audio-rate", "--video-rate", "tokens per second", "examples:",
                   "omni-avsr transcribe clip.mp4 --model", "--output", "JSON line"):
        assert needle in text, needle


BAD_INPUT = {
    "missing file": (
        ["transcribe", "{media}/absent.mp4", "--model", "{model}"], "Media file not found: {media}/absent.mp4"
    ),
    "unknown task": (
        ["transcribe", "{media}/first.mp4", "--model", "{model}", "--task", "lipread"], "invalid choice: 'lipread'"
    ),
    "untrained rate": (
        ["transcribe", "{media}/first.mp4", "--model", "{model}", "--audio-rate", "8"],
        "audio_rate=8 is not one of this model's audio rates (4, 16): the rates it was trained with.",
    ),
    "avsr on audio": (
        ["transcribe", "{media}/speech.wav", "--model", "{model}", "--task", "avsr"],
        "task='avsr' needs audio and lip video, but {media}/speech.wav has no lip video",
    ),
    "missing model": (
        ["transcribe", "{media}/first.mp4", "--model", "{media}/no-model"], "Model folder not found: {media}/no-model"
    ),
    "not a number": (
        ["transcribe", "{media}/first.mp4", "--model", "{model}", "--video-rate", "two"], "invalid int value: 'two'"
    ),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_ends_in_one_line_on_stderr(model_dir, media_dir, capsys, name):
    argv, message = BAD_INPUT[name]
    argv = [arg.format(media=media_dir, model=model_dir) for arg in argv]
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's own checks
        status = exit_info.code
    captured = capsys.readouterr()
    assert status != 0
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err
    assert message.format(media=media_dir) in captured.err
