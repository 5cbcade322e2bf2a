"""What an evaluation pays for a layer's weight-code histogram, side by side in one run:
counted (a bincount over the codes, what every evaluation paid before it was cached on the
statistics object) vs read from the cache. ResNet-50's 25.5 M weights as one layer's codes.

    python -m benchmarks.bench_histogram
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from dse_core.switching.stats import LayerStats


def main() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(-127, 128, size=(1, 4608, 5530), dtype=np.int8)  # 25.5 M codes
    counted, cached = [], []
    for _ in range(10):
        layer = LayerStats(layer="all", rows=64, psum_bits=22, msb_bits=4,
                           act_transitions=np.eye(256) / 256, psum_groups=np.ones(5) / 5,
                           weight_codes=codes,
                           activation_sample=np.zeros((1, 1, 1, 4608), dtype=np.uint8),
                           n_act_transitions=1, n_psum_transitions=1, psum_unchanged=0.0)
        start = time.perf_counter()
        first = layer.weight_histogram
        counted.append(time.perf_counter() - start)
        start = time.perf_counter()
        again = layer.weight_histogram
        cached.append(time.perf_counter() - start)
        assert again is first and int(first.sum()) == codes.size
    print(f"{codes.size / 1e6:.1f} M weight codes: counted {statistics.median(counted) * 1e3:.1f} "
          f"ms, cached {statistics.median(cached) * 1e6:.2f} µs per evaluation")


if __name__ == "__main__":
    main()
