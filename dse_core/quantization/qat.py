"""Quantisation-aware training with per-layer allowed weight codes, and integer inference.

A :class:`QuantNetwork` is a BN-folded copy of a float model whose Conv2d / Linear modules are
replaced by :class:`QuantLayer` s:

* weights: symmetric int8 per output channel, ``scale_c = max|w_c| / 127`` recomputed from the
  latent float weights on every forward; ``code = table[round(w / scale_c) + 128]`` where the
  256-entry ``table`` maps every int8 code to the nearest *allowed* code (ties go to the code
  nearer zero, which is also the cheaper one in practice). Gradients pass straight through
  (STE) to the latent weights.
* activations entering the layer: asymmetric uint8, ``code = clamp(round(x / s) + zp, 0, 255)``
  with ``s`` and ``zp`` calibrated once from min/max on calibration batches and then fixed.
* In ``train()`` mode the layer fake-quantises in float32 (STE on both). In ``eval()`` mode it
  computes the integer accumulator ``Σ (a - zp) · w`` exactly and rescales in float32. The
  accumulator is a float32 convolution when its worst case fits the 24-bit mantissa; when not
  (K >= 518), a sum in float64 of float32 convolutions over input-channel slices that each
  fit (a float64 convolution has no fast CPU kernel: 5x slower on ResNet-20's 64-channel
  layers), and float64 only for grouped convolutions. Then
  ``y = acc · (s · scale_c) + bias``. :func:`integer_predict` computes the accumulators with
  int64 tensors instead and reproduces eval-mode outputs bit for bit (tested), which is what
  an array of integer MACs with a float rescale at the column outputs does.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dse_core.quantization.quant import ActivationQuant, fold_batchnorm
from dse_core.types import AllowedSet

__all__ = ["QuantNetwork", "projection_table", "quantize_network", "integer_predict",
           "FULL_CODES"]

#: every code a symmetric int8 weight can take
FULL_CODES: tuple[int, ...] = tuple(range(-127, 128))
_F32_EXACT = 1 << 24


def projection_table(codes: Iterable[int], deadzone: float = 0.5) -> np.ndarray:
    """``table[c + 128]`` = the allowed code nearest to ``c``, ties to the one nearer zero;
    with a ``deadzone`` over 0.5, ``c`` goes to 0 while ``|c| <= deadzone * |a|``, ``a`` the
    allowed code nearest 0 on ``c``'s side (:class:`~dse_core.types.AllowedSet`)."""
    allowed = np.array(sorted(set(int(c) for c in codes)), dtype=np.int64)
    every = np.arange(-128, 128, dtype=np.int64)
    distance = np.abs(every[:, None] - allowed[None, :]) * 1024 + np.abs(allowed)[None, :]
    table = allowed[np.argmin(distance, axis=1)]
    if 0 in allowed:
        for sign in (1, -1):
            side = allowed[allowed * sign > 0] * sign
            if side.size:
                table[(every * sign > 0) & (every * sign <= deadzone * side.min())] = 0
    return table


