"""What Omni-AVSR costs as the LLM grows: parameters, FLOPs and memory per GPU for every backbone of the paper.

Every model is built on the meta device (shapes, no weights) from its published config (`omni_avsr.presets`), with
the paper's encoders (Whisper-medium, AV-HuBERT Large), rates and Omni-LoRA, and its own modules run on meta
tensors at the training forward's shapes. Nothing is a hand formula:

- **parameters**: counted on the meta-built model, for S, T and ST (total and trainable);
- **FLOPs**: torch's `FlopCounterMode`: one training step (forward + backward; the encoders, `project_media`, the LM
  with Omni-LoRA routed per task group, the LM head on target tokens only) on a batch of `--batch-frames` video
  frames at (4,2) and (16,5), and decoding one `--utterance-seconds` clip (encoders, prompt prefill, greedy steps);
- **memory per GPU of a training step**: `common.PeakMemory` (live tensor bytes): weights bf16, LoRA and projectors
  fp32 with their fp32 gradients and AdamW states, the activations autograd keeps, with and without activation
  checkpointing; from it the plans for one GPU (bf16, or the LLM's linear layers in NF4) and for `--gpus` GPUs
  with everything resident FSDP-sharded.

`--measure tiny mid` runs the real training step (`omni_step`) on this CPU next to the meta count of the same step
(FLOPs and peak bytes), which is how the count is checked; it is then made at each size, extrapolated nowhere.

    python benchmarks/bench_scaling.py                              # every backbone (~10 CPU-minutes)
    python benchmarks/bench_scaling.py --backbones llama-3.1-8b     # one, with the Llama-MTSK cross-check
    python benchmarks/bench_scaling.py --merge a.json b.json        # one report from runs made one by one
    python benchmarks/bench_scaling.py --smoke --measure tiny       # the tiny model, meta count against real

Prints one JSON object on stdout, then markdown tables on stderr.
"""

import argparse
import contextlib
import json
import time
from pathlib import Path
from unittest import mock

import torch
import torch.fx.experimental._config
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, DynamicCache, masking_utils

from bench_gpu import paper_batch
from bench_training import omni_step, to_frozen_bf16
from common import (
    CPU_ATTENTION_FLOPS,
    PeakMemory,
    build_config,
    build_model,
    build_processor,
    cast_media,
    count_flops,
    current_rss_mb,
    emit,
    finish_machine_info,
    format_table,
    machine_info,
    peak_rss_mb,
    reset_peak_rss,
)
from omni_avsr import OmniAVSRForConditionalGeneration
from omni_avsr.configuration_omni_avsr import TASK_MODALITIES
from omni_avsr.modeling_omni_avsr import compressed_length
from omni_avsr.processing_omni_avsr import SequenceTokens
from omni_avsr.media import VIDEO_FPS
from omni_avsr.presets import BACKBONES, backbone, paper_config
from omni_avsr.training.policy import freeze, keep_frozen_encoders_in_eval_mode


AUDIO_FRAMES_PER_S = 50
# Llama-MTSK (arXiv 2503.06362) reports TFLOPs per utterance of its Llama-3.1-8B AVSR model at these rate pairs.
MTSK_REPORTED_TFLOPS = {"4,2": 3.87, "16,5": 1.33}
GPU_MEMORY_GB = 80
# Share of a GPU's memory a step may plan on: the CUDA context, NCCL buffers and allocator fragmentation take the rest.
USABLE_SHARE = 0.9
# bitsandbytes NF4 with double quantisation: 4 bits per weight plus ~0.127 bits of block scales.
NF4_BYTES_PER_WEIGHT = (4 + 0.127) / 8


def task_row_length(config, task: str, media_tokens: dict, transcript_tokens: int) -> int:
    """Tokens of one training row of `task`: the prompt laid out with the config's ids, then the transcript."""
    prompt = SequenceTokens.from_config(config).prompt_ids(task, media_tokens.get("audio", 0), media_tokens.get("video", 0))
    return len(prompt) + transcript_tokens


