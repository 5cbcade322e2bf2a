"""``constant``: a fixed energy per MAC, as ZigZag, SCALE-Sim-based flows and Accelergy's
default tables charge it. Weight values and data do not matter. By default idle PEs cost
nothing; ``pe_cycle_pj`` > 0 charges every PE-cycle the array's clock gating leaves clocked
(every PE every cycle without gating), so array shape matters in an energy-only search of a
topology without weights or data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dse_core import DseError, EnergyModelPlugin, LayerEnergy, LayerMapping, LayerSpec, hookimpl

# ZigZag 3.9.1's tpu_like hardware charges 0.04 pJ per 8-bit MAC.
DEFAULT_MAC_PJ = 0.04


class ConstantEnergy:
    def __init__(self, mac_pj: float = DEFAULT_MAC_PJ, pe_cycle_pj: float = 0.0) -> None:
        mac_pj, pe_cycle_pj = (float(v) if isinstance(v, str) else v
                               for v in (mac_pj, pe_cycle_pj))
        for name, value in (("mac_pj", mac_pj), ("pe_cycle_pj", pe_cycle_pj)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise DseError(f"{name} = {value!r}: expected a finite energy in pJ >= 0")
        self.mac_pj, self.pe_cycle_pj = float(mac_pj), float(pe_cycle_pj)

    def per_weight_energy(
        self, layer: LayerSpec, stats: Any = None, characterization: Any = None
    ) -> np.ndarray:
        return np.full(256, self.mac_pj)

    @staticmethod
    def _clocked_pe_cycles(mapping: LayerMapping) -> int:
        """PE-cycles that clock under the array's gating (see ``energy_switching``)."""
        array = mapping.array
        if array.clock_gating == "none":
            return array.pe_count * mapping.cycles
        skew = 0 if array.clock_gating == "idle_and_skew" else array.rows + array.cols - 2
        preload = mapping.cycles_per_fold - mapping.streamed - (array.rows + array.cols - 2)
        return mapping.clocked_pe_folds * (mapping.streamed + skew + max(preload, 0))

    def layer_energy(
        self, layer: LayerSpec, mapping: LayerMapping, codes: np.ndarray | None = None,
        stats: Any = None, characterization: Any = None,
        weight_histogram: np.ndarray | None = None,
    ) -> LayerEnergy:
        return LayerEnergy(layer=layer.name, mac_switching_pj=layer.macs * self.mac_pj,
                           clock_pj=self.pe_cycle_pj * self._clocked_pe_cycles(mapping),
                           cycles=mapping.cycles, macs=layer.macs)


@hookimpl
def dse_register_energy_models(register):  # type: ignore[no-untyped-def]
    register(EnergyModelPlugin(
        name="constant", factory=ConstantEnergy,
        summary="fixed pJ per MAC (ZigZag-compatible); options mac_pj (0.04), pe_cycle_pj (0)",
    ))
