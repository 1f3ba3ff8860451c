"""The web app's work without the page: one click gives the pipeline's transcripts for every task × rate with the
encoders run once, the noise is added at the SNR asked for, uploads live in a folder removed afterwards, errors are
the CLI's lines, and `--export-space` writes a Space that runs the same command."""

import ast
import os
import sys

import numpy as np
import pytest
import soundfile
import yaml
from test_media import sine, write_video
from tiny_models import tiny_decoding_model

from omni_avsr import AudioVisualSpeechRecognitionPipeline, load_clip
from omni_avsr import app_backend
from omni_avsr.app_backend import AppBackend, grid_table
from omni_avsr.app_media import Workspace, examples_in, load_seen_clip
from omni_avsr.cli import build_parser, main


@pytest.fixture(scope="module")
def omni():
    return tiny_decoding_model(max_new_tokens=6)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """`clip.mp4`: 2 s of 96×96 mouth crops with random audio in the container; `babble.wav`; `speech.flac`."""
    directory = tmp_path_factory.mktemp("app_media")
    rng = np.random.default_rng(0)
    write_video(directory / "clip.mp4", num_frames=50, audio=rng.standard_normal((1, 50 * 640)).astype(np.float32) * 0.1)
    soundfile.write(directory / "babble.wav", rng.standard_normal(16000 * 3).astype(np.float32) * 0.1, 16000)
    soundfile.write(directory / "speech.flac", sine(1.2, hz=300.0), 16000)
    return directory


@pytest.fixture(scope="module")
def backend(omni, media):
    model, processor = omni
    return AppBackend(model, processor, babble_path=media / "babble.wav")


def pipeline_texts(model, processor, clip_input: dict, cells) -> dict:
    recognizer = AudioVisualSpeechRecognitionPipeline(model=model, processor=processor)
    return {
        cell.label: recognizer(clip_input, task=cell.task, audio_rate=cell.audio_rate, video_rate=cell.video_rate)["text"]
        for cell in cells
    }


def test_one_click_gives_the_pipeline_transcripts_with_each_encoder_run_once(omni, backend, media, monkeypatch):
    model, processor = omni
    clip = load_seen_clip(media / "clip.mp4")
    assert clip.face == "Mouth crops already (96×96): read as they are, no face detection."
    calls = {"audio": 0, "video": 0}
    for modality in calls:
        encode = getattr(model.model, f"encode_{modality}")

        def counted(*args, modality=modality, encode=encode, **kwargs):
            calls[modality] += 1
            return encode(*args, **kwargs)

        monkeypatch.setattr(model.model, f"encode_{modality}", counted)
    grid = backend.transcribe(clip, backend.cells)
    assert calls == {"audio": 1, "video": 1}
    assert [result.cell.label for result in grid.cells] == [
        "ASR 4", "ASR 16", "VSR 2", "VSR 5", "AVSR 4,2", "AVSR 4,5", "AVSR 16,2", "AVSR 16,5"
    ]
    assert set(grid.encoder_seconds) == {"audio", "video"}
    monkeypatch.undo()
    expected = pipeline_texts(model, processor, {"audio": clip.audio, "sampling_rate": 16000, "frames": clip.frames},
                              backend.cells)
    assert {result.cell.label: result.text for result in grid.cells} == expected

    row, text = next((index, result.text) for index, result in enumerate(grid.cells) if result.text)
    table = grid_table(grid, reference=f"{text} extra")
    assert list(table.columns) == [
        "task", "audio rate", "video rate", "LLM media tokens / s", "decode (ms)", "transcript", "WER (%)"
    ]
    # Audio rate 4 keeps 12.5 tokens per second, video rate 2 another 12.5.
    assert table["LLM media tokens / s"].tolist() == [12.5, 3.12, 12.5, 5.0, 25.0, 17.5, 15.62, 8.12]
    assert table["video rate"].tolist()[:2] == ["–", "–"] and table["WER (%)"].iloc[row] == 50.0


