"""The contracts plugins implement, as :class:`typing.Protocol` s.

A plugin record's ``factory`` is called with the user's options as keyword arguments and
returns an object satisfying the contract of its kind.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from dse_core.types import ArrayConfig, LayerEnergy, LayerMapping, LayerSpec

__all__ = ["ArrayMapping", "EnergyModel", "MemoryModel", "BUFFER_KINDS"]

#: what ``MemoryModel.access_pj`` is asked about
BUFFER_KINDS = ("ifmap", "filter", "ofmap", "dram")


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


@runtime_checkable
class MemoryModel(Protocol):
    """Energy of memory accesses.

    ``access_pj(buffer, size_bytes, word_bits, write)`` is the energy in pJ of one read (or
    write) of a ``word_bits``-wide word: ``buffer`` is ``"ifmap"``, ``"filter"`` or
    ``"ofmap"`` (an on-chip SRAM of ``size_bytes``) or ``"dram"`` (``size_bytes`` is 0).
    """

    def access_pj(self, buffer: str, size_bytes: int, word_bits: int, write: bool) -> float: ...
