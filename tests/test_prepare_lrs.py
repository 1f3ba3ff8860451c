"""`python -m omni_avsr.data.prepare_lrs` on a small raw LRS3-style tree made from the real clip: mouth clips, 16 kHz
wavs and labels that `load_lrs_dataset` reads; a long clip cut at word boundaries; failures listed, not raised;
an interrupted run resumed without redoing finished clips."""

import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from omni_avsr import load_clip
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.data.prepare_lrs import ClipFailure, PrepareConfig, Transcript, plan_segments, read_transcript


pytest.importorskip("dlib", reason="the crop extra (pip install 'omni-avsr[crop]') is not installed")

WORDS = "so the idea is we were going to take pictures of things".split()
LABELS = "labels/lrs3_test_transcript_lengths_seg16s.csv"


def transcript_text(words, start, step):
    timings = [
        f"{word.upper()} {start + i * step:.2f} {start + i * step + 0.8 * step:.2f} 3.5" for i, word in enumerate(words)
    ]
    return f"Text:  {' '.join(words).upper()}\nConf:  4\n\nWORD START END ASDSCORE\n" + "\n".join(timings) + "\n"


def write_face_video(path, frames, audio):
    """An LRS3-style face track: H.264 video with the audio in the container (AAC, 16 kHz)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        for start in range(0, len(audio), 1024):
            chunk = av.AudioFrame.from_ndarray(audio[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))


@pytest.fixture(scope="module")
def raw_tree(real_clip_path, tmp_path_factory):
    """test/spk1: 00001 (the real clip, 6.2 s), 00002 (it three times, 18.6 s: two segments), 00003 (not a video),
    00004 (no transcript)."""
    root = tmp_path_factory.mktemp("raw_lrs3")
    speaker = root / "test" / "spk1"
    speaker.mkdir(parents=True)
    clip = load_clip(real_clip_path, grayscale=False, crop_mouth=False)
    (speaker / "00001.mp4").write_bytes(real_clip_path.read_bytes())
    (speaker / "00001.txt").write_text(transcript_text(WORDS, 0.3, 0.5))
    write_face_video(speaker / "00002.mp4", np.concatenate([clip.frames] * 3), np.tile(clip.audio, 3))
    (speaker / "00002.txt").write_text(transcript_text((WORDS * 4)[:40], 0.2, 0.45))
    (speaker / "00003.mp4").write_bytes(b"\x00not a video" * 100)
    (speaker / "00003.txt").write_text("Text:  BROKEN\n")
    (speaker / "00004.mp4").write_bytes(real_clip_path.read_bytes())
    return root


def run_prepare(raw_tree, output, *extra):
    command = [sys.executable, "-m", "omni_avsr.data.prepare_lrs", "--data-dir", str(raw_tree), "--output-dir",
               str(output), "--dataset", "lrs3", "--subset", "test", "--no-progress", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_transcripts_and_segments():
    transcript = Transcript("a b c", (("A", 0.5, 6.0), ("B", 6.0, 15.0), ("C", 15.2, 20.0)))
    segments = plan_segments(transcript, num_frames=550, seg_duration=16)
    assert [(s.start, s.end, s.text) for s in segments] == [(12, 375, "a b"), (380, 500, "c")]
    assert [(s.start, s.end, s.text) for s in plan_segments(transcript, 400, 16)] == [(0, 400, "a b c")]
    with pytest.raises(ClipFailure, match="no word timings"):
        plan_segments(Transcript("x", ()), num_frames=401, seg_duration=16)
    with pytest.raises(ValueError, match="--subset must be a plain name"):
        PrepareConfig("lrs3", "../x")


def test_transcript_file_format(tmp_path):
    path = tmp_path / "clip.txt"
    timings = "WORD START END ASDSCORE\nHELLO 0.10 0.40 2.1\nWORLD 0.50 0.90 1.0\n"
    path.write_text(f"Text:  HELLO {{LG}} WORLD\nConf:  3\n\n{timings}")
    assert read_transcript(path) == Transcript("hello lg world", (("HELLO", 0.1, 0.4), ("WORLD", 0.5, 0.9)))
    path.write_text("Conf: 3\n")
    with pytest.raises(ClipFailure, match="does not start with 'Text:'"):
        read_transcript(path)
    with pytest.raises(ClipFailure, match="no transcript: missing.txt is missing"):
        read_transcript(tmp_path / "missing.txt")


def test_prepare_writes_loadable_labels_resumes_and_lists_failures(raw_tree, tmp_path):
    output = tmp_path / "LRS3"
    # Interrupted: stopped (SIGKILL, no clean-up) as soon as the first clip is recorded as finished.
    interrupted = run_prepare(raw_tree, output, "--workers", "1")
    progress = output / "lrs3_test_seg16s_progress.jsonl"
    deadline = time.monotonic() + 300
    while not (progress.is_file() and progress.read_text().count("\n") >= 1) and interrupted.poll() is None:
        assert time.monotonic() < deadline, "the first clip took over 300 s"
        time.sleep(0.1)
    os.kill(interrupted.pid, signal.SIGKILL)
    interrupted.wait()
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    finished = [record for record in records if record["status"] == "done"]
    assert finished, "the first clip (00001) is done when the run is stopped"
    finished_mp4 = [output / "lrs3" / row[1] for record in finished for row in record["rows"]]
    finished_mp4 = {path: path.stat().st_mtime_ns for path in finished_mp4}

    resumed = run_prepare(raw_tree, output, "--workers", "2")
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["skipped_finished"] == len(finished) and summary["clips"] == 4 and summary["label_rows"] == 3
    for path, mtime in finished_mp4.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"

    failures = (output / "lrs3_test_seg16s_failures.tsv").read_text().splitlines()
    assert failures[0] == "file\treason" and len(failures) == 3
    reasons = dict(line.split("\t") for line in failures[1:])
    assert reasons[str(raw_tree / "test/spk1/00003.mp4")].startswith("unreadable: Could not decode video")
    assert reasons[str(raw_tree / "test/spk1/00004.mp4")] == "no transcript: 00004.txt is missing beside the video"

    dataset = load_lrs_dataset(output, output / LABELS)
    plain = dataset.with_format(None)
    assert plain["rel_path"] == [
        "lrs3_video_seg16s/test/spk1/00001.mp4",
        "lrs3_video_seg16s/test/spk1/00002_00.mp4",
        "lrs3_video_seg16s/test/spk1/00002_01.mp4",
    ]
    assert plain["text"][0] == " ".join(WORDS)
    # 40 words every 0.45 s from 0.2 s: the first segment holds the words that end within 16 s of the first start.
    assert plain["text"][1] == " ".join((WORDS * 4)[:35]) and plain["text"][2] == " ".join((WORDS * 4)[35:40])
    assert plain["num_frames"] == [155, 392, 55]
    for row in dataset:
        assert row["frames"].shape == (row["num_frames"], 96, 96) and row["audio"].shape == (row["num_frames"] * 640,)
    whole = load_clip(output / "lrs3" / plain["rel_path"][0], grayscale=False)
    segment = load_clip(output / "lrs3" / plain["rel_path"][1], grayscale=False)
    # The segment starts at 0.2 s, frame 5 of the clip: there its frames match the whole clip's best.
    differences = [
        np.abs(segment.frames[:140].astype(int) - whole.frames[shift : shift + 140]).mean() for shift in range(11)
    ]
    assert int(np.argmin(differences)) == 5

    again = run_prepare(raw_tree, output)
    stdout, _ = again.communicate(timeout=600)
    assert json.loads(stdout)["skipped_finished"] == 2 and json.loads(stdout)["failed"] == 2
