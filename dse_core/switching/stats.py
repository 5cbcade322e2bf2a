"""Per-layer switching statistics, measured on real tensors streamed in the array's order.

For each conv/linear layer of an int8 network and an array of ``rows`` rows:

- ``act_transitions[a, a']``: the probability that a PE's activation input changes from code
  ``a`` to ``a'`` between two consecutive streamed vectors. A PE row holding im2col column k
  sees column k of the layer's uint8 im2col matrix, one output pixel after another.
- ``psum_groups[g]``: the probability that the partial sum entering a PE goes from p to p'
  with ``g`` = popcount of the top ``msb_bits`` bits of p XOR p' (as ``psum_bits``-bit two's
  complement); ``psum_unchanged`` is the part of group 0 where p' = p (the top row of a fold,
  or all activations above unchanged), which costs no psum switching at all. p is the exact
  partial dot product of the rows above the PE within its fold: folds cut K into chunks of
  ``rows``.
- ``psum_magnitude[b]``: the probability that the partial sum entering a PE has bit length b
  (0 for p = 0): small sums flip sign, and with it the adder's sign-extension bits, when the
  product changes; large ones do not.
- ``cycle_classes[k]``: the joint class of a busy PE-cycle (:func:`cycle_class`): whether the
  partial sum changes, its MSB-Hamming group, and whether the PE's own activation changes.
  The three are strongly dependent (a background pixel that holds usually sits under partial
  sums that hold too), so the layer-aware model uses this joint distribution.
- ``calibration_cycles`` (4, M) = (a, a', p, p') with ``calibration_class`` (M,): a stratified
  sample of real PE-cycles, ``calibration_per_class`` per class present (drawn with
  replacement, each class in proportion to where its cycles are), taken from the same
  consecutive-vector pairs. The layer-aware model substitutes every weight code into them.

Transitions are sampled uniformly (``max_transitions`` activation pairs; for the psums,
consecutive-vector pairs up to ``psum_pe_cycles`` busy PE-cycles per layer, at least 32 pairs;
both spread over the batches; a wide layer's partial sums on a uniform sample of its output
columns, :mod:`dse_core.switching.psum_replay`) so collecting stays within a few inference
passes. The layer's
int8 weight codes and short runs of consecutive im2col rows, taken at random places, are kept
too: the ``exact`` energy model replays them through the PE netlist.
"""

from __future__ import annotations

import functools
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.cache import atomic_write, content_hash
from dse_core.errors import DseError, ValidationError
from dse_core.switching.psum_replay import PsumTally, psum_columns
from dse_core.types import LayerSpec, default_psum_bits

__all__ = ["LayerStats", "NetworkStats", "collect_stats", "cycle_class", "psum_group",
           "STATS_FORMAT"]

log = logging.getLogger(__name__)
STATS_FORMAT = "systolic-dse-stats/10"
#: bump when collecting gives other numbers (not another file layout): caches recollect
STATS_METHOD = "psum-columns-sampled/1"
PRODUCT_BITS = 16
PSUM_CHUNK_CYCLES = 1 << 22  # PE-cycles of exact partial sums held in memory at once


def psum_group(p: np.ndarray, p_next: np.ndarray, psum_bits: int, msb_bits: int) -> np.ndarray:
    """MSB-Hamming group of p -> p_next: popcount of their top ``msb_bits`` of ``psum_bits``."""
    diff = (np.asarray(p, dtype=np.int64) ^ np.asarray(p_next, dtype=np.int64))
    top = (diff >> (psum_bits - msb_bits)) & ((1 << msb_bits) - 1)
    return np.bitwise_count(top).astype(np.int64)


def cycle_class(a: np.ndarray, a_next: np.ndarray, p: np.ndarray, p_next: np.ndarray,
                psum_bits: int, msb_bits: int) -> np.ndarray:
    """Class of a PE-cycle, with ``c`` = [a' ≠ a]: a partial sum that holds gives class
    ``c`` (0 or 1), one that changes with MSB-Hamming group g gives ``2 + 2g + c``. There are
    ``2 + 2 (msb_bits + 1)`` classes."""
    moved = (np.asarray(a) != np.asarray(a_next)).astype(np.int64)
    changed = np.asarray(p) != np.asarray(p_next)
    return _class_of(changed, psum_group(p, p_next, psum_bits, msb_bits), moved)


