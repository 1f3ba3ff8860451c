"""Nothing silently wrong, nothing lost: one test per failure found by feeding the project bad input and killing it
mid-job (the numbered items of the robustness issue; the table of bad inputs is in test_bad_inputs.py)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file
from test_cli import media_dir, model_dir  # noqa: F401 (fixtures)
from test_convert_avhubert import checkpoint_path, fairseq_state_dict, official  # noqa: F401 (fixtures)
from test_media import sine, write_clip, write_video
from test_training import REPO, _losses, _recipe, _run
from tiny_models import tiny_batch, tiny_clips, tiny_config, tiny_model, tiny_processor, tiny_tokenizer
from transformers import WhisperFeatureExtractor, pipeline

from omni_avsr import (
    AudioVisualSpeechRecognitionPipeline,
    OmniAVSRConfig,
    OmniAVSRForConditionalGeneration,
    OmniAVSRProcessor,
    media,
)
from omni_avsr.checkpoint_weights import check_checkpoint_weights
from omni_avsr.cli import main as omni_avsr
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.media import MAX_CLIP_SECONDS, load_audio, load_clip
from omni_avsr.model_card import main as model_card
from omni_avsr.training.checkpoints import checkpoint_to_resume, last_complete_checkpoint
from omni_avsr.training.evaluation import evaluate_wer, evaluation_cells
from omni_avsr.training.matryoshka import matryoshka_step
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode


def transcribe(*argv):
    return omni_avsr(["transcribe", *map(str, argv)])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# 1. transcribe --output: never an input, append-only with a resume rule, one bad file loses only its own result.


def test_output_that_is_an_input_or_its_audio_is_refused_and_left_whole(model_dir, tmp_path, capsys):
    write_clip(tmp_path, "clip", num_frames=15)
    before = {name: (tmp_path / name).read_bytes() for name in ("clip.mp4", "clip.wav")}
    (tmp_path / "link.mp4").symlink_to(tmp_path / "clip.mp4")
    for output in ("clip.mp4", "clip.wav", "link.mp4"):
        assert transcribe(tmp_path / "clip.mp4", "--model", model_dir, "--output", tmp_path / output) == 1
        assert "--output" in capsys.readouterr().err
    # A glob over the folder that holds an earlier results file lists that file among the inputs.
    (tmp_path / "results.jsonl").write_text('{"path": "x.mp4", "text": "earlier"}\n')
    before["results.jsonl"] = (tmp_path / "results.jsonl").read_bytes()
    inputs = sorted(str(path) for path in tmp_path.glob("*"))
    assert transcribe(*inputs, "--model", model_dir, "--output", tmp_path / "results.jsonl") == 1
    assert "is one of the input files" in capsys.readouterr().err
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_rerun_keeps_earlier_results_and_transcribes_only_the_rest(model_dir, media_dir, tmp_path, capsys):
    output = tmp_path / "results.jsonl"
    first, second = str(media_dir / "first.mp4"), str(media_dir / "second.mp4")
    assert transcribe(first, "--model", model_dir, "--output", output) == 0
    earlier = output.read_text()
    capsys.readouterr()
    assert transcribe(first, second, "--model", model_dir, "--output", output) == 0
    captured = capsys.readouterr()
    assert "1 of 2 files already have results with these options" in captured.err
    assert captured.out.splitlines() == [f"{second}\t{read_lines(output)[1]['text']}"]  # only the new file ran
    assert output.read_text().startswith(earlier)
    assert [record["path"] for record in read_lines(output)] == [first, second]
    # Other options are another measurement: their lines are added, the earlier ones stay.
    assert transcribe(first, "--model", model_dir, "--audio-rate", "16", "--output", output) == 0
    records = read_lines(output)
    assert [(record["path"], record["audio_rate"]) for record in records] == [(first, 4), (second, 4), (first, 16)]


def test_a_write_cut_mid_line_is_redone_and_nothing_else_is_touched(model_dir, media_dir, tmp_path, capsys):
    output = tmp_path / "results.jsonl"
    first, second = str(media_dir / "first.mp4"), str(media_dir / "second.mp4")
    assert transcribe(first, second, "--model", model_dir, "--output", output) == 0
    complete = output.read_text().splitlines(keepends=True)
    output.write_text(complete[0] + complete[1][:25])  # killed while writing the second line
    capsys.readouterr()
    assert transcribe(first, second, "--model", model_dir, "--output", output) == 0
    captured = capsys.readouterr()
    assert "dropping its incomplete last line" in captured.err and "1 of 2 files already have results" in captured.err
    assert captured.out.splitlines() == [f"{second}\t{json.loads(complete[1])['text']}"]
    assert output.read_text() == "".join(complete)


def test_one_undecodable_file_loses_only_its_own_result(model_dir, media_dir, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((media_dir / "second.mp4").read_bytes()[:2000])
    files = [str(media_dir / "first.mp4"), str(broken), str(media_dir / "second.mp4"), str(media_dir / "speech.wav")]
    output = tmp_path / "results.jsonl"
    assert transcribe(*files, "--model", model_dir, "--batch-size", "3", "--output", output) == 1
    err = capsys.readouterr().err
    assert f"omni-avsr: error: {broken}: " in err and "1 of 4 files failed" in err
    assert [record["path"] for record in read_lines(output)] == [files[0], files[2], files[3]]


# 2. NaN or ±inf: refused in the inputs (naming them), and never decoded into a transcript.


def test_non_finite_inputs_and_settings_are_refused_naming_them(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    audio, videos = tiny_clips(2)
    for bad in (np.nan, np.inf, -np.inf):
        broken = audio[1].copy()
        broken[123] = bad
        with pytest.raises(ValueError, match=r"^audio\[1\] holds 1 NaN or infinite value\(s\) of 19200; expected"):
            processor(audio=[audio[0], broken], sampling_rate=16000, task="asr")
    # Tensors handed to generate without the processor.
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    for name in ("input_features", "pixel_values_videos"):
        tensor = inputs[name].clone()
        tensor.view(-1)[5] = float("nan")
        with pytest.raises(ValueError, match=rf"^{name} holds 1 NaN or infinite value\(s\)"):
            model.generate(**{**inputs, name: tensor}, max_new_tokens=2)
    with torch.no_grad():
        features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        prompt = processor(audio=audio, sampling_rate=16000, task="asr")
        embeddings = model.model.merge_media(
            model.model.embed_tokens(prompt["input_ids"]), prompt["input_ids"], {"audio": features}
        )
    embeddings[0, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^inputs_embeds holds 1 NaN or infinite value\(s\)"):
        model.generate(inputs_embeds=embeddings, attention_mask=prompt["attention_mask"], task="asr", max_new_tokens=2)
    # The pipelines name the input.
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    with pytest.raises(ValueError, match=r"^the input dict's 'audio' holds 1 NaN"):
        recognizer({"audio": broken, "sampling_rate": 16000, "frames": videos[1]})
    # Settings that make every pixel NaN or ±inf, given or read from processor_config.json.
    components = lambda: (WhisperFeatureExtractor(feature_size=80), tiny_tokenizer())  # noqa: E731
    for settings, message in (
        ({"video_std": 0}, "video_std must be a finite number above 0"),
        ({"video_std": float("nan")}, "video_std must be a finite number above 0"),
        ({"video_std": float("inf")}, "video_std must be a finite number above 0"),
        ({"video_mean": -0.1}, r"video_mean must be a number in \[0, 1\]"),
        ({"video_mean": float("nan")}, r"video_mean must be a number in \[0, 1\]"),
        ({"video_crop_size": 0}, "video_crop_size must be a whole number of pixels ≥ 1"),
    ):
        with pytest.raises(ValueError, match=message):
            OmniAVSRProcessor(*components(), **settings)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    (tmp_path / "processor_config.json").write_text(json.dumps({**saved, "video_std": 0.0}))
    with pytest.raises(ValueError, match=r"video_std must be a finite number above 0, .*; got 0\.0"):
        OmniAVSRProcessor.from_pretrained(tmp_path)


def test_non_finite_logits_are_an_error_not_a_transcript(model_dir, media_dir, tmp_path, capsys):
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    audio, _ = tiny_clips(2)
    inputs = processor(audio=audio, sampling_rate=16000, task="asr")
    norm = model.get_parameter("model.language_model.norm.weight")
    with torch.no_grad():
        norm[0] = float("nan")
    one_clip = processor(audio=audio[:1], sampling_rate=16000, task="asr")
    for batch, options in (
        (inputs, {}),
        (inputs, {"num_beams": 2}),
        (inputs, {"num_beams": 2, "share_prompt_prefill": True}),
        (inputs, {"do_sample": True}),
        (one_clip, {"prompt_lookup_num_tokens": 2}),  # assisted decoding
    ):
        with pytest.raises(ValueError, match=r"^The model's logits are NaN or infinite: the weights "
                                             r"model\.language_model\.norm\.weight hold NaN or infinite values"):
            model.generate(**batch, max_new_tokens=2, **options)
    with torch.no_grad():
        norm.fill_(3e38)  # finite, but the hidden states overflow float32 after the norm
    with pytest.raises(ValueError, match="the weights are finite, so the torch.float32 arithmetic overflowed"):
        model.generate(**inputs, max_new_tokens=2)
    # The command line: each file is reported, nothing is written as its transcript, the exit status is 1.
    folder = Path(shutil.copytree(model_dir, tmp_path / "nan-model"))
    weights = load_file(folder / "model.safetensors")
    weights["model.language_model.norm.weight"][0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    files = [media_dir / "first.mp4", media_dir / "speech.wav"]
    output = tmp_path / "results.jsonl"
    assert transcribe(*files, "--model", folder, "--output", output) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    for path in files:
        assert f"omni-avsr: error: {path}: The model's logits are NaN or infinite" in captured.err
    assert "2 of 2 files failed" in captured.err
    assert not output.exists() or read_lines(output) == []


# 3. Long videos: the duration is checked from the container first, and video-only clips obey the audio's window.


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """32 s of silent video (tiny frames, so that it encodes in a moment)."""
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", num_frames=800, size=16)


def test_video_longer_than_the_window_is_refused_before_decoding(long_video, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("decoded a video the container says is too long")

    monkeypatch.setattr(media, "_decode_frames_with_decord", no_decoding)
    monkeypatch.setattr(media, "_decode_frames_with_pyav", no_decoding)
    with pytest.raises(ValueError, match=rf"long\.mp4 lasts 32\.00 s; .* up to {MAX_CLIP_SECONDS:g} s"):
        load_clip(long_video, audio=False)


def test_decoding_stops_at_the_window_when_the_container_states_no_duration(long_video, monkeypatch):
    monkeypatch.setattr(media, "_announced_stream_seconds", lambda path, kind: None)
    monkeypatch.setitem(sys.modules, "decord", None)
    converted = []
    to_grayscale = media._to_grayscale
    monkeypatch.setattr(media, "_to_grayscale", lambda frames: converted.append(1) or to_grayscale(frames))
    with pytest.raises(ValueError, match=r"long\.mp4 lasts more than 30 s"):
        load_clip(long_video, audio=False)
    assert len(converted) <= 30 * 25 + 2  # frames beyond the window are never converted


@pytest.mark.parametrize("num_frames, accepted", [(750, True), (751, False)])
def test_the_limit_is_exact_and_the_same_for_video_and_audio(tmp_path, num_frames, accepted):
    video = write_video(tmp_path / "clip.mp4", num_frames=num_frames, size=16)
    soundfile.write(tmp_path / "speech.wav", sine(num_frames / 25), 16000)
    for load in (lambda: load_clip(video, audio=False), lambda: load_clip(tmp_path / "speech.wav")):
        if accepted:
            load()
        else:
            with pytest.raises(ValueError, match=r"lasts 30\.04 s; Omni-AVSR transcribes clips of up to 30 s"):
                load()


def test_the_cli_takes_a_long_audio_file_through_the_long_form_path(model_dir, tmp_path, capsys):
    """Files past one clip are no longer refused (see tests/test_long_form.py): a 32 s recording is transcribed a
    segment at a time and its results line carries the segments."""
    soundfile.write(tmp_path / "long.wav", np.concatenate([sine(1.0), np.zeros(16000 * 31, np.float32)]), 16000)
    assert transcribe(tmp_path / "long.wav", "--model", model_dir, "--output", tmp_path / "results.jsonl") == 0
    final = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    assert final["path"] == str(tmp_path / "long.wav") and isinstance(final["chunks"], list)


# 4. A label CSV with an unterminated quote.


def test_an_unterminated_quote_is_an_error_naming_the_file_and_line(tmp_path):
    (tmp_path / "lrs3" / "spk").mkdir(parents=True)
    for index in range(3):
        write_clip(tmp_path / "lrs3" / "spk", f"{index}", num_frames=5)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        'lrs3,spk/0.mp4,5,1,first clip\nlrs3,spk/1.mp4,5,1,"second clip\nlrs3,spk/2.mp4,5,1,third clip\n'
    )
    with pytest.raises(ValueError, match=rf"{labels}, line 2: not a valid CSV row .*quoted text closed on its own line"):
        load_lrs_dataset(tmp_path, labels)
    labels.write_text('lrs3,spk/0.mp4,5,1,"first\nclip"\nlrs3,spk/1.mp4,5,1,second\n')
    with pytest.raises(ValueError, match=rf"{labels}, line 1: a quoted field runs over 2 lines"):
        load_lrs_dataset(tmp_path, labels)
    labels.write_text('lrs3,spk/0.mp4,5,1,"first, quoted ""clip"""\nlrs3,spk/1.mp4,5,1,second\n')
    assert load_lrs_dataset(tmp_path, labels).with_format(None)["text"] == ['first, quoted "clip"', "second"]


