"""Pareto plots of a stored study: a PNG with matplotlib, or an interactive plotly page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dse_core.errors import DseError

__all__ = ["plot_study"]


def plot_study(study: Any, output: str | Path, *, html: bool = False) -> Path:
    """Every complete trial on the first two objectives; the Pareto front highlighted."""
    import optuna

    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise DseError(f"study {study.study_name!r} has no complete trial to plot")
    output = Path(output)
    if html:
        try:
            import plotly  # noqa: F401
        except ImportError as exc:
            raise DseError("--html needs plotly: pip install plotly") from exc
        fig = optuna.visualization.plot_pareto_front(
            study, target_names=names[:3] if len(names) <= 3 else None,
            targets=(lambda t: t.values[:2]) if len(names) > 3 else None)
        fig.write_html(str(output))
        return output
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = {t.number for t in study.best_trials}
    x_i, y_i = (0, 1) if len(names) > 1 else (0, 0)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rest = [t for t in trials if t.number not in front]
    best = sorted((t for t in trials if t.number in front), key=lambda t: t.values[x_i])
    ax.scatter([t.values[x_i] for t in rest], [t.values[y_i] for t in rest], s=14,
               color="0.65", label="trials")
    ax.plot([t.values[x_i] for t in best], [t.values[y_i] for t in best], "o-",
            color="tab:red", label="Pareto front")
    for t in best:
        label = "x".join(str(t.params[k]) for k in ("rows", "cols") if k in t.params)
        ax.annotate(label, (t.values[x_i], t.values[y_i]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(names[x_i])
    ax.set_ylabel(names[y_i])
    ax.set_title(f"{study.study_name}: {len(trials)} trials, {len(best)} on the front")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
