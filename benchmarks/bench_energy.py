"""Speed of the switching-activity energy flow, measured side by side in one run.

    python -m benchmarks.bench_energy [--characterize] [--images 1024]

1. (with --characterize) characterising the default PE from scratch, in an empty cache.
   Target: at most 2 minutes on the 2-core machine.
2. Collecting statistics vs one inference pass over the same calibration batches (ResNet-20
   on mnist5k). Target: at most 3x.
3. Calibrating ResNet-20's layers for the layer-aware model from scratch (no target; paid
   once per statistics sample, then cached).
4. Evaluating ResNet-20's whole-network energy for one array configuration with statistics,
   characterisation and calibration cached (msb_hamming, 64 rows, varying columns).
   Target: < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dse_core import ArrayConfig, evaluate_network, get_registry, instantiate
from dse_core.switching.pipeline import characterize, switching_inputs
from dse_core.switching.stats import collect_stats
from dse_core.workloads.layers import layers_from_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--characterize", action="store_true")
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args()
    registry = get_registry()
    array = ArrayConfig(64, 64)

    if args.characterize:
        saved = os.environ.get("DSE_CACHE_DIR")
        with tempfile.TemporaryDirectory() as empty:
            os.environ["DSE_CACHE_DIR"] = empty
            start = time.perf_counter()
            characterize(registry, array)
            print(f"characterise default PE from scratch: {time.perf_counter() - start:.1f} s")
        if saved is None:
            del os.environ["DSE_CACHE_DIR"]
        else:
            os.environ["DSE_CACHE_DIR"] = saved

    inputs = switching_inputs(registry, "resnet20", "mnist5k", array, epochs=3)
    model = inputs.model
    from dse_core.workloads.datasets import load_dataset

    splits = load_dataset(registry, "mnist5k")
    images = torch.stack([splits.train[i][0] for i in range(args.images)])
    batches = list(images.split(64))
    layers = layers_from_module(model, splits.input_shape)
    collect_stats(model, layers, batches[:1], rows=64)  # warm-up
    inference, collection = [], []
    for _ in range(3):
        start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                model(batch)
        inference.append(time.perf_counter() - start)
        start = time.perf_counter()
        collect_stats(model, layers, batches, rows=64)
        collection.append(time.perf_counter() - start)
    inf, col = statistics.median(inference), statistics.median(collection)
    print(f"ResNet-20, {args.images} calibration images: inference {inf:.2f} s, statistics "
          f"{col:.2f} s -> {col / inf:.2f}x one inference pass")

    from dse_core.switching.calibration import layer_deltas

    stats = inputs.stats.layers
    char = inputs.characterization
    with tempfile.TemporaryDirectory() as empty:
        start = time.perf_counter()
        for layer in inputs.layers:
            layer_deltas(char, stats[layer.name], root=Path(empty))
        print(f"ResNet-20 layer calibration from scratch ({len(inputs.layers)} layers): "
              f"{time.perf_counter() - start:.1f} s")
    for layer in inputs.layers:  # the evaluations below find it cached
        layer_deltas(char, stats[layer.name])
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    energy = instantiate(registry.get("energy_model", "msb_hamming"))
    start = time.perf_counter()
    evaluate_network(inputs.layers, array, mapper, energy, stats=stats, characterization=char)
    first = time.perf_counter() - start
    samples = []
    for cols in [8, 16, 32, 64, 128] * 40:
        candidate = ArrayConfig(64, cols)
        start = time.perf_counter()
        evaluate_network(inputs.layers, candidate, mapper, energy, stats=stats,
                         characterization=char)
        samples.append(time.perf_counter() - start)
    print(f"ResNet-20 network energy, msb_hamming, 64 rows: first evaluation {first * 1e3:.1f} ms "
          f"(curves computed, calibration from disk), then median "
          f"{statistics.median(samples) * 1e3:.2f} ms per array configuration over {len(samples)}")


if __name__ == "__main__":
    main()
