"""`Trainer` for Omni-AVSR: frame-budget batches, per-task loss logging, a replica check after DDP training."""

import hashlib
from collections import defaultdict
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import seed_worker

from ..command_line import write_text_atomically
from ..configuration_omni_avsr import TASKS
from ..data.lrs import set_augmentation_epoch
from ..data.sampler import FrameBudgetBatchSampler
from .matryoshka import matryoshka_step
from .policy import keep_frozen_encoders_in_eval_mode


TRAINING_ARGS_FILE = "training_args.json"


class AugmentationEpochBatchSampler(FrameBudgetBatchSampler):
    """Frame-budget batches that also move the dataset's augmentation to the new epoch.

    `Trainer` only tells the batch sampler when an epoch starts; the augmentation seeds live in the dataset's
    transform and must follow, so that an epoch's augmentation (and a resumed run's) is reproducible.
    """

    def __init__(self, dataset, max_frames: int, **kwargs):
        lengths = dataset.with_format("numpy", columns=["num_frames"])[:]["num_frames"]
        super().__init__(lengths, max_frames, **kwargs)
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.dataset.format["format_kwargs"].get("transform") is not None:
            set_augmentation_epoch(self.dataset, epoch)


class OmniAVSRTrainer(Trainer):
    """A `Trainer` whose training batches hold at most `max_frames_per_batch` video frames (the reference's
    length-bucketed batching; `per_device_train_batch_size` is not used for training) and whose logs carry the
    per-task losses next to the weighted total. `args.train_tasks` restricts the tasks trained (all by default).

    Each batch (clips and transcripts, `OmniAVSRDataCollator`) is one efficient-matryoshka step
    (`omni_avsr.training.matryoshka`): one rate pair, the encoders once, all tasks in one LM call with adapters routed
    per row, so one backward gives every adapter its gradient (also under activation checkpointing).
    """

    def __init__(self, *args, max_frames_per_batch: int = 1500, max_clips_per_batch: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_frames_per_batch = max_frames_per_batch
        self.max_clips_per_batch = max_clips_per_batch
        self._task_loss_sums = defaultdict(float)
        self._task_loss_counts = defaultdict(int)

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("OmniAVSRTrainer: training requires a train_dataset.")
        batch_sampler = AugmentationEpochBatchSampler(
            self.train_dataset,
            self.max_frames_per_batch,
            max_batch_size=self.max_clips_per_batch,
            seed=self.args.seed,
            num_replicas=self.args.world_size,
            rank=self.args.process_index,
        )
        num_workers = self.args.dataloader_num_workers
        dataloader = DataLoader(
            self.train_dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.data_collator,
            num_workers=num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            worker_init_fn=partial(seed_worker, num_workers=num_workers, rank=self.args.process_index),
        )
        dataloader = self.accelerator.prepare(dataloader)
        # The sampler already gives each rank its own batches: keep accelerate from sharding them a second time.
        prepared = getattr(dataloader, "batch_sampler", None)
        if prepared is not None and getattr(prepared, "batch_sampler", None) is batch_sampler:
            prepared.num_processes = 1
            prepared.process_index = 0
        return dataloader

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        if unwrapped.config.model_type == "omni_avsr":
            if model.training:
                keep_frozen_encoders_in_eval_mode(unwrapped, self.args.freeze_audio_encoder, self.args.freeze_video_encoder)
            tasks = self.args.train_tasks if model.training else None
            outputs = matryoshka_step(model, self.processing_class, inputs, tasks=tasks, padding=self.args.train_padding)
        else:  # the CTC lip reader (run_lip_reading_ctc.py): its own loss
            outputs = model(**inputs)
        if model.training:
            for task in TASKS:
                task_loss = outputs.get(f"{task}_loss")
                if task_loss is not None:
                    self._task_loss_sums[task] += float(task_loss.detach())
                    self._task_loss_counts[task] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for task, count in self._task_loss_counts.items():
                logs[f"{task}_loss"] = round(self._task_loss_sums[task] / count, 4)
            self._task_loss_sums.clear()
            self._task_loss_counts.clear()
        super().log(logs, start_time)

    def save_final_model(self, train_output) -> None:
        """The trained model with its processor (`save_model` writes both, so the folder loads on its own), the
        training metrics, the trainer state and the training arguments as JSON (`training_args.json`: the training
        policy the model card states, which the model's config does not hold) into `output_dir`."""
        self.save_model()
        self.log_metrics("train", train_output.metrics)
        self.save_metrics("train", train_output.metrics)
        self.save_state()
        if self.is_world_process_zero():
            write_text_atomically(Path(self.args.output_dir) / TRAINING_ARGS_FILE, self.args.to_json_string())

    def check_replicas_in_sync(self) -> str:
        """Fingerprint of all parameters, compared across processes: DDP replicas must end identical.

        Returns the fingerprint; raises if another process holds different parameters (a sign of a broken gradient
        sync, e.g. parameters that some ranks never used). Buffers are left out: BatchNorm running statistics of an
        unfrozen video encoder follow each rank's last batch (DDP broadcasts rank 0's at every forward).
        """
        digest = hashlib.sha256()
        for name, param in self.accelerator.unwrap_model(self.model).named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        fingerprint = digest.hexdigest()
        if self.args.world_size > 1:
            fingerprints = [None] * self.args.world_size
            torch.distributed.all_gather_object(fingerprints, fingerprint)
            if len(set(fingerprints)) > 1:
                raise RuntimeError(f"DDP replicas diverged: weight fingerprints per rank {fingerprints}.")
        return fingerprint
