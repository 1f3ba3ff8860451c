"""Efficient matryoshka training, the paper's: each step samples ONE audio and ONE video compression rate, runs each
encoder once, and puts every task's sequence of every clip through the LM in ONE call, with the Omni-LoRA adapters
routed per group of rows (so one backward gives every adapter its gradient, also under activation checkpointing). The
loss is `Σ_t λ_t L_t`, where `L_t` is the token-mean cross-entropy of task `t`'s rows and `λ` the config's
`task_weights`.

The model needs nothing special for it: it reads a standard batch whose `input_ids` hold one group of rows per task
(laid out by the processor), whose media are the clips once, and whose `task` is the list of groups. The rates, the
layout and the per-task losses are computed here; `OmniAVSRTrainer` calls `matryoshka_step` for every batch.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers.utils import ModelOutput

from ..configuration_omni_avsr import TASK_MODALITIES
from ..input_checks import check_batch_sizes, check_task_media
from ..processing_omni_avsr import IGNORE_INDEX, MEDIA_INPUTS, pad_rows


TRAIN_PADDINGS = ("masked", "official")


@dataclass
class OmniAVSROutput(ModelOutput):
    r"""
    What one efficient-matryoshka step computes on a batch of clips and transcripts.

    loss (`torch.FloatTensor`): weighted sum of the per-task losses, `Σ_t task_weight[t] * loss_t`.
    asr_loss, vsr_loss, avsr_loss (`torch.FloatTensor`, *optional*): unweighted token-mean cross-entropy of each task
        that ran.
    audio_rate, video_rate (`int`, *optional*): the compression rates used (sampled in training unless given).
    task_logits (`dict[str, torch.FloatTensor]`, *optional*): per-task LM logits (batch, sequence, vocab), only with
        `output_logits=True`.
    task_labels (`dict[str, torch.LongTensor]`, *optional*): the labels aligned with `task_logits`.
    """

    loss: torch.FloatTensor | None = None
    asr_loss: torch.FloatTensor | None = None
    vsr_loss: torch.FloatTensor | None = None
    avsr_loss: torch.FloatTensor | None = None
    audio_rate: int | None = None
    video_rate: int | None = None
    task_logits: dict[str, torch.FloatTensor] | None = None
    task_labels: dict[str, torch.LongTensor] | None = None


def step_rates(config, training: bool, audio_rate=None, video_rate=None) -> dict[str, int]:
    """The rate of each modality the model has, for one step: as given, else drawn uniformly from the config's rates
    in training (torch's generator, which a resumed run restores), else the finest."""
    rates = {}
    for modality, rate in (("audio", audio_rate), ("video", video_rate)):
        if not config.has_modality(modality):
            continue
        choices = config.rates(modality)
        if rate is None and training:
            rate = choices[int(torch.randint(len(choices), ()))]
        rates[modality] = config.check_rate(modality, rate)
    return rates


def multitask_inputs(processor, batch, tasks: list[str], rates: dict[str, int], padding: str = "masked") -> tuple[dict, int]:
    """Model inputs of every task's row for every clip of `batch` (the processor's media and `labels` holding each
    transcript's ids + EOS, -100 padded): the rows grouped by task, each the task's prompt at `rates` and then the
    transcript (teacher forcing), right-padded with the labels -100 outside the transcripts; the media once.
    `rates` holds each modality's rate (`step_rates`).

    `padding="official"` reproduces the official implementation's batches, to reproduce its numbers: every clip gets
    as many audio and video tokens as the longest clip of the batch (audio cut at the longest clip's length, at least
    0.5 s) and the video encoder attends to padded frames. `"masked"` keeps each clip's own length, so a clip's loss
    does not depend on its batch-mates.

    Returns the inputs and `logits_to_keep`: the positions from the first one that predicts a transcript token to the
    end (the LM head is a large share of a step; prompt positions need none).
    """
    if padding not in TRAIN_PADDINGS:
        raise ValueError(f"train_padding must be one of {TRAIN_PADDINGS}, got {padding!r}.")
    needed = {modality for task in tasks for modality in TASK_MODALITIES[task]}
    media = {name: batch[name] for modality in needed for name in MEDIA_INPUTS[modality] if batch.get(name) is not None}
    available = {modality for modality in needed if MEDIA_INPUTS[modality][0] in media}
    for task in tasks:
        check_task_media(task, available, "the training batch")
    if padding == "official":
        media = _official_masks(media)
    rates = {f"{modality}_rate": rate for modality, rate in rates.items() if modality in needed}
    counts = processor.media_token_counts(media, **rates)
    labels = batch["labels"]
    transcripts = [[token for token in row if token != IGNORE_INDEX] for row in labels.tolist()]
    rows, row_labels = [], []
    for task in tasks:
        task_rows, task_labels = processor.task_rows(task, counts, transcripts)
        rows += task_rows
        row_labels += task_labels
    pad_id = processor.tokenizer.pad_token_id
    input_ids, _ = pad_rows(rows, pad_id, "right")
    packed_labels, _ = pad_rows(row_labels, IGNORE_INDEX, "right")
    first_target = min(len(row) - len(transcript) for row, transcript in zip(rows, transcripts * len(tasks)))
    # Right padding and causal attention: real tokens never see the padding, so no attention mask (as the official
    # code, whose logits at padded positions the parity tests compare too).
    inputs = {
        "input_ids": input_ids.to(labels.device),
        "labels": packed_labels.to(labels.device),
        "task": list(tasks),
        **media,
        **rates,
    }
    return inputs, input_ids.shape[1] - first_target + 1


def _official_masks(media: dict) -> dict:
    """Masks that make every clip as long as the longest: what the official code's padded batches amount to."""
    media = dict(media)
    if "input_features_mask" in media:
        mask = media["input_features_mask"]
        longest = torch.arange(mask.shape[-1], device=mask.device) < mask.sum(-1).max()
        media["input_features_mask"] = longest.to(mask.dtype).expand_as(mask).contiguous()
    if "pixel_values_videos" in media:
        media["video_mask"] = None
    return media


def task_losses(logits: torch.Tensor, labels: torch.LongTensor, tasks: list[str]) -> dict[str, torch.Tensor]:
    """Token-mean cross-entropy of each task's rows (`tasks` split the rows into equal groups), from the logits of the
    last `logits.shape[1]` positions."""
    shift_labels = labels[:, labels.shape[1] - logits.shape[1] + 1 :]
    target_mask = shift_labels != IGNORE_INDEX
    token_losses = F.cross_entropy(logits[:, :-1][target_mask].float(), shift_labels[target_mask], reduction="none")
    rows_per_task = labels.shape[0] // len(tasks)
    token_rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(shift_labels)
    token_tasks = token_rows[target_mask] // rows_per_task
    return {task: token_losses[token_tasks == index].mean() for index, task in enumerate(tasks)}


def matryoshka_step(
    model,
    processor,
    batch,
    tasks: list[str] | None = None,
    audio_rate: int | None = None,
    video_rate: int | None = None,
    padding: str = "masked",
    output_logits: bool = False,
) -> OmniAVSROutput:
    """One efficient-matryoshka forward on a batch of clips and transcripts (`processor(audio=..., videos=...,
    text=...)` without a task): the rates (drawn in training unless given, the finest in eval mode), every task of
    `tasks` (default: the model's) in one LM call, and the weighted loss. `model` may be wrapped (DDP, FSDP,
    DeepSpeed): it is called, never unwrapped, so gradients synchronise."""
    config = (model.module if hasattr(model, "module") else model).config
    tasks = [config.check_task(task) for task in (tasks or config.tasks)]
    check_batch_sizes(
        {name: batch[name].shape[0] for name in ("input_features", "pixel_values_videos", "labels") if batch.get(name) is not None}
    )
    rates = step_rates(config, model.training, audio_rate, video_rate)
    inputs, logits_to_keep = multitask_inputs(processor, batch, tasks, rates, padding)
    labels = inputs.pop("labels")
    outputs = model(**inputs, use_cache=False, logits_to_keep=0 if output_logits else logits_to_keep)
    losses = task_losses(outputs.logits[:, -logits_to_keep:], labels, tasks)
    task_logits = task_labels = None
    if output_logits:
        groups = torch.arange(labels.shape[0], device=labels.device) // (labels.shape[0] // len(tasks))
        task_logits = {task: outputs.logits[groups == index].float() for index, task in enumerate(tasks)}
        task_labels = {task: labels[groups == index] for index, task in enumerate(tasks)}
    return OmniAVSROutput(
        loss=sum(config.task_weight(task) * loss for task, loss in losses.items()),
        **{f"{task}_loss": loss for task, loss in losses.items()},
        audio_rate=inputs.get("audio_rate"),
        video_rate=inputs.get("video_rate"),
        task_logits=task_logits,
        task_labels=task_labels,
    )
