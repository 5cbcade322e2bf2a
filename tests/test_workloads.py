"""Layers extracted from torch modules and from the shipped models."""

import pytest
import torch
from torch import nn

from dse_core import DseError, layers_from_module, load_workload
from dse_core.workloads.layers import parse_input_shape


def test_lenet5(registry):
    layers = load_workload(registry, "lenet5")
    assert [(s.name, s.kind) for s in layers] == [
        ("conv1", "conv"), ("conv2", "conv"), ("fc1", "linear"), ("fc2", "linear"),
        ("fc3", "linear")]
    c1, c2, f1, f2, f3 = layers
    assert (c1.input_hw, c1.output_hw, c1.padding) == ((28, 28), (28, 28), (2, 2))
    assert (c1.gemm_m, c1.gemm_k, c1.gemm_n) == (784, 25, 6)
    assert (c2.input_hw, c2.output_hw, c2.gemm_k) == ((14, 14), (10, 10), 150)
    assert (f1.gemm_m, f1.gemm_k, f1.gemm_n) == (1, 400, 120)
    assert sum(s.macs for s in layers) == 784 * 25 * 6 + 100 * 150 * 16 + 400 * 120 + \
        120 * 84 + 84 * 10


def test_resnet20_shapes(registry):
    layers = load_workload(registry, "resnet20")
    assert len(layers) == 20  # 19 conv + fc; option-A shortcuts add no layer
    assert sum(s.weight_count for s in layers) == 268_336
    assert sum(s.macs for s in layers) == 40_551_040
    strided = [s.name for s in layers if s.stride == (2, 2)]
    assert strided == ["layers.3.conv1", "layers.6.conv1"]
    assert layers[-1].output_hw == (1, 1) and layers[-1].gemm_k == 64


def test_input_shape_and_batch(registry):
    layers = load_workload(registry, "resnet20", input_shape=(1, 28, 28), batch=4)
    assert layers[0].in_channels == 1
    assert layers[0].gemm_m == 4 * 28 * 28
    assert layers[-1].gemm_m == 4


def test_vgg8(registry):
    layers = load_workload(registry, "vgg8")
    assert [s.kind for s in layers].count("conv") == 6
    assert [s.kind for s in layers].count("linear") == 2


def test_torchvision_by_name(registry):
    layers = load_workload(registry, "torchvision:mobilenet_v2", input_shape=(3, 64, 64))
    kinds = {s.kind for s in layers}
    assert kinds == {"conv", "depthwise", "linear"}
    dw = next(s for s in layers if s.kind == "depthwise")
    assert dw.groups == dw.in_channels and dw.gemm_k == 9 and dw.gemm_n == 1


def test_unknown_names_list_the_known_ones(registry):
    with pytest.raises(DseError, match=r"unknown model 'resnet21'; known: lenet5, resnet20"):
        load_workload(registry, "resnet21")
    with pytest.raises(DseError, match="unknown torchvision model 'nope'"):
        load_workload(registry, "torchvision:nope")
    with pytest.raises(DseError, match="needs a variant"):
        load_workload(registry, "torchvision")


def test_grouped_depthwise_dilated_padded_and_repeated_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
            self.dw = nn.Conv2d(16, 32, 3, padding=2, dilation=2, groups=16)
            self.same = nn.Conv2d(32, 32, (1, 5), padding="same")
            self.fc = nn.Linear(32, 4)

        def forward(self, x):
            x = self.same(self.dw(self.grouped(x)))
            x = x.flatten(2).transpose(1, 2)  # (1, tokens, 32)
            return self.fc(self.fc.weight.new_zeros(1, 3, 32) + x[:, :3])

    layers = layers_from_module(Net(), (8, 15, 17))
    g, dw, same, fc = layers
    assert (g.kind, g.groups, g.output_hw, g.gemm_k, g.gemm_n) == ("conv", 4, (8, 9), 18, 4)
    assert (dw.kind, dw.dilation, dw.padding, dw.output_hw) == ("depthwise", (2, 2), (2, 2),
                                                                (8, 9))
    assert (dw.gemm_k, dw.gemm_n) == (9, 2)  # depth multiplier 2
    assert (same.padding, same.output_hw) == ((0, 2), (8, 9))
    assert (fc.kind, fc.gemm_m, fc.gemm_k, fc.gemm_n) == ("linear", 3, 32, 4)


def test_a_module_called_twice_gives_two_layers():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    layers = layers_from_module(Twice(), (4, 8, 8))
    assert [s.name for s in layers] == ["conv", "conv#2"]


def test_tracing_leaves_the_module_as_it_was():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    net.train()
    before = net[1].running_mean.clone()
    layers_from_module(net, (1, 8, 8))
    assert net.training and torch.equal(net[1].running_mean, before)
    assert not net[0]._forward_hooks


def test_wrong_input_shape_is_a_user_error(registry):
    with pytest.raises(DseError, match=r"input = 3x32x32: the model rejects this input shape"):
        load_workload(registry, "lenet5", input_shape=(3, 32, 32))


@pytest.mark.parametrize("text", ["3x32", "3x0x32", "ax2x2", ""])
def test_parse_input_shape_rejects(text):
    with pytest.raises(DseError, match="expected CxHxW"):
        parse_input_shape(text)
