"""The compression side of a search: one int8 QAT baseline and one QAT session per worker,
one energy guide per PE, and the study's accuracy cache.

A trial's scheduler knobs become a plan (codes per layer) through the energy shares of its
PE's guide; the plan's allowed sets are chosen by the selector under that guide; the accuracy
is that of the allowed sets, so it is cached by the sets themselves: two PEs (or two plans)
that choose the same codes share one fine-tune, and a PE whose guide picks other codes gets
its own (docs/search.md, "Accuracy").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dse_core.errors import DseError
from dse_core.host.registry import Registry, instantiate
from dse_core.types import ArrayConfig, CompressionPlan

__all__ = ["PlanTrainer", "allowed_key", "plan_key"]


def plan_key(plan: CompressionPlan) -> str:
    """A plan's sizes as a key (codes per layer)."""
    return hashlib.sha256(json.dumps(dict(sorted(plan.n_levels.items()))).encode()
                          ).hexdigest()[:32]


def allowed_key(allowed: Mapping[str, list[int]],
                deadzone: Mapping[str, float] | None = None) -> str:
    """The accuracy cache's key: every layer's allowed codes, and its projection's dead zone
    where it is not nearest rounding (so keys made before dead zones still match)."""
    canonical: dict[str, Any] = {name: sorted(int(c) for c in codes)
                                 for name, codes in sorted(allowed.items())}
    for name, zone in sorted((deadzone or {}).items()):
        if zone != 0.5:
            canonical[name] = {"codes": canonical[name], "deadzone": float(zone)}
    return "sets:" + hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:27]


