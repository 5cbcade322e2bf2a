"""QAT step time with allowed-set projection vs a plain int8 fake-quant step (target <= 1.15x).

Same network, same batches, interleaved: a step with every layer at its full int8 code set
(no projection) and a step with every layer projected onto an 8-code allowed set through the
256-entry table. Prints the median step times and their ratio.

    python benchmarks/bench_qat.py [--model lenet5|resnet20] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from dse_core.host.registry import get_registry
    from dse_core.quantization.qat import FULL_CODES, quantize_network
    from dse_core.workloads.layers import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = build_model(get_registry(), args.model, input_shape=(1, 28, 28), num_classes=10)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    net = quantize_network(model.eval(), [x], x[:1])
    optimiser = torch.optim.Adam(net.model.parameters(), lr=1e-4)
    net.model.train()

    def step() -> float:
        start = time.perf_counter()
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net.model(x), y).backward()
        optimiser.step()
        return time.perf_counter() - start

    eight = (-96, -48, -16, 0, 16, 48, 96, 127)
    times: dict[str, list[float]] = {"plain": [], "projected": []}
    for i in range(args.steps * 2 + 4):
        mode = "plain" if i % 2 == 0 else "projected"
        for name in net.layers:
            net.set_allowed(name, FULL_CODES if mode == "plain" else eight)
        t = step()
        if i >= 4:  # warm-up
            times[mode].append(t)
    plain, projected = (statistics.median(times[m]) for m in ("plain", "projected"))
    print(f"{args.model}: batch {args.batch}, {args.threads} thread(s), {args.steps} steps each")
    print(f"plain int8 fake-quant step: {plain * 1e3:.2f} ms (median)")
    print(f"with allowed-set projection: {projected * 1e3:.2f} ms (median)")
    print(f"ratio: {projected / plain:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
