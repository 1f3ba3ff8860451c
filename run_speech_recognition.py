#!/usr/bin/env python
"""Train and evaluate Omni-AVSR (ASR, VSR and AVSR at elastic compression rates) with the `Trainer`.

Examples:

    # The demo's last two steps (`make demo` runs them after building the corpus and the encoders): an ASR warm-up
    # of a from-scratch LM, then all tasks, and the WER tables:
    python run_speech_recognition.py recipes/demo/asr_warmup.json
    python run_speech_recognition.py recipes/demo_omni_avsr_st.json

    # Evaluate an Omni-AVSR folder on LRS3's test set, clean and in babble noise, beam 15:
    python run_speech_recognition.py --model_name_or_path ckpt --data_root LRS3 --test_labels lrs3_test.csv \
        --do_predict --eval_snrs 5 0 -5 --noise_path babble.wav --output_dir results

    # Two processes (gloo on CPU, NCCL on GPUs); also works with `accelerate launch`:
    torchrun --nproc_per_node 2 run_speech_recognition.py recipes/demo_omni_avsr_st.json --output_dir runs/ddp

With --do_train the model is trained with efficient matryoshka (one sampled audio and video rate per step, all
tasks or --train_tasks) on length-bucketed batches; --do_eval reports the validation loss of every task at the finest rates;
--do_predict decodes the test set for every task × rate (× SNR) and writes results.json, results.md and
wer_vs_tokens.png into --output_dir.
"""

import json
import logging
import sys
from pathlib import Path

from omni_avsr.checkpoint_weights import check_checkpoint_weights
from omni_avsr.command_line import run_script, write_text_atomically
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.configuration_omni_avsr import TASK_MODALITIES, TASKS, OmniAVSRConfig
from omni_avsr.data.lrs import load_lrs_dataset
from omni_avsr.media import load_audio
from omni_avsr.training.arguments import (
    DataArguments,
    ModelArguments,
    OmniAVSRTrainingArguments,
    parse_recipe_and_flags,
)
from omni_avsr.training.assembly import build_model_and_processor
from omni_avsr.training.checkpoints import checkpoint_to_resume
from omni_avsr.training.datasets import (
    check_label_texts,
    load_test_dataset,
    load_train_dataset,
    start_run,
    test_data_root,
    training_segment_seconds,
    video_is_augmented,
)
from omni_avsr.training.encoder_cache import cache_frozen_video_encoder
from omni_avsr.training.policy import apply_training_policy, warn_of_an_earlier_policy
from omni_avsr.training.quantization import quantize_language_model
from omni_avsr.training.evaluation import evaluate_wer, evaluation_cells, measurement_record, write_report
from omni_avsr.training.trainer import OmniAVSRTrainer


logger = logging.getLogger(__name__)


def model_modalities(model_args: ModelArguments) -> tuple[str, ...]:
    """The media the model reads, known before it is built so that datasets decode nothing else."""
    if model_args.model_name_or_path is not None:
        config = OmniAVSRConfig.from_pretrained(model_args.model_name_or_path)
        return tuple(modality for modality in ("audio", "video") if config.has_modality(modality))
    sources = {"audio": model_args.audio_encoder, "video": model_args.video_encoder}
    return tuple(modality for modality, source in sources.items() if source is not None)


def check_train_tasks(model_args: ModelArguments, train_tasks: list[str] | None, modalities: tuple[str, ...]) -> None:
    """Refuse `--train_tasks` the model will not have (its folder's tasks, `--tasks`, or those its encoders allow)
    before any work, rather than at the first training step."""
    if not train_tasks:
        return
    if model_args.model_name_or_path is not None:
        source = model_args.model_name_or_path
        tasks = OmniAVSRConfig.from_pretrained(source).tasks
    elif model_args.tasks is not None:
        tasks, source = model_args.tasks, "--tasks"
    else:
        tasks = [task for task in TASKS if set(TASK_MODALITIES[task]) <= set(modalities)]
        source = "the encoders given (--audio_encoder, --video_encoder)"
    extra = [task for task in train_tasks if task not in tasks]
    if extra:
        raise ValueError(
            f"--train_tasks {train_tasks}: {extra} not among the model's tasks {list(tasks)} (from {source}); expected "
            "some of them."
        )


