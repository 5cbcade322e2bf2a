"""Where the energy goes: MAC switching / PE clock / SRAM / DRAM shares of the system total at
batch 1, 8 and 64 (docs/energy-model.md §9, "Composition").

    python benchmarks/energy_composition.py [--batches 1 8 64] [--array 64x64] [-o FILE.json]

- LeNet-5 and ResNet-20, trained on mnist5k (cached), layer-aware ``msb_hamming`` energy with
  the PE characterised at the array's height.
- torchvision ResNet-18 at 3x224x224 (no weights or data here: the real-networks issue), the
  ``constant`` model at ResNet-20's measured mean MAC energy and clock per PE-cycle, so its
  MAC and PE-clock terms are those of the same PE.
- ResNet-18 again on ZigZag's tpu_like (32x32, its per-access memory energies read by the
  ``zigzag`` memory model, 0.04 pJ per MAC), beside ZigZag 3.9.1's own breakdown of the same
  network on that hardware (``../shared/peers/zigzag/results/r18onnx_tpu_energy_1.json``).

Default memory: 64 kB per buffer, ``horowitz45``, clock gating ``idle_and_skew``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from dse_core import ArrayConfig, BufferConfig, evaluate_network, get_registry, instantiate
from dse_core.mapping.system import MemorySetting

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "zigzag"


def shares(net: Any) -> dict[str, float]:
    total = net.total_pj
    parts = {"mac": sum(e.mac_switching_pj for e in net.layers),
             "pe_clock": sum(e.pe_clock_pj for e in net.layers),
             "sram": sum(e.sram_pj for e in net.layers),
             "dram": sum(e.dram_pj for e in net.layers)}
    return {"total_uj": total / 1e6, **{k: 100 * v / total for k, v in parts.items()}}


def batched(layers: list[Any], batch: int) -> list[Any]:
    return [dataclasses.replace(layer, batch=batch) for layer in layers]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--array", default="64x64")
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args()
    registry = get_registry()
    array = ArrayConfig.parse(args.array)
    mapper = instantiate(registry.get("mapping", "ws_tile"))
    memory = MemorySetting(BufferConfig(), instantiate(registry.get("memory_model",
                                                                    "horowitz45")))
    from dse_core.switching.pipeline import switching_inputs

    rows: list[dict[str, Any]] = []
    model = instantiate(registry.get("energy_model", "msb_hamming"))
    mean_mac_pj = clock_pj = 0.0
    for name, epochs in (("lenet5", 5), ("resnet20", 3)):
        inputs = switching_inputs(registry, name, "mnist5k", array, epochs=epochs)
        for batch in args.batches:
            result = evaluate_network(batched(inputs.layers, batch), array, mapper, model,
                                      stats=inputs.stats.layers,
                                      characterization=inputs.characterization, memory=memory)
            rows.append({"network": name, "batch": batch, **shares(result.energy)})
            print(json.dumps(rows[-1]), flush=True)
            if name == "resnet20" and batch == 1:
                mean_mac_pj = result.energy.mac_switching_pj / result.energy.macs
                clock_pj = inputs.characterization.clock_pj
    from dse_core.workloads.layers import load_workload

    r18 = load_workload(registry, "torchvision:resnet18", input_shape=(3, 224, 224))
    constant = instantiate(registry.get("energy_model", "constant"),
                           {"mac_pj": mean_mac_pj, "pe_cycle_pj": clock_pj})
    for batch in args.batches:
        result = evaluate_network(batched(r18, batch), array, mapper, constant, memory=memory)
        rows.append({"network": "torchvision:resnet18 224", "batch": batch,
                     **shares(result.energy)})
        print(json.dumps(rows[-1]), flush=True)
    hardware = SHARED / "inputs" / "hardware" / "tpu_like.yaml"
    if hardware.exists():
        tpu = MemorySetting(BufferConfig(), instantiate(registry.get("memory_model", "zigzag"),
                                                        {"file": str(hardware)}))
        result = evaluate_network(r18, ArrayConfig(32, 32), mapper,
                                  instantiate(registry.get("energy_model", "constant"),
                                              {"mac_pj": 0.04}), memory=tpu)
        rows.append({"network": "torchvision:resnet18 224, tpu_like energies", "batch": 1,
                     **shares(result.energy)})
        print(json.dumps(rows[-1]), flush=True)
        zz = json.loads((SHARED / "results" / "r18onnx_tpu_energy_1.json").read_text())
        on_chip = dram = 0.0
        for layer in zz["layers"]:
            for levels in layer["mem_energy_breakdown_pJ"].values():
                on_chip += sum(levels[:-1])
                dram += levels[-1]
        total = zz["energy_pJ"]
        rows.append({"network": "ZigZag 3.9.1 resnet18 on tpu_like", "batch": 1,
                     "total_uj": total / 1e6, "mac": 100 * zz["mac_energy_pJ"] / total,
                     "pe_clock": 0.0, "sram": 100 * on_chip / total,
                     "dram": 100 * dram / total})
        print(json.dumps(rows[-1]), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))
    print("| network | batch | total (µJ) | MAC | PE clock | SRAM | DRAM |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['batch']} | {r['total_uj']:,.1f} | {r['mac']:.1f} % | "
              f"{r['pe_clock']:.1f} % | {r['sram']:.1f} % | {r['dram']:.1f} % |")


if __name__ == "__main__":
    main()
