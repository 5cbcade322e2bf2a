"""``dse compress``: int8 QAT baseline, then the configured schedule and selection policy under
a global accuracy budget, then a final fine-tune; energies before and after.

Accuracy decisions (accept / revert in the schedule, the budget) use a *tuning* split held out
of the training data, so the validation split the report quotes never steers the search.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dse_core.compression.selection import (
    FULL_LEVELS,
    LayerScheduler,
    SelectionRequest,
    WeightSelector,
)
from dse_core.compression.study import CompressStudy
from dse_core.compression.training import _batches, train_epochs
from dse_core.errors import DseError
from dse_core.host.registry import Registry, instantiate
from dse_core.quantization.qat import FULL_CODES, QuantNetwork, quantize_network
from dse_core.types import AllowedSet, ArrayConfig, CompressionPlan, LayerMapping, LayerSpec

__all__ = ["LayerCompression", "CompressionResult", "Session", "run_compression",
           "module_name", "resolve_device", "train_epochs"]

log = logging.getLogger(__name__)


def module_name(layer: str) -> str:
    """The module behind a layer (``conv#2`` is the second call of ``conv``)."""
    return layer.split("#")[0]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DseError(f"training.device = {device!r}: torch sees no CUDA device here")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise DseError(f"training.device = {device!r}: expected auto, cpu or cuda[:N]")
    return device


@dataclass(frozen=True)
class LayerCompression:
    """One compressible layer (module) in the report; energies are MAC switching, in pJ per
    inference, under the report's energy model."""

    layer: str
    weights: int
    n_levels: int
    allowed: tuple[int, ...]
    energy_before_pj: float
    energy_after_pj: float
    share_before: float
    deadzone: float = 0.5  # the projection's (AllowedSet.deadzone)

    @property
    def reduction_pct(self) -> float:
        return 100.0 * (1 - self.energy_after_pj / self.energy_before_pj) \
            if self.energy_before_pj else 0.0


@dataclass
class CompressionResult:
    study: dict[str, Any]
    float_accuracy: float
    baseline_accuracy: float
    compressed_accuracy: float
    baseline_tune_accuracy: float
    compressed_tune_accuracy: float
    baseline_mac_pj: float
    compressed_mac_pj: float
    baseline_total_pj: float
    compressed_total_pj: float
    layers: list[LayerCompression]
    #: the system's memory terms (SRAM + DRAM); the totals above include them and the PE
    #: clock. ``compressed_total_indexed_pj``: the compressed network with its weights stored
    #: as codebook indices (docs/energy-model.md §9)
    baseline_memory_pj: float = 0.0
    compressed_memory_pj: float = 0.0
    compressed_total_indexed_pj: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    device: str = "cpu"
    plugins: dict[str, str] = field(default_factory=dict)
    #: what the saved model needs to be rebuilt: dataset name, input shape, classes
    model_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def reduction_pct(self) -> float:
        return 100.0 * (1 - self.compressed_mac_pj / self.baseline_mac_pj)

    @property
    def accuracy_drop(self) -> float:
        """On the validation split, which never steered a decision."""
        return self.baseline_accuracy - self.compressed_accuracy

    @property
    def tune_accuracy_drop(self) -> float:
        """On the tuning split, on which the schedule kept the budget."""
        return self.baseline_tune_accuracy - self.compressed_tune_accuracy

    @property
    def budget_pct(self) -> float:
        return float(self.study["compression"]["accuracy_budget_pct"])

    @property
    def within_budget(self) -> bool:
        """Whether the validation drop keeps the budget (the tuning drop always does)."""
        return self.accuracy_drop <= self.budget_pct + 1e-9

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["layers"] = [{**asdict(lc), "reduction_pct": lc.reduction_pct}
                         for lc in self.layers]
        doc["mac_reduction_pct"] = self.reduction_pct
        doc["total_reduction_pct"] = 100.0 * (1 - self.compressed_total_pj
                                              / self.baseline_total_pj)
        doc["total_reduction_indexed_pct"] = 100.0 * (1 - self.compressed_total_indexed_pj
                                                      / self.baseline_total_pj)
        doc["accuracy_drop"] = self.accuracy_drop
        doc["tune_accuracy_drop"] = self.tune_accuracy_drop
        doc["accuracy_budget_pct"] = self.budget_pct
        doc["within_budget"] = self.within_budget
        return doc


class _EnergyView:
    """Per-module energy per weight for each code, and whole-layer energies, of one model."""

    def __init__(self, model: Any, layers: list[LayerSpec], mappings: list[LayerMapping],
                 stats: Any, char: Any) -> None:
        self.model, self.layers, self.mappings = model, layers, mappings
        self.stats, self.char = stats, char
        self.per_weight_pj: dict[str, np.ndarray] = {}
        for layer, m in zip(layers, mappings, strict=True):
            curve = np.asarray(model.per_weight_energy(
                layer, stats.layers.get(layer.name) if stats else None, char), np.float64)
            key = module_name(layer.name)
            self.per_weight_pj[key] = self.per_weight_pj.get(key, 0.0) + m.streamed * curve

    def mac_pj(self, codes: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {name: self.layer_pj(name, codes[name]) for name in self.per_weight_pj}

    def layer_pj(self, name: str, codes: np.ndarray) -> float:
        return float(np.bincount(codes.ravel().astype(np.int64) + 128, minlength=256)
                     @ self.per_weight_pj[name])

    def energies(self, codes: Mapping[str, np.ndarray], memory: Any = None,
                 n_levels: Mapping[str, int] | None = None) -> list[Any]:
        """Each layer's LayerEnergy; with ``memory`` (a MemorySetting) the system's."""
        from dse_core.mapping.system import with_memory

        out = []
        for layer, m in zip(self.layers, self.mappings, strict=True):
            e = self.model.layer_energy(
                layer, m, codes=codes[module_name(layer.name)],
                stats=self.stats.layers.get(layer.name) if self.stats else None,
                characterization=self.char)
            if memory is not None:
                e, _ = with_memory(e, layer, m, memory,
                                   n_levels=(n_levels or {}).get(module_name(layer.name)))
            out.append(e)
        return out

    def total_pj(self, codes: Mapping[str, np.ndarray], memory: Any = None,
                 n_levels: Mapping[str, int] | None = None) -> float:
        return sum(e.total_pj for e in self.energies(codes, memory, n_levels))


def _eval_chunk(device: str) -> int:
    """Images per eval forward pass. On a CPU small batches keep a layer's activations in
    cache: ResNet-20 evaluates 512 images 2.8x faster in chunks of 16 than in one batch
    (32: 2.5x); a GPU wants large ones."""
    return 32 if device == "cpu" else 512


class Session:
    """The :class:`~dse_core.compression.selection.CompressionSession` a scheduler drives."""

    def __init__(self, net: QuantNetwork, selector: WeightSelector, guide: _EnergyView,
                 data: dict[str, Any], study: CompressStudy, device: str,
                 progress: bool = False) -> None:
        self.net, self.selector, self.guide = net, selector, guide
        self.data, self.study, self.device, self.progress = data, study, device, progress
        self.layer_names = list(net.layers)
        self.budget_pct = study.compression.accuracy_budget_pct
        self.baseline_accuracy = 0.0
        self.steps: list[dict[str, Any]] = []
        self._calls = 0
        self._sensitivity_cache: dict[str, np.ndarray] = {}
        self._variants: dict[str, WeightSelector] = {}
        self._energy_cache: tuple[Any, dict[str, float]] | None = None
        #: the int8 baseline's logits on the fit split, when fine-tunes distil from it
        self.teacher_logits: Any = None
        #: the selection plugin's factory (options -> selector), for selection variants
        self.selector_factory: Callable[[dict[str, Any]], WeightSelector] | None = None

    # -- training -----------------------------------------------------------------------
    def fine_tune(self, epochs: float) -> None:
        self._calls += 1
        t = self.study.training
        train_epochs(self.net.model, self.data["fit"], epochs=epochs, lr=t.lr,
                     batch_size=t.batch_size, seed=self.study.seed * 100_003 + self._calls,
                     device=self.device, optimizer=t.optimizer, teacher_logits=self.teacher_logits,
                     distill_weight=t.distill_weight, temperature=t.distill_temperature)

    def _batches(self, epochs: float) -> Any:
        self._calls += 1
        return _batches(self.data["fit"], epochs, self.study.training.batch_size,
                        self.study.seed * 100_003 + self._calls, self.device)

    def logits(self, x: Any) -> Any:
        """The network's eval-mode (integer-exact) logits for images ``x``, on the CPU."""
        import torch

        model = self.net.model
        model.eval()
        chunk = _eval_chunk(self.device)
        with torch.no_grad():
            return torch.cat([model(x[i:i + chunk].to(self.device)).cpu()
                              for i in range(0, len(x), chunk)])

    def _accuracy(self, split: str) -> float:
        x, y = self.data[split]
        return 100.0 * int((self.logits(x).argmax(dim=1) == y).sum()) / len(y)

    def accuracy(self) -> float:
        return self._accuracy("tune")

    def val_accuracy(self) -> float:
        return self._accuracy("val")

    def within_budget(self, accuracy: float) -> bool:
        return accuracy >= self.baseline_accuracy - self.budget_pct - 1e-9

    def snapshot(self) -> Any:
        return self.net.state()

    def restore(self, snapshot: Any) -> None:
        self.net.restore(snapshot)

    def log_step(self, **fields: Any) -> None:
        self.steps.append(dict(fields))
        log.info("step %s", fields)
        if self.progress:
            import click

            verdict = "keep" if fields.get("accepted") else "revert"
            click.echo(f"  step {fields.get('step')}: {fields.get('layer')} -> "
                       f"{fields.get('n_levels')} codes, tune accuracy "
                       f"{fields.get('accuracy', float('nan')):.2f} % ({verdict})", err=True)

    # -- energy and selection -----------------------------------------------------------
    def _layer_energies(self) -> dict[str, float]:
        """Each layer's MAC energy under the guide, computed again only when a weight tensor
        was written (torch bumps ``_version`` on every in-place write: optimiser steps,
        ``load_state_dict``; not writes through ``.data``, which nothing here makes) or an
        allowed set changed: a ``saving`` ranking previews every open layer against the
        same network."""
        key = tuple((id(m.weight), m.weight._version, m.allowed, m.deadzone,
                     m.weight_scale_fixed._version) for m in self.net.layers.values())
        if self._energy_cache is None or self._energy_cache[0] != key:
            self._energy_cache = (key, self.guide.mac_pj(self.net.codes()))
        return dict(self._energy_cache[1])

    def energy_shares(self) -> dict[str, float]:
        energy = self._layer_energies()
        total = sum(energy.values()) or 1.0
        return {name: e / total for name, e in energy.items()}

    def _sensitivity(self) -> dict[str, np.ndarray]:
        """Squared loss gradients in code units (F_i · scale_c²), over a few batches."""
        model = self.net.model
        model.train()
        sums = {n: 0.0 for n in self.layer_names}
        for x, y in self._batches(min(1.0, 8 * self.study.training.batch_size
                                      / len(self.data["fit"][1]))):
            model.zero_grad()
            import torch

            torch.nn.functional.cross_entropy(model(x), y).backward()
            for n, layer in self.net.layers.items():
                sums[n] = sums[n] + layer.weight.grad.detach() ** 2
        model.zero_grad()
        model.eval()
        return {n: (sums[n] * layer.weight_scale() ** 2).cpu().numpy().ravel()
                for n, layer in self.net.layers.items()}

    def mac_energy_pj(self) -> float:
        """The network's MAC energy under the guiding model and the current codes."""
        return sum(self._layer_energies().values())

    def preview_energy(self, plan: Mapping[str, int]) -> float:
        """:meth:`mac_energy_pj` if ``plan`` were applied now (no training, nothing kept).
        Only the plan's layers are selected, measured and put back; the sum runs over the
        layers in the same order, so it is the number a full recount gives."""
        energy = self._layer_energies()
        layers = self.net.layers
        saved = {n: (layers[n].allowed, layers[n].deadzone) for n in plan if n in layers}
        try:
            self.apply(plan, fresh_sensitivity=False)
            for name in plan:
                energy[name] = self.guide.layer_pj(name, self.net.layer_codes(name))
            return sum(energy.values())
        finally:
            for name, (codes, deadzone) in saved.items():
                self.net.set_allowed(name, codes, deadzone)

    def allowed_sets(self) -> dict[str, AllowedSet]:
        return self.net.allowed_sets()

    def widen(self, zones: Mapping[str, float]) -> None:
        for name, zone in zones.items():
            if name not in self.net.layers:
                raise DseError(f"widen names layer {name!r}; layers: "
                               + ", ".join(self.layer_names))
            codes = self.net.layers[name].allowed
            AllowedSet(name, codes, zone)  # validates the zone
            self.net.set_allowed(name, codes, zone)

    def selection_variant(self, options: Mapping[str, Any] | None) -> WeightSelector:
        """The study's selection policy, or the same policy with ``options`` over the
        study's (a scheduler's ``selection_variants``; checked in ``_plugins``)."""
        if not options:
            return self.selector
        key = json.dumps(dict(options), sort_keys=True)
        if key not in self._variants:
            options = {**self.study.compression.policy_options, **options}
            if self.selector_factory is None:
                raise DseError("selection variants need the selection plugin's factory "
                               "(Session.selector_factory)")
            self._variants[key] = self.selector_factory(options)
        return self._variants[key]

    def apply(self, plan: Mapping[str, int], options: Mapping[str, Any] | None = None,
              fresh_sensitivity: bool = True) -> None:
        CompressionPlan(dict(plan))  # validates the sizes
        selector = self.selection_variant(options)
        if selector.needs_sensitivity and (fresh_sensitivity or not self._sensitivity_cache):
            self._sensitivity_cache = self._sensitivity()
        sensitivity = self._sensitivity_cache
        weights = self.net.weights_in_code_units([n for n in plan if n in self.net.layers])
        for name, n_levels in plan.items():
            if name not in self.net.layers:
                raise DseError(f"compression plan names layer {name!r}; layers: "
                               + ", ".join(self.layer_names))
            if n_levels >= FULL_LEVELS:
                self.net.set_allowed(name, FULL_CODES)
                continue
            if not np.isfinite(weights[name]).all():
                raise DseError(f"training diverged: layer {name} has non-finite weights; "
                               f"lower training.lr (now {self.study.training.lr})")
            allowed = selector.select(SelectionRequest(
                name, n_levels, self.guide.per_weight_pj[name], weights[name],
                sensitivity.get(name)))
            if 0 not in allowed.codes or allowed.n_levels > n_levels:
                raise DseError(f"selection policy {self.study.compression.policy!r} returned "
                               f"{allowed.n_levels} codes for {name} (asked for {n_levels}, "
                               "must hold 0)")
            self.net.set_allowed(name, allowed.codes, allowed.deadzone)


def _split_data(splits: Any, tune_images: int) -> dict[str, Any]:
    import torch

    def tensors(ds: Any) -> tuple[Any, Any]:
        if hasattr(ds, "tensors"):
            return ds.tensors[0], ds.tensors[1]
        xs, ys = zip(*[ds[i] for i in range(len(ds))], strict=True)
        return torch.stack(xs), torch.tensor(ys)

    x, y = tensors(splits.train)
    if tune_images >= len(y):
        raise DseError(f"training.tune_images = {tune_images}: expected fewer than the "
                       f"{len(y)} training images")
    return {"fit": (x[:-tune_images], y[:-tune_images]),
            "tune": (x[-tune_images:], y[-tune_images:]), "val": tensors(splits.val)}


def memory_setting(registry: Registry, memory: Any) -> Any:
    """The MemorySetting of a study's ``[memory]`` table."""
    from dse_core.mapping.system import MemorySetting
    from dse_core.types import BufferConfig

    model = instantiate(registry.get("memory_model", memory.model), memory.options)
    return MemorySetting(BufferConfig(*memory.buffers_kb), model, memory.index_storage,
                         memory.psums)


def _plugins(registry: Registry, study: CompressStudy) -> tuple[Any, Any, dict[str, str]]:
    c = study.compression
    sel_record = registry.get("selector", c.policy)
    sched_record = registry.get("scheduler", c.scheduler)
    for kind, name in (("energy_model", study.energy.model),
                       ("energy_model", study.energy.report_model),
                       ("memory_model", study.memory.model),
                       ("characterizer", study.energy.characterizer),
                       *((("pe", study.energy.pe),) if study.energy.pe else ())):
        registry.get(kind, name)
    memory_setting(registry, study.memory)  # a bad memory table stops here, before training
    selector = instantiate(sel_record, c.policy_options)
    scheduler = instantiate(sched_record, c.scheduler_options)
    if not isinstance(selector, WeightSelector):
        raise DseError(f"selection policy {c.policy!r} does not implement WeightSelector")
    if not isinstance(scheduler, LayerScheduler):
        raise DseError(f"scheduler {c.scheduler!r} does not implement LayerScheduler")
    for key in ("selection_variants", "squeeze_variants"):  # before any training
        for options in getattr(scheduler, key, ()):
            try:
                instantiate(sel_record, {**c.policy_options, **options})
            except DseError as exc:
                raise DseError(f"compression.scheduler_options.{key}: {options}: {exc}"
                               ) from exc
    versions = {f"{kind}:{r.name}": f"{r.provider} {r.version}" for kind, r in (
        ("selector", sel_record), ("scheduler", sched_record),
        ("energy_model", registry.get("energy_model", study.energy.model)),
        ("energy_model", registry.get("energy_model", study.energy.report_model)))}
    return selector, scheduler, versions


def run_compression(registry: Registry, study: CompressStudy, *, progress: bool = False
                    ) -> tuple[CompressionResult, QuantNetwork, Session]:
    """Run one compression study end to end (see the module docstring)."""
    import torch

    from dse_core.switching.pipeline import switching_inputs

    started = time.perf_counter()
    device = resolve_device(study.training.device)
    selector, scheduler, versions = _plugins(registry, study)  # fail fast on bad names
    array = ArrayConfig(study.array.rows, study.array.cols, dataflow=study.array.dataflow,
                        clock_gating=study.memory.clock_gating)
    memory = memory_setting(registry, study.memory)
    mapping = instantiate(registry.get("mapping", f"{study.array.dataflow}_tile"))
    torch.manual_seed(study.seed)
    inputs = switching_inputs(
        registry, study.workload.model, study.workload.dataset, array,
        checkpoint=study.workload.checkpoint, epochs=study.training.float_epochs,
        seed=study.seed, calibration_images=study.energy.calibration_images,
        characterizer=study.energy.characterizer, progress=progress,
        characterizer_options={"pe": study.energy.pe} if study.energy.pe else None,
        weights=study.workload.weights, dataset_options=study.workload.data_options())
    from dse_core.workloads.datasets import load_dataset

    splits = load_dataset(registry, study.workload.dataset, study.workload.data_options())
    data = _split_data(splits, study.training.tune_images)
    mappings = [mapping.map(layer, array) for layer in inputs.layers]
    energy_models = {name: instantiate(registry.get("energy_model", name)) for name in
                     {study.energy.model, study.energy.report_model}}
    views = {name: _EnergyView(m, inputs.layers, mappings, inputs.stats,
                               inputs.characterization) for name, m in energy_models.items()}
    guide, report = views[study.energy.model], views[study.energy.report_model]

    float_model = inputs.model.to(device).eval()
    x_fit = data["fit"][0]
    n_cal = study.training.calibration_batches * study.training.batch_size
    net = quantize_network(float_model, [b.to(device) for b in
                                         x_fit[:n_cal].split(study.training.batch_size)],
                           x_fit[:1].to(device))
    missing = sorted(set(net.layers) - set(guide.per_weight_pj))
    if missing:
        raise DseError(f"layers {missing} of {study.workload.model} were not traced")
    session = Session(net, selector, guide, data, study, device, progress)
    session.selector_factory = lambda options: instantiate(
        registry.get("selector", study.compression.policy), options)
    with torch.no_grad():
        float_acc = 100.0 * float(sum(
            int((float_model(x.to(device)).argmax(1).cpu() == y).sum())
            for x, y in zip(data["val"][0].split(_eval_chunk(device)),
                            data["val"][1].split(_eval_chunk(device)),
                            strict=True)) / len(data["val"][1]))
    session.fine_tune(study.training.qat_epochs)  # the int8 QAT baseline
    base_codes = net.codes()
    session.baseline_accuracy = session.accuracy()
    base_val = session.val_accuracy()
    if study.training.distill_weight > 0:
        session.teacher_logits = session.logits(data["fit"][0])
    if progress:
        import click

        click.echo(f"int8 baseline: validation accuracy {base_val:.2f} % (float "
                   f"{float_acc:.2f} %), tune accuracy {session.baseline_accuracy:.2f} %",
                   err=True)
    plan = scheduler.run(session)
    before_final = session.snapshot()
    session.fine_tune(study.training.final_epochs)
    final_tune = session.accuracy()
    if not session.within_budget(final_tune):  # fine-tuning can diverge: keep the last good
        session.log_step(step="final", layer="*", n_levels=None, accuracy=final_tune,
                         accepted=False)
        session.restore(before_final)
    codes = net.codes()
    before, after = report.mac_pj(base_codes), report.mac_pj(codes)
    total_before = sum(before.values()) or 1.0
    weights = {n: int(np.prod(layer.weight.shape)) for n, layer in net.layers.items()}
    layers = [LayerCompression(n, weights[n], len(net.layers[n].allowed),
                               net.layers[n].allowed, before[n], after[n],
                               before[n] / total_before, net.layers[n].deadzone)
              for n in net.layers]
    log.info("plan %s", dict(plan.n_levels))
    levels = {n: len(net.layers[n].allowed) for n in net.layers}
    base_energy = report.energies(base_codes, memory)
    plain = report.energies(codes, dataclasses.replace(memory, index_storage=False), levels)
    indexed = report.energies(codes, dataclasses.replace(memory, index_storage=True), levels)
    result = CompressionResult(
        study=study.model_dump(mode="json"), float_accuracy=float_acc,
        baseline_accuracy=base_val, compressed_accuracy=session.val_accuracy(),
        baseline_tune_accuracy=session.baseline_accuracy,
        compressed_tune_accuracy=session.accuracy(),
        baseline_mac_pj=sum(before.values()), compressed_mac_pj=sum(after.values()),
        baseline_total_pj=sum(e.total_pj for e in base_energy),
        compressed_total_pj=sum(e.total_pj for e in plain),
        baseline_memory_pj=sum(e.memory_pj for e in base_energy),
        compressed_memory_pj=sum(e.memory_pj for e in plain),
        compressed_total_indexed_pj=sum(e.total_pj for e in indexed),
        layers=layers, steps=session.steps, wall_s=time.perf_counter() - started,
        device=device, plugins=versions,
        model_meta={"model": study.workload.model, "dataset": splits.name,
                    "input_shape": list(splits.input_shape),
                    "num_classes": splits.num_classes})
    return result, net, session