# 5. Training killed while a checkpoint is written: resume from the last complete one.


def _cut_checkpoint(folder: Path) -> None:
    """What a kill during `_save_checkpoint` leaves: weights cut short, no optimizer or trainer state yet."""
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).unlink(missing_ok=True)


def _checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    save_file({"weight": torch.zeros(64, 64)}, folder / "model.safetensors")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def test_last_complete_checkpoint_skips_cut_ones(tmp_path):
    _checkpoint(tmp_path / "checkpoint-2", 2)
    _cut_checkpoint(_checkpoint(tmp_path / "checkpoint-3", 3))
    _checkpoint(tmp_path / "checkpoint-4", 4)
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "log_hi')
    _checkpoint(tmp_path / "checkpoint-10", 10)
    (tmp_path / "checkpoint-10" / "model.safetensors").unlink()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")

    class Arguments:
        output_dir, resume_from_checkpoint = tmp_path, str(tmp_path / "checkpoint-3")

    with pytest.raises(ValueError, match=r"checkpoint-3: cannot resume, it has no trainer_state\.json.*checkpoint-2"):
        checkpoint_to_resume(Arguments)
    Arguments.resume_from_checkpoint = str(tmp_path / "checkpoint-2")
    assert checkpoint_to_resume(Arguments) == str(tmp_path / "checkpoint-2")


