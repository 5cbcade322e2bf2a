"""``dse compress STUDY.toml``: the weight-compression study (see docs/compression.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dse_core.cli.formatting import FORMATS, render
from dse_core.cli.group import registry_of

__all__ = ["compress_cmd", "result_rows", "COMMANDS"]


def result_rows(result: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer rows and the total row of a
    :class:`~dse_core.compression.compress.CompressionResult`."""
    rows = [{"layer": lc.layer, "weights": lc.weights, "n_levels": lc.n_levels,
             "energy_before_pj": round(lc.energy_before_pj, 1),
             "energy_after_pj": round(lc.energy_after_pj, 1),
             "share_pct": round(100 * lc.share_before, 1),
             "reduction_pct": round(lc.reduction_pct, 1)} for lc in result.layers]
    total = {"layer": "total", "weights": sum(lc.weights for lc in result.layers),
             "n_levels": "", "energy_before_pj": round(result.baseline_mac_pj, 1),
             "energy_after_pj": round(result.compressed_mac_pj, 1), "share_pct": 100.0,
             "reduction_pct": round(result.reduction_pct, 1)}
    if any(lc.deadzone != 0.5 for lc in result.layers):  # a dead-zone projection was used
        for row, lc in zip(rows, result.layers, strict=True):
            row["deadzone"] = lc.deadzone
        total["deadzone"] = ""
    return rows, total


@click.command("compress")
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a study key, e.g. --set compression.accuracy_budget_pct=3.")
@click.option("--device", help="Training device (auto, cpu, cuda[:N]); overrides "
              "training.device.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Where model.npz and report.json go [default: results/<study name>].")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads [default: torch's]; 1 when other jobs share the "
                   "machine.")
@click.pass_context
def compress_cmd(ctx: click.Context, study_file: str, overrides: Sequence[str],
                 device: str | None, output_dir: str | None, fmt: str,
                 threads: int | None) -> None:
    """Compress a model's weights under an accuracy budget and report the energy saved."""
    import sys

    from dse_core.cache import atomic_write
    from dse_core.compression.compress import run_compression
    from dse_core.compression.model_io import save_compressed
    from dse_core.compression.study import load_study

    study = load_study(study_file, [*overrides, *([f"training.device={device}"]
                                                   if device else [])])
    registry = registry_of(ctx)
    if threads:
        import torch

        torch.set_num_threads(threads)
    result, net, _ = run_compression(registry, study, progress=sys.stderr.isatty())
    out = Path(output_dir or Path("results") / study.name)
    model_path = save_compressed(out / "model.npz", net, {
        **result.model_meta,
        "study": study.name, "accuracy": result.compressed_accuracy,
        "mac_energy_pj": result.compressed_mac_pj})
    doc = result.to_json()
    doc["model_file"] = str(model_path)

    def write_report(tmp: Path) -> None:
        tmp.write_text(json.dumps(doc, indent=2))

    report_path = atomic_write(out / "report.json", write_report)
    rows, total = result_rows(result)
    meta = {"study": study.name, "report": str(report_path), "model": str(model_path)}
    click.echo(render(rows, fmt, total=total, meta={**meta, **{
        k: doc[k] for k in ("float_accuracy", "baseline_accuracy", "compressed_accuracy",
                            "accuracy_drop", "tune_accuracy_drop", "within_budget",
                            "mac_reduction_pct", "total_reduction_pct",
                            "total_reduction_indexed_pct")}}))
    if fmt == "table":
        click.echo(
            f"int8 baseline: accuracy {result.baseline_accuracy:.2f} %, MAC energy "
            f"{result.baseline_mac_pj / 1e6:.4f} uJ (system {result.baseline_total_pj / 1e6:.4f}"
            f" uJ, of which memory {result.baseline_memory_pj / 1e6:.4f} uJ)\n"
            f"compressed:    accuracy {result.compressed_accuracy:.2f} %, MAC energy "
            f"{result.compressed_mac_pj / 1e6:.4f} uJ (system "
            f"{result.compressed_total_pj / 1e6:.4f} uJ; with index storage "
            f"{result.compressed_total_indexed_pj / 1e6:.4f} uJ)\nreduction:     MAC energy "
            f"{result.reduction_pct:.1f} %, system {doc['total_reduction_pct']:.1f} % "
            f"({doc['total_reduction_indexed_pct']:.1f} % with index storage), "
            f"accuracy drop {result.accuracy_drop:.2f} points on the validation split, "
            f"{result.tune_accuracy_drop:.2f} on the tuning split (budget "
            f"{result.budget_pct:g} points), {result.wall_s:.0f} s on "
            f"{result.device}\nsaved: {model_path}, {report_path}")
    if not result.within_budget:  # said on every format: a broken budget is never silent
        click.echo(
            f"warning: budget exceeded on the validation split: accuracy drop "
            f"{result.accuracy_drop:.2f} points > budget {result.budget_pct:g} points (the "
            f"schedule kept it on the tuning split, {result.tune_accuracy_drop:.2f} points; "
            "see docs/compression.md, 'Budgets'); report.json says within_budget: false",
            err=True)


COMMANDS = [compress_cmd]