def meta_inputs(config, clips: int, seconds: float) -> dict:
    """Processor-shaped media on the meta device, in bf16 as the frozen encoders take them: the Whisper window and
    `seconds` of 88×88 lip frames per clip."""
    video_frames = round(seconds * VIDEO_FPS)
    window = 2 * config.audio_config.max_source_positions
    media = dict(device="meta", dtype=torch.bfloat16)
    return {
        "input_features": torch.empty(clips, config.audio_config.num_mel_bins, window, **media),
        "pixel_values_videos": torch.empty(clips, video_frames, 1, 88, 88, **media),
        "video_mask": torch.ones(clips, video_frames, dtype=torch.long, device="meta"),
    }


def encode_and_project(model, inputs: dict, seconds: float, rates: dict, grad: bool) -> dict:
    """The training forward's media path on meta tensors: each encoder once (frozen ones without autograd), then
    `project_media` at the rate; returns each modality's projected tokens (a clip's tail shorter than the rate is
    padding after `project_media`, and is not merged into the LM rows)."""
    inner = model.model
    clips = inputs["input_features"].shape[0]
    projected = {}
    with torch.set_grad_enabled(grad):
        audio = inner.audio_tower(inputs["input_features"].to(inner.audio_tower.dtype))
    frames = round(seconds * AUDIO_FRAMES_PER_S)
    audio.last_hidden_state = audio.last_hidden_state[:, :frames]
    lengths = torch.full((clips,), frames, device="meta")
    with torch.set_grad_enabled(grad):
        tokens = compressed_length(frames, rates["audio"])
        projected["audio"] = inner.project_media("audio", audio, lengths, rates["audio"]).pooler_output[:, :tokens]
        pixels = inputs["pixel_values_videos"].to(inner.video_tower.dtype)
        video = inner.video_tower(pixels, video_mask=inputs["video_mask"], return_dict=True)
        lengths = torch.full((clips,), pixels.shape[1], device="meta")
        tokens = compressed_length(pixels.shape[1], rates["video"])
        projected["video"] = inner.project_media("video", video, lengths, rates["video"]).pooler_output[:, :tokens]
    return projected


def lm_rows(model, projected: dict, tasks, transcript_tokens: int) -> tuple[torch.Tensor, int]:
    """`inputs_embeds` of the one LM call of a training step: one row group per task, each row its media tokens and
    text embeddings, right-padded to the longest row (as `omni_avsr.training.matryoshka` lays them out); and the
    positions the LM head runs on (`logits_to_keep`: from the first that predicts a transcript token)."""
    config = model.config
    clips = projected["audio"].shape[0]
    counts = {modality: value.shape[1] for modality, value in projected.items()}
    lengths = {
        task: task_row_length(config, task, {m: counts[m] for m in TASK_MODALITIES[task]}, transcript_tokens)
        for task in tasks
    }
    longest = max(lengths.values())
    embed = model.model.get_input_embeddings()
    groups = []
    for task in tasks:
        media = [projected[modality].to(embed.weight.dtype) for modality in TASK_MODALITIES[task]]
        text_tokens = longest - sum(part.shape[1] for part in media)
        text = embed(torch.zeros(clips, text_tokens, dtype=torch.long, device="meta"))
        groups.append(torch.cat([*media, text], dim=1))
    return torch.cat(groups), longest - (min(lengths.values()) - transcript_tokens) + 1


def training_step(model, inputs: dict, seconds: float, rates: dict, transcript_tokens: int) -> None:
    """Forward + backward of one efficient-matryoshka step at one rate pair, on meta tensors."""
    tasks = model.config.tasks
    projected = encode_and_project(model, inputs, seconds, rates, grad=True)
    inputs_embeds, logits_to_keep = lm_rows(model, projected, tasks, transcript_tokens)
    model.model.route_adapters(tasks, inputs_embeds.shape[0])
    hidden = model.model.language_model(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state
    # The LM head runs on the last `logits_to_keep` positions of every row, as in the training step.
    logits = model.lm_head(hidden[:, -logits_to_keep:]).float().flatten(0, 1)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device="meta")
    F.cross_entropy(logits, labels).backward()


# ----- running the model's modules on meta tensors ----------------------------------------------------------


