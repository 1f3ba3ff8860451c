import sys
import warnings

import av
import numpy as np
import pytest
import soundfile

from omni_avsr.media import SAMPLES_PER_FRAME, SAMPLING_RATE, load_audio, load_clip


def frame_level(index: int) -> int:
    """The uniform grey level of generated frame `index`: far enough apart to identify frames after H.264."""
    return (index * 5) % 250


def sine(seconds: float, rate: int = SAMPLING_RATE, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def write_video(path, num_frames=50, fps=25, size=96, audio=None, audio_rate=SAMPLING_RATE):
    """Write an H.264 clip of uniform grey frames (see `frame_level`), with `audio` (channels, samples) as AAC."""
    with av.open(str(path), "w") as container:
        video_stream = container.add_stream("libx264", rate=fps)
        video_stream.width = video_stream.height = size
        video_stream.pix_fmt = "yuv420p"
        video_stream.options = {"preset": "ultrafast"}
        audio_stream = add_audio_stream(container, audio, audio_rate) if audio is not None else None
        for index in range(num_frames):
            image = np.full((size, size, 3), frame_level(index), dtype=np.uint8)
            container.mux(video_stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video_stream.encode())
        if audio_stream is not None:
            write_audio(container, audio_stream, np.atleast_2d(audio), audio_rate)
    return path


def add_audio_stream(container, audio, rate):
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "stereo" if len(np.atleast_2d(audio)) == 2 else "mono"
    return stream


def write_audio(container, stream, audio, rate):
    for start in range(0, audio.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio[:, start : start + 1024]), format="fltp", layout=stream.layout.name
        )
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_clip(directory, name="clip", num_frames=50, fps=25, size=96, audio_seconds=None):
    """An LRS-style pair: `<name>.mp4` plus a sibling 16 kHz `<name>.wav` as long as the video by default."""
    video_path = write_video(directory / f"{name}.mp4", num_frames=num_frames, fps=fps, size=size)
    seconds = num_frames / fps if audio_seconds is None else audio_seconds
    soundfile.write(directory / f"{name}.wav", sine(seconds), SAMPLING_RATE)
    return video_path


def test_real_clip_decodes_to_25_fps_grayscale_and_aligned_audio(real_clip_path):
    clip = load_clip(real_clip_path, crop_mouth=False)
    assert clip.frames.shape == (155, 224, 224) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (155 * SAMPLES_PER_FRAME,) == (99_200,) and clip.audio.dtype == np.float32
    assert (clip.fps, clip.sampling_rate, clip.path) == (25.0, 16000, str(real_clip_path))
    assert np.abs(clip.audio).max() > 0.01

    rgb = load_clip(real_clip_path, audio=False, grayscale=False, crop_mouth=False).frames
    assert rgb.shape == (155, 224, 224, 3)
    luma = rgb.astype(np.float32) @ np.array([0.2989, 0.587, 0.114], dtype=np.float32)
    assert np.abs(luma - clip.frames).max() <= 0.5 + 1e-3


def test_sibling_wav_is_the_audio_and_frames_keep_their_content(tmp_path):
    video_path = write_clip(tmp_path, num_frames=50)
    clip = load_clip(video_path)
    assert clip.frames.shape == (50, 96, 96)
    assert [round(level) for level in clip.frames.mean(axis=(1, 2))] == pytest.approx(
        [frame_level(i) for i in range(50)], abs=2
    )
    np.testing.assert_array_equal(clip.audio, soundfile.read(tmp_path / "clip.wav", dtype="float32")[0])
    np.testing.assert_array_equal(load_audio(video_path), clip.audio)


