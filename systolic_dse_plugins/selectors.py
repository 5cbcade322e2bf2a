"""Shipped weight-selection policies: ``energy_accuracy`` (the paper's co-optimisation, as
reconstructed in docs/compression.md), ``lowest_energy`` (PowerPruning), ``full``, and two
energy-blind baselines a reviewer asks for: ``power_of_two`` (INQ-style) and ``kmeans``
(weight sharing with a learned codebook; with 3 codes, TTQ-style ternary sets)."""

from __future__ import annotations

from math import inf

import numpy as np

from dse_core import SelectorPlugin, hookimpl
from dse_core.compression.selection import SelectionRequest
from dse_core.errors import ValidationError
from dse_core.quantization.qat import FULL_CODES
from dse_core.types import AllowedSet

_CODES = np.arange(-128, 128)


def _raw_codes(weights: np.ndarray) -> np.ndarray:
    """The int8 code each weight rounds to before projection (index code + 128)."""
    return (np.clip(np.round(weights), -127, 127).astype(np.int64) + 128)


def _key(r: int, c: int | None) -> float:
    return inf if c is None else abs(r - c) * 1024 + abs(c - 128)


def _owned(lo: int | None, v: int, hi: int | None) -> list[tuple[int, int | None]]:
    """The raw codes that project to ``v`` (index codes, code + 128) when its remaining
    neighbours are ``lo`` and ``hi`` (None: none on that side), each with the neighbour it
    goes to once ``v`` is removed (None: v is the last code). The rule is
    ``projection_table``'s (nearest, ties to the code nearer zero), in plain Python: the
    greedy asks ~10⁵ times per network, always of a small range, and numpy's per-call
    overhead made the selection 4x slower."""
    out = []
    for r in range(0 if lo is None else lo, 256 if hi is None else hi + 1):
        k_lo, k_v, k_hi = _key(r, lo), _key(r, v), _key(r, hi)
        if k_v < k_lo and k_v <= k_hi:  # equal keys go to the first of lo, v, hi
            out.append((r, lo if k_lo <= k_hi else hi))
    return out


class FullSet:
    """Every int8 code: the uncompressed int8 network."""

    needs_sensitivity = False

    def select(self, request: SelectionRequest) -> AllowedSet:
        return AllowedSet(request.layer, FULL_CODES)


class LowestEnergy:
    """PowerPruning's selection: 0 and the ``n_levels - 1`` codes that cost least per MAC
    (ties to the smaller magnitude). Blind to where the layer's weights lie."""

    needs_sensitivity = False

    def select(self, request: SelectionRequest) -> AllowedSet:
        energy = np.asarray(request.energy_pj, dtype=np.float64)[1:]  # -127..127
        codes = _CODES[1:]
        order = np.lexsort((codes, np.abs(codes), energy))
        chosen = [0] + [int(c) for c in codes[order] if c != 0][:request.n_levels - 1]
        return AllowedSet(request.layer, tuple(chosen))