def cpu_flash_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """SDPA as it runs on real CPU tensors (the flash kernel: GQA without repeating K/V, only the output and its
    log-sum-exp kept for backward, as FlashAttention on a GPU). On meta tensors SDPA would take its math path and
    keep the full attention matrix."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )[0]


@contextlib.contextmanager
def meta_execution():
    """Run the model on meta tensors, where no value can be read: boolean-mask indexing (AV-HuBERT's front-end) keeps
    every frame, the attention mask of a batch without padding is skipped and rows are not packed sequences (what
    transformers finds on real tensors by reading them). All hold here: every clip has the same length, so nothing
    is padding, and each row's positions count from 0. Attention takes the kernel real CPU tensors take."""
    with (
        torch.fx.experimental._config.patch(meta_nonzero_assume_all_nonzero=True),
        mock.patch.object(masking_utils, "_ignore_bidirectional_mask_sdpa", lambda *args, **kwargs: True),
        mock.patch.object(masking_utils, "find_packed_sequence_indices", lambda *args, **kwargs: None),
        mock.patch.object(F, "scaled_dot_product_attention", cpu_flash_attention),
    ):
        yield


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)


def build_meta_model(config, checkpointing: bool = False) -> OmniAVSRForConditionalGeneration:
    """The model without weights: frozen parts bf16, trained parts (LoRA, projectors) fp32, in training mode."""
    with torch.device("meta"):
        model = OmniAVSRForConditionalGeneration(config)
    return prepare_for_training(model, checkpointing)


def prepare_for_training(model, checkpointing: bool):
    """The paper's training policy (frozen encoders and LM, in eval mode for the encoders), bf16 frozen weights."""
    freeze(model)
    model = keep_frozen_encoders_in_eval_mode(to_frozen_bf16(model).train())
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    return model


# ----- what is counted ------------------------------------------------------------------------------------


def parameter_counts(model) -> dict:
    language_model = model.model.language_model
    frozen_lm_linear = sum(
        module.weight.numel()
        for name, module in language_model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".lora_" not in name and not module.weight.requires_grad
    )
    return {
        "total": sum(param.numel() for param in model.parameters()),
        "trainable": sum(param.numel() for param in model.parameters() if param.requires_grad),
        "llm": sum(param.numel() for name, param in model.named_parameters()
                   if name.startswith(("model.language_model.", "lm_head.")) and ".lora_" not in name),
        "llm_frozen_linear_weights": frozen_lm_linear,
        "llm_largest_layer": max(sum(param.numel() for param in layer.parameters()) for layer in language_model.layers),
    }


def training_flops(model, clips: int, seconds: float, rates: dict, transcript_tokens: int) -> dict:
    """FLOPs of one training step (forward + backward), in total and for the LLM (decoder and head)."""
    with meta_execution(), flop_counter() as count:
        training_step(model, meta_inputs(model.config, clips, seconds), seconds, rates, transcript_tokens)
    model.zero_grad(set_to_none=True)
    by_module = count.get_flop_counts()
    llm = sum(sum(by_module.get(name, {}).values()) for name in (type(model.model.language_model).__name__, "Linear"))
    return {"total": count.get_total_flops(), "llm": llm}


def trainable_state_tensors(model, optimizer) -> list[torch.Tensor]:
    states = [value for state in optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor)]
    return [*model.parameters(), *model.buffers(), *states]


def training_memory(model, run_step) -> dict:
    """Peak bytes of a steady-state training step (`run_step()`: forward + backward) and its AdamW update: weights
    and optimizer states are resident before it starts (an update on zero gradients creates the states)."""
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    for param in trainable:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    model.zero_grad(set_to_none=True)
    tracker = PeakMemory(trainable_state_tensors(model, optimizer))
    resident = tracker.current
    with tracker:
        run_step()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return {"resident": resident, "peak": tracker.peak}


def meta_training_memory(model, clips: int, seconds: float, rates: dict, transcript_tokens: int) -> dict:
    inputs = meta_inputs(model.config, clips, seconds)
    with meta_execution():
        return training_memory(model, lambda: training_step(model, inputs, seconds, rates, transcript_tokens))


