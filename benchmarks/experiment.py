"""The paper's comparison (docs/results.md): every method x accuracy budget x seed on one
study file, one JSON line per run, then a summary table (mean ± std) and an energy-vs-accuracy
plot.

    python benchmarks/experiment.py run studies/lenet5_mnist5k.toml -o results/exp-lenet5.jsonl \
        --budgets 1 2 3 --seeds 0 1 2
    python benchmarks/experiment.py summary results/exp-lenet5.jsonl --plot results/lenet5.png

Runs already in the output file are skipped, so an interrupted experiment resumes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Method:
    """One compared pipeline: the guiding energy model, the selection policy and scheduler,
    and what it sets over the study's scheduler options, policy options and training. The
    energy-blind baselines (inq-style, kmeans, ttq-style) ignore the guide."""

    guide: str
    policy: str
    scheduler: str
    scheduler_options: dict = field(default_factory=dict)
    policy_options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


VARIANTS = [{"criterion": "lagrangian", "energy_weight": 3.0},
            {"criterion": "lagrangian", "energy_weight": 1.0}]
SQUEEZE = {"selection_variants": VARIANTS,
           "squeeze_variants": [{"deadzone": d} for d in (0.55, 0.6, 0.65, 0.7)]}
WIDEN = {"selection_variants": VARIANTS,
         "widen_deadzones": [0.55, 0.6, 0.65, 0.7, 0.75, 0.8]}
METHODS: dict[str, Method] = {
    "paper": Method("msb_hamming", "energy_accuracy", "energy_prioritized"),
    "backtracking": Method("msb_hamming", "energy_accuracy", "energy_backtracking"),
    "backtracking-variants": Method("msb_hamming", "energy_accuracy", "energy_backtracking",
                                    {"selection_variants": VARIANTS}),
    "backtracking-deadzone": Method("msb_hamming", "energy_accuracy", "energy_backtracking",
                                    SQUEEZE),
    "backtracking-deadzone-signs": Method("msb_hamming", "energy_accuracy",
                                          "energy_backtracking", SQUEEZE,
                                          {"keep_signs": True}),
    "backtracking-deadzone-kd": Method("msb_hamming", "energy_accuracy",
                                       "energy_backtracking", SQUEEZE, {},
                                       {"distill_weight": 0.5}),
    "backtracking-deadzone-signs-kd": Method("msb_hamming", "energy_accuracy",
                                             "energy_backtracking", SQUEEZE,
                                             {"keep_signs": True}, {"distill_weight": 0.5}),
    "backtracking-widen-signs-kd": Method("msb_hamming", "energy_accuracy",
                                          "energy_backtracking", WIDEN,
                                          {"keep_signs": True}, {"distill_weight": 0.5}),
    # the ResNet-20 study's widening before its margin went from 0.5 to 0.3 (results.md)
    "backtracking-widen-signs-kd-margin-0.5": Method(
        "msb_hamming", "energy_accuracy", "energy_backtracking",
        {**WIDEN, "squeeze_margin_pct": 0.5}, {"keep_signs": True}, {"distill_weight": 0.5}),
    "backtracking-deadzone-signs-kd-global-stats": Method(
        "global_activation", "energy_accuracy", "energy_backtracking", SQUEEZE,
        {"keep_signs": True}, {"distill_weight": 0.5}),
    "backtracking-variants-global-stats": Method("global_activation", "energy_accuracy",
                                                 "energy_backtracking",
                                                 {"selection_variants": VARIANTS}),
    "backtracking-global-stats": Method("global_activation", "energy_accuracy",
                                        "energy_backtracking"),
    "powerpruning": Method("global_activation", "lowest_energy", "uniform"),
    "inq-style": Method("msb_hamming", "power_of_two", "uniform"),
    "kmeans": Method("msb_hamming", "kmeans", "uniform"),
    "ttq-style": Method("msb_hamming", "kmeans", "uniform", {"ladder": [255, 3]}),
    "paper-global-stats": Method("global_activation", "energy_accuracy", "energy_prioritized"),
    "paper-lowest-energy": Method("msb_hamming", "lowest_energy", "energy_prioritized"),
    "paper-uniform": Method("msb_hamming", "energy_accuracy", "uniform"),
}


def _taken(registry, kind: str, name: str, options: dict) -> dict:  # type: ignore[no-untyped-def]
    """The study's ``options`` that a plugin's factory takes (all, if it takes ``**kw``)."""
    params = inspect.signature(registry.get(kind, name).factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(options)
    return {k: v for k, v in options.items() if k in {p.name for p in params}}


def run(args: argparse.Namespace) -> None:
    import torch

    from dse_core.compression.compress import run_compression
    from dse_core.compression.study import load_study
    from dse_core.host.registry import get_registry

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["budget"], r["seed"]))
    registry = get_registry()
    for seed in args.seeds:
        for budget in args.budgets:
            for method in args.methods:
                if (method, budget, seed) in done:
                    continue
                m = METHODS[method]
                study = load_study(args.study, [
                    f"seed={seed}", f"compression.accuracy_budget_pct={budget}",
                    f'energy.model="{m.guide}"', f'compression.policy="{m.policy}"',
                    f'compression.scheduler="{m.scheduler}"',
                    *(f"compression.policy_options.{k}={json.dumps(v)}"
                      for k, v in m.policy_options.items()),
                    *(f"training.{k}={json.dumps(v)}" for k, v in m.training.items()),
                    *args.set])
                # the study's scheduler and selection options, restricted to what this
                # method's plugins take (the ladder and fine-tune length stay the same for
                # every method; a study's keep_signs is not lowest_energy's option)
                options = _taken(registry, "scheduler", m.scheduler,
                                 study.compression.scheduler_options)
                policy_options = _taken(registry, "selector", m.policy,
                                        study.compression.policy_options)
                study = study.model_copy(update={"compression": study.compression.model_copy(
                    update={"scheduler_options": {**options, **m.scheduler_options},
                            "policy_options": {**policy_options, **m.policy_options}})})
                started = time.perf_counter()
                result, _, _ = run_compression(registry, study)
                doc = result.to_json()
                row = {"method": method, "budget": budget, "seed": seed,
                       "wall_s": time.perf_counter() - started,
                       **{k: doc[k] for k in (
                           "float_accuracy", "baseline_accuracy", "compressed_accuracy",
                           "accuracy_drop", "baseline_mac_pj", "compressed_mac_pj",
                           "mac_reduction_pct", "total_reduction_pct",
                           "total_reduction_indexed_pct", "tune_accuracy_drop",
                           "within_budget",
                           "baseline_tune_accuracy", "compressed_tune_accuracy")},
                       "n_levels": {lc["layer"]: lc["n_levels"] for lc in doc["layers"]},
                       "deadzone": {lc["layer"]: lc["deadzone"] for lc in doc["layers"]},
                       "steps": len(doc["steps"]),
                       "overrides": args.set}
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{method:20s} budget {budget}% seed {seed}: "
                      f"{-row['mac_reduction_pct']:+.1f} % MAC energy, drop "
                      f"{row['accuracy_drop']:.2f}, {row['wall_s']:.0f} s", flush=True)


def _mean_sd(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summary(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for path in args.results
            for line in Path(path).read_text().splitlines()]
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    print("| method | budget % | runs | MAC energy reduction % | system, int8 / index storage % "
          "| accuracy drop (points) | over budget | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    baselines = {r["seed"]: r for r in rows}
    base_acc = [r["baseline_accuracy"] for r in baselines.values()]
    print(f"| int8 baseline | - | {len(base_acc)} | 0 | 0 | accuracy {_mean_sd(base_acc)} % "
          "| - | - |")
    for (method, budget), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        each = ", ".join(f"{r['mac_reduction_pct']:.1f}" for r in sorted(
            rs, key=lambda r: r["seed"]))
        system = (f"{_mean_sd([r['total_reduction_pct'] for r in rs], 2)} / "
                  f"{_mean_sd([r['total_reduction_indexed_pct'] for r in rs])}"
                  if all("total_reduction_indexed_pct" in r for r in rs) else "-")
        over = sum(r["accuracy_drop"] > budget + 1e-9 for r in rs)
        print(f"| {method} | {budget:g} | {len(rs)} | "
              f"{_mean_sd([r['mac_reduction_pct'] for r in rs])} ({each}) | {system} | "
              f"{_mean_sd([r['accuracy_drop'] for r in rs])} | {over} | "
              f"{_mean_sd([r['wall_s'] for r in rs])} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8.6, 4.6))
        shown = [m for m in METHODS if any(r["method"] == m for r in rows)]
        shown += [m for m in dict.fromkeys(r["method"] for r in rows) if m not in METHODS]
        colours = plt.get_cmap("tab20")
        for i, method in enumerate(shown):  # colour and marker: no two methods look alike
            pts = [r for r in rows if r["method"] == method]
            ax.scatter([r["accuracy_drop"] for r in pts],
                       [r["mac_reduction_pct"] for r in pts], label=method, alpha=0.8,
                       color=colours(i % 20), marker="osD^vP*Xh<>"[i % 11])
        ax.set_xlabel("accuracy drop vs int8 baseline (points, validation split)")
        ax.set_ylabel("MAC switching energy reduction (%)")
        ax.axvline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
        for budget in sorted({r["budget"] for r in rows}):
            ax.axvline(budget, color="red", lw=0.6, ls="--")  # each budget run
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(args.title or "energy vs accuracy per method")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("study")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--budgets", nargs="+", type=float, default=[1.0, 2.0, 3.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], help="extra study overrides")
    p.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("summary")
    s.add_argument("results", nargs="+")
    s.add_argument("--plot")
    s.add_argument("--title")
    args = parser.parse_args()
    {"run": run, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    main()