class EnergyAccuracy:
    """Greedy co-optimisation: start from every code and repeatedly remove the code whose
    removal saves the most energy per unit of added (sensitivity-weighted) squared
    quantisation error, until ``n_levels`` remain. 0 is never removed.

    ``criterion``: ``"ratio"`` removes the code with the largest ΔE/ΔD (the reconstruction in
    paper-notes); ``"lagrangian"`` removes the code with the largest
    ``energy_weight · ΔE/E − ΔD/D`` (ΔE relative to the layer's energy, ΔD relative to the
    weights' power Σ s·x²), i.e. greedily minimises distortion + λ · energy; λ = 0 gives a
    pure-accuracy quantiser, a large λ approaches PowerPruning but weighted by use.
    ``sensitivity``: ``"none"`` weighs every weight alike; ``"fisher"`` weighs each weight by
    its squared loss gradient (the host computes it on a few training batches).
    ``keep_signs``: a set of 3 or more codes keeps at least one code of each sign the
    layer's weights have (the greedy otherwise can end with e.g. {-124, -96, 0}, and every
    positive weight then becomes 0).
    ``deadzone``: the set's projection (:class:`~dse_core.types.AllowedSet`); the codes are
    chosen for nearest rounding, then weights up to ``deadzone`` of the way to the first code
    on their side go to 0 (more zeros, the cheapest code; a scheduler's ``squeeze_variants``
    widen it step by step while fine-tuning keeps the accuracy)."""

    def __init__(self, criterion: str = "ratio", energy_weight: float = 1.0,
                 sensitivity: str = "none", deadzone: float = 0.5,
                 keep_signs: bool = False) -> None:
        if criterion not in ("ratio", "lagrangian"):
            raise ValidationError.field("energy_accuracy", "criterion", criterion,
                                        "'ratio' or 'lagrangian'")
        if sensitivity not in ("none", "fisher"):
            raise ValidationError.field("energy_accuracy", "sensitivity", sensitivity,
                                        "'none' or 'fisher'")
        if isinstance(energy_weight, bool) or not isinstance(energy_weight, int | float) \
                or not energy_weight >= 0:
            raise ValidationError.field("energy_accuracy", "energy_weight", energy_weight,
                                        "a number >= 0")
        if isinstance(deadzone, bool) or not isinstance(deadzone, int | float) \
                or not 0.5 <= deadzone < 1:
            raise ValidationError.field("energy_accuracy", "deadzone", deadzone,
                                        "a number in [0.5, 1) (0.5 = nearest rounding)")
        self.criterion, self.energy_weight = criterion, float(energy_weight)
        self.deadzone = float(deadzone)
        if not isinstance(keep_signs, bool):
            raise ValidationError.field("energy_accuracy", "keep_signs", keep_signs,
                                        "true or false")
        self.keep_signs = keep_signs
        self.needs_sensitivity = sensitivity == "fisher"

    def select(self, request: SelectionRequest) -> AllowedSet:
        x = np.asarray(request.weights, dtype=np.float64).ravel()
        s = (np.ones_like(x) if request.sensitivity is None or not self.needs_sensitivity
             else np.asarray(request.sensitivity, dtype=np.float64).ravel())
        raw = _raw_codes(x)
        count = np.bincount(raw, minlength=256).astype(np.float64)
        s0 = np.bincount(raw, weights=s, minlength=256)
        s1 = np.bincount(raw, weights=s * x, minlength=256)
        s2 = np.bincount(raw, weights=s * x * x, minlength=256)
        energy = np.asarray(request.energy_pj, dtype=np.float64) / np.maximum(
            1.0, count.sum())  # per weight: the ratio is scale-free anyway
        # doubly linked list over the remaining codes, by index code + 128
        alive = sorted(c + 128 for c in FULL_CODES)
        left = {c: (alive[i - 1] if i else None) for i, c in enumerate(alive)}
        right = {c: (alive[i + 1] if i + 1 < len(alive) else None) for i, c in enumerate(alive)}

        count_l, s0_l, s1_l, energy_l = (a.tolist() for a in (count, s0, s1, energy))

        # with keep_signs, the last code of a sign the weights use stays too (from 3 codes:
        # a one-signed set can flip every weight of a sign; LeNet-5 fell to ~9 % with them)
        keep_signs = self.keep_signs and request.n_levels >= 3
        used = {1: bool(count[129:].any()), -1: bool(count[:128].any())}
        alive_on = {1: sum(c > 128 for c in alive), -1: sum(c < 128 for c in alive)}

        def score(v: int) -> tuple[float, float]:
            side = 1 if v > 128 else -1
            if v == 128 or (keep_signs and used[side] and alive_on[side] == 1):
                return (-np.inf, 0.0)  # 0 stays
            rs = _owned(left[v], v, right[v])
            if not any(count_l[r] for r, _ in rs):  # unused: free to drop; dearest first
                return (np.inf, energy_l[v])
            vc = float(v - 128)
            d_energy = error_u = error_v = 0.0
            for r, u in rs:
                assert u is not None  # 0 is alive and v is not 0: v has a neighbour
                uc = float(u - 128)
                d_energy += count_l[r] * (energy_l[v] - energy_l[u])
                error_u += uc * uc * s0_l[r] - 2 * uc * s1_l[r]
                error_v += vc * vc * s0_l[r] - 2 * vc * s1_l[r]
            d_error = error_u - error_v
            if self.criterion == "lagrangian":
                return (self.energy_weight * d_energy / e_ref - d_error / d_ref, 0.0)
            # ties (e.g. a flat energy curve) go to the smallest added error
            return (d_energy / max(d_error, 1e-12), -d_error)

        e_ref = max(float(count @ energy), 1e-30)
        d_ref = max(float(s2.sum()), 1e-30)
        scores = {v: score(v) for v in alive}
        remaining = len(alive)
        while remaining > max(1, request.n_levels):
            v = max(scores, key=lambda c: scores[c])
            lo, hi = left[v], right[v]
            if lo is not None:
                right[lo] = hi
            if hi is not None:
                left[hi] = lo
            del scores[v], left[v], right[v]
            remaining -= 1
            side = 1 if v > 128 else -1
            alive_on[side] -= 1
            last = [c for c in scores if (c - 128) * side > 0] \
                if keep_signs and alive_on[side] == 1 else []
            for n in (lo, hi, *last):  # the last of a sign is protected from now on
                if n is not None:
                    scores[n] = score(n)
        return AllowedSet(request.layer, tuple(c - 128 for c in scores), self.deadzone)


