"""Workloads: the layers of a network as :class:`LayerSpec` s.

From a ``torch.nn.Module`` (one traced forward pass with forward hooks), from a registered
model name (``resnet20``, ``torchvision:resnet18``), or from a SCALE-Sim topology file
(:mod:`dse_core.workloads.scalesim`). torch is imported only when a module is traced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse_core.errors import DseError, ValidationError
from dse_core.host.registry import ModelPlugin, Registry
from dse_core.types import LayerKind, LayerSpec

if TYPE_CHECKING:
    import torch

__all__ = ["layers_from_module", "parse_input_shape", "load_workload", "build_model"]

log = logging.getLogger(__name__)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def layers_from_module(
    module: torch.nn.Module, input_shape: Sequence[int], *, batch: int = 1
) -> list[LayerSpec]:
    """Trace one forward pass of ``module`` on zeros of shape (1, *input_shape) and return its
    Conv2d and Linear layers in execution order. ``batch`` scales the streamed dimension M.

    A module called several times gives one layer per call (``name#2``, ...). Conv padding,
    stride, dilation and groups are honoured; output sizes are torch's own.
    """
    import torch

    if batch < 1:
        raise ValidationError(f"batch = {batch!r}: expected a positive integer")
    names = {m: n for n, m in module.named_modules()}
    specs: list[LayerSpec] = []
    seen: dict[str, int] = {}

    def hook(mod: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        base = names.get(mod) or type(mod).__name__.lower()
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        x = inputs[0]
        if isinstance(mod, torch.nn.Conv2d):
            if isinstance(mod.padding, str):  # 'same' / 'valid': recover the numbers
                pad = _same_padding(mod) if mod.padding == "same" else (0, 0)
            else:
                pad = _pair(mod.padding)
            kind: LayerKind = (
                "depthwise" if mod.groups > 1 and mod.groups == mod.in_channels else "conv"
            )
            specs.append(LayerSpec(
                name=name, kind=kind, in_channels=mod.in_channels,
                out_channels=mod.out_channels, kernel=_pair(mod.kernel_size),
                stride=_pair(mod.stride), padding=pad, dilation=_pair(mod.dilation),
                groups=mod.groups, input_hw=(int(x.shape[-2]), int(x.shape[-1])),
                output_hw=(int(output.shape[-2]), int(output.shape[-1])),
                batch=batch * int(x.shape[0]),
            ))
        else:  # Linear: every leading position of the input is one streamed vector
            assert isinstance(mod, torch.nn.Linear)
            rows = int(x.numel() // x.shape[-1]) if x.dim() > 1 else 1
            specs.append(LayerSpec(
                name=name, kind="linear", in_channels=int(mod.in_features),
                out_channels=int(mod.out_features), input_hw=(1, 1), output_hw=(1, 1),
                batch=batch * rows,
            ))

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    if not handles:
        raise DseError(f"{type(module).__name__} has no Conv2d or Linear layer to map")
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        shape = "x".join(str(d) for d in input_shape)
        first = str(exc).splitlines()[0]
        raise DseError(f"input = {shape}: the model rejects this input shape ({first})") from exc
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return specs


def _same_padding(mod: Any) -> tuple[int, int]:
    k = _pair(mod.kernel_size)
    d = _pair(mod.dilation)
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` -> (3, 224, 224)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isascii() and p.strip().isdecimal() and int(p) > 0
                                  for p in parts):
        raise ValidationError(f"input = {text!r}: expected CxHxW with positive integers, "
                              "e.g. 3x32x32")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def build_model(
    registry: Registry,
    reference: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> tuple[Any, tuple[int, int, int]]:
    """Build the model ``reference`` (``name`` or ``name:variant``). Returns the module and
    the input shape used."""
    name, _, variant = reference.partition(":")
    record = registry.get("model", name)
    assert isinstance(record, ModelPlugin)
    if variant and not record.takes_variant:
        raise DseError(f"model {name!r} takes no variant, got {reference!r}")
    if record.takes_variant and not variant:
        raise DseError(f"model {name!r} needs a variant: {name}:NAME (e.g. {name}:resnet18)")
    shape = input_shape or record.input_shape
    model = record.factory(
        variant or None, in_channels=shape[0], num_classes=num_classes or record.num_classes
    )
    return model, shape


def load_workload(
    registry: Registry,
    reference: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    batch: int = 1,
) -> list[LayerSpec]:
    """Layers of a model reference, or of a SCALE-Sim topology file (a path ending in .csv)."""
    if reference.lower().endswith(".csv") or Path(reference).is_file():
        from dse_core.workloads.scalesim import read_topology

        if input_shape is not None:
            raise DseError("--input applies to models, not to topology files")
        return read_topology(reference, batch=batch)
    model, shape = build_model(registry, reference, input_shape=input_shape)
    return layers_from_module(model, shape, batch=batch)
