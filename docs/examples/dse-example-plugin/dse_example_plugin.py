"""An example third-party plugin for systolic-dse: one energy model and one mapping.

``idle_aware`` charges a fixed energy per MAC like the shipped ``constant`` model, plus a fixed
energy for every PE-cycle a PE sits idle in a partially filled fold: the cost a constant-per-MAC
model hides when an array is too large for a layer.

``ws_prefetch`` is a weight-stationary mapping whose PEs hold two weight registers: the next
fold's weights shift in while the current fold streams, so a fold costs ``R + C + M - 2``
cycles instead of the shipped ``ws_tile``'s ``2R + C + M - 2`` (the first fold's preload is
not charged: an approximation this example accepts).

Install it with ``pip install docs/examples/dse-example-plugin`` and run
``dse energy resnet20 --array 64x64 --energy-model idle_aware -o idle_pj=0.005`` or
``dse map resnet20 --array 64x64 --mapping ws_prefetch``; a study searches both with
``space.mapping = ["ws_tile", "ws_prefetch"]`` and ``energy.model = "idle_aware"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dse_core import (
    ArrayConfig,
    DseError,
    EnergyModelPlugin,
    LayerEnergy,
    LayerMapping,
    LayerSpec,
    MappingPlugin,
    hookimpl,
)


class PrefetchMapping:
    """Weight-stationary tiles with the weight preload hidden behind streaming."""

    def map(self, layer: LayerSpec, array: ArrayConfig) -> LayerMapping:
        if array.dataflow != "ws":
            raise DseError(f"ws_prefetch maps ws arrays; the array is {array.dataflow}")
        # im2col GEMM: K (window) on the rows, N (filters) on the columns, M pixels streamed
        k, n, m = layer.gemm_k, layer.gemm_n, layer.gemm_m
        return LayerMapping(
            layer=layer.name, mapping="ws_prefetch", array=array, groups=layer.groups,
            spatial_rows=k, spatial_cols=n, streamed=m,
            row_folds=-(-k // array.rows), col_folds=-(-n // array.cols),
            cycles_per_fold=array.rows + array.cols + m - 2, macs=layer.macs)


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
        weight_histogram: np.ndarray | None = None,
    ) -> LayerEnergy:
        # Idle PEs of partial folds stay idle for the whole streaming phase of the fold.
        idle_pe_cycles = mapping.idle_pe_folds * mapping.streamed
        return LayerEnergy(
            layer=layer.name, mac_switching_pj=layer.macs * self.mac_pj,
            idle_pj=idle_pe_cycles * self.idle_pj, cycles=mapping.cycles, macs=layer.macs,
        )


@hookimpl
def dse_register_mappings(register):  # type: ignore[no-untyped-def]
    register(MappingPlugin(
        name="ws_prefetch", dataflow="ws", factory=PrefetchMapping,
        summary="example plugin: weight-stationary, next fold's weights prefetched",
    ))


@hookimpl
def dse_register_energy_models(register):  # type: ignore[no-untyped-def]
    register(EnergyModelPlugin(
        name="idle_aware", factory=IdleAwareEnergy,
        summary="example plugin: pJ per MAC plus pJ per idle PE-cycle",
    ))
