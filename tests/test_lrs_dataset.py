import csv
import os

import numpy as np
import pytest
import torch
from test_media import write_clip

from omni_avsr.data import lrs
from omni_avsr.data.augment import AudioVisualAugmentation
from omni_avsr.data.lrs import load_lrs_dataset, set_augmentation_epoch
from omni_avsr.data.sampler import FrameBudgetBatchSampler
from omni_avsr.media import SAMPLES_PER_FRAME


CLIPS = {"spk1/00001": 30, "spk1/00002": 45, "spk2/00001": 20}


def make_corpus(root, dataset_name="mini_lrs", video_dir="mini_lrs_video", split="train"):
    """Clips and a label file in the auto-avsr layout; returns the label file's path."""
    lines = []
    for clip_id, num_frames in CLIPS.items():
        folder = root / dataset_name / video_dir / split / os.path.dirname(clip_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_clip(folder, os.path.basename(clip_id), num_frames=num_frames)
        lines.append(f"{dataset_name},{video_dir}/{split}/{clip_id}.mp4,{num_frames},12 7 99,text of {clip_id}")
    return write_labels(root / "labels" / f"{dataset_name}_{split}.csv", lines)


def write_labels(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


@pytest.mark.parametrize(
    "dataset_name, video_dir", [("mini_lrs", "mini_lrs_video"), ("lrs3", "lrs3_video_seg16s"), ("lrs2", "lrs2_video")]
)
def test_every_corpus_in_the_layout_reads_the_same_way(tmp_path, dataset_name, video_dir):
    label_csv = make_corpus(tmp_path, dataset_name, video_dir, split="test")
    dataset = load_lrs_dataset(tmp_path, label_csv.name)
    assert dataset.num_rows == 3
    assert dataset.column_names == ["path", "dataset_name", "rel_path", "num_frames", "text"]
    row = dataset[1]
    assert row["path"] == str(tmp_path.resolve() / dataset_name / video_dir / "test/spk1/00002.mp4")
    assert (row["dataset_name"], row["rel_path"]) == (dataset_name, f"{video_dir}/test/spk1/00002.mp4")
    assert (row["num_frames"], row["text"]) == (45, "text of spk1/00002")
    assert row["frames"].shape == (45, 96, 96) and row["frames"].dtype == np.uint8
    assert row["audio"].shape == (45 * SAMPLES_PER_FRAME,) and row["audio"].dtype == np.float32


def test_building_the_table_and_reading_columns_decode_nothing(corpus, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("media decoded eagerly")

    monkeypatch.setattr(lrs, "load_clip", refuse)
    dataset = load_lrs_dataset(*corpus)
    table = dataset.with_format(None)
    assert list(table["num_frames"]) == list(CLIPS.values())
    assert table[0]["rel_path"] == "mini_lrs_video/train/spk1/00001.mp4"
    assert list(FrameBudgetBatchSampler.from_dataset(dataset.select([2, 0]), max_frames=30).lengths) == [20, 30]


def test_audio_only_loading_skips_video(corpus):
    row = load_lrs_dataset(*corpus, modalities=("audio",))[0]
    assert row["frames"] is None
    assert row["audio"].shape == (30 * SAMPLES_PER_FRAME,)
    assert load_lrs_dataset(*corpus, modalities=("video",))[0]["audio"] is None
    with pytest.raises(ValueError, match="modalities"):
        load_lrs_dataset(*corpus, modalities=("text",))


def test_clip_length_caps_drop_clips(corpus):
    dataset = load_lrs_dataset(*corpus, min_clip_frames=25, max_clip_frames=40)
    assert list(dataset.with_format(None)["num_frames"]) == [30]
    with pytest.raises(ValueError, match="lists no clips within"):
        load_lrs_dataset(*corpus, max_clip_frames=10)


def test_training_augmentation_is_seeded_per_clip_and_epoch(corpus):
    dataset = load_lrs_dataset(*corpus, augmentation=AudioVisualAugmentation(), seed=5)
    first = dataset[0]
    assert first["frames"].shape == (30, 88, 88)
    np.testing.assert_array_equal(dataset[0]["frames"], first["frames"])
    np.testing.assert_array_equal(dataset[0:2]["frames"][0], first["frames"])  # independent of batching
    set_augmentation_epoch(dataset, 1)
    assert not np.array_equal(dataset[0]["audio"], first["audio"])
    set_augmentation_epoch(dataset, 0)
    np.testing.assert_array_equal(dataset[0]["audio"], first["audio"])


def test_dataloader_with_the_frame_budget_sampler_and_workers(corpus):
    dataset = load_lrs_dataset(*corpus, augmentation=AudioVisualAugmentation(), seed=0)
    sampler = FrameBudgetBatchSampler.from_dataset(dataset, max_frames=60, seed=0)

    def load(num_workers):
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=lambda rows: rows
        )
        return [row for batch in loader for row in batch]

    in_process, in_workers = load(0), load(2)
    assert sorted(row["rel_path"] for row in in_process) == sorted(dataset.with_format(None)["rel_path"])
    for row, same in zip(in_process, in_workers):
        np.testing.assert_array_equal(row["frames"], same["frames"])
        np.testing.assert_array_equal(row["audio"], same["audio"])


def test_quoted_text_with_commas_and_non_ascii_round_trips(corpus, tmp_path):
    root, _ = corpus
    texts = ['well, "quoted" — naïve café, 日本語', "plain text"]
    label_csv = tmp_path / "quoted.csv"
    with open(label_csv, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        for text, clip_id in zip(texts, CLIPS):
            writer.writerow(["mini_lrs", f"mini_lrs_video/train/{clip_id}.mp4", CLIPS[clip_id], "1 2", text])
    assert list(load_lrs_dataset(root, label_csv).with_format(None)["text"]) == texts


def test_unquoted_text_with_commas_is_joined_back(corpus, tmp_path):
    root, _ = corpus
    line = "mini_lrs,mini_lrs_video/train/spk1/00001.mp4,30,1 2,yes, no, maybe"
    label_csv = write_labels(tmp_path / "loose.csv", [line])
    assert list(load_lrs_dataset(root, label_csv).with_format(None)["text"]) == ["yes, no, maybe"]


def test_a_line_with_too_few_fields_is_named(corpus, tmp_path):
    root, _ = corpus
    lines = ["mini_lrs,mini_lrs_video/train/spk1/00001.mp4,30,1 2,fine", "", "mini_lrs,mini_lrs_video/train/x.mp4,30"]
    label_csv = write_labels(tmp_path / "short.csv", lines)
    with pytest.raises(ValueError, match=r"short\.csv, line 3: expected 5 comma-separated fields .* got 3"):
        load_lrs_dataset(root, label_csv)


@pytest.mark.parametrize("input_length", ["thirty", "30.0", "-4", "0", ""])
def test_an_input_length_that_is_not_a_positive_integer_is_named(corpus, tmp_path, input_length):
    root, _ = corpus
    line = f"mini_lrs,mini_lrs_video/train/spk1/00001.mp4,{input_length},1,hi"
    label_csv = write_labels(tmp_path / "bad.csv", [line])
    expected = rf"bad\.csv, line 1: input_length must be a positive whole number of video frames, got '{input_length}'"
    with pytest.raises(ValueError, match=expected):
        load_lrs_dataset(root, label_csv)


def test_a_missing_media_file_is_named_with_its_line(corpus, tmp_path):
    root, _ = corpus
    label_csv = write_labels(tmp_path / "missing.csv", ["mini_lrs,mini_lrs_video/train/spk9/gone.mp4,30,1,hi"])
    with pytest.raises(FileNotFoundError, match=r"missing\.csv, line 1: media file not found: .*spk9/gone\.mp4"):
        load_lrs_dataset(root, label_csv)


def test_a_missing_label_file_is_named(corpus):
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        load_lrs_dataset(corpus[0], "nothing.csv")


def test_paths_that_leave_the_dataset_folder_are_refused(tmp_path):
    root = tmp_path / "root"
    make_corpus(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_clip(outside, "secret", num_frames=10)
    os.symlink(outside / "secret.mp4", root / "mini_lrs" / "mini_lrs_video" / "link.mp4")
    escapes = {
        "dotdot": "mini_lrs,../../outside/secret.mp4,10,1,hi",
        "absolute": f"mini_lrs,{outside / 'secret.mp4'},10,1,hi",
        "symlink": "mini_lrs,mini_lrs_video/link.mp4,10,1,hi",
        "dataset_name": "..,outside/secret.mp4,10,1,hi",
    }
    for name, line in escapes.items():
        label_csv = write_labels(tmp_path / f"{name}.csv", [line])
        with pytest.raises(ValueError, match=rf"{name}\.csv, line 1: .*(outside|inside)"):
            load_lrs_dataset(root, label_csv)


def test_a_symlinked_dataset_folder_is_allowed(tmp_path):
    storage = tmp_path / "disk"
    label_csv = make_corpus(storage)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(storage / "mini_lrs", root / "mini_lrs")
    assert load_lrs_dataset(root, label_csv).num_rows == 3


def test_a_corrupt_clip_is_named_when_read(corpus, tmp_path):
    root = tmp_path / "root"
    (root / "mini_lrs").mkdir(parents=True)
    (root / "mini_lrs" / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    dataset = load_lrs_dataset(root, write_labels(tmp_path / "broken.csv", ["mini_lrs,broken.mp4,10,1,hi"]))
    with pytest.raises(ValueError, match=r"Could not decode video from .*broken\.mp4"):
        dataset[0]
