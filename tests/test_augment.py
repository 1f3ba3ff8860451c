import numpy as np
import pytest
import soundfile

from omni_avsr.data.augment import (
    DEFAULT_SNR_LEVELS,
    AudioVisualAugmentation,
    add_noise,
    noise_segment,
    random_crop,
    time_mask,
)


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    added = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean**2) / np.mean(added**2))


def zero_spans(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of zeros along the first axis."""
    is_zero = ~values.reshape(len(values), -1).any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_zero.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


@pytest.fixture
def speech():
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal(48_000) * np.sin(np.linspace(0, 20, 48_000))).astype(np.float32)


@pytest.fixture
def babble():
    return (0.3 * np.random.default_rng(2).standard_normal(100_000)).astype(np.float32)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
def test_add_noise_hits_the_snr_exactly(speech, babble, snr_db):
    noisy = add_noise(speech, babble, snr_db, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    assert measured_snr_db(speech, noisy) == pytest.approx(snr_db, abs=1e-3)


def test_add_noise_loops_a_short_noise_and_still_hits_the_snr(speech, babble):
    short_noise = babble[:5000]
    noisy = add_noise(speech, short_noise, 5.0, np.random.default_rng(0))
    assert measured_snr_db(speech, noisy) == pytest.approx(5.0, abs=1e-3)
    added = noisy.astype(np.float64) - speech
    np.testing.assert_allclose(added[:5000], added[5000:10000], atol=1e-5)


def test_add_noise_is_reproducible_and_leaves_clean_or_silent_audio_alone(speech, babble):
    first = add_noise(speech, babble, 0.0, np.random.default_rng(3))
    np.testing.assert_array_equal(first, add_noise(speech, babble, 0.0, 3))
    assert not np.array_equal(first, add_noise(speech, babble, 0.0, 4))
    np.testing.assert_array_equal(add_noise(speech, babble, None, 0), speech)
    silence = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(add_noise(silence, babble, 0.0, 0), silence)


def test_silent_noise_is_refused(speech):
    with pytest.raises(ValueError, match="silent"):
        add_noise(speech, np.zeros(100_000, dtype=np.float32), 5.0, 0)


def test_noise_segment_is_a_stretch_of_the_recording(babble):
    segment = noise_segment(babble, 1000, np.random.default_rng(5))
    start = int(np.flatnonzero(babble == segment[0])[0])
    np.testing.assert_array_equal(segment, babble[start : start + 1000])
    looped = noise_segment(babble[:300], 1000, 5)
    np.testing.assert_array_equal(looped[:700], looped[300:])


def test_time_mask_zeroes_short_spans_per_second_and_is_reproducible():
    audio = np.ones(16_000 * 4, dtype=np.float32)
    masked = time_mask(audio, window=6400, stride=16_000, rng=7)
    assert audio.all()
    np.testing.assert_array_equal(masked, time_mask(audio, 6400, 16_000, np.random.default_rng(7)))
    spans = zero_spans(masked)
    assert 0 < len(spans) <= 4
    assert (~masked.astype(bool)).sum() <= 4 * 6399


def test_video_time_mask_masks_up_to_nine_frames_per_second():
    frames = np.full((100, 4, 4), 200, dtype=np.uint8)
    span_lengths = []
    for seed in range(200):
        masked = time_mask(frames, window=10, stride=25, rng=seed)
        assert masked.dtype == np.uint8
        span_lengths += [end - start for start, end in zero_spans(masked)]
    assert max(span_lengths) <= 4 * 9  # four spans for 100 frames, each under 10 frames, may touch
    assert np.mean(span_lengths) == pytest.approx(5.0, abs=1.0)
    np.testing.assert_array_equal(time_mask(frames, window=0, stride=25, rng=0), frames)


def test_random_crop_takes_one_window_for_all_frames():
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 96, 96, 3), dtype=np.uint8)
    cropped = random_crop(frames, 88, rng=11)
    assert cropped.shape == (5, 88, 88, 3)
    rng = np.random.default_rng(11)
    top, left = rng.integers(0, 9), rng.integers(0, 9)
    np.testing.assert_array_equal(cropped, frames[:, top : top + 88, left : left + 88])
    assert random_crop(frames[..., 0], 88, rng=11).shape == (5, 88, 88)
    with pytest.raises(ValueError, match="Cannot crop 88×88 from frames of 64×96"):
        random_crop(frames[:, :64], 88, rng=0)


def test_augmentation_reproduces_the_reference_pipeline(tmp_path, speech, babble):
    soundfile.write(tmp_path / "babble.wav", babble, 16_000)
    augmentation = AudioVisualAugmentation(tmp_path / "babble.wav")
    assert augmentation.snr_levels == DEFAULT_SNR_LEVELS
    frames = np.full((50, 96, 96), 120, dtype=np.uint8)
    audio, cropped = augmentation(speech, frames, np.random.default_rng(0))
    assert audio.shape == speech.shape and cropped.shape == (50, 88, 88)
    again = augmentation(speech, frames, np.random.default_rng(0))
    np.testing.assert_array_equal(audio, again[0])
    np.testing.assert_array_equal(cropped, again[1])
    assert augmentation(None, frames, 0)[0] is None and augmentation(speech, None, 0)[1] is None


def test_noise_only_augmentation_adds_noise_at_the_fixed_snr_and_nothing_else(tmp_path, speech, babble):
    soundfile.write(tmp_path / "babble.flac", babble, 8_000)
    augmentation = AudioVisualAugmentation.noise_only(tmp_path / "babble.flac", snr_db=0.0)
    assert len(augmentation.noise) == 200_000  # resampled to 16 kHz
    frames = np.full((50, 96, 96), 120, dtype=np.uint8)
    audio, same_frames = augmentation(speech, frames, 0)
    np.testing.assert_array_equal(same_frames, frames)
    assert measured_snr_db(speech, audio) == pytest.approx(0.0, abs=1e-3)


def test_empty_snr_levels_are_refused():
    with pytest.raises(ValueError, match="snr_levels"):
        AudioVisualAugmentation(snr_levels=())
