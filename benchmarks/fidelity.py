"""Fidelity of the layer-aware (msb_hamming) and global (global_activation) energy models
against replaying the real streams through the PE netlist (exact), per layer, on a 64x64
weight-stationary array.

    python -m benchmarks.fidelity [--models lenet5:5,resnet20:3] [--dataset mnist5k]

For each layer: the MAC-switching energy of the same sampled folds by each model and by the
netlist, and the Spearman correlation between the model's per-weight energy ranking and the
netlist's: every code w is substituted into PEs of the layer and replayed with the layer's
real activation and partial-sum streams. Targets (energy-model issue): msb_hamming within 5 %
on every layer and 2 % on the network, Spearman >= 0.9.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from dse_core import ArrayConfig, get_registry, instantiate
from dse_core.switching.characterization import register_pj
from dse_core.switching.gates import simulate_toggles
from dse_core.switching.pipeline import switching_inputs


def exact_curve(exact, layer, mapping, stats, char, transitions: int, seed: int) -> np.ndarray:
    """Mean netlist energy of one busy PE-cycle of the layer for every code (256,)."""
    netlist = exact._netlist(char)
    tech = char.technology()
    net_pj = tech.net_pj(netlist)
    rng = np.random.default_rng(seed)
    tiles = list(mapping.tiles())
    rows, cols = mapping.array.rows, mapping.array.cols
    samples = stats.activation_sample                        # (groups, W, S, K)
    a0s, a1s, p0s, p1s = [], [], [], []
    for _ in range(transitions):
        tile = tiles[rng.integers(len(tiles))]
        r, c = rng.integers(tile.active_rows), rng.integers(tile.active_cols)
        k0, n = tile.row_fold * rows, tile.col_fold * cols + c
        win, step = rng.integers(samples.shape[1]), rng.integers(samples.shape[2] - 1)
        a = samples[tile.group, win, step:step + 2, k0:k0 + r + 1].astype(np.int64)
        w = stats.weight_codes[tile.group, k0:k0 + r, n].astype(np.int64)
        a0s.append(a[0, r])
        a1s.append(a[1, r])
        p0s.append(int(a[0, :r] @ w))
        p1s.append(int(a[1, :r] @ w))
    a0, a1, p0, p1 = (np.tile(np.asarray(v), 256) for v in (a0s, a1s, p0s, p1s))
    w = np.repeat(np.arange(-128, 128), transitions)
    counts = simulate_toggles(netlist, {"w": w, "a": a0, "p": p0}, {"w": w, "a": a1, "p": p1},
                              glitches=bool(char.description["glitches"]))
    per_vector = (net_pj @ counts.per_word).reshape(256, -1).sum(axis=1)
    regs = register_pj(char.psum_bits, tech, w, a0, a1, p0, p1).reshape(256, -1).sum(axis=1)
    return (per_vector + regs) / transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5:5,resnet20:3",
                        help="model:epochs, comma-separated")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--sample-folds", type=int, default=8)
    parser.add_argument("--curve-transitions", type=int, default=8192)
    args = parser.parse_args()
    registry = get_registry()
    array = ArrayConfig(args.rows, args.rows)
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    exact = instantiate(registry.get("energy_model", "exact"),
                        {"sample_folds": args.sample_folds})
    models = {n: instantiate(registry.get("energy_model", n))
              for n in ("msb_hamming", "global_activation")}
    for spec in args.models.split(","):
        name, _, epochs = spec.partition(":")
        start = time.perf_counter()
        inputs = switching_inputs(registry, name, args.dataset, array, epochs=int(epochs or 5))
        char = inputs.characterization
        print(f"\n{name} on {args.dataset}, {array}: val accuracy "
              f"{inputs.checkpoint['val_accuracy']:.1f} %")
        print(f"{'layer':<16}{'exact nJ':>10}{'msb err':>9}{'global err':>11}"
              f"{'rho msb':>9}{'rho global':>11}")
        totals = dict.fromkeys(("exact", *models), 0.0)
        worst = dict.fromkeys(models, 0.0)
        rhos: dict[str, list[float]] = {m: [] for m in models}
        for i, layer in enumerate(inputs.layers):
            stats = inputs.stats.layers[layer.name]
            mapping = mapper.map(layer, array)
            folds = exact.sampled_folds(layer, mapping, stats, char)
            # folds weighed by their size (a partial fold counts for its busy PEs)
            e = sum(f["exact_pj"] * f["scale"] for f in folds)
            totals["exact"] += e
            reference = exact_curve(exact, layer, mapping, stats, char,
                                    args.curve_transitions, seed=i)
            cells = []
            for m, model in models.items():
                curve = model.per_weight_energy(layer, stats, char)
                est = sum(curve[f["cycle_weights"] + 128].sum() * f["scale"] for f in folds)
                totals[m] += est
                worst[m] = max(worst[m], abs(est - e) / e)
                rhos[m].append(float(spearmanr(curve, reference).statistic))
                cells.append(100 * (est - e) / e)
            print(f"{layer.name:<16}{e / 1e3:>10.2f}{cells[0]:>+8.1f}%{cells[1]:>+10.1f}%"
                  f"{rhos['msb_hamming'][-1]:>9.3f}{rhos['global_activation'][-1]:>11.3f}")
        for m in models:
            net = 100 * (totals[m] - totals["exact"]) / totals["exact"]
            print(f"  {m:<18} network error {net:+.2f} %, worst layer {100 * worst[m]:.1f} %, "
                  f"Spearman min {min(rhos[m]):.3f} / median {np.median(rhos[m]):.3f}")
        print(f"  wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
