"""``dse report``: one self-contained HTML page of a study, for a colleague (docs/cli.md).

The front of the first two objectives (the same designs and marks as ``dse plot``), then one
design — the knee of the front, or the trial asked for — taken apart: the per-layer energy as
stacked bars (MAC switching, PE clock, SRAM, DRAM), cycles and utilisation per layer, the
allowed-set size per layer when the study compresses, the network's energy composition, and
the study's provenance. Drawn with plotly, already the interactive plot's library, with its
JavaScript inlined once, so the page opens offline (about 5 MB). Under each figure a caption
written by the page itself from what it drew (the points of the front, the layers) lets a
reader, and the browser test, check the drawing against the tables.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dse_core.errors import DseError
from dse_core.search.plotting import Design, PlotData, _label, pareto_figure, plot_data, plotly

__all__ = ["write_report", "knee", "ReportSummary"]

#: the parts of a layer's energy, as stacked: name -> the dse_trial_layers columns summed
PARTS: dict[str, tuple[str, ...]] = {
    "MAC switching": ("mac_switching_pj",),
    "PE clock": ("clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj"),
    "SRAM": ("sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj"),
    "DRAM": ("dram_pj",),
}
_STATES = {"fail": "failed", "running": "still running", "waiting": "waiting to run"}
COLOURS = {"MAC switching": "#1f77b4", "PE clock": "#9467bd", "SRAM": "#2ca02c",
           "DRAM": "#d62728"}


@dataclass(frozen=True)
class ReportSummary:
    path: Path
    trial: int
    chosen_as: str      # "the knee of the front" or "asked for"
    front: int          # designs on the front
    size_bytes: int


def knee(data: PlotData) -> Design:
    """The front design nearest the ideal point, every objective scaled to the front's
    range (the usual compromise when nobody has said which objective matters more)."""
    front = data.front
    if not front:
        raise DseError(f"study {data.study!r} has no feasible design on its front")
    signs = [1.0 if d == "minimize" else -1.0 for d in data.directions]
    columns = list(zip(*[[s * v for s, v in zip(signs, d.values, strict=True)] for d in front],
                       strict=True))
    lows, spans = [min(c) for c in columns], [(max(c) - min(c)) or 1.0 for c in columns]

    def distance(d: Design) -> float:
        return sum(((s * v - lo) / span) ** 2 for s, v, lo, span in
                   zip(signs, d.values, lows, spans, strict=True))
    return min(front, key=lambda d: (distance(d), d.trial))


def _parts(row: dict[str, Any]) -> dict[str, float]:
    return {part: sum(float(row.get(c) or 0.0) for c in cols) for part, cols in PARTS.items()}


def _layer_figures(layers: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
    go = plotly()
    names = [r["layer"] for r in layers]
    energy = go.Figure()
    for part in PARTS:
        energy.add_trace(go.Bar(name=part, x=names, y=[_parts(r)[part] * 1e-3 for r in layers],
                                marker_color=COLOURS[part]))
    energy.update_layout(barmode="stack", template="plotly_white", yaxis_title="energy (nJ)",
                         title="Energy per layer", legend={"orientation": "h", "y": -0.25})
    timing = go.Figure()
    timing.add_trace(go.Bar(name="cycles", x=names, y=[r["cycles"] for r in layers],
                            marker_color="#7f7f7f"))
    timing.add_trace(go.Scatter(name="utilisation (%)", x=names, yaxis="y2", mode="lines+markers",
                                y=[100 * float(r["utilisation"]) for r in layers]))
    timing.update_layout(template="plotly_white", title="Cycles and utilisation per layer",
                         yaxis={"title": "cycles"},
                         yaxis2={"title": "utilisation (%)", "overlaying": "y", "side": "right",
                                 "range": [0, 105]}, legend={"orientation": "h", "y": -0.25})
    figures = [("layers", energy, "layers"), ("timing", timing, "layers")]
    if any(r.get("n_levels") is not None for r in layers):
        levels = go.Figure(go.Bar(x=names, y=[r.get("n_levels") or 0 for r in layers],
                                  marker_color="#ff7f0e", name="allowed-set size"))
        levels.update_traces(text=[r.get("n_levels") for r in layers], textposition="outside")
        levels.update_layout(template="plotly_white", title="Allowed int8 codes per layer",
                             yaxis={"title": "codes (log scale)", "type": "log",
                                    "range": [0, 2.6]})
        figures.append(("levels", levels, "layers"))
    return figures


def _composition(layers: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    totals = {part: 0.0 for part in PARTS}
    for row in layers:
        for part, value in _parts(row).items():
            totals[part] += value
    return totals, sum(totals.values())


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


#: after the figures are drawn, each caption says what its figure holds, read off the SVG
_CAPTIONS_JS = """
function dseCaptions() {
  var front = document.querySelectorAll('#pareto .scatterlayer .trace');
  var last = front[front.length - 1];
  var points = last ? last.querySelectorAll('path.point').length : 0;
  document.getElementById('pareto-drawn').textContent =
      points + ' designs drawn on the front';
  document.getElementById('pareto-drawn').dataset.points = points;
  var bars = document.querySelectorAll('#layers .barlayer .trace');
  var n = bars.length ? bars[0].querySelectorAll('path').length : 0;
  document.getElementById('layers-drawn').textContent = n + ' layers drawn';
  document.getElementById('layers-drawn').dataset.layers = n;
}
window.addEventListener('load', function () { setTimeout(dseCaptions, 0); });
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.caption { color: #555; font-size: 0.9em; margin: 0 0 1.5em; }
.wide { overflow-x: auto; }
"""


def write_report(url: str, name: str, output: str | Path, *, trial: int | None = None
                 ) -> ReportSummary:
    """Write the page; every check (study, trial, plotly) before the file is written."""
    from dse_core.search.results import ResultsDB, load_study, pareto_rows, trial_detail

    study = load_study(url, name)
    data = plot_data(study)
    if trial is None:
        chosen, how = knee(data).trial, "the knee of the front"
    else:
        chosen, how = trial, "asked for"
    summary, layers = trial_detail(url, name, chosen)
    if not layers:
        state = _STATES.get(summary["state"], summary["state"])
        raise DseError(f"trial {chosen} of study {name!r} is {state}: it has no "
                       "per-layer breakdown (choose a complete trial with --trial)")
    go = plotly()
    figures = [("pareto", pareto_figure(data), "front")] + _layer_figures(layers)
    totals, total = _composition(layers)
    composition = go.Figure()
    for part, value in totals.items():
        composition.add_trace(go.Bar(name=f"{part} {100 * value / total:.1f} %", x=[value * 1e-6],
                                     y=["network"], orientation="h",
                                     marker_color=COLOURS[part]))
    composition.update_layout(barmode="stack", template="plotly_white", height=260,
                              title=f"Energy composition of trial {chosen}",
                              xaxis_title="energy (µJ)", legend={"orientation": "h", "y": -0.5})
    figures.insert(3, ("composition", composition, ""))
    from dse_core.search.report import DESIGN_PARAMS

    front_rows = pareto_rows(study)
    objectives = list(study.metric_names or [])
    front_columns = ["trial"] + [k for k in DESIGN_PARAMS if front_rows and k in front_rows[0]]
    front_columns += objectives + ["feasible"] * any("feasible" in r for r in front_rows)
    prov = ResultsDB(url, create=False).provenance(name)
    divs = []
    for div_id, fig, caption in figures:
        divs.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))
        if caption == "front":
            divs.append(f'<p class="caption" id="pareto-drawn">{len(data.front)} designs on '
                        "the front (dse pareto)</p>")
        elif div_id == "layers":
            divs.append(f'<p class="caption" id="layers-drawn">{len(layers)} layers</p>')
    design = ", ".join(f"{k} = {v}" for k, v in summary.items()
                       if k not in ("trial", "state", "error") and not isinstance(v, float))
    metrics = ", ".join(f"{_label(k)[0]} {v * _label(k)[1]:.4g}" for k, v in summary.items()
                        if k in objectives)
    provenance = {k: prov.get(k) for k in ("created_at", "seed", "workload")}
    provenance.update({f"package {k}": v for k, v in sorted(prov.get("packages", {}).items())})
    provenance.update({f"plugin {k}": v for k, v in sorted(prov.get("plugins", {}).items())})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(name)}: systolic-dse study report</title>
<style>{_STYLE}</style>
<script>{plotly_js()}</script>
</head><body>
<h1>Study {html.escape(name)}</h1>
<p>{html.escape(data.title())}. Objectives: {html.escape(', '.join(objectives))}.
Report written {datetime.now(UTC).isoformat(timespec="seconds")} from
{html.escape(_safe(url))}.</p>
<h2>Pareto front</h2>
{divs[0]}{divs[1]}
{_table(front_rows, front_columns)}
<h2>Trial {chosen} ({html.escape(how)})</h2>
<p>{html.escape(design)}<br>{html.escape(metrics)}</p>
{"".join(divs[2:])}
{_table([{"part": p, "energy_pj": v, "share_pct": 100 * v / total} for p, v in totals.items()],
        ["part", "energy_pj", "share_pct"])}
<h2>Provenance</h2>
{_table([{"key": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
         for k, v in provenance.items()], ["key", "value"])}
<script>{_CAPTIONS_JS}</script>
</body></html>
"""
    output = Path(output)
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise DseError(f"-o {output}: cannot write the report ({exc.strerror or exc})") from exc
    return ReportSummary(output, chosen, how, len(data.front), output.stat().st_size)


def _safe(url: str) -> str:
    from dse_core.search.results import safe_url

    return safe_url(url)


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())
