"""The reference flow the toggle simulator is checked and timed against: the same netlist as
structural Verilog, Icarus Verilog (``iverilog``/``vvp``) applying the vectors, a VCD dump, and
the value changes of every net counted from the VCD."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dse_core.switching.gates import Netlist, netlist_to_verilog

PERIOD = 100  # time units per vector: far longer than any netlist's depth


def available() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def _testbench(netlist: Netlist, n_vectors: int) -> str:
    ports = netlist.inputs
    lines = ["`timescale 1ns/1ns", "module tb;"]
    lines += [f"    reg [{len(n) - 1}:0] {p};" for p, n in ports.items()]
    lines += [f"    wire [{len(n) - 1}:0] {p};" for p, n in netlist.outputs.items()]
    lines += [f"    reg [{len(n) - 1}:0] mem_{p} [0:{n_vectors - 1}];" for p, n in ports.items()]
    conns = ", ".join(f".{p}({p})" for p in (*ports, *netlist.outputs))
    lines += [f"    dut dut ({conns});", "    integer i;", "    initial begin"]
    lines += [f'        $readmemh("{p}.hex", mem_{p});' for p in ports]
    lines += ['        $dumpfile("dump.vcd");', "        $dumpvars(0, dut);",
              f"        for (i = 0; i < {n_vectors}; i = i + 1) begin"]
    lines += [f"            {p} = mem_{p}[i];" for p in ports]
    lines += [f"            #{PERIOD};", "        end", "        $finish;", "    end",
              "endmodule"]
    return "\n".join(lines) + "\n"


def _count_vcd(path: Path) -> dict[str, int]:
    """Value changes per net name after the first vector (time >= PERIOD)."""
    ids: dict[str, str] = {}
    counts: dict[str, int] = {}
    last: dict[str, str] = {}
    time = 0
    with path.open() as handle:
        for line in handle:
            if line.startswith("$var"):
                parts = line.split()  # $var wire 1 ! n62 $end
                if parts[2] == "1":
                    ids[parts[3]] = parts[4]
                continue
            if line.startswith("#"):
                time = int(line[1:])
                continue
            if line[:1] in "01xz" and len(line) > 1 and line[1:].strip() in ids:
                code, value = line[1:].strip(), line[0]
                if time >= PERIOD and last.get(code) != value:
                    counts[ids[code]] = counts.get(ids[code], 0) + 1
                last[code] = value
    return counts


def icarus_toggles(netlist: Netlist, vectors: Mapping[str, np.ndarray], *, unit_delay: bool
                   ) -> dict[int, int]:
    """Toggles per internal net id when ``vectors`` are applied in sequence."""
    n_vectors = len(next(iter(vectors.values())))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "dut.v").write_text(netlist_to_verilog(netlist, unit_delay=unit_delay))
        (work / "tb.v").write_text(_testbench(netlist, n_vectors))
        for port, nets in netlist.inputs.items():
            mask = (1 << len(nets)) - 1
            (work / f"{port}.hex").write_text(
                "\n".join(f"{int(v) & mask:x}" for v in vectors[port]) + "\n")
        subprocess.run(["iverilog", "-o", "sim", "tb.v", "dut.v"], cwd=work, check=True,
                       capture_output=True)
        subprocess.run(["vvp", "-n", "sim"], cwd=work, check=True, capture_output=True)
        counts = _count_vcd(work / "dump.vcd")
    return {int(name[1:]): n for name, n in counts.items() if name[:1] == "n" and
            name[1:].isdigit()}