def _layer_class() -> Any:
    import torch
    from torch import nn

    class QuantLayer(nn.Module):
        """A Conv2d or Linear with int8 weights restricted to an allowed set."""

        # buffers and conv geometry, typed loosely: torch's stubs type them as Tensor | Module
        table: Any
        act_scale: Any
        act_zero_point: Any
        weight_scale_fixed: Any
        stride: Any
        padding: Any
        dilation: Any
        groups: Any

        def __init__(self, source: Any) -> None:
            super().__init__()
            self.is_conv = isinstance(source, nn.Conv2d)
            self.weight = nn.Parameter(source.weight.detach().clone())
            bias = source.bias if source.bias is not None else torch.zeros(
                source.weight.shape[0])
            self.bias = nn.Parameter(bias.detach().clone())
            if self.is_conv:
                self.stride, self.padding = source.stride, source.padding
                self.dilation, self.groups = source.dilation, source.groups
                if source.padding_mode != "zeros":
                    raise ValueError(f"padding_mode {source.padding_mode!r} is not supported")
            self.register_buffer("table", torch.arange(-128, 128, dtype=torch.long))
            self.register_buffer("act_scale", torch.tensor(1.0))
            self.register_buffer("act_zero_point", torch.tensor(0.0))
            # set when a saved model is loaded: its codes were made with these scales
            self.register_buffer("weight_scale_fixed", torch.zeros(0))
            self.allowed: tuple[int, ...] = FULL_CODES
            self.deadzone = 0.5
            k = int(np.prod(self.weight.shape[1:]))
            self.exact_in_float32 = 255 * 127 * k < _F32_EXACT
            # input-channel slices whose partial accumulators are exact in float32
            self.exact_slices: list[slice] = []
            per_channel = k // self.weight.shape[1]
            fits = (_F32_EXACT - 1) // (255 * 127 * per_channel)
            if not self.exact_in_float32 and fits >= 1 and getattr(self, "groups", 1) == 1:
                c_in = self.weight.shape[1]
                n = -(-c_in // fits)
                step = -(-c_in // n)
                self.exact_slices = [slice(i, min(i + step, c_in)) for i in range(0, c_in, step)]

        # -- quantisers -------------------------------------------------------------------
        def weight_scale(self) -> Any:
            w = self.weight.detach()
            if self.weight_scale_fixed.numel():
                return self.weight_scale_fixed.reshape(-1, *([1] * (w.dim() - 1)))
            scale = w.reshape(w.shape[0], -1).abs().amax(dim=1).clamp_min(1e-12) / 127.0
            return scale.reshape(-1, *([1] * (w.dim() - 1)))

        def weight_codes(self) -> Any:
            """Projected int8 codes (as float tensor of integers) and the per-channel scale."""
            scale = self.weight_scale()
            raw = torch.clamp(torch.round(self.weight.detach() / scale), -127, 127)
            if self.allowed is FULL_CODES:  # plain int8: nothing to project
                return raw, scale
            return self.table[raw.long() + 128].to(self.weight.dtype), scale

        def activation_int(self, x: Any) -> Any:
            """``code - zero_point`` as a float tensor of integers."""
            s, zp = self.act_scale, self.act_zero_point
            return torch.clamp(torch.round(x / s) + zp, 0, 255) - zp

        def set_allowed(self, codes: Iterable[int], deadzone: float = 0.5) -> None:
            allowed = tuple(sorted(set(int(c) for c in codes)))
            self.allowed = FULL_CODES if allowed == FULL_CODES else allowed
            self.deadzone = float(deadzone)
            self.table.copy_(torch.from_numpy(projection_table(self.allowed, deadzone)))

        def _op(self, x: Any, w: Any) -> Any:
            import torch.nn.functional as F

            if self.is_conv:
                return F.conv2d(x, w, None, self.stride, self.padding, self.dilation,
                                self.groups)
            return F.linear(x, w)

        def forward(self, x: Any) -> Any:
            codes, scale = self.weight_codes()
            if self.training:
                w_q = self.weight + (codes * scale - self.weight).detach()
                x_q = x + (self.activation_int(x) * self.act_scale - x).detach()
                return self._op(x_q, w_q) + self._bias_shape(self.bias)
            a = self.activation_int(x)
            if self.exact_in_float32:
                acc = self._op(a, codes)
            elif self.exact_slices:  # each slice exact in float32, their sum in float64
                acc = sum(self._op(a[:, s], codes[:, s]).to(torch.float64)
                          for s in self.exact_slices)
            else:
                acc = self._op(a.to(torch.float64), codes.to(torch.float64))
            return self.rescale(acc.to(torch.float32), scale)

        def rescale(self, acc: Any, scale: Any) -> Any:
            per_channel = (scale.reshape(-1) * self.act_scale).to(torch.float32)
            return acc * self._bias_shape(per_channel) + self._bias_shape(self.bias)

        def _bias_shape(self, v: Any) -> Any:
            return v.reshape(1, -1, 1, 1) if self.is_conv else v

    return QuantLayer


@functools.cache
def _quant_layer_type() -> Any:
    """The QuantLayer class, built on first use so importing this module needs no torch."""
    return _layer_class()


@dataclass
class QuantNetwork:
    """The QAT model and its quantised layers by module name."""

    model: Any
    layers: dict[str, Any]

    def allowed_sets(self) -> dict[str, AllowedSet]:
        return {n: AllowedSet(n, m.allowed, m.deadzone) for n, m in self.layers.items()}

    def set_allowed(self, name: str, codes: Iterable[int], deadzone: float = 0.5) -> None:
        self.layers[name].set_allowed(codes, deadzone)

    def codes(self) -> dict[str, np.ndarray]:
        """Each layer's projected int8 codes, shaped like its weight."""
        return {name: self.layer_codes(name) for name in self.layers}

    def layer_codes(self, name: str) -> np.ndarray:
        c, _ = self.layers[name].weight_codes()
        return c.to("cpu").numpy().astype(np.int8)

    def weights_in_code_units(self, names: Iterable[str] | None = None
                              ) -> dict[str, np.ndarray]:
        """Latent weight / scale (before rounding), flattened: what selection policies see;
        every layer's, or those ``names``."""
        out = {}
        for name in self.layers if names is None else names:
            m = self.layers[name]
            out[name] = (m.weight.detach() / m.weight_scale()).to("cpu").numpy().ravel()
        return out

    def state(self) -> dict[str, Any]:
        """A snapshot to :meth:`restore` (weights, buffers and allowed sets)."""
        return {"state": copy.deepcopy(self.model.state_dict()),
                "allowed": {n: (m.allowed, m.deadzone) for n, m in self.layers.items()}}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.model.load_state_dict(snapshot["state"])  # the projection tables are buffers
        for name, (codes, deadzone) in snapshot["allowed"].items():
            self.layers[name].allowed, self.layers[name].deadzone = codes, deadzone


def quantize_network(model: Any, calibration: Iterable[Any], example: Any) -> QuantNetwork:
    """BN-fold ``model``, swap its Conv2d/Linear for :class:`QuantLayer` s and calibrate the
    activation quantisers from min/max of each layer's inputs on ``calibration`` batches."""
    import torch
    from torch import nn

    quant_layer = _quant_layer_type()
    folded = fold_batchnorm(model, example)
    names = [n for n, m in folded.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    ranges: dict[str, list[float]] = {n: [0.0, 0.0] for n in names}

    def observe(name: str) -> Any:
        def hook(_mod: Any, inp: Any, _out: Any) -> None:
            x = inp[0].detach()
            r = ranges[name]
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
        return hook

    handles = [folded.get_submodule(n).register_forward_hook(observe(n)) for n in names]
    with torch.no_grad():
        for x in calibration:
            folded(x)
    for h in handles:
        h.remove()
    layers = {}
    for name in names:
        layer = quant_layer(folded.get_submodule(name))
        q = ActivationQuant.from_range(*ranges[name])
        layer.act_scale.fill_(q.scale)
        layer.act_zero_point.fill_(float(q.zero_point))
        parent_name, _, child = name.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, child, layer)
        layers[name] = layer
    return QuantNetwork(folded, layers)


def _integer_forward(layer: Any, x: Any) -> Any:
    """The layer's output from int64 accumulators (same rescale as eval mode)."""
    import torch
    import torch.nn.functional as F

    a = layer.activation_int(x).to(torch.int64)
    codes, scale = layer.weight_codes()
    w = codes.to(torch.int64)
    if not layer.is_conv:
        return layer.rescale((a @ w.t()).to(torch.float32), scale)
    n, c_in, h, wd = x.shape
    k_h, k_w = w.shape[2:]
    cols = F.unfold(a.to(torch.float64), (k_h, k_w), layer.dilation, layer.padding,
                    layer.stride).round().to(torch.int64)  # integers, exactly
    out_h = (h + 2 * layer.padding[0] - layer.dilation[0] * (k_h - 1) - 1) // layer.stride[0] + 1
    out_w = (wd + 2 * layer.padding[1] - layer.dilation[1] * (k_w - 1) - 1) // layer.stride[1] + 1
    g = layer.groups
    per_group_k = c_in // g * k_h * k_w
    outs = []
    for i in range(g):
        w_g = w[i * w.shape[0] // g:(i + 1) * w.shape[0] // g].reshape(w.shape[0] // g, -1)
        outs.append(w_g @ cols[:, i * per_group_k:(i + 1) * per_group_k])
    acc = torch.cat(outs, dim=1).reshape(n, w.shape[0], out_h, out_w)
    return layer.rescale(acc.to(torch.float32), scale)


def integer_predict(net: QuantNetwork, x: Any) -> Any:
    """Logits of ``net`` with every quantised layer computed by int64 arithmetic."""
    import torch

    originals = {}
    for name, layer in net.layers.items():
        originals[name] = layer.forward
        layer.forward = (lambda inp, _l=layer: _integer_forward(_l, inp))
    was_training = net.model.training
    net.model.eval()
    try:
        with torch.no_grad():
            return net.model(x)
    finally:
        for name, layer in net.layers.items():
            del layer.forward
            assert layer.forward.__func__ is originals[name].__func__
        net.model.train(was_training)
