"""Transformers' common processor expectations, written for Omni-AVSR in the style of transformers'
`ProcessorTesterMixin` (a tester that prepares the processor and its inputs, then one test per expectation): how call
arguments are routed, what text alone returns, and a save/load round trip that changes nothing. Where Omni-AVSR
deliberately differs (a missing sampling rate, an unknown argument, a setting it cannot apply), the test says why."""

import inspect

import numpy as np
import pytest
import torch
from tiny_models import tiny_clips, tiny_processor
from transformers import AutoProcessor

from omni_avsr import OmniAVSRProcessor


class OmniAVSRProcessorTester:
    """The tiny processor and a batch of two clips of different lengths (audio, lip video, transcripts)."""

    def __init__(self, batch_size: int = 2):
        self.processor = tiny_processor()
        self.audio, self.videos = tiny_clips(batch_size, seconds=(1.2, 0.8))
        self.texts = ["set blue", "place red at g nine now"][:batch_size]

    def call(self, **kwargs):
        return self.processor(audio=self.audio, videos=self.videos, **kwargs)


@pytest.fixture(scope="module")
def tester():
    return OmniAVSRProcessorTester()


def assert_same_outputs(first, second):
    assert first.keys() == second.keys()
    for name in first:
        if torch.is_tensor(first[name]):
            torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
        else:
            assert first[name] == second[name], name