def _class_of(psum_changed: np.ndarray, group: np.ndarray, act_moved: np.ndarray) -> np.ndarray:
    return np.where(psum_changed, 2 + 2 * group + act_moved, act_moved)


def n_cycle_classes(msb_bits: int) -> int:
    return 2 + 2 * (msb_bits + 1)


def _probabilities(owner: str, name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if value.shape != shape:
        raise ValidationError.field(owner, name, value.shape, f"shape {shape}")
    if not np.all(np.isfinite(value)) or value.min() < 0 or abs(value.sum() - 1) > 1e-6:
        raise ValidationError(f"{owner}.{name}: expected finite probabilities summing to 1")


@dataclass(frozen=True, eq=False)
class LayerStats:
    """Switching statistics of one layer for one array row count (see the module doc)."""

    layer: str
    rows: int
    psum_bits: int
    msb_bits: int
    act_transitions: np.ndarray
    psum_groups: np.ndarray
    weight_codes: np.ndarray        # int8, (groups, K, N)
    activation_sample: np.ndarray   # uint8, (groups, windows, S, K): runs of S consecutive
    #                                 streamed vectors, at random places of the calibration set
    n_act_transitions: int
    n_psum_transitions: int
    psum_unchanged: float = 0.0
    psum_magnitude: np.ndarray | None = None
    cycle_classes: np.ndarray | None = None        # (2 + 2 (msb_bits + 1),) probabilities
    calibration_cycles: np.ndarray | None = None   # int64 (4, M): a, a', p, p'
    calibration_class: np.ndarray | None = None    # int64 (M,)
    global_act_transitions: np.ndarray | None = field(default=None, repr=False)
    global_psum_groups: np.ndarray | None = field(default=None, repr=False)
    global_psum_unchanged: float | None = field(default=None, repr=False)
    global_psum_magnitude: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        owner = "LayerStats"
        _probabilities(owner, "act_transitions", self.act_transitions, (256, 256))
        _probabilities(owner, "psum_groups", self.psum_groups, (self.msb_bits + 1,))
        if self.weight_codes.dtype != np.int8 or self.weight_codes.ndim != 3:
            raise ValidationError.field(owner, "weight_codes", self.weight_codes.dtype,
                                        "an int8 array (groups, K, N)")
        if self.activation_sample.dtype != np.uint8 or self.activation_sample.ndim != 4:
            raise ValidationError.field(owner, "activation_sample",
                                        self.activation_sample.dtype,
                                        "a uint8 array (groups, windows, S, K)")
        magnitude = (self.psum_magnitude if self.psum_magnitude is not None
                     else np.eye(self.psum_bits)[0])
        object.__setattr__(self, "psum_magnitude", magnitude)
        _probabilities(owner, "psum_magnitude", magnitude, (self.psum_bits,))
        if not 0 <= self.psum_unchanged <= self.psum_groups[0] + 1e-9:
            raise ValidationError.field(owner, "psum_unchanged", self.psum_unchanged,
                                        f"a probability <= psum_groups[0] = {self.psum_groups[0]}")
        if not 0 < self.msb_bits <= self.psum_bits:
            raise ValidationError.field(owner, "msb_bits", self.msb_bits,
                                        f"1..psum_bits={self.psum_bits}")
        classes = n_cycle_classes(self.msb_bits)
        if self.cycle_classes is not None:
            _probabilities(owner, "cycle_classes", self.cycle_classes, (classes,))
        cycles, kinds = self.calibration_cycles, self.calibration_class
        if (cycles is None) != (kinds is None):
            raise ValidationError(f"{owner}: calibration_cycles and calibration_class come "
                                  "together")
        if cycles is not None and kinds is not None:
            if cycles.ndim != 2 or cycles.shape[0] != 4 or kinds.shape != cycles.shape[1:]:
                raise ValidationError.field(owner, "calibration_cycles", cycles.shape,
                                            f"(4, M) with calibration_class (M,) = {kinds.shape}")
            if len(kinds) and (kinds.min() < 0 or kinds.max() >= classes):
                raise ValidationError.field(owner, "calibration_class", int(kinds.max()),
                                            f"classes 0..{classes - 1}")

    @functools.cached_property
    def weight_histogram(self) -> np.ndarray:
        """Counts of each int8 code in the layer, indexed code + 128: counted once (ResNet-50's
        25 M codes cost ~0.1 s), read-only so that no caller changes it for the rest."""
        counts = np.bincount(self.weight_codes.ravel().astype(np.int64) + 128, minlength=256)
        counts.setflags(write=False)
        return counts

    def matches(self, layer: LayerSpec) -> bool:
        g, k, n = self.weight_codes.shape
        return (g, k, n) == (layer.groups, layer.gemm_k, layer.gemm_n)


@dataclass(frozen=True, eq=False)
class NetworkStats:
    """Statistics of every layer of one int8 network on one array row count, plus the
    network-wide distributions (transition-count-weighted means) the global model uses."""

    fingerprint: str
    meta: Mapping[str, Any]
    layers: Mapping[str, LayerStats]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValidationError("NetworkStats.layers: expected at least one layer")
        acts = np.sum([s.act_transitions * s.n_act_transitions for s in self.layers.values()],
                      axis=0)
        psums = np.sum([s.psum_groups * max(1, s.n_psum_transitions)
                        for s in self.layers.values()], axis=0)
        weights = [max(1, s.n_psum_transitions) for s in self.layers.values()]
        unchanged = float(np.average([s.psum_unchanged for s in self.layers.values()],
                                     weights=weights))
        magnitude = np.average([s.psum_magnitude for s in self.layers.values()], axis=0,
                               weights=weights)
        acts = acts / acts.sum()
        psums = psums / psums.sum()
        object.__setattr__(self, "layers", {
            name: replace(s, global_act_transitions=acts, global_psum_groups=psums,
                          global_psum_unchanged=unchanged, global_psum_magnitude=magnitude)
            for name, s in self.layers.items()})

    def check_layers(self, layers: Sequence[LayerSpec]) -> None:
        """A user error unless these statistics were collected on exactly these layers."""
        for layer in layers:
            stats = self.layers.get(layer.name)
            if stats is None or not stats.matches(layer):
                raise DseError(f"statistics {self.fingerprint} were collected on another model: "
                               f"layer {layer.name!r} is missing or has another shape")

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        layer_meta = []
        for i, (name, s) in enumerate(self.layers.items()):
            for key in ("act_transitions", "psum_groups", "psum_magnitude", "weight_codes",
                        "activation_sample", *_OPTIONAL_ARRAYS):
                if getattr(s, key) is not None:
                    arrays[f"{i}.{key}"] = getattr(s, key)
            layer_meta.append({"name": name, "rows": s.rows, "psum_bits": s.psum_bits,
                               "msb_bits": s.msb_bits, "n_act": s.n_act_transitions,
                               "n_psum": s.n_psum_transitions,
                               "psum_unchanged": s.psum_unchanged})
        header = {"format": STATS_FORMAT, "fingerprint": self.fingerprint,
                  "meta": dict(self.meta), "layers": layer_meta}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]

        return atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> NetworkStats:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                if header.get("format") != STATS_FORMAT:
                    raise DseError(f"{path}: format = {header.get('format')!r}: expected "
                                   f"{STATS_FORMAT!r}")
                layers = {}
                for i, lm in enumerate(header["layers"]):
                    layers[lm["name"]] = LayerStats(
                        layer=lm["name"], rows=lm["rows"], psum_bits=lm["psum_bits"],
                        msb_bits=lm["msb_bits"],
                        act_transitions=data[f"{i}.act_transitions"],
                        psum_groups=data[f"{i}.psum_groups"],
                        psum_magnitude=data[f"{i}.psum_magnitude"],
                        weight_codes=data[f"{i}.weight_codes"],
                        activation_sample=data[f"{i}.activation_sample"],
                        n_act_transitions=lm["n_act"], n_psum_transitions=lm["n_psum"],
                        psum_unchanged=lm["psum_unchanged"],
                        **{k: data[f"{i}.{k}"] if f"{i}.{k}" in data else None
                           for k in _OPTIONAL_ARRAYS})
            fingerprint, meta = header["fingerprint"], header["meta"]
        except DseError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
                json.JSONDecodeError) as exc:  # truncated, not an npz, a field missing
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise DseError(f"{path}: not a readable statistics file ({detail})") from exc
        return cls(fingerprint, meta, layers)


