"""Datasets as the core sees them: train and validation splits of (image, label) tensors.

Dataset plugins return a :class:`DatasetSplits`. torch is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dse_core.errors import DseError
from dse_core.host.registry import DatasetPlugin, Registry, instantiate

__all__ = ["DatasetSplits", "load_dataset"]


@dataclass(frozen=True)
class DatasetSplits:
    """``train`` and ``val`` are ``torch.utils.data.Dataset`` s of (C×H×W float tensor, int
    label). ``name`` identifies the data (with its options) for caches and provenance."""

    name: str
    train: Any
    val: Any
    input_shape: tuple[int, int, int]
    num_classes: int


def load_dataset(registry: Registry, name: str, options: dict[str, Any] | None = None
                 ) -> DatasetSplits:
    """The dataset ``name`` with its ``options``; ``NAME:FOLDER`` is short for the option
    ``root = FOLDER`` (``imagefolder:images/``, ``cifar10:data/cifar10``)."""
    import inspect

    name, sep, root = name.partition(":")
    record = registry.get("dataset", name)
    assert isinstance(record, DatasetPlugin)
    options = dict(options or {})
    if sep:
        if "root" not in inspect.signature(record.factory).parameters:
            raise DseError(f"dataset {name!r} reads no folder: {name}:{root} is not a dataset "
                           f"(give --dataset {name})")
        options["root"] = root
    splits = instantiate(record, options)
    if not isinstance(splits, DatasetSplits):
        raise DseError(f"dataset {name!r} returned {type(splits).__name__}, expected "
                       "DatasetSplits")
    return splits
