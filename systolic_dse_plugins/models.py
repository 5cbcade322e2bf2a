"""Shipped CNNs: ``lenet5`` (MNIST-sized), ``resnet20`` and ``vgg8`` (CIFAR-sized), and any
torchvision classifier as ``torchvision:NAME``. torch is imported only when a model is built."""

from __future__ import annotations

from typing import Any

from dse_core import DseError, ModelPlugin, hookimpl


def lenet5(variant: str | None = None, *, in_channels: int = 1, num_classes: int = 10) -> Any:
    """LeCun et al. 1998 with ReLU and max-pooling, for 28x28 inputs (conv1 padded by 2).
    Layers are named as in the paper (conv1, conv2, fc1..fc3): tables and plans show them."""
    from collections import OrderedDict

    from torch import nn

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, 6, 5, padding=2)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 5 * 5, 120)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(84, num_classes)),
    ]))


def _resnet20(in_channels: int, num_classes: int) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        """Basic block with the parameter-free "option A" shortcut of He et al. (2016) for
        CIFAR: stride-2 subsampling and zero channels, so the shortcut adds no layer."""

        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.stride, self.pad = stride, c_out - c_in

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = functional.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:
                shortcut = functional.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
            return functional.relu(out + shortcut)

    class ResNet20(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            blocks: list[nn.Module] = []
            c_in = 16
            for c_out, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(3):
                    blocks.append(Block(c_in, c_out, stride if i == 0 else 1))
                    c_in = c_out
            self.layers = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layers(functional.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1))

    return ResNet20()


def resnet20(variant: str | None = None, *, in_channels: int = 3, num_classes: int = 10) -> Any:
    return _resnet20(in_channels, num_classes)


def vgg8(variant: str | None = None, *, in_channels: int = 3, num_classes: int = 10) -> Any:
    """Six 3x3 conv layers (64-64-128-128-256-256, BN, ReLU, pooling after each pair) and two
    fully connected layers (256 hidden)."""
    from collections import OrderedDict

    from torch import nn

    layers: list[tuple[str, nn.Module]] = []
    c_in, conv, pool = in_channels, 0, 0
    for c_out in (64, 64, "M", 128, 128, "M", 256, 256, "M"):
        if c_out == "M":
            pool += 1
            layers.append((f"pool{pool}", nn.MaxPool2d(2)))
            continue
        assert isinstance(c_out, int)
        conv += 1
        layers += [(f"conv{conv}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
                   (f"bn{conv}", nn.BatchNorm2d(c_out)), (f"relu{conv}", nn.ReLU())]
        c_in = c_out
    layers += [("avgpool", nn.AdaptiveAvgPool2d(2)), ("flatten", nn.Flatten()),
               ("fc1", nn.Linear(256 * 4, 256)), ("relu_fc1", nn.ReLU()),
               ("fc2", nn.Linear(256, num_classes))]
    return nn.Sequential(OrderedDict(layers))


def torchvision_classifier(
    variant: str | None, *, in_channels: int = 3, num_classes: int = 1000
) -> Any:
    """Any torchvision classification model by name, randomly initialised (no download)."""
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if variant not in known:
        raise DseError(f"unknown torchvision model {variant!r}; known: {', '.join(known)}")
    if in_channels != 3:
        raise DseError(f"torchvision:{variant} takes 3 input channels, got {in_channels}")
    return torchvision.models.get_model(variant, weights=None, num_classes=num_classes)


@hookimpl
def dse_register_models(register):  # type: ignore[no-untyped-def]
    register(ModelPlugin(name="lenet5", factory=lenet5, input_shape=(1, 28, 28),
                         summary="LeNet-5 (2 conv + 3 fc), 1x28x28 MNIST-sized input"))
    register(ModelPlugin(name="resnet20", factory=resnet20, input_shape=(3, 32, 32),
                         summary="CIFAR ResNet-20 (19 conv + 1 fc, option-A shortcuts)"))
    register(ModelPlugin(name="vgg8", factory=vgg8, input_shape=(3, 32, 32),
                         summary="VGG-8 (6 conv with BN + 2 fc), CIFAR-sized input"))
    register(ModelPlugin(name="torchvision", factory=torchvision_classifier,
                         input_shape=(3, 224, 224), num_classes=1000, takes_variant=True,
                         summary="any torchvision classifier by name: torchvision:resnet18"))
