"""Exact partial sums of sampled consecutive-vector pairs, replayed through a layer's weights.

A PE in row r of a fold sees the partial dot product of the rows above it; for every sampled
pair of consecutive streamed vectors (a, a') and every busy PE of the chosen output columns,
this module computes the two partial sums (p, p') and classifies the PE-cycle
(:func:`dse_core.switching.stats.cycle_class`). It is the dominant cost of collecting
statistics, so it works in int32 and in chunks that bound memory.

A layer with large K and N would replay millions of PE-cycles per pair: :func:`psum_columns`
then samples output columns (uniformly, without replacement): every column is an independent
stack of PEs that sees the same activations, so a uniform column sample leaves each
distribution unbiased and caps the cost per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PsumTally", "psum_columns"]

FLOAT32_EXACT_BITS = 24  # integers below 2**24 convert to float32 exactly


def psum_columns(n: int, pairs: int, k: int, groups: int, max_pe_cycles: int, min_columns: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Output columns whose PEs are replayed: all of them while ``pairs`` vector pairs over
    every column stay within ``max_pe_cycles`` busy PE-cycles, else a sorted uniform sample
    of enough columns for that budget (at least ``min_columns``)."""
    if pairs * groups * k * n <= max_pe_cycles:
        return np.arange(n)
    count = min(n, max(min_columns, -(-max_pe_cycles // (pairs * groups * k))))
    return np.sort(rng.choice(n, count, replace=False))


def bit_length(values: Any, bits: int) -> Any:
    """Bit length of |v| for an int32 tensor of values below 2**bits (0 for 0), read from the
    exponent of a float conversion: exact in float32 below 2**24, float64 above."""
    import torch

    magnitude = values.abs()
    if bits <= FLOAT32_EXACT_BITS:
        exponent = (magnitude.to(torch.float32).view(torch.int32) >> 23) - 126
        return exponent.clamp_(min=0)
    return torch.frexp(magnitude.to(torch.float64)).exponent


@dataclass
class PsumTally:
    """Running class counts, magnitude counts and calibration candidates of one layer."""

    psum_bits: int
    msb_bits: int
    classes: int
    per_class: int
    rng: np.random.Generator
    magnitude: np.ndarray = field(init=False)
    class_counts: np.ndarray = field(init=False)
    candidates: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.magnitude = np.zeros(self.psum_bits, dtype=np.int64)
        self.class_counts = np.zeros(self.classes, dtype=np.int64)

    def add(self, part: Any, weights: Any, rows: int, k: int) -> None:
        """Replay one chunk: ``part`` (2, P, K) int32 activation codes of P vector pairs,
        ``weights`` (folds * rows, N) int32 codes, K padded to whole folds with zeros."""
        import torch

        pairs, padded_k = part.shape[1], weights.shape[0]
        a = torch.zeros(2, pairs, padded_k, dtype=torch.int32)
        a[:, :, :k] = part
        prod = (a[..., None] * weights).reshape(2, pairs, padded_k // rows, rows, -1)
        # exclusive cumulative sum down the fold's rows: what enters each PE from above
        p_in = torch.cumsum(prod, dim=3, dtype=torch.int32).sub_(prod)
        # busy PEs are exactly the first K of the padded rows: slice, don't mask
        p_in = p_in.reshape(2, pairs, padded_k, -1)[:, :, :k]
        held, moved = p_in[0].reshape(-1), p_in[1].reshape(-1)       # (P * K * N,)
        n = p_in.shape[-1]
        diff = held ^ moved
        top = (diff >> (self.psum_bits - self.msb_bits)) & ((1 << self.msb_bits) - 1)
        msb_group = torch.from_numpy(np.bitwise_count(top.numpy()).astype(np.uint8))
        lengths = bit_length(held, self.psum_bits).clamp_(max=self.psum_bits - 1)
        # torch counts uint8 codes ~5x faster than np.bincount (which widens them first)
        self.magnitude += torch.bincount(lengths.to(torch.uint8),
                                         minlength=self.psum_bits).numpy()
        act_moved = (part[0] != part[1]).to(torch.uint8).reshape(-1).repeat_interleave(n)
        # the class of stats.cycle_class: c if the psum holds, 2 + 2g + c if it changes
        kinds_t = torch.where(diff != 0, msb_group * 2 + 2 + act_moved, act_moved)
        counts = torch.bincount(kinds_t, minlength=self.classes).numpy()
        self.class_counts += counts
        kinds, held_np, moved_np = kinds_t.numpy(), held.numpy(), moved.numpy()
        act0, act1 = part[0].numpy().reshape(-1), part[1].numpy().reshape(-1)
        # per_class members of each class: from one batch of uniform draws where the class is
        # common enough, else from its member list
        draws = self.rng.integers(0, len(kinds), 128 * self.per_class)
        drawn_kinds = kinds[draws]
        for kind in np.flatnonzero(counts):
            picks = draws[drawn_kinds == kind][:self.per_class]
            if len(picks) < self.per_class:
                picks = self.rng.choice(np.flatnonzero(kinds == kind), self.per_class)
            self.candidates.append((
                np.stack([act0[picks // n], act1[picks // n], held_np[picks], moved_np[picks]])
                .astype(np.int64),
                np.full(self.per_class, kind, np.int64),
                np.full(self.per_class, counts[kind], np.float64)))

    def stratified(self) -> tuple[np.ndarray, np.ndarray]:
        """``per_class`` cycles of each class present: every chunk offered ``per_class`` of its
        cycles of the class, each standing for count / per_class cycles, and the final draw
        weighs them so."""
        if not self.candidates:
            return np.zeros((4, 0), np.int64), np.zeros(0, np.int64)
        cycles = np.concatenate([c for c, _, _ in self.candidates], axis=1)
        kinds = np.concatenate([k for _, k, _ in self.candidates])
        weights = np.concatenate([w for _, _, w in self.candidates])
        chosen = []
        for kind in np.flatnonzero(self.class_counts):
            members = np.flatnonzero(kinds == kind)
            prob = weights[members] / weights[members].sum()
            chosen.append(np.sort(self.rng.choice(members, self.per_class, p=prob)))
        pick = np.concatenate(chosen)
        return cycles[:, pick], kinds[pick]
