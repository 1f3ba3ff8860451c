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
