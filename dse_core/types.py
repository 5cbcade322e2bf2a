"""Immutable value types shared by the core and every plugin.

Each type validates itself at construction; an error names the field, the value and what was
expected. Units are in the names: ``*_pj`` is picojoules, ``cycles`` are array clock cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from dse_core.errors import ValidationError

__all__ = [
    "LayerKind",
    "Dataflow",
    "DATAFLOWS",
    "LayerSpec",
    "ArrayConfig",
    "FoldTile",
    "LayerMapping",
    "ClockGating",
    "CLOCK_GATING",
    "BufferConfig",
    "LayerTraffic",
    "AllowedSet",
    "CompressionPlan",
    "LayerEnergy",
    "NetworkEnergy",
]

LayerKind = Literal["conv", "depthwise", "linear"]
Dataflow = Literal["ws", "os", "is"]
DATAFLOWS: tuple[str, ...] = ("ws", "os", "is")
_LAYER_KINDS = ("conv", "depthwise", "linear")
ClockGating = Literal["none", "idle", "idle_and_skew"]
#: none: every PE clocks every cycle; idle: PEs outside a fold's tile are gated; idle_and_skew:
#: also each PE's fill/drain skew cycles (a PE clocks only while it holds valid data)
CLOCK_GATING: tuple[str, ...] = ("none", "idle", "idle_and_skew")


def _positive_int(owner: str, name: str, value: object) -> None:
    if type(value) is int and value >= 1:  # the common case, on a search's hot path
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValidationError.field(owner, name, value, "a positive integer")


def _non_negative_int(owner: str, name: str, value: object) -> None:
    if type(value) is int and value >= 0:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValidationError.field(owner, name, value, "a non-negative integer")


def _pair(owner: str, name: str, value: object, check: str) -> None:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ValidationError.field(owner, name, value, "a pair (height, width)")
    for item in value:
        try:
            (_positive_int if check == "positive" else _non_negative_int)(owner, name, item)
        except ValidationError:
            expected = "positive" if check == "positive" else "non-negative"
            raise ValidationError.field(
                owner, name, value, f"a pair of {expected} integers"
            ) from None


def _finite_non_negative(owner: str, name: str, value: object) -> None:
    if type(value) is float and 0.0 <= value < math.inf:  # NaN fails both comparisons
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.floating | np.integer)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValidationError.field(owner, name, value, "a finite number >= 0")


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One conv / depthwise / linear layer as the array sees it.

    The layer becomes ``groups`` independent GEMMs (im2col): ``gemm_m`` output pixels streamed
    (batch included), ``gemm_k`` = C_in/groups * k_h * k_w reduction length, ``gemm_n`` =
    C_out/groups filters. ``input_hw`` is the unpadded input; ``output_hw`` is stored rather
    than derived because SCALE-Sim topologies round the output size up while torch rounds down.
    """

    name: str
    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input_hw: tuple[int, int] = (1, 1)
    output_hw: tuple[int, int] = (1, 1)
    batch: int = 1

    def __post_init__(self) -> None:
        owner = "LayerSpec"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError.field(owner, "name", self.name, "a non-empty string")
        if self.kind not in _LAYER_KINDS:
            raise ValidationError.field(owner, "kind", self.kind, f"one of {_LAYER_KINDS}")
        for name in ("in_channels", "out_channels", "groups", "batch"):
            _positive_int(owner, name, getattr(self, name))
        for name in ("kernel", "stride", "dilation", "input_hw", "output_hw"):
            _pair(owner, name, getattr(self, name), "positive")
        _pair(owner, "padding", self.padding, "non-negative")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValidationError.field(
                owner, "groups", self.groups,
                f"a divisor of in_channels={self.in_channels} and out_channels={self.out_channels}",
            )
        if self.kind == "depthwise" and self.groups != self.in_channels:
            raise ValidationError.field(
                owner, "groups", self.groups,
                f"in_channels={self.in_channels} for a depthwise layer",
            )

    @property
    def gemm_m(self) -> int:
        """Rows of the im2col GEMM: output pixels of the whole batch."""
        return self.batch * self.output_hw[0] * self.output_hw[1]

    @property
    def gemm_k(self) -> int:
        """Reduction length of one group: C_in/groups * k_h * k_w."""
        return (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def gemm_n(self) -> int:
        """Filters of one group: C_out/groups."""
        return self.out_channels // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (all groups, whole batch)."""
        return self.groups * self.gemm_m * self.gemm_k * self.gemm_n

    @property
    def weight_count(self) -> int:
        return self.groups * self.gemm_k * self.gemm_n


def default_psum_bits(rows: int, weight_bits: int = 8, activation_bits: int = 8) -> int:
    """Product width plus the head-room to add ``rows`` products: 16 + ceil(log2 rows)."""
    return weight_bits + activation_bits + max(0, math.ceil(math.log2(rows)))


@dataclass(frozen=True, slots=True)
class ArrayConfig:
    """A rows x cols systolic array. ``psum_bits`` defaults to product width + ceil(log2 rows)."""

    rows: int
    cols: int
    dataflow: Dataflow = "ws"
    weight_bits: int = 8
    activation_bits: int = 8
    psum_bits: int = 0  # 0 = derive from rows
    clock_gating: ClockGating = "idle_and_skew"

    MAX_DIM = 1 << 16  # a 65,536-wide array is already far beyond any fabricated one

    def __post_init__(self) -> None:
        owner = "ArrayConfig"
        for name in ("rows", "cols"):
            value = getattr(self, name)
            _positive_int(owner, name, value)
            if value > self.MAX_DIM:
                raise ValidationError.field(owner, name, value, f"at most {self.MAX_DIM}")
        if self.dataflow not in DATAFLOWS:
            raise ValidationError.field(owner, "dataflow", self.dataflow, f"one of {DATAFLOWS}")
        if self.clock_gating not in CLOCK_GATING:
            raise ValidationError.field(owner, "clock_gating", self.clock_gating,
                                        f"one of {CLOCK_GATING}")
        for name in ("weight_bits", "activation_bits"):
            value = getattr(self, name)
            _positive_int(owner, name, value)
            if value > 32:
                raise ValidationError.field(owner, name, value, "at most 32")
        if self.psum_bits == 0:
            object.__setattr__(
                self, "psum_bits",
                default_psum_bits(self.rows, self.weight_bits, self.activation_bits),
            )
        _positive_int(owner, "psum_bits", self.psum_bits)
        if self.psum_bits < self.weight_bits + self.activation_bits:
            raise ValidationError.field(
                owner, "psum_bits", self.psum_bits,
                f">= weight_bits + activation_bits = {self.weight_bits + self.activation_bits}",
            )

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    @classmethod
    def parse(cls, text: str, dataflow: Dataflow = "ws") -> ArrayConfig:
        """Parse ``"64x64"`` (rows x cols)."""
        parts = text.lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdecimal()
                                      for p in parts):
            raise ValidationError(f"array = {text!r}: expected ROWSxCOLS, e.g. 64x64")
        return cls(rows=int(parts[0]), cols=int(parts[1]), dataflow=dataflow)

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols} {self.dataflow}"


