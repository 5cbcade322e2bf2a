"""``dse run`` / ``dse worker``: the multi-objective search.

Per trial: suggest an array (rows, cols, dataflow) and, when compression is searched, the
scheduler's knobs; reject designs over a hard budget before any work; map and charge every
layer for that array (cheap); get the accuracy of the compression plan from the study's
accuracy cache in the database, or by QAT fine-tuning from the int8 baseline (so trials that
differ only in the array never retrain); record metrics in Optuna's trial attributes and the
per-layer breakdown in ``dse_trial_layers``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse_core.errors import DseError
from dse_core.host.registry import Registry, instantiate
from dse_core.mapping.evaluate import charge_layer
from dse_core.search.plans import plan_key
from dse_core.search.report import design_key
from dse_core.search.results import (
    DERIVED_METRICS,
    MEMORY_ENERGY_COLUMNS,
    TRAFFIC_COLUMNS,
    ResultsDB,
    open_storage,
)
from dse_core.search.samplers import make_sampler
from dse_core.search.study_file import SearchStudy, pe_options
from dse_core.search.workers import TrialLoop, create_or_load
from dse_core.types import ArrayConfig, BufferConfig, LayerSpec

__all__ = ["Evaluator", "validate", "make_sampler", "create_or_load", "run_worker", "plan_key"]

log = logging.getLogger(__name__)


def _mapping(registry: Registry, name: str) -> tuple[Any, str]:
    """A mapping plugin's instance and the dataflow of the arrays it maps."""
    record = registry.get("mapping", name)
    return instantiate(record), str(getattr(record, "dataflow", "ws"))


def validate(registry: Registry, study: SearchStudy) -> None:
    """Everything that can be checked before a database or a study is created: plugin names
    and options, the workload, the sampler's options."""
    mappers = [_mapping(registry, name) for name in study.space.mapping_choices().values()]
    space = study.space
    for name, values in (("space.rows", space.rows.choices()),
                         ("space.cols", space.cols.choices())):
        for value in values:  # every value a trial can draw is a valid array dimension
            if value > ArrayConfig.MAX_DIM:
                raise DseError(f"{name} = {value}: expected at most {ArrayConfig.MAX_DIM}")
    for name, values in space.memory_dimensions().items():
        if name.endswith("_kb") and max(values) > BufferConfig.MAX_KB:
            raise DseError(f"space.{name} = {max(values)}: expected at most "
                           f"{BufferConfig.MAX_KB} kB")
    model = instantiate(registry.get("energy_model", study.energy.model), study.energy.options)
    instantiate(registry.get("memory_model", study.memory.model), study.memory.options)
    w = study.workload
    if space.pe is not None and not w.dataset:
        raise DseError("space.pe needs workload.dataset: a PE's energy is its switching on "
                       "the network's statistics")
    for options in space.pe_choices():
        if "rtl" in options and not Path(options["rtl"]).is_file():
            raise DseError(f"space.pe: {options['rtl']!r}: no such Verilog file (expected a "
                           "PE plugin's name or FILE.v[:TOP])")
    if w.checkpoint and not Path(w.checkpoint).exists():
        raise DseError(f"workload.checkpoint = {w.checkpoint!r}: no such file")
    if w.checkpoint:  # one that does not load must fail here, not in every trial
        from dse_core.workloads.training import load_checkpoint

        load_checkpoint(registry, w.checkpoint, w.model)
    if w.dataset:
        registry.get("model", (w.model or "").split(":")[0])
        from dse_core.workloads.datasets import load_dataset

        splits = load_dataset(registry, w.dataset, w.data_options())  # a folder, its images
        if w.weights and w.weights != "random":
            from dse_core.workloads.training import load_weights

            load_weights(registry, w.weights, w.model or "", splits.input_shape,
                         splits.num_classes)
        from dse_core.switching.pipeline import resolve_pe
        from dse_core.types import default_psum_bits

        for pe in study.space.pe_choices():
            instantiate(registry.get("characterizer", study.energy.characterizer), resolve_pe(
                {**study.energy.characterizer_options, **pe,
                 "psum_bits": default_psum_bits(study.space.rows.choices()[0])}, registry))
    else:  # no statistics: the energy model must work without them; try it on one layer
        from dse_core.workloads.layers import load_workload

        layer = load_workload(registry, w.topology or w.model or "")[0]
        mapper, dataflow = mappers[0]
        array = ArrayConfig(study.space.rows.choices()[0], study.space.cols.choices()[0],
                            dataflow=dataflow)  # type: ignore[arg-type]
        try:
            model.layer_energy(layer, mapper.map(layer, array))
        except DseError as exc:
            raise DseError(f"energy.model = {study.energy.model!r} cannot charge this "
                           f"workload without a dataset: {exc}") from exc
    knobs: dict[str, Any] = {}
    if study.space.compression:
        c = study.compression
        instantiate(registry.get("selector", c.policy), c.policy_options)
        scheduler = instantiate(registry.get("scheduler", c.scheduler), c.scheduler_options)
        knobs = {k.name: k for k in scheduler.knobs(["layer"])}
    make_sampler(study, 0, knobs)


