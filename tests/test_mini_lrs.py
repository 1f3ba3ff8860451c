import csv
import json
import re
import shutil
import unicodedata
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from omni_avsr.data import mini_lrs
from omni_avsr.data.mini_lrs import MiniLRSConfig, generate_corpus, plan_clips, token_ids, write_labels
from omni_avsr.data.mini_lrs_clip import ClipSpec
from omni_avsr.data.mini_lrs_espeak import EspeakSynthesizer
from omni_avsr.data.mini_lrs_floor import lip_reading_floor
from omni_avsr.data.mini_lrs_grammar import FREE_TEXT_WORDS, GRID_SLOTS, Sentence
from omni_avsr.data.mini_lrs_speakers import make_speaker
from omni_avsr.data.mini_lrs_visemes import INVISIBLE_SYMBOLS, VISEME_SYMBOLS, phoneme_visemes, viseme_sequence


CONFIG = MiniLRSConfig(num_train=6, num_test=4, seed=3, num_speakers=8, babble_seconds=4.0, babble_talkers=3)
REL_PATH = re.compile(r"mini_lrs_video/(train|test)/s\d\d/\d{5}\.mp4")
GRID_WORDS = {word for words in GRID_SLOTS.values() for word in words}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini_lrs") / "corpus"
    summary = generate_corpus(root, CONFIG, workers=2, progress=False)
    assert summary["clips"] == summary["new_clips"] == 10
    return root


