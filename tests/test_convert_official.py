"""Parity with the OFFICIAL Omni-AVSR implementation: convert its tiny S / T / ST checkpoints and compare outputs.

The fixtures (`../shared/parity`, never committed) were computed by the official code; users do not have them, so
every test here skips when they are absent.
"""

import json

import pytest
import torch
from conftest import SHARED_DIR
from safetensors.torch import load_file

from omni_avsr import OmniAVSRForConditionalGeneration, OmniAVSRProcessor
from omni_avsr.convert.official import convert, detect_layout, load_official_state_dict, main, parse_args
from omni_avsr.training.matryoshka import matryoshka_step


PARITY_DIR = SHARED_DIR / "parity"
OFFICIAL_TASKS = {"asr": "audio", "vsr": "video", "avsr": "audiovisual"}
LOGITS_ATOL = 1e-4
LOSS_RTOL = 1e-5
# Greedy steps won by less than this top-1/top-2 margin may flip under a different summation order.
TIE_MARGIN = 1e-3


def _converter_args(variant: str, output_dir, *extra):
    configs = PARITY_DIR / variant / "configs"
    return [
        str(PARITY_DIR / "common_state_dict.safetensors"),
        str(PARITY_DIR / variant / "state_dict_part.safetensors"),
        str(output_dir),
        "--llm-config", str(configs / "llama_config.json"),
        "--tokenizer", str(PARITY_DIR / variant / "tokenizer"),
        "--whisper-config", str(configs / "whisper_config.json"),
        "--feature-extractor-config", str(configs / "whisper_preprocessor_config.json"),
        "--avhubert-config", str(configs / "avhubert_fairseq_cfg.json"),
        # The fixture ran the official code with --rank 16 --alpha 4 (bottleneck 64/16 = 4, scale 0.25).
        "--lora-rank-factor", "16",
        "--lora-alpha", "4",
        *extra,
    ]


@pytest.fixture(scope="module", params=["S", "T", "ST"])
def converted(request, tmp_path_factory):
    variant = request.param
    if not (PARITY_DIR / variant / "expected.json").exists():
        pytest.skip(f"parity fixtures not available at {PARITY_DIR}")
    output_dir = tmp_path_factory.mktemp(f"converted_{variant}")
    main(_converter_args(variant, output_dir))
    fixture = PARITY_DIR / variant
    return {
        "variant": variant,
        "model": OmniAVSRForConditionalGeneration.from_pretrained(output_dir).eval(),
        "processor": OmniAVSRProcessor.from_pretrained(output_dir),
        "inputs": load_file(fixture / "inputs.safetensors"),
        "intermediates": load_file(fixture / "expected_intermediates.safetensors"),
        "logits": load_file(fixture / "expected_logits.safetensors"),
        "expected": json.loads((fixture / "expected.json").read_text()),
    }


def _training_labels(inputs):
    """The official batch holds [BOS, text, EOS, <pad>...]; our labels are the targets after BOS, pads as -100."""
    tokens = inputs["batch.tokens"][:, 1:]
    return tokens.masked_fill(tokens == 600, -100)


def test_layout_detection(converted):
    state_dict = load_official_state_dict(
        [PARITY_DIR / "common_state_dict.safetensors", PARITY_DIR / converted["variant"] / "state_dict_part.safetensors"]
    )
    layout = detect_layout(state_dict)
    assert layout["variant"] == converted["variant"]
    assert layout["audio"]["per_rate"] and not layout["audio"]["layer_norm"], "released projectors have no LayerNorm"
    config = converted["model"].config
    assert (config.lora_rank, config.lora_alpha / config.lora_rank) == (4, 0.25)
    assert (config.video_lora_rank, config.video_lora_alpha / config.video_lora_rank) == (4, 2.0)
    assert config.prompt_token_ids == {
        task: converted["inputs"][f"prompt_ids_full.{official}"][0, 1:-1].tolist()
        for task, official in OFFICIAL_TASKS.items()
    }


def test_encoders_and_features_match(converted):
    model, processor, inputs, intermediates = (converted[k] for k in ("model", "processor", "inputs", "intermediates"))
    features = processor(audio=[inputs["audio_raw.0"].numpy(), inputs["audio_raw.1"].numpy()], sampling_rate=16000)
    torch.testing.assert_close(features["input_features"], intermediates["train.whisper_input_features"], atol=1e-4, rtol=0)
    with torch.no_grad():
        audio = model.audio_tower(intermediates["train.whisper_input_features"]).last_hidden_state
        video = model.video_tower(inputs["batch.video"]).last_hidden_state
    torch.testing.assert_close(audio, intermediates["train.whisper_last_hidden_state"], atol=1e-4, rtol=0)
    torch.testing.assert_close(video, intermediates["train.avhubert_extract_finetune"], atol=1e-4, rtol=0)