def _histograms(codes: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {n: np.bincount(c.ravel().astype(np.int64) + 128, minlength=256).tolist()
            for n, c in codes.items()}


class PlanTrainer:
    """Plans and their accuracies for one worker. ``inputs(rows, pe)`` gives the layers,
    statistics and characterisation of an array height and a PE (the evaluator's, cached);
    ``mapping`` is the (mapper, dataflow) that guides the selection."""

    def __init__(self, registry: Registry, study: Any, db: Any, energy_model: Any,
                 mapping: tuple[Any, str], inputs: Callable[[int, str | None], Any]) -> None:
        from dse_core.compression.compress import Session, _split_data, resolve_device
        from dse_core.compression.selection import WeightSelector
        from dse_core.compression.study import CompressStudy
        from dse_core.workloads.datasets import load_dataset

        self.registry, self.study, self.db = registry, study, db
        self.energy_model, self.mapping, self._inputs = energy_model, mapping, inputs
        c = study.compression
        selector = instantiate(registry.get("selector", c.policy), c.policy_options)
        self.scheduler = instantiate(registry.get("scheduler", c.scheduler),
                                     c.scheduler_options)
        if not isinstance(selector, WeightSelector):
            raise DseError(f"selection policy {c.policy!r} does not implement WeightSelector")
        self._guides: dict[str | None, Any] = {}
        self._shares: dict[str | None, dict[str, float]] = {}
        splits = load_dataset(registry, study.workload.dataset or "",
                              study.workload.data_options())
        data = _split_data(splits, study.training.tune_images)
        compress_study = CompressStudy.model_validate({
            "name": study.name, "seed": study.seed,
            "workload": {"model": study.workload.model, "dataset": study.workload.dataset},
            # the session's budget is unused here (a search applies plans, it does not run
            # the schedule's accept/revert loop); any valid value will do
            "compression": {**c.model_dump(), "accuracy_budget_pct":
                            study.constraints.accuracy_budget_pct or 50.0},
            "training": study.training.model_dump(exclude={"fine_tune_epochs"})})
        device = resolve_device(study.training.device)
        net = self._baseline_network(data, device)
        self.session = Session(net, selector, self.guide(None), data, compress_study, device)
        self.baseline_state = net.state()
        self.base_codes = net.codes()
        self.baseline: dict[str, Any] = {"accuracy": self.session.accuracy(),
                         "val_accuracy": self.session.val_accuracy(),
                         "histograms": _histograms(self.base_codes)}
        self.session.baseline_accuracy = self.baseline["accuracy"]
        self.knobs = {k.name: k for k in self.scheduler.knobs(list(net.layers))}

    def guide(self, pe: str | None) -> Any:
        """The energy guide of a PE (``None``: the study's first), built on first use."""
        from dse_core.compression.compress import _EnergyView

        pe = self._pe(pe)
        if pe not in self._guides:
            rows = self.study.energy.selection_rows
            inputs = self._inputs(rows, pe)
            mapper, dataflow = self.mapping
            array = ArrayConfig(rows, 64, dataflow=dataflow)  # type: ignore[arg-type]
            maps = [mapper.map(layer, array) for layer in inputs.layers]
            self._guides[pe] = _EnergyView(self.energy_model, inputs.layers, maps,
                                           inputs.stats, inputs.char)
        return self._guides[pe]

    def shares(self, pe: str | None = None) -> dict[str, float]:
        """Each layer's share of the int8 baseline's MAC energy on a PE."""
        pe = self._pe(pe)
        if pe not in self._shares:
            energy = self.guide(pe).mac_pj(self.base_codes)
            total = sum(energy.values()) or 1.0
            self._shares[pe] = {n: e / total for n, e in energy.items()}
        return self._shares[pe]

    def _pe(self, pe: str | None) -> str | None:
        """``None`` means the study's first PE: one guide for both names."""
        return pe or (self.study.space.pe[0] if self.study.space.pe else None)

    def plan(self, knob_values: Mapping[str, Any], pe: str | None = None) -> CompressionPlan:
        plan: CompressionPlan = self.scheduler.plan(dict(knob_values), self.shares(pe))
        return plan

    def accuracy(self, plan: CompressionPlan, pe: str | None = None) -> dict[str, Any]:
        """The plan's allowed sets under the PE's guide, their accuracies and code
        histograms: from the study's cache, or by fine-tuning the baseline."""
        started = time.perf_counter()
        session = self.session
        session.restore(self.baseline_state)
        # the same plan gets the same batches (sensitivity, fine-tune) in every worker and
        # whatever ran before it, so its sets and accuracy do not depend on trial order
        session._calls = 0
        session._sensitivity_cache = {}
        session.guide = self.guide(pe)
        session.apply(dict(plan.n_levels))
        allowed = {n: [int(c) for c in m.allowed] for n, m in session.net.layers.items()}
        key = allowed_key(allowed, {n: m.deadzone for n, m in session.net.layers.items()})
        cached = self.db.cached_accuracy(self.study.name, key)
        if cached is not None:
            return {**cached, "cached": True}
        session.fine_tune(self.study.training.fine_tune_epochs)
        entry = {"accuracy": session.accuracy(), "val_accuracy": session.val_accuracy(),
                 "histograms": _histograms(session.net.codes()), "allowed": allowed,
                 "seconds": time.perf_counter() - started}
        self.db.store_accuracy(self.study.name, key, plan.n_levels, entry)
        return {**entry, "cached": False}

    def _baseline_network(self, data: dict[str, Any], device: str) -> Any:
        """The int8 QAT baseline, trained once per study and cached on disk for every worker
        (deterministic: same checkpoint, seed and settings give the same network)."""
        import torch

        from dse_core.cache import atomic_write, cache_dir, content_hash
        from dse_core.quantization.qat import quantize_network
        from dse_core.workloads.training import trained_model

        s = self.study
        model, meta, _ = trained_model(self.registry, s.workload.model or "",
                                       s.workload.dataset or "",
                                       epochs=s.training.float_epochs, seed=s.seed,
                                       checkpoint=s.workload.checkpoint, progress=False,
                                       weights=s.workload.weights,
                                       dataset_options=s.workload.data_options())
        x_fit = data["fit"][0]
        n_cal = s.training.calibration_batches * s.training.batch_size
        net = quantize_network(model.to(device).eval(), [
            b.to(device) for b in x_fit[:n_cal].split(s.training.batch_size)],
            x_fit[:1].to(device))
        digest = (hashlib.sha256(Path(meta["path"]).read_bytes()).hexdigest()[:16]
                  if meta.get("path") else f"random:{s.seed}")
        key = content_hash("qat-baseline/1", digest, s.model_dump_json(include={
            "seed", "training"}))
        path = cache_dir("qat") / f"{key}.pt"
        if path.exists():
            net.model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            return net
        from dse_core.compression.compress import train_epochs

        train_epochs(net.model, data["fit"], epochs=s.training.qat_epochs, lr=s.training.lr,
                     batch_size=s.training.batch_size, seed=s.seed * 100_003 + 1, device=device,
                     optimizer=s.training.optimizer)
        state = {k: v.detach().cpu() for k, v in net.model.state_dict().items()}
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        return net
