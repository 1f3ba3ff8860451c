"""Nothing lost, nothing silently wrong in the parts added since the first bad-input round (cropping, LRS preparation,
assembly, tokenisation, variable frame rates): one test per failure found by feeding them bad input as a careless
user would. The weak spots found beside them are rows of the table in test_bad_inputs.py."""

import json
import os
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file
from test_bad_inputs import write_ctranslate2_model
from test_cli import model_dir  # noqa: F401 (fixture)
from test_convert_avhubert import checkpoint_path, fairseq_state_dict, official  # noqa: F401 (fixtures)
from test_convert_official import _converter_args
from test_media import frame_level, sine, write_clip
from test_training import REPO, TINY_COMPONENTS
from tiny_models import tiny_model, tiny_processor
from transformers import pipeline

from omni_avsr import load_clip
from omni_avsr.cli import main as omni_avsr
from omni_avsr.convert.avhubert import main as convert_avhubert
from omni_avsr.convert.ctranslate2_whisper import main as convert_ctranslate2_whisper
from omni_avsr.convert.official import main as convert_official
from omni_avsr.data.mini_lrs_render import write_mp4
from omni_avsr.data.prepare_lrs import ClipFailure, read_transcript
from omni_avsr.pipeline_omni_avsr import media_in_file
from omni_avsr.training.arguments import DataArguments, ModelArguments
from omni_avsr.training.assembly import build_model_and_processor
from omni_avsr.training.datasets import check_label_texts
from omni_avsr.training.matryoshka import matryoshka_step


_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def transcribe(*argv):
    return omni_avsr(["transcribe", *map(str, argv)])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def components(folder: Path) -> dict[str, str]:
    """The tiny component configs of the training tests, as files: what `--language_model` etc. name."""
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, config in TINY_COMPONENTS.items():
        (folder / name).write_text(json.dumps(config))
        paths[name.removesuffix(".json")] = str(folder / name)
    return paths


# 1. A newly assembled model is saved with its own rates and tasks, and its folder transcribes at them.


def test_an_assembled_model_transcribes_its_own_folder_at_its_own_rates(tmp_path, capsys):
    model_args = ModelArguments(
        **components(tmp_path / "components"), audio_rates=[2, 8], video_rates=[3], tasks=["asr", "vsr"],
        lora_rank=4, lora_alpha=8, video_lora_rank=4, video_lora_alpha=8, projector_hidden_size=32,
    )
    model, processor = build_model_and_processor(model_args, ["set blue at a one now", "bin red by z nine"])
    assert (processor.audio_rates, processor.video_rates, processor.tasks) == ([2, 8], [3], ["asr", "vsr"])
    model.generation_config.max_new_tokens = 2
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    clip = write_clip(tmp_path, "clip", num_frames=15)
    output = tmp_path / "results.jsonl"
    assert transcribe(clip, "--model", folder, "--output", output) == 0, capsys.readouterr().err
    assert transcribe(clip, "--model", folder, "--task", "vsr", "--output", output) == 0, capsys.readouterr().err
    records = [(record["task"], record["audio_rate"], record["video_rate"]) for record in read_lines(output)]
    assert records == [("asr", 2, None), ("vsr", None, 3)]  # no avsr: the model was not trained for it

    # A folder whose processor is not its model's is refused when it loads, naming what differs.
    settings = json.loads((folder / "processor_config.json").read_text())
    settings.update(audio_rates=[4, 16], tasks=["asr", "vsr", "avsr"])
    (folder / "processor_config.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert transcribe(clip, "--model", folder) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"omni-avsr: error: {folder}: its processor (processor_config.json and tokenizer) and its "
                            "model (config.json) disagree: audio rates [4, 16] (processor) vs [2, 8] (model); tasks "
                            "['asr', 'vsr', 'avsr'] (processor) vs ['asr', 'vsr'] (model).")


# 2. Text the tokenizer cannot represent is refused, naming it, instead of becoming <unk> labels.


def _upper_case_corpus(root: Path) -> Path:
    """Two clips whose label file is in upper case, as LRS2/LRS3's own transcripts are."""
    (root / "lrs3" / "spk").mkdir(parents=True)
    for index in range(2):
        write_clip(root / "lrs3" / "spk", str(index), num_frames=15)
    (root / "labels").mkdir()
    labels = root / "labels" / "train.csv"
    labels.write_text("lrs3,spk/0.mp4,15,1,set blue at a\nlrs3,spk/1.mp4,15,1,BIN RED BY Z\n")
    return labels


