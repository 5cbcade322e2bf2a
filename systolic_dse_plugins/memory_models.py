"""Memory models: the energy of one SRAM-buffer or DRAM access.

- ``horowitz45`` (default): 45 nm, the node of the PE calibration. 64-bit SRAM reads cost
  10 pJ at 8 kB, 20 pJ at 32 kB and 100 pJ at 1 MB (Horowitz, ISSCC 2014, "Computing's
  energy problem"); between those sizes the energy is interpolated on log-log axes, beyond
  them the nearest segment's slope continues (about E ~ size^0.5: wire length grows with
  the square root of the array). A word of w bits costs w/64 of a 64-bit access; a write
  costs ``write_factor`` times a read. DRAM: 1.3-2.6 nJ per 64-bit access in the same
  talk; the default is the middle, 1.95 nJ, i.e. 30.5 pJ per bit, reads and writes alike.
- ``table``: the user's own numbers, a TOML file (docs/energy-model.md, "Memory").
- ``zigzag``: the memory levels of a ZigZag hardware YAML (``r_cost``/``w_cost`` per access
  of the port's full width, ``bandwidth_max`` bits; size in bits).
"""

from __future__ import annotations

import math
import tomllib
from bisect import bisect_left
from pathlib import Path
from typing import Any

from dse_core import DseError, MemoryModelPlugin, hookimpl, read_user_text

#: (size in bytes, pJ per 64-bit read): Horowitz, ISSCC 2014, 45 nm
HOROWITZ_SRAM_64BIT_READ_PJ = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
#: Horowitz's DRAM range, 1.3-2.6 nJ per 64-bit access: its middle, per bit
HOROWITZ_DRAM_PJ_PER_BIT = 1950.0 / 64


def _loglog(points: tuple[tuple[float, float], ...], size: float) -> float:
    """Energy at ``size`` on the piecewise power law through ``points`` (sorted by size)."""
    sizes = [s for s, _ in points]
    i = min(max(bisect_left(sizes, size), 1), len(points) - 1)
    (s0, e0), (s1, e1) = points[i - 1], points[i]
    slope = math.log(e1 / e0) / math.log(s1 / s0)
    return e0 * (size / s0) ** slope


