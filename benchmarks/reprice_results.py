"""The paper's comparison (docs/results.md) priced as system energy: every recorded run's MAC
energies and plans, plus the PE clock (gated, ``idle_and_skew``) and the memory (64 kB
buffers, ``horowitz45``, partial sums accumulated where they fit) of the same 64x64 array,
with the compressed weights stored as int8 (index storage off) or as codebook indices (on).

    python benchmarks/reprice_results.py docs/results/lenet5_mnist5k.jsonl lenet5 5
    python benchmarks/reprice_results.py docs/results/resnet20_mnist5k.jsonl resnet20 3

The MAC energies and the plans are the runs' own (nothing is retrained); the clock and the
memory do not depend on the weight values, only index storage on the plan's allowed-set
sizes. Layer names of older runs (LeNet-5's "0", "3", ...) are matched by order.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from dse_core import ArrayConfig, BufferConfig, get_registry, instantiate
from dse_core.mapping.system import MemorySetting, with_memory


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs")
    parser.add_argument("model")
    parser.add_argument("epochs", type=int)
    args = parser.parse_args()
    registry = get_registry()
    from dse_core.switching.pipeline import switching_inputs

    array = ArrayConfig(64, 64)
    inputs = switching_inputs(registry, args.model, "mnist5k", array, epochs=args.epochs)
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    model = instantiate(registry.get("energy_model", "msb_hamming"))
    memory_model = instantiate(registry.get("memory_model", "horowitz45"))
    layers = []
    for layer in inputs.layers:
        m = mapper.map(layer, array)
        e = model.layer_energy(layer, m, stats=inputs.stats.layers[layer.name],
                               characterization=inputs.characterization)
        layers.append((layer, m, e))
    modules = list(dict.fromkeys(layer.name.split("#")[0] for layer, _, _ in layers))
    clock = sum(e.pe_clock_pj for _, _, e in layers)

    def memory_pj(n_levels: dict[str, int] | None, index: bool) -> float:
        setting = MemorySetting(BufferConfig(), memory_model, index_storage=index)
        return sum(with_memory(e, layer, m, setting, n_levels=(n_levels or {}).get(
            layer.name.split("#")[0]))[0].memory_pj for layer, m, e in layers)

    base_memory = memory_pj(None, False)
    groups: dict[tuple[str, float], list[dict[str, float]]] = {}
    for line in Path(args.runs).read_text().splitlines():
        run = json.loads(line)
        names = list(run["n_levels"])
        plan = (run["n_levels"] if set(names) <= set(modules)
                else dict(zip(modules, run["n_levels"].values(), strict=True)))
        base = run["baseline_mac_pj"] + clock + base_memory
        comp = run["compressed_mac_pj"] + clock
        groups.setdefault((run["method"], run["budget"]), []).append({
            "mac": run["mac_reduction_pct"],
            "system": 100 * (1 - (comp + base_memory) / base),
            "indexed": 100 * (1 - (comp + memory_pj(plan, True)) / base),
            "drop": run["accuracy_drop"]})
    print(f"baseline system energy {(run['baseline_mac_pj'] + clock + base_memory) / 1e6:.2f} "
          f"uJ: MAC {100 * run['baseline_mac_pj'] / base:.1f} %, PE clock "
          f"{100 * clock / base:.1f} %, memory {100 * base_memory / base:.1f} %")
    print("| method | budget % | runs | MAC reduction % | system, int8 storage % | "
          "system, index storage % | accuracy drop |")
    print("|---|---|---|---|---|---|---|")
    for (method, budget), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
        print(f"| {method} | {budget:g} | {len(rows)} | {mean['mac']:.1f} | "
              f"{mean['system']:.2f} | {mean['indexed']:.1f} | {mean['drop']:.2f} |")


if __name__ == "__main__":
    main()
