"""OmniAVSRProcessor and the data collator: model inputs from raw arrays, files and dataset rows; bad input."""

import csv
import shutil
import warnings

import numpy as np
import pytest
import torch
from tiny_models import tiny_processor

from omni_avsr import OmniAVSRProcessor, load_clip
from omni_avsr.data.augment import AudioVisualAugmentation
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.feature_extraction_omni_avsr import log_mel_features
from omni_avsr.media import MOUTH_CROP_SIZE, _to_grayscale


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def _clip(seconds=1.0, size=96, seed=0):
    rng = np.random.default_rng(seed)
    frames = int(seconds * 25)
    return rng.standard_normal(frames * 640).astype(np.float32), rng.integers(0, 256, (frames, size, size), dtype=np.uint8)


def test_outputs_shapes_masks_and_labels(processor):
    (audio0, video0), (audio1, video1) = _clip(1.0), _clip(0.6, seed=1)
    batch = processor(audio=[audio0, audio1], videos=[video0, video1], text=["set blue", "bin"], sampling_rate=16000)
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["input_features_mask"].sum(-1).tolist() == [100, 60]
    assert batch["pixel_values_videos"].shape == (2, 25, 1, 88, 88)
    assert batch["video_mask"].sum(-1).tolist() == [25, 15]
    assert torch.all(batch["pixel_values_videos"][1, 15:] == 0), "videos are zero-padded in normalised space"
    eos = processor.tokenizer.eos_token_id
    labels = batch["labels"]
    assert labels[0, :9].tolist() == processor.tokenizer("set blue", add_special_tokens=False)["input_ids"] + [eos]
    assert labels[1, 4:].tolist() == [-100] * (labels.shape[1] - 4)
    assert processor.decode_transcripts([labels[1, :4].tolist()]) == ["bin"]
    assert processor.batch_decode([labels[1, :4].tolist()]) == processor.tokenizer.batch_decode([labels[1, :4].tolist()])


def test_video_preprocessing_is_centre_crop_grayscale_and_normalisation(processor):
    frames = np.zeros((3, 96, 96, 3), dtype=np.uint8)
    frames[:, 4:92, 4:92] = (255, 0, 0)
    pixels = processor(videos=[frames], sampling_rate=16000)["pixel_values_videos"]
    expected = (0.2989 - processor.video_mean) / processor.video_std
    torch.testing.assert_close(pixels[0, :, 0], torch.full((3, 88, 88), expected))


def test_lip_crop_and_grayscale_have_one_home(processor):
    """The processor's crop and training's random crop are media's `MOUTH_CROP_SIZE`; an RGB clip given to the
    processor and the same clip read from a file (media's grayscale conversion) are one clip to the model."""
    assert processor.video_crop_size == AudioVisualAugmentation().crop_size == MOUTH_CROP_SIZE
    rgb = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    from_rgb = processor(videos=[rgb])["pixel_values_videos"]
    from_gray = processor(videos=[_to_grayscale(rgb.astype(np.float32))])["pixel_values_videos"]
    # media rounds its grayscale to uint8: half a level apart at most (and float32's error)
    torch.testing.assert_close(from_rgb, from_gray, atol=0.501 / 255 / processor.video_std, rtol=0)