def _positive(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value <= 0:
        raise DseError(f"{owner}: {name} = {value!r}: expected a positive number")
    return float(value)


class Horowitz45:
    def __init__(self, dram_pj_per_bit: float = HOROWITZ_DRAM_PJ_PER_BIT,
                 write_factor: float = 1.0) -> None:
        self.dram_pj_per_bit = _positive("horowitz45", "dram_pj_per_bit", dram_pj_per_bit)
        self.write_factor = _positive("horowitz45", "write_factor", write_factor)

    def access_pj(self, buffer: str, size_bytes: int, word_bits: int, write: bool) -> float:
        if buffer == "dram":
            return self.dram_pj_per_bit * word_bits
        per_64 = _loglog(HOROWITZ_SRAM_64BIT_READ_PJ, max(size_bytes, 1))
        return per_64 * word_bits / 64 * (self.write_factor if write else 1.0)


class TableMemory:
    """A user's table: SRAM energies at sizes (interpolated log-log like ``horowitz45``) and
    DRAM energies, all per access of ``word_bits`` bits. Validated before anything is used."""

    def __init__(self, file: str) -> None:
        path = Path(file)
        try:
            data = tomllib.loads(read_user_text(path, "memory table (TOML)"))
        except tomllib.TOMLDecodeError as exc:
            raise DseError(f"{path}: not TOML: {exc}") from exc
        owner = str(path)
        known = {"word_bits", "dram_read_pj", "dram_write_pj", "sram"}
        for key in data:
            if key not in known:
                raise DseError(f"{owner}: key {key!r} is not known: expected "
                               f"{', '.join(sorted(known))}")
        for key in known:
            if key not in data:
                raise DseError(f"{owner}: {key} is missing")
        self.word_bits = _positive(owner, "word_bits", data["word_bits"])
        self.dram = (_positive(owner, "dram_read_pj", data["dram_read_pj"]),
                     _positive(owner, "dram_write_pj", data["dram_write_pj"]))
        rows = data["sram"]
        if not isinstance(rows, list) or len(rows) < 2:
            raise DseError(f"{owner}: sram = {rows!r}: expected at least two [[sram]] rows "
                           "(size_kb, read_pj, write_pj)")
        reads, writes = [], []
        for i, row in enumerate(rows):
            where = f"{owner}: sram[{i}]"
            if not isinstance(row, dict) or set(row) != {"size_kb", "read_pj", "write_pj"}:
                raise DseError(f"{where} = {row!r}: expected size_kb, read_pj and write_pj")
            size = _positive(where, "size_kb", row["size_kb"]) * 1024
            reads.append((size, _positive(where, "read_pj", row["read_pj"])))
            writes.append((size, _positive(where, "write_pj", row["write_pj"])))
        sizes = [s for s, _ in reads]
        if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
            raise DseError(f"{owner}: sram sizes {[s / 1024 for s in sizes]}: expected "
                           "strictly increasing size_kb")
        self.reads, self.writes = tuple(reads), tuple(writes)

    def access_pj(self, buffer: str, size_bytes: int, word_bits: int, write: bool) -> float:
        scale = word_bits / self.word_bits
        if buffer == "dram":
            return self.dram[1 if write else 0] * scale
        return _loglog(self.writes if write else self.reads, max(size_bytes, 1)) * scale


class ZigZagMemory:
    """Per-bit energies of a ZigZag hardware file's memory levels. The top (largest) level is
    DRAM; each buffer takes the largest other level that serves its operand (ZigZag: I1
    inputs, I2 weights, O outputs) and is shared across the array, unless named by
    ``ifmap``/``filter``/``ofmap``."""

    OPERANDS = {"ifmap": "I1", "filter": "I2", "ofmap": "O"}

    def __init__(self, file: str, ifmap: str | None = None, filter: str | None = None,
                 ofmap: str | None = None, dram: str | None = None) -> None:
        import yaml

        path = Path(file)
        try:
            data = yaml.safe_load(read_user_text(path, "ZigZag hardware file (YAML)"))
        except yaml.YAMLError as exc:
            raise DseError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from exc
        memories = data.get("memories") if isinstance(data, dict) else None
        if not isinstance(memories, dict) or not memories:
            raise DseError(f"{path}: memories is missing: expected a ZigZag hardware file")
        self.levels: dict[str, dict[str, Any]] = {}
        for name, level in memories.items():
            self.levels[str(name)] = self._level(path, str(name), level)
        top = max(self.levels, key=lambda n: self.levels[n]["size_bits"])
        chosen = {"dram": dram or top}
        for buffer, operand in self.OPERANDS.items():
            named = {"ifmap": ifmap, "filter": filter, "ofmap": ofmap}[buffer]
            if named:
                chosen[buffer] = named
                continue
            serving = [n for n, lv in self.levels.items() if n != chosen["dram"]
                       and operand in lv["operands"] and lv["shared"]]
            others = [n for n in self.levels if n != chosen["dram"] and self.levels[n]["shared"]]
            pool = serving or others
            if not pool:
                raise DseError(f"{path}: no shared on-chip memory for the {buffer} buffer: "
                               f"name one with the {buffer} option")
            chosen[buffer] = max(pool, key=lambda n: self.levels[n]["size_bits"])
        for buffer, name in chosen.items():
            if name not in self.levels:
                raise DseError(f"{path}: {buffer} = {name!r} is not a memory of the file; "
                               f"known: {', '.join(self.levels)}")
        self.chosen = chosen

    @staticmethod
    def _level(path: Path, name: str, level: Any) -> dict[str, Any]:
        where = f"{path}: memories.{name}"
        if not isinstance(level, dict):
            raise DseError(f"{where}: expected a mapping")
        out: dict[str, Any] = {"size_bits": _positive(where, "size", level.get("size"))}
        ports = level.get("ports")
        if not isinstance(ports, list) or not ports:
            raise DseError(f"{where}: ports is missing: expected a list of ports")
        widths: dict[str, float] = {}
        for port in ports:
            if not isinstance(port, dict) or "type" not in port:
                raise DseError(f"{where}: port {port!r}: expected a port with a type")
            width = _positive(where, "bandwidth_max", port.get("bandwidth_max"))
            for kind in ("read", "write"):
                if kind in str(port["type"]):
                    widths[kind] = max(widths.get(kind, 0.0), width)
        for kind, key in (("read", "r_cost"), ("write", "w_cost")):
            cost = level.get(key)
            if kind not in widths:
                widths[kind] = widths.get("read") or widths.get("write") or 1.0
            if isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0:
                raise DseError(f"{where}: {key} = {cost!r}: expected a number >= 0")
            out[f"{kind}_pj_per_bit"] = float(cost) / widths[kind]
        operands = level.get("operands")
        if not isinstance(operands, list):
            raise DseError(f"{where}: operands = {operands!r}: expected a list")
        out["operands"] = [str(o) for o in operands]
        out["shared"] = level.get("served_dimensions") not in ([], None)
        return out

    def access_pj(self, buffer: str, size_bytes: int, word_bits: int, write: bool) -> float:
        level = self.levels[self.chosen[buffer]]
        return level["write_pj_per_bit" if write else "read_pj_per_bit"] * word_bits


@hookimpl
def dse_register_memory_models(register):  # type: ignore[no-untyped-def]
    register(MemoryModelPlugin(
        name="horowitz45", factory=Horowitz45,
        summary="45 nm SRAM by size and DRAM per bit (Horowitz, ISSCC 2014); the default",
    ))
    register(MemoryModelPlugin(
        name="table", factory=TableMemory,
        summary="your own SRAM (by size) and DRAM energies from a TOML file: file=PATH",
    ))
    register(MemoryModelPlugin(
        name="zigzag", factory=ZigZagMemory,
        summary="the memory levels of a ZigZag hardware YAML: file=PATH",
    ))
