"""Omni-LoRA: peft LoRA adapters on the LM, chosen per group of batch rows (shared, task-specific, or both)."""

import warnings

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


AdapterRouting = list[tuple[tuple[str, ...], int | None]]


class OmniLoraLinear(LoraLinear):
    """A peft `lora.Linear` whose adapters are chosen per group of batch rows.

    `adapter_routing` is a list of `(adapter_names, num_rows)` covering the batch in order (`num_rows=None`: all
    rows). Each group gets the sum of its adapters' deltas, so one LM call can serve several tasks (T/ST) and the
    routing survives activation-checkpoint recomputation: it stays on the layer until the next forward sets it, where
    peft's global `set_adapter` would be changed by then (and would switch off gradients of inactive adapters).
    """

    adapter_routing: AdapterRouting | None = None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.adapter_routing is None or self.disable_adapters or self.merged:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        start = 0
        for adapter_names, num_rows in self.adapter_routing:
            rows = slice(None) if num_rows is None else slice(start, start + num_rows)
            start += num_rows or 0
            # In place: the base layer's output is not saved for its backward, and a copy per layer adds up.
            result[rows] += sum(self._lora_delta(name, x[rows]) for name in adapter_names).to(result.dtype)
        if start not in (0, x.shape[0]):
            raise ValueError(f"Adapter routing covers {start} rows but the batch has {x.shape[0]}.")
        return result

    def _lora_delta(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = self._cast_input_dtype(x, self.lora_A[name].weight.dtype)
        return self.lora_B[name](self.lora_A[name](self.lora_dropout[name](x))) * self.scaling[name]


def add_lora_adapters(
    module: nn.Module,
    adapter_names: list[str],
    rank: int,
    alpha: float,
    target_modules: list[str],
    routed: bool = False,
) -> None:
    """Inject one peft LoRA adapter per name into `module` (routable `OmniLoraLinear` layers when `routed`)."""
    for name in adapter_names:
        lora_config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules))
        if routed:
            lora_config._register_custom_module({nn.Linear: OmniLoraLinear})
        with warnings.catch_warnings():
            # Several adapters in one module is what Omni-LoRA is; peft warns about it on every extra adapter.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_adapter_in_model(lora_config, module, adapter_name=name)


def set_lora_dropout(module: nn.Module, probability: float) -> None:
    """Dropout on the input of every LoRA adapter under `module` (peft builds it as `lora_dropout` at injection; it
    holds no weights, so a training run sets it without touching checkpoints)."""
    for layer in lora_layers(module):
        for name in layer.lora_dropout:
            layer.lora_dropout[name] = nn.Dropout(probability) if probability > 0 else nn.Identity()


def lora_layers(module: nn.Module) -> list[BaseTunerLayer]:
    return [layer for layer in module.modules() if isinstance(layer, BaseTunerLayer)]


def set_adapter_routing(layers: list[OmniLoraLinear], routing: AdapterRouting) -> None:
    for layer in layers:
        layer.adapter_routing = routing


def reset_lora_parameters(module: nn.Module) -> None:
    """peft's own init (A: Kaiming, B: zeros, so the delta starts at zero) for every adapter under `module`."""
    for layer in lora_layers(module):
        for name in layer.lora_A:
            layer.reset_lora_parameters(name, init_lora_weights=True)
