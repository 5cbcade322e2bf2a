"""Search overhead and scale-out, measured side by side (docs/benchmarks.md).

energy:  energy-only search of SCALE-Sim's ResNet-18 topology (studies/resnet18_energy.toml)
         with our objective, against a bare Optuna loop with a trivial objective, same sampler
         (TPE, multivariate, same seed) and same storage kind: a SQLite file, then in memory.
         Target: ours <= 1.5x the bare loop's wall time on SQLite; >= 100 trials/s in memory.
         The access counts of every array of the space are computed first (once, then
         cached on disk, as a first search pays them) and that time is printed apart.
workers: accuracy-bearing trials (LeNet-5 / mnist5k, per-layer allowed-set sizes, a QAT
         fine-tune per plan) on PostgreSQL: 1 worker vs 2 workers (1 torch thread each).
         Target: 2 workers >= 1.6x the trials per second of 1.

    python benchmarks/bench_search.py energy [--trials 1000] [--sampler tpe]
    python benchmarks/bench_search.py workers --storage postgresql+psycopg://... [--trials 24]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bare(storage: str | None, trials: int, sampler_name: str, rows: list[int],
          cols: list[int]) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler(multivariate=True, seed=0) if sampler_name == "tpe"
               else optuna.samplers.RandomSampler(seed=0))
    study = optuna.create_study(storage=storage, sampler=sampler, study_name="bare",
                                directions=["minimize", "minimize"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        r = trial.suggest_categorical("rows", rows)
        c = trial.suggest_categorical("cols", cols)
        trial.suggest_categorical("dataflow", ["ws", "os", "is"])
        return float(r * c), 1.0

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


def _ours(storage: str, trials: int, sampler_name: str) -> float:
    from dse_core.host.registry import get_registry
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import run_worker, validate

    study = load_search_study(ROOT / "studies" / "resnet18_energy.toml", [
        f"n_trials={trials}", f'sampler.name="{sampler_name}"', f'storage="{storage}"',
        f'name="ours-{uuid.uuid4().hex[:6]}"'])
    registry = get_registry()
    validate(registry, study)
    start = time.perf_counter()
    run_worker(registry, study)
    return time.perf_counter() - start


def _warm_counts(spec) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Access counts of every array of the space, computed (or read from the disk cache)
    once, as a first search over the space does; returns (arrays, seconds)."""
    from dse_core.host.registry import get_registry
    from dse_core.mapping.traffic import access_counts
    from dse_core.types import ArrayConfig, BufferConfig
    from dse_core.workloads.layers import load_workload

    layers = load_workload(get_registry(), spec.workload.topology)
    buffers = BufferConfig(*spec.memory.buffers_kb)
    start, n = time.perf_counter(), 0
    for df in spec.space.dataflow:
        for r in spec.space.rows.choices():
            for c in spec.space.cols.choices():
                for layer in layers:
                    access_counts(layer, ArrayConfig(r, c, dataflow=df), buffers,
                                  psums=spec.memory.psums)
                n += 1
    return n, time.perf_counter() - start


def energy(args: argparse.Namespace) -> None:
    from dse_core.search.study_file import load_search_study

    spec = load_search_study(ROOT / "studies" / "resnet18_energy.toml")
    rows, cols = spec.space.rows.choices(), spec.space.cols.choices()
    arrays, warm_s = _warm_counts(spec)
    print(f"access counts of the {arrays} arrays of the space: {warm_s:.1f} s (paid once, "
          "then from the disk cache)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bare_sqlite = _bare(f"sqlite:///{tmp}/bare.db", args.trials, args.sampler, rows, cols)
        ours_sqlite = _ours(f"sqlite:///{tmp}/ours.db", args.trials, args.sampler)
    bare_mem = _bare(None, args.trials, args.sampler, rows, cols)
    ours_mem = _ours("memory", args.trials, args.sampler)
    n = args.trials
    print(f"{n} trials, sampler {args.sampler}, ResNet-18 topology (21 layers, 3 dataflows)")
    print(f"SQLite file: bare {bare_sqlite:.1f} s ({n / bare_sqlite:.1f} trials/s), ours "
          f"{ours_sqlite:.1f} s ({n / ours_sqlite:.1f} trials/s): ratio "
          f"{ours_sqlite / bare_sqlite:.2f} (target <= 1.5)")
    print(f"in memory:   bare {bare_mem:.1f} s ({n / bare_mem:.1f} trials/s), ours "
          f"{ours_mem:.1f} s ({n / ours_mem:.1f} trials/s): ratio {ours_mem / bare_mem:.2f} "
          f"(target >= 100 trials/s)")


WORKER_STUDY = """
name = "{name}"
seed = 0
n_trials = {trials}
objectives = ["energy_pj", "accuracy_drop"]
[workload]
model = "lenet5"
dataset = "mnist5k"
[space]
rows = [64]
cols = [32, 64]
compression = true
[energy]
model = "msb_hamming"
[compression]
scheduler = "per_layer"
scheduler_options = {{ ladder = [255, 64, 16, 8, 4, 3] }}
[training]
qat_epochs = 1
fine_tune_epochs = {epochs}
[sampler]
name = "random"
[scaling]
heartbeat_interval_s = 30
grace_period_s = 300
"""


def _workers(storage: str, trials: int, workers: int, epochs: float, tmp: Path
             ) -> tuple[float, float]:
    """(wall time of the whole run, seconds from the first trial's start to the last trial's
    end: the trial throughput without process start-up)."""
    name = f"workers{workers}-{uuid.uuid4().hex[:6]}"
    path = tmp / f"w{workers}.toml"
    path.write_text(WORKER_STUDY.format(name=name, trials=trials, epochs=epochs))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "dse_core.cli", "worker", "--study-file",
                               str(path), "--storage", storage, "--worker-index", str(i),
                               "--threads", "1"], env=env) for i in range(1, workers + 1)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"worker failed with {p.returncode}")
    wall = time.perf_counter() - start
    from dse_core.search.results import load_study

    done = [t for t in load_study(storage, name).trials if t.state.name == "COMPLETE"]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    return wall, span * trials / len(done)


def workers(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # warm the caches (trained model, statistics, characterisation, QAT baseline)
        _workers(args.storage, 1, 1, args.epochs, Path(tmp))
        one = _workers(args.storage, args.trials, 1, args.epochs, Path(tmp))
        two = _workers(args.storage, args.trials, 2, args.epochs, Path(tmp))
    n = args.trials
    print(f"{n} accuracy-bearing trials (LeNet-5, {args.epochs} QAT epochs per plan)"
          f" on {args.storage.split('@')[-1]}")
    for label, i in (("whole run, incl. start-up", 0), ("trials only", 1)):
        print(f"{label}: 1 worker {one[i]:.1f} s ({n / one[i]:.2f} trials/s); 2 workers "
              f"{two[i]:.1f} s ({n / two[i]:.2f} trials/s): speed-up {one[i] / two[i]:.2f} "
              "(target >= 1.6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("energy")
    e.add_argument("--trials", type=int, default=1000)
    e.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    w = sub.add_parser("workers")
    w.add_argument("--storage", required=True)
    w.add_argument("--trials", type=int, default=24)
    w.add_argument("--epochs", type=float, default=0.5)
    args = parser.parse_args()
    {"energy": energy, "workers": workers}[args.cmd](args)


if __name__ == "__main__":
    main()
