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
    characterisation; models that do not need them (``constant``) accept ``None``. The
    layer's weights come as one of: ``codes`` (its int8 weight codes, any shape),
    ``weight_histogram`` (256 counts indexed by code + 128: what a search holds per
    compression plan), or neither (the statistics' own weights). ``weight_histogram`` is
    optional for a plugin: one whose ``layer_energy`` does not take it gets ``codes`` instead
    (:func:`dse_core.mapping.evaluate.charge_layer`).
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
        weight_histogram: np.ndarray | None = None,
    ) -> LayerEnergy: ...
