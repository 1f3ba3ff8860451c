"""Both pipelines give what `model.generate` gives, for every input form, task, rate and batch size; stock speech
recognition models keep the stock pipeline in the same process; bad input raises clear errors."""

import json
import re

import numpy as np
import pytest
import soundfile
import soxr
import torch
from test_media import sine, write_clip, write_video
from tiny_models import randomize_lora, tiny_clips, tiny_model, tiny_processor

from omni_avsr import AudioVisualSpeechRecognitionPipeline, OmniAVSRSpeechRecognitionPipeline, load_clip
from transformers import (
    AutomaticSpeechRecognitionPipeline,
    GenerationConfig,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
    pipeline,
)
from transformers.pipelines import PIPELINE_REGISTRY


MAX_NEW_TOKENS = 4


@pytest.fixture(scope="module")
def omni():
    processor = tiny_processor()
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    return model, processor


@pytest.fixture(scope="module")
def clips():
    audio, videos = tiny_clips(3, seconds=(0.8, 0.6, 1.0))
    return audio, videos


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    """`av.mp4` + `av.wav` (LRS layout), a silent `silent.mp4` and an audio file `speech.wav`."""
    directory = tmp_path_factory.mktemp("media")
    write_clip(directory, "av", num_frames=20)
    write_video(directory / "silent.mp4", num_frames=15)
    soundfile.write(directory / "speech.wav", sine(0.8, hz=220.0), 16000)
    return directory


def generated_text(model, processor, task, audio=None, videos=None, sampling_rate=16000, **generate_kwargs):
    rates = {name: generate_kwargs.pop(name) for name in ("audio_rate", "video_rate") if name in generate_kwargs}
    inputs = processor(audio=audio, videos=videos, sampling_rate=sampling_rate, resample=True, task=task, **rates)
    sequences = model.generate(**inputs, **generate_kwargs)
    return processor.decode_transcripts(sequences[:, inputs["input_ids"].shape[1]:])


def test_speech_recognition_pipeline_matches_generate_for_every_input_form(omni, clips, media_dir):
    model, processor = omni
    audio = clips[0]
    transcriber = pipeline("automatic-speech-recognition", model=model, processor=processor)
    assert type(transcriber) is OmniAVSRSpeechRecognitionPipeline
    assert isinstance(transcriber, AutomaticSpeechRecognitionPipeline)

    expected = generated_text(model, processor, "asr", audio=audio[:1])[0]
    assert transcriber(audio[0]) == {"text": expected}
    assert transcriber({"raw": torch.from_numpy(audio[0]), "sampling_rate": 16000}) == {"text": expected}
    assert transcriber({"array": audio[0], "sampling_rate": 16000, "path": "ignored.wav"}) == {"text": expected}

    audio_8k = soxr.resample(audio[1], 16000, 8000).astype(np.float32)
    expected_8k = generated_text(model, processor, "asr", audio=[audio_8k], sampling_rate=8000)[0]
    assert transcriber({"raw": audio_8k, "sampling_rate": 8000}) == {"text": expected_8k}

    wav = load_clip(media_dir / "speech.wav").audio
    expected_wav = generated_text(model, processor, "asr", audio=[wav])[0]
    assert transcriber(str(media_dir / "speech.wav")) == {"text": expected_wav}
    # A video file's audio: its sibling .wav, cut to the video's length.
    mp4_audio = load_clip(media_dir / "av.mp4", video=False).audio
    assert transcriber(media_dir / "av.mp4") == {"text": generated_text(model, processor, "asr", audio=[mp4_audio])[0]}


def test_rates_and_decoding_options_go_through_generate_kwargs(omni, clips):
    model, processor = omni
    audio = clips[0][:1]
    transcriber = pipeline("automatic-speech-recognition", model=model, processor=processor)
    for audio_rate in (4, 16):
        expected = generated_text(model, processor, "asr", audio=audio, audio_rate=audio_rate, num_beams=2)[0]
        assert transcriber(audio[0], generate_kwargs={"audio_rate": audio_rate, "num_beams": 2})["text"] == expected
    assert transcriber(audio[0], audio_rate=16, num_beams=2)["text"] == expected
    short = transcriber(audio[0], generate_kwargs={"max_new_tokens": 2, "min_new_tokens": 2})["text"]
    assert short == generated_text(model, processor, "asr", audio=audio, max_new_tokens=2, min_new_tokens=2)[0]
    assert len(short) <= 2  # the tiny tokenizer has one token per character


