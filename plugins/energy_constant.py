"""``constant``: a fixed energy per MAC, as ZigZag, SCALE-Sim-based flows and Accelergy's
default tables charge it. Weight values and data do not matter; idle PEs cost nothing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dse_core import DseError, EnergyModelPlugin, LayerEnergy, LayerMapping, LayerSpec, hookimpl

# ZigZag 3.9.1's tpu_like hardware charges 0.04 pJ per 8-bit MAC.
DEFAULT_MAC_PJ = 0.04


class ConstantEnergy:
    def __init__(self, mac_pj: float = DEFAULT_MAC_PJ) -> None:
        mac_pj = float(mac_pj)
        if not math.isfinite(mac_pj) or mac_pj < 0:
            raise DseError(f"mac_pj = {mac_pj!r}: expected a finite energy in pJ >= 0")
        self.mac_pj = mac_pj

    def per_weight_energy(
        self, layer: LayerSpec, stats: Any = None, characterization: Any = None
    ) -> np.ndarray:
        return np.full(256, self.mac_pj)

    def layer_energy(
        self, layer: LayerSpec, mapping: LayerMapping, codes: np.ndarray | None = None,
        stats: Any = None, characterization: Any = None,
    ) -> LayerEnergy:
        return LayerEnergy(layer=layer.name, mac_switching_pj=layer.macs * self.mac_pj,
                           cycles=mapping.cycles, macs=layer.macs)


@hookimpl
def dse_register_energy_models(register):  # type: ignore[no-untyped-def]
    register(EnergyModelPlugin(
        name="constant", factory=ConstantEnergy,
        summary="fixed pJ per MAC (ZigZag-compatible); option mac_pj, default 0.04",
    ))
