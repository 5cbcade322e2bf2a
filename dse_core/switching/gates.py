"""Gate-level netlists and a bit-parallel toggle simulator.

A :class:`Netlist` is a combinational circuit of one- and two-input gates (and 2:1 muxes), as
Yosys writes it with ``write_json`` after ``synth; abc -g …``. :func:`simulate_toggles` applies
many input transitions at once — one per bit lane of a ``uint64`` word, so 64 transitions per
machine word — and counts how often each net switches:

- ``glitches=False`` (zero delay): a net toggles when its settled value changes;
- ``glitches=True`` (unit delay): every gate has a delay of one time unit, and every transient
  change is counted, as an event-driven simulator with ``#1`` on each gate would count it.

Net ids are Yosys's bit ids; ids 0 and 1 are the constants 0 and 1.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.errors import DseError

__all__ = ["Netlist", "ToggleCounts", "simulate_toggles", "pack_lanes", "netlist_to_verilog",
           "GATE_OPS"]

# Yosys internal cell type -> (our op name, input ports in order)
_YOSYS_CELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "$_BUF_": ("BUF", ("A",)), "$_NOT_": ("NOT", ("A",)),
    "$_AND_": ("AND", ("A", "B")), "$_NAND_": ("NAND", ("A", "B")),
    "$_OR_": ("OR", ("A", "B")), "$_NOR_": ("NOR", ("A", "B")),
    "$_XOR_": ("XOR", ("A", "B")), "$_XNOR_": ("XNOR", ("A", "B")),
    "$_ANDNOT_": ("ANDNOT", ("A", "B")), "$_ORNOT_": ("ORNOT", ("A", "B")),
    "$_MUX_": ("MUX", ("A", "B", "S")),
}
GATE_OPS = ("BUF", "NOT", "AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT", "MUX")
_ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _apply(op: str, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    if op == "BUF":
        return a.copy()
    if op == "NOT":
        return ~a
    if op == "AND":
        return a & b
    if op == "NAND":
        return ~(a & b)
    if op == "OR":
        return a | b
    if op == "NOR":
        return ~(a | b)
    if op == "XOR":
        return a ^ b
    if op == "XNOR":
        return ~(a ^ b)
    if op == "ANDNOT":
        return a & ~b
    if op == "ORNOT":
        return a | ~b
    return (a & ~s) | (b & s)  # MUX: S ? B : A


@dataclass(frozen=True, eq=False)
class Netlist:
    """A levelised combinational netlist. ``inputs``/``outputs`` map port names to net ids,
    least significant bit first; gates are stored in topological order, grouped by op."""

    name: str
    inputs: Mapping[str, tuple[int, ...]]
    outputs: Mapping[str, tuple[int, ...]]
    n_nets: int
    gate_op: tuple[str, ...]
    gate_in: np.ndarray   # (n_gates, 3) net ids; unused inputs point at net 0
    gate_out: np.ndarray  # (n_gates,)
    gate_level: np.ndarray  # (n_gates,) logic depth, 1 = fed by inputs only
    fanout: np.ndarray    # (n_nets,) gate inputs each net drives (+1 for output ports)

    @property
    def n_gates(self) -> int:
        return len(self.gate_op)

    @property
    def depth(self) -> int:
        return int(self.gate_level.max()) if self.n_gates else 0

    def net_names(self) -> dict[int, str]:
        """Readable names: port bits as ``port[i]``, internal nets as ``n<id>``."""
        names = {net: f"n{net}" for net in range(2, self.n_nets)}
        for ports in (self.outputs, self.inputs):
            for port, nets in ports.items():
                for i, net in enumerate(nets):
                    names[net] = f"{port}[{i}]"
        return names

    @classmethod
    def from_yosys_json(cls, source: str | Path | dict[str, Any], top: str | None = None
                        ) -> Netlist:
        """Load the module ``top`` (the only one if None) of a Yosys ``write_json`` file."""
        if isinstance(source, dict):
            doc, origin = source, "<json>"
        else:
            origin = str(source)
            try:
                raw = Path(source).read_bytes()
                if raw[:2] == b"\x1f\x8b":  # gzip: the shipped netlists are stored compressed
                    raw = gzip.decompress(raw)
                doc = json.loads(raw)
            except (OSError, EOFError, ValueError) as exc:
                raise DseError(f"{origin}: not a readable Yosys JSON netlist ({exc})") from exc
        modules = doc.get("modules", {})
        if top is None:
            if len(modules) != 1:
                raise DseError(f"{origin}: {len(modules)} modules; name the top module")
            top = next(iter(modules))
        if top not in modules:
            raise DseError(f"{origin}: module {top!r} not found; modules: {', '.join(modules)}")
        module = modules[top]

        def net(bit: int | str) -> int:
            return {"0": 0, "1": 1}[bit] if isinstance(bit, str) else int(bit)

        inputs: dict[str, tuple[int, ...]] = {}
        outputs: dict[str, tuple[int, ...]] = {}
        for port, info in module["ports"].items():
            target = inputs if info["direction"] == "input" else outputs
            target[port] = tuple(net(b) for b in info["bits"])
        ops, ins, outs = [], [], []
        for name, cell in module["cells"].items():
            if cell["type"] not in _YOSYS_CELLS:
                raise DseError(f"{origin}: cell {name!r} has type {cell['type']!r}: expected "
                               "a gate of " + ", ".join(_YOSYS_CELLS) +
                               " (synthesise with `abc -g` to simple gates)")
            op, ports = _YOSYS_CELLS[cell["type"]]
            conns = cell["connections"]
            ops.append(op)
            ins.append([net(conns[p][0]) for p in ports] + [0] * (3 - len(ports)))
            outs.append(net(conns["Y"][0]))
        all_nets = [b for nets in (*inputs.values(), *outputs.values()) for b in nets]
        n_nets = max([1, *all_nets, *outs, *(n for row in ins for n in row)]) + 1
        return cls._levelised(top, inputs, outputs, n_nets, ops, ins, outs, origin)

    @classmethod
    def _levelised(cls, name: str, inputs: dict[str, tuple[int, ...]],
                   outputs: dict[str, tuple[int, ...]], n_nets: int, ops: list[str],
                   ins: list[list[int]], outs: list[int], origin: str) -> Netlist:
        level = np.full(n_nets, -1, dtype=np.int64)
        level[[0, 1]] = 0
        for nets in inputs.values():
            level[list(nets)] = 0
        driver = {out: i for i, out in enumerate(outs)}
        n_inputs = [1 if op in ("BUF", "NOT") else 3 if op == "MUX" else 2 for op in ops]
        gate_level = np.zeros(len(ops), dtype=np.int64)
        # Iterative depth-first levelisation (netlists can be deeper than Python's recursion).
        for start in range(len(ops)):
            stack = [start]
            while stack:
                g = stack[-1]
                if gate_level[g]:
                    stack.pop()
                    continue
                pending = [driver[n] for n in ins[g][: n_inputs[g]]
                           if level[n] < 0 and n in driver]
                undriven = [n for n in ins[g][: n_inputs[g]] if level[n] < 0 and n not in driver]
                if undriven:
                    raise DseError(f"{origin}: net {undriven[0]} is read but never driven")
                if pending:
                    if len(stack) > len(ops):
                        raise DseError(f"{origin}: combinational loop through gate {g}")
                    stack.extend(pending)
                    continue
                gate_level[g] = 1 + max(level[n] for n in ins[g][: n_inputs[g]])
                level[outs[g]] = gate_level[g]
                stack.pop()
        order = np.argsort(gate_level, kind="stable")
        fanout = np.zeros(n_nets, dtype=np.int64)
        for g, row in enumerate(ins):
            for n in row[: n_inputs[g]]:
                fanout[n] += 1
        for nets in outputs.values():
            fanout[list(nets)] += 1
        return cls(
            name=name, inputs=inputs, outputs=outputs, n_nets=n_nets,
            gate_op=tuple(ops[i] for i in order),
            gate_in=np.asarray(ins, dtype=np.int64).reshape(-1, 3)[order],
            gate_out=np.asarray(outs, dtype=np.int64)[order],
            gate_level=gate_level[order], fanout=fanout,
        )


def pack_lanes(values: np.ndarray, bits: int) -> np.ndarray:
    """(V,) integers -> (bits, ceil(V/64)) uint64 words; lane j of word k is vector 64k + j."""
    values = np.asarray(values, dtype=np.int64)
    n_words = -(-len(values) // 64)
    padded = np.zeros(n_words * 64, dtype=np.int64)
    padded[: len(values)] = values
    bit_planes = ((padded[None, :] >> np.arange(bits)[:, None]) & 1).astype(np.uint8)
    return np.packbits(bit_planes, axis=1, bitorder="little").view(np.uint64)


@dataclass(frozen=True)
class ToggleCounts:
    """``per_word[n, k]``: toggles of net n summed over the 64 lanes of word k."""

    per_word: np.ndarray

    @property
    def per_net(self) -> np.ndarray:
        return self.per_word.sum(axis=1)

    def weighted(self, net_weight: np.ndarray) -> np.ndarray:
        """Σ_n weight[n] · toggles[n, k] for every word k (e.g. energy per word)."""
        return net_weight @ self.per_word


_EVALUATORS: dict[int, tuple[Netlist, _Evaluator]] = {}


def _evaluator(netlist: Netlist) -> _Evaluator:
    """The (cached) evaluator of a netlist: grouping its gates costs more than a small run."""
    cached = _EVALUATORS.get(id(netlist))
    if cached is None or cached[0] is not netlist:
        cached = (netlist, _Evaluator(netlist))
        _EVALUATORS[id(netlist)] = cached
    return cached[1]


class _Evaluator:
    """Vectorised gate evaluation: gates grouped by (level, op) for zero delay, by op for
    unit delay."""

    def __init__(self, netlist: Netlist) -> None:
        self.netlist = netlist
        ops = np.asarray(netlist.gate_op)
        self.by_op = [(op, np.flatnonzero(ops == op)) for op in GATE_OPS if (ops == op).any()]
        self.by_level = []
        for lvl in range(1, netlist.depth + 1):
            in_level = netlist.gate_level == lvl
            self.by_level.append([(op, np.flatnonzero(in_level & (ops == op)))
                                  for op in GATE_OPS if (in_level & (ops == op)).any()])

    def _gates(self, values: np.ndarray, groups: list[tuple[str, np.ndarray]],
               source: np.ndarray) -> None:
        nl = self.netlist
        for op, idx in groups:
            ins = nl.gate_in[idx]
            values[nl.gate_out[idx]] = _apply(op, source[ins[:, 0]], source[ins[:, 1]],
                                              source[ins[:, 2]])

    def settle(self, values: np.ndarray) -> None:
        for groups in self.by_level:
            self._gates(values, groups, values)

    def step(self, values: np.ndarray) -> np.ndarray:
        new = values.copy()
        self._gates(new, self.by_op, values)
        return new


def _initial(netlist: Netlist, ports: Mapping[str, np.ndarray], n_words: int) -> np.ndarray:
    values = np.zeros((netlist.n_nets, n_words), dtype=np.uint64)
    values[1] = _ALL_ONES
    for port, nets in netlist.inputs.items():
        if port not in ports:
            raise DseError(f"input port {port!r} of {netlist.name!r} has no values")
        values[list(nets)] = pack_lanes(ports[port], len(nets))
    return values


def simulate_toggles(
    netlist: Netlist,
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
    *,
    glitches: bool = True,
    chunk_words: int = 256,
) -> ToggleCounts:
    """Toggle counts of every net when the inputs switch from ``before`` to ``after``.

    ``before[port]`` and ``after[port]`` are integer arrays of the same length V (one
    transition per entry; signed values are taken modulo 2**width). The circuit starts settled
    on ``before``. Lanes past V (padding to a multiple of 64) do not switch. Words are
    simulated ``chunk_words`` at a time so the working set stays in cache.
    """
    lengths = {len(np.asarray(v)) for v in (*before.values(), *after.values())}
    if len(lengths) != 1:
        raise DseError(f"every port needs the same number of vectors, got {sorted(lengths)}")
    n_words = -(-lengths.pop() // 64)
    evaluator = _evaluator(netlist)
    old_all = _initial(netlist, before, n_words)
    new_all = _initial(netlist, after, n_words)
    counts = np.zeros((netlist.n_nets, n_words), dtype=np.int64)
    for lo in range(0, n_words, chunk_words):
        hi = min(n_words, lo + chunk_words)
        counts[:, lo:hi] = _toggles(evaluator, old_all[:, lo:hi].copy(),
                                    new_all[:, lo:hi].copy(), glitches)
    return ToggleCounts(counts)


def _toggles(evaluator: _Evaluator, old: np.ndarray, new: np.ndarray, glitches: bool
             ) -> np.ndarray:
    netlist = evaluator.netlist
    evaluator.settle(old)
    input_nets = [n for nets in netlist.inputs.values() for n in nets]
    # Gate outputs start at their settled `before` values; inputs switch at time 0.
    gate_outs = netlist.gate_out
    new[gate_outs] = old[gate_outs]
    counts = np.zeros(old.shape, dtype=np.int64)
    counts[input_nets] += np.bitwise_count(old[input_nets] ^ new[input_nets])
    if not glitches:
        evaluator.settle(new)
        counts[gate_outs] += np.bitwise_count(old[gate_outs] ^ new[gate_outs])
        return counts
    current = new
    for _ in range(netlist.depth + 1):
        stepped = evaluator.step(current)
        changed = stepped[gate_outs] ^ current[gate_outs]
        if not changed.any():
            break
        counts[gate_outs] += np.bitwise_count(changed)
        current = stepped
    return counts


def netlist_to_verilog(netlist: Netlist, *, unit_delay: bool, module: str = "dut") -> str:
    """The netlist as structural Verilog, each gate a continuous assignment (``#1`` on every
    gate with ``unit_delay``) — the same circuit, for an event-driven simulator."""
    names = {net: f"n{net}" for net in range(netlist.n_nets)}
    delay = "#1 " if unit_delay else ""
    ports = [f"input wire [{len(n) - 1}:0] {p}" for p, n in netlist.inputs.items()]
    ports += [f"output wire [{len(n) - 1}:0] {p}" for p, n in netlist.outputs.items()]
    lines = [f"module {module} (", ",\n".join(f"    {p}" for p in ports), ");"]
    lines += [f"    wire n{net};" for net in range(2, netlist.n_nets)]
    for port, nets in netlist.inputs.items():
        lines += [f"    assign n{net} = {port}[{i}];" for i, net in enumerate(nets)]
    symbols = {"AND": "{a} & {b}", "NAND": "~({a} & {b})", "OR": "{a} | {b}",
               "NOR": "~({a} | {b})", "XOR": "{a} ^ {b}", "XNOR": "~({a} ^ {b})",
               "ANDNOT": "{a} & ~{b}", "ORNOT": "{a} | ~{b}", "NOT": "~{a}", "BUF": "{a}",
               "MUX": "{s} ? {b} : {a}"}

    def ref(net: int) -> str:
        return "1'b0" if net == 0 else "1'b1" if net == 1 else names[net]

    for op, row, out in zip(netlist.gate_op, netlist.gate_in, netlist.gate_out, strict=True):
        expr = symbols[op].format(a=ref(row[0]), b=ref(row[1]), s=ref(row[2]))
        lines.append(f"    assign {delay}{names[int(out)]} = {expr};")
    for port, nets in netlist.outputs.items():
        lines += [f"    assign {port}[{i}] = {ref(net)};" for i, net in enumerate(nets)]
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


# Simple two-input gates: every cell is one the simulator knows, and fanout-based capacitance
# stays meaningful. The multiplier is Yosys's default `$mul` mapping (no Booth recoding).
YOSYS_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT"


def synthesize_with_yosys(
    verilog: str | Path, top: str, parameters: Mapping[str, int] | None = None,
    *, json_out: str | Path | None = None,
) -> Netlist:
    """Synthesise module ``top`` of a Verilog file to simple gates with Yosys and load it.

    Raises :class:`DseError` naming Yosys's complaint when it rejects the Verilog, or when
    Yosys is not installed."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("yosys") is None:
        raise DseError(f"{verilog}: synthesising your own PE RTL needs Yosys, which is not "
                       "installed (apt-get install yosys); the default PE needs no Yosys")
    verilog = Path(verilog)
    if not verilog.is_file():
        raise DseError(f"{verilog}: no such Verilog file")
    chparams = "".join(f"chparam -set {k} {int(v)} {top}; " for k, v in (parameters or {}).items())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(json_out) if json_out else Path(tmp) / "netlist.json"
        script = (f"read_verilog {verilog}; {chparams}hierarchy -check -top {top}; "
                  f"synth -top {top} -flatten; abc -g {YOSYS_GATES}; opt_clean; "
                  f"write_json {out}")
        result = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True)
        if result.returncode != 0:
            lines = [ln for ln in (result.stderr + result.stdout).splitlines()
                     if "ERROR" in ln] or [result.stderr.strip() or "no message"]
            raise DseError(f"{verilog}: yosys rejected {top!r}: {lines[0].strip()}")
        return Netlist.from_yosys_json(out, top)


