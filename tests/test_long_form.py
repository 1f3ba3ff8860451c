"""Long recordings: a minute of Mini-LRS speech with pauses is cut at the pauses, read a segment at a time, each
segment transcribed as the same media would be as one clip; timestamps, subtitles, resuming, faults, bad files."""

import json
import warnings
from pathlib import Path

import numpy as np
import pysubs2
import pytest
from long_recording import build_long_recording, mini_lrs_test_clips, write_mouth_video
from tiny_models import saved_model, tiny_decoding_model

from omni_avsr import AudioVisualSpeechRecognitionPipeline, load_clip
from omni_avsr.cli import main
from omni_avsr.long_form import chunk_key
from omni_avsr.media import SAMPLES_PER_FRAME, VIDEO_FPS
from omni_avsr.media_stream import MediaStream
from omni_avsr import segmentation
from omni_avsr.segmentation import SPEECH_PAD_SECONDS, Segment, fixed_windows, speech_segments


SEGMENT_SECONDS = 3.5  # what the training script records for a model trained on Mini-LRS clips


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    clips, texts = mini_lrs_test_clips(root / "corpus", 20)
    return build_long_recording(clips, texts, root / "recording")


@pytest.fixture(scope="module")
def model_and_processor():
    model, processor = tiny_decoding_model(max_new_tokens=4)
    processor.segment_seconds = SEGMENT_SECONDS
    return model, processor


@pytest.fixture(scope="module")
def transcriber(model_and_processor):
    model, processor = model_and_processor
    return AudioVisualSpeechRecognitionPipeline(model=model, processor=processor, batch_size=4)


@pytest.fixture(scope="module")
def model_dir(model_and_processor, tmp_path_factory):
    return saved_model(*model_and_processor, tmp_path_factory.mktemp("model"))


def assert_chunks_in_order(chunks, seconds):
    times = [chunk["timestamp"] for chunk in chunks]
    assert all(0 <= start < end <= seconds + 1e-6 for start, end in times)
    assert all(previous[1] <= current[0] for previous, current in zip(times, times[1:]))


@pytest.mark.parametrize("version", ["video", "paired"])
def test_a_minute_is_cut_in_its_pauses_and_every_word_is_in_a_segment(recording, transcriber, version):
    path = getattr(recording, version)
    result = transcriber(str(path), task="asr", return_timestamps=True)
    chunks = result["chunks"]
    assert_chunks_in_order(chunks, recording.seconds)
    assert all(chunk["timestamp"][1] - chunk["timestamp"][0] <= SEGMENT_SECONDS + 1e-6 for chunk in chunks)
    for boundary in {time for chunk in chunks for time in chunk["timestamp"]}:
        inside = [span for span in recording.speech if span[0] + 0.3 < boundary < span[1] - 0.3]
        assert not inside, f"a cut at {boundary:.2f} s lies inside the speech {inside}"
    for start, end in recording.speech:
        assert any(s <= start + 0.3 and e >= end - 0.3 for s, e in (chunk["timestamp"] for chunk in chunks))
    assert result["text"] == " ".join(chunk["text"] for chunk in chunks if chunk["text"])


@pytest.mark.parametrize("task", ["asr", "avsr", "vsr"])
def test_each_segment_is_transcribed_as_its_media_would_be_as_one_clip(recording, transcriber, task):
    result = transcriber(str(recording.paired), task=task, return_timestamps=True)
    clip = load_clip(recording.paired, max_seconds=None)
    inputs = []
    for chunk in result["chunks"]:
        first, last = (round(time * VIDEO_FPS) for time in chunk["timestamp"])
        media = {}
        if task != "vsr":
            media.update(audio=clip.audio[first * SAMPLES_PER_FRAME : last * SAMPLES_PER_FRAME], sampling_rate=16000)
        if task != "asr":
            media["frames"] = clip.frames[first:last]
        inputs.append(media)
    one_by_one = transcriber(inputs, task=task)
    assert [chunk["text"] for chunk in result["chunks"]] == [output["text"] for output in one_by_one]
    assert result["task"] == task and "chunks" not in transcriber(str(recording.paired), task=task)


