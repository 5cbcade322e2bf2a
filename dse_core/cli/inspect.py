"""``dse plugins / layers / map / energy / scalesim``: what a workload is, how it maps,
what it costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from dse_core.cli.formatting import render
from dse_core.cli.group import (
    DEFAULT_ENERGY_MODEL,
    SCALESIM_MAPPINGS,
    array_option,
    batch_option,
    format_option,
    input_option,
    load_layers,
    mapping_option,
    memory_options,
    memory_setting,
    parse_options,
    psums_option,
    registry_of,
    resolve_mapping,
    show_progress,
)
from dse_core.errors import DseError
from dse_core.host.registry import instantiate
from dse_core.types import ArrayConfig, LayerSpec


@click.command("plugins")
@click.option("--kind", help="Only this kind (mapping, energy_model, model, …).")
@format_option
@click.pass_context
def plugins_cmd(ctx: click.Context, kind: str | None, fmt: str) -> None:
    """Every registered plugin: kind, name, summary, provider, version."""
    registry = registry_of(ctx)
    if kind and kind not in registry.records:
        raise DseError(f"--kind {kind!r}: expected one of {', '.join(registry.records)}")
    rows = [{"kind": k, "name": r.name, "summary": r.summary, "provider": r.provider,
             "version": r.version} for k, r in registry.all() if not kind or k == kind]
    click.echo(render(rows, fmt, columns=["kind", "name", "summary", "provider", "version"]))
    for failure in registry.failures:
        click.echo(f"warning: plugin {failure.plugin} from {failure.provider} was skipped: "
                   f"{failure.error}", err=True)
    from dse_core.host.registry import conflict_message

    for (clash_kind, name), clashing in sorted(registry.conflicts.items()):
        click.echo(f"warning: {conflict_message(clash_kind, name, clashing)} (using it is an "
                   "error until then)", err=True)


def _hw(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"


@click.command("layers")
@click.argument("workload")
@input_option
@batch_option
@format_option
@click.pass_context
def layers_cmd(ctx: click.Context, workload: str, input_shape: str | None, batch: int,
               fmt: str) -> None:
    """The layers of a model or SCALE-Sim topology: shapes, GEMM dims M/K/N, MACs.

    WORKLOAD is a model name (resnet20, torchvision:resnet18) or a topology .csv file."""
    layers = load_layers(ctx, workload, input_shape, batch)
    rows = [{"layer": s.name, "kind": s.kind, "c_in": s.in_channels, "c_out": s.out_channels,
             "kernel": _hw(s.kernel), "stride": _hw(s.stride), "padding": _hw(s.padding),
             "groups": s.groups, "input": _hw(s.input_hw), "output": _hw(s.output_hw),
             "M": s.gemm_m, "K": s.gemm_k, "N": s.gemm_n, "macs": s.macs,
             "weights": s.weight_count} for s in layers]
    total = {"layer": f"total ({len(layers)} layers)", "macs": sum(s.macs for s in layers),
             "weights": sum(s.weight_count for s in layers)}
    click.echo(render(rows, fmt, total=total, meta={"workload": workload, "batch": batch}))


def _map_rows(layers: Sequence[LayerSpec], mappings: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"layer": s.name, "M": s.gemm_m, "K": s.gemm_k, "N": s.gemm_n, "groups": m.groups,
             "groups_per_fold": m.groups_per_fold, "row_folds": m.row_folds,
             "col_folds": m.col_folds, "folds": m.folds,
             "cycles_per_fold": m.cycles_per_fold, "cycles": m.cycles, "macs": m.macs,
             "mapping_eff_pct": round(100 * m.mapping_efficiency, 3),
             "util_pct": round(100 * m.utilisation, 3)} for s, m in zip(layers, mappings,
                                                                           strict=True)]


def _map_total(mappings: Sequence[Any], array: ArrayConfig) -> dict[str, Any]:
    cycles = sum(m.cycles for m in mappings)
    macs = sum(m.macs for m in mappings)
    return {"layer": "total", "folds": sum(m.folds for m in mappings), "cycles": cycles,
            "macs": macs, "util_pct": round(100 * macs / (cycles * array.pe_count), 3)}


TRAFFIC_COLUMNS = ("sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
                   "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes")
MAP_TRAFFIC_COLUMNS = (*TRAFFIC_COLUMNS[:3], "sram_ofmap_reads", *TRAFFIC_COLUMNS[3:])


def _with_traffic(rows: list[dict[str, Any]], total: dict[str, Any], traffic: Sequence[Any]
                  ) -> None:
    for row, t in zip(rows, traffic, strict=True):
        row.update({c: getattr(t, c) for c in MAP_TRAFFIC_COLUMNS})
    total.update({c: sum(getattr(t, c) for t in traffic) for c in MAP_TRAFFIC_COLUMNS})


@click.command("map")
@click.argument("workload")
@array_option
@mapping_option
@click.option("--buffers", "buffers_text", metavar="I,F,O",
              help="Also count SRAM and DRAM words per layer with these ifmap, filter and "
              "ofmap buffers in kB, e.g. 64,64,64 (docs/mapping.md).")
@psums_option
@input_option
@batch_option
@format_option
@click.pass_context
def map_cmd(ctx: click.Context, workload: str, array_text: str, mapping: str,
            buffers_text: str | None, psums: str, input_shape: str | None, batch: int,
            fmt: str) -> None:
    """Per-layer folds, cycles and utilisation of WORKLOAD on an array, and the total; with
    --buffers, the words each layer moves between the array, its SRAM buffers and DRAM."""
    from dse_core.mapping.evaluate import map_network
    from dse_core.types import BufferConfig

    buffers = BufferConfig.parse(buffers_text) if buffers_text is not None else None
    layers = load_layers(ctx, workload, input_shape, batch)
    mapper, array = resolve_mapping(ctx, mapping, array_text)
    mappings = map_network(layers, array, mapper)
    rows, total = _map_rows(layers, mappings), _map_total(mappings, array)
    meta: dict[str, Any] = {"workload": workload, "array": str(array), "mapping": mapping}
    if buffers is not None:
        from dse_core.mapping.traffic import access_counts

        traffic = [access_counts(layer, array, buffers, psums=psums) for layer in layers]
        _with_traffic(rows, total, traffic)
        meta.update(buffers=str(buffers), psums=psums)
        if fmt == "table":  # the fold details are in the plain map; keep the table readable
            keep = ["layer", "folds", "cycles", *MAP_TRAFFIC_COLUMNS]
            rows = [{c: r[c] for c in keep} for r in rows]
            total = {c: total[c] for c in keep if c in total}
    click.echo(render(rows, fmt, total=total, meta=meta))


@click.command("energy")
@click.argument("workload")
@array_option
@mapping_option
@click.option("--energy-model", default=DEFAULT_ENERGY_MODEL, show_default=True,
              help="Energy model plugin (see `dse plugins`).")
@click.option("--mac-pj", type=float, help="Shorthand for -o mac_pj=VALUE (constant model).")
@click.option("--sample-folds", type=click.IntRange(min=1),
              help="Shorthand for -o sample_folds=N (exact model).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An option of the energy model; repeatable.")
@click.option("--dataset", help="Collect switching statistics on this dataset (needed by "
              "msb_hamming, global_activation, exact); the model is trained on it if needed.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Trained weights (from `dse train`) instead of the cached training run.")
@click.option("--weights", metavar="FILE|random",
              help="Your weights: a torch state_dict file (e.g. torchvision's pretrained "
              "ones), or 'random' (seeded initialisation); nothing is trained.")
@click.option("-D", "--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the dataset, e.g. -D normalize=none; repeatable.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Training epochs when no checkpoint is cached.")
@click.option("--calibration-images", type=click.IntRange(min=2), default=1024,
              show_default=True, help="Images the statistics are collected on.")
@click.option("--stats", "stats_file", type=click.Path(dir_okay=False),
              help="Statistics file (from `dse stats`) instead of collecting them.")
@click.option("--per-weight", is_flag=True,
              help="Print each layer's 256-value per-weight energy curve (pJ per PE cycle).")
@click.option("--pe", help="The PE to characterise (`dse plugins --kind pe`); default: array.")
@memory_options
@input_option
@batch_option
@format_option
@click.pass_context
def energy_cmd(ctx: click.Context, workload: str, array_text: str, mapping: str,
               energy_model: str, mac_pj: float | None, sample_folds: int | None,
               options: tuple[str, ...], dataset: str | None, checkpoint: str | None,
               weights: str | None, dataset_options: tuple[str, ...],
               epochs: int, calibration_images: int, stats_file: str | None, per_weight: bool,
               pe: str | None, buffers_text: str, memory_model: str,
               memory_options: tuple[str, ...],
               clock_gating: str, index_storage: bool, psums: str, input_shape: str | None,
               batch: int, fmt: str) -> None:
    """Energy of one inference of WORKLOAD on an array and its memory, per layer and in
    total (pJ): MAC switching, the PE clock (as --clock-gating leaves it), the three SRAM
    buffers and DRAM. Every constant's source: docs/energy-model.md."""
    from dse_core.mapping.evaluate import evaluate_network

    registry = registry_of(ctx)
    mapper, array = resolve_mapping(ctx, mapping, array_text, clock_gating)
    memory = memory_setting(ctx, buffers_text, memory_model, memory_options, index_storage,
                            psums)
    opts = parse_options(options)
    if mac_pj is not None:
        opts["mac_pj"] = mac_pj
    if sample_folds is not None:
        opts["sample_folds"] = sample_folds
    model = instantiate(registry.get("energy_model", energy_model), opts)
    stats, char = None, None
    if dataset is not None:
        import inspect

        from dse_core.switching.pipeline import switching_inputs

        data_opts = parse_options(dataset_options)
        if input_shape is not None:  # the dataset resizes its images to it, if it can
            name = dataset.partition(":")[0]
            if "shape" not in inspect.signature(
                    registry.get("dataset", name).factory).parameters:
                raise DseError(f"--input {input_shape}: the images of dataset {name!r} have "
                               "one shape; drop --input (imagefolder and fake resize)")
            data_opts["shape"] = input_shape
        inputs = switching_inputs(registry, workload, dataset, array, checkpoint=checkpoint,
                                  epochs=epochs, calibration_images=calibration_images,
                                  stats_file=stats_file, progress=show_progress(),
                                  weights=weights, dataset_options=data_opts, batch=batch,
                                  characterizer_options={"pe": pe} if pe else None)
        layers, stats, char = inputs.layers, inputs.stats.layers, inputs.characterization
    else:
        if weights or dataset_options or pe:
            raise DseError("--weights, -D and --pe need --dataset (the statistics are "
                           "collected on its images)")
        layers = load_layers(ctx, workload, input_shape, batch)
    if per_weight:
        curves = {layer.name: model.per_weight_energy(layer, (stats or {}).get(layer.name),
                                                      char) for layer in layers}
        curve_rows = [{"code": code, **{n: float(c[code + 128]) for n, c in curves.items()}}
                      for code in range(-128, 128)]
        click.echo(render(curve_rows, fmt, meta={"workload": workload, "energy_model": energy_model,
                                           "unit": "pJ per busy PE cycle"}))
        return
    result = evaluate_network(layers, array, mapper, model, stats=stats, characterization=char,
                              memory=memory, progress=show_progress())
    rows, total = energy_rows(result.energy)
    meta: dict[str, Any] = {"workload": workload, "array": str(array), "mapping": mapping,
                            "energy_model": energy_model, **opts, "clock_gating": clock_gating,
                            "buffers": str(memory.buffers), "memory_model": memory_model,
                            "psums": psums}
    if dataset:
        meta["dataset"] = dataset
        meta["pe"] = pe or "array"
    columns = TABLE_ENERGY_COLUMNS if fmt == "table" else None
    click.echo(render(rows, fmt, columns=columns, total=total, meta=meta))
    if fmt == "table":
        click.echo(shares_line(result.energy))


