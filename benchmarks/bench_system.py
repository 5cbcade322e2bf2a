"""One system-energy design point of SCALE-Sim's ResNet-18 topology (ws 32x32, 64 kB buffers):
cycles, SRAM/DRAM access counts and the full energy (MAC, PE clock, SRAM, DRAM), against
SCALE-Sim 3.0.0 producing the same counts.

    python benchmarks/bench_system.py [--repeat 200] [--scalesim-python PATH]

The counts are checked against SCALE-Sim's DETAILED_ACCESS_REPORT.csv layer by layer before
anything is timed. Three timings: **cold** (no cached counts: the DRAM replay runs), **disk**
(counts from the on-disk cache, a new process's first evaluation) and **warm** (in memory, what
a search pays per trial once an array/buffer configuration has been seen). SCALE-Sim's time is
its recorded 3-run median on this machine kind (``tests/data/scalesim/timing.json``: over 5
minutes, 5 GB); ``--scalesim-python`` also runs it side by side on the one-layer topology.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "scalesim"


def design_point(layers, array, mapper, model, memory):  # type: ignore[no-untyped-def]
    from dse_core import evaluate_network

    result = evaluate_network(layers, array, mapper, model, memory=memory)
    return result.cycles, result.traffic, result.energy.total_pj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--scalesim-python")
    args = parser.parse_args()
    os.environ["DSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-system-")
    from dse_core import build_registry, instantiate
    from dse_core.mapping import traffic as traffic_module
    from dse_core.mapping.system import MemorySetting
    from dse_core.mapping.traffic import compare_access
    from dse_core.workloads.scalesim import (
        read_access_report,
        read_buffers,
        read_config,
        read_topology,
    )

    registry = build_registry()
    config = DATA / "resnet18_ws_32x32.cfg"
    array, _ = read_config(config)
    buffers = read_buffers(config)
    layers = read_topology(DATA / "Resnet18.csv")
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    model = instantiate(registry.get("energy_model", "constant"), {"pe_cycle_pj": 0.002})
    # SCALE-Sim's counts: partial sums all go to DRAM
    memory = MemorySetting(buffers, instantiate(registry.get("memory_model", "horowitz45")),
                           psums="scalesim")

    start = time.perf_counter()
    cycles, traffic, total = design_point(layers, array, mapper, model, memory)
    cold = time.perf_counter() - start
    rows = compare_access(layers, list(traffic),
                          read_access_report(DATA / "results" /
                                             "resnet18_ws_32x32.DETAILED_ACCESS_REPORT.csv"))
    assert all(r["identical"] for r in rows), "counts differ from SCALE-Sim's report"
    disk = []
    for _ in range(5):
        traffic_module._counts.cache_clear()
        start = time.perf_counter()
        design_point(layers, array, mapper, model, memory)
        disk.append(time.perf_counter() - start)
    warm = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        design_point(layers, array, mapper, model, memory)
        warm.append(time.perf_counter() - start)
    timing = json.loads((DATA / "timing.json").read_text())
    scalesim_s = timing["clean_median_s"] if "clean_median_s" in timing else None
    print(f"ResNet-18 ws 32x32, 21 layers: {cycles:,} cycles, system energy {total / 1e6:.1f} "
          f"uJ; all six access counts identical to SCALE-Sim's on {len(rows)}/{len(rows)} "
          "layers")
    print(f"cold (DRAM replay):   {cold * 1e3:9.1f} ms")
    print(f"disk-cached counts:   {statistics.median(disk) * 1e3:9.2f} ms (median of 5)")
    print(f"warm (in memory):     {statistics.median(warm) * 1e3:9.3f} ms (median of "
          f"{args.repeat})")
    if scalesim_s:
        print(f"SCALE-Sim 3.0.0 (recorded median): {scalesim_s:.0f} s: cold is "
              f"{scalesim_s / cold:,.0f}x faster, warm "
              f"{scalesim_s / statistics.median(warm):,.0f}x")
    if args.scalesim_python:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchmarks.bench_mapping import run_scalesim

        seconds, _ = run_scalesim(args.scalesim_python, DATA / "conv3x3_64x64_56.csv",
                                  DATA / "conv3x3_ws_32x32.cfg")
        one = read_topology(DATA / "conv3x3_64x64_56.csv")
        traffic_module._counts.cache_clear()
        os.environ["DSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-system-")
        start = time.perf_counter()
        design_point(one, array, mapper, model, memory)
        ours = time.perf_counter() - start
        print(f"one 3x3 conv side by side: SCALE-Sim {seconds:.1f} s, ours cold "
              f"{ours * 1e3:.0f} ms ({seconds / ours:,.0f}x)")


if __name__ == "__main__":
    main()