def main():
    model_args, data_args, training_args = parse_recipe_and_flags(
        (ModelArguments, DataArguments, OmniAVSRTrainingArguments)
    )
    start_run(data_args, training_args)
    used = model_modalities(model_args)
    if training_args.do_train:
        check_train_tasks(model_args, training_args.train_tasks, used)

    train_dataset = None
    if training_args.do_train:
        train_modalities = used
        if training_args.train_tasks:
            # Decode only what the trained tasks read (an ASR warm-up needs no video).
            needed = {modality for task in training_args.train_tasks for modality in TASK_MODALITIES[task]}
            train_modalities = tuple(modality for modality in used if modality in needed)
        train_dataset = load_train_dataset(data_args, train_modalities, training_args.seed)

    training_texts = train_dataset.with_format(None)["text"] if train_dataset is not None else None
    model, processor = build_model_and_processor(model_args, training_texts)
    if train_dataset is not None:
        processor.segment_seconds = training_segment_seconds(train_dataset)
    evaluates = data_args.eval_labels is not None and (training_args.do_eval or training_args.eval_strategy != "no")
    # The transcripts that become labels: one the tokenizer cannot represent is refused now, naming its line.
    label_files = data_args.train_labels if training_args.do_train else []
    check_label_texts(processor, data_args, [*label_files, *([data_args.eval_labels] if evaluates else [])])
    apply_training_policy(model, training_args)
    if training_args.do_train and model_args.model_name_or_path is not None:
        warn_of_an_earlier_policy(model_args.model_name_or_path, training_args)
    # bitsandbytes quantises when the weights reach their device: move the model there first.
    quantize_language_model(model.to(training_args.device), model_args.quantize_language_model)
    logger.info(
        "Omni-AVSR-%s, tasks %s, audio rates %s, video rates %s: %.2f M trainable of %.1f M parameters",
        model.config.lora_variant, model.config.tasks, model.config.audio_rates, model.config.video_rates,
        sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )

    video_tower = model.video_tower
    frozen_video = video_tower is not None and not any(param.requires_grad for param in video_tower.parameters())
    if training_args.do_train and "video" in train_modalities and frozen_video and not video_is_augmented(data_args):
        cache_frozen_video_encoder(video_tower)
        logger.info("The video encoder is frozen and its input not augmented: each clip is encoded once per run.")

    eval_dataset = None
    if evaluates:
        eval_dataset = load_lrs_dataset(
            data_args.data_root, data_args.eval_labels, modalities=used, lowercase=data_args.lowercase_text
        )

    trainer = OmniAVSRTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=OmniAVSRDataCollator(processor),
        processing_class=processor,
        max_frames_per_batch=data_args.max_frames_per_batch,
        max_clips_per_batch=data_args.max_clips_per_batch,
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
        if training_args.world_size > 1:
            fingerprint = trainer.check_replicas_in_sync()
            logger.warning("Rank %d: DDP replicas identical, weight fingerprint %s", training_args.process_index, fingerprint)
        trainer.save_final_model(result)

    if training_args.do_eval and eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    if training_args.do_predict and trainer.is_world_process_zero():
        if not training_args.do_train:
            # A WER of randomly initialised weights (a folder whose config does not describe them) would read as real.
            check_checkpoint_weights(trainer.model)
        predict(trainer.model, processor, data_args, training_args, used)


def predict(model, processor, data_args: DataArguments, training_args, used_modalities):
    """Decode the test set for every task × rate (× SNR) and write the WER tables and plot."""
    test_dataset = load_test_dataset(data_args, used_modalities)
    noise = load_audio(data_args.noise_path) if data_args.noise_path is not None else None
    cells = evaluation_cells(model.config, [None, *data_args.eval_snrs], data_args.eval_tasks)
    decoding = {"num_beams": data_args.num_beams, "max_new_tokens": data_args.max_new_tokens}
    measured_on = measurement_record(
        test_dataset, test_data_root(data_args), data_args.test_labels, "test", model.name_or_path or training_args.output_dir,
        decoding, noise_path=data_args.noise_path if data_args.eval_snrs else None, noise_seed=training_args.seed,
    )
    rows = evaluate_wer(
        model, processor, test_dataset, cells, noise=noise, batch_size=data_args.decode_batch_size,
        num_workers=training_args.dataloader_num_workers, seed=training_args.seed,
        output_dir=training_args.output_dir, measured_on=measured_on, **decoding,
    )
    markdown = write_report(rows, training_args.output_dir)
    floor_file = Path(test_data_root(data_args)) / "lip_reading_floor.json"
    if floor_file.exists():
        floor = json.loads(floor_file.read_text())
        markdown += f"\nLip-reading floor of this corpus (best possible VSR WER from the visemes): {floor['wer_percent']:.1f} %\n"
        write_text_atomically(Path(training_args.output_dir) / "results.md", markdown)
    print(markdown)
    print(f"Plot: {Path(training_args.output_dir) / 'wer_vs_tokens.png'}")


if __name__ == "__main__":
    sys.exit(run_script(main, "run_speech_recognition.py"))
