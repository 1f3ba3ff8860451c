"""Training arguments: the rules the training scripts apply before any work."""

import logging

import pytest

from omni_avsr.training import arguments
from omni_avsr.training.arguments import OmniAVSRTrainingArguments


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(arguments.torch.cuda, "is_available", lambda: False)


def test_bf16_becomes_fp32_on_a_cpu_that_emulates_it(cpu_only, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(arguments, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger=arguments.__name__):
        args = OmniAVSRTrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=True)
    assert not args.bf16
    assert "no native bf16" in caplog.text and "--bf16_needs_native_cpu_support false" in caplog.text


def test_bf16_stays_where_the_cpu_has_it_or_when_forced(cpu_only, monkeypatch, tmp_path):
    monkeypatch.setattr(arguments, "cpu_has_native_bf16", lambda: True)
    assert OmniAVSRTrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=True).bf16
    monkeypatch.setattr(arguments, "cpu_has_native_bf16", lambda: False)
    forced = OmniAVSRTrainingArguments(
        output_dir=str(tmp_path), bf16=True, use_cpu=True, bf16_needs_native_cpu_support=False
    )
    assert forced.bf16


def test_unknown_train_task_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"--train_tasks: unknown tasks \['lips'\]"):
        OmniAVSRTrainingArguments(output_dir=str(tmp_path), train_tasks=["asr", "lips"])


def test_training_policy_of_an_older_config_loads_and_is_named_where_a_run_differs(cpu_only, tmp_path, caplog):
    """Folders saved when the config held the training policy still load (the keys are left out), and a run that
    trains from one is told where its own arguments differ from the earlier run's."""
    import json

    from tiny_models import tiny_config, tiny_processor

    from omni_avsr import OmniAVSRConfig
    from omni_avsr.training import policy

    saved = {**tiny_config(tiny_processor()).to_dict(), "freeze_language_model": False, "train_padding": "official",
             "freeze_audio_encoder": True, "lora_dropout": 0.0}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = OmniAVSRConfig.from_pretrained(tmp_path)
    assert not any(hasattr(config, name) for name in ("freeze_language_model", "train_padding", "lora_dropout"))
    args = OmniAVSRTrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True)
    with caplog.at_level(logging.WARNING, logger=policy.__name__):
        policy.warn_of_an_earlier_policy(str(tmp_path), args)
    assert "train_padding 'official' there, 'masked' here" in caplog.text
    assert "freeze_language_model False there, True here" in caplog.text
    assert "--train_padding / --freeze_language_model" in caplog.text and "freeze_audio_encoder" not in caplog.text
