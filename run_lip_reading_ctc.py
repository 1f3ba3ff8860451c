#!/usr/bin/env python
"""Train an AV-HuBERT video encoder as a CTC lip reader, the starting point Omni-AVSR expects for its video path.

The paper's video encoder is AV-HuBERT already fine-tuned for lip reading on LRS3; the demo's video encoder gets the
same head start here, trained on Mini-LRS, before `run_speech_recognition.py` joins it to the LLM (`make lip-reader`
runs this recipe and ships the result as `pretrained/mini_lrs_lip_reader`):

    python run_lip_reading_ctc.py recipes/lip_reader/pretrain.json
    python run_speech_recognition.py recipes/demo/asr_warmup.json   # --video_encoder points at the lip reader

With --do_train the encoder and a linear CTC head over a BPE vocabulary fitted to the training texts are trained with
the `Trainer` (frame-budget batches, augmentation, resumable checkpoints); the folder written holds an
`AVHubertForCTC` that `AVHubertVideoModel.from_pretrained` reads as an encoder. With --do_predict the test split is
decoded greedily and its WER written to lip_reading_results.json; when training too, the test split is also decoded at
every checkpoint, and `lip_reading_curve.jsonl` records the WER against training steps and wall time. A trained lip
reader is evaluated on another corpus with `--model_name_or_path FOLDER --do_predict --data_root CORPUS`.
"""

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import TrainerCallback, WhisperFeatureExtractor

from omni_avsr.command_line import run_script, write_text_atomically
from omni_avsr.configuration_avhubert import AVHubertVideoConfig
from omni_avsr.data.collator import OmniAVSRDataCollator
from omni_avsr.modeling_avhubert import AVHubertForCTC
from omni_avsr.processing_omni_avsr import OmniAVSRProcessor
from omni_avsr.training.arguments import (
    DataArguments,
    LipReaderArguments,
    OmniAVSRTrainingArguments,
    parse_recipe_and_flags,
)
from omni_avsr.training.checkpoints import checkpoint_to_resume
from omni_avsr.training.datasets import (
    check_label_texts,
    load_test_dataset,
    load_train_dataset,
    start_run,
    test_data_root,
)
from omni_avsr.training.evaluation import word_error_rate
from omni_avsr.training.tokenizer import train_bpe_tokenizer
from omni_avsr.training.trainer import OmniAVSRTrainer


logger = logging.getLogger(__name__)


CURVE_FILE = "lip_reading_curve.jsonl"
ARGUMENTS_FILE = "run_arguments.json"  # every argument of the training run, for the model card


def build_lip_reader(model_args: LipReaderArguments, training_texts: list[str] | None, resume_folder: str | None):
    """A CTC lip reader and its processor: reloaded from `resume_folder` (a checkpoint keeps the BPE its head was
    trained with), else from --model_name_or_path, else a new head over a BPE fitted to `training_texts`."""
    for folder in (resume_folder, model_args.model_name_or_path):
        if folder is not None and (Path(folder) / "tokenizer.json").exists():
            return AVHubertForCTC.from_pretrained(folder), OmniAVSRProcessor.from_pretrained(folder)
    if model_args.model_name_or_path is not None:
        raise ValueError(
            f"--model_name_or_path {model_args.model_name_or_path} is not a trained lip reader: expected a folder with "
            "config.json, model.safetensors and tokenizer.json (the output of this script)."
        )
    if model_args.video_encoder is None:
        raise ValueError("--video_encoder is required: an AVHubertVideoConfig .json or an AVHubertVideoModel folder.")
    if not training_texts:
        raise ValueError("A new lip reader needs --do_train with --train_labels: its BPE is fitted to their texts.")
    tokenizer = OmniAVSRProcessor.prepare_tokenizer(train_bpe_tokenizer(training_texts, model_args.tokenizer_vocab_size))
    head = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if model_args.video_encoder.endswith(".json"):
        config = AVHubertVideoConfig.from_dict({**json.loads(Path(model_args.video_encoder).read_text()), **head})
        model = AVHubertForCTC(config)
    else:
        model = AVHubertForCTC.from_pretrained(model_args.video_encoder, **head)
    return model, OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)


