"""``dse run / worker / studies / pareto / show / export / plot`` (docs/search.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from dse_core.cli.formatting import FORMATS, render
from dse_core.cli.group import registry_of, state
from dse_core.errors import DseError

__all__ = ["COMMANDS"]

storage_option = click.option("--storage", required=True, metavar="URL",
                              help="SQLAlchemy URL of the results database, e.g. "
                              "sqlite:///quickstart.db or postgresql+psycopg://user@host/db.")
fmt_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                          show_default=True)


def _prepare(ctx: click.Context, study: Any) -> Any:
    """Validate plugins and record the study (spec and provenance) before any trial."""
    from dse_core.search.provenance import provenance
    from dse_core.search.results import ResultsDB
    from dse_core.search.trials import validate

    registry = registry_of(ctx)
    validate(registry, study)  # bad names and options fail here, before anything is created
    prov = provenance(registry, study)
    db = ResultsDB(study.storage)
    spec = study.model_dump(mode="json", exclude={"storage", "n_trials"})
    existing = db.study_spec(study.name)
    if existing is not None and "memory" not in existing:
        raise DseError(f"study {study.name!r} was recorded before system energy (its "
                       "energy_pj is the PE array's alone, docs/energy-model.md §9); its "
                       "results stay readable, but new trials would not compare: give the "
                       "study a new name")
    # scaling (heartbeats, retries) is how workers run, not what the study is
    changed = sorted(k for k in (set(spec) | set(existing or {})) - {"scaling"}
                     if existing is not None and spec.get(k) != existing.get(k))
    if changed:
        raise DseError(f"study {study.name!r} already exists in this database with a different "
                       f"spec ({', '.join(changed)} changed); give it a new name")
    if existing is None:
        db.record_study(study.name, spec, prov)
    else:
        _warn_on_other_versions(db, study.name, prov)
    from dse_core.search.results import open_storage

    open_storage(study.storage)  # Optuna's schema exists before any worker starts
    return registry


def _warn_on_other_versions(db: Any, name: str, prov: dict[str, Any]) -> None:
    """A continued study: results made with other versions will sit side by side, so say
    what changed since the last run, and record this run's provenance."""
    from dse_core.search.provenance import provenance_changes

    recorded = db.provenance(name)
    latest = (recorded.get("later_runs") or [recorded])[-1]
    changes = provenance_changes(latest, prov)
    if changes:
        click.echo(f"warning: study {name!r} continues with other versions than its last run "
                   "(its earlier trials were made with the old ones):", err=True)
        for change in changes:
            click.echo(f"  {change}", err=True)
        db.add_run_provenance(name, prov)


def _print_front(study_name: str, storage: str, fmt: str, where: str | None = None) -> None:
    from dse_core.search.results import load_study, pareto_rows

    study = load_study(storage, study_name)
    rows = [{k: v for k, v in r.items() if k != "state"}  # all complete
            for r in pareto_rows(study, where)]
    if fmt == "table":  # a terminal's width: derived and secondary metrics only in csv/json
        hidden = set(TABLE_HIDDEN_METRICS) - set(study.metric_names or [])
        rows = [{k: v for k, v in r.items() if k not in hidden} for r in rows]
    click.echo(render(rows, fmt, meta={"study": study_name, "pareto_front": len(rows)}))


#: metrics `dse pareto` leaves out of its table unless they are objectives (csv and json
#: carry every one)
TABLE_HIDDEN_METRICS = ("accuracy", "val_accuracy", "pe_count", "edp", "array_energy_pj",
                        "area_mm2")