@pytest.mark.parametrize("detector", ["silero", "energy"])
def test_segments_keep_the_lips_moving_before_and_after_the_sound(recording, detector, monkeypatch):
    """Each segment reaches about SPEECH_PAD_SECONDS into the pauses around its speech (the pauses are 0.6-1.4 s), so
    lip reading sees the mouth move before the sound starts; the energy rule, the fallback, pads as Silero does."""
    if detector == "energy":
        monkeypatch.setattr(segmentation, "_silero", lambda: None)
    stream = MediaStream(recording.video, video=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segments = speech_segments(stream.audio_blocks(), SEGMENT_SECONDS, stream.duration)
    assert all(segment.duration <= SEGMENT_SECONDS + 1e-6 for segment in segments)
    for start, end in recording.speech:
        holding = [segment for segment in segments if segment.start <= start and segment.end >= end]
        assert holding, f"no segment holds the speech at {start:.2f}-{end:.2f} s"
        assert start - holding[0].start >= SPEECH_PAD_SECONDS - 0.1 and holding[0].end - end >= SPEECH_PAD_SECONDS - 0.1


@pytest.mark.parametrize("version", ["video", "paired"])
def test_streamed_segments_hold_the_media_of_the_whole_file(recording, version):
    path = getattr(recording, version)
    clip = load_clip(path, max_seconds=None)
    stream = MediaStream(path)
    assert stream.duration == pytest.approx(recording.seconds, abs=0.1)
    segments = speech_segments(stream.audio_blocks(), SEGMENT_SECONDS, stream.duration)
    for media in stream.segments(segments):
        first, last = round(media.segment.start * VIDEO_FPS), round(media.segment.end * VIDEO_FPS)
        np.testing.assert_array_equal(media.frames, clip.frames[first:last])
        expected = clip.audio[first * SAMPLES_PER_FRAME : last * SAMPLES_PER_FRAME]
        np.testing.assert_allclose(media.audio[: len(expected)], expected, atol=1e-4)
        assert media.face_found is None and not media.faults


def test_arrays_longer_than_a_clip_take_the_long_form_path_too(recording, transcriber):
    clip = load_clip(recording.paired, max_seconds=None)
    from_file = transcriber(str(recording.paired), task="avsr", return_timestamps=True)
    from_arrays = transcriber(
        {"audio": clip.audio, "sampling_rate": 16000, "frames": clip.frames}, task="avsr", return_timestamps=True
    )
    assert from_arrays["chunks"] == from_file["chunks"]
    silent = transcriber({"frames": clip.frames}, return_timestamps=True)
    assert [chunk["timestamp"] for chunk in silent["chunks"]] == [
        (segment.start, segment.end) for segment in fixed_windows(recording.seconds, SEGMENT_SECONDS)
    ]


def test_a_silent_video_is_cut_into_fixed_windows(recording, transcriber, tmp_path):
    frames = load_clip(recording.paired, audio=False, grayscale=False, max_seconds=None).frames
    silent = write_mouth_video(tmp_path / "silent.mp4", frames[:1000])
    result = transcriber(str(silent), return_timestamps=True, chunk_length_s=8)
    assert result["task"] == "vsr"
    assert [chunk["timestamp"] for chunk in result["chunks"]] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    assert fixed_windows(40.0, 16.0) == [Segment(0, 16), Segment(16, 32), Segment(32, 40)]
    assert fixed_windows(7.0, 3.5) == [Segment(0, 3.48), Segment(3.48, 6.96), Segment(6.96, 7.0)]


def test_command_writes_chunks_and_subtitles_that_parse_back(recording, model_dir, tmp_path, capsys):
    output = tmp_path / "results.jsonl"
    argv = ["transcribe", str(recording.video), "--model", str(model_dir), "--output", str(output), "--batch-size", "4"]
    assert main([*argv, "--subtitles", "srt", "--subtitles", "vtt"]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    segment_records, (final,) = records[:-1], records[-1:]
    assert [record["chunk"] for record in segment_records] == final["chunks"]
    assert_chunks_in_order(final["chunks"], recording.seconds)
    assert capsys.readouterr().out.strip() == final["text"]
    cues = [chunk for chunk in final["chunks"] if chunk["text"]]
    for subtitle_format in ("srt", "vtt"):
        path = tmp_path / f"recording.{subtitle_format}"
        parsed = pysubs2.load(str(path), format_=subtitle_format)
        assert [event.text for event in parsed] == [chunk["text"] for chunk in cues]
        assert [(event.start, event.end) for event in parsed] == [
            (round(chunk["timestamp"][0] * 1000), round(chunk["timestamp"][1] * 1000)) for chunk in cues
        ]
    first_line = (tmp_path / "recording.srt").read_text().splitlines()[:2]
    assert first_line[0] == "1" and " --> " in first_line[1] and "," in first_line[1]
    assert (tmp_path / "recording.vtt").read_text().startswith("WEBVTT")


def test_an_interrupted_long_file_resumes_at_its_last_finished_segment(
    recording, model_dir, model_and_processor, tmp_path, monkeypatch
):
    output = tmp_path / "results.jsonl"
    argv = ["transcribe", str(recording.paired), "--model", str(model_dir), "--output", str(output)]
    assert main(argv) == 0
    complete = [json.loads(line) for line in output.read_text().splitlines()]
    final = complete[-1]
    # The run stopped after 7 segments: their lines were written, the file's own line was not.
    interrupted = tmp_path / "interrupted.jsonl"
    interrupted.write_text("".join(json.dumps(record) + "\n" for record in complete[:7]))
    decoded = []
    real_generate = AudioVisualSpeechRecognitionPipeline._forward

    def counting_forward(self, model_inputs, **kwargs):
        decoded.extend(model_inputs["segment"] if isinstance(model_inputs["task"], list) else [model_inputs["segment"]])
        return real_generate(self, model_inputs, **kwargs)

    monkeypatch.setattr(AudioVisualSpeechRecognitionPipeline, "_forward", counting_forward)
    argv[-1] = str(interrupted)
    assert main(argv) == 0
    resumed = [json.loads(line) for line in interrupted.read_text().splitlines()]
    assert resumed[:7] == complete[:7] and resumed[-1] == final
    assert len(decoded) == len(final["chunks"]) - 7
    assert {chunk_key(segment) for segment in decoded}.isdisjoint(
        {chunk_key(record["chunk"]["timestamp"]) for record in complete[:7]}
    )


def test_bad_long_files_end_in_one_line_and_keep_earlier_results(recording, model_dir, tmp_path, capsys):
    """The robustness table's bad files through the long-form path: each costs only its own result."""
    output = tmp_path / "results.jsonl"
    assert main(["transcribe", str(recording.video), "--model", str(model_dir), "--output", str(output)]) == 0
    kept = output.read_text()
    data = recording.video.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_audio = write_mouth_video(tmp_path / "no_audio.mp4", np.zeros((800, 96, 96, 3), np.uint8))
    faceless = write_mouth_video(tmp_path / "faceless.mp4", np.full((800, 160, 160, 3), 128, np.uint8))
    cases = {
        str(truncated): ["--task", "avsr", "--subtitles", "srt"],
        str(empty): ["--subtitles", "srt"],
        str(no_audio): ["--task", "asr", "--subtitles", "srt"],
        str(faceless): ["--task", "vsr", "--subtitles", "srt"],
        str(tmp_path): ["--subtitles", "srt"],
    }
    capsys.readouterr()
    for path, options in cases.items():
        status = main(["transcribe", path, "--model", str(model_dir), "--output", str(output), *options])
        err = capsys.readouterr().err.strip().splitlines()
        assert status != 0 and len(err) == 1 and "Traceback" not in err[0], (path, err)
        assert path in err[0] or Path(path).name in err[0]
        assert output.read_text().startswith(kept)


def test_a_stretch_without_a_face_is_transcribed_from_the_audio_and_noted(real_clip_path, transcriber, tmp_path):
    pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")
    clip = load_clip(real_clip_path, grayscale=False, crop_mouth=False)
    blank = np.full_like(clip.frames, 128)
    frames = np.concatenate([clip.frames, blank, clip.frames])
    audio = np.concatenate([clip.audio] * 3)
    video = write_mouth_video(tmp_path / "faces.mp4", frames, audio)
    result = transcriber(str(video), task="avsr", return_timestamps=True, chunk_length_s=4)
    noted = [chunk for chunk in result["chunks"] if "note" in chunk]
    assert noted and all("no face" in chunk["note"] and "(asr)" in chunk["note"] for chunk in noted)
    start, end = len(clip.frames) / VIDEO_FPS, 2 * len(clip.frames) / VIDEO_FPS
    for chunk in noted:  # a chunk is noted when most of its frames have no face: most of it lies in the blank stretch
        first, last = chunk["timestamp"]
        assert min(last, end) - max(first, start) >= (last - first) / 2 - 0.2, (chunk, start, end)
    assert len(noted) < len(result["chunks"])
    lip_reading = transcriber(str(video), task="vsr", return_timestamps=True, chunk_length_s=4)
    assert all(chunk["text"] == "" for chunk in lip_reading["chunks"] if "note" in chunk)


def test_undecodable_packets_cost_only_their_stretch(recording, transcriber, tmp_path):
    """Bytes damaged in the middle of the file: those video packets are skipped (the last frame held), the chunks
    they fall in say where, and every segment is still transcribed."""
    data = bytearray(recording.video.read_bytes())
    rng = np.random.default_rng(0)
    for offset in range(int(len(data) * 0.45), int(len(data) * 0.55), 997):
        data[offset : offset + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    result = transcriber(str(damaged), task="avsr", return_timestamps=True)
    intact = transcriber(str(recording.video), task="avsr", return_timestamps=True)
    assert [chunk["timestamp"] for chunk in result["chunks"]] == [chunk["timestamp"] for chunk in intact["chunks"]]
    noted = [chunk for chunk in result["chunks"] if "note" in chunk]
    assert noted and all(chunk["note"].startswith("undecodable video (the last frame held) from") for chunk in noted)
    assert len(noted) < len(result["chunks"]) / 2


def test_demo_model_reads_a_long_recording_as_well_as_its_clips(recording):
    """With the demo's trained model (after `make demo`): the long-form WER is within 1.25× + 2 points of the same
    clips decoded one by one, for every task (lip reading is the one that suffers when a cut loses visemes)."""
    folder = Path(__file__).resolve().parents[1] / "outputs" / "demo" / "omni_avsr_st"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"the demo's model is not at {folder}: run `make demo` first")
    import jiwer
    from transformers import pipeline

    recognizer = pipeline("audio-visual-speech-recognition", model=str(folder), batch_size=8)
    reference = " ".join(recording.texts)
    for task in ("asr", "vsr", "avsr"):
        for path in (recording.video, recording.paired):
            long_form = recognizer(str(path), task=task)["text"]
            clips = " ".join(output["text"] for output in recognizer(recording.clips, task=task))
            long_wer, clips_wer = 100 * jiwer.wer(reference, long_form), 100 * jiwer.wer(reference, clips)
            assert long_wer <= 1.25 * clips_wer + 2, (task, path.name, long_wer, clips_wer)


def test_chunk_keys_round_to_the_millisecond():
    assert chunk_key((1.2344, 3.0)) == chunk_key([1.2341, 3.0004]) == (1.234, 3.0)