def test_waveform_normalisation_matches_the_reference_layer_norm(processor):
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 3 + 1
    ours = processor(audio=[audio], sampling_rate=16000)["input_features"]
    reference = torch.nn.functional.layer_norm(torch.from_numpy(audio)[:, None], (16000, 1), eps=1e-8)[:, 0].numpy()
    expected = processor.feature_extractor([reference], sampling_rate=16000, return_tensors="pt")["input_features"]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_save_and_reload(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    reloaded = OmniAVSRProcessor.from_pretrained(tmp_path)
    audio, video = _clip()
    a = processor(audio=[audio], videos=[video], text=["set"], sampling_rate=16000)
    b = reloaded(audio=[audio], videos=[video], text=["set"], sampling_rate=16000)
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    assert reloaded.tokenizer.convert_tokens_to_ids("<video>") == processor.tokenizer.convert_tokens_to_ids("<video>")


def test_audio_bad_input(processor):
    audio, _ = _clip()
    with pytest.raises(ValueError, match="sampling_rate` is required"):
        processor(audio=[audio])
    with pytest.raises(ValueError, match="at 8000 Hz but Omni-AVSR expects 16000 Hz"):
        processor(audio=[audio], sampling_rate=8000)
    resampled = processor(audio=[audio[:8000]], sampling_rate=8000, resample=True)
    assert resampled["input_features_mask"].sum() == 100
    with pytest.raises(ValueError, match=r"audio\[0\] is empty"):
        processor(audio=[np.zeros(0, np.float32)], sampling_rate=16000)
    with pytest.raises(ValueError, match=r"audio\[0\] lasts 31.00 s; Omni-AVSR transcribes clips of up to 30 s"):
        processor(audio=[np.zeros(31 * 16000, np.float32)], sampling_rate=16000)
    with pytest.raises(ValueError, match="at most 8 channels"):
        processor(audio=[np.zeros((16, 16000), np.float32)], sampling_rate=16000)


def test_stereo_audio_is_downmixed(processor):
    left = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    stereo_first = processor(audio=[np.stack([left, left])], sampling_rate=16000)["input_features"]
    stereo_last = processor(audio=[np.stack([left, left], axis=1)], sampling_rate=16000)["input_features"]
    mono = processor(audio=[left], sampling_rate=16000)["input_features"]
    torch.testing.assert_close(stereo_first, mono)
    torch.testing.assert_close(stereo_last, mono)


def test_video_bad_input(processor):
    _, video = _clip()
    with pytest.raises(ValueError, match=r"frames are 64×64; expected mouth crops of at least 88×88"):
        processor(videos=[video[:, :64, :64]])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        processor(videos=[np.zeros((5, 96, 96, 2), np.uint8)])
    # Channels-first frames (torchcodec's layout) read as the same clip.
    colour = np.random.default_rng(1).integers(0, 256, (video.shape[0], 96, 96, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        processor(videos=[colour.transpose(0, 3, 1, 2)])["pixel_values_videos"],
        processor(videos=[colour])["pixel_values_videos"],
    )
    with pytest.raises(ValueError, match=r"videos\[0\] has no frames"):
        processor(videos=[np.zeros((0, 96, 96), np.uint8)])
    with pytest.raises(ValueError, match="expected uint8"):
        processor(videos=[video.astype(np.float32)])


def test_batch_sizes_must_agree(processor):
    audio, video = _clip()
    with pytest.raises(ValueError, match="Batch sizes disagree"):
        processor(audio=[audio, audio], videos=[video], sampling_rate=16000)


def test_audio_is_aligned_to_the_video_with_a_warning_past_one_second(processor):
    audio, video = _clip(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = processor(audio=[audio[:12000]], videos=[video], sampling_rate=16000)
    assert short["input_features_mask"].sum() == 100, "padded to 25 frames × 640 samples"
    with pytest.warns(UserWarning, match="audio lasts 3.00 s but video lasts 1.00 s"):
        long = processor(audio=[np.tile(audio, 3)], videos=[video], sampling_rate=16000)
    assert long["input_features_mask"].sum() == 100


def test_collator_batch_from_the_real_clip_equals_the_processor(processor, real_clip_path, tmp_path):
    """The dataset → collator path gives exactly what the processor gives for the same decoded clip."""
    dataset_dir = tmp_path / "lrs3"
    (dataset_dir / "test" / "spk").mkdir(parents=True)
    shutil.copyfile(real_clip_path, dataset_dir / "test" / "spk" / "clip.mp4")
    (tmp_path / "labels").mkdir()
    with open(tmp_path / "labels" / "test.csv", "w", newline="") as file:
        csv.writer(file).writerow(["lrs3", "test/spk/clip.mp4", 155, "1 2 3", "so, it's a test, isn't it"])
    dataset = load_lrs_dataset(tmp_path, "test.csv")
    row = dataset[0]
    assert row["text"] == "so, it's a test, isn't it"
    assert row["frames"].shape == (155, 96, 96) and row["audio"].shape == (99200,)
    batch = OmniAVSRDataCollator(processor)([row])
    clip = load_clip(real_clip_path)
    expected = processor(audio=[clip.audio], videos=[clip.frames], text=[row["text"]], sampling_rate=16000)
    assert set(batch) == set(expected) == {"input_features", "input_features_mask", "pixel_values_videos", "video_mask", "labels"}
    for name in expected:
        torch.testing.assert_close(batch[name], expected[name], rtol=0, atol=0)
    assert batch["video_mask"].sum() == 155 and batch["input_features_mask"].sum() == 620


def test_collator_refuses_mixed_modalities(processor):
    audio, video = _clip()
    collator = OmniAVSRDataCollator(processor)
    with pytest.raises(ValueError, match="Some rows of the batch have frames"):
        collator([{"audio": audio, "frames": video, "text": "a"}, {"audio": audio, "frames": None, "text": "b"}])
    audio_only = collator([{"audio": audio, "frames": None, "text": "a"}])
    assert "pixel_values_videos" not in audio_only and "input_features" in audio_only


@pytest.mark.parametrize("num_samples", [1, 400, 1123, 19200, 32001, 479601, 480000])
def test_span_only_log_mel_equals_the_full_window_extractor(processor, num_samples):
    waveform = (np.random.default_rng(num_samples).standard_normal(num_samples) * 0.3).astype(np.float32)
    features, mask = log_mel_features(processor.feature_extractor, [waveform])
    reference = processor.feature_extractor(
        [waveform], sampling_rate=16000, return_attention_mask=True, padding="max_length", return_tensors="np"
    )
    np.testing.assert_allclose(features, reference["input_features"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mask, reference["attention_mask"])