@dataclass(frozen=True, slots=True)
class FoldTile:
    """One fold of one group: which PEs hold data (the top-left ``active_rows`` x
    ``active_cols`` block) while ``streamed`` vectors pass through."""

    group: int
    row_fold: int
    col_fold: int
    active_rows: int
    active_cols: int
    streamed: int


@dataclass(frozen=True, slots=True)
class LayerMapping:
    """How one layer occupies the array.

    The spatial extent ``spatial_rows`` x ``spatial_cols`` of each group is cut into
    ``row_folds`` x ``col_folds`` tiles of at most rows x cols PEs; every fold costs
    ``cycles_per_fold`` (padded tiles take as long as full ones). Fold tiles are regular, so
    the active PEs of each fold follow from the four ``*_fold*`` fields (see :meth:`tiles`).

    ``groups_per_fold`` > 1 packs that many groups of a grouped layer into one fold, block-
    diagonally (group j on rows [jK, (j+1)K) and columns [jN, (j+1)N)): a group's rows carry
    its own input channels, so groups cannot share rows or columns. The off-block PEs of the
    packed rectangle hold weight 0 and pass activations right and partial sums down
    (:attr:`passthrough_pe_folds`): they clock while the fold streams, gated or not.
    """

    layer: str
    mapping: str
    array: ArrayConfig
    groups: int
    spatial_rows: int
    spatial_cols: int
    streamed: int
    row_folds: int
    col_folds: int
    cycles_per_fold: int
    macs: int
    groups_per_fold: int = 1

    def __post_init__(self) -> None:
        owner = "LayerMapping"
        for name in ("groups", "spatial_rows", "spatial_cols", "streamed", "row_folds",
                     "col_folds", "cycles_per_fold", "macs", "groups_per_fold"):
            _positive_int(owner, name, getattr(self, name))
        packed = self.groups_per_fold
        if packed > 1 and (packed > self.groups
                           or packed * self.spatial_rows > self.array.rows
                           or packed * self.spatial_cols > self.array.cols):
            raise ValidationError.field(
                owner, "groups_per_fold", packed,
                f"at most groups = {self.groups}, and groups_per_fold x {self.spatial_rows} "
                f"x {self.spatial_cols} PEs within the {self.array.rows}x{self.array.cols} "
                "array")
        if self.row_folds != -(-self.spatial_rows // self.array.rows):
            raise ValidationError.field(
                owner, "row_folds", self.row_folds, "ceil(spatial_rows / array.rows)"
            )
        if self.col_folds != -(-self.spatial_cols // self.array.cols):
            raise ValidationError.field(
                owner, "col_folds", self.col_folds, "ceil(spatial_cols / array.cols)"
            )

    @property
    def group_folds(self) -> int:
        """Folds the groups take: ceil(groups / groups_per_fold)."""
        return -(-self.groups // self.groups_per_fold)

    @property
    def folds(self) -> int:
        return self.group_folds * self.row_folds * self.col_folds

    @property
    def cycles(self) -> int:
        return self.folds * self.cycles_per_fold

    @property
    def last_fold_rows(self) -> int:
        return self.spatial_rows - (self.row_folds - 1) * self.array.rows

    @property
    def last_fold_cols(self) -> int:
        return self.spatial_cols - (self.col_folds - 1) * self.array.cols

    @property
    def active_pe_folds(self) -> int:
        """Sum over folds of the active PEs (a PE-fold is one PE busy for one fold)."""
        return self.groups * self.spatial_rows * self.spatial_cols

    @property
    def passthrough_pe_folds(self) -> int:
        """Sum over packed folds of their off-block PEs: b blocks of K x N PEs in a
        (bK) x (bN) rectangle leave b (b - 1) K N PEs that only pass data on."""
        if self.groups_per_fold == 1:
            return 0
        full, last = divmod(self.groups, self.groups_per_fold)
        blocks = self.spatial_rows * self.spatial_cols
        return blocks * (full * self.groups_per_fold * (self.groups_per_fold - 1)
                         + last * (last - 1))

    @property
    def clocked_pe_folds(self) -> int:
        """PE-folds that must clock while a fold streams: its tiles and pass-through PEs."""
        return self.active_pe_folds + self.passthrough_pe_folds

    @property
    def idle_pe_folds(self) -> int:
        """Sum over folds of the PEs left idle (no data) by partial tiles."""
        return self.folds * self.array.pe_count - self.clocked_pe_folds

    @property
    def mapping_efficiency(self) -> float:
        """Mean over folds of active PEs / all PEs (SCALE-Sim's "Mapping Efficiency")."""
        return self.active_pe_folds / (self.folds * self.array.pe_count)

    @property
    def utilisation(self) -> float:
        """MACs / (cycles x PEs): the share of PE-cycles doing useful work."""
        return self.macs / (self.cycles * self.array.pe_count)

    def tiles(self) -> Iterator[FoldTile]:
        """Every tile in execution order: group, then row fold, then column fold (a packed
        fold holds the tiles of its groups_per_fold groups)."""
        for group in range(self.groups):
            for r in range(self.row_folds):
                rows = self.array.rows if r < self.row_folds - 1 else self.last_fold_rows
                for c in range(self.col_folds):
                    cols = self.array.cols if c < self.col_folds - 1 else self.last_fold_cols
                    yield FoldTile(group, r, c, rows, cols, self.streamed)


@dataclass(frozen=True, slots=True)
class BufferConfig:
    """The three on-chip SRAM buffers in kB (1 kB = 1,024 bytes), double-buffered as
    SCALE-Sim 3.0.0 models them: half of each is read (or written) while the other half is
    filled from (or drained to) DRAM. The default is SCALE-Sim's example configuration."""

    ifmap_kb: int = 64
    filter_kb: int = 64
    ofmap_kb: int = 64

    MAX_KB = 1 << 20  # 1 GB: beyond any on-chip buffer

    def __post_init__(self) -> None:
        for name in ("ifmap_kb", "filter_kb", "ofmap_kb"):
            value = getattr(self, name)
            _positive_int("BufferConfig", name, value)
            if value > self.MAX_KB:
                raise ValidationError.field("BufferConfig", name, value, f"at most {self.MAX_KB}")

    @property
    def total_kb(self) -> int:
        return self.ifmap_kb + self.filter_kb + self.ofmap_kb

    @classmethod
    def parse(cls, text: str) -> BufferConfig:
        """``"64,64,64"`` (ifmap, filter, ofmap kB) or one number for all three."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3 or not all(p.isascii() and p.isdecimal() for p in parts):
            raise ValidationError(f"buffers = {text!r}: expected IFMAP,FILTER,OFMAP sizes in "
                                  "kB as positive integers, e.g. 64,64,64")
        try:
            return cls(*(int(p) for p in parts))
        except ValidationError as exc:
            raise ValidationError(f"buffers = {text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.ifmap_kb},{self.filter_kb},{self.ofmap_kb} kB"


@dataclass(frozen=True, slots=True)
class LayerTraffic:
    """Words moved for one inference of one layer: SRAM accesses by the array and DRAM
    accesses by the buffers, counted as SCALE-Sim 3.0.0 counts them (docs/mapping.md), or
    with partial sums accumulated in the ofmap buffer (``psums="accumulate"``): then
    ``sram_ofmap_reads`` are the read-modify-write reads and ``ofmap_final`` says the DRAM
    ofmap words are finished outputs rather than partial sums."""

    layer: str
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    dram_ifmap_reads: int
    dram_filter_reads: int
    dram_ofmap_writes: int
    sram_ofmap_reads: int = 0
    ofmap_final: bool = False

    def __post_init__(self) -> None:
        for name in ("sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
                     "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes",
                     "sram_ofmap_reads"):
            _non_negative_int("LayerTraffic", name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class AllowedSet:
    """The int8 weight codes a layer may use. Always contains 0 (pruned weights).
    ``deadzone``: a weight between 0 and the nearest allowed code ``c`` on its side goes to 0
    while ``|w| <= deadzone * |c|`` (0.5: nearest rounding; wider: more zeros)."""

    layer: str
    codes: tuple[int, ...]
    deadzone: float = 0.5

    def __post_init__(self) -> None:
        codes = tuple(sorted({int(c) for c in self.codes}))
        if not codes or any(c < -128 or c > 127 for c in codes):
            raise ValidationError.field(
                "AllowedSet", "codes", self.codes, "int8 codes in [-128, 127]"
            )
        if 0 not in codes:
            raise ValidationError.field("AllowedSet", "codes", self.codes, "a set containing 0")
        if not isinstance(self.deadzone, int | float) or isinstance(self.deadzone, bool) \
                or not 0.5 <= self.deadzone < 1.0:
            raise ValidationError.field("AllowedSet", "deadzone", self.deadzone, "in [0.5, 1)")
        object.__setattr__(self, "codes", codes)

    @property
    def n_levels(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class CompressionPlan:
    """Layer name -> allowed-set size (n_levels, 1..256)."""

    n_levels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, n in self.n_levels.items():
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
                raise ValidationError(
                    f"CompressionPlan.n_levels[{name!r}] = {n!r}: expected an integer in 1..256"
                )
        object.__setattr__(self, "n_levels", MappingProxyType(dict(self.n_levels)))

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.n_levels.items())))


@dataclass(frozen=True, slots=True)
class LayerEnergy:
    """Energy of one inference of one layer, split by where it goes (all in pJ).

    The PE array (what an energy model plugin returns): ``mac_switching_pj`` data switching
    of busy PEs while inputs stream (what weight selection optimises), ``clock_pj`` clocking
    busy PEs, ``idle_pj`` PEs left idle by partial folds, ``fill_drain_pj`` the skew cycles of
    each fold, ``weight_load_pj`` the weight preload (the last three as the array's clock
    gating leaves them). The memory (added by :func:`dse_core.mapping.system.with_memory`):
    ``sram_*_pj`` the array's reads and writes of the three buffers, ``dram_pj`` the buffers'
    DRAM traffic."""

    layer: str
    mac_switching_pj: float
    clock_pj: float = 0.0
    idle_pj: float = 0.0
    fill_drain_pj: float = 0.0
    weight_load_pj: float = 0.0
    cycles: int = 0
    macs: int = 0
    sram_ifmap_pj: float = 0.0
    sram_filter_pj: float = 0.0
    sram_ofmap_pj: float = 0.0
    dram_pj: float = 0.0

    ENERGY_FIELDS = ("mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj",
                     "weight_load_pj", "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj",
                     "dram_pj")

    def __post_init__(self) -> None:
        for name in self.ENERGY_FIELDS:
            _finite_non_negative("LayerEnergy", name, getattr(self, name))
        _non_negative_int("LayerEnergy", "cycles", self.cycles)
        _non_negative_int("LayerEnergy", "macs", self.macs)

    @property
    def pe_clock_pj(self) -> float:
        """Everything the array spends beyond MAC switching: its clock, idle, skew and preload."""
        return self.clock_pj + self.idle_pj + self.fill_drain_pj + self.weight_load_pj

    @property
    def array_pj(self) -> float:
        """The PE array: MAC switching and its clock."""
        return self.mac_switching_pj + self.pe_clock_pj

    @property
    def sram_pj(self) -> float:
        return self.sram_ifmap_pj + self.sram_filter_pj + self.sram_ofmap_pj

    @property
    def memory_pj(self) -> float:
        """On-chip buffers and DRAM."""
        return self.sram_pj + self.dram_pj

    @property
    def total_pj(self) -> float:
        """The system total: array and memory."""
        return self.array_pj + self.memory_pj


@dataclass(frozen=True, slots=True)
class NetworkEnergy:
    """Per-layer energies of one inference and their totals."""

    layers: tuple[LayerEnergy, ...]

    def _sum(self, name: str) -> float:
        return sum(getattr(layer, name) for layer in self.layers)

    @property
    def total_pj(self) -> float:
        return self._sum("total_pj")

    @property
    def mac_switching_pj(self) -> float:
        return self._sum("mac_switching_pj")

    @property
    def array_pj(self) -> float:
        return self._sum("array_pj")

    @property
    def memory_pj(self) -> float:
        return self._sum("memory_pj")

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)