@pytest.mark.parametrize("script", ["run_speech_recognition.py", "run_lip_reading_ctc.py"])
def test_training_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(mini_corpus, tmp_path, script):
    recipe = _recipe(tmp_path, mini_corpus, max_steps=4, save_steps=2, train_tasks=["asr"])
    if script == "run_lip_reading_ctc.py":
        settings = json.loads(recipe.read_text())
        recipe.write_text(json.dumps({
            "video_encoder": settings["video_encoder"], "tokenizer_vocab_size": 64, "data_root": settings["data_root"],
            "train_labels": settings["train_labels"], "max_frames_per_batch": 300, "learning_rate": 3e-3,
            "logging_steps": 1, "report_to": "none", "max_steps": 4, "save_steps": 2, "seed": 0, "do_train": True,
            "output_dir": settings["output_dir"],
        }))
    _run(recipe, script=script)
    run = tmp_path / "run"
    uninterrupted = _losses(run)
    _cut_checkpoint(run / "checkpoint-4")
    (run / "trainer_state.json").unlink()  # the run never got to its end
    completed = _run(recipe, script=script)
    assert "Skipping" in completed.stderr and "checkpoint-4" in completed.stderr
    resumed = _losses(run)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6), (step, resumed, uninterrupted)


# 6. Converters and writers that cannot write must fail.


