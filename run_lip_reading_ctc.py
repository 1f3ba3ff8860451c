#!/usr/bin/env python
"""Train an AV-HuBERT video encoder as a CTC lip reader, the starting point Omni-AVSR expects for its video path.

The paper's video encoder is AV-HuBERT already fine-tuned for lip reading on LRS3; a from-scratch encoder (the demo's,
on Mini-LRS) gets the same head start here before `run_speech_recognition.py` joins it to the LLM:

    python run_lip_reading_ctc.py recipes/demo/lip_reader.json
    python run_speech_recognition.py recipes/demo_omni_avsr_st.json   # --video_encoder points at the output folder

With --do_train the encoder and a linear CTC head over a BPE vocabulary fitted to the training texts are trained with
the `Trainer` (frame-budget batches, augmentation, resumable checkpoints); the folder written holds an
`AVHubertForCTC` that `AVHubertVideoModel.from_pretrained` reads as an encoder. With --do_predict the test split is
decoded greedily and its WER written to lip_reading_results.json.
"""

import json
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import WhisperFeatureExtractor

from omni_avsr.command_line import run_script
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
from omni_avsr.training.datasets import check_label_texts, load_test_dataset, load_train_dataset, start_run
from omni_avsr.training.evaluation import word_error_rate
from omni_avsr.training.tokenizer import train_bpe_tokenizer
from omni_avsr.training.trainer import OmniAVSRTrainer


logger = logging.getLogger(__name__)


def build_lip_reader(model_args: LipReaderArguments, training_texts: list[str] | None, resume_folder: str | None):
    """A CTC lip reader and its processor: reloaded from `resume_folder` (a checkpoint keeps the BPE its head was
    trained with), or a new head over a BPE fitted to `training_texts`."""
    if resume_folder is not None and (Path(resume_folder) / "tokenizer.json").exists():
        return AVHubertForCTC.from_pretrained(resume_folder), OmniAVSRProcessor.from_pretrained(resume_folder)
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
def lip_reading_wer(model: AVHubertForCTC, processor: OmniAVSRProcessor, dataset, batch_size: int) -> dict:
    """Greedy CTC decoding of `dataset`; its WER and a few transcripts."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=OmniAVSRDataCollator(processor))
    hypotheses = []
    for batch in tqdm(loader, desc="lip reading"):
        logits = model(batch["pixel_values_videos"], video_mask=batch["video_mask"]).logits
        hypotheses += processor.tokenizer.batch_decode(model.greedy_decode(logits, batch["video_mask"]))
    references = dataset.with_format(None)["text"]
    wer, num_words = word_error_rate(references, hypotheses)
    examples = [{"reference": ref, "hypothesis": hyp} for ref, hyp in zip(references[:5], hypotheses[:5])]
    return {"wer": wer, "num_words": num_words, "examples": examples}


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
    model, processor = build_lip_reader(
        model_args, training_texts, checkpoint if training_args.do_train else training_args.output_dir
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
    )
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_final_model(result)

    if training_args.do_predict and trainer.is_world_process_zero():
        test_dataset = load_test_dataset(data_args, ("video",))
        results = lip_reading_wer(trainer.model, processor, test_dataset, data_args.decode_batch_size)
        Path(training_args.output_dir, "lip_reading_results.json").write_text(json.dumps(results, indent=2))
        print(f"CTC lip reading, greedy: WER {results['wer']:.1f} % on {results['num_words']} words")


if __name__ == "__main__":
    sys.exit(run_script(main, "run_lip_reading_ctc.py"))
