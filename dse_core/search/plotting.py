"""Pareto plots of a stored study: a PNG with matplotlib, or an interactive plotly page.

Both draw the same thing, counted as the tables count it: one point per distinct design (a
repeated design is drawn once), the front that ``dse pareto`` lists (feasible and
non-dominated on *every* objective) highlighted, the third objective as colour, designs that
break the accuracy budget marked, and the 2-D front of the plotted pair as a step line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse_core.errors import DseError
from dse_core.search.report import design_key

__all__ = ["plot_study", "PlotData", "plot_data", "pareto_figure", "AXIS_LABELS"]

#: objective -> (axis label with its unit, scale from the stored unit)
AXIS_LABELS: dict[str, tuple[str, float]] = {
    "energy_pj": ("system energy (µJ)", 1e-6),
    "mac_energy_pj": ("MAC switching energy (µJ)", 1e-6),
    "array_energy_pj": ("PE array energy (µJ)", 1e-6),
    "memory_energy_pj": ("memory energy (µJ)", 1e-6),
    "onchip_kb": ("on-chip buffers (kB)", 1.0), "area_mm2": ("area (mm²)", 1.0),
    "accuracy": ("accuracy (%)", 1.0), "accuracy_drop": ("accuracy drop (points)", 1.0),
    "cycles": ("latency (cycles)", 1.0), "pe_count": ("PEs", 1.0),
    "edp": ("energy-delay product (µJ·cycles)", 1e-6),
}


def _label(name: str) -> tuple[str, float]:
    return AXIS_LABELS.get(name, (name, 1.0))


def _short(name: str) -> str:
    return _label(name)[0].split(" (")[0]


@dataclass(frozen=True)
class Design:
    trial: int
    label: str          # e.g. "64x32"
    values: tuple[float, ...]
    feasible: bool
    on_front: bool      # on the front that dse pareto lists
    on_pair_front: bool  # non-dominated on the two plotted objectives (feasible only)


@dataclass(frozen=True)
class PlotData:
    study: str
    objectives: list[str]
    directions: list[str]
    n_trials: int
    designs: list[Design]

    @property
    def front(self) -> list[Design]:
        return [d for d in self.designs if d.on_front]

    def title(self) -> str:
        k = len(self.objectives)
        return (f"{self.study}: {self.n_trials} trials, {len(self.designs)} designs, "
                f"{len(self.front)} on the {k}-objective front")


def _dominates(a: tuple[float, ...], b: tuple[float, ...], signs: list[float]) -> bool:
    sa = [s * v for s, v in zip(signs, a, strict=True)]
    sb = [s * v for s, v in zip(signs, b, strict=True)]
    return all(x <= y for x, y in zip(sa, sb, strict=True)) and sa != sb


def plot_data(study: Any) -> PlotData:
    """The designs of a study as the plot shows them (see the module docstring)."""
    import optuna

    from dse_core.search.results import pareto_rows

    names = list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])
    directions = [d.name.lower() for d in study.directions]
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise DseError(f"study {study.study_name!r} has no complete trial to plot")
    front = {r["trial"] for r in pareto_rows(study)}
    seen: set[str] = set()
    firsts = []
    for t in complete:  # one point per design: the first trial that evaluated it
        key = design_key(t.params, t.user_attrs.get("plan"))
        if key not in seen and "repeat_of" not in t.user_attrs:
            seen.add(key)
            firsts.append(t)
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    pair = [0, 1] if len(names) > 1 else [0]
    pair_signs = [signs[i] for i in pair]

    def feasible(t: Any) -> bool:
        return all(c <= 0 for c in t.constraints.values())

    pair_points = [tuple(t.values[i] for i in pair) for t in firsts if feasible(t)]
    designs = []
    for t in firsts:
        point = tuple(t.values[i] for i in pair)
        ok = feasible(t)
        designs.append(Design(
            trial=t.number,
            label="x".join(str(t.params[k]) for k in ("rows", "cols") if k in t.params),
            values=tuple(float(v) for v in t.values), feasible=ok,
            on_front=t.number in front,
            on_pair_front=ok and not any(_dominates(p, point, pair_signs)
                                         for p in pair_points)))
    return PlotData(study.study_name, names, directions, len(complete), designs)


def plot_study(study: Any, output: str | Path, *, html: bool = False,
               data: PlotData | None = None) -> Path:
    """Write the study's plot to ``output`` (PNG, or an HTML page with ``html``); ``data``
    when the caller already has the study's :func:`plot_data`."""
    data = data or plot_data(study)
    output = Path(output)
    if html:
        _write_html(data, output)
    else:
        _write_png(data, output)
    return output