def test_container_audio_is_used_without_a_sibling_wav_and_aligned(tmp_path):
    video_path = write_video(tmp_path / "clip.mp4", num_frames=50, audio=sine(2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = load_clip(video_path)
    assert clip.audio.shape == (50 * SAMPLES_PER_FRAME,)
    assert np.sqrt(np.mean(clip.audio[4000:28000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_other_frame_rates_are_resampled_to_25_fps(tmp_path):
    video_path = write_video(tmp_path / "clip30.mp4", num_frames=45, fps=30)
    clip = load_clip(video_path, audio=False)
    assert clip.fps == 25.0
    assert clip.frames.shape[0] == 38  # 1.5 s at 25 fps, rounded
    shown = [int(np.floor(i * 30 / 25 + 1e-6)) for i in range(38)]
    assert clip.frames.mean(axis=(1, 2)) == pytest.approx([frame_level(i) for i in shown], abs=2)


@pytest.mark.parametrize("rate", [44_100, 8_000])
def test_stereo_audio_is_downmixed_and_resampled_to_16_khz(tmp_path, rate):
    left = sine(2.0, rate=rate, amplitude=0.6)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1), rate)
    audio = load_audio(tmp_path / "stereo.wav")
    assert audio.dtype == np.float32
    assert len(audio) == pytest.approx(2 * SAMPLING_RATE, abs=2)
    assert np.sqrt(np.mean(audio[1000:-1000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SAMPLING_RATE / len(audio) == pytest.approx(440, abs=1)


def test_stereo_44_khz_container_audio_is_downmixed_and_resampled(tmp_path):
    left = sine(2.0, rate=44_100, amplitude=0.6)
    video_path = write_video(tmp_path / "clip.mp4", audio=np.stack([left, left]), audio_rate=44_100)
    clip = load_clip(video_path)
    assert clip.audio.shape == (50 * SAMPLES_PER_FRAME,)
    assert np.sqrt(np.mean(clip.audio[4000:28000] ** 2)) == pytest.approx(0.6 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("audio_seconds", [5.0, 0.5])
def test_audio_of_another_length_is_aligned_with_a_warning(tmp_path, audio_seconds):
    video_path = write_clip(tmp_path, num_frames=50, audio_seconds=audio_seconds)
    with pytest.warns(UserWarning, match=rf"clip\.mp4: audio lasts {audio_seconds:.2f} s but video lasts 2\.00 s"):
        clip = load_clip(video_path)
    assert clip.audio.shape == (50 * SAMPLES_PER_FRAME,)
    if audio_seconds < 2.0:
        assert not clip.audio[round(audio_seconds * SAMPLING_RATE) :].any()


def test_small_length_difference_is_aligned_silently(tmp_path):
    video_path = write_clip(tmp_path, num_frames=50, audio_seconds=2.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = load_clip(video_path)
    np.testing.assert_allclose(clip.audio, sine(2.6)[: 50 * SAMPLES_PER_FRAME], atol=1e-4)  # 16-bit wav


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_audio_files_load_without_frames(tmp_path, suffix):
    soundfile.write(tmp_path / f"speech{suffix}", sine(1.0), SAMPLING_RATE)
    clip = load_clip(tmp_path / f"speech{suffix}")
    assert clip.frames is None and clip.fps is None
    np.testing.assert_allclose(clip.audio, sine(1.0), atol=1e-4)


def test_modalities_can_be_skipped(tmp_path):
    video_path = write_clip(tmp_path, num_frames=50, audio_seconds=3.0)
    audio_only = load_clip(video_path, video=False)
    assert audio_only.frames is None and len(audio_only.audio) == 3 * SAMPLING_RATE  # not aligned: no frames
    video_only = load_clip(video_path, audio=False)
    assert video_only.audio is None and video_only.frames.shape == (50, 96, 96)
    with pytest.raises(ValueError, match="both audio and video are disabled"):
        load_clip(video_path, audio=False, video=False)


def test_pyav_decodes_when_decord_is_unavailable(tmp_path, monkeypatch):
    video_path = write_clip(tmp_path, num_frames=30)
    with_decord = load_clip(video_path, audio=False, grayscale=False).frames
    monkeypatch.setitem(sys.modules, "decord", None)
    with_pyav = load_clip(video_path, audio=False, grayscale=False).frames
    np.testing.assert_array_equal(with_pyav, with_decord)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        load_clip(tmp_path / "nowhere.mp4")
    with pytest.raises(FileNotFoundError, match="nowhere.wav"):
        load_audio(tmp_path / "nowhere.wav")


@pytest.mark.parametrize("name", ["corrupt.mp4", "corrupt.wav"])
def test_corrupt_file_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=rf"Could not decode (video|audio) from .*{name}"):
        load_clip(tmp_path / name)


def test_video_without_frames_is_refused(tmp_path):
    with av.open(str(tmp_path / "silent.mp4"), "w") as container:
        audio = np.atleast_2d(sine(1.0))
        write_audio(container, add_audio_stream(container, audio, SAMPLING_RATE), audio, SAMPLING_RATE)
    with pytest.raises(ValueError, match="silent.mp4 contains no video frames"):
        load_clip(tmp_path / "silent.mp4")


def test_video_without_any_audio_says_how_to_load_it(tmp_path):
    video_path = write_video(tmp_path / "mute.mp4", num_frames=10)
    with pytest.raises(ValueError, match="mute.mp4 has no audio stream and no sibling .wav.*audio=False"):
        load_clip(video_path)
    assert load_clip(video_path, audio=False).frames.shape == (10, 96, 96)
