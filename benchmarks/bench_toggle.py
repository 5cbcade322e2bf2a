"""Seconds per simulated transition: our bit-parallel toggle simulator against the Icarus
Verilog + VCD flow, on the same netlist (the default PE's MAC) and the same vectors.

    python -m benchmarks.bench_toggle [--icarus-vectors 4000] [--vectors 262144]

Both count every net's toggles; the script first checks they agree exactly on the Icarus
vectors, then times each side. Target (energy-model issue): at least 100x fewer seconds per
transition than Icarus.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.icarus_flow import available, icarus_toggles
from dse_core.switching.gates import Netlist, simulate_toggles

NETLIST = (Path(__file__).resolve().parent.parent / "systolic_dse_plugins" / "rtl"
           / "pe_mac_p22.json.gz")


def vectors(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": np.repeat(rng.integers(-128, 128, -(-n // 64)), 64)[:n],
            "a": rng.integers(0, 256, n), "p": rng.integers(-(1 << 21), 1 << 21, n)}


def ours(netlist: Netlist, vec: dict[str, np.ndarray], glitches: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    counts = simulate_toggles(netlist, {k: v[:-1] for k, v in vec.items()},
                              {k: v[1:] for k, v in vec.items()}, glitches=glitches)
    return time.perf_counter() - start, counts.per_net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--icarus-vectors", type=int, default=4000)
    parser.add_argument("--vectors", type=int, default=1 << 18)
    args = parser.parse_args()
    if not available():
        raise SystemExit("iverilog/vvp not installed: apt-get install -y iverilog")
    netlist = Netlist.from_yosys_json(NETLIST)
    print(f"netlist: {netlist.name}, {netlist.n_gates} gates, depth {netlist.depth}")
    for glitches in (False, True):
        mode = "unit-delay" if glitches else "zero-delay"
        small = vectors(args.icarus_vectors, 1)
        start = time.perf_counter()
        reference = icarus_toggles(netlist, small, unit_delay=glitches)
        icarus_s = (time.perf_counter() - start) / (args.icarus_vectors - 1)
        _, counts = ours(netlist, small, glitches)
        same = all(int(counts[n]) == reference.get(n, 0) for n in range(2, netlist.n_nets))
        if not same:
            raise SystemExit(f"{mode}: toggle counts differ from Icarus")
        seconds, _ = ours(netlist, vectors(args.vectors, 2), glitches)
        ours_s = seconds / (args.vectors - 1)
        print(f"  {mode}: Icarus+VCD {icarus_s * 1e6:8.1f} us/transition "
              f"({args.icarus_vectors} vectors), ours {ours_s * 1e6:6.2f} us/transition "
              f"({args.vectors} vectors) -> {icarus_s / ours_s:,.0f}x; counts identical")


if __name__ == "__main__":
    main()