@dataclass
class _RowsInputs:  # of one array height and one PE
    layers: list[LayerSpec]
    stats: Any
    char: Any


#: PE netlist cells when the energy model has no netlist (the shipped 22-bit PE)
DEFAULT_PE_GATES = 481


class Evaluator:
    """Evaluates designs of one study inside one worker process."""

    def __init__(self, registry: Registry, study: SearchStudy, db: ResultsDB,
                 progress: bool = False) -> None:
        self.registry, self.study, self.db, self.progress = registry, study, db, progress
        # parameter value (a dataflow, or a mapping plugin's name) -> (mapper, dataflow, name)
        self.mappings = {value: (*_mapping(registry, name), name)
                         for value, name in study.space.mapping_choices().items()}
        self.energy_model = instantiate(registry.get("energy_model", study.energy.model),
                                        study.energy.options)
        self.memory_model = instantiate(registry.get("memory_model", study.memory.model),
                                        study.memory.options)
        self._inputs: dict[tuple[int, str | None], _RowsInputs] = {}
        self._designs: dict[str, int] | None = None  # design key -> first trial number
        self.plans: Any = None  # a PlanTrainer when compression is searched
        self.knobs: dict[str, Any] = {}
        self.baseline: dict[str, Any] = {}
        if study.space.compression:
            self._setup_compression()

    # -- inputs for an array height ---------------------------------------------------------
    def inputs(self, rows: int, pe: str | None = None) -> _RowsInputs:
        """Layers, statistics and characterisation for an array height and a PE (``None``:
        the study's only PE)."""
        pe = pe or (self.study.space.pe[0] if self.study.space.pe else None)
        if (rows, pe) not in self._inputs:
            w = self.study.workload
            if w.dataset:
                from dse_core.switching.pipeline import switching_inputs

                si = switching_inputs(
                    self.registry, w.model or "", w.dataset, ArrayConfig(rows, 8),
                    checkpoint=w.checkpoint, epochs=self.study.training.float_epochs,
                    seed=self.study.seed, calibration_images=self.study.energy.calibration_images,
                    characterizer=self.study.energy.characterizer,
                    characterizer_options={**self.study.energy.characterizer_options,
                                           **pe_options(pe)},
                    progress=self.progress, weights=w.weights,
                    dataset_options=w.data_options(), batch=w.batch)
                self._inputs[rows, pe] = _RowsInputs(si.layers, si.stats, si.characterization)
            else:
                from dse_core.workloads.layers import load_workload

                layers = load_workload(self.registry, w.topology or w.model or "",
                                       batch=w.batch)
                self._inputs[rows, pe] = _RowsInputs(list(layers), None, None)
        return self._inputs[rows, pe]

    # -- compression ------------------------------------------------------------------------
    def _setup_compression(self) -> None:
        from dse_core.search.plans import PlanTrainer

        mapper, dataflow, _ = next(iter(self.mappings.values()))
        self.plans = PlanTrainer(self.registry, self.study, self.db, self.energy_model,
                                 (mapper, dataflow), self.inputs)
        self.knobs, self.baseline = self.plans.knobs, self.plans.baseline

    # -- one trial ------------------------------------------------------------------------
    def suggest_memory(self, trial: Any) -> Any:
        """The trial's memory setting: searched buffer sizes and index storage, else the
        study's fixed ones."""
        from dse_core.mapping.system import MemorySetting

        m = self.study.memory
        dims = self.study.space.memory_dimensions()
        sizes = [int(trial.suggest_categorical(name, dims[name])) if name in dims else fixed
                 for name, fixed in zip(("ifmap_kb", "filter_kb", "ofmap_kb"), m.buffers_kb,
                                        strict=True)]
        if "index_storage" in dims:
            index = bool(trial.suggest_categorical("index_storage", dims["index_storage"]))
        elif self.study.space.index_storage is not None:
            index = bool(self.study.space.index_storage[0])
        else:
            index = m.index_storage
        return MemorySetting(BufferConfig(*sizes), self.memory_model, index, m.psums)

    def suggest_pe(self, trial: Any) -> str | None:
        """The trial's PE plugin: searched, the study's only one, or None (the default)."""
        pes = self.study.space.pe or []
        if len(pes) > 1:
            return str(trial.suggest_categorical("pe", pes))
        return pes[0] if pes else None

    def suggest(self, trial: Any) -> tuple[ArrayConfig, str, dict[str, Any]]:
        """The array, the mapping's parameter value, and the scheduler's knob values."""
        space = self.study.space
        rows = int(trial.suggest_categorical("rows", space.rows.choices()))
        cols = int(trial.suggest_categorical("cols", space.cols.choices()))
        choices = list(self.mappings)
        choice = (str(trial.suggest_categorical(space.mapping_param, choices))
                  if len(choices) > 1 else choices[0])
        values: dict[str, Any] = {}
        for name, knob in self.knobs.items():
            if knob.kind == "categorical":
                values[name] = trial.suggest_categorical(name, list(knob.choices))
            elif knob.kind == "int":
                values[name] = trial.suggest_int(name, int(knob.low), int(knob.high),
                                                 log=knob.log)
            else:
                values[name] = trial.suggest_float(name, float(knob.low), float(knob.high),
                                                   log=knob.log)
        dataflow = self.mappings[choice][1]
        return (ArrayConfig(rows, cols, dataflow=dataflow,  # type: ignore[arg-type]
                            clock_gating=self.study.memory.clock_gating), choice, values)

    def evaluate(self, trial: Any) -> tuple[float, ...]:
        import optuna

        study = self.study
        array, choice, knob_values = self.suggest(trial)
        mapper = self.mappings[choice][0]
        limit = study.constraints.max_pe_count
        if limit is not None and array.pe_count > limit:  # hard budget: never evaluated
            trial.set_user_attr("pe_count", array.pe_count)
            trial.set_user_attr("rejected", f"pe_count {array.pe_count} > {limit}")
            raise optuna.TrialPruned(f"pe_count {array.pe_count} > max_pe_count {limit}")
        memory = self.suggest_memory(trial)
        pe = self.suggest_pe(trial)
        onchip_kb = memory.buffers.total_kb
        budget_kb = study.constraints.max_onchip_kb
        if budget_kb is not None and onchip_kb > budget_kb:
            trial.set_user_attr("onchip_kb", onchip_kb)
            trial.set_user_attr("rejected", f"onchip_kb {onchip_kb} > {budget_kb}")
            raise optuna.TrialPruned(f"onchip_kb {onchip_kb} > max_onchip_kb {budget_kb}")
        from dse_core.mapping.system import area_mm2, with_memory

        area = area_mm2(array, memory.buffers, self._pe_gates(array.rows, pe))
        max_area = study.constraints.max_area_mm2
        if max_area is not None and area > max_area:
            trial.set_user_attr("area_mm2", area)
            trial.set_user_attr("rejected", f"area_mm2 {area:.4g} > {max_area}")
            raise optuna.TrialPruned(f"area_mm2 {area:.4g} > max_area_mm2 {max_area}")
        metrics: dict[str, float] = {"pe_count": float(array.pe_count),
                                     "onchip_kb": float(onchip_kb), "area_mm2": area}
        histograms: dict[str, list[int]] | None = None
        allowed: dict[str, list[int]] = {}
        plan = self.plans.plan(knob_values, pe) if self.plans is not None else None
        design = design_key(trial.params, plan.n_levels if plan is not None else None)
        repeat = self._repeat_of(trial, design)
        if repeat is not None:  # the same design again: its results, at no cost
            return self._copy_trial(trial, repeat)
        if plan is not None:
            acc = self.plans.accuracy(plan, pe)
            histograms, allowed = acc["histograms"], acc["allowed"]
            # the objective and the constraint use the tuning split (as dse compress
            # decides); the validation drop is reported beside them, and a design whose
            # validation drop breaks the budget is marked (docs/search.md, "Budgets")
            metrics.update(accuracy=acc["accuracy"], val_accuracy=acc["val_accuracy"],
                           accuracy_drop=self.baseline["accuracy"] - acc["accuracy"],
                           val_accuracy_drop=self.baseline["val_accuracy"]
                           - acc["val_accuracy"])
            budget = study.constraints.accuracy_budget_pct
            if budget is not None:
                trial.set_user_attr("val_within_budget",
                                    metrics["val_accuracy_drop"] <= budget + 1e-9)
            trial.set_user_attr("plan", dict(plan.n_levels))
            trial.set_user_attr("accuracy_cached", acc["cached"])
        inputs = self.inputs(array.rows, pe)
        rows, energy_pj, mac_pj, array_pj, memory_pj, cycles = [], 0.0, 0.0, 0.0, 0.0, 0
        for layer in inputs.layers:
            m = mapper.map(layer, array)
            module = layer.name.split("#")[0]
            histogram = (histograms[module] if histograms is not None
                         and module in histograms else None)
            e = charge_layer(
                self.energy_model, layer, m, weight_histogram=histogram,
                stats=inputs.stats.layers.get(layer.name) if inputs.stats else None,
                characterization=inputs.char)
            e, traffic = with_memory(e, layer, m, memory,
                                     n_levels=len(allowed[module]) if module in allowed
                                     else None)
            energy_pj += e.total_pj
            mac_pj += e.mac_switching_pj
            array_pj += e.array_pj
            memory_pj += e.memory_pj
            cycles += m.cycles
            rows.append({"layer": layer.name, "cycles": m.cycles,
                         "utilisation": m.utilisation, "mapping_efficiency":
                         m.mapping_efficiency, "mac_switching_pj": e.mac_switching_pj,
                         "clock_pj": e.clock_pj, "idle_pj": e.idle_pj,
                         "fill_drain_pj": e.fill_drain_pj, "weight_load_pj": e.weight_load_pj,
                         "total_pj": e.total_pj,
                         "n_levels": len(allowed[module]) if module in allowed else None,
                         "allowed": json.dumps(allowed[module]) if module in allowed
                         else None,
                         **{t: getattr(e, t) for t in MEMORY_ENERGY_COLUMNS},
                         **{t: getattr(traffic, t) for t in TRAFFIC_COLUMNS}})
        metrics.update(energy_pj=energy_pj, mac_energy_pj=mac_pj, array_energy_pj=array_pj,
                       memory_energy_pj=memory_pj, cycles=float(cycles),
                       edp=energy_pj * cycles)
        for key, value in metrics.items():  # one storage write each: derived ones are not
            if key not in DERIVED_METRICS:       # stored (results.trial_rows derives them)
                trial.set_user_attr(key, int(value) if key in ("cycles", "onchip_kb")
                                    else value)
        if study.constraints.accuracy_budget_pct is not None:
            _set_constraints(trial, {"accuracy_drop_over_budget": metrics["accuracy_drop"]
                                     - study.constraints.accuracy_budget_pct})
        self.db.write_trial_layers(study.name, trial.number, rows)
        if self._designs is not None:
            self._designs.setdefault(design, trial.number)
        return tuple(metrics[o] for o in study.objectives)

    def _pe_gates(self, rows: int, pe: str | None = None) -> int:
        """Netlist cells of one PE: the characterised netlist's when there is one."""
        char = self.inputs(rows, pe).char if self.study.workload.dataset else None
        if char is None or not getattr(char, "has_netlist", False):
            return DEFAULT_PE_GATES
        return int(char.netlist().n_gates)

    def _repeat_of(self, trial: Any, design: str) -> Any:
        """An earlier complete trial of this study with the same design, or None. The
        designs are read from the study once per worker, then kept up to date by this
        worker's own trials (another worker's repeat is only evaluated twice)."""
        import optuna

        if self._designs is None:
            self._designs = {}
            for t in trial.study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,)):
                if "repeat_of" not in t.user_attrs:
                    self._designs.setdefault(design_key(t.params, t.user_attrs.get("plan")),
                                             t.number)
        number = self._designs.get(design)
        if number is None:
            return None
        return next((t for t in trial.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.number == number),
            None)

    def _copy_trial(self, trial: Any, original: Any) -> tuple[float, ...]:
        trial.set_user_attr("repeat_of", original.number)
        for key, value in original.user_attrs.items():
            if key not in ("repeat_of", "accuracy_cached"):
                trial.set_user_attr(key, value)
        trial.set_user_attr("accuracy_cached", "accuracy" in original.user_attrs)
        if original.constraints:  # "0", "1", … are the list form's: written again with it
            _set_constraints(trial, {k: v for k, v in original.constraints.items()
                                     if not k.isdigit()})
        self.db.write_trial_layers(self.study.name, trial.number,
                                   self.db.trial_layers(self.study.name, original.number))
        return tuple(original.values)

    def objective(self, verbose: bool = False) -> Callable[[Any], tuple[float, ...]]:
        def run(trial: Any) -> tuple[float, ...]:
            import optuna

            try:
                return self.evaluate(trial)
            except optuna.TrialPruned:
                raise
            except Exception as exc:  # recorded on the trial, one line said; the study goes on
                kind = "configuration" if isinstance(exc, DseError) else "runtime"
                message = str(exc) if kind == "configuration" else f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("error", message[:2000])
                trial.set_user_attr("error_kind", kind)
                params = ", ".join(f"{k}={v}" for k, v in trial.params.items())
                print(f"trial {trial.number} failed ({params}): {message}", file=sys.stderr)
                if verbose:
                    traceback.print_exception(exc, file=sys.stderr)
                raise
        return run


