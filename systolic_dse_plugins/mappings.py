"""Tile-level systolic mappings: weight-, output- and input-stationary.

The im2col GEMM of a layer group (M streamed pixels, K window, N filters) is placed as
``spatial_rows`` x ``spatial_cols`` PEs with ``streamed`` vectors passing through:

=========  ============  ============  =========  ========================
dataflow   spatial rows  spatial cols  streamed   cycles per fold
=========  ============  ============  =========  ========================
ws         K             N             M          2R + C + M - 2
is         K             M             N          2R + C + N - 2
os         M             N             K          R + C + K - 2
=========  ============  ============  =========  ========================

These are SCALE-Sim 3.0.0's stall-free counts (``systolic_compute_{ws,is,os}.py``); its
reports print one less. Every fold costs the full-array time. See docs/mapping.md.

A grouped layer runs one group per fold in the ``*_tile`` mappings, as SCALE-Sim runs a
depthwise (``DP``) layer: one layer per channel, so their cycles agree. ``ws_packed`` places
``b = min(R // spatial_rows, C // spatial_cols)`` groups per fold where that is more than one
(block-diagonally: a group needs its own rows for its channels and its own columns for its
outputs), so a depthwise 3x3 layer on a 64x64 array runs 7 channels per fold instead of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dse_core import (
    ArrayConfig,
    DseError,
    LayerMapping,
    LayerSpec,
    MappingPlugin,
    hookimpl,
)


def _ws(m: int, k: int, n: int) -> tuple[int, int, int]:
    return k, n, m


def _is(m: int, k: int, n: int) -> tuple[int, int, int]:
    return k, m, n


def _os(m: int, k: int, n: int) -> tuple[int, int, int]:
    return m, n, k


@dataclass(frozen=True)
class TileMapping:
    """Closed-form tile mapping for one dataflow.

    ``placement(M, K, N) -> (spatial_rows, spatial_cols, streamed)``. ``preload`` adds the R
    cycles in which a stationary operand is pushed into the rows before streaming (WS, IS).
    """

    name: str
    dataflow: str
    placement: Callable[[int, int, int], tuple[int, int, int]]
    preload: bool
    pack_groups: bool = False

    def map(self, layer: LayerSpec, array: ArrayConfig) -> LayerMapping:
        if array.dataflow != self.dataflow:
            raise DseError(f"mapping {self.name!r} is for {self.dataflow} arrays; the array "
                           f"is {array.dataflow}")
        spatial_rows, spatial_cols, streamed = self.placement(
            layer.gemm_m, layer.gemm_k, layer.gemm_n
        )
        rows, cols = array.rows, array.cols
        per_fold = (rows if self.preload else 0) + rows + cols + streamed - 2
        packed = 1
        if self.pack_groups and layer.groups > 1:
            packed = max(1, min(layer.groups, rows // spatial_rows, cols // spatial_cols))
        return LayerMapping(
            layer=layer.name, mapping=self.name, array=array, groups=layer.groups,
            spatial_rows=spatial_rows, spatial_cols=spatial_cols, streamed=streamed,
            row_folds=-(-spatial_rows // rows), col_folds=-(-spatial_cols // cols),
            cycles_per_fold=per_fold, macs=layer.macs, groups_per_fold=packed,
        )


@hookimpl
def dse_register_mappings(register):  # type: ignore[no-untyped-def]
    register(MappingPlugin(
        name="ws_tile", dataflow="ws",
        factory=lambda: TileMapping("ws_tile", "ws", _ws, preload=True),
        summary="weight-stationary tiles; SCALE-Sim-exact cycles (the paper's mapping)",
    ))
    register(MappingPlugin(
        name="ws_packed", dataflow="ws",
        factory=lambda: TileMapping("ws_packed", "ws", _ws, preload=True, pack_groups=True),
        summary="weight-stationary tiles, several groups of a grouped/depthwise layer per fold",
    ))
    register(MappingPlugin(
        name="os_tile", dataflow="os",
        factory=lambda: TileMapping("os_tile", "os", _os, preload=False),
        summary="output-stationary tiles; SCALE-Sim-exact cycles",
    ))
    register(MappingPlugin(
        name="is_tile", dataflow="is",
        factory=lambda: TileMapping("is_tile", "is", _is, preload=True),
        summary="input-stationary tiles; SCALE-Sim-exact cycles",
    ))