def _pair_line(data: PlotData) -> tuple[list[float], list[float]]:
    """The 2-D front of the plotted pair as a staircase, in plot units."""
    (sx, sy) = (_label(data.objectives[0])[1], _label(data.objectives[1])[1])
    pts = sorted((d.values[0] * sx, d.values[1] * sy) for d in data.designs if d.on_pair_front)
    xs: list[float] = []
    ys: list[float] = []
    for i, (x, y) in enumerate(pts):
        if i:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys


def _y_window(data: PlotData, y_i: int, scale: float) -> tuple[float, float] | None:
    """The y range of the feasible designs with some head-room: designs far over the
    accuracy budget would squash the axis, so they are drawn on its top edge instead."""
    good = [d.values[y_i] * scale for d in data.designs if d.feasible]
    if not good:
        return None
    span = max(good) - min(good)
    ceiling = max(good) + max(span, abs(max(good)) * 0.1, 1e-12) * 0.5
    return min(good) - 0.05 * (ceiling - min(good)), ceiling


def _clip_bad(bad: list[Design], y_i: int, scale: float,
              window: tuple[float, float] | None) -> tuple[list[float], int]:
    ys = [d.values[y_i] * scale for d in bad]
    if window is None:
        return ys, 0
    return [min(y, window[1]) for y in ys], sum(y > window[1] for y in ys)


def _bad_label(count: int, above: int) -> str:
    return (f"over the accuracy budget ({count}"
            + (f", {above} off the scale, drawn on the top edge)" if above else ")"))


