"""Switching statistics: exact im2col gathering, exact partial sums, files."""

import numpy as np
import pytest
import torch
from torch import nn

from dse_core import DseError, LayerSpec, layers_from_module
from dse_core.switching.stats import NetworkStats, _Im2col, collect_stats, cycle_class, psum_group


def test_psum_group_counts_flipped_top_bits():
    # 22-bit psums, top 6 bits: a sign change of a small value flips all six
    assert psum_group(np.array([5]), np.array([-5]), 22, 6).tolist() == [6]
    assert psum_group(np.array([5]), np.array([900]), 22, 6).tolist() == [0]
    assert psum_group(np.array([0]), np.array([1 << 16]), 22, 6).tolist() == [1]
    assert psum_group(np.array([1 << 20]), np.array([(1 << 20) + (1 << 16) + 3]), 22, 6
                      ).tolist() == [1]


def test_im2col_gather_equals_unfold():
    conv = nn.Conv2d(6, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = torch.randint(0, 256, (2, 6, 9, 7), dtype=torch.uint8)
    spec = layers_from_module(conv, (6, 9, 7))[0]
    cols = torch.nn.functional.unfold(x.float(), conv.kernel_size, dilation=conv.dilation,
                                      padding=conv.padding, stride=conv.stride)
    cols = cols.permute(0, 2, 1).reshape(-1, 2, 18).permute(1, 0, 2)  # (groups, M, K)
    gather = _Im2col(x, conv, 0, spec)
    assert (gather.m, gather.k) == (cols.shape[1], cols.shape[2])
    for group in range(2):
        got = gather.rows(group, torch.arange(gather.m))
        assert torch.equal(got.float(), cols[group])


class OneLayer(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_statistics_of_a_known_stream():
    # Linear 4 -> 2 with weights already int8-exact; inputs already uint8-exact.
    weight = torch.tensor([[127.0, -127.0, 64.0, 1.0], [-127.0, 1.0, 2.0, 127.0]])
    x = torch.tensor([[0, 255, 0, 255], [255, 255, 0, 0], [0, 255, 0, 255],
                      [255, 0, 255, 0]], dtype=torch.float32).reshape(4, 1, 1, 4)
    model = OneLayer(weight)
    layers = layers_from_module(model, (1, 1, 4))
    stats = collect_stats(model, layers, [x], rows=2, max_transitions=1 << 16,
                          psum_pixels=3, sample_windows=1, sample_pixels=4)
    assert stats.layers["fc"].activation_sample.shape == (1, 16, 4, 4)  # at least 16 windows
    st = stats.layers["fc"]
    assert st.weight_codes[0].T.tolist() == weight.int().tolist()
    # the code histogram: counted once per statistics object, and nobody's to change
    histogram = st.weight_histogram
    assert histogram.sum() == 8 and histogram[127 + 128] == 2 and histogram[-127 + 128] == 2
    assert st.weight_histogram is histogram
    with pytest.raises(ValueError):
        histogram[0] = 1
    # activation transitions of column k: x[m, k] -> x[m+1, k]; all 12 equally likely
    pairs = np.zeros((256, 256))
    xs = x.reshape(4, 4).int().numpy()
    for m in range(3):
        for k in range(4):
            pairs[xs[m, k], xs[m + 1, k]] += 1
    assert st.act_transitions == pytest.approx(pairs / 12, abs=0.01)
    # psums: rows=2, so K=4 is two folds; the PE of row 1 of each fold sees the product of
    # row 0, the PE of row 0 sees 0. Count groups by brute force.
    expected = np.zeros(7)
    unchanged = 0
    lengths = np.zeros(17)
    classes = np.zeros(2 + 2 * 2)
    real_cycles = set()
    for m in range(3):
        for fold in range(2):
            for n in range(2):
                for r in range(2):
                    p0 = sum(xs[m, fold * 2 + i] * int(weight[n, fold * 2 + i]) for i in range(r))
                    p1 = sum(xs[m + 1, fold * 2 + i] * int(weight[n, fold * 2 + i])
                             for i in range(r))
                    expected[psum_group(np.array([p0]), np.array([p1]), 17, 1)[0]] += 1
                    unchanged += p0 == p1
                    lengths[min(16, abs(int(p0)).bit_length())] += 1
                    a0, a1 = xs[m, fold * 2 + r], xs[m + 1, fold * 2 + r]
                    kind = (2 + 2 * psum_group(np.array([p0]), np.array([p1]), 17, 1)[0]
                            + (a0 != a1)) if p0 != p1 else int(a0 != a1)
                    classes[kind] += 1
                    real_cycles.add((int(a0), int(a1), int(p0), int(p1), int(kind)))
    assert st.psum_bits == 17 and st.msb_bits == 1
    assert st.psum_groups == pytest.approx(expected[:2] / expected.sum())
    assert st.psum_unchanged == pytest.approx(unchanged / expected.sum())
    assert st.psum_magnitude == pytest.approx(lengths / lengths.sum())
    # the joint cycle classes, and a stratified sample of 128 real cycles per class present
    assert st.cycle_classes == pytest.approx(classes / classes.sum())
    assert np.bincount(st.calibration_class, minlength=6).tolist() == [
        128 * (c > 0) for c in classes]
    drawn = {(*map(int, c), int(k)) for c, k in zip(st.calibration_cycles.T,
                                                    st.calibration_class, strict=True)}
    assert drawn <= real_cycles and len(drawn) > 6
    a0, a1, p0, p1 = st.calibration_cycles
    assert cycle_class(a0, a1, p0, p1, 17, 1).tolist() == st.calibration_class.tolist()
    assert all(window.tolist() == xs.tolist() for window in st.activation_sample[0])


def test_save_load_and_another_model(tmp_path, lenet_inputs):
    stats = lenet_inputs.stats
    path = stats.save(tmp_path / "s.npz")
    loaded = NetworkStats.load(path)
    assert loaded.fingerprint == stats.fingerprint
    for name, st in stats.layers.items():
        other = loaded.layers[name]
        assert np.array_equal(other.act_transitions, st.act_transitions)
        assert np.array_equal(other.activation_sample, st.activation_sample)
        assert other.psum_unchanged == st.psum_unchanged
        assert np.array_equal(other.cycle_classes, st.cycle_classes)
        assert np.array_equal(other.calibration_cycles, st.calibration_cycles)
    wrong = [LayerSpec(name="0", kind="conv", in_channels=1, out_channels=8, kernel=(5, 5))]
    with pytest.raises(DseError, match="collected on another model: layer '0'"):
        loaded.check_layers(wrong)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DseError, match="not a readable statistics file"):
        NetworkStats.load(tmp_path / "junk.npz")


def test_layer_aware_statistics_differ_between_layers(lenet_inputs):
    layers = list(lenet_inputs.stats.layers.values())
    holds = [float(np.trace(s.act_transitions)) for s in layers]
    assert max(holds) - min(holds) > 0.3  # conv1 holds most activations, fc1 few
    for s in layers:
        assert s.psum_groups[0] + s.psum_groups[-1] > 0.9  # sign flips or no top-bit change
        np.testing.assert_allclose(s.global_act_transitions, layers[0].global_act_transitions)


def test_calibration_fields_are_validated(lenet_inputs):
    from dataclasses import replace

    from dse_core import ValidationError

    st = lenet_inputs.stats.layers["conv1"]
    with pytest.raises(ValidationError, match=r"calibration_cycles = \(3, 5\): expected \(4, M\)"):
        replace(st, calibration_cycles=np.zeros((3, 5), np.int64),
                calibration_class=np.zeros(5, np.int64))
    with pytest.raises(ValidationError, match="calibration_class = 16: expected classes 0..15"):
        replace(st, calibration_cycles=np.zeros((4, 2), np.int64),
                calibration_class=np.array([0, 16]))
    with pytest.raises(ValidationError, match="come together"):
        replace(st, calibration_class=None)
    with pytest.raises(ValidationError, match="cycle_classes: expected finite probabilities"):
        replace(st, cycle_classes=np.full(16, 0.5))


def test_partial_sums_in_chunks_equal_one_pass(monkeypatch):
    """Large layers compute the exact partial sums a few vector pairs at a time; the
    distributions must not depend on the chunking (grouped conv: several groups, each in
    several chunks)."""
    import dse_core.switching.stats as stats_module

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    model = nn.Sequential(conv, nn.ReLU())
    layers = layers_from_module(model, (4, 8, 8))
    batches = [torch.rand(4, 4, 8, 8) for _ in range(2)]

    def collect():
        return collect_stats(model, layers, batches, rows=4, psum_pixels=40, seed=3).layers["0"]

    whole = collect()
    monkeypatch.setattr(stats_module, "PSUM_CHUNK_CYCLES", 64)  # chunks of 2 vector pairs
    chunked = collect()
    assert whole.n_psum_transitions == chunked.n_psum_transitions > 0
    np.testing.assert_allclose(chunked.cycle_classes, whole.cycle_classes)
    np.testing.assert_allclose(chunked.psum_groups, whole.psum_groups)
    np.testing.assert_allclose(chunked.psum_magnitude, whole.psum_magnitude)
    assert chunked.psum_unchanged == pytest.approx(whole.psum_unchanged)
    a0, a1, p0, p1 = chunked.calibration_cycles
    assert np.array_equal(cycle_class(a0, a1, p0, p1, whole.psum_bits, whole.msb_bits),
                          chunked.calibration_class)
