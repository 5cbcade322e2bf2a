"""What one schedule step of a ResNet-20 compression costs, part by part, the earlier path
beside the current one in one process on one torch thread (docs/benchmarks.md, "One
schedule step of ResNet-20"). Each pair must give the same numbers; the script checks that.

* tuning-split accuracy (500 images, eval mode, integer-exact): float64 accumulators for
  K >= 518 in one 512-image batch, against float32 input-channel slices in 32-image chunks;
* a 0.1-epoch distilled fine-tune: a teacher forward pass per batch, against its logits
  computed once;
* one layer's `energy_accuracy` selection (3 codes, keep_signs): numpy's nearest-code rule
  per call, against the plain-Python one;
* the `saving` ranking's previews (each layer at its next size): every layer's weights read,
  recounted and put back per preview, against the plan's layer only.

    python -m benchmarks.bench_step_parts
"""

from __future__ import annotations

import copy
import time

import numpy as np


def _owned_numpy(lo, v, hi):  # type: ignore[no-untyped-def]
    """The selection's earlier rule: numpy on the 1-3 codes around ``v``."""
    near = np.array([c for c in (lo, v, hi) if c is not None])
    r = np.arange(0 if lo is None else lo, 256 if hi is None else hi + 1)
    key = np.abs(r[:, None] - near[None, :]) * 1024 + np.abs(near - 128)[None, :]
    owned = r[near[np.argmin(key, axis=1)] == v]
    others = np.array([c for c in (lo, hi) if c is not None])
    to = others[np.argmin(np.abs(owned[:, None] - others[None, :]) * 1024
                          + np.abs(others - 128)[None, :], axis=1)]
    return list(zip(owned.tolist(), to.tolist(), strict=True))


def _timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    import systolic_dse_plugins.selectors as selectors
    from dse_core.compression.compress import train_epochs
    from dse_core.compression.selection import SelectionRequest
    from dse_core.host.registry import get_registry
    from dse_core.quantization.qat import quantize_network
    from dse_core.workloads.layers import build_model
    from systolic_dse_plugins.datasets import mnist5k_arrays

    registry = get_registry()
    torch.manual_seed(0)
    model, _ = build_model(registry, "resnet20", input_shape=(1, 28, 28), num_classes=10)
    images, labels = mnist5k_arrays()[:2]
    x = torch.tensor(images[:1000], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = torch.tensor(labels[:1000], dtype=torch.long)
    net = quantize_network(model.eval(), [x[:256]], x[:1])
    net.model.eval()
    rows = []

    def logits(chunk: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net.model(x[i:i + chunk]) for i in range(0, 500, chunk)])

    slices = {n: m.exact_slices for n, m in net.layers.items()}
    for m in net.layers.values():
        m.exact_slices = []
    before, old = _timed(lambda: logits(512))
    for n, m in net.layers.items():
        m.exact_slices = slices[n]
    after, new = _timed(lambda: logits(32))
    assert torch.equal(old, new), "the two eval paths disagree"
    rows.append(("accuracy on 500 tuning images", before, after))

    teacher = copy.deepcopy(net.model).eval()
    start_state = copy.deepcopy(net.model.state_dict())
    fit = (x, y)
    cached = torch.cat([teacher(x[i:i + 32]).detach()
                        for i in range(0, len(x), 32)])
    weights = {}
    for name, kw in (("module", {"teacher": teacher}), ("cached", {"teacher_logits": cached})):
        def tune(kw=kw):  # type: ignore[no-untyped-def]
            net.model.load_state_dict(start_state)
            train_epochs(net.model, fit, epochs=0.45, lr=0.01, batch_size=64, seed=0,
                         device="cpu", distill_weight=0.5, **kw)
            return copy.deepcopy(net.model.state_dict())
        weights[name] = _timed(tune, repeat=2)
    assert all(torch.equal(weights["module"][1][k], weights["cached"][1][k])
               for k in start_state), "the cached teacher logits trained another network"
    rows.append(("distilled fine-tune, 450 images", weights["module"][0], weights["cached"][0]))

    rng = np.random.default_rng(0)
    energy = np.abs(rng.normal(1.0, 0.3, 256))
    codes = net.weights_in_code_units()
    selector = selectors.EnergyAccuracy(keep_signs=True)

    def select_all() -> list[tuple[int, ...]]:
        return [selector.select(SelectionRequest(n, 3, energy, w)).codes
                for n, w in codes.items()]

    fast = selectors._owned
    selectors._owned = _owned_numpy  # type: ignore[assignment]
    before, old_sets = _timed(select_all, repeat=1)
    selectors._owned = fast
    after, new_sets = _timed(select_all, repeat=1)
    assert old_sets == new_sets, "the two selection rules chose different sets"
    rows.append((f"selection of all {len(codes)} layers (3 codes)", before, after))

    from dse_core.compression.compress import Session, _EnergyView
    from dse_core.compression.study import load_study

    guide = _EnergyView.__new__(_EnergyView)  # the guide's curves; no characterisation
    guide.per_weight_pj = {n: energy * (1 + i) for i, n in enumerate(net.layers)}
    session = Session(net, selector, guide, {"fit": fit}, load_study(
        "studies/resnet20_backtracking.toml"), "cpu")

    def preview_earlier(plan):  # type: ignore[no-untyped-def]
        saved = {n: (m.allowed, m.deadzone) for n, m in net.layers.items()}
        session.apply(plan, fresh_sensitivity=False)
        net.weights_in_code_units()  # the earlier apply read every layer's weights
        total = sum(guide.mac_pj(net.codes()).values())  # and recounted every layer
        for n, (c, zone) in saved.items():
            net.set_allowed(n, c, zone)
        return total

    def rank(preview):  # type: ignore[no-untyped-def]
        return [preview({n: 8}) for n in net.layers]

    before, old_totals = _timed(lambda: rank(preview_earlier), repeat=1)
    after, new_totals = _timed(lambda: rank(session.preview_energy), repeat=1)
    assert old_totals == new_totals, "the two previews gave different energies"
    rows.append((f"`saving` ranking: {len(codes)} layer previews (8 codes)", before, after))

    print("| part | earlier | now | speed-up |")
    print("|---|---|---|---|")
    for what, t_old, t_new in rows:
        print(f"| {what} | {t_old:.2f} s | {t_new:.2f} s | {t_old / t_new:.1f}x |")


if __name__ == "__main__":
    main()
