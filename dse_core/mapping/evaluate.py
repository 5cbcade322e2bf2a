"""One design point: map every layer of a workload on an array and charge its energy."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dse_core.host.contracts import ArrayMapping, EnergyModel
from dse_core.types import (
    ArrayConfig,
    LayerEnergy,
    LayerMapping,
    LayerSpec,
    LayerTraffic,
    NetworkEnergy,
)

__all__ = ["map_network", "NetworkEvaluation", "evaluate_network", "charge_layer"]


def map_network(
    layers: Sequence[LayerSpec], array: ArrayConfig, mapping: ArrayMapping
) -> list[LayerMapping]:
    """Map each layer; the hot path of an energy/latency search, so nothing else happens here."""
    return [mapping.map(layer, array) for layer in layers]


@dataclass(frozen=True)
class NetworkEvaluation:
    layers: tuple[LayerSpec, ...]
    mappings: tuple[LayerMapping, ...]
    energy: NetworkEnergy
    traffic: tuple[LayerTraffic, ...] | None = None  # with a memory setting

    @property
    def cycles(self) -> int:
        return sum(m.cycles for m in self.mappings)

    @property
    def energy_by_layer(self) -> dict[str, LayerEnergy]:
        return {e.layer: e for e in self.energy.layers}


@functools.cache
def _takes_histogram(model_type: Any) -> bool:
    try:
        parameters = inspect.signature(model_type.layer_energy).parameters
    except (TypeError, ValueError):
        return False
    return "weight_histogram" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def charge_layer(model: EnergyModel, layer: LayerSpec, mapping: LayerMapping, *,
                 weight_histogram: Any = None, stats: Any = None,
                 characterization: Any = None) -> LayerEnergy:
    """``model.layer_energy`` with the layer's weights as a 256-bin code histogram (index
    code + 128); a model whose ``layer_energy`` does not take ``weight_histogram`` gets the
    codes expanded from it instead."""
    if weight_histogram is None:
        return model.layer_energy(layer, mapping, stats=stats,
                                  characterization=characterization)
    if _takes_histogram(type(model)):
        return model.layer_energy(layer, mapping, stats=stats,
                                  characterization=characterization,
                                  weight_histogram=np.asarray(weight_histogram))
    codes = np.repeat(np.arange(-128, 128), np.asarray(weight_histogram, dtype=np.int64))
    return model.layer_energy(layer, mapping, codes=codes, stats=stats,
                              characterization=characterization)


def evaluate_network(
    layers: Sequence[LayerSpec],
    array: ArrayConfig,
    mapping: ArrayMapping,
    energy_model: EnergyModel,
    *,
    codes: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
    characterization: Any = None,
    memory: Any = None,
    n_levels: Mapping[str, int] | None = None,
    progress: bool = False,
) -> NetworkEvaluation:
    """Mappings and energies of every layer. ``codes``, ``stats`` and ``n_levels`` (allowed-set
    sizes, for index storage) are per layer name; with ``memory`` (a
    :class:`~dse_core.mapping.system.MemorySetting`) the energies include the buffers and
    DRAM, otherwise they are the PE array's alone. ``progress`` shows a bar over the layers:
    a first evaluation calibrates each layer and counts its accesses (seconds per layer on
    an ImageNet-size network), later ones take milliseconds."""
    mappings = map_network(layers, array, mapping)
    pairs: Iterable[tuple[LayerSpec, LayerMapping]] = zip(layers, mappings, strict=True)
    if progress:
        from tqdm import tqdm

        pairs = tqdm(list(pairs), desc="layer energies", unit="layer")
    from dse_core.mapping.system import with_memory

    energies, counts = [], []
    for layer, m in pairs:
        energy = energy_model.layer_energy(
            layer, m, codes=(codes or {}).get(layer.name),
            stats=(stats or {}).get(layer.name), characterization=characterization)
        if memory is not None:
            energy, layer_traffic = with_memory(
                energy, layer, m, memory,
                n_levels=(n_levels or {}).get(layer.name.split("#")[0]))
            counts.append(layer_traffic)
        energies.append(energy)
    traffic = tuple(counts) if memory is not None else None
    return NetworkEvaluation(tuple(layers), tuple(mappings), NetworkEnergy(tuple(energies)),
                             traffic)
