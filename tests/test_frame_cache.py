import os

import numpy as np
import pytest
from test_lrs_dataset import make_corpus

from omni_avsr.data import frame_cache, lrs
from omni_avsr.data.frame_cache import FrameCache
from omni_avsr.data.lrs import load_lrs_dataset, use_frame_cache


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    return root, make_corpus(root)


def test_cached_rows_equal_decoded_rows_and_decode_nothing_again(corpus, tmp_path, monkeypatch):
    root, label_csv = corpus
    decoded = load_lrs_dataset(root, label_csv.name)
    cached = load_lrs_dataset(root, label_csv.name)
    cache = use_frame_cache(cached, tmp_path / "cache", progress=False)
    assert len(cache) == 3
    expected = [decoded[index] for index in range(3)]

    def refuse(*args, **kwargs):
        raise AssertionError("a cached clip was decoded again")

    monkeypatch.setattr(lrs, "load_clip", refuse)
    for index, row in enumerate(expected):
        got = cached[index]
        np.testing.assert_array_equal(got["frames"], row["frames"])
        np.testing.assert_array_equal(got["audio"], row["audio"])
        assert got["frames"].flags.writeable
    # A second run opens the same cache without decoding anything.
    monkeypatch.setattr(frame_cache, "load_clip", refuse)
    reopened = load_lrs_dataset(root, label_csv.name)
    assert use_frame_cache(reopened, tmp_path / "cache", progress=False).folder == cache.folder
    np.testing.assert_array_equal(reopened[2]["frames"], expected[2]["frames"])


def test_a_changed_media_file_gets_a_new_cache(corpus, tmp_path):
    root, label_csv = corpus
    first = use_frame_cache(load_lrs_dataset(root, label_csv.name), tmp_path / "cache", progress=False)
    path = load_lrs_dataset(root, label_csv.name).with_format(None)["path"][0]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = use_frame_cache(load_lrs_dataset(root, label_csv.name), tmp_path / "cache", progress=False)
    assert second.folder != first.folder
    assert sorted(entry.name for entry in (tmp_path / "cache").iterdir() if not entry.name.startswith(".")) == sorted(
        [first.folder.name, second.folder.name]
    )


def test_parallel_build_matches_and_unknown_clips_are_named(corpus, tmp_path):
    root, label_csv = corpus
    paths = load_lrs_dataset(root, label_csv.name).with_format(None)["path"]
    serial = FrameCache.open_or_build(tmp_path / "serial", paths, progress=False)
    parallel = FrameCache.open_or_build(tmp_path / "parallel", paths, workers=2, progress=False)
    for path in paths:
        np.testing.assert_array_equal(serial.frames(path), parallel.frames(path))
    with pytest.raises(KeyError, match="not in the frame cache"):
        serial.frames(tmp_path / "other.mp4")


def test_an_interrupted_build_leaves_no_cache(corpus, tmp_path, monkeypatch):
    root, label_csv = corpus
    paths = load_lrs_dataset(root, label_csv.name).with_format(None)["path"]
    calls = []

    def fail_on_third(task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((2, 4, 4), np.uint8)

    monkeypatch.setattr(frame_cache, "_decode", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        FrameCache.open_or_build(tmp_path / "cache", paths, progress=False)
    assert not [entry for entry in (tmp_path / "cache").iterdir() if not entry.name.startswith(".")]
    monkeypatch.undo()
    cache = FrameCache.open_or_build(tmp_path / "cache", paths, progress=False)
    assert cache.frames(paths[0]).shape[1:] == (96, 96)


def test_audio_only_datasets_refuse_a_frame_cache(corpus, tmp_path):
    root, label_csv = corpus
    with pytest.raises(ValueError, match="no video"):
        use_frame_cache(load_lrs_dataset(root, label_csv.name, modalities=("audio",)), tmp_path / "cache")
