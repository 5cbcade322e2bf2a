"""QAT layers, allowed-set projection, integer inference and the saved-model format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dse_core import DseError
from dse_core.compression.model_io import load_compressed, save_compressed
from dse_core.quantization.qat import (
    FULL_CODES,
    integer_predict,
    projection_table,
    quantize_network,
)


def test_projection_table_nearest_with_ties_toward_zero():
    table = projection_table([-64, 0, 3, 64])
    assert table[0 + 128] == 0 and table[3 + 128] == 3 and table[64 + 128] == 64
    assert table[1 + 128] == 0          # |1-0| < |1-3|
    assert table[2 + 128] == 3
    assert table[-32 + 128] == 0        # tie between 0 and -64: toward zero
    assert table[-33 + 128] == -64
    assert table[127 + 128] == 64 and table[-128 + 128] == -64
    assert set(projection_table(FULL_CODES)[1:] ) == set(FULL_CODES)
    assert (projection_table(FULL_CODES)[1:] == np.arange(-127, 128)).all()


class _Net(nn.Module):
    """Padding, stride, groups, BN (folded), a residual add and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.conv2(y) + y[:, :, ::2, ::2])
        return self.fc(y.flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = _Net()
    with torch.no_grad():  # a BN that does something when folded
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(64, 3, 8, 8)
    return quantize_network(model, x.split(16), x[:1]), x, model


def test_integer_inference_equals_the_qat_model_bit_for_bit(net):
    qnet, x, float_model = net
    qnet.set_allowed("conv2", [-100, -20, 0, 5, 60])
    with torch.no_grad():
        qnet.model.eval()
        logits = qnet.model(x)
    assert torch.equal(integer_predict(qnet, x), logits)
    # ...and the quantised model is close to the float one it came from
    with torch.no_grad():
        ref = float_model(x)
    assert (logits.argmax(1) == ref.argmax(1)).float().mean() > 0.8


class _Wide(nn.Module):
    """Accumulators past float32's 24-bit mantissa (K = 64·9 = 576 and 1024), dense and
    grouped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1)
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=2)
        self.fc = nn.Linear(64 * 4 * 4, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(torch.relu(self.grouped(torch.relu(self.conv(x)))).flatten(1))


def test_wide_layers_stay_exact_in_float32_slices():
    torch.manual_seed(0)
    model = _Wide().eval()
    with torch.no_grad():  # weights near +127 and inputs near the top of the uint8 range:
        for m in (model.conv, model.grouped, model.fc):  # about the worst accumulators
            m.weight.copy_(1 - 0.03 * torch.rand_like(m.weight))
    x = 2 - 0.05 * torch.rand(16, 64, 4, 4)
    x[:, :, 0, 0] = 0  # the activation range starts at 0: zero point 0, codes up to 255
    qnet = quantize_network(model, [x], x[:1])
    conv, grouped, fc = (qnet.layers[n] for n in ("conv", "grouped", "fc"))
    assert not conv.exact_in_float32 and [(s.start, s.stop) for s in conv.exact_slices] == [
        (0, 32), (32, 64)]
    assert len(fc.exact_slices) == 2 and not grouped.exact_slices  # grouped: float64
    qnet.model.eval()
    with torch.no_grad():
        logits = qnet.model(x)
    assert torch.equal(integer_predict(qnet, x), logits)
    # one float32 convolution over all 576 would round: the slices are what keeps it exact
    a = conv.activation_int(x)
    codes, _ = conv.weight_codes()
    exact = torch.nn.functional.conv2d(a.double(), codes.double(), padding=1)
    assert exact.abs().max() > 2 ** 24
    assert not torch.equal(torch.nn.functional.conv2d(a, codes, padding=1).double(), exact)


def test_codes_stay_in_the_allowed_set_and_gradients_pass_straight_through(net):
    qnet, x, _ = net
    allowed = (-90, -7, 0, 7, 90)
    qnet.set_allowed("conv1", allowed)
    codes = qnet.codes()
    assert set(np.unique(codes["conv1"])) <= set(allowed)
    assert len(np.unique(codes["conv2"])) > 50  # untouched layer keeps every code
    qnet.model.train()
    qnet.model(x).sum().backward()
    grad = qnet.layers["conv1"].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert qnet.allowed_sets()["conv1"].codes == allowed


def test_snapshot_restore_round_trip(net):
    qnet, x, _ = net
    snap = qnet.state()
    before = qnet.codes()["fc"].copy()
    qnet.set_allowed("fc", [0, 50])
    with torch.no_grad():
        qnet.layers["fc"].weight.mul_(2)
    qnet.restore(snap)
    assert (qnet.codes()["fc"] == before).all()
    assert qnet.layers["fc"].allowed == FULL_CODES


def test_saved_model_reloads_with_identical_outputs(registry, tmp_path):
    torch.manual_seed(1)
    from dse_core.workloads.layers import build_model

    model, _ = build_model(registry, "lenet5", input_shape=(1, 28, 28), num_classes=10)
    x = torch.randn(32, 1, 28, 28)
    qnet = quantize_network(model.eval(), x.split(8), x[:1])
    qnet.set_allowed("conv2", [-127, -40, 0, 12, 100])
    path = save_compressed(tmp_path / "m.npz", qnet, {
        "model": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10})
    loaded, meta = load_compressed(registry, path)
    assert meta["layers"] == list(qnet.layers)
    qnet.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), qnet.model(x))
    assert torch.equal(integer_predict(loaded, x), integer_predict(qnet, x))
    assert loaded.layers["conv2"].allowed == (-127, -40, 0, 12, 100)
    with np.load(path, allow_pickle=False) as npz:  # the documented layout
        assert npz["layer/conv2/codes"].dtype == np.int8
        assert json.loads(str(npz["meta"]))["model"] == "lenet5"


def test_saved_model_errors(registry, tmp_path):
    bad = tmp_path / "pickle.npz"
    np.savez(bad, format=np.array("systolic-dse-compressed/1"),
             meta=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DseError, match="not a compressed-model file"):
        load_compressed(registry, bad)
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("something-else/9"))
    with pytest.raises(DseError, match="format = 'something-else/9'"):
        load_compressed(registry, other)
    with pytest.raises(DseError, match="no such compressed model"):
        load_compressed(registry, tmp_path / "missing.npz")
    torch.manual_seed(0)
    from dse_core.workloads.layers import build_model

    model, _ = build_model(registry, "lenet5", input_shape=(1, 28, 28), num_classes=10)
    x = torch.randn(4, 1, 28, 28)
    path = save_compressed(tmp_path / "m.npz", quantize_network(model.eval(), [x], x[:1]), {
        "model": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10})
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["layer/conv2/codes"] = arrays["layer/conv2/codes"][:, :2]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(DseError, match="conv2 codes have shape"):
        load_compressed(registry, tmp_path / "shape.npz")
