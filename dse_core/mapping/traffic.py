"""Memory traffic of one layer on an array with three SRAM buffers (words per inference).

SRAM counts are closed forms of SCALE-Sim 3.0.0's own counters (``systolic_compute_*.py``):
per fold the array reads every entry of its operand tiles, out-of-range window positions
included, and writes every partial sum of its output tile.

======== =================== =================== ==============================
dataflow ifmap reads         filter reads        ofmap writes
======== =================== =================== ==============================
ws       M K x col_folds     K N                 M N x row_folds
os       M K x col_folds     K N x row_folds     M N + folds (R + C)  [#]
is       M K                 K N x col_folds     M N x row_folds
======== =================== =================== ==============================

(M streamed pixels, K window, N filters of one group; R x C array; [#] SCALE-Sim adds the
padded tile's height plus width per fold.) DRAM counts replay SCALE-Sim's buffers on the
same request order (:mod:`dse_core.mapping.buffer_replay`); an operand whose requests never
repeat an address, or whose whole footprint fits before the first drop, needs no replay.
Results are cached in memory and on disk (they depend on the geometry only).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse_core.mapping.buffer_replay import (
    OperandStreams,
    dram_reads,
    dram_writes,
    flipped,
    fold_slices,
    read_epoch_words,
    skewed,
)
from dse_core.types import ArrayConfig, BufferConfig, LayerSpec, LayerTraffic

__all__ = ["sram_counts", "access_counts", "compare_access", "TRAFFIC_VERSION", "PSUM_POLICIES"]

#: bump when the counting changes, so cached counts are recomputed
TRAFFIC_VERSION = "traffic/1"


@dataclass(frozen=True)
class _Geometry:
    """What the counts depend on: one group's im2col addressing."""

    batch: int
    in_hw: tuple[int, int]
    channels: int  # per group
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]
    filters: int  # per group

    @classmethod
    def of(cls, layer: LayerSpec) -> _Geometry:
        channels = layer.in_channels // layer.groups
        if layer.kind == "linear":  # a batch of 1x1 inputs with C = in_features
            return cls(layer.batch, (1, 1), channels, (1, 1), (1, 1), (0, 0), (1, 1), (1, 1),
                       layer.gemm_n)
        return cls(layer.batch, layer.input_hw, channels, layer.kernel, layer.stride,
                   layer.padding, layer.dilation, layer.output_hw, layer.gemm_n)

    @property
    def m(self) -> int:
        return self.batch * self.out_hw[0] * self.out_hw[1]

    @property
    def k(self) -> int:
        return self.channels * self.kernel[0] * self.kernel[1]

    @property
    def ifmap_words(self) -> int:
        return self.batch * self.in_hw[0] * self.in_hw[1] * self.channels

    def _axis(self, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Input coordinate of (output position, tap) along one axis, and whether it exists
        (padding, and SCALE-Sim's rounded-up last output, fall outside)."""
        out = np.arange(self.out_hw[axis])[:, None] * self.stride[axis]
        tap = np.arange(self.kernel[axis])[None, :] * self.dilation[axis]
        coordinate = out + tap - self.padding[axis]
        return coordinate, (coordinate >= 0) & (coordinate < self.in_hw[axis])

    def ifmap_rows(self, pixels: slice, window: slice) -> np.ndarray:
        """Addresses (row-major H, W, C per image; -1 where no input exists) of the im2col
        block ``pixels`` x ``window``."""
        t = np.arange(self.m)[pixels]
        k = np.arange(self.k)[window]
        image, rest = np.divmod(t, self.out_hw[0] * self.out_hw[1])
        oy, ox = np.divmod(rest, self.out_hw[1])
        ky, rest_k = np.divmod(k, self.kernel[1] * self.channels)
        kx, c = np.divmod(rest_k, self.channels)
        ys, y_ok = self._axis(0)
        xs, x_ok = self._axis(1)
        y, x = ys[oy][:, ky], xs[ox][:, kx]
        ok = y_ok[oy][:, ky] & x_ok[ox][:, kx]
        h, w = self.in_hw
        address = ((image[:, None] * h + y) * w + x) * self.channels + c[None, :]
        return np.where(ok, address, -1).astype(np.int64)

    def footprint(self) -> int:
        """Distinct input words the layer reads (per group)."""
        ys, y_ok = self._axis(0)
        xs, x_ok = self._axis(1)
        rows = len(np.unique(ys[y_ok]))  # the touched positions are rows x cols
        cols = len(np.unique(xs[x_ok]))
        return self.batch * rows * cols * self.channels


def sram_counts(layer: LayerSpec, array: ArrayConfig) -> tuple[int, int, int]:
    """(ifmap reads, filter reads, ofmap writes) of the array, all groups."""
    m, k, n = layer.gemm_m, layer.gemm_k, layer.gemm_n
    rows, cols = array.rows, array.cols
    if array.dataflow == "ws":
        rf, cf = -(-k // rows), -(-n // cols)
        counts = (m * k * cf, k * n, m * n * rf)
    elif array.dataflow == "os":
        rf, cf = -(-m // rows), -(-n // cols)
        counts = (m * k * cf, k * n * rf, m * n + rf * cf * (rows + cols))
    else:
        rf, cf = -(-k // rows), -(-m // cols)
        counts = (m * k, k * n * cf, m * n * rf)
    return tuple(layer.groups * c for c in counts)  # type: ignore[return-value]


def _read_streams(g: _Geometry, array: ArrayConfig, operand: str) -> OperandStreams | None:
    """The operand's request passes, or None when no address is requested twice."""
    rows, cols, m, k, n = array.rows, array.cols, g.m, g.k, g.filters
    if operand == "ifmap":
        space = g.ifmap_words
        if array.dataflow == "is":  # stationary tiles: im2col repeats input words across them
            tiles = [flipped(g.ifmap_rows(p, w).T) for p in fold_slices(m, cols)
                     for w in fold_slices(k, rows)]
            return OperandStreams(((np.concatenate(tiles), 1),), space)
        if array.dataflow == "ws":
            one = [skewed(g.ifmap_rows(slice(None), w)) for w in fold_slices(k, rows)]
            return OperandStreams(((np.concatenate(one), -(-n // cols)),), space)
        one = [skewed(g.ifmap_rows(p, slice(None)).T) for p in fold_slices(m, rows)]
        return OperandStreams(((np.concatenate(one), -(-n // cols)),), space)
    filters = np.arange(k)[:, None] + np.arange(n)[None, :] * k  # SCALE-Sim's filter layout
    if array.dataflow == "ws":
        return None
    if array.dataflow == "os":
        rf = -(-m // rows)
        return OperandStreams(tuple((skewed(filters[:, f]), rf) for f in fold_slices(n, cols)),
                              k * n)
    one = [skewed(filters[w, :].T) for w in fold_slices(k, rows)]
    return OperandStreams(((np.concatenate(one), -(-m // cols)),), k * n)


def _ofmap_per_cycle(g: _Geometry, array: ArrayConfig) -> np.ndarray:
    """Words written to the ofmap buffer in each cycle of the layer (SCALE-Sim's timing)."""
    rows, cols, m, k, n = array.rows, array.cols, g.m, g.k, g.filters
    if array.dataflow == "os":
        fold_len, tiles = k + rows + cols - 2, []
        for _fc in fold_slices(n, cols):
            for fr in fold_slices(m, rows):
                used_r, used_c = fr.stop - fr.start, _fc.stop - _fc.start
                tiles.append((used_r, used_c))
        counts = np.zeros(len(tiles) * fold_len, dtype=np.int64)
        for index, (used_r, used_c) in enumerate(tiles):
            # flipped tile: its valid rows are the last used_r of R, entry (i, c) at k-1+i+c
            i = np.arange(rows - used_r, rows)[:, None]
            c = np.arange(used_c)[None, :]
            np.add.at(counts, index * fold_len + (k - 1 + i + c).ravel(), 1)
        return counts
    streamed = m if array.dataflow == "ws" else n
    lanes = n if array.dataflow == "ws" else m
    rf = -(-k // rows)
    fold_len = 2 * rows + cols + streamed - 2
    folds = [(f.stop - f.start) for f in fold_slices(lanes, cols) for _ in range(rf)]
    delta = np.zeros(len(folds) * fold_len + 1, dtype=np.int64)
    for index, used in enumerate(folds):
        base = index * fold_len + 2 * rows - 1
        np.add.at(delta, base + np.arange(used), 1)
        np.add.at(delta, base + np.arange(used) + streamed, -1)
    return np.cumsum(delta)[:-1]


def _dram_counts(g: _Geometry, array: ArrayConfig, words: tuple[int, int, int],
                 valid_ifmap: int, sram: tuple[int, int, int]) -> tuple[int, int, int]:
    reads = []
    for operand, capacity in (("ifmap", words[0]), ("filter", words[1])):
        footprint = g.footprint() if operand == "ifmap" else g.k * g.filters
        streams = _read_streams(g, array, operand)
        if streams is None:  # every request a new address: each one is a DRAM read
            reads.append(valid_ifmap if operand == "ifmap" else sram[1])
        elif footprint < read_epoch_words(capacity):  # nothing is ever dropped
            reads.append(footprint)
        else:
            reads.append(dram_reads(streams, capacity))
    writes = dram_writes(_ofmap_per_cycle(g, array), words[2], array.cols)
    return reads[0], reads[1], writes


def _valid_ifmap_requests(g: _Geometry, sram_ifmap: int) -> int:
    """Requests that address an input word (the rest are SCALE-Sim's -1 padding): the valid
    im2col entries times the passes over them."""
    valid_entries = g.batch * int(g._axis(0)[1].sum()) * int(g._axis(1)[1].sum()) * g.channels
    return valid_entries * (sram_ifmap // (g.m * g.k))


@functools.lru_cache(maxsize=4096)
def _counts(g: _Geometry, rows: int, cols: int, dataflow: str, words: tuple[int, int, int],
            sram: tuple[int, int, int]) -> tuple[int, int, int]:
    from dse_core.cache import atomic_write, cache_dir, content_hash

    array = ArrayConfig(rows, cols, dataflow=dataflow)  # type: ignore[arg-type]
    key = content_hash(TRAFFIC_VERSION, repr(g), f"{rows}x{cols}{dataflow}", repr(words))
    path = cache_dir("traffic") / f"{key}.json"
    try:
        cached = json.loads(path.read_text())
        if (isinstance(cached, list) and len(cached) == 3
                and all(isinstance(v, int) and v >= 0 for v in cached)):
            return tuple(cached)  # type: ignore[return-value]
    except (OSError, ValueError):
        pass  # absent or corrupt: recount and rewrite
    valid = _valid_ifmap_requests(g, sram[0])
    counts = _dram_counts(g, array, words, valid, sram)
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(list(counts)))

    atomic_write(path, write)
    return counts


_DEFAULT_BUFFERS = BufferConfig()


PSUM_POLICIES = ("scalesim", "accumulate")


def _accumulated(layer: LayerSpec, array: ArrayConfig, buffers: BufferConfig,
                 counts: LayerTraffic) -> LayerTraffic:
    """Partial sums kept in the ofmap buffer across row folds when one column fold's output
    tile fits in its active half (the other half drains the previous tile): each row fold
    after the first reads the tile back (read-modify-write) and only finished outputs go to
    DRAM. A tile that does not fit spills as SCALE-Sim counts it. Output-stationary arrays
    finish their sums inside the PEs, so nothing changes for them."""
    m, k, n = layer.gemm_m, layer.gemm_k, layer.gemm_n
    row_folds = -(-k // array.rows)
    if array.dataflow == "os":
        return dataclasses.replace(counts, ofmap_final=True)
    if row_folds == 1:
        return dataclasses.replace(counts, ofmap_final=True)
    streamed, lanes = (m, n) if array.dataflow == "ws" else (n, m)
    tile_bytes = streamed * min(lanes, array.cols) * -(-array.psum_bits // 8)
    if tile_bytes > buffers.ofmap_kb * 1024 // 2:
        return counts
    outputs = layer.groups * m * n
    return dataclasses.replace(counts, sram_ofmap_reads=outputs * (row_folds - 1),
                               dram_ofmap_writes=outputs, ofmap_final=True)


def access_counts(layer: LayerSpec, array: ArrayConfig,
                  buffers: BufferConfig = _DEFAULT_BUFFERS, *,
                  filter_word_bits: int = 8, psums: str = "scalesim") -> LayerTraffic:
    """SRAM and DRAM words of one inference of ``layer`` (all groups: SCALE-Sim runs each
    group of a depthwise layer as its own layer, buffers starting empty).

    A buffer of B bytes holds B words, as in SCALE-Sim (one-byte words); a filter buffer of
    ``filter_word_bits``-bit codebook indices holds 8 / bits as many. ``psums``:
    ``"scalesim"`` (every row fold's partial sums to DRAM, as SCALE-Sim counts) or
    ``"accumulate"`` (:func:`_accumulated`)."""
    sram = sram_counts(layer, array)
    per_group = tuple(c // layer.groups for c in sram)
    g = _Geometry.of(layer)
    words = (buffers.ifmap_kb * 1024, buffers.filter_kb * 1024 * 8 // min(filter_word_bits, 8),
             buffers.ofmap_kb * 1024)
    dram = _counts(g, array.rows, array.cols, array.dataflow, words, per_group)
    g_ = layer.groups
    counts = LayerTraffic(layer.name, sram_ifmap_reads=sram[0], sram_filter_reads=sram[1],
                          sram_ofmap_writes=sram[2], dram_ifmap_reads=g_ * dram[0],
                          dram_filter_reads=g_ * dram[1], dram_ofmap_writes=g_ * dram[2],
                          ofmap_final=-(-layer.gemm_k // array.rows) == 1
                          or array.dataflow == "os")
    if psums == "accumulate":
        return _accumulated(layer, array, buffers, counts)
    if psums != "scalesim":
        raise ValueError(f"psums = {psums!r}: expected one of {PSUM_POLICIES}")
    return counts



#: DRAM counts may differ from SCALE-Sim's by this share and still match (SRAM: none)
DRAM_TOLERANCE = 0.01


def compare_access(layers: list[LayerSpec], traffic: list[LayerTraffic],
                   report: list[dict[str, int]]) -> list[dict[str, object]]:
    """Per-layer comparison with a SCALE-Sim ``DETAILED_ACCESS_REPORT.csv`` (rows as
    :func:`dse_core.workloads.scalesim.read_access_report` reads them). A depthwise layer
    covers one report row per channel. ``match``: SRAM counts identical, DRAM within 1 %."""
    from dse_core.workloads.scalesim import ACCESS_COLUMNS, report_slices

    out: list[dict[str, object]] = []
    for layer, ours, rows in zip(layers, traffic, report_slices(layers, len(report)),
                                 strict=True):
        theirs = report[rows]
        row: dict[str, object] = {"layer": layer.name}
        match, identical = True, True
        for field in ACCESS_COLUMNS:
            mine, scalesim = getattr(ours, field), sum(r[field] for r in theirs)
            row[field] = mine
            row[f"scalesim_{field}"] = scalesim
            identical &= mine == scalesim
            if field.startswith("sram"):
                match &= mine == scalesim
            else:
                match &= abs(mine - scalesim) <= DRAM_TOLERANCE * max(scalesim, 1)
        row["identical"] = identical
        row["match"] = match
        out.append(row)
    return out
