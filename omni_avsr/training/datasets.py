"""The corpora a training script reads, as its `DataArguments` name them (shared by the training scripts)."""

import logging

import transformers
from transformers import TrainingArguments, set_seed

from ..command_line import available_cpus, prepare_output_dir
from ..data.augment import AudioVisualAugmentation
from ..data.lrs import concatenate_lrs_datasets, load_lrs_dataset, read_label_texts, use_frame_cache
from ..media import MAX_CLIP_SECONDS, VIDEO_FPS
from ..segmentation import MIN_SEGMENT_SECONDS
from .arguments import DataArguments


def start_run(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Logging at the process's level, the arguments every script needs (checked before any work: a missing corpus
    root, an --output_dir that cannot be a folder), and the seed."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if data_args.data_root is None:
        raise ValueError("--data_root is required: the corpus root that holds labels/ and the media folders.")
    prepare_output_dir(training_args.output_dir, "--output_dir")
    set_seed(training_args.seed)


def check_label_texts(processor, data_args: DataArguments, label_files: list[str]) -> None:
    """Refuse, before training starts, a transcript of `label_files` that the processor's tokenizer cannot represent,
    naming its file and line: it would train on `<unk>` labels to the end without a word. A tokenizer without an
    unknown token (byte-level: Llama 3, Qwen2) represents every text, and is not run over the labels."""
    if processor.tokenizer.unk_token_id is None:
        return
    for label_file in label_files:
        rows = list(read_label_texts(data_args.data_root, label_file, data_args.lowercase_text))
        if rows:
            processor.transcript_ids([text for _, text in rows], [where for where, _ in rows])


def load_train_dataset(data_args: DataArguments, modalities: tuple[str, ...], seed: int):
    """All --train_labels tables as one dataset, augmented per clip and epoch unless --augment is off."""
    if not data_args.train_labels:
        raise ValueError("--do_train needs --train_labels (label CSVs under ROOT/labels).")
    augmentation = None
    if data_args.augment:
        video_options = {} if data_args.augment_video else {"crop_size": None, "video_mask_window": 0}
        augmentation = AudioVisualAugmentation(
            noise_path=data_args.noise_path, snr_levels=data_args.snr_levels(), **video_options
        )
    dataset = concatenate_lrs_datasets(
        [
            load_lrs_dataset(
                data_args.data_root, labels, modalities=modalities, max_clip_frames=data_args.max_clip_frames,
                augmentation=augmentation, seed=seed, lowercase=data_args.lowercase_text,
            )
            for labels in data_args.train_labels
        ]
    )
    return with_frame_cache(dataset, data_args, modalities)


def load_test_dataset(data_args: DataArguments, modalities: tuple[str, ...]):
    """The --test_labels table, cut to --max_test_samples clips when given."""
    if data_args.test_labels is None:
        raise ValueError("--do_predict needs --test_labels.")
    dataset = load_lrs_dataset(
        test_data_root(data_args), data_args.test_labels, modalities=modalities, lowercase=data_args.lowercase_text
    )
    if data_args.max_test_samples is not None:
        dataset = dataset.select(range(min(data_args.max_test_samples, len(dataset))))
    return with_frame_cache(dataset, data_args, modalities)


def training_segment_seconds(dataset) -> float:
    """The duration of a table's longest clip (within the segment lengths the pipelines accept): what a model trained
    on it reads at once, which the processor records as the longest segment a long recording is cut into."""
    seconds = max(dataset.with_format(None)["num_frames"]) / VIDEO_FPS
    return min(max(seconds, MIN_SEGMENT_SECONDS), MAX_CLIP_SECONDS)


def video_is_augmented(data_args: DataArguments) -> bool:
    return data_args.augment and data_args.augment_video


def test_data_root(data_args: DataArguments) -> str:
    """The corpus root of the test labels: --test_data_root, else --data_root."""
    return data_args.test_data_root or data_args.data_root


def with_frame_cache(dataset, data_args: DataArguments, modalities: tuple[str, ...]):
    """The dataset reading its frames from the --frame_cache_dir cache (built first when needed)."""
    if data_args.frame_cache_dir is not None and "video" in modalities:
        use_frame_cache(dataset, data_args.frame_cache_dir, workers=available_cpus())
    return dataset
