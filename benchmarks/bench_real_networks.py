"""Real networks at real sizes, side by side in one run (docs/benchmarks.md):

1. statistics collection vs one inference pass over the same images, ResNet-20 (32x32) and
   torchvision ResNet-50 (224x224, random weights given as a --weights file: nothing trained).
   Target: statistics <= 2x one inference pass on the ImageNet-size layers.
2. a cached design point (msb_hamming with memory, statistics, characterisation, calibration
   and access counts cached), median over repeated arrays, ResNet-20 beside ResNet-50.
   Target: ResNet-50 <= 5 ms.

    python -m benchmarks.bench_real_networks [--images 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dse_core import ArrayConfig, evaluate_network, get_registry, instantiate
from dse_core.mapping.system import MemorySetting
from dse_core.switching.pipeline import switching_inputs
from dse_core.switching.stats import collect_stats
from dse_core.types import BufferConfig
from dse_core.workloads.layers import build_model


def _one(registry, model_ref: str, dataset: str, options: dict, images: int,  # type: ignore[no-untyped-def]
         weights: str | None) -> None:
    array = ArrayConfig(64, 64)
    start = time.perf_counter()
    inputs = switching_inputs(registry, model_ref, dataset, array, weights=weights,
                              dataset_options=options, calibration_images=images, epochs=3)
    setup_s = time.perf_counter() - start
    from dse_core.workloads.datasets import load_dataset

    splits = load_dataset(registry, dataset, options)
    batch = torch.stack([splits.train[i][0] for i in range(images)])
    batches = list(batch.split(16))
    model = inputs.model
    with torch.no_grad():
        model(batches[0])  # warm-up
        start = time.perf_counter()
        for b in batches:
            model(b)
        inference_s = time.perf_counter() - start
    start = time.perf_counter()
    collect_stats(model, inputs.layers, batches, rows=64)
    stats_s = time.perf_counter() - start
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    energy = instantiate(registry.get("energy_model", "msb_hamming"))
    memory = MemorySetting(BufferConfig(64, 64, 64),
                           instantiate(registry.get("memory_model", "horowitz45")))
    arrays = [ArrayConfig(64, c) for c in (32, 64, 128)]
    for a in arrays:  # first evaluations: curves, calibration from disk, access counts
        evaluate_network(inputs.layers, a, mapper, energy, stats=inputs.stats.layers,
                         characterization=inputs.characterization, memory=memory)
    samples = []
    for a in arrays * 20:
        start = time.perf_counter()
        evaluate_network(inputs.layers, a, mapper, energy, stats=inputs.stats.layers,
                         characterization=inputs.characterization, memory=memory)
        samples.append(time.perf_counter() - start)
    print(f"{model_ref} on {splits.input_shape}, {len(inputs.layers)} layers: first run "
          f"(statistics, calibration, counts) {setup_s:.1f} s; statistics {stats_s:.2f} s vs "
          f"inference {inference_s:.2f} s over {images} images = {stats_s / inference_s:.2f}x "
          f"(target <= 2x); cached design point {statistics.median(samples) * 1e3:.2f} ms",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    registry = get_registry()
    size = max(256, 2 * args.images)  # a fake split holds 80 % of them for calibration
    _one(registry, "resnet20", "fake", {"shape": "3x32x32", "size": size}, args.images, None)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / "resnet50.pt"
        torch.save(build_model(registry, "torchvision:resnet50", num_classes=1000)[0]
                   .state_dict(), weights)
        _one(registry, "torchvision:resnet50", "fake", {"shape": "3x224x224", "size": size},
             args.images, str(weights))


if __name__ == "__main__":
    main()
