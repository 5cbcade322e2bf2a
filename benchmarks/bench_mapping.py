"""Time per design point of the weight-stationary mapping of SCALE-Sim's ResNet-18 topology on a
32x32 array, against SCALE-Sim 3.0.0.

    python benchmarks/bench_mapping.py [--repeat 2000] [--scalesim-python PATH]

A design point = map every layer for one array configuration (the topology is read once, as a
search does). Cycles are checked against SCALE-Sim's report layer by layer before anything is
timed. The ResNet-18 ratio is against SCALE-Sim's recorded 3-run median on this machine kind
(``tests/data/scalesim/timing.json``; a run takes over 5 minutes and 5 GB). With
``--scalesim-python PATH`` (an interpreter with ``pip install scalesim "numpy<2.4"``, which
cannot share our numpy) SCALE-Sim is also run side by side on a single-layer topology.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from dse_core import build_registry, instantiate, map_network
from dse_core.workloads.scalesim import read_compute_report, read_config, read_topology

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "scalesim"


def time_design_points(layers, array, mapper, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        mappings = map_network(layers, array, mapper)
        sum(m.cycles for m in mappings)
        samples.append(time.perf_counter() - start)
    return samples


_SCALESIM_SNIPPET = """
import sys, tempfile, time
from scalesim.scale_sim import scalesim
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    sim = scalesim(save_disk_space=True, verbose=False, config=sys.argv[1],
                   topology=sys.argv[2], layout=sys.argv[3])
    sim.run_scale(top_path=out)
    elapsed = time.perf_counter() - start
    import glob
    report = glob.glob(out + "/*/COMPUTE_REPORT.csv")[0]
    cycles = [int(row.split(",")[2]) for row in open(report).read().splitlines()[1:] if row]
    print(elapsed, sum(cycles))
"""


def run_scalesim(python: str, topology: Path, config: Path) -> tuple[float, int]:
    """Seconds SCALE-Sim takes for one topology, timed inside its own interpreter (it needs
    numpy<2.4, so it usually lives in a separate virtual environment), and the sum of the
    "Total Cycles" it reported."""
    layout = DATA / "layout_one_layer.csv"
    result = subprocess.run(
        [python, "-c", _SCALESIM_SNIPPET, str(config), str(topology), str(layout)],
        capture_output=True, text=True, check=True,
    )
    seconds, cycles = result.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(cycles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--scalesim-python", metavar="PYTHON",
                        help="interpreter with scalesim installed, to run it side by side")
    args = parser.parse_args()

    registry = build_registry()
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    layers = read_topology(DATA / "Resnet18.csv")
    array, _ = read_config(DATA / "resnet18_ws_32x32.cfg")
    report = read_compute_report(DATA / "results" / "resnet18_ws_32x32.COMPUTE_REPORT.csv")
    mappings = map_network(layers, array, mapper)
    mismatched = [m.layer for m, r in zip(mappings, report, strict=True)
                  if m.cycles != r.stall_free_cycles]
    if mismatched:
        raise SystemExit(f"cycles differ from SCALE-Sim on {mismatched}")

    samples = time_design_points(layers, array, mapper, args.repeat)
    median_s = statistics.median(samples)
    recorded = json.loads((DATA / "timing.json").read_text())
    scalesim_s = recorded["clean_median_s"]
    print(f"ResNet-18 (SCALE-Sim topology, {len(layers)} layers), WS {array.rows}x{array.cols}")
    print(f"  cycles: {sum(m.cycles for m in mappings):,} (SCALE-Sim report + 1 on every layer)")
    print(f"  ours: median {median_s * 1e3:.4f} ms per design point over {args.repeat} points "
          f"(p10 {statistics.quantiles(samples, n=10)[0] * 1e3:.4f} ms)")
    print(f"  SCALE-Sim 3.0.0 (recorded median, same machine kind): {scalesim_s:.0f} s "
          f"-> {scalesim_s / median_s:,.0f}x faster")

    if not args.scalesim_python:
        print("  side-by-side SCALE-Sim run skipped: pass --scalesim-python "
              "(a venv with: pip install scalesim 'numpy<2.4')")
        return
    single = DATA / "conv3x3_64x64_56.csv"
    for cfg in ("conv3x3_ws_128x128.cfg", "conv3x3_ws_32x32.cfg"):
        config = DATA / cfg
        measured, their_cycles = run_scalesim(args.scalesim_python, single, config)
        one_array = read_config(config)[0]
        one_layer = read_topology(single)
        our_cycles = map_network(one_layer, one_array, mapper)[0].cycles
        if our_cycles != their_cycles + 1:
            raise SystemExit(f"SCALE-Sim reported {their_cycles} cycles, we count {our_cycles}")
        ours = statistics.median(time_design_points(one_layer, one_array, mapper, args.repeat))
        print(f"  side by side, one 3x3 conv 64->64 on 56x56, WS {one_array.rows}x"
              f"{one_array.cols}: {our_cycles:,} cycles (SCALE-Sim {their_cycles:,} + 1); "
              f"SCALE-Sim {measured:.2f} s, ours {ours * 1e6:.1f} us -> {measured / ours:,.0f}x")


if __name__ == "__main__":
    main()
