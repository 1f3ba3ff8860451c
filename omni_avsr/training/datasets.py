"""The corpora a training script reads, as its `DataArguments` name them (shared by the training scripts)."""

import logging

import transformers
from transformers import TrainingArguments, set_seed

from ..data.augment import AudioVisualAugmentation
from ..data.lrs import concatenate_lrs_datasets, load_lrs_dataset
from .arguments import DataArguments


def start_run(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Logging at the process's level, the arguments every script needs, and the seed."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if data_args.data_root is None:
        raise ValueError("--data_root is required: the corpus root that holds labels/ and the media folders.")
    set_seed(training_args.seed)


def load_train_dataset(data_args: DataArguments, modalities: tuple[str, ...], seed: int):
    """All --train_labels tables as one dataset, augmented per clip and epoch unless --augment is off."""
    if not data_args.train_labels:
        raise ValueError("--do_train needs --train_labels (label CSVs under ROOT/labels).")
    augmentation = None
    if data_args.augment:
        augmentation = AudioVisualAugmentation(noise_path=data_args.noise_path, snr_levels=data_args.snr_levels())
    return concatenate_lrs_datasets(
        [
            load_lrs_dataset(
                data_args.data_root, labels, modalities=modalities, max_clip_frames=data_args.max_clip_frames,
                augmentation=augmentation, seed=seed,
            )
            for labels in data_args.train_labels
        ]
    )


def load_test_dataset(data_args: DataArguments, modalities: tuple[str, ...]):
    """The --test_labels table, cut to --max_test_samples clips when given."""
    if data_args.test_labels is None:
        raise ValueError("--do_predict needs --test_labels.")
    dataset = load_lrs_dataset(data_args.data_root, data_args.test_labels, modalities=modalities)
    if data_args.max_test_samples is not None:
        dataset = dataset.select(range(min(data_args.max_test_samples, len(dataset))))
    return dataset