@click.command("run")
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a study key, e.g. --set n_trials=100.")
@click.option("--storage", metavar="URL", help="Results database (overrides the study's).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine (PostgreSQL for more than one).")
@fmt_option
@click.pass_context
def run_cmd(ctx: click.Context, study_file: str, overrides: Sequence[str],
            storage: str | None, workers: int, fmt: str) -> None:
    """Run (or continue) a search study and print its Pareto front."""
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import run_worker

    study = load_search_study(study_file, [*overrides, *([f"storage={json.dumps(storage)}"]
                                                         if storage else [])])
    if workers > 2 and study.storage.startswith("sqlite"):
        raise DseError(f"--workers {workers} with SQLite: a SQLite file serves at most 2 "
                       "workers on one machine (measured, docs/scaling.md); use "
                       "--storage postgresql+psycopg://… for more")
    registry = _prepare(ctx, study)
    started = datetime.now()  # Optuna stores naive local times
    procs = []
    for index in range(1, workers):
        cmd = [sys.executable, "-m", "dse_core.cli", "worker", "--study-file",
               str(Path(study_file).resolve()), "--storage", study.storage,
               "--worker-index", str(index), "--threads", "1",
               *[a for o in overrides for a in ("--set", o)]]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    try:
        run_worker(registry, study, worker_index=0, progress=sys.stderr.isatty(),
                   threads=1 if workers > 1 else None, verbose=_verbose() > 0)
    finally:
        for p in procs:
            p.wait()
    for index, p in enumerate(procs, start=1):
        if p.returncode:
            click.echo(f"warning: worker {index} exited with code {p.returncode} (its trials "
                       "are failed and retried by the others)", err=True)
    _report_run(study, started, fmt)


def _verbose() -> int:
    return int(state["verbose"])


def _report_run(study: Any, started: datetime, fmt: str) -> None:
    """The end-of-run summary of every worker's trials (counted after all have stopped):
    trials, distinct designs, failures by message; the front, or an error when trials failed
    for a reason that will fail again."""
    from collections import Counter

    from dse_core.search.report import distinct_designs, failures_since
    from dse_core.search.results import load_study

    optuna_study = load_study(study.storage, study.name)
    counts = Counter(t.state.name for t in optuna_study.get_trials(deepcopy=False))
    failures = failures_since(optuna_study, started)
    click.echo(f"study {study.name}: " + ", ".join(f"{v} {k.lower()}" for k, v in
                                                  sorted(counts.items()))
               + f"; {distinct_designs(optuna_study)} distinct designs", err=True)
    if failures.failed:
        click.echo(f"{failures.failed} trials failed in this run:", err=True)
        for line in failures.lines():
            click.echo(line, err=True)
    if failures.configuration:
        raise DseError(f"{failures.configuration} trials failed with a configuration error "
                       "(above), so the front would hold only the designs that survived; fix "
                       "the cause and run again (the study continues), or read the partial "
                       f"front with dse pareto {study.name} --storage …")
    _print_front(study.name, study.storage, fmt)
    if failures.failed > failures.worker_lost:  # a lost worker's trial was redone: no loss
        click.echo(f"warning: {failures.failed - failures.worker_lost} trials failed (above); "
                   "the front is of the others", err=True)
        click.get_current_context().exit(1)


@click.command("worker")
@click.option("--study", "study_name", help="Study name in --storage (its spec is stored "
              "there).")
@click.option("--study-file", type=click.Path(dir_okay=False),
              help="Or the study file itself.")
@storage_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--worker-index", type=click.IntRange(min=0), default=None,
              help="Seeds this worker's sampler (default: from the process id).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads (1 when several workers share a machine).")
@click.pass_context
def worker_cmd(ctx: click.Context, study_name: str | None, study_file: str | None,
               storage: str, overrides: Sequence[str], worker_index: int | None,
               threads: int) -> None:
    """Join a study as one more worker (any machine that reaches --storage)."""
    from dse_core.search.results import ResultsDB
    from dse_core.search.study_file import SearchStudy, load_search_study
    from dse_core.search.trials import run_worker

    if study_file:
        study = load_search_study(study_file, [*overrides, f"storage={json.dumps(storage)}"])
        _prepare(ctx, study)
    elif study_name:
        spec = ResultsDB(storage, create=False).study_spec(study_name)
        if spec is None:
            from dse_core.search.results import list_studies, safe_url

            known = [s["study"] for s in list_studies(storage)]
            raise DseError(f"no study {study_name!r} in {safe_url(storage)}; studies: "
                           + (", ".join(known) or "(none)"))
        study = SearchStudy.model_validate({**spec, "storage": storage,
                                            "n_trials": _n_trials(storage, study_name, spec)})
        from dse_core.search.provenance import provenance
        from dse_core.search.trials import validate

        validate(registry_of(ctx), study)  # a file this machine lacks: one line, no trial

        _warn_on_other_versions(ResultsDB(storage, create=False), study_name,
                                provenance(registry_of(ctx), study))
    else:
        raise DseError("dse worker: give --study NAME or --study-file FILE")
    registry = registry_of(ctx)
    counts = run_worker(registry, study, worker_index=worker_index if worker_index is not None
                        else os.getpid() % 997 + 1, threads=threads)
    click.echo("worker done: " + ", ".join(f"{v} {k.lower()}" for k, v in
                                            sorted(counts.items())), err=True)