def test_batches_give_the_texts_of_clips_one_at_a_time(omni, clips, media_dir):
    model, processor = omni
    audio, videos = clips
    transcriber = pipeline("automatic-speech-recognition", model=model, processor=processor)
    singles = [transcriber(waveform) for waveform in audio]
    assert transcriber(audio, batch_size=2) == singles
    assert [{"text": text} for text in generated_text(model, processor, "asr", audio=audio)] == singles

    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    inputs = [
        {"audio": audio[0], "sampling_rate": 16000, "frames": videos[0]},
        {"frames": videos[1]},
        str(media_dir / "speech.wav"),
        {"audio": audio[2], "sampling_rate": 16000, "frames": videos[2]},
        str(media_dir / "av.mp4"),
    ]
    singles = [recognizer(item, video_rate=5) for item in inputs]
    assert [result["task"] for result in singles] == ["avsr", "vsr", "asr", "avsr", "avsr"]
    assert recognizer(inputs, batch_size=3, video_rate=5) == singles


def test_audio_visual_pipeline_tasks_follow_the_input_or_the_request(omni, clips, media_dir):
    model, processor = omni
    audio, videos = clips
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    assert type(recognizer) is AudioVisualSpeechRecognitionPipeline
    both = {"audio": audio[0], "sampling_rate": 16000, "frames": videos[0]}
    for task in ("asr", "vsr", "avsr"):
        expected = generated_text(
            model, processor, task, audio=audio[:1], videos=videos[:1], audio_rate=16, video_rate=5
        )
        assert recognizer(both, task=task, audio_rate=16, video_rate=5) == {"text": expected[0], "task": task}
    assert recognizer(both, generate_kwargs={"task": task, "audio_rate": 16, "video_rate": 5})["text"] == expected[0]

    clip = load_clip(media_dir / "av.mp4")
    expected = generated_text(model, processor, "avsr", audio=[clip.audio], videos=[clip.frames])[0]
    assert recognizer(str(media_dir / "av.mp4")) == {"text": expected, "task": "avsr"}
    silent = load_clip(media_dir / "silent.mp4", audio=False).frames
    assert recognizer(str(media_dir / "silent.mp4")) == {
        "text": generated_text(model, processor, "vsr", videos=[silent])[0],
        "task": "vsr",
    }
    assert recognizer({"audio": audio[1], "sampling_rate": 16000})["task"] == "asr"


def test_pipelines_load_from_a_saved_folder(omni, clips, tmp_path):
    model, processor = omni
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    audio, videos = clips
    expected = pipeline("automatic-speech-recognition", model=model, processor=processor)(audio[0])
    transcriber = pipeline("automatic-speech-recognition", model=str(tmp_path))
    assert type(transcriber) is OmniAVSRSpeechRecognitionPipeline and transcriber(audio[0]) == expected
    both = {"audio": audio[0], "sampling_rate": 16000, "frames": videos[0]}
    recognizer = pipeline("audio-visual-speech-recognition", model=tmp_path)
    assert recognizer(both) == pipeline("audio-visual-speech-recognition", model=model, processor=processor)(both)


def test_real_lrs3_clip_end_to_end(omni, real_clip_path):
    model, processor = omni
    clip = load_clip(real_clip_path)
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    expected = generated_text(
        model, processor, "avsr", audio=[clip.audio], videos=[clip.frames], audio_rate=4, video_rate=2
    )
    assert recognizer(str(real_clip_path), audio_rate=4, video_rate=2) == {"text": expected[0], "task": "avsr"}


def tiny_wav2vec2(directory):
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({char: len(vocab) + index for index, char in enumerate("abcdefghijklmnopqrstuvwxyz'")})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).save_pretrained(directory)
    Wav2Vec2CTCTokenizer(str(directory / "vocab.json")).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    return directory


