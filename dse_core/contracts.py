"""The contracts plugins implement, as :class:`typing.Protocol` s.

A plugin record's ``factory`` is called with the user's options as keyword arguments and
returns an object satisfying the contract of its kind.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from dse_core.types import ArrayConfig, LayerEnergy, LayerMapping, LayerSpec

__all__ = ["ArrayMapping", "EnergyModel"]


@runtime_checkable
class ArrayMapping(Protocol):
    """Places one layer on the array and counts folds and cycles."""

    def map(self, layer: LayerSpec, array: ArrayConfig) -> LayerMapping: ...


@runtime_checkable
class EnergyModel(Protocol):
    """Energy of a layer on the array.

    ``stats`` and ``characterization`` are the per-layer switching statistics and the PE
    characterisation; models that do not need them (``constant``) accept ``None``. ``codes``
    are the layer's int8 weight codes, or ``None`` when unknown.
    """

    def per_weight_energy(
        self, layer: LayerSpec, stats: Any = None, characterization: Any = None
    ) -> np.ndarray:
        """Energy in pJ of one MAC cycle of a PE holding each int8 code, indexed code + 128."""
        ...

    def layer_energy(
        self,
        layer: LayerSpec,
        mapping: LayerMapping,
        codes: np.ndarray | None = None,
        stats: Any = None,
        characterization: Any = None,
    ) -> LayerEnergy: ...
