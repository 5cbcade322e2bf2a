"""An example third-party plugin for systolic-dse.

``idle_aware`` charges a fixed energy per MAC like the shipped ``constant`` model, plus a fixed
energy for every PE-cycle a PE sits idle in a partially filled fold: the cost a constant-per-MAC
model hides when an array is too large for a layer.

Install it with ``pip install docs/examples/dse-example-plugin`` and run
``dse energy resnet20 --array 64x64 --energy-model idle_aware -o idle_pj=0.005``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dse_core import DseError, EnergyModelPlugin, LayerEnergy, LayerMapping, LayerSpec, hookimpl


class IdleAwareEnergy:
    def __init__(self, mac_pj: float = 0.04, idle_pj: float = 0.004) -> None:
        if mac_pj < 0 or idle_pj < 0:
            raise DseError(f"mac_pj = {mac_pj}, idle_pj = {idle_pj}: expected energies >= 0")
        self.mac_pj = float(mac_pj)
        self.idle_pj = float(idle_pj)

    def per_weight_energy(
        self, layer: LayerSpec, stats: Any = None, characterization: Any = None
    ) -> np.ndarray:
        return np.full(256, self.mac_pj)

    def layer_energy(
        self, layer: LayerSpec, mapping: LayerMapping, codes: np.ndarray | None = None,
        stats: Any = None, characterization: Any = None,
    ) -> LayerEnergy:
        # Idle PEs of partial folds stay idle for the whole streaming phase of the fold.
        idle_pe_cycles = mapping.idle_pe_folds * mapping.streamed
        return LayerEnergy(
            layer=layer.name, mac_switching_pj=layer.macs * self.mac_pj,
            idle_pj=idle_pe_cycles * self.idle_pj, cycles=mapping.cycles, macs=layer.macs,
        )


@hookimpl
def dse_register_energy_models(register):  # type: ignore[no-untyped-def]
    register(EnergyModelPlugin(
        name="idle_aware", factory=IdleAwareEnergy,
        summary="example plugin: pJ per MAC plus pJ per idle PE-cycle",
    ))