def test_avhubert_converter_into_an_existing_file_fails_and_writes_nothing(checkpoint_path, tmp_path, capsys):
    """With a real checkpoint (test_convert_avhubert's; skipped without the parity fixtures), which converted
    before this was fixed and printed "Saved" having written nothing."""
    from omni_avsr.convert.avhubert import main

    output = tmp_path / "OUT"
    output.write_text("keep me")
    assert main([str(checkpoint_path), str(output)]) == 1
    captured = capsys.readouterr()
    assert "Saved" not in captured.out and f"output folder {output} is a file" in captured.err
    assert output.read_text() == "keep me"


def test_writers_that_cannot_write_fail_with_one_line(model_dir, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.write_text("keep me")
    commands = [
        [sys.executable, "-m", "omni_avsr.convert.ctranslate2_whisper", occupied],
        [sys.executable, "-m", "omni_avsr.convert.official", "ckpt.pth", occupied, "--llm-config", "x",
         "--tokenizer", "x", "--whisper-config", "x", "--avhubert-config", "x"],
        [sys.executable, "-m", "omni_avsr.data.mini_lrs", "--output-dir", occupied],
    ]
    for command in commands:
        completed = subprocess.run(list(map(str, command)), cwd=REPO, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 1, completed.stderr[-2000:]
        # One error line (other lines may be import-time warnings of optional libraries, e.g. bitsandbytes').
        (error,) = [line for line in completed.stderr.splitlines() if ": error: " in line]
        assert error.endswith(f"{occupied} is a file; expected a folder (new or existing) to write into.")
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"task": "asr", "audio_rate": 4, "video_rate": None, "wer": 1.0}]))
    assert model_card(["--model", str(model_dir), "--results", str(results), "--output", str(tmp_path),
                       "--dataset", "lrs3"]) == 1
    assert occupied.read_text() == "keep me"


