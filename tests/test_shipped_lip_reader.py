"""The lip reader the project ships (`pretrained/mini_lrs_lip_reader`, the demo's pretrained video encoder): it loads
as a CTC lip reader and as an encoder, and reads the first clips of the demo's test split, regenerated here, at the
WER its card states, so a stale or broken folder fails."""

import json
from pathlib import Path

import pytest
import torch

from omni_avsr import AVHubertVideoModel, OmniAVSRProcessor
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.data.mini_lrs import MiniLRSConfig, plan_clips, write_labels, token_ids
from omni_avsr.data.mini_lrs_clip import DATASET_NAME, write_clip
from omni_avsr.data.mini_lrs_espeak import EspeakSynthesizer
from omni_avsr.modeling_avhubert import AVHubertForCTC
from omni_avsr.training.evaluation import word_error_rate
from omni_avsr.training.lip_reader_card import CHECK_CLIPS, RECORD_FILE, SHIPPED_FILES


SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "mini_lrs_lip_reader"
WER_MARGIN = 3.0  # points: greedy decoding of the same clips on another CPU may flip a few frames' argmax


@pytest.fixture(scope="module")
def record():
    return json.loads((SHIPPED / RECORD_FILE).read_text())


@pytest.fixture(scope="module")
def demo_test_clips(tmp_path_factory, record):
    """The first clips of the demo's test split, made exactly as `make demo` makes them (each clip depends only on
    the corpus settings and its index)."""
    settings = record["corpora"]["test"]["settings"]
    config = MiniLRSConfig(**{key: value for key, value in settings.items() if key != "generator_version"})
    root = tmp_path_factory.mktemp("demo_test")
    synthesizer = EspeakSynthesizer()
    rows = []
    for spec in plan_clips(config)["test"][:CHECK_CLIPS]:
        frames = write_clip(root, spec, synthesizer)
        rows.append((DATASET_NAME, spec.rel_path, frames, token_ids(spec.sentence.text), spec.sentence.text))
    write_labels(root / "labels" / "check.csv", rows)
    return load_lrs_dataset(root, "check.csv", modalities=("video",))


def test_the_folder_holds_a_small_model_and_its_card(record):
    for name in (*SHIPPED_FILES, "README.md", RECORD_FILE):
        assert (SHIPPED / name).is_file(), name
    assert (SHIPPED / "model.safetensors").stat().st_size <= 10 * 2**20
    card = (SHIPPED / "README.md").read_text()
    for needle in (record["command"], record["commit"], f"{record['wer']['test']['wer']:.1f}", "held-out"):
        assert needle in card
    trained = set(record["corpora"]["training"]["speakers"])
    assert not trained & {f"s{number:02d}" for number in range(9, 17)}
    assert record["corpora"]["training"]["settings"]["seed"] == record["corpora"]["test"]["settings"]["seed"]
    assert record["corpora"]["training"]["settings"]["num_test"] == record["corpora"]["test"]["settings"]["num_test"]
    assert record["wer"]["test"]["wer"] <= 20.0


def test_it_reads_the_demo_test_clips_at_the_wer_of_its_card(record, demo_test_clips):
    model = AVHubertForCTC.from_pretrained(SHIPPED).eval()
    processor = OmniAVSRProcessor.from_pretrained(SHIPPED)
    batch = OmniAVSRDataCollator(processor)([demo_test_clips[index] for index in range(len(demo_test_clips))])
    with torch.no_grad():
        logits = model(batch["pixel_values_videos"], video_mask=batch["video_mask"]).logits
    hypotheses = processor.tokenizer.batch_decode(model.greedy_decode(logits, batch["video_mask"]))
    wer, num_words = word_error_rate(demo_test_clips.with_format(None)["text"], hypotheses)
    assert num_words == record["wer"]["check"]["num_words"]
    assert abs(wer - record["wer"]["check"]["wer"]) <= WER_MARGIN, (wer, record["wer"]["check"])
    encoder = AVHubertVideoModel.from_pretrained(SHIPPED)
    assert encoder.config.hidden_size == model.config.hidden_size