def _n_trials(storage: str, name: str, spec: dict[str, Any]) -> int:
    from dse_core.search.results import load_study

    return int(load_study(storage, name).user_attrs.get("n_trials", 50))


@click.command("studies")
@storage_option
@fmt_option
def studies_cmd(storage: str, fmt: str) -> None:
    """List the studies in a results database."""
    from dse_core.search.results import list_studies

    click.echo(render(list_studies(storage), fmt))


@click.command("pareto")
@click.argument("name")
@storage_option
@click.option("--where", help='Filter, e.g. "accuracy_drop<=2, cycles<2e5".')
@fmt_option
def pareto_cmd(name: str, storage: str, where: str | None, fmt: str) -> None:
    """The Pareto front of a study (feasible, non-dominated trials)."""
    _print_front(name, storage, fmt, where)


@click.command("show")
@click.argument("name")
@click.argument("trial", type=int)
@storage_option
@click.option("--codes", is_flag=True, help="Also list each layer's allowed int8 codes.")
@fmt_option
def show_cmd(name: str, trial: int, storage: str, codes: bool, fmt: str) -> None:
    """One design: its parameters, metrics and per-layer breakdown."""
    from dse_core.search.results import trial_detail

    summary, stored = trial_detail(storage, name, trial)
    layers = []
    for r in stored:  # the same names and units as dse map and dse energy
        row = {k: v for k, v in r.items() if k not in ("utilisation", "mapping_efficiency",
                                                        "allowed")}
        for old, new in (("utilisation", "util_pct"), ("mapping_efficiency", "mapping_eff_pct")):
            if r.get(old) is not None:
                row[new] = 100 * r[old]
        if codes and r.get("allowed"):
            allowed = json.loads(r["allowed"])
            row["allowed_codes"] = (f"all {len(allowed)} ({allowed[0]}..{allowed[-1]})"
                                    if len(allowed) >= 255 else " ".join(map(str, allowed)))
        row["pe_clock_pj"] = sum(r[k] or 0.0 for k in ("clock_pj", "idle_pj", "fill_drain_pj",
                                                        "weight_load_pj"))
        layers.append(row)
    summed = ("cycles", "mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj",
              "weight_load_pj", "pe_clock_pj", "sram_ifmap_pj", "sram_filter_pj",
              "sram_ofmap_pj", "dram_pj", "total_pj")
    total = {"layer": "total", **{k: sum(r[k] for r in layers if r.get(k) is not None)
                                  for k in summed}} if layers else None
    from dse_core.search.results import ResultsDB

    prov = ResultsDB(storage, create=False).provenance(name)
    if fmt != "table":
        click.echo(render(layers, fmt, total=total, meta={**summary, "provenance": prov}))
        return
    if summary.get("error") or summary.get("state") == "fail":  # no layers: say why
        reason = summary.get("error") or ("its worker stopped before it finished (no error "
                                          "recorded); its design was tried again")
        click.echo(f"trial {trial} failed: {reason}")
    else:  # the clock as one column; json and csv carry every term and the word counts
        columns = ["layer", "cycles", "util_pct", "n_levels", "mac_switching_pj",
                   "pe_clock_pj", "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj",
                   "dram_pj", "total_pj"] + (["allowed_codes"] if codes else [])
        click.echo(render(layers, fmt, columns=columns, total=total, meta=summary))
    for line in _provenance_lines(prov):
        click.echo(line)