# 7. A model folder whose config does not describe its weights: refused for inference, still a start for training.


def _edited_model(model_dir: Path, folder: Path, **config) -> Path:
    shutil.copytree(model_dir, folder)
    edited = {**json.loads((folder / "config.json").read_text()), **config}
    (folder / "config.json").write_text(json.dumps(edited))
    return folder


@pytest.mark.parametrize(
    "change, missing, unexpected",
    [
        ({"audio_rates": [4, 8]}, "model.audio_projectors.8.linear_1.bias", "model.audio_projectors.16.linear_1.bias"),
        ({"lora_variant": "T"}, None, "model.language_model.layers.0.self_attn.q_proj.lora_A.shared.weight"),
        ({"projector_per_rate": False}, "model.audio_projectors.shared.linear_1.bias",
         "model.audio_projectors.16.linear_1.bias"),
        ({"projector_layer_norm": True}, "model.audio_projectors.16.norm.bias", None),
    ],
    ids=["rates", "variant", "shared-projector", "projector-norm"],
)
def test_a_folder_whose_config_does_not_describe_its_weights_is_refused_for_inference(
    model_dir, media_dir, tmp_path, capsys, change, missing, unexpected
):
    folder = _edited_model(model_dir, tmp_path / "edited", **change)
    for task in ("audio-visual-speech-recognition", "automatic-speech-recognition"):
        with pytest.raises(ValueError) as error:
            pipeline(task, model=str(folder))
        message = str(error.value)
        assert message.startswith(f"{folder}: its weights do not cover the model its config.json describes")
        assert "Expected the config.json saved with these weights" in message
        for kind, key in (("missing", missing), ("unexpected", unexpected)):
            assert (f"{kind} ({key}" in message) == (key is not None), message
    capsys.readouterr()  # the loading bars of the pipelines above (when no earlier command turned them off)
    assert transcribe(media_dir / "first.mp4", "--model", folder) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [f"omni-avsr: error: {message}"]
    # Training from the folder: the weights the config adds are initialised, and they train; the training script
    # refuses to evaluate the folder itself (it checks it as the pipelines do).
    model = OmniAVSRForConditionalGeneration.from_pretrained(folder)
    with pytest.raises(ValueError, match="its weights do not cover the model its config.json describes"):
        check_checkpoint_weights(model)
    processor = tiny_processor()
    keep_frozen_encoders_in_eval_mode(model.train())
    output = matryoshka_step(model, processor, tiny_batch(processor, num_clips=2), audio_rate=model.config.audio_rates[-1])
    output.loss.backward()
    assert torch.isfinite(output.loss)
    # Saved with its weights (and a processor of its own rates), the trained model transcribes.
    model.save_pretrained(tmp_path / "trained")
    OmniAVSRProcessor.for_model(model.config, processor.feature_extractor, processor.tokenizer).save_pretrained(
        tmp_path / "trained"
    )
    recognizer = pipeline("audio-visual-speech-recognition", model=str(tmp_path / "trained"))
    assert recognizer(media_dir / "first.mp4")["task"] == "avsr"