def test_noise_is_mixed_at_the_snr_asked_for_and_cells_follow_the_media(backend, media):
    clip = load_seen_clip(media / "clip.mp4")
    assert backend.noise.kinds == ("clean", "babble", "white noise")
    assert backend.hear(clip, "clean", -5) is clip
    for noise in ("babble", "white noise"):
        noisy = backend.hear(clip, noise, -5)
        added = noisy.audio - clip.audio
        snr_db = 10 * np.log10(np.mean(clip.audio.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
        assert snr_db == pytest.approx(-5, abs=1e-3)
        assert noisy.frames is clip.frames
        np.testing.assert_array_equal(backend.hear(clip, noise, -5).audio, noisy.audio)  # the same draw each time

    speech = load_seen_clip(media / "speech.flac")
    assert speech.frames is None and speech.face.startswith("No video")
    assert [cell.label for cell in backend.chosen_cells(backend.cell_labels, speech, "speech.flac")] == ["ASR 4", "ASR 16"]
    with pytest.raises(ValueError, match=r"None of the chosen cells \(VSR 2\) can read speech.flac, which has audio only"):
        backend.chosen_cells(["VSR 2"], speech, "speech.flac")
    with pytest.raises(ValueError, match="No task × rate chosen"):
        backend.chosen_cells([], speech, "speech.flac")


def test_face_video_is_cropped_as_the_pipeline_does_with_the_face_flag(real_clip_path):
    clip = load_seen_clip(real_clip_path)
    np.testing.assert_array_equal(clip.frames, load_clip(real_clip_path).frames)
    assert clip.frames.shape == (155, 96, 96) and clip.face == "Face found in 155 of 155 frames."


def test_uploads_live_in_a_folder_removed_afterwards_and_errors_name_the_users_file(media, tmp_path):
    with Workspace(root=tmp_path) as workspace:
        path = workspace.add_media(str(media / "clip.mp4"), str(media / "speech.flac"))
        assert path == workspace.folder / "clip.mp4"
        # The audio file becomes the video's soundtrack, aligned to its frames as `load_clip` aligns a sibling .wav.
        soundtrack, speech = load_seen_clip(path).audio, soundfile.read(media / "speech.flac", dtype="float32")[0]
        np.testing.assert_array_equal(soundtrack[: len(speech)], speech)
        assert len(soundtrack) == 50 * 640 and not soundtrack[len(speech) :].any()
        with pytest.raises(ValueError) as error:
            load_clip(workspace.add_media(None, str(media / "babble.wav")), max_seconds=1.0)
        assert workspace.message(error.value) == (
            "babble.wav lasts 3.00 s; Omni-AVSR transcribes clips of up to 1 s (the Whisper encoder's window). "
            "Longer recordings go through the long-form path, which cuts them at pauses: the pipelines (any length; "
            "return_timestamps=True for segment times) or `omni-avsr transcribe`."
        )
    assert list(tmp_path.iterdir()) == []
    with Workspace(max_upload_mb=0.01, root=tmp_path) as workspace:
        with pytest.raises(ValueError, match=r"^babble.wav is 0.1 MB; this page takes files of up to 0.01 MB.$"):
            workspace.add_media(None, str(media / "babble.wav"))
        with pytest.raises(ValueError, match="No media given"):
            workspace.add_media(None, None)


def test_a_long_file_shows_its_chunks(backend, media, monkeypatch, tmp_path):
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, sine(31.0), 16000)
    calls = []

    def long_form(path, **options):
        calls.append((path, options))
        return {"text": "a b", "chunks": [{"timestamp": (0.0, 12.5), "text": "a"}, {"timestamp": (12.5, 31.0), "text": "b"}]}

    monkeypatch.setattr(backend, "recognizer", long_form)
    assert app_backend.needs_long_form(long_file) and not app_backend.needs_long_form(media / "clip.mp4")
    table = backend.transcribe_long_form(long_file)
    assert calls == [(str(long_file), {"return_timestamps": True})]
    assert table.values.tolist() == [[0.0, 12.5, "a"], [12.5, 31.0, "b"]]


def test_examples_folder_pairs_videos_with_their_soundtrack_and_transcript(media, tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((media / "clip.mp4").read_bytes())
    (folder / "a.wav").write_bytes((media / "babble.wav").read_bytes())
    (folder / "a.txt").write_text("bin blue\n")
    (folder / "b.flac").write_bytes((media / "speech.flac").read_bytes())
    assert [(e.video and e.video[-5:], e.audio and e.audio[-6:], e.text) for e in examples_in(folder)] == [
        ("a.mp4", "/a.wav", "bin blue"), (None, "b.flac", "")
    ]


def test_export_space_writes_a_space_that_runs_the_app_command_on_the_hub_model(media, tmp_path):
    gradio = pytest.importorskip("gradio", reason="the Space's header records the installed Gradio (the app extra)")
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "a.mp4").write_bytes((media / "clip.mp4").read_bytes())
    (examples / "a.txt").write_text("bin blue\n")
    space = tmp_path / "space"
    assert main(["app", "--export-space", str(space), "--model", "org/Omni-AVSR-ST", "--examples", str(examples),
                 "--noise", str(media / "babble.wav")]) == 0

    header = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert header["sdk"] == "gradio" and header["sdk_version"] == gradio.__version__
    assert header["app_file"] == "app.py" and header["models"] == ["org/Omni-AVSR-ST"]
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("transformers") for line in requirements)
    assert any(line.startswith("dlib-bin") for line in requirements)  # face videos are cropped on the Space too
    # Gradio comes from the header (Spaces install its sdk_version); nothing of the tests is installed.
    assert not any(line.startswith(("gradio", "pytest", "selenium")) for line in requirements)
    assert (space / "omni_avsr" / "app.py").is_file() and not list(space.rglob("__pycache__"))
    assert sorted(path.name for path in (space / "examples").iterdir()) == ["a.mp4", "a.txt"]
    assert (space / "noise" / "babble.wav").read_bytes() == (media / "babble.wav").read_bytes()

    # app.py runs the `omni-avsr app` command, with arguments the command accepts.
    source = (space / "app.py").read_text()
    argv = ast.literal_eval(source[source.index("main(") + 5 : source.rindex("))")])
    args = build_parser().parse_args(argv)
    assert (args.command, args.model, args.host, args.port) == ("app", "org/Omni-AVSR-ST", "0.0.0.0", 7860)
    assert (args.examples, args.noise) == ("examples", "noise/babble.wav")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--export-space", "{tmp}/space", "--model", "{tmp}"], "needs --model to be the Hub id the Space loads"),
        (["--export-space", "{tmp}", "--model", "org/name"], "is not empty; expected a new or empty folder"),
        (["--model", "{tmp}/absent"], "Model folder not found"),
    ],
)
def test_app_command_errors_are_one_line(tmp_path, capsys, arguments, message):
    (tmp_path / "file.txt").write_text("x")
    assert main(["app", *[argument.format(tmp=tmp_path) for argument in arguments]]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("omni-avsr: error: ") and message in error


def test_app_command_without_gradio_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.delitem(sys.modules, "omni_avsr.app", raising=False)
    assert main(["app", "--model", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("omni-avsr: error: omni-avsr app needs Gradio, the optional extra: pip install "
                            "'omni-avsr[app]'") and error.count("\n") == 1


@pytest.fixture(scope="module")
def model_dir(omni, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app_model")
    model, processor = omni
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BAD_FILES = {
    "not media": ("broken.mp4", lambda path: path.write_bytes(np.random.default_rng(0).bytes(4000))),
    "no face": ("wall.mp4", lambda path: write_video(path, num_frames=10, size=160)),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_give_the_line_the_cli_prints_for_them(model_dir, tmp_path, capsys, case):
    name, write = BAD_FILES[case]
    path = tmp_path / "uploads" / name
    path.parent.mkdir()
    write(path)
    assert main(["transcribe", str(path), "--model", str(model_dir)]) == 1
    # The CLI prints `omni-avsr: error: PATH: MESSAGE`; the page shows MESSAGE with the file's own name.
    printed = capsys.readouterr().err.strip().split(f"{path}: ", 1)[1].replace(f"{path.parent}{os.sep}", "")
    video, audio = (None, str(path)) if path.suffix == ".wav" else (str(path), None)
    with Workspace(root=tmp_path) as workspace:
        with pytest.raises(ValueError) as error:
            load_seen_clip(workspace.add_media(video, audio))
        assert workspace.message(error.value) == printed