def decoding_flops(model, seconds: float, rates: dict, new_tokens: int, task: str = "avsr") -> dict:
    """FLOPs of transcribing one clip: encoders and projectors, the LM over the prompt (prefill, head on its last
    position), then `new_tokens - 1` greedy steps on the KV cache (one position and the full-vocabulary head each).

    The greedy steps are counted as one step at their mean cache length, times their number: a step's FLOPs are its
    linear layers' (the same at every position) plus attention's, linear in the cache length, so this is exact
    (for an odd number of steps) and saves running the LM once per token on meta tensors."""
    config = model.config
    inputs = meta_inputs(config, 1, seconds)
    flops = {}
    with torch.no_grad(), meta_execution():
        with flop_counter() as count:
            projected = encode_and_project(model, inputs, seconds, rates, grad=False)
        flops["encoders"] = count.get_total_flops()
        counts = {modality: projected[modality].shape[1] for modality in TASK_MODALITIES[task]}
        prompt_tokens = task_row_length(config, task, counts, 0)
        embed = model.model.get_input_embeddings()
        language_model = model.model.language_model
        model.model.route_adapters([task], 1)

        def lm_call(tokens: int, cache):
            inputs_embeds = embed(torch.zeros(1, tokens, dtype=torch.long, device="meta"))
            hidden = language_model(inputs_embeds=inputs_embeds, cache=cache, use_cache=True).last_hidden_state
            model.lm_head(hidden[:, -1:])

        with flop_counter() as count:
            lm_call(prompt_tokens, DynamicCache(config=config.text_config))
        flops["llm_prefill"] = count.get_total_flops()
        steps = new_tokens - 1
        cache = DynamicCache(config=config.text_config)
        lm_call(prompt_tokens + steps // 2, cache)
        with flop_counter() as count:
            lm_call(1, cache)
        flops["llm_decode"] = count.get_total_flops() * steps
    return {**flops, "total": sum(flops.values()), "prompt_tokens": prompt_tokens}


# ----- per-GPU plans from the counted peak -----------------------------------------------------------------


def memory_plans(counts: dict, memory: dict, memory_checkpointed: dict, gpus: int) -> dict:
    """GB per GPU of a training step under each plan. The counted peak is the one-GPU bf16 plan; 4-bit replaces the
    bf16 bytes of the LLM's frozen linear layers by NF4's (embeddings, head and encoders stay bf16); FSDP over `gpus`
    shards weights, gradients and AdamW states (everything resident) and adds two gathered decoder layers (the one
    computing and the one prefetched), while activations stay per GPU (each GPU has its own batch)."""
    quantised_saving = counts["llm_frozen_linear_weights"] * (2 - NF4_BYTES_PER_WEIGHT)
    gathered_layers = 2 * 2 * counts["llm_largest_layer"]
    plans = {}
    for suffix, step in (("", memory), ("_checkpointed", memory_checkpointed)):
        transient = step["peak"] - step["resident"]
        plans[f"one_gpu_bf16{suffix}"] = step["peak"]
        plans[f"one_gpu_4bit{suffix}"] = step["peak"] - quantised_saving
        plans[f"fsdp_{gpus}_gpus_bf16{suffix}"] = step["resident"] / gpus + gathered_layers + transient
    return {name: round(value / 1e9, 2) for name, value in plans.items()}


def fits(plans: dict, gpu_memory_gb: float) -> dict:
    """For each plan family, whether it fits (`USABLE_SHARE` of the GPU), preferring no checkpointing."""
    budget = USABLE_SHARE * gpu_memory_gb
    verdict = {}
    for plan in (name for name in plans if not name.endswith("_checkpointed")):
        if plans[plan] <= budget:
            verdict[plan] = "yes"
        elif plans[plan + "_checkpointed"] <= budget:
            verdict[plan] = "with checkpointing"
        else:
            verdict[plan] = "no"
    return verdict


def mtsk_cross_check(decoding: dict, seconds: float) -> dict:
    """Our count of one utterance next to Llama-MTSK's two figures. Their difference between (4,2) and (16,5) comes
    from the media tokens alone (25 against 8.125 per second of clip), so with our LLM cost per prompt token it says
    how long a clip they counted, or how much more than ours they count per token at our clip length."""
    theirs = MTSK_REPORTED_TFLOPS
    ours = {pair: decoding[pair] for pair in theirs}
    extra_tokens = ours["4,2"]["prompt_tokens"] - ours["16,5"]["prompt_tokens"]
    per_token = (ours["4,2"]["llm_prefill"] - ours["16,5"]["llm_prefill"]) / extra_tokens / 1e12
    tokens_per_s = {pair: sum(rate_tokens_per_s(pair)) for pair in theirs}
    their_difference = theirs["4,2"] - theirs["16,5"]
    their_seconds = their_difference / (per_token * (tokens_per_s["4,2"] - tokens_per_s["16,5"]))
    return {
        "reported_tflops": theirs,
        "ours_tflops": {
            pair: {part: round(ours[pair][part] / 1e12, 3) for part in ("encoders", "llm_prefill", "llm_decode", "total")}
            for pair in theirs
        },
        "ours_gflop_per_llm_prompt_token": round(per_token * 1e3, 2),
        "their_difference_over_ours": round(their_difference / (per_token * extra_tokens), 2),
        "clip_seconds_that_give_their_difference": round(their_seconds, 1),
        "their_rest_at_that_length_tflops": round(theirs["4,2"] - per_token * tokens_per_s["4,2"] * their_seconds, 2),
    }


def rate_tokens_per_s(pair: str) -> tuple[float, float]:
    audio_rate, video_rate = (int(rate) for rate in pair.split(","))
    return AUDIO_FRAMES_PER_S / audio_rate, VIDEO_FPS / video_rate


# ----- measured on real tensors ----------------------------------------------------------------------------


def measure_real_step(size: str, clips: int, seconds: float, transcript_tokens: int, checkpointing: bool) -> dict:
    """The model's real training step (`omni_step`) on CPU at a size that fits, next to the meta count of the same
    step: FLOPs, peak tensor bytes (`PeakMemory` on real tensors), and the process's peak-RSS increase over the
    step as a check that does not go through torch."""
    processor = build_processor(size)
    config = build_config(size, processor)
    model = prepare_for_training(build_model(config), checkpointing)
    batch = cast_media(paper_batch(processor, [seconds] * clips, config, transcript_tokens - 1, 0), torch.bfloat16)
    real_flops = count_flops(lambda: omni_step(model, processor, batch, 4, 2))
    rss_before = current_rss_mb()
    reset_peak_rss()
    real_memory = training_memory(model, lambda: omni_step(model, processor, batch, 4, 2))
    rss_increase = (peak_rss_mb() - rss_before) * 2**20
    meta_model = build_meta_model(config, checkpointing)
    rates = {"audio": 4, "video": 2}
    counted_flops = training_flops(meta_model, clips, seconds, rates, transcript_tokens)["total"]
    counted_memory = meta_training_memory(meta_model, clips, seconds, rates, transcript_tokens)
    return {
        "size": size, "checkpointing": checkpointing, "clips": clips, "seconds": seconds,
        "parameters_m": round(sum(param.numel() for param in model.parameters()) / 1e6, 1),
        "gflop_measured": round(real_flops / 1e9, 3), "gflop_counted_meta": round(counted_flops / 1e9, 3),
        "flops_counted_over_measured": round(counted_flops / real_flops, 4),
        "resident_mb": round(real_memory["resident"] / 2**20, 1),
        "step_mb_measured": round((real_memory["peak"] - real_memory["resident"]) / 2**20, 1),
        "step_mb_counted_meta": round((counted_memory["peak"] - counted_memory["resident"]) / 2**20, 1),
        "step_mb_rss_increase": round(rss_increase / 2**20, 1),
        "peak_counted_over_measured": round(counted_memory["peak"] / real_memory["peak"], 4),
    }


# ----- the report ------------------------------------------------------------------------------------------


def backbone_report(config_for_variant, variants, args) -> dict:
    """Parameters for each variant; FLOPs, memory and plans for ST (the variant changes only the LoRA)."""
    clips = args.batch_frames // round(args.clip_seconds * VIDEO_FPS)
    parameters = {}
    for variant in variants:
        counts = parameter_counts(build_meta_model(config_for_variant(variant)))
        parameters[variant] = {"total_m": round(counts["total"] / 1e6, 1), "trainable_m": round(counts["trainable"] / 1e6, 2)}
    config = config_for_variant("ST")
    model = build_meta_model(config)
    counts = parameter_counts(model)
    pairs = {"4,2": {"audio": 4, "video": 2}, "16,5": {"audio": 16, "video": 5}}
    train = {pair: training_flops(model, clips, args.clip_seconds, rates, args.transcript_tokens)
             for pair, rates in pairs.items()}
    decoding = {pair: decoding_flops(model, args.utterance_seconds, rates, args.new_tokens)
                for pair, rates in pairs.items()}
    memory = meta_training_memory(model, clips, args.clip_seconds, pairs["4,2"], args.transcript_tokens)
    checkpointed = build_meta_model(config, checkpointing=True)
    memory_checkpointed = meta_training_memory(
        checkpointed, clips, args.clip_seconds, pairs["4,2"], args.transcript_tokens
    )
    plans = memory_plans(counts, memory, memory_checkpointed, args.gpus)
    return {
        "parameters": parameters,
        "llm_parameters_m": round(counts["llm"] / 1e6, 1),
        "train_step_tflops": {pair: round(value["total"] / 1e12, 2) for pair, value in train.items()},
        "train_step_llm_share": {pair: round(value["llm"] / value["total"], 3) for pair, value in train.items()},
        "decode_utterance_tflops": {
            pair: {part: (round(value / 1e12, 3) if part != "prompt_tokens" else value) for part, value in counts_.items()}
            for pair, counts_ in decoding.items()
        },
        "memory_gb": {
            "weights_and_states": round(memory["resident"] / 1e9, 2),
            "step_peak": round(memory["peak"] / 1e9, 2),
            "step_peak_checkpointed": round(memory_checkpointed["peak"] / 1e9, 2),
            "activations_and_gradients": round((memory["peak"] - memory["resident"]) / 1e9, 2),
            "activations_and_gradients_checkpointed": round(
                (memory_checkpointed["peak"] - memory_checkpointed["resident"]) / 1e9, 2
            ),
        },
        "plans_gb": plans,
        f"fits_{args.gpu_memory_gb:g}gb": fits(plans, args.gpu_memory_gb),
        "_decoding": decoding,
    }


def tables(report: dict, args) -> str:
    rows = report["backbones"]
    fits_key = f"fits_{args.gpu_memory_gb:g}gb"
    parameters = format_table(
        ["backbone", "LLM M", "total M (ST)", "trainable M S / T / ST"],
        [[name, row["llm_parameters_m"], row["parameters"]["ST"]["total_m"],
          " / ".join(str(row["parameters"][v]["trainable_m"]) for v in row["parameters"])] for name, row in rows.items()],
    )
    flops = format_table(
        ["backbone", "train step TFLOP (4,2)", "(16,5)", "LLM share", "decode 5 s TFLOP (4,2)", "(16,5)"],
        [[name, row["train_step_tflops"]["4,2"], row["train_step_tflops"]["16,5"], row["train_step_llm_share"]["4,2"],
          row["decode_utterance_tflops"]["4,2"]["total"], row["decode_utterance_tflops"]["16,5"]["total"]]
         for name, row in rows.items()],
    )
    memory = format_table(
        ["backbone", "weights+states GB", "step peak GB", "ckpt GB", "1 GPU bf16", "1 GPU 4-bit", f"{args.gpus} GPUs FSDP"],
        [[name, row["memory_gb"]["weights_and_states"], row["memory_gb"]["step_peak"],
          row["memory_gb"]["step_peak_checkpointed"], row[fits_key]["one_gpu_bf16"], row[fits_key]["one_gpu_4bit"],
          row[fits_key][f"fsdp_{args.gpus}_gpus_bf16"]] for name, row in rows.items()],
    )
    parts = [parameters, flops, memory]
    if "llama_mtsk_cross_check" in report:
        parts.append("Llama-MTSK cross-check (Llama-3.1-8B, TFLOPs per utterance): " +
                     json.dumps(report["llama_mtsk_cross_check"]))
    return "\n\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--variants", nargs="+", default=["S", "T", "ST"], choices=["S", "T", "ST"])
    parser.add_argument("--batch-frames", type=int, default=1500, help="video frames per training batch (paper: 1500)")
    parser.add_argument("--clip-seconds", type=float, default=5.0, help="length of each clip of the training batch")
    parser.add_argument("--transcript-tokens", type=int, default=17, help="target tokens per clip, EOS included")
    parser.add_argument("--utterance-seconds", type=float, default=5.0, help="the decoded clip")
    parser.add_argument("--new-tokens", type=int, default=16, help="greedy tokens decoded (the first from the prefill)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-memory-gb", type=float, default=GPU_MEMORY_GB)
    parser.add_argument("--measure", nargs="*", default=[], choices=["tiny", "mid"],
                        help="also run the real step on CPU at these sizes, next to the meta count")
    parser.add_argument("--measure-clips", type=int, default=2)
    parser.add_argument("--measure-seconds", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="the tiny test model in place of the backbones")
    parser.add_argument("--json-out", help="also write the JSON report to this file")
    parser.add_argument("--merge", nargs="+", help="merge the JSON reports of earlier runs (one per backbone, say)")
    args = parser.parse_args()
    if args.merge:
        report = merge_reports([json.loads(Path(path).read_text()) for path in args.merge])
        emit(report, tables(report, args), args.json_out)
        return
    machine = machine_info()
    started = time.perf_counter()
    if args.smoke:
        processor = build_processor("tiny")
        configs = {"tiny": lambda variant: build_config("tiny", processor, lora_variant=variant)}
    else:
        configs = {name: (lambda variant, name=name: paper_config(variant, name)) for name in args.backbones}
    backbones = {name: backbone_report(config, args.variants, args) for name, config in configs.items()}
    report = {
        "benchmark": "scaling",
        "setting": {
            "encoders": "tiny (smoke)" if args.smoke else "Whisper-medium encoder (30 s window), AV-HuBERT Large",
            "rates": {"audio": [4, 16], "video": [2, 5]},
            "training_batch": {"video_frames": args.batch_frames, "clip_seconds": args.clip_seconds,
                               "clips": args.batch_frames // round(args.clip_seconds * VIDEO_FPS),
                               "transcript_tokens_with_eos": args.transcript_tokens},
            "decoding": {"clip_seconds": args.utterance_seconds, "new_tokens": args.new_tokens, "beams": 1,
                         "task": "avsr"},
            "precision": "frozen weights bf16; LoRA and projectors fp32 with fp32 gradients and AdamW states",
            "usable_share_of_gpu_memory": USABLE_SHARE,
        },
        "backbones": backbones,
    }
    if "llama-3.1-8b" in backbones:
        report["llama_mtsk_cross_check"] = mtsk_cross_check(backbones["llama-3.1-8b"]["_decoding"], args.utterance_seconds)
    for row in backbones.values():
        del row["_decoding"]
    if not args.smoke:
        report["published_parameters_match"] = {
            name: parameter_counts_match(name) for name in args.backbones
        }
    report["measured_on_cpu"] = [
        measure_real_step(size, args.measure_clips, args.measure_seconds, args.transcript_tokens, checkpointing)
        for size in args.measure for checkpointing in (False, True)
    ]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = finish_machine_info(machine)
    emit(report, tables(report, args), args.json_out)