def test_weights_of_another_shape_are_refused_naming_them(model_dir, tmp_path):
    folder = _edited_model(model_dir, tmp_path / "width", projector_hidden_size=40)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # transformers' own refusal
        OmniAVSRForConditionalGeneration.from_pretrained(folder)
    model, info = OmniAVSRForConditionalGeneration.from_pretrained(
        folder, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert len(info["mismatched_keys"]) == 12
    shapes = r"model\.audio_projectors\.16\.linear_1\.bias \(checkpoint \(48,\), model \(40,\)\)"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(folder))}: 12 weights do not have the shape its "
                                         rf"config\.json gives them: {shapes}"):
        AudioVisualSpeechRecognitionPipeline(model=model, processor=tiny_processor())
    # The folder as it was saved loads whole.
    check_checkpoint_weights(OmniAVSRForConditionalGeneration.from_pretrained(model_dir))


# 9. A WAV truncated mid-stream.


def test_a_wav_cut_mid_stream_is_refused(tmp_path, model_dir, capsys):
    soundfile.write(tmp_path / "speech.wav", sine(2.0), 16000)
    data = (tmp_path / "speech.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 4])
    with pytest.raises(ValueError, match=r"cut\.wav is truncated: its header announces 64000 bytes of audio but the file holds \d+ \(25 %\)"):
        load_audio(tmp_path / "cut.wav")
    assert transcribe(tmp_path / "cut.wav", "--model", model_dir) == 1
    assert "cut.wav is truncated" in capsys.readouterr().err
    # A streaming writer's WAV (data size left at 0xFFFFFFFF) has no announced length: it is read as it is.
    streamed, size_at = bytearray(data), data.index(b"data") + 4
    streamed[size_at : size_at + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    np.testing.assert_array_equal(load_audio(tmp_path / "streamed.wav"), load_audio(tmp_path / "speech.wav"))


# 10. Model cards state what the checkpoint is and what its results were measured on.


DEMO_LIKE_ROWS = [
    {"task": "asr", "audio_rate": 4, "video_rate": None, "snr_db": None, "wer": 7.7, "num_words": 1200},
    {"task": "vsr", "audio_rate": None, "video_rate": 2, "snr_db": None, "wer": 66.7, "num_words": 1200},
    {"task": "avsr", "audio_rate": 4, "video_rate": 2, "snr_db": None, "wer": 8.0, "num_words": 1200},
]
MINI_LRS_RECORD = {
    "corpus": "mini_lrs", "data_root": "/data/mini_lrs", "labels": "mini_lrs_test.csv", "split": "test",
    "num_clips": 200, "model": "outputs/demo/omni_avsr_st", "decoding": {"max_new_tokens": 16, "num_beams": 1},
    "noise": None,
}


def test_a_card_states_the_checkpoint_and_the_corpus_it_was_measured_on(model_dir, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{**row, "measured_on": MINI_LRS_RECORD} for row in DEMO_LIKE_ROWS]))
    card = tmp_path / "README.md"
    assert model_card(["--model", str(model_dir), "--results", str(results), "--output", str(card)]) == 0
    text = card.read_text()
    metadata = text.split("---\n")[1]
    assert "base_model" not in metadata and "lrs3" not in metadata and "datasets:\n- mini_lrs" in metadata
    assert "WER (%) of this checkpoint on the Mini-LRS test set (200 clips; 1,200 reference words; greedy decoding, at " \
           "most 16 new tokens)" in text
    assert "Llama (2 layers × 32, 39 tokens), frozen, with Omni-LoRA (ST, rank 4, scale 2)" in text
    assert "Whisper medium.en" not in text.split("For comparison, the paper reports")[0]

    assert model_card(["--model", str(model_dir), "--results", str(results), "--output", str(card),
                       "--dataset", "lrs3"]) == 1
    assert "the results record that they were measured on 'mini_lrs'" in capsys.readouterr().err
    results.write_text(json.dumps(DEMO_LIKE_ROWS))  # written before results recorded their corpus
    assert model_card(["--model", str(model_dir), "--results", str(results), "--output", str(card)]) == 1
    assert "pass --dataset NAME" in capsys.readouterr().err
    assert model_card(["--model", str(model_dir), "--results", str(results), "--output", str(card),
                       "--dataset", "Mini-LRS"]) == 0