def _write_png(data: PlotData, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = data.objectives
    x_name, (x_label, sx) = names[0], _label(names[0])
    y_i = 1 if len(names) > 1 else 0
    y_name = names[y_i]
    y_label, sy = _label(y_name)
    fig, ax = plt.subplots(figsize=(7.2, 5.6))
    rest = [d for d in data.designs if d.feasible and not d.on_front]
    bad = [d for d in data.designs if not d.feasible]
    ax.scatter([d.values[0] * sx for d in rest], [d.values[y_i] * sy for d in rest], s=16,
               color="0.7", label=f"other designs ({len(rest)})")
    window = _y_window(data, y_i, sy)
    if bad:
        ys, above = _clip_bad(bad, y_i, sy, window)
        ax.scatter([d.values[0] * sx for d in bad], ys, s=22, marker="x",
                   color="tab:red", clip_on=False, label=_bad_label(len(bad), above))
        if window is not None and above:
            ax.set_ylim(*window)
    if len(names) > 1:
        xs, ys = _pair_line(data)
        ax.plot(xs, ys, "--", color="0.35", lw=0.9,
                label=f"front of {_short(x_name)} and {_short(y_name)} alone")
    front = data.front
    fx = [d.values[0] * sx for d in front]
    fy = [d.values[y_i] * sy for d in front]
    label = f"Pareto front, as dse pareto ({len(front)})"
    if len(names) > 2:
        z_label, sz = _label(names[2])
        points = ax.scatter(fx, fy, c=[d.values[2] * sz for d in front], cmap="viridis",
                            s=46, edgecolors="black", linewidths=0.6, zorder=3, label=label)
        fig.colorbar(points, ax=ax, label=f"{z_label} of the front")
    else:
        ax.scatter(fx, fy, s=46, color="tab:blue", edgecolors="black", linewidths=0.6,
                   zorder=3, label=label)
    # designs at (nearly) the same point share one label, "64x64, 64x128", not two on top
    # of each other
    groups: dict[tuple[float, float], list[str]] = {}
    span_x = (max(fx) - min(fx)) or 1.0
    span_y = (max(fy) - min(fy)) or 1.0
    for d, x, y in zip(front, fx, fy, strict=True):
        key = next((k for k in groups if abs(k[0] - x) < 0.02 * span_x
                    and abs(k[1] - y) < 0.02 * span_y), (x, y))
        groups.setdefault(key, [])
        if d.label not in groups[key]:
            groups[key].append(d.label)
    for (x, y), labels in groups.items():
        ax.annotate(", ".join(labels), (x, y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(data.title(), fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.05, y=0.06)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
              frameon=False)
    fig.tight_layout()
    fig.savefig(output, dpi=120, bbox_inches="tight")  # the legend below the axes, whole
    plt.close(fig)


def _write_html(data: PlotData, output: Path) -> None:
    pareto_figure(data).write_html(str(output), include_plotlyjs=True)


def plotly() -> Any:
    """plotly's graph objects, or one line saying how to get them."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise DseError("this needs plotly: pip install 'systolic-dse[plot]' "
                       "(or pip install plotly)") from exc
    return go


def pareto_figure(data: PlotData) -> Any:
    """The interactive front: the same designs, front and marks as the PNG."""
    go = plotly()
    names = data.objectives
    scales = [_label(n)[1] for n in names]
    y_i = 1 if len(names) > 1 else 0

    def hover(d: Design) -> str:
        parts = [f"trial {d.trial}, array {d.label}"] + [
            f"{_label(n)[0]}: {v * s:.4g}" for n, v, s in zip(names, d.values, scales,
                                                              strict=True)]
        return "<br>".join(parts + ([] if d.feasible else ["over the accuracy budget"]))

    fig = go.Figure()
    rest = [d for d in data.designs if d.feasible and not d.on_front]
    if rest:
        fig.add_trace(go.Scatter(
            x=[d.values[0] * scales[0] for d in rest],
            y=[d.values[y_i] * scales[y_i] for d in rest], mode="markers",
            name=f"other designs ({len(rest)})", marker={"color": "#b3b3b3", "size": 6},
            text=[hover(d) for d in rest], hoverinfo="text"))
    bad = [d for d in data.designs if not d.feasible]
    window = _y_window(data, y_i, scales[y_i])
    if bad:
        ys, above = _clip_bad(bad, y_i, scales[y_i], window)
        fig.add_trace(go.Scatter(
            x=[d.values[0] * scales[0] for d in bad], y=ys, mode="markers",
            name=_bad_label(len(bad), above), cliponaxis=False,
            marker={"color": "#d62728", "size": 7, "symbol": "x"},
            text=[hover(d) for d in bad], hoverinfo="text"))
        if window is not None and above:
            fig.update_yaxes(range=list(window))
    if len(names) > 1:
        xs, ys = _pair_line(data)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip",
                                 line={"dash": "dash", "color": "#595959", "width": 1},
                                 name=f"front of {_short(names[0])} and {_short(names[1])} "
                                      "alone"))
    front = data.front
    marker: dict[str, Any] = {"size": 10, "line": {"width": 1, "color": "black"}}
    if len(names) > 2:
        marker.update(color=[d.values[2] * scales[2] for d in front], colorscale="Viridis",
                      showscale=True, colorbar={"title": _label(names[2])[0]})
    fig.add_trace(go.Scatter(
        x=[d.values[0] * scales[0] for d in front],
        y=[d.values[y_i] * scales[y_i] for d in front], mode="markers+text",
        text=[d.label for d in front], textposition="top right",
        hovertext=[hover(d) for d in front], hoverinfo="text", marker=marker,
        name=f"Pareto front, as dse pareto ({len(front)})"))
    fig.update_layout(title=data.title(), xaxis_title=_label(names[0])[0],
                      yaxis_title=_label(names[y_i])[0], template="plotly_white",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0})
    return fig
