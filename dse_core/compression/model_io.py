"""The saved compressed model: one ``.npz`` file that loads without unpickling anything.

Arrays (``numpy.load(..., allow_pickle=False)``):

* ``format``: ``"systolic-dse-compressed/1"``; ``meta``: a JSON text (model reference, input
  shape, number of classes, dataset, layer names, accuracies and energies of the run);
* per quantised layer ``L`` (module name): ``layer/L/codes`` (int8, the weight's shape),
  ``layer/L/weight_scale`` (float32 per output channel: weight = code · scale),
  ``layer/L/bias`` (float32), ``layer/L/allowed`` (int16, the allowed codes, sorted),
  ``layer/L/act_scale`` and ``layer/L/act_zero_point`` (the uint8 input quantiser);
* ``float/KEY``: any other tensor of the BN-folded model's state (none for the shipped models).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.cache import atomic_write
from dse_core.errors import DseError
from dse_core.host.registry import Registry
from dse_core.quantization.qat import QuantNetwork, quantize_network
from dse_core.workloads.layers import build_model

__all__ = ["COMPRESSED_FORMAT", "save_compressed", "load_compressed"]

COMPRESSED_FORMAT = "systolic-dse-compressed/1"
_LAYER_KEYS = ("weight", "bias", "table", "act_scale", "act_zero_point", "weight_scale_fixed")


def save_compressed(path: str | Path, net: QuantNetwork, meta: Mapping[str, Any]) -> Path:
    """Write ``net`` (codes, scales, allowed sets, activation quantisers) and ``meta``."""
    for key in ("model", "input_shape", "num_classes"):
        if key not in meta:
            raise ValueError(f"meta needs {key!r}")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(COMPRESSED_FORMAT),
        "meta": np.array(json.dumps({**meta, "layers": list(net.layers)})),
    }
    codes = net.codes()
    for name, layer in net.layers.items():
        prefix = f"layer/{name}/"
        arrays[prefix + "codes"] = codes[name]
        arrays[prefix + "weight_scale"] = layer.weight_scale().reshape(-1).cpu().numpy().astype(
            np.float32)
        arrays[prefix + "bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
        arrays[prefix + "allowed"] = np.array(layer.allowed, dtype=np.int16)
        arrays[prefix + "deadzone"] = np.array(float(layer.deadzone))
        arrays[prefix + "act_scale"] = np.array(float(layer.act_scale))
        arrays[prefix + "act_zero_point"] = np.array(int(layer.act_zero_point))
    quantised = {f"{n}.{k}" for n in net.layers for k in _LAYER_KEYS}
    for key, value in net.model.state_dict().items():
        if key not in quantised:
            arrays[f"float/{key}"] = value.detach().cpu().numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    return atomic_write(Path(path), write)


def load_compressed(registry: Registry, path: str | Path) -> tuple[QuantNetwork, dict[str, Any]]:
    """Rebuild a saved compressed model; its eval-mode outputs equal the saved model's."""
    import torch

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError as exc:
        raise DseError(f"{path}: no such compressed model") from exc
    except (ValueError, OSError) as exc:
        raise DseError(f"{path}: not a compressed-model file ({exc})") from exc
    fmt = str(arrays.get("format", ""))
    if fmt != COMPRESSED_FORMAT:
        raise DseError(f"{path}: format = {fmt!r}: expected {COMPRESSED_FORMAT!r}")
    meta = json.loads(str(arrays["meta"]))
    shape = tuple(meta["input_shape"])
    model, _ = build_model(registry, meta["model"], input_shape=shape,  # type: ignore[arg-type]
                           num_classes=meta["num_classes"])
    example = torch.zeros(1, *shape)
    net = quantize_network(model.eval(), [], example)
    if sorted(net.layers) != sorted(meta["layers"]):
        raise DseError(f"{path}: layers {meta['layers']} do not match model {meta['model']!r}")
    with torch.no_grad():
        for name, layer in net.layers.items():
            prefix = f"layer/{name}/"
            codes = torch.from_numpy(arrays[prefix + "codes"].astype(np.float32))
            if tuple(codes.shape) != tuple(layer.weight.shape):
                raise DseError(f"{path}: {name} codes have shape {tuple(codes.shape)}, model "
                               f"{meta['model']!r} expects {tuple(layer.weight.shape)}")
            scale = torch.from_numpy(arrays[prefix + "weight_scale"].astype(np.float32))
            layer.weight_scale_fixed = scale.clone()
            layer.weight.copy_(codes * layer.weight_scale())
            layer.bias.copy_(torch.from_numpy(arrays[prefix + "bias"]))
            layer.act_scale.fill_(float(arrays[prefix + "act_scale"]))
            layer.act_zero_point.fill_(float(arrays[prefix + "act_zero_point"]))
            # files written before dead zones have none: nearest rounding
            deadzone = float(arrays.get(prefix + "deadzone", 0.5))
            if not 0.5 <= deadzone < 1.0:
                raise DseError(f"{path}: {prefix}deadzone = {deadzone}: expected a number in "
                               "[0.5, 1)")
            layer.set_allowed(arrays[prefix + "allowed"].tolist(), deadzone)
        state = {k[len("float/"):]: torch.from_numpy(v) for k, v in arrays.items()
                 if k.startswith("float/")}
        if state:
            net.model.load_state_dict(state, strict=False)
    net.model.eval()
    return net, meta