def test_training_losses_and_logits_match_at_every_rate_pair(converted):
    """The training step with `padding="official"` reproduces the reference batching of a 1.6 s and a 1.2 s clip
    exactly."""
    model, processor, inputs, expected = (converted[k] for k in ("model", "processor", "inputs", "expected"))
    audio = processor(audio=[inputs["audio_raw.0"].numpy(), inputs["audio_raw.1"].numpy()], sampling_rate=16000)
    batch = {**audio, "pixel_values_videos": inputs["batch.video"], "labels": _training_labels(inputs)}
    for key, reference in expected["train"].items():
        audio_rate, video_rate = (int(part[1:]) for part in key.split("_"))
        with torch.no_grad():
            output = matryoshka_step(
                model, processor, batch, audio_rate=audio_rate, video_rate=video_rate, padding="official",
                output_logits=True,
            )
        for task, official in OFFICIAL_TASKS.items():
            loss = getattr(output, f"{task}_loss")
            assert loss.item() == pytest.approx(reference[f"{official}_loss_unweighted"], rel=LOSS_RTOL), (key, task)
            weighted = model.config.task_weight(task) * loss.item()
            assert weighted == pytest.approx(reference[f"{official}_loss_weighted"], rel=LOSS_RTOL)
            official_logits = converted["logits"][f"train.{key}.{official}.logits"]
            length = official_logits.shape[1]
            assert length == reference[f"{official}_seq_len"]
            torch.testing.assert_close(output.task_logits[task][:, :length], official_logits, atol=LOGITS_ATOL, rtol=0)
            official_labels = converted["logits"][f"train.{key}.{official}.labels"]
            assert torch.equal(output.task_labels[task][:, 1:length], official_labels[:, 1:])


def _assert_tokens_match(ours, theirs, our_logits, their_logits, margins, label):
    for step, (token, official_token) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(our_logits[step], their_logits[step], atol=LOGITS_ATOL, rtol=0)
        if token != official_token:
            assert margins[step] < TIE_MARGIN, f"{label}: step {step} differs with margin {margins[step]}"
            return  # after a legitimate tie-break the continuations are different sequences


@pytest.mark.parametrize("batched", [False, True], ids=["one_clip_at_a_time", "batched"])
def test_greedy_generation_matches(converted, batched):
    """The official code decodes one clip at a time; our batched decoding must give the same tokens."""
    model, processor, inputs, expected = (converted[k] for k in ("model", "processor", "inputs", "expected"))
    clips = {
        "audio": [inputs["audio_raw.0"].numpy(), inputs["audio_raw.1"].numpy()],
        "videos": [inputs["video_raw_uint8.0"][:, 0].numpy(), inputs["video_raw_uint8.1"][:, 0].numpy()],
    }
    for task, official in OFFICIAL_TASKS.items():
        for rates, reference in expected["generate"][official].items():
            audio_rate, video_rate = (int(part[1:]) for part in rates.split("_"))
            groups = [[0, 1]] if batched else [[0], [1]]
            for group in groups:
                batch = processor(
                    audio=[clips["audio"][i] for i in group], videos=[clips["videos"][i] for i in group],
                    sampling_rate=16000, task=task, audio_rate=audio_rate, video_rate=video_rate,
                )
                output = model.generate(
                    **batch, max_new_tokens=8, do_sample=False, num_beams=1, return_dict_in_generate=True,
                    output_logits=True,
                )
                new_tokens = output.sequences[:, batch["input_ids"].shape[1]:]
                for row, sample in enumerate(group):
                    official_run = reference[f"sample{sample}"]
                    their_logits = converted["logits"][f"generate.{official}.{rates}.sample{sample}.step_logits"]
                    our_logits = torch.stack([step[row] for step in output.logits])
                    _assert_tokens_match(
                        new_tokens[row].tolist(), official_run["generated_ids"], our_logits, their_logits,
                        official_run["top1_minus_top2_logit_per_step"], f"{task} {rates} sample{sample}",
                    )


def test_unknown_key_is_an_error(tmp_path):
    if not (PARITY_DIR / "S" / "expected.json").exists():
        pytest.skip(f"parity fixtures not available at {PARITY_DIR}")
    from safetensors.torch import save_file

    save_file({"mystery.weight": torch.zeros(2)}, tmp_path / "extra.safetensors")
    args = _converter_args("S", tmp_path / "out")
    args.insert(2, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="Unknown key in the official checkpoint: 'mystery.weight'"):
        convert(parse_args(args))


def test_wrong_rates_are_refused(tmp_path):
    if not (PARITY_DIR / "S" / "expected.json").exists():
        pytest.skip(f"parity fixtures not available at {PARITY_DIR}")
    with pytest.raises(ValueError, match="2 audio projectors but --audio-rates gives \\[4, 8, 16\\]"):
        convert(parse_args(_converter_args("S", tmp_path / "out", "--audio-rates", "4", "8", "16")))