def read_labels(root: Path, split: str) -> list[list[str]]:
    with open(root / "labels" / f"mini_lrs_{split}.csv", newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def decode_frames(path: Path) -> tuple[np.ndarray, av.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, stream


def test_layout_and_label_columns(corpus):
    assert (corpus / "mini_lrs_config.json").is_file()
    for split, count in (("train", CONFIG.num_train), ("test", CONFIG.num_test)):
        rows = read_labels(corpus, split)
        assert len(rows) == count
        for dataset_name, rel_path, input_length, ids, text in rows:
            assert dataset_name == "mini_lrs"
            assert REL_PATH.fullmatch(rel_path) and rel_path.split("/")[1] == split
            video = corpus / "mini_lrs" / rel_path
            assert video.is_file() and video.with_suffix(".wav").is_file()
            assert int(input_length) > 0
            assert ids == " ".join(str(byte) for byte in text.encode("utf-8"))
            assert text == text.lower() and set(text.split()) <= GRID_WORDS and len(text.split()) == 6
    leftovers = [path.name for path in corpus.rglob("*") if path.name.endswith(".partial")]
    assert not leftovers


def test_media_rates_durations_and_alignment(corpus):
    for split in ("train", "test"):
        for _, rel_path, input_length, _, _ in read_labels(corpus, split):
            video = corpus / "mini_lrs" / rel_path
            frames, stream = decode_frames(video)
            assert stream.average_rate == 25 and stream.codec_context.name == "h264"
            assert frames.shape == (int(input_length), 96, 96, 3)
            audio, sample_rate = soundfile.read(video.with_suffix(".wav"), dtype="float32")
            assert sample_rate == 16000 and audio.ndim == 1
            assert len(audio) == len(frames) * 640
            seconds = len(audio) / sample_rate
            assert 1.0 < seconds < 4.5
            assert len(frames) == int(np.ceil(seconds * 25))
            # Silence pads both ends; the speech is in between.
            assert np.abs(audio[:800]).max() == 0 and np.abs(audio[-800:]).max() == 0
            assert np.abs(audio).max() > 0.1


def test_train_and_test_share_no_sentence(corpus):
    train = {row[4] for row in read_labels(corpus, "train")}
    test = {row[4] for row in read_labels(corpus, "test")}
    assert train and test and not train & test
    for free_text_ratio in (0.0, 0.5):
        plan = plan_clips(MiniLRSConfig(num_train=3000, num_test=600, free_text_ratio=free_text_ratio))
        train = [spec.sentence for spec in plan["train"]]
        test = [spec.sentence for spec in plan["test"]]
        assert len(set(test)) == len(test) and not set(train) & set(test)
        num_free = sum(sentence.slots[0] == "free" for sentence in train + test)
        assert num_free == round(free_text_ratio * 3000) + round(free_text_ratio * 600)


def test_speakers_are_balanced_and_can_be_held_out():
    plan = plan_clips(MiniLRSConfig(num_train=40, num_test=20, num_speakers=10, hold_out_speakers=2))
    train_speakers = {spec.speaker.speaker_id for spec in plan["train"]}
    test_speakers = {spec.speaker.speaker_id for spec in plan["test"]}
    assert train_speakers == {f"s{i:02d}" for i in range(1, 9)} and test_speakers == {"s09", "s10"}
    voices = {make_speaker(index).voice for index in range(8)}
    assert len(voices) == 8
    with pytest.raises(ValueError, match="hold_out_speakers"):
        MiniLRSConfig(num_speakers=4, hold_out_speakers=4)


def test_mouth_opening_follows_the_audio_within_a_frame(corpus):
    """Per frame, the dark area of the mouth (open cavity) correlates with the audio level, best at lag 0."""
    lags = range(-4, 5)
    correlations = []
    for split in ("train", "test"):
        for _, rel_path, _, _, _ in read_labels(corpus, split):
            video = corpus / "mini_lrs" / rel_path
            gray = decode_frames(video)[0].astype(np.float32).mean(axis=-1)
            skin = np.median(gray.reshape(len(gray), -1), axis=1)[:, None, None]
            darkness = np.clip(skin - gray, 0, None)[:, 16:88, 12:84].mean(axis=(1, 2))
            audio, _ = soundfile.read(video.with_suffix(".wav"), dtype="float32")
            level = np.sqrt(np.mean(np.square(audio.reshape(-1, 640)), axis=1))
            correlations.append([_lagged_correlation(darkness, level, lag) for lag in lags])
    mean = dict(zip(lags, np.mean(correlations, axis=0)))
    assert mean[0] > 0.3, mean
    assert all(mean[0] >= mean[lag] for lag in lags if abs(lag) >= 2), mean


def _lagged_correlation(video: np.ndarray, audio: np.ndarray, lag: int) -> float:
    """Correlation of video frame t + lag with audio frame t."""
    if lag >= 0:
        return float(np.corrcoef(video[lag:], audio[: len(audio) - lag])[0, 1])
    return float(np.corrcoef(video[:lag], audio[-lag:])[0, 1])


def test_same_seed_gives_identical_corpus(corpus, tmp_path):
    """A second run, with one worker instead of two, gives the same wav bytes and decoded frames."""
    again = tmp_path / "again"
    generate_corpus(again, CONFIG, workers=1, progress=False)
    for split in ("train", "test"):
        assert read_labels(again, split) == read_labels(corpus, split)
        for _, rel_path, _, _, _ in read_labels(corpus, split):
            first, second = corpus / "mini_lrs" / rel_path, again / "mini_lrs" / rel_path
            assert first.with_suffix(".wav").read_bytes() == second.with_suffix(".wav").read_bytes()
            np.testing.assert_array_equal(decode_frames(first)[0], decode_frames(second)[0])
    assert (again / "noise" / "babble.wav").read_bytes() == (corpus / "noise" / "babble.wav").read_bytes()
    assert (again / "lip_reading_floor.json").read_text() == (corpus / "lip_reading_floor.json").read_text()


def test_failed_run_lists_only_finished_clips_and_resumes(corpus, tmp_path, monkeypatch):
    root = tmp_path / "resumed"
    write_clip = mini_lrs.write_clip
    calls = []

    def failing_write_clip(*args):
        if len(calls) == 3:
            raise RuntimeError("the machine went down")
        calls.append(args)
        return write_clip(*args)

    monkeypatch.setattr(mini_lrs, "write_clip", failing_write_clip)  # the forked worker inherits it
    with pytest.raises(RuntimeError, match="went down"):
        generate_corpus(root, CONFIG, workers=1, progress=False)
    listed = read_labels(root, "train") + read_labels(root, "test")
    assert len(listed) == 3
    assert all((root / "mini_lrs" / row[1]).is_file() for row in listed)
    assert len(list(root.rglob("*.mp4"))) == 3

    monkeypatch.setattr(mini_lrs, "write_clip", write_clip)
    summary = generate_corpus(root, CONFIG, workers=2, progress=False)
    assert summary["new_clips"] == 7 and summary["clips"] == 10
    for split in ("train", "test"):
        assert read_labels(root, split) == read_labels(corpus, split)
        for _, rel_path, _, _, _ in read_labels(root, split):
            wav = Path("mini_lrs", rel_path).with_suffix(".wav")
            assert (root / wav).read_bytes() == (corpus / wav).read_bytes()


def test_other_settings_in_an_existing_corpus_are_refused(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    with pytest.raises(ValueError, match="seed: 3 there, 4 now"):
        generate_corpus(copy, MiniLRSConfig(**{**CONFIG.__dict__, "seed": 4}), progress=False)


def test_label_text_with_commas_and_quotes_round_trips(tmp_path):
    text = 'well, "hello", she said, it\'s fine'
    rows = [("mini_lrs", "mini_lrs_video/test/s01/00000.mp4", 12, token_ids(text), text)]
    path = tmp_path / "labels" / "x.csv"
    write_labels(path, rows)
    with open(path, newline="", encoding="utf-8") as file:
        (row,) = list(csv.reader(file))
    assert row[4] == text and bytes(int(value) for value in row[3].split()).decode() == text


def test_corpus_loads_with_the_lrs_loader(corpus):
    from omni_avsr.data.lrs import load_lrs_dataset

    dataset = load_lrs_dataset(corpus, "mini_lrs_test.csv")
    assert dataset.num_rows == CONFIG.num_test
    row = dataset[0]
    assert np.asarray(row["frames"]).shape == (row["num_frames"], 96, 96)
    assert len(row["audio"]) == row["num_frames"] * 640


def test_babble_is_long_continuous_noise(corpus):
    babble, sample_rate = soundfile.read(corpus / "noise" / "babble.wav", dtype="float32")
    assert sample_rate == 16000 and len(babble) == CONFIG.babble_seconds * 16000
    level = np.sqrt(np.mean(np.square(babble.reshape(-1, 1600)), axis=1))  # per 100 ms
    assert level.min() > 0.1 * np.median(level)


def test_floor_file(corpus):
    floor = json.loads((corpus / "lip_reading_floor.json").read_text())
    assert {"wer_percent", "num_words", "num_clips", "per_slot_wer_percent", "confusable_groups"} <= floor.keys()
    assert floor["num_clips"] == CONFIG.num_test and floor["num_words"] == 6 * CONFIG.num_test
    assert 0 <= floor["wer_percent"] < 20
    assert ["b", "p"] in floor["confusable_groups"]["en-us"]["letter"]
    assert floor["per_slot_wer_percent"]["colour"] == 0


def test_floor_counts_expected_errors_within_groups_of_identical_viseme_sequences():
    speaker = make_speaker(0)  # en-us: "b" looks like "p"; "x" looks like no other letter
    sentences = [("bin", "blue", "at", "b", "two", "now"), ("set", "red", "by", "x", "one", "soon")]
    clips = [
        ClipSpec("test", index, speaker, Sentence(words, tuple(GRID_SLOTS)), (0, 1, index))
        for index, words in enumerate(sentences)
    ]
    floor = lip_reading_floor(clips, EspeakSynthesizer())
    assert floor["expected_word_errors"] == pytest.approx(0.5)
    assert floor["wer_percent"] == pytest.approx(100 * 0.5 / 12, abs=1e-3)
    assert floor["per_slot_wer_percent"]["letter"] == pytest.approx(25.0)


def test_visemes():
    assert phoneme_visemes("ˈaɪ") == ["open", "close_front"]
    assert phoneme_visemes("") == ["rest"] and phoneme_visemes("h") == []
    assert viseme_sequence(["b", "ˈiː"]) == viseme_sequence(["p", "iː"]) == ("bilabial", "close_front")
    assert viseme_sequence(["f", "ˈaɪ", "v"]) != viseme_sequence(["f", "ˈɔːɹ"])


def test_every_symbol_espeak_uses_has_a_viseme():
    known = {symbol for symbols in VISEME_SYMBOLS.values() for symbol in symbols} | set(INVISIBLE_SYMBOLS)
    marks = set("ˈˌːˑ:‿͡-_ ")
    words = sorted(GRID_WORDS | set(FREE_TEXT_WORDS))
    synthesizer = EspeakSynthesizer()
    accents = sorted({make_speaker(index).voice.name.split("+")[0] for index in range(16)})
    for accent in accents:
        for word, ipa in zip(words, synthesizer.phonemize(words, accent)):
            symbols = {s for s in unicodedata.normalize("NFD", ipa) if s not in marks and not unicodedata.combining(s)}
            assert symbols <= known, (accent, word, ipa, symbols - known)


def test_listed_speakers_leave_the_held_out_ones_out_and_keep_the_test_sentences():
    """A pretraining corpus with more clips and other speakers (the shipped lip reader's) has the demo's test
    sentences as its own test split, so none of them is trained on, and none of the held-out speakers s09-s16."""
    demo = plan_clips(MiniLRSConfig(num_train=2000, num_test=200))
    speakers = mini_lrs.parse_speaker_numbers("1-8,s17-20")
    assert speakers == (1, 2, 3, 4, 5, 6, 7, 8, 17, 18, 19, 20)
    pretraining = plan_clips(MiniLRSConfig(num_train=3000, num_test=200, num_speakers=12, speakers=speakers))
    assert {spec.sentence for spec in pretraining["test"]} == {spec.sentence for spec in demo["test"]}
    assert not {spec.sentence for spec in pretraining["train"]} & {spec.sentence for spec in demo["test"]}
    train_speakers = {spec.speaker.speaker_id for spec in pretraining["train"]}
    assert train_speakers == {f"s{number:02d}" for number in speakers}
    assert pretraining["train"][8].speaker == make_speaker(16)  # s17 is the same person as in any corpus
    with pytest.raises(ValueError, match="num_speakers"):
        MiniLRSConfig(num_speakers=8, speakers=(1, 2))
    with pytest.raises(ValueError, match="distinct"):
        MiniLRSConfig(num_speakers=2, speakers=(3, 3))
    with pytest.raises(ValueError, match="--speakers"):
        mini_lrs.parse_speaker_numbers("1-8,9x")


def test_a_corpus_made_before_the_speakers_option_resumes(tmp_path):
    """Settings files written without `speakers` compare equal to a config that does not set it."""
    root = tmp_path / "corpus"
    root.mkdir()
    old_settings = {name: value for name, value in vars(CONFIG).items() if name != "speakers"}
    settings = {"generator_version": mini_lrs.GENERATOR_VERSION, **old_settings}
    (root / mini_lrs.CONFIG_FILE).write_text(json.dumps(settings))
    mini_lrs._claim_output_dir(root, CONFIG)
    with pytest.raises(ValueError, match="speakers"):
        mini_lrs._claim_output_dir(root, MiniLRSConfig(**{**vars(CONFIG), "speakers": tuple(range(1, 9))}))