ENERGY_TERMS = ("mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj",
                "pe_clock_pj", "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj", "dram_pj",
                "array_pj", "memory_pj")
TABLE_ENERGY_COLUMNS = ("layer", "cycles", "mac_switching_pj", "pe_clock_pj", "sram_ifmap_pj",
                        "sram_filter_pj", "sram_ofmap_pj", "dram_pj", "total_pj", "share_pct")


def energy_rows(net: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer rows of a NetworkEnergy with every term, and their total."""
    total_pj = net.total_pj
    rows = [{"layer": e.layer, "macs": e.macs, "cycles": e.cycles,
             **{t: getattr(e, t) for t in ENERGY_TERMS}, "total_pj": e.total_pj,
             "share_pct": round(100 * e.total_pj / total_pj, 2) if total_pj else 0.0}
            for e in net.layers]
    total = {"layer": "total", "macs": net.macs, "cycles": net.cycles,
             **{t: sum(getattr(e, t) for e in net.layers) for t in ENERGY_TERMS},
             "total_pj": total_pj, "share_pct": 100.0}
    return rows, total


def shares_line(net: Any) -> str:
    total = net.total_pj or 1.0
    parts = {"MAC switching": sum(e.mac_switching_pj for e in net.layers),
             "PE clock": sum(e.pe_clock_pj for e in net.layers),
             "SRAM": sum(e.sram_pj for e in net.layers),
             "DRAM": sum(e.dram_pj for e in net.layers)}
    return "shares of the total: " + ", ".join(f"{name} {100 * v / total:.1f} %"
                                                for name, v in parts.items())


@click.command("scalesim")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="SCALE-Sim .cfg file (array size, dataflow, buffer sizes).")
@click.option("--compare", "report_path", type=click.Path(dir_okay=False),
              help="SCALE-Sim COMPUTE_REPORT.csv to cross-check layer by layer.")
@click.option("--compare-access", "access_path", type=click.Path(dir_okay=False),
              help="SCALE-Sim DETAILED_ACCESS_REPORT.csv to cross-check the SRAM and DRAM "
              "counts layer by layer.")
@format_option
@click.pass_context
def scalesim_cmd(ctx: click.Context, topology: str, config_path: str, report_path: str | None,
                 access_path: str | None, fmt: str) -> None:
    """Map a SCALE-Sim topology with a SCALE-Sim config; with --compare, diff our cycles and
    mapping efficiency against SCALE-Sim's report, per layer; with --compare-access, our SRAM
    and DRAM counts against its access report (SRAM must be identical, DRAM within 1 %).
    Exit status 1 on a mismatch."""
    from dse_core.mapping.evaluate import map_network
    from dse_core.workloads.scalesim import (
        compare_with_report,
        read_access_report,
        read_buffers,
        read_compute_report,
        read_config,
        read_topology,
    )

    if report_path is not None and access_path is not None:
        raise DseError("--compare and --compare-access: give one of them")
    array, run_name = read_config(config_path)
    layers = read_topology(topology)
    mapper = instantiate(registry_of(ctx).get("mapping", SCALESIM_MAPPINGS[array.dataflow]))
    mappings = map_network(layers, array, mapper)
    meta = {"run": run_name, "array": str(array)}
    if access_path is not None:
        _compare_access(ctx, layers, array, read_buffers(config_path),
                        read_access_report(access_path), fmt, meta)
        return
    if report_path is None:
        click.echo(render(_map_rows(layers, mappings), fmt,
                          total=_map_total(mappings, array), meta=meta))
        return
    rows = compare_with_report(layers, mappings, read_compute_report(report_path))
    matched = sum(1 for r in rows if r["match"])
    total = {"layer": "total", "cycles": sum(m.cycles for m in mappings),
             "scalesim_cycles": sum(int(r["scalesim_cycles"]) for r in rows),  # type: ignore[call-overload]
             "match": matched == len(rows)}
    click.echo(render(rows, fmt, total=total, meta=meta))
    if fmt == "table":
        click.echo(f"{matched}/{len(rows)} layers match SCALE-Sim (cycles = its Total Cycles "
                   "+ 1, mapping efficiency equal)")
    if matched != len(rows):
        ctx.exit(1)


def _compare_access(ctx: click.Context, layers: Sequence[LayerSpec], array: ArrayConfig,
                    buffers: Any, report: list[dict[str, int]], fmt: str,
                    meta: dict[str, Any]) -> None:
    from dse_core.mapping.traffic import access_counts, compare_access

    traffic = [access_counts(layer, array, buffers) for layer in layers]
    rows = compare_access(list(layers), traffic, report)
    meta = {**meta, "buffers": str(buffers)}
    matched = sum(1 for r in rows if r["match"])
    identical = sum(1 for r in rows if r["identical"])
    if fmt == "table":  # ours and SCALE-Sim's side by side, one count at a time
        table = [{"layer": r["layer"], **{f"{c}": f"{r[c]:,}" + (
            "" if r[c] == r[f"scalesim_{c}"] else f" (scalesim {r[f'scalesim_{c}']:,})")
            for c in TRAFFIC_COLUMNS}, "match": r["match"]} for r in rows]
        click.echo(render(table, fmt, meta=meta))
        click.echo(f"{matched}/{len(rows)} layers match SCALE-Sim's access report (SRAM "
                   f"identical, DRAM within 1 %); {identical}/{len(rows)} identical in all six "
                   "counts")
    else:
        click.echo(render(rows, fmt, meta=meta))
    if matched != len(rows):
        ctx.exit(1)


COMMANDS = [plugins_cmd, layers_cmd, map_cmd, energy_cmd, scalesim_cmd]
