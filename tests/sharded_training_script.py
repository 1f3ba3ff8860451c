"""A few Omni-AVSR training steps on fixed batches and rate pairs, alone or sharded with FSDP2 or DeepSpeed ZeRO-3
(run by tests/test_sharded_training.py; not collected by pytest).

    python tests/sharded_training_script.py --out single.json
    torchrun --nproc_per_node 2 tests/sharded_training_script.py --fsdp-config recipes/accelerate/fsdp.yaml --out fsdp.json
    torchrun --nproc_per_node 2 tests/sharded_training_script.py --deepspeed-config recipes/accelerate/deepspeed_zero3.yaml --out zero3.json

Sharded, the model goes through accelerate's own FSDP2 preparation (`fsdp2_apply_ac`, `fsdp2_prepare_model`) with
the plugin the recipe's `fsdp_config` describes; accelerate only turns FSDP on for accelerators, so on CPU the script
calls those two functions itself with a gloo process group. DeepSpeed gets the ZeRO config accelerate's
`DeepSpeedPlugin` makes of the recipe's `deepspeed_config` (its gradient clipping applies to every run). Each rank trains on its half of every batch; the clips
all have one length and one transcript length, so the mean of the ranks' losses is the whole batch's loss and the
gradient FSDP averages is the whole batch's gradient: the losses must equal the single-process run's.
"""

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import yaml
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_apply_ac, fsdp2_prepare_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import randomize_lora, tiny_model, tiny_processor  # noqa: E402

from omni_avsr.training.matryoshka import matryoshka_step  # noqa: E402
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode  # noqa: E402


# Every rate pair once, so that each step leaves other projectors without gradients.
RATE_PAIRS = [(4, 2), (16, 5), (4, 5), (16, 2)]
CLIPS, SECONDS, TRANSCRIPT_TOKENS = 4, 1.2, 8


def fsdp_plugin(config_path: str) -> FullyShardedDataParallelPlugin:
    """The FSDP plugin an `accelerate launch --config_file` run builds from the recipe's `fsdp_config`."""
    config = yaml.safe_load(Path(config_path).read_text())["fsdp_config"]
    return FullyShardedDataParallelPlugin(
        fsdp_version=config["fsdp_version"],
        auto_wrap_policy=config["fsdp_auto_wrap_policy"].lower(),
        reshard_after_forward=config["fsdp_reshard_after_forward"],
        state_dict_type=config["fsdp_state_dict_type"],
        cpu_offload=config["fsdp_offload_params"],
        cpu_ram_efficient_loading=config["fsdp_cpu_ram_efficient_loading"],
        activation_checkpointing=config["fsdp_activation_checkpointing"],
    )


def zero3_config(config_path: str) -> dict:
    """The DeepSpeed config an `accelerate launch --config_file` run builds from the recipe's `deepspeed_config`,
    with the batch sizes accelerate fills in (one clip group per rank and step)."""
    from accelerate.utils import DeepSpeedPlugin

    config = yaml.safe_load(Path(config_path).read_text())["deepspeed_config"]
    plugin = DeepSpeedPlugin(**config)
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return {**plugin.deepspeed_config, "train_micro_batch_size_per_gpu": 1, "train_batch_size": world_size}


def fixed_batch(processor, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    audio = [torch.randn(int(SECONDS * 16000), generator=generator).numpy() * 0.1 for _ in range(CLIPS)]
    videos = [torch.randint(0, 255, (int(SECONDS * 25), 96, 96), generator=generator, dtype=torch.uint8).numpy()
              for _ in range(CLIPS)]
    batch = dict(processor(audio=audio, videos=videos, sampling_rate=16000, return_tensors="pt"))
    labels = torch.randint(3, 20, (CLIPS, TRANSCRIPT_TOKENS), generator=generator)
    batch["labels"] = torch.cat([labels, torch.full((CLIPS, 1), processor.tokenizer.eos_token_id)], dim=1)
    return batch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fsdp-config", help="an accelerate config with fsdp_config (recipes/accelerate/fsdp.yaml)")
    parser.add_argument("--deepspeed-config", help="an accelerate config with deepspeed_config")
    parser.add_argument("--clip-grad-norm", type=float, help="clip gradients (DeepSpeed's clipping, for the reference)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    processor = tiny_processor()
    model = tiny_model(processor, seed=0)
    randomize_lora(model)
    keep_frozen_encoders_in_eval_mode(model.train())
    rank, world_size = 0, 1
    if args.fsdp_config:
        dist.init_process_group("gloo")
        rank, world_size = dist.get_rank(), dist.get_world_size()
        plugin = fsdp_plugin(args.fsdp_config)
        accelerator = SimpleNamespace(
            state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision="no", is_main_process=rank == 0,
            device=torch.device("cpu"),
        )
        if plugin.activation_checkpointing:
            model = fsdp2_apply_ac(accelerator, model)
        model = fsdp2_prepare_model(accelerator, model)
    optimizer = torch.optim.AdamW([param for param in model.parameters() if param.requires_grad], lr=1e-2)
    engine = None
    if args.deepspeed_config:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        rank, world_size = dist.get_rank(), dist.get_world_size()
        engine, optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=zero3_config(args.deepspeed_config)
        )
        model = engine
    losses, sharded = [], []
    for step, (audio_rate, video_rate) in enumerate(RATE_PAIRS):
        batch = fixed_batch(processor, seed=step)
        rows = slice(rank * CLIPS // world_size, (rank + 1) * CLIPS // world_size)
        outputs = matryoshka_step(
            model, processor, {name: value[rows] for name, value in batch.items()}, audio_rate=audio_rate,
            video_rate=video_rate,
        )
        if engine is not None:
            engine.backward(outputs.loss)
            engine.step()
        else:
            outputs.loss.backward()
            if args.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss = outputs.loss.detach()
        if world_size > 1:
            dist.all_reduce(loss)
            loss /= world_size
        losses.append(float(loss))
    if args.fsdp_config:
        from torch.distributed.fsdp import FSDPModule

        sharded = sorted({type(module).__name__ for module in model.modules() if isinstance(module, FSDPModule)})
    if engine is not None:
        # ZeRO-3 leaves each rank a partition of every parameter (the full tensor is gathered per layer when used).
        sharded = sorted({"partitioned" if hasattr(param, "ds_id") else "whole" for param in engine.module.parameters()})
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank == 0:
        Path(args.out).write_text(json.dumps({"losses": losses, "world_size": world_size, "sharded": sharded}))


if __name__ == "__main__":
    main()