def test_labels_the_tokenizer_cannot_represent_are_refused_before_training(model_dir, tmp_path):
    root = tmp_path / "corpus"
    labels = _upper_case_corpus(root)
    output_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "run_speech_recognition.py"), "--model_name_or_path", str(model_dir),
               "--data_root", str(root), "--train_labels", "train.csv", "--do_train", "--max_steps", "2",
               "--report_to", "none", "--output_dir", str(output_dir)]
    completed = subprocess.run(command, cwd=REPO, env=_ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    (error,) = [line for line in completed.stderr.splitlines() if ": error: " in line]
    assert error.startswith(f"run_speech_recognition.py: error: {labels}, line 2 ('BIN RED BY Z') has characters this "
                            "tokenizer cannot represent: 'B', 'D', 'E', 'I', 'N', 'R', 'Y', 'Z'; they would become "
                            "<unk>.")
    assert "--lowercase_text" in error
    assert not any(output_dir.glob("checkpoint-*")), "training started"

    # The documented normalisation: lower-cased as the recipe's transcripts are, the same labels are accepted.
    processor = tiny_processor()
    check_label_texts(processor, DataArguments(data_root=str(root), lowercase_text=True), ["train.csv"])
    # The processor names the transcript and the character, for any text given to it.
    for text, character in (("café au lait", "'é'"), ("你好", "'你', '好'")):
        with pytest.raises(ValueError, match=rf"^text\[1\] \('{text}'\) has characters this tokenizer cannot "
                                             rf"represent: {character}; they would become <unk>"):
            processor(text=["fine", text])


# 3 and 4. `omni-avsr crop` writes OUT and OUT's .wav: never over the input or its audio, never beside stale audio.


@pytest.fixture(scope="module")
def face_frames(real_clip_path):
    """30 RGB frames of the real LRS3 face track (1.2 s): enough to crop, quick to crop."""
    pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
    return load_clip(real_clip_path, audio=False, grayscale=False, crop_mouth=False).frames[:30]


def test_crop_never_writes_over_its_input_or_the_audio_it_is_read_with(face_frames, tmp_path, capsys):
    talk = tmp_path / "talk.mp4"
    write_mp4(talk, face_frames)
    soundfile.write(tmp_path / "talk.wav", sine(1.2), 16000)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    for output, overwritten in (("talk.mkv", "the input's audio"), ("talk.wav", "the input's audio"),
                                ("talk.mp4", "the input")):
        assert omni_avsr(["crop", str(talk), str(tmp_path / output)]) == 1
        (error,) = capsys.readouterr().err.splitlines()
        assert f"OUT {tmp_path / output} " in error and overwritten in error, error
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_recropping_a_silent_video_onto_an_earlier_output_leaves_no_stale_audio(face_frames, tmp_path, capsys):
    write_mp4(tmp_path / "talk.mp4", face_frames)
    soundfile.write(tmp_path / "talk.wav", sine(1.2), 16000)
    write_mp4(tmp_path / "silent.mp4", face_frames[::-1])
    output = tmp_path / "out" / "mouth.mp4"
    assert omni_avsr(["crop", str(tmp_path / "talk.mp4"), str(output)]) == 0
    assert media_in_file(str(output)) == {"audio", "video"}  # the mouth video and its .wav
    assert omni_avsr(["crop", str(tmp_path / "silent.mp4"), str(output)]) == 0
    assert not output.with_suffix(".wav").exists()
    assert media_in_file(str(output)) == {"video"}  # transcribe reads the new video alone
    assert sorted(path.name for path in output.parent.iterdir()) == ["mouth.mp4"]  # no temporary files either



# 5. Face video larger than full HD is shrunk while it is decoded for cropping, not held whole at its own size.


def test_cropping_a_large_face_video_does_not_hold_its_frames_at_full_size(face_frames, tmp_path):
    from omni_avsr.cropping import MouthCropper
    from omni_avsr.cropping.mouth_video import crop_video_file

    frames = face_frames[:20].repeat(9, axis=1).repeat(9, axis=2)  # 2016×2016: beyond full HD
    write_mp4(tmp_path / "face.mp4", frames)
    full_size = frames.nbytes
    tracemalloc.start()
    try:
        crops, _ = crop_video_file(tmp_path / "face.mp4", tmp_path / "mouth.mp4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full_size / 2, f"peak {peak / 2**20:.0f} MiB for {full_size / 2**20:.0f} MiB of frames"
    assert crops.detected.all() and crops.frames.shape == (20, 96, 96, 3)
    # The face is found where it is in the frames at their own size (the landmarks are in the shrunk frames' pixels).
    at_own_size = MouthCropper()(face_frames[:20])
    assert np.abs(crops.landmarks / 4.5 - at_own_size.landmarks).mean() < 1


# 6. Variable frame rate: frames are resampled to 25 fps by their presentation times, by either decoder.


def write_variable_rate_video(path: Path, times: list[float], size: int = 32) -> Path:
    """Frame i (grey level `frame_level(i)`) shown from `times[i]` s, as a phone that changes its frame rate writes."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=50, options={"preset": "ultrafast"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), frame_level(index), np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_variable_frame_rate_video_stays_aligned_with_its_audio(tmp_path, monkeypatch, decoder):
    # 2 s at 50 fps, then 4 s at 10 fps: 140 frames over 6 s, 23.3 fps on average.
    times = [index / 50 for index in range(100)] + [2 + index / 10 for index in range(40)]
    video = write_variable_rate_video(tmp_path / "phone.mp4", times)
    soundfile.write(tmp_path / "phone.wav", sine(6.0), 16000)
    if decoder == "pyav":
        monkeypatch.setitem(sys.modules, "decord", None)
    clip = load_clip(video)
    assert clip.frames.shape == (150, 32, 32) and clip.audio.shape == (150 * 640,)
    shown = [np.searchsorted(times, index / 25 + 1e-9, side="right") - 1 for index in range(150)]
    levels = clip.frames.mean(axis=(1, 2))
    assert np.abs(levels - [frame_level(index) for index in shown]).max() <= 2, "a frame shown at the wrong time"


def test_the_pyav_fallback_turns_frames_upright_as_decord_does(tmp_path, monkeypatch):
    """A phone held upright records landscape frames with a 90° display rotation; both decoders apply it."""
    path = tmp_path / "upright.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        image = np.zeros((32, 64, 3), np.uint8)
        image[:, :16] = 250  # the left quarter white
        for _ in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with_decord = load_clip(path, audio=False, grayscale=False).frames
    monkeypatch.setitem(sys.modules, "decord", None)
    with_pyav = load_clip(path, audio=False, grayscale=False).frames
    assert with_decord.shape == with_pyav.shape == (5, 64, 32, 3)
    assert np.abs(with_pyav.astype(int) - with_decord).max() <= 2
    assert with_pyav[:, -16:].mean() > 240 and with_pyav[:, :40].mean() < 10  # turned a quarter counter-clockwise

# 7 and 8. prepare_lrs reads symlinked speaker folders, and lists a clip whose word timings are out of order.


def _raw_clip(folder: Path, name: str, frames, transcript: str) -> None:
    """A raw LRS3-style clip: face video, its audio beside it, its transcript."""
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / f"{name}.mp4", frames)
    soundfile.write(folder / f"{name}.wav", sine(len(frames) / 25), 16000)
    (folder / f"{name}.txt").write_text(transcript)


def _prepare(data_dir: Path, output_dir: Path) -> tuple[list[list[str]], dict[str, str]]:
    """Run prepare_lrs on LRS3's test subset (in its own process: its workers fork, which a test process with threads
    must not do); the label rows and the failures file as {file: reason}."""
    command = [sys.executable, "-m", "omni_avsr.data.prepare_lrs", "--data-dir", str(data_dir), "--output-dir",
               str(output_dir), "--dataset", "lrs3", "--subset", "test", "--workers", "1", "--no-progress"]
    completed = subprocess.run(command, cwd=REPO, env=_ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    labels = output_dir / "labels" / "lrs3_test_transcript_lengths_seg16s.csv"
    rows = [line.split(",") for line in labels.read_text().splitlines()]
    failures = (output_dir / "lrs3_test_seg16s_failures.tsv").read_text().splitlines()[1:]
    return rows, dict(line.split("\t") for line in failures)


def test_prepare_lrs_reads_symlinked_speaker_folders(face_frames, tmp_path):
    _raw_clip(tmp_path / "LRS3" / "test" / "spk0", "00001", face_frames, "Text:  SO THE IDEA\n")
    _raw_clip(tmp_path / "elsewhere" / "spk1", "00001", face_frames[::-1], "Text:  WE WERE GOING\n")
    (tmp_path / "LRS3" / "test" / "spk1").symlink_to(tmp_path / "elsewhere" / "spk1")
    (tmp_path / "LRS3" / "test" / "spk1" / "loop").symlink_to(tmp_path / "LRS3" / "test")  # a link up the tree
    rows, failures = _prepare(tmp_path / "LRS3", tmp_path / "out")
    assert [(row[1], row[4]) for row in rows] == [
        ("lrs3_video_seg16s/test/spk0/00001.mp4", "so the idea"),
        ("lrs3_video_seg16s/test/spk1/00001.mp4", "we were going"),
    ]
    assert not failures


def test_prepare_lrs_lists_a_clip_whose_word_timings_are_out_of_order(face_frames, tmp_path):
    timings = "WORD START END ASDSCORE\nSO 0.10 0.30 1\nIDEA 0.80 1.00 1\nTHE 0.30 0.60 1\n"
    _raw_clip(tmp_path / "LRS3" / "test" / "spk1", "00001", face_frames, f"Text:  SO THE IDEA\nConf:  4\n\n{timings}")
    rows, failures = _prepare(tmp_path / "LRS3", tmp_path / "out")
    assert rows == []
    assert failures == {
        str(tmp_path / "LRS3" / "test" / "spk1" / "00001.mp4"):
            "bad transcript: 00001.txt, line 7: word 'THE' starts at 0.3 s, before the word before it ('IDEA' at "
            "0.8 s); expected word timings in the order the words are spoken"
    }
    # Timings in order but a word that ends before it starts, in a transcript read alone.
    (tmp_path / "bad.txt").write_text("Text:  SO\nConf:  4\n\nWORD START END ASDSCORE\nSO 0.50 0.20 1\n")
    with pytest.raises(ClipFailure, match=r"^bad transcript: bad\.txt, line 5: word 'SO' runs from 0\.5 s to 0\.2 s"):
        read_transcript(tmp_path / "bad.txt")



# Weak spots whose rule needs more than a row of the bad-input table.


def _tiny_ctranslate2_whisper(width: int = 8) -> dict[str, np.ndarray]:
    """Every variable of a one-layer CTranslate2 Whisper encoder (random weights; the key projection has no bias)."""
    rng = np.random.default_rng(0)

    def weights(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    layer = "encoder/layer_0"
    attention_bias = weights(3 * width)
    attention_bias[width : 2 * width] = 0
    return {
        "encoder/conv1/weight": weights(width, 80, 3), "encoder/conv1/bias": weights(width),
        "encoder/conv2/weight": weights(width, width, 3), "encoder/conv2/bias": weights(width),
        "encoder/position_encodings/encodings": weights(16, width), "encoder/num_heads": np.array(2, np.int32),
        "encoder/layer_norm/gamma": weights(width), "encoder/layer_norm/beta": weights(width),
        f"{layer}/self_attention/linear_0/weight": weights(3 * width, width),
        f"{layer}/self_attention/linear_0/bias": attention_bias,
        f"{layer}/self_attention/linear_1/weight": weights(width, width),
        f"{layer}/self_attention/linear_1/bias": weights(width),
        f"{layer}/self_attention/layer_norm/gamma": weights(width),
        f"{layer}/self_attention/layer_norm/beta": weights(width),
        f"{layer}/ffn/linear_0/weight": weights(2 * width, width), f"{layer}/ffn/linear_0/bias": weights(2 * width),
        f"{layer}/ffn/linear_1/weight": weights(width, 2 * width), f"{layer}/ffn/linear_1/bias": weights(width),
        f"{layer}/ffn/layer_norm/gamma": weights(width), f"{layer}/ffn/layer_norm/beta": weights(width),
    }


def test_converters_refuse_a_whole_checkpoint_with_nan_weights(tmp_path, capsys):
    variables = _tiny_ctranslate2_whisper()
    (tmp_path / "whisper").mkdir()
    write_ctranslate2_model(tmp_path / "whisper" / "model.bin", variables)
    assert convert_ctranslate2_whisper([str(tmp_path / "encoder"), "--source", str(tmp_path / "whisper")]) == 0
    variables["encoder/layer_0/ffn/linear_1/weight"][3, 5] = np.nan
    write_ctranslate2_model(tmp_path / "whisper" / "model.bin", variables)
    capsys.readouterr()
    assert convert_ctranslate2_whisper([str(tmp_path / "nan-encoder"), "--source", str(tmp_path / "whisper")]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.endswith(f"{tmp_path / 'whisper'}: encoder/layer_0/ffn/linear_1/weight holds 1 NaN or infinite "
                          "value(s) of 128; expected finite numbers.")
    assert not any((tmp_path / "nan-encoder").iterdir())


def test_the_official_converter_refuses_nan_weights_and_a_checkpoint_without_its_language_model(tmp_path, capsys):
    args = _converter_args("S", tmp_path / "out")  # the parity fixture's tiny official Omni-AVSR-S
    if not Path(args[1]).is_file():
        pytest.skip(f"parity fixtures not available at {Path(args[1]).parent}")
    part = load_file(args[1])
    key = next(key for key in sorted(part) if key.startswith("llm.") and "lora_up" in key)
    part[key][0, 0] = float("nan")
    save_file(part, tmp_path / "nan.safetensors")
    assert convert_official([args[0], str(tmp_path / "nan.safetensors"), *args[2:]]) == 1
    assert f"nan.safetensors: {key} holds 1 NaN or infinite value(s)" in capsys.readouterr().err
    for index, name in enumerate(("common", "part")):
        weights = load_file(args[index])
        weights.pop("llm.model.embed_tokens.weight", None)
        save_file(weights, tmp_path / f"{name}.safetensors")
    assert convert_official([str(tmp_path / "common.safetensors"), str(tmp_path / "part.safetensors"), *args[2:]]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert "no llm.model.embed_tokens.weight; expected the state dict of a whole official Omni-AVSR model" in error
    assert not any((tmp_path / "out").iterdir())


def test_the_avhubert_converter_refuses_nan_weights(checkpoint_path, tmp_path, capsys):
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["model"]["encoder.layers.0.fc1.weight"][0, 0] = float("inf")
    torch.save(checkpoint, tmp_path / "nan.pt")
    assert convert_avhubert([str(tmp_path / "nan.pt"), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"{tmp_path / 'nan.pt'}: encoder.layers.0.fc1.weight holds 1 NaN" in captured.err
    assert not any((tmp_path / "out").iterdir())


def test_transcribe_prints_the_transcript_and_nothing_else(model_dir, tmp_path):
    """transformers' loading report and its tensor-parallel check ("layers were not sharded", 7 KB) stay quiet."""
    clip = write_clip(tmp_path, "clip", num_frames=15)
    command = [sys.executable, "-m", "omni_avsr.cli", "transcribe", str(clip), "--model", str(model_dir)]
    completed = subprocess.run(command, cwd=REPO, env=_ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr == "" and len(completed.stdout.splitlines()) == 1


def test_debug_shows_the_traceback_behind_the_error_line(model_dir, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "absent.mp4"
    assert transcribe(missing, "--model", model_dir) == 1
    assert capsys.readouterr().err == f"omni-avsr: error: Media file not found: {missing}\n"
    assert transcribe(missing, "--model", model_dir, "--debug") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1] == f"omni-avsr: error: Media file not found: {missing}"
    monkeypatch.setenv("OMNI_AVSR_DEBUG", "1")  # the training scripts' way: their --debug is TrainingArguments'
    assert omni_avsr(["crop", str(missing), str(tmp_path / "mouth.mp4")]) == 1
    assert capsys.readouterr().err.startswith("Traceback (most recent call last):")


def test_digital_silence_is_refused_for_asr_and_accepted_where_the_lips_carry_the_words():
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    silence, frames = np.zeros(16000, np.float32), np.full((25, 96, 96), 128, np.uint8)
    with pytest.raises(ValueError, match=r"^audio\[0\] is digital silence"):
        processor(audio=[silence], sampling_rate=16000, task="asr")
    inputs = processor(audio=[silence], videos=[frames], sampling_rate=16000, task="avsr")
    assert model.generate(**inputs, max_new_tokens=2).shape[0] == 1
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    assert recognizer({"audio": silence, "sampling_rate": 16000, "frames": frames}, max_new_tokens=2)["task"] == "avsr"
    batch = processor(audio=[silence], videos=[frames], text=["bin red"], sampling_rate=16000)  # training: accepted
    assert torch.isfinite(matryoshka_step(model, processor, batch).loss)


def test_a_mouth_video_write_that_fails_leaves_no_partial_files(tmp_path, monkeypatch):
    pytest.importorskip("cv2", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
    from omni_avsr.cropping import mouth_video

    def failing_encoder(path, frames, fps):
        Path(path).write_bytes(b"half a video")
        raise OSError(f"No space left on device: {path}")

    earlier = {"mouth.mp4": b"the earlier crop", "mouth.wav": b"its audio"}
    for name, data in earlier.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(mouth_video, "write_mp4", failing_encoder)
    for audio in (sine(0.2), None):
        with pytest.raises(OSError, match="No space left"):
            mouth_video.write_mouth_video(tmp_path / "mouth.mp4", np.zeros((5, 96, 96, 3), np.uint8), audio)
        assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == earlier