def tiny_whisper(directory):
    """A tiny random Whisper with a character-level byte-level-BPE tokenizer (no merges)."""
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    vocab = {char: index for index, char in enumerate("abcdefghijklmnopqrstuvwxyzĠ")}
    vocab.update({token: len(vocab) + index for index, token in enumerate(specials)})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    end, start, no_timestamps = (vocab[token] for token in specials)
    tokenizer = WhisperTokenizer(
        str(directory / "vocab.json"), str(directory / "merges.txt"), pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=32,
        pad_token_id=end, bos_token_id=end, eos_token_id=end, decoder_start_token_id=start,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, no_timestamps_token_id=no_timestamps,
        max_length=8, num_beams=1, is_multilingual=False,
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("build", [tiny_wav2vec2, tiny_whisper], ids=["wav2vec2", "whisper"])
def test_stock_speech_recognition_models_keep_the_stock_pipeline(build, tmp_path):
    folder = str(build(tmp_path))
    waveforms = [sine(1.0, hz=300.0), sine(0.6, hz=500.0)]
    stock = pipeline("automatic-speech-recognition", model=folder, pipeline_class=AutomaticSpeechRecognitionPipeline)
    transcriber = pipeline("automatic-speech-recognition", model=folder)
    assert type(transcriber) is AutomaticSpeechRecognitionPipeline
    expected = [stock(waveform) for waveform in waveforms]
    assert [transcriber(waveform) for waveform in waveforms] == expected
    assert transcriber(waveforms, batch_size=2) == stock(waveforms, batch_size=2)
    direct = pipeline(
        "automatic-speech-recognition", model=transcriber.model, tokenizer=transcriber.tokenizer,
        feature_extractor=transcriber.feature_extractor,
    )
    assert type(direct) is AutomaticSpeechRecognitionPipeline and direct(waveforms[0]) == expected[0]


def test_registration_keeps_the_stock_task_entry():
    entry = PIPELINE_REGISTRY.supported_tasks["automatic-speech-recognition"]
    assert entry["impl"] is OmniAVSRSpeechRecognitionPipeline
    assert [model_class.__name__ for model_class in entry["pt"]] == [
        "AutoModelForCTC", "AutoModelForTDT", "AutoModelForSpeechSeq2Seq",
    ]
    assert entry["default"]["model"][0] == "facebook/wav2vec2-base-960h"
    audio_visual = PIPELINE_REGISTRY.supported_tasks["audio-visual-speech-recognition"]
    assert audio_visual["impl"] is AudioVisualSpeechRecognitionPipeline


@pytest.mark.parametrize(
    "pipeline_task, make_input, options, message",
    [
        ("audio-visual", lambda audio, frames: {"audio": audio, "sampling_rate": 16000, "frames": frames},
         {"task": "lipread"}, "Unknown task 'lipread': expected one of asr, vsr, avsr"),
        ("speech", lambda audio, frames: audio, {"audio_rate": 8},
         "audio_rate=8 is not one of this model's audio rates (4, 16): the rates it was trained with"),
        ("audio-visual", lambda audio, frames: {"frames": frames}, {"generate_kwargs": {"video_rate": 3}},
         "video_rate=3 is not one of this model's video rates (2, 5): the rates it was trained with"),
        ("audio-visual", lambda audio, frames: {"audio": audio, "sampling_rate": 16000}, {"task": "avsr"},
         "task='avsr' needs audio and lip video, but the input dict has no lip video"),
        ("speech", lambda audio, frames: audio, {"generate_kwargs": {"task": "vsr"}},
         "transcribes audio (task='asr'), got task='vsr'"),
        ("speech", lambda audio, frames: audio, {"stride_length_s": 2},
         "`stride_length_s` is not supported by Omni-AVSR pipelines: long recordings are cut at pauses"),
        ("audio-visual", lambda audio, frames: {"frames": frames}, {"chunk_length_s": 0.5},
         "chunk_length_s=0.5: expected a length in seconds from 1 to 30"),
        ("speech", lambda audio, frames: audio, {"return_timestamps": "word"},
         "return_timestamps='word': expected True (segment times) or False"),
        ("audio-visual", lambda audio, frames: {"audio": audio}, {}, "has 'audio' but no 'sampling_rate'"),
        ("audio-visual", lambda audio, frames: {"video": frames}, {}, "Unexpected keys ['video'] in the input dict"),
        ("audio-visual", lambda audio, frames: audio, {}, "takes a media file path or a dict"),
        ("speech", lambda audio, frames: b"RIFF", {}, "or a local audio/video file path; got bytes"),
        ("speech", lambda audio, frames: {"raw": audio, "array": audio, "sampling_rate": 16000}, {},
         "exactly one waveform"),
    ],
)
def test_bad_calls_raise_errors_that_say_what_was_expected(omni, clips, pipeline_task, make_input, options, message):
    model, processor = omni
    task = "automatic-speech-recognition" if pipeline_task == "speech" else "audio-visual-speech-recognition"
    with pytest.raises(ValueError, match=re.escape(message)):
        pipeline(task, model=model, processor=processor)(make_input(clips[0][0], clips[1][0]), **options)


def test_bad_files_and_models_are_named(omni, media_dir, tmp_path):
    model, processor = omni
    recognizer = pipeline("audio-visual-speech-recognition", model=model, processor=processor)
    with pytest.raises(FileNotFoundError, match="Media file not found: .*missing.mp4"):
        recognizer(str(media_dir / "missing.mp4"))
    with pytest.raises(ValueError, match=r"task='avsr' needs audio and lip video, but .*speech.wav has no lip video"):
        recognizer(str(media_dir / "speech.wav"), task="avsr")
    with pytest.raises(ValueError, match=r"task='asr' needs audio, but .*silent.mp4 has no audio"):
        pipeline("automatic-speech-recognition", model=model, processor=processor)(str(media_dir / "silent.mp4"))
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="Could not read .*notes.mp4 as a media file"):
        recognizer(str(tmp_path / "notes.mp4"))
    with pytest.raises(ValueError, match="need the model's OmniAVSRProcessor"):
        AudioVisualSpeechRecognitionPipeline(model=model)
    wav2vec2 = Wav2Vec2ForCTC(
        Wav2Vec2Config(
            vocab_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=2,
        )
    )
    with pytest.raises(ValueError, match="runs Omni-AVSR models .* got a Wav2Vec2ForCTC"):
        AudioVisualSpeechRecognitionPipeline(model=wav2vec2, processor=processor)