class PowerOfTwo:
    """INQ-style: 0 and signed powers of two, from the largest power the layer's weights need
    (INQ's ``floor(log2(4/3 · max|w|))``) downwards, both signs of a power before the next
    smaller one, until ``n_levels`` codes (at most 15: 0, ±1 … ±64; -128 only as the top
    power). Blind to energy."""

    needs_sensitivity = False

    def select(self, request: SelectionRequest) -> AllowedSet:
        peak = float(np.max(np.abs(np.asarray(request.weights, dtype=np.float64)), initial=0.0))
        top = int(np.clip(np.floor(np.log2(max(4.0 * peak / 3.0, 1.0))), 0, 7))
        chosen = [0]
        for k in range(top, -1, -1):
            for code in (2 ** k, -(2 ** k)):
                if len(chosen) < request.n_levels and -128 <= code <= 127:
                    chosen.append(code)
        return AllowedSet(request.layer, tuple(chosen))


class KMeans:
    """Weight sharing: a codebook of ``n_levels`` codes (0 kept as one) fitted to the
    layer's weights by 1-D k-means (Lloyd, weighted by how many weights round to each code,
    started at evenly spaced quantiles of the non-zero weights), rounded to int8 codes. With
    3 codes it is a TTQ-style ternary set {-a, 0, b}. Blind to energy."""

    needs_sensitivity = False

    def __init__(self, iterations: int = 50) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValidationError.field("kmeans", "iterations", iterations, "an integer >= 1")
        self.iterations = iterations

    def select(self, request: SelectionRequest) -> AllowedSet:
        count = np.bincount(_raw_codes(np.asarray(request.weights, np.float64).ravel()),
                            minlength=256).astype(np.float64)
        values = _CODES.astype(np.float64)
        k = min(request.n_levels, 255) - 1  # centroids besides the fixed 0
        nonzero = (count > 0) & (values != 0)
        if k < 1 or not nonzero.any():
            return AllowedSet(request.layer, (0,))
        cdf = np.cumsum(count * nonzero) / max(float((count * nonzero).sum()), 1.0)
        centres = np.interp((np.arange(k) + 0.5) / k, cdf, values)
        for _ in range(self.iterations):
            book = np.concatenate([[0.0], centres])
            owner = np.argmin(np.abs(values[:, None] - book[None, :]), axis=1)
            moved = centres.copy()
            for j in range(1, k + 1):
                mass = count[owner == j].sum()
                if mass > 0:
                    moved[j - 1] = float((count * values)[owner == j].sum() / mass)
            if np.allclose(moved, centres):
                break
            centres = moved
        codes = {0, *(int(c) for c in np.clip(np.round(centres), -128, 127))}
        return AllowedSet(request.layer, tuple(codes))


@hookimpl
def dse_register_selectors(register):  # type: ignore[no-untyped-def]
    register(SelectorPlugin(
        name="energy_accuracy", factory=EnergyAccuracy,
        summary="remove codes by energy saved per added quantisation error (the paper)"))
    register(SelectorPlugin(
        name="lowest_energy", factory=LowestEnergy,
        summary="keep 0 and the n-1 lowest-energy codes (PowerPruning)"))
    register(SelectorPlugin(
        name="power_of_two", factory=PowerOfTwo,
        summary="0 and signed powers of two from the layer's range down (INQ-style)"))
    register(SelectorPlugin(
        name="kmeans", factory=KMeans,
        summary="a k-means codebook of the layer's weights (weight sharing; 3 codes: "
                "ternary, TTQ-style)"))
    register(SelectorPlugin(
        name="full", factory=FullSet, summary="every int8 code (no compression)"))