_OPTIONAL_ARRAYS = ("cycle_classes", "calibration_cycles", "calibration_class")


def model_fingerprint(layers: Sequence[LayerSpec], codes: Mapping[str, np.ndarray]) -> str:
    """Identifies an int8 network: its layer shapes and weight codes."""
    parts: list[bytes | str] = []
    for layer in layers:
        parts += [repr(layer), codes[layer.name].tobytes()]
    return content_hash(*parts)


class _Im2col:
    """Entries of a layer's uint8 im2col matrix, gathered on demand from the padded
    activation codes instead of materialising the matrix (which costs more than the layer).

    ``get(group, m, k)`` returns column ``k`` (within the group, ordered channel, ky, kx like
    ``torch.nn.functional.unfold``) of streamed row ``m`` (batch, then output rows, then
    output columns)."""

    def __init__(self, codes: Any, module: Any, pad_value: float, spec: LayerSpec) -> None:
        import torch
        from torch.nn import functional

        self.linear = isinstance(module, torch.nn.Linear)
        if self.linear:
            self.flat = codes.reshape(-1, codes.shape[-1])
            self.m, self.k = self.flat.shape
            return
        ph, pw = spec.padding
        padded = functional.pad(codes, (pw, pw, ph, ph), value=pad_value)
        self.flat = padded.reshape(-1)
        channels, hp, wp = padded.shape[1:]
        self.ho, self.wo = spec.output_hw
        kh, kw = spec.kernel
        sh, sw = spec.stride
        dh, dw = spec.dilation
        cg = spec.in_channels // spec.groups
        self.k = cg * kh * kw
        self.m = padded.shape[0] * self.ho * self.wo
        # flat index = base(pixel) + offset(group, column): computed once per layer call
        k = torch.arange(self.k)
        c, ky, kx = k // (kh * kw), (k % (kh * kw)) // kw, k % kw
        group = torch.arange(spec.groups)[:, None]
        self.offset = ((group * cg + c) * hp + ky * dh) * wp + kx * dw     # (groups, K)
        self.image_stride, self.row_stride = channels * hp * wp, sh * wp
        self.col_stride = sw

    def _base(self, m: Any) -> Any:
        b, rem = m // (self.ho * self.wo), m % (self.ho * self.wo)
        return (b * self.image_stride + (rem // self.wo) * self.row_stride
                + (rem % self.wo) * self.col_stride)

    def get(self, group: Any, m: Any, k: Any) -> Any:
        if self.linear:
            return self.flat[m, k]
        return self.flat[self._base(m) + self.offset[group, k]]

    def rows(self, group: int, m: Any) -> Any:
        """Full im2col rows ``m`` of one group: (len(m), K)."""
        if self.linear:
            return self.flat[m]
        return self.flat[self._base(m)[:, None] + self.offset[group][None, :]]


class _LayerAccumulator:
    """Gathers float samples of one layer's input during a single forward pass (positions
    do not depend on the quantisation scale), then quantises them with the calibrated range
    and builds the statistics."""

    def __init__(self, spec: LayerSpec, codes: np.ndarray, rows: int, psum_bits: int,
                 msb_bits: int, act_budget: int, psum_pixels: int, sample_pixels: int,
                 windows_per_batch: int, max_windows: int, rng: np.random.Generator,
                 per_class: int, psum_columns: np.ndarray) -> None:
        import torch

        self.spec, self.rows = spec, rows
        self.psum_bits, self.msb_bits = psum_bits, msb_bits
        g, k, n = spec.groups, spec.gemm_k, spec.gemm_n
        # weight (C_out, C_in/g, kh, kw) -> per group (K, N), K ordered like unfold's rows
        self.codes = codes.reshape(g, n, k).transpose(0, 2, 1).copy()
        self.act_budget, self.psum_pixels, self.sample_pixels = act_budget, psum_pixels, \
            sample_pixels
        self.rng, self.per_class = rng, per_class
        self.windows_per_batch, self.max_windows = windows_per_batch, max_windows
        self.lo, self.hi = 0.0, 0.0
        self.act_pairs: list[tuple[Any, Any]] = []
        self.psum_rows: list[Any] = []  # (groups, 2, P, K) per batch
        self.windows: list[Any] = []
        folds = -(-k // rows)
        padded = np.zeros((g, folds * rows, n), dtype=np.int32)
        padded[:, :k] = self.codes
        self.weights = torch.from_numpy(np.ascontiguousarray(padded[:, :, psum_columns]))

    def add(self, x: Any, cols: _Im2col) -> None:
        import torch

        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        g, m, k = self.spec.groups, cols.m, cols.k
        if m < 2:
            return
        length = min(m, self.sample_pixels)
        starts = torch.from_numpy(self.rng.integers(0, m - length + 1, self.windows_per_batch))
        spans = (starts[:, None] + torch.arange(length)[None]).ravel()
        self.windows.append(torch.stack([cols.rows(group, spans).reshape(-1, length, k)
                                         for group in range(g)]))     # (groups, W, S, K)
        total = (m - 1) * k * g
        if total <= self.act_budget:  # every pair: the distribution is exact
            flat = torch.arange(total)
        else:
            flat = torch.from_numpy(self.rng.integers(0, total, self.act_budget))
        gi, rest = flat // ((m - 1) * k), flat % ((m - 1) * k)
        mi, ki = rest // k, rest % k
        self.act_pairs.append((cols.get(gi, mi, ki), cols.get(gi, mi + 1, ki)))
        starts = torch.from_numpy(np.sort(self.rng.choice(m - 1, min(m - 1, self.psum_pixels),
                                                          replace=False)))
        self.psum_rows.append(torch.stack([
            torch.stack([cols.rows(group, starts), cols.rows(group, starts + 1)])
            for group in range(g)]))

    def result(self) -> LayerStats:
        import torch

        from dse_core.quantization.quant import ActivationQuant, activation_codes

        if not self.windows or not self.act_pairs:
            raise DseError(f"layer {self.spec.name!r} streamed fewer than 2 vectors: "
                           "use more calibration images")
        quant = ActivationQuant.from_range(self.lo, self.hi)
        before = activation_codes(torch.cat([a for a, _ in self.act_pairs]), quant).long()
        after = activation_codes(torch.cat([b for _, b in self.act_pairs]), quant).long()
        act_counts = torch.bincount(before * 256 + after, minlength=65536).numpy()
        tally = PsumTally(self.psum_bits, self.msb_bits, n_cycle_classes(self.msb_bits),
                          self.per_class, self.rng)
        rows, k = self.rows, self.spec.gemm_k
        codes = activation_codes(torch.cat(self.psum_rows, dim=2), quant).to(torch.int32)
        pairs = codes.shape[2]
        # chunks of vector pairs bound the (2, pairs, K, N) partial-sum tensors' memory
        chunk = max(1, PSUM_CHUNK_CYCLES // (self.weights.shape[1] * self.weights.shape[2]))
        for group in range(self.spec.groups):
            for lo in range(0, pairs, chunk):
                tally.add(codes[group, :, lo:lo + chunk], self.weights[group], rows, k)
        class_counts, magnitude = tally.class_counts, tally.magnitude
        # psum groups and unchanged psums follow from the classes: a psum that holds is group 0
        psum_counts = class_counts[2::2] + class_counts[3::2]
        psum_counts[0] += class_counts[0] + class_counts[1]
        unchanged = int(class_counts[0] + class_counts[1])
        cycles, kinds = tally.stratified()
        return LayerStats(
            layer=self.spec.name, rows=self.rows, psum_bits=self.psum_bits,
            msb_bits=self.msb_bits,
            act_transitions=(act_counts / act_counts.sum()).reshape(256, 256),
            psum_groups=psum_counts / psum_counts.sum() if psum_counts.sum()
            else np.eye(self.msb_bits + 1)[0],
            weight_codes=self.codes.astype(np.int8),
            activation_sample=activation_codes(
                torch.cat(self.windows, dim=1)[:, : self.max_windows], quant).numpy(),
            n_act_transitions=int(act_counts.sum()),
            n_psum_transitions=int(psum_counts.sum()),
            psum_unchanged=unchanged / psum_counts.sum() if psum_counts.sum() else 1.0,
            psum_magnitude=magnitude / magnitude.sum() if magnitude.sum()
            else np.eye(self.psum_bits)[0],
            cycle_classes=class_counts / class_counts.sum() if class_counts.sum()
            else np.eye(len(class_counts))[0],
            calibration_cycles=cycles, calibration_class=kinds)


def _quantised(model: Any, layers: Sequence[LayerSpec], example: Any
               ) -> tuple[Any, dict[str, np.ndarray], str]:
    """BN-folded copy, int8 weight codes by module name, and the network's fingerprint."""
    import torch

    from dse_core.quantization.quant import fold_batchnorm, weight_codes

    folded = fold_batchnorm(model, example)
    codes = {name: weight_codes(m.weight)[0] for name, m in folded.named_modules()
             if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)}
    fingerprint = model_fingerprint(layers, {
        layer.name: codes[layer.name.split("#")[0]] for layer in layers})
    return folded, codes, fingerprint


def network_fingerprint(model: Any, layers: Sequence[LayerSpec], example: Any) -> str:
    """The fingerprint statistics of this int8 network carry (shapes and weight codes)."""
    return _quantised(model, layers, example)[2]


def collect_stats(
    model: Any, layers: Sequence[LayerSpec], batches: Sequence[Any], *, rows: int,
    psum_bits: int | None = None, msb_bits: int | None = None,
    max_transitions: int = 1 << 16, psum_pixels: int | None = None,
    psum_pe_cycles: int = 1 << 19, psum_max_pe_cycles: int = 1 << 21,
    calibration_per_class: int = 128, sample_pixels: int = 9,
    sample_windows: int = 1024, sample_bytes: int = 1 << 20,
    seed: int = 0, meta: Mapping[str, Any] | None = None, progress: bool = False,
) -> NetworkStats:
    """Quantise ``model`` (BN folded, int8 weights, uint8 activations calibrated on
    ``batches``) and measure every layer's statistics on the same batches (with a bar)."""
    import torch

    if not batches:
        raise DseError("no calibration batches: expected at least one")
    psum_bits = psum_bits or default_psum_bits(rows)
    msb_bits = msb_bits or max(1, psum_bits - PRODUCT_BITS)
    folded, codes, fingerprint = _quantised(model, layers, batches[0][:1])
    modules = [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    names = {m: n for n, m in folded.named_modules()}
    specs = {layer.name: layer for layer in layers}
    rng = np.random.default_rng(seed)
    per_batch = max(1, max_transitions // len(batches))
    accumulators = {}
    for layer in layers:
        # small layers keep more windows: the exact replay of their few PEs needs them
        windows = max(16, min(sample_windows, sample_bytes // (
            layer.groups * sample_pixels * layer.gemm_k)))
        # consecutive-vector pairs for the psum statistics: up to psum_pe_cycles busy
        # PE-cycles, at least 32 pairs, at most 4,096 (a layer with few PEs is cheap)
        pairs = psum_pixels or int(np.clip(
            psum_pe_cycles // (layer.groups * layer.gemm_k * layer.gemm_n), 32, 4096))
        # a wide layer's 32 pairs over every column would cost up to 75 M PE-cycles
        # (ResNet-50's 3x3x512 convs): its columns are sampled down to psum_max_pe_cycles
        columns = psum_columns(layer.gemm_n, pairs, layer.gemm_k, layer.groups,
                               psum_max_pe_cycles, 8, rng)
        accumulators[layer.name] = _LayerAccumulator(
            layer, codes[layer.name.split("#")[0]], rows, psum_bits, msb_bits, per_batch,
            -(-pairs // len(batches)), sample_pixels, -(-windows // len(batches)),
            windows, rng, calibration_per_class, columns)
    calls: dict[Any, int] = {}

    def hook(mod: Any, inp: Any, _out: Any) -> None:
        calls[mod] = calls.get(mod, 0) + 1
        name = names[mod] if calls[mod] == 1 else f"{names[mod]}#{calls[mod]}"
        if name in specs:  # padding holds real 0, whatever its code turns out to be
            x = inp[0].detach()
            accumulators[name].add(x, _Im2col(x, mod, 0.0, specs[name]))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        from tqdm import tqdm

        with torch.no_grad():
            for x in tqdm(batches, desc="switching statistics", unit="batch",
                          disable=not progress):
                calls.clear()
                folded(x)
    finally:
        for h in handles:
            h.remove()
    full_meta = {"rows": rows, "psum_bits": psum_bits, "msb_bits": msb_bits,
                 "images": int(sum(len(b) for b in batches)), "seed": seed, **(meta or {})}
    # the partial-sum replay of every layer: seconds on an ImageNet-size network
    items = tqdm(accumulators.items(), desc="partial sums", unit="layer", disable=not progress)
    return NetworkStats(fingerprint, full_meta, {name: acc.result() for name, acc in items})