def merge_reports(reports: list[dict]) -> dict:
    """One report of several runs made with the same settings (e.g. one backbone per process)."""
    merged = {**reports[0], "backbones": {}, "published_parameters_match": {}, "measured_on_cpu": [], "seconds": 0.0}
    for report in reports:
        if report["setting"] != reports[0]["setting"]:
            raise ValueError("The reports were made with different settings; expected one setting to merge.")
        merged["backbones"].update(report["backbones"])
        merged["published_parameters_match"].update(report.get("published_parameters_match", {}))
        merged["measured_on_cpu"] += report["measured_on_cpu"]
        merged["seconds"] += report["seconds"]
        if "llama_mtsk_cross_check" in report:
            merged["llama_mtsk_cross_check"] = report["llama_mtsk_cross_check"]
    order = {name: index for index, name in enumerate(BACKBONES)}
    merged["backbones"] = dict(sorted(merged["backbones"].items(), key=lambda item: order.get(item[0], -1)))
    merged["merged_from"] = len(reports)
    return merged


def parameter_counts_match(name: str) -> bool:
    """The meta-built LLM alone (its own vocabulary) has the published checkpoint's parameter count."""
    shape = backbone(name)
    with torch.device("meta"):
        language_model = AutoModelForCausalLM.from_config(shape.text_config(shape.vocab_size))
    return sum(param.numel() for param in language_model.parameters()) == shape.published_parameters


if __name__ == "__main__":
    main()
