"""One design point: map every layer of a workload on an array and charge its energy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dse_core.contracts import ArrayMapping, EnergyModel
from dse_core.types import ArrayConfig, LayerEnergy, LayerMapping, LayerSpec, NetworkEnergy

__all__ = ["map_network", "NetworkEvaluation", "evaluate_network"]


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

    @property
    def cycles(self) -> int:
        return sum(m.cycles for m in self.mappings)

    @property
    def energy_by_layer(self) -> dict[str, LayerEnergy]:
        return {e.layer: e for e in self.energy.layers}


def evaluate_network(
    layers: Sequence[LayerSpec],
    array: ArrayConfig,
    mapping: ArrayMapping,
    energy_model: EnergyModel,
    *,
    codes: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
    characterization: Any = None,
) -> NetworkEvaluation:
    """Mappings and energies of every layer. ``codes`` and ``stats`` are per layer name."""
    mappings = map_network(layers, array, mapping)
    energies = tuple(
        energy_model.layer_energy(
            layer, m,
            codes=(codes or {}).get(layer.name),
            stats=(stats or {}).get(layer.name),
            characterization=characterization,
        )
        for layer, m in zip(layers, mappings, strict=True)
    )
    return NetworkEvaluation(tuple(layers), tuple(mappings), NetworkEnergy(energies))
