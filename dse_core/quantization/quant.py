"""Post-training int8 quantisation, as the array sees a network.

BatchNorm is folded into the preceding convolution first, so the quantised weights are the ones
the array holds. Weights: symmetric int8 per output channel (= per array column), codes in
[-127, 127]. Activations entering each conv/linear layer: asymmetric uint8 with a scale and
zero point calibrated from the min/max seen on calibration batches; the zero-point correction
happens outside the array, so PEs multiply raw codes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["fold_batchnorm", "ActivationQuant", "weight_codes", "activation_codes"]


def fold_batchnorm(model: Any, example: Any) -> Any:
    """A copy of ``model`` with every BatchNorm2d that directly consumes a Conv2d's output
    folded into that conv (found by tracing one forward pass on ``example``)."""
    import torch
    from torch import nn

    model = copy.deepcopy(model).eval()
    last_conv: dict[str, Any] = {}
    pairs: list[tuple[nn.Conv2d, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def conv_hook(mod: Any, _inp: Any, out: Any) -> None:
        last_conv["out"], last_conv["mod"] = out, mod

    def bn_hook(mod: Any, inp: Any, _out: Any) -> None:
        if last_conv.get("out") is inp[0]:
            pairs.append((last_conv["mod"], names[mod]))

    handles = [m.register_forward_hook(conv_hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(bn_hook) for m in model.modules()
                if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(example)
    for h in handles:
        h.remove()
    with torch.no_grad():
        for conv, bn_name in pairs:
            bn = model.get_submodule(bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            parent_name, _, child = bn_name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.Identity())
    return model


def weight_codes(weight: Any) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: (codes with the weight's shape, scales per channel)."""
    import torch

    w = weight.detach().float()
    max_abs = w.reshape(w.shape[0], -1).abs().amax(dim=1).clamp_min(1e-12)
    scale = max_abs / 127.0
    codes = torch.round(w / scale.reshape(-1, *([1] * (w.dim() - 1)))).clamp(-127, 127)
    return codes.to(torch.int8).numpy(), scale.numpy()


@dataclass(frozen=True)
class ActivationQuant:
    """uint8 code = clamp(round(x / scale) + zero_point, 0, 255)."""

    scale: float
    zero_point: int

    @classmethod
    def from_range(cls, lo: float, hi: float) -> ActivationQuant:
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # the range must hold real 0 exactly
        scale = (hi - lo) / 255.0 or 1.0
        return cls(scale, int(round(-lo / scale)))


def activation_codes(x: Any, quant: ActivationQuant) -> Any:
    import torch

    return torch.clamp(torch.round(x / quant.scale) + quant.zero_point, 0, 255).to(torch.uint8)