def _set_constraints(trial: Any, values: dict[str, float]) -> None:
    """Optuna 5's named constraints, and the same values as the list under ``constraints``
    that optuna-dashboard and older Optuna tools read (docs/database.md)."""
    for key, value in values.items():
        trial.set_constraint(key, value)
    trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(values.values()))


def run_worker(registry: Registry, study: SearchStudy, *, worker_index: int = 0,
               progress: bool = False, threads: int | None = None,
               verbose: bool = False) -> dict[str, int]:
    """Run trials until the study holds exactly ``n_trials`` finished (complete or pruned)
    trials, whatever the other workers do, or until failures reach ``max(n_trials, 10)``
    (a broken objective must not loop forever); search/workers.py."""
    import optuna

    if threads:
        import torch

        torch.set_num_threads(threads)
    db = ResultsDB(study.storage)
    storage = open_storage(study.storage)
    evaluator = Evaluator(registry, study, db, progress=progress)
    sampler = make_sampler(study, worker_index, evaluator.knobs)
    optuna_study = create_or_load(study, storage, sampler)
    # the global budget that `dse worker --study NAME` reads back
    if optuna_study.user_attrs.get("n_trials") != study.n_trials:
        optuna_study.set_user_attr("n_trials", study.n_trials)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=study.n_trials, unit="trial", desc=study.name)

    def show(counts: Any) -> None:
        if bar is not None:
            bar.n = min(study.n_trials, counts["COMPLETE"] + counts["PRUNED"])
            bar.refresh()

    # Optuna would log every failure with its traceback; the objective says one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = study.scaling
    loop = TrialLoop(optuna_study, storage, db, n_trials=study.n_trials,
                     heartbeat_interval_s=s.heartbeat_interval_s,
                     grace_period_s=s.grace_period_s, max_retry=s.max_retry,
                     fail_limit=max(study.n_trials, 10),
                     # collecting costs ~60 ms a trial: only worth it with torch models
                     collect_garbage=study.space.compression)
    counts = loop.run(evaluator.objective(verbose), on_counts=show)
    if bar is not None:
        bar.close()
    return dict(counts)
