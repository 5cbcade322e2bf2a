"""The shipped PEs side by side (docs/pes.md): per-weight costs under uniform operands, their
rank correlations, the mean PE-cycle energy on random and on ReLU-like synthetic operands, and
LeNet-5's MAC switching energy on real operands (mnist5k, each layer's statistics and
weights, msb_hamming, 64x64 array).

    python -m benchmarks.compare_pes
"""

from __future__ import annotations

import time

import numpy as np

from dse_core import ArrayConfig, evaluate_network, get_registry, instantiate
from dse_core.switching.pipeline import characterize, switching_inputs

PES = ("array", "booth", "sign_magnitude")


def _uniform(char):  # type: ignore[no-untyped-def]
    return char.per_weight_energy(np.full((256, 256), 1 / 65536),
                                  np.full(char.msb_bits + 1, 1 / (char.msb_bits + 1)))


def _relu_like(char):  # type: ignore[no-untyped-def]
    """Mean pJ per PE-cycle on ReLU-like operands: activations zero half the time, else
    geometric with mean 16 codes, independent from cycle to cycle; weights Laplacian with
    scale 12 codes (trained int8 weights); psum groups uniform."""
    codes = np.arange(256)
    act = np.where(codes == 0, 0.0, (1 / 16) * (1 - 1 / 16) ** (codes - 1))
    act = 0.5 * act / act[1:].sum()
    act[0] = 0.5
    weights = np.exp(-np.abs(np.arange(-128, 128)) / 12.0)
    curve = char.per_weight_energy(np.outer(act, act),
                                   np.full(char.msb_bits + 1, 1 / (char.msb_bits + 1)))
    return float(weights @ curve / weights.sum())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(np.float64) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    registry = get_registry()
    array = ArrayConfig(64, 64)
    codes = np.arange(-128, 128)
    curves = {}
    for pe in PES:
        start = time.perf_counter()
        char = characterize(registry, array, options={"pe": pe})
        curves[pe] = _uniform(char)
        order = np.argsort(curves[pe])
        print(f"{pe}: {char.description['gates']} cells, depth {char.description['depth']}, "
              f"characterised in {time.perf_counter() - start:.1f} s; uniform operands mean "
              f"{curves[pe].mean():.4f} pJ, cheapest {codes[order[:10]].tolist()}, costliest "
              f"{codes[order[-6:]].tolist()}, negative/positive "
              f"{curves[pe][:128].mean() / curves[pe][129:].mean():.2f}; ReLU-like operands "
              f"mean {_relu_like(char):.4f} pJ", flush=True)
    for i, a in enumerate(PES):
        for b in PES[i + 1:]:
            print(f"spearman {a} ~ {b}: {_spearman(curves[a], curves[b]):.2f}")
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    model = instantiate(registry.get("energy_model", "msb_hamming"))
    layer_curves = {}
    for pe in PES:
        si = switching_inputs(registry, "lenet5", "mnist5k", array,
                              characterizer_options={"pe": pe})
        result = evaluate_network(si.layers, array, mapper, model, stats=si.stats.layers,
                                  characterization=si.characterization)
        layer_curves[pe] = {layer.name: model.per_weight_energy(
            layer, si.stats.layers[layer.name], si.characterization) for layer in si.layers}
        versus = {name: round(_spearman(layer_curves["array"][name], curve), 2)
                  for name, curve in layer_curves[pe].items()}
        mac = sum(e.mac_switching_pj for e in result.energy.layers)
        print(f"lenet5 on {pe}: MAC switching {mac:.0f} pJ; per-layer curve spearman vs "
              f"array {versus}", flush=True)


if __name__ == "__main__":
    main()
