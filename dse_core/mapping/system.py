"""The accelerator's energy: the PE array's (an energy model's :class:`LayerEnergy`) plus the
memory traffic its mapping implies, priced by a memory model; and an area estimate.

Word widths: an ifmap word is ``activation_bits`` wide, an ofmap buffer word (a partial
sum) ``psum_bits``, an ofmap DRAM word ``psum_bits`` while it is a partial sum and
``activation_bits`` once it is a finished output (requantised on its way out), a filter
word ``weight_bits`` or, with index storage, the ⌈log2 n⌉-bit index of the layer's n
allowed codes (plus the n-entry codebook, read from DRAM once per layer). Every DRAM word
read into a buffer is also written into it, and every ofmap word drained or accumulated is
also read from it; those buffer accesses are charged to the buffer beside the array's own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

from dse_core.host.contracts import MemoryModel
from dse_core.mapping.traffic import access_counts
from dse_core.types import (
    ArrayConfig,
    BufferConfig,
    LayerEnergy,
    LayerMapping,
    LayerSpec,
    LayerTraffic,
)

__all__ = ["MemorySetting", "index_bits", "with_memory", "area_mm2", "AREA_CONSTANTS"]

#: 45 nm area constants (docs/energy-model.md, "Area"): a netlist cell averages a NAND2_X1 and a
#: half of FreePDK45 (1.2 µm²); an SRAM byte is eight 0.346 µm² 6T cells at 50 % array
#: efficiency (Intel 45 nm bit cell)
AREA_CONSTANTS = {"um2_per_gate": 1.2, "um2_per_sram_byte": 8 * 0.346 / 0.5}


@dataclass(frozen=True)
class MemorySetting:
    """What the memory terms need: the buffers, their energy model, and whether a compressed
    layer stores its weights as codebook indices."""

    buffers: BufferConfig
    model: MemoryModel
    index_storage: bool = False
    psums: str = "accumulate"  # or "scalesim": traffic.access_counts
    # pJ per word by (buffer, bytes, bits, write): a design point asks the model ~10 times
    # per layer for the same few words
    _word_pj: dict[tuple[str, int, int, bool], float] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False)

    def word_pj(self, buffer: str, size_bytes: int, word_bits: int, write: bool) -> float:
        key = (buffer, size_bytes, word_bits, write)
        value = self._word_pj.get(key)
        if value is None:
            value = self._word_pj[key] = self.model.access_pj(buffer, size_bytes, word_bits,
                                                              write)
        return value


@functools.lru_cache(maxsize=1 << 14)
def _access_counts(layer: LayerSpec, array: ArrayConfig, buffers: BufferConfig,
                   filter_bits: int, psums: str) -> LayerTraffic:
    """The counts of one geometry, kept across design points (a search revisits them)."""
    return access_counts(layer, array, buffers, filter_word_bits=filter_bits, psums=psums)


def index_bits(n_levels: int | None, weight_bits: int) -> int:
    """Bits of one stored weight: ⌈log2 n⌉ for a layer restricted to n codes (at least 1)."""
    if n_levels is None or n_levels >= 2 ** weight_bits:
        return weight_bits
    return max(1, math.ceil(math.log2(n_levels)))


def with_memory(energy: LayerEnergy, layer: LayerSpec, mapping: LayerMapping,
                memory: MemorySetting, *, n_levels: int | None = None,
                traffic: LayerTraffic | None = None) -> tuple[LayerEnergy, LayerTraffic]:
    """``energy`` with its SRAM and DRAM terms filled in, and the traffic they price."""
    array = mapping.array
    filter_bits = (index_bits(n_levels, array.weight_bits) if memory.index_storage
                   else array.weight_bits)
    if traffic is None:
        traffic = _access_counts(layer, array, memory.buffers, filter_bits, memory.psums)
    b = memory.buffers

    def sram(buffer: str, kb: int, bits: int, write: bool) -> float:
        return memory.word_pj(buffer, kb * 1024, bits, write)

    def dram(bits: int, write: bool) -> float:
        return memory.word_pj("dram", 0, bits, write)

    act, psum = array.activation_bits, array.psum_bits
    out_bits = act if traffic.ofmap_final else psum  # finished outputs leave requantised
    codebook_bits = (n_levels * array.weight_bits
                     if memory.index_storage and filter_bits < array.weight_bits and n_levels
                     else 0)
    terms = {
        "sram_ifmap_pj": traffic.sram_ifmap_reads * sram("ifmap", b.ifmap_kb, act, False)
        + traffic.dram_ifmap_reads * sram("ifmap", b.ifmap_kb, act, True),
        "sram_filter_pj": traffic.sram_filter_reads * sram("filter", b.filter_kb, filter_bits,
                                                           False)
        + traffic.dram_filter_reads * sram("filter", b.filter_kb, filter_bits, True),
        "sram_ofmap_pj": traffic.sram_ofmap_writes * sram("ofmap", b.ofmap_kb, psum, True)
        + (traffic.sram_ofmap_reads + traffic.dram_ofmap_writes)
        * sram("ofmap", b.ofmap_kb, psum, False),
        "dram_pj": traffic.dram_ifmap_reads * dram(act, False)
        + traffic.dram_filter_reads * dram(filter_bits, False)
        + layer.groups * codebook_bits * dram(1, False)
        + traffic.dram_ofmap_writes * dram(out_bits, True),
    }
    return dataclasses.replace(energy, **terms), traffic  # type: ignore[arg-type]


def area_mm2(array: ArrayConfig, buffers: BufferConfig, pe_gates: int) -> float:
    """PE array (``pe_gates`` netlist cells per PE) plus the three SRAM buffers."""
    pe = array.pe_count * pe_gates * AREA_CONSTANTS["um2_per_gate"]
    sram = buffers.total_kb * 1024 * AREA_CONSTANTS["um2_per_sram_byte"]
    return (pe + sram) / 1e6