def test_evaluation_refuses_to_mix_its_results_with_another_measurement(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor)
    earlier = [{**row, "measured_on": MINI_LRS_RECORD} for row in DEMO_LIKE_ROWS]
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    other = {**MINI_LRS_RECORD, "decoding": {"max_new_tokens": 32, "num_beams": 15}}
    with pytest.raises(ValueError, match=r"results\.json, row 0: measured on .* expected results of this same evaluation"):
        evaluate_wer(model, processor, [], evaluation_cells(model.config), output_dir=tmp_path, measured_on=other)
    assert json.loads((tmp_path / "results.json").read_text()) == earlier


# Beyond the numbered items: errors raised deep inside a library become the project's own, at the entry points.


def test_every_path_of_a_config_without_token_ids_reaches_its_clear_error():
    processor = tiny_processor()
    config = tiny_config(processor).to_dict()
    for name in ("audio_token_id", "video_token_id", "pad_token_id", "eos_token_id", "prompt_token_ids"):
        config[name] = None
    model = OmniAVSRForConditionalGeneration(OmniAVSRConfig(**config)).eval()
    audio, videos = tiny_clips(2)
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    calls = {
        "forward": lambda: model(**inputs),
        "generate": lambda: model.generate(**inputs, max_new_tokens=2),
        "training step": lambda: matryoshka_step(model, processor, tiny_batch(processor, num_clips=2), tasks=["asr"]),
        "embeddings of a prompt": lambda: model.model.embed_tokens(inputs["input_ids"]),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"^OmniAVSRConfig has no audio_token_id, video_token_id, pad_token_id, "
                                             r"eos_token_id: call config\.set_token_ids\(processor\.tokenizer\)"):
            call()


@pytest.mark.parametrize("num_frames, accepted", [(750, True), (751, False)])
def test_the_processor_holds_video_arrays_to_the_window_of_audio(num_frames, accepted):
    processor = tiny_processor()
    frames = np.zeros((num_frames, 96, 96), np.uint8)
    waveform = np.zeros(num_frames * 640, np.float32)
    for call, name in ((lambda: processor(videos=[frames]), "videos[0]"),
                       (lambda: processor(audio=[waveform], sampling_rate=16000), "audio[0]")):
        if accepted:
            call()
        else:
            with pytest.raises(ValueError, match=rf"^{re.escape(name)} lasts 30\.04 s; Omni-AVSR transcribes clips "
                                                 r"of up to 30 s"):
                call()


def test_pipeline_errors_name_the_input_not_its_place_in_a_batch(media_dir, tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    audio, videos = tiny_clips(3)
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    inputs = [{"audio": clip, "sampling_rate": 16000} for clip in audio]
    inputs[2] = {"audio": np.full(16000, np.nan, np.float32), "sampling_rate": 16000}
    with pytest.raises(ValueError) as error:
        recognizer(inputs, batch_size=2)
    assert str(error.value).startswith("the input dict's 'audio' holds 16000 NaN or infinite value(s)")
    assert "audio[" not in str(error.value)
    with pytest.raises(ValueError, match=r"^the input dict's 'frames' has dtype float64; expected uint8"):
        recognizer({"frames": videos[0].astype(np.float64)})
    # Files: a folder is not "not found".
    transcriber = pipeline("automatic-speech-recognition", model=model, processor=processor)
    for pipe in (recognizer, transcriber):
        with pytest.raises(IsADirectoryError, match=rf"^{re.escape(str(media_dir))} is a folder; expected a media"):
            pipe(str(media_dir))