@torch.no_grad()
def lip_reading_wer(
    model: AVHubertForCTC, processor: OmniAVSRProcessor, dataset, batch_size: int, progress: bool = True
) -> dict:
    """Greedy CTC decoding of `dataset`: its WER and every clip's transcript."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=OmniAVSRDataCollator(processor))
    hypotheses = []
    for batch in tqdm(loader, desc="lip reading", disable=not progress):
        logits = model(batch["pixel_values_videos"], video_mask=batch["video_mask"]).logits
        hypotheses += processor.tokenizer.batch_decode(model.greedy_decode(logits, batch["video_mask"]))
    table = dataset.with_format(None)
    transcripts = [
        {"clip": clip, "reference": reference, "hypothesis": hypothesis}
        for clip, reference, hypothesis in zip(table["rel_path"], table["text"], hypotheses)
    ]
    wer, num_words = word_error_rate(table["text"], hypotheses)
    return {"wer": wer, "num_words": num_words, "num_clips": len(transcripts), "transcripts": transcripts}


class LipReadingCurve(TrainerCallback):
    """Decodes the test split at every checkpoint and appends `{"step", "seconds", "wer"}` to `lip_reading_curve.jsonl`:
    the lip reader's WER against training time. `seconds` is training wall time, carried over when a run resumes."""

    def __init__(self, processor, test_dataset, batch_size: int, output_dir: str):
        self.processor, self.test_dataset, self.batch_size = processor, test_dataset, batch_size
        self.path = Path(output_dir) / CURVE_FILE
        self.start = self.seconds_before = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        if self.path.is_file() and state.global_step > 0:
            points = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            earlier = [point for point in points if point["step"] <= state.global_step]
            self.seconds_before = earlier[-1]["seconds"] if earlier else 0.0
            self.path.write_text("".join(json.dumps(point) + "\n" for point in earlier))

    def on_save(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        seconds = self.seconds_before + time.perf_counter() - self.start
        evaluation_start = time.perf_counter()
        results = lip_reading_wer(model, self.processor, self.test_dataset, self.batch_size, progress=False)
        model.train()
        point = {"step": state.global_step, "seconds": round(seconds, 1), "wer": round(results["wer"], 2)}
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(point) + "\n")
        # Decoding is not training: leave its time out of the curve.
        self.start += time.perf_counter() - evaluation_start


def main():
    model_args, data_args, training_args = parse_recipe_and_flags(
        (LipReaderArguments, DataArguments, OmniAVSRTrainingArguments)
    )
    start_run(data_args, training_args)

    train_dataset = None
    if training_args.do_train:
        train_dataset = load_train_dataset(data_args, ("video",), training_args.seed)
    checkpoint = checkpoint_to_resume(training_args) if training_args.do_train else None
    training_texts = train_dataset.with_format(None)["text"] if train_dataset is not None else None
    # Evaluation alone reads --model_name_or_path, else the model this output folder holds.
    evaluated = model_args.model_name_or_path or training_args.output_dir
    model, processor = build_lip_reader(model_args, training_texts, checkpoint if training_args.do_train else evaluated)
    test_dataset = load_test_dataset(data_args, ("video",)) if training_args.do_predict else None
    callbacks = []
    if training_args.do_train and test_dataset is not None:
        callbacks.append(
            LipReadingCurve(processor, test_dataset, data_args.decode_batch_size, training_args.output_dir)
        )
    if training_args.do_train:
        check_label_texts(processor, data_args, data_args.train_labels)

    trainer = OmniAVSRTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=OmniAVSRDataCollator(processor),
        processing_class=processor,
        max_frames_per_batch=data_args.max_frames_per_batch,
        max_clips_per_batch=data_args.max_clips_per_batch,
        callbacks=callbacks,
    )
    if training_args.do_train:
        if trainer.is_world_process_zero():
            arguments = {**asdict(model_args), **asdict(data_args), **training_args.to_dict()}
            Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
            write_text_atomically(Path(training_args.output_dir, ARGUMENTS_FILE), json.dumps(arguments, indent=1))
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_final_model(result)

    if training_args.do_predict and trainer.is_world_process_zero():
        results = lip_reading_wer(trainer.model, processor, test_dataset, data_args.decode_batch_size)
        results = {"data_root": test_data_root(data_args), "test_labels": data_args.test_labels, **results}
        Path(training_args.output_dir, "lip_reading_results.json").write_text(json.dumps(results, indent=2))
        print(f"CTC lip reading, greedy: WER {results['wer']:.1f} % on {results['num_words']} words")


if __name__ == "__main__":
    sys.exit(run_script(main, "run_lip_reading_ctc.py"))
