"""The partial-sum replay: exact bit lengths, and column sampling of wide layers."""

import numpy as np
import pytest
import torch
from torch import nn

from dse_core.switching.psum_replay import bit_length, psum_columns
from dse_core.switching.stats import collect_stats
from dse_core.workloads.layers import layers_from_module


@pytest.mark.parametrize("bits", [22, 24, 30])
def test_bit_length_is_exact_on_both_sides_of_float32(bits):
    rng = np.random.default_rng(bits)
    edges = np.array([0, 1, 2, 3, (1 << 23) - 1, 1 << 23, (1 << 24) - 1, 1 << 24,
                      (1 << 24) + 1, (1 << 29) - 1], dtype=np.int64)
    values = np.concatenate([edges[edges < (1 << bits)],
                             rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), 10_000)])
    values = np.concatenate([values, -values]).astype(np.int32)
    expected = [int(v).bit_length() for v in np.abs(values.astype(np.int64))]
    assert bit_length(torch.from_numpy(values), bits).tolist() == expected


def test_columns_are_all_kept_within_budget_and_sampled_beyond():
    rng = np.random.default_rng(0)
    assert psum_columns(64, 32, 576, 1, 1 << 22, 8, rng).tolist() == list(range(64))
    sample = psum_columns(512, 32, 4608, 1, 1 << 22, 8, rng)
    assert len(sample) == -(-(1 << 22) // (32 * 4608)) == 29
    assert np.all(np.diff(sample) > 0) and sample.max() < 512
    assert len(psum_columns(512, 32, 1 << 16, 1, 1 << 22, 8, rng)) == 8   # the floor


def test_sampled_columns_leave_the_distributions_unbiased():
    """A wide linear layer with its columns sampled 8x down: the class, psum-group and
    magnitude distributions stay within sampling noise of the full replay, and the
    counted PE-cycles are those of the sampled columns."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU())
    layers = layers_from_module(model, (128,))
    batches = [torch.rand(64, 128) for _ in range(2)]
    full = collect_stats(model, layers, batches, rows=64).layers["0"]
    sampled = collect_stats(model, layers, batches, rows=64,
                            psum_max_pe_cycles=1 << 17).layers["0"]
    pairs = full.n_psum_transitions // (128 * 256)
    assert full.n_psum_transitions == pairs * 128 * 256
    assert sampled.n_psum_transitions == pairs * 128 * 32            # 32 of 256 columns
    for name in ("cycle_classes", "psum_groups", "psum_magnitude"):
        a, b = getattr(full, name), getattr(sampled, name)
        assert 0.5 * np.abs(a - b).sum() < 0.03, name
    assert sampled.psum_unchanged == pytest.approx(full.psum_unchanged, abs=0.02)