def _provenance_lines(prov: dict[str, Any]) -> list[str]:
    """The study's provenance as a reader wants it: what made these numbers."""
    if not prov:
        return []
    lines = ["", "provenance (what made these results):"]
    for key, value in sorted(prov.get("plugins", {}).items()):
        lines.append(f"  {key:<32} {value}")
    packages = ", ".join(f"{k} {v}" for k, v in prov.get("packages", {}).items() if v)
    lines.append(f"  packages: {packages}")
    lines.append(f"  workload: {prov.get('workload', '')}  seed: {prov.get('seed')}")
    for key, info in sorted(prov.get("files", {}).items()):
        lines.append(f"  {key}: {info['path']} ({info['digest']})")
    for run in prov.get("later_runs", []):
        lines.append(f"  continued {run.get('at', '')} with other versions: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(run.get("plugins", {}).items())))
    return lines


@click.command("export")
@click.argument("name")
@storage_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--layers", is_flag=True, help="Also each complete trial's per-layer rows: CSV "
              "in long format (a row per trial and layer), JSON nested under each trial.")
def export_cmd(name: str, storage: str, fmt: str, layers: bool) -> None:
    """Every trial of a study: design parameters, objectives, metrics, plan, error."""
    from dse_core.search.results import ResultsDB, export_columns, load_study, trial_rows

    study = load_study(storage, name)
    rows = trial_rows(study)
    columns = export_columns(study, rows)
    meta = {"study": name, "objectives": list(study.metric_names or [])}
    per_layer = ResultsDB(storage, create=False).study_layers(name) if layers else {}
    if fmt == "json":
        doc_rows = [{**{c: r.get(c) for c in columns},
                     **({"layers": per_layer.get(r["trial"], [])} if layers else {})}
                    for r in rows]
        click.echo(json.dumps({"meta": meta, "rows": doc_rows}, indent=2, default=str))
        return
    flat = [{**r, "plan": json.dumps(r["plan"], sort_keys=True)} if "plan" in r else r
            for r in rows]
    if layers:  # long format: the trial's columns repeated on each of its layer rows; a
        # layer column named like a trial's (cycles) is prefixed: layer_cycles
        def column(k: str) -> str:
            return f"layer_{k}" if k in columns else k
        layer_columns = list(dict.fromkeys(column(k) for v in per_layer.values() for lr in v
                                           for k in lr))
        flat = [{**r, **{column(k): v for k, v in lr.items()}} for r in flat
                for lr in per_layer.get(r["trial"], [])]
        columns = columns + layer_columns
    click.echo(render(flat, "csv", columns=columns))


@click.command("plot")
@click.argument("name")
@storage_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="PNG (matplotlib), or HTML with --html (plotly).")
@click.option("--html", is_flag=True, help="An interactive plotly page instead of a PNG.")
def plot_cmd(name: str, storage: str, output: str, html: bool) -> None:
    """Plot the designs on the first two objectives: the front of dse pareto highlighted
    (the third objective as colour), designs over the accuracy budget marked."""
    from dse_core.search.plotting import plot_data, plot_study
    from dse_core.search.results import load_study

    study = load_study(storage, name)
    data = plot_data(study)  # the front and the counts, computed once for plot and title
    path = plot_study(study, output, html=html, data=data)
    click.echo(f"wrote {path}: {data.title()}")


@click.command("report")
@click.argument("name")
@storage_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The HTML page to write (default: NAME-report.html here).")
@click.option("--trial", type=click.IntRange(min=0), default=None,
              help="The design to take apart (default: the knee of the front).")
def report_cmd(name: str, storage: str, output: str | None, trial: int | None) -> None:
    """One self-contained HTML page of a study: the front, one design's per-layer
    breakdown, the energy composition, the provenance (opens offline)."""
    from dse_core.search.html_report import write_report

    summary = write_report(storage, name, output or f"{name}-report.html", trial=trial)
    click.echo(f"report: {summary.path} ({summary.size_bytes / 1e6:.1f} MB; trial "
               f"{summary.trial}, {summary.chosen_as}; {summary.front} designs on the front)")


COMMANDS = [run_cmd, worker_cmd, studies_cmd, pareto_cmd, show_cmd, export_cmd, plot_cmd,
            report_cmd]