def lane_energy(
    netlist: Netlist, before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
    net_weight: np.ndarray, *, chunk_words: int = 128,
) -> np.ndarray:
    """Zero-delay switching energy of every single transition: Σ_n net_weight[n] · toggled_n.

    Unlike :func:`simulate_toggles`, which sums lanes per word, this resolves each lane, so
    each transition gets its own number (one settled toggle per net at most, so one bit-plane
    per net suffices)."""
    lengths = {len(np.asarray(v)) for v in (*before.values(), *after.values())}
    if len(lengths) != 1:
        raise DseError(f"every port needs the same number of vectors, got {sorted(lengths)}")
    n_vectors = lengths.pop()
    n_words = -(-n_vectors // 64)
    evaluator = _evaluator(netlist)
    old_all = _initial(netlist, before, n_words)
    new_all = _initial(netlist, after, n_words)
    weight = np.asarray(net_weight, dtype=np.float32)
    out = np.empty(n_words * 64, dtype=np.float32)
    for lo in range(0, n_words, chunk_words):
        hi = min(n_words, lo + chunk_words)
        old, new = old_all[:, lo:hi].copy(), new_all[:, lo:hi].copy()
        evaluator.settle(old)
        evaluator.settle(new)
        bits = np.unpackbits((old ^ new).view(np.uint8), axis=1, bitorder="little")
        out[lo * 64: hi * 64] = weight @ bits.astype(np.float32)
    return out[:n_vectors]