def test_processor_from_and_save_pretrained(tester, tmp_path):
    """A loaded processor's dict is the saved one's (directly or through AutoProcessor): the `auto_map` that remote
    code needs, which loading drops from the file's dict, is the processor's own from the start."""
    processor = tester.processor
    assert processor.to_dict()["auto_map"] == {"AutoProcessor": "processing_omni_avsr.OmniAVSRProcessor"}
    processor.save_pretrained(tmp_path)
    saved = processor.to_dict()
    for loaded in (OmniAVSRProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is OmniAVSRProcessor
        assert loaded.to_dict() == saved
        assert repr(loaded.feature_extractor) == repr(processor.feature_extractor)


def test_call_arguments_are_runtime_values_only():
    """As transformers asks of every processor: explicit `__call__` arguments are the inputs and per-call choices
    (default None, not processor attributes, not also in `valid_processor_kwargs`); settings with defaults, such as
    `sampling_rate` and `resample`, are processor kwargs."""
    parameters = inspect.signature(OmniAVSRProcessor.__call__).parameters
    explicit = {
        name for name, parameter in parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }
    assert explicit == {"audio", "videos", "text", "task", "audio_rate", "video_rate", "prompt"}
    assert all(parameters[name].default is None for name in explicit)
    processor = tiny_processor()
    assert not {name for name in explicit if hasattr(processor, name)}
    groups = OmniAVSRProcessor.valid_processor_kwargs.__annotations__
    valid = {key for group in ("audio_kwargs", "videos_kwargs", "text_kwargs") for key in groups[group].__annotations__}
    assert not explicit & valid
    assert {"sampling_rate", "resample"} <= set(groups["audio_kwargs"].__annotations__)


def test_sampling_rate_and_resample_are_audio_kwargs_flat_or_grouped(tester):
    flat = tester.call(sampling_rate=16000, task="avsr")
    grouped = tester.call(audio_kwargs={"sampling_rate": 16000}, task="avsr")
    assert_same_outputs(flat, grouped)
    slow = [waveform[::2] for waveform in tester.audio]
    with pytest.raises(ValueError, match=r"audio\[0\] is at 8000 Hz but Omni-AVSR expects 16000 Hz"):
        tester.processor(audio=slow, sampling_rate=8000, task="asr")
    resampled_flat = tester.processor(audio=slow, sampling_rate=8000, resample=True, task="asr")
    resampled_grouped = tester.processor(audio=slow, audio_kwargs={"sampling_rate": 8000, "resample": True}, task="asr")
    assert_same_outputs(resampled_flat, resampled_grouped)
    assert resampled_flat["input_features_mask"].sum(-1).tolist() == [120, 80]  # 10 ms frames of 1.2 s and 0.8 s
    with pytest.raises(ValueError, match="was passed two times"):
        tester.call(sampling_rate=16000, audio_kwargs={"sampling_rate": 16000})


def test_missing_sampling_rate_is_refused_not_assumed(tester):
    """transformers' feature extractors warn and assume their rate; Omni-AVSR refuses, because audio at another rate
    (librosa.load's default is 22.05 kHz) would be transcribed silently wrong."""
    with pytest.raises(ValueError, match=r"`sampling_rate` is required with `audio` \(expected 16000 Hz\).*librosa"):
        tester.processor(audio=tester.audio, task="asr")


def test_unstructured_kwargs(tester):
    """Flat text settings reach the sequence: padding to max_length, to a multiple, on either side."""
    natural = tester.call(sampling_rate=16000, task="avsr", text=tester.texts)
    longest = natural["input_ids"].shape[-1]
    padded = tester.call(sampling_rate=16000, task="avsr", text=tester.texts, padding="max_length", max_length=longest + 7)
    assert padded["input_ids"].shape == (2, longest + 7) and padded["labels"].shape == (2, longest + 7)
    # Left padding: the natural rows are the padded rows' right ends, and the labels move with them.
    assert torch.equal(padded["input_ids"][:, 7:], natural["input_ids"])
    assert torch.equal(padded["labels"][:, 7:], natural["labels"])
    assert (padded["attention_mask"][:, :7] == 0).all()
    multiple = tester.call(sampling_rate=16000, task="avsr", pad_to_multiple_of=32)
    assert multiple["input_ids"].shape[-1] % 32 == 0
    right = tester.call(sampling_rate=16000, task="avsr", padding_side="right", padding="max_length", max_length=longest + 3)
    assert (right["attention_mask"][:, -3:] == 0).all() and (right["attention_mask"][:, 0] == 1).all()


def test_structured_kwargs_equal_flat_kwargs(tester):
    flat = tester.call(sampling_rate=16000, task="avsr", padding="max_length", max_length=120, return_tensors="np")
    structured = tester.call(
        task="avsr", audio_kwargs={"sampling_rate": 16000}, text_kwargs={"padding": "max_length", "max_length": 120},
        common_kwargs={"return_tensors": "np"},
    )
    assert flat.keys() == structured.keys()
    for name in flat:
        np.testing.assert_array_equal(flat[name], structured[name])
    assert isinstance(flat["input_ids"], np.ndarray) and flat["input_ids"].shape == (2, 120)


def test_rows_are_never_cut(tester):
    """A row of input_ids holds media placeholders and transcript words: cutting it would change the input, so a
    max_length shorter than a row is refused, with or without truncation."""
    for settings in ({"padding": "max_length", "max_length": 8}, {"truncation": True, "max_length": 8}):
        with pytest.raises(ValueError, match=r"A row of input_ids is \d+ tokens, longer than max_length=8"):
            tester.call(sampling_rate=16000, task="avsr", **settings)
    with pytest.raises(ValueError, match="padding=False, but the rows are"):
        tester.call(sampling_rate=16000, task="avsr", padding=False)


def test_text_alone_is_tokenised_as_the_tokenizer_does(tester):
    processor = tester.processor
    inputs = processor(text=tester.texts)
    expected = processor.tokenizer(tester.texts, padding=True, padding_side="left", return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert torch.equal(inputs["input_ids"], expected["input_ids"])
    assert torch.equal(inputs["attention_mask"], expected["attention_mask"])
    fixed = processor(text=tester.texts, padding="max_length", max_length=40, return_tensors="np")
    assert fixed["input_ids"].shape == (2, 40)
    # With media and no task, the same text is a training batch's labels.
    assert "labels" in tester.call(sampling_rate=16000, text=tester.texts)


def test_video_frame_sampling_kwargs_mean_every_frame_at_25_fps(tester):
    plain = tester.processor(videos=tester.videos, task="vsr")
    assert_same_outputs(plain, tester.processor(videos=tester.videos, task="vsr", do_sample_frames=False, fps=25))
    with pytest.raises(ValueError, match="do_sample_frames / num_frames would drop frames"):
        tester.processor(videos=tester.videos, task="vsr", do_sample_frames=True)
    with pytest.raises(ValueError, match="fps=30, but Omni-AVSR reads 25 fps lip videos"):
        tester.processor(videos=tester.videos, task="vsr", fps=30)


def test_settings_the_processor_cannot_apply_are_refused_by_name(tester):
    """transformers drops an unknown argument with a warning; here it is refused, so that a misspelt or misplaced
    setting is never silently lost."""
    with pytest.raises(ValueError, match=r"Unexpected arguments to OmniAVSRProcessor: \['beam_size'\]"):
        tester.call(sampling_rate=16000, beam_size=4)
    with pytest.raises(ValueError, match=r"audio_kwargs \['padding'\] cannot be applied.*fixed 30 s window"):
        tester.call(audio_kwargs={"sampling_rate": 16000, "padding": "longest"})
    with pytest.raises(ValueError, match=r"videos_kwargs \['size'\] cannot be applied.*video_crop_size"):
        tester.call(sampling_rate=16000, videos_kwargs={"size": {"height": 96, "width": 96}})
    # Flat, too: a setting only the video group takes, and it cannot apply it.
    with pytest.raises(ValueError, match=r"videos_kwargs \['do_normalize'\] cannot be applied"):
        tester.call(sampling_rate=16000, do_normalize=False)


def test_model_input_names_cover_every_output(tester):
    names = set(tester.processor.model_input_names) | {"task", "audio_rate", "video_rate"}
    for inputs in (
        tester.call(sampling_rate=16000, task="avsr", text=tester.texts),
        tester.call(sampling_rate=16000, text=tester.texts),
        tester.processor(text=tester.texts),
    ):
        assert set(inputs) <= names
