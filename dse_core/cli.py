"""The ``dse`` command line. User errors print one line ``error: …`` and exit with status 2;
``-v`` adds the traceback. Plugins can add subcommands through ``dse_register_commands``."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dse_core.errors import DseError
from dse_core.formatting import FORMATS, render
from dse_core.plugins import MappingPlugin, Registry, get_registry, instantiate
from dse_core.types import ArrayConfig, LayerSpec

log = logging.getLogger("dse")

DEFAULT_MAPPING = "ws_tile"
DEFAULT_ENERGY_MODEL = "constant"
# SCALE-Sim's dataflow -> the shipped mapping that reproduces its cycle counts.
SCALESIM_MAPPINGS = {"ws": "ws_tile", "os": "os_tile", "is": "is_tile"}

_state = {"verbose": 0}


def _registry(ctx: click.Context) -> Registry:
    root = ctx.find_root()
    return get_registry(no_plugins=bool(root.params.get("no_plugins")))


class PluginGroup(click.Group):
    """A group that also lists the subcommands registered by plugins."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        registry = _registry(ctx)
        return {name: rec.factory() for name, rec in registry.records["command"].items()
                if name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugin_commands(ctx).get(cmd_name)


format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output as an aligned table, CSV or JSON.",
)
input_option = click.option("--input", "input_shape", metavar="CxHxW",
                            help="Input shape of a model (default: the model's own).")
batch_option = click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                            help="Inferences per pass; multiplies the streamed dimension M.")
array_option = click.option("--array", "array_text", required=True, metavar="ROWSxCOLS",
                            help="Array size, e.g. 64x64.")
mapping_option = click.option("--mapping", default=DEFAULT_MAPPING, show_default=True,
                              help="Array mapping plugin (see `dse plugins`).")


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging; -v shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--no-plugins", is_flag=True, envvar="DSE_NO_PLUGINS",
              help="Load only the plugins shipped with systolic-dse.")
@click.version_option(package_name="systolic-dse", prog_name="dse")
def cli(verbose: int, quiet: bool, no_plugins: bool) -> None:
    """Design-space exploration of CNN accelerators on systolic arrays."""
    _state["verbose"] = verbose
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def _layers(ctx: click.Context, workload: str, input_shape: str | None, batch: int
            ) -> list[LayerSpec]:
    from dse_core.workloads import load_workload, parse_input_shape

    shape = parse_input_shape(input_shape) if input_shape else None
    return load_workload(_registry(ctx), workload, input_shape=shape, batch=batch)


def _mapping(ctx: click.Context, name: str, array_text: str) -> tuple[Any, ArrayConfig]:
    record = _registry(ctx).get("mapping", name)
    assert isinstance(record, MappingPlugin)
    array = ArrayConfig.parse(array_text, dataflow=record.dataflow)  # type: ignore[arg-type]
    return instantiate(record), array


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DseError(f"option {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@cli.command("plugins")
@click.option("--kind", help="Only this kind (mapping, energy_model, model, …).")
@format_option
@click.pass_context
def plugins_cmd(ctx: click.Context, kind: str | None, fmt: str) -> None:
    """Every registered plugin: kind, name, summary, provider, version."""
    registry = _registry(ctx)
    if kind and kind not in registry.records:
        raise DseError(f"--kind {kind!r}: expected one of {', '.join(registry.records)}")
    rows = [{"kind": k, "name": r.name, "summary": r.summary, "provider": r.provider,
             "version": r.version} for k, r in registry.all() if not kind or k == kind]
    click.echo(render(rows, fmt, columns=["kind", "name", "summary", "provider", "version"]))
    for failure in registry.failures:
        click.echo(f"warning: plugin {failure.plugin} from {failure.provider} was skipped: "
                   f"{failure.error}", err=True)


def _hw(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"


@cli.command("layers")
@click.argument("workload")
@input_option
@batch_option
@format_option
@click.pass_context
def layers_cmd(ctx: click.Context, workload: str, input_shape: str | None, batch: int,
               fmt: str) -> None:
    """The layers of a model or SCALE-Sim topology: shapes, GEMM dims M/K/N, MACs.

    WORKLOAD is a model name (resnet20, torchvision:resnet18) or a topology .csv file."""
    layers = _layers(ctx, workload, input_shape, batch)
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
             "row_folds": m.row_folds, "col_folds": m.col_folds, "folds": m.folds,
             "cycles_per_fold": m.cycles_per_fold, "cycles": m.cycles, "macs": m.macs,
             "mapping_eff_pct": round(100 * m.mapping_efficiency, 3),
             "util_pct": round(100 * m.utilisation, 3)} for s, m in zip(layers, mappings,
                                                                           strict=True)]


def _map_total(mappings: Sequence[Any], array: ArrayConfig) -> dict[str, Any]:
    cycles = sum(m.cycles for m in mappings)
    macs = sum(m.macs for m in mappings)
    return {"layer": "total", "folds": sum(m.folds for m in mappings), "cycles": cycles,
            "macs": macs, "util_pct": round(100 * macs / (cycles * array.pe_count), 3)}


@cli.command("map")
@click.argument("workload")
@array_option
@mapping_option
@input_option
@batch_option
@format_option
@click.pass_context
def map_cmd(ctx: click.Context, workload: str, array_text: str, mapping: str,
            input_shape: str | None, batch: int, fmt: str) -> None:
    """Per-layer folds, cycles and utilisation of WORKLOAD on an array, and the total."""
    from dse_core.evaluate import map_network

    layers = _layers(ctx, workload, input_shape, batch)
    mapper, array = _mapping(ctx, mapping, array_text)
    mappings = map_network(layers, array, mapper)
    click.echo(render(_map_rows(layers, mappings), fmt, total=_map_total(mappings, array),
                      meta={"workload": workload, "array": str(array), "mapping": mapping}))


@cli.command("energy")
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
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Training epochs when no checkpoint is cached.")
@click.option("--calibration-images", type=click.IntRange(min=2), default=1024,
              show_default=True, help="Images the statistics are collected on.")
@click.option("--stats", "stats_file", type=click.Path(dir_okay=False),
              help="Statistics file (from `dse stats`) instead of collecting them.")
@click.option("--per-weight", is_flag=True,
              help="Print each layer's 256-value per-weight energy curve (pJ per PE cycle).")
@input_option
@batch_option
@format_option
@click.pass_context
def energy_cmd(ctx: click.Context, workload: str, array_text: str, mapping: str,
               energy_model: str, mac_pj: float | None, sample_folds: int | None,
               options: tuple[str, ...], dataset: str | None, checkpoint: str | None,
               epochs: int, calibration_images: int, stats_file: str | None, per_weight: bool,
               input_shape: str | None, batch: int, fmt: str) -> None:
    """Energy of one inference of WORKLOAD on an array, per layer and in total (pJ)."""
    from dse_core.evaluate import evaluate_network

    registry = _registry(ctx)
    mapper, array = _mapping(ctx, mapping, array_text)
    opts = _options(options)
    if mac_pj is not None:
        opts["mac_pj"] = mac_pj
    if sample_folds is not None:
        opts["sample_folds"] = sample_folds
    model = instantiate(registry.get("energy_model", energy_model), opts)
    stats, char = None, None
    if dataset is not None:
        from dse_core.pipeline import switching_inputs

        if input_shape is not None or batch != 1:
            raise DseError("--input and --batch come from the dataset when --dataset is given")
        inputs = switching_inputs(registry, workload, dataset, array, checkpoint=checkpoint,
                                  epochs=epochs, calibration_images=calibration_images,
                                  stats_file=stats_file, progress=_progress())
        layers, stats, char = inputs.layers, inputs.stats.layers, inputs.characterization
    else:
        layers = _layers(ctx, workload, input_shape, batch)
    if per_weight:
        curves = {layer.name: model.per_weight_energy(layer, (stats or {}).get(layer.name),
                                                      char) for layer in layers}
        curve_rows = [{"code": code, **{n: float(c[code + 128]) for n, c in curves.items()}}
                      for code in range(-128, 128)]
        click.echo(render(curve_rows, fmt, meta={"workload": workload, "energy_model": energy_model,
                                           "unit": "pJ per busy PE cycle"}))
        return
    result = evaluate_network(layers, array, mapper, model, stats=stats, characterization=char)
    net = result.energy
    total_pj = net.total_pj
    terms = ("mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj")
    rows: list[dict[str, Any]] = [
            {"layer": e.layer, "macs": e.macs, "cycles": e.cycles,
             **{t: getattr(e, t) for t in terms}, "total_pj": e.total_pj,
             "share_pct": round(100 * e.total_pj / total_pj, 2) if total_pj else 0.0}
            for e in net.layers]
    total: dict[str, Any] = {
             "layer": "total", "macs": net.macs, "cycles": net.cycles,
             **{t: sum(getattr(e, t) for e in net.layers) for t in terms},
             "total_pj": total_pj, "share_pct": 100.0}
    meta: dict[str, Any] = {"workload": workload, "array": str(array), "mapping": mapping,
                             "energy_model": energy_model, **opts}
    if dataset:
        meta["dataset"] = dataset
    click.echo(render(rows, fmt, total=total, meta=meta))


def _say_if_reused(what: str, path: Path, started: float, redo: str) -> None:
    """One line on stderr when a cached artefact was reused rather than made now."""
    try:
        reused = path.stat().st_mtime < started
    except OSError:
        return
    if reused:
        click.echo(f"reused the cached {what} {path} (delete it {redo})", err=True)


def _progress() -> bool:
    return sys.stderr.isatty() and _state["verbose"] >= 0


@cli.command("train")
@click.argument("model")
@click.option("--dataset", required=True, help="Dataset plugin, e.g. mnist5k.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Checkpoint path (default: the cache, where `dse energy` finds it).")
@format_option
@click.pass_context
def train_cmd(ctx: click.Context, model: str, dataset: str, epochs: int, seed: int,
              output: str | None, fmt: str) -> None:
    """Train MODEL on a dataset and save a checkpoint (loads without unpickling code)."""
    import time

    from dse_core.training import trained_model

    started = time.time()
    _, meta, _ = trained_model(_registry(ctx), model, dataset, epochs=epochs, seed=seed,
                               checkpoint=None, progress=_progress())
    _say_if_reused("checkpoint", Path(meta["path"]), started, "to train again")
    if output:
        import shutil

        shutil.copyfile(meta["path"], output)
        meta["path"] = output
    click.echo(render([{"model": model, "dataset": meta["dataset"], "epochs": epochs,
                        "val_accuracy_pct": round(meta["val_accuracy"], 2),
                        "checkpoint": meta["path"]}], fmt))


@cli.command("characterize")
@click.option("--rtl", type=click.Path(dir_okay=False),
              help="Your PE's Verilog (synthesised with Yosys); default: the shipped PE.")
@click.option("--top", default="pe_mac", show_default=True,
              help="Module of --rtl with ports w[8], a[8], p[P], sum[P].")
@click.option("--table", type=click.Path(dir_okay=False),
              help="A power table CSV instead of a netlist (see docs/energy-model.md).")
@click.option("--rows", type=click.IntRange(min=1), default=64, show_default=True,
              help="Array rows the PE serves: psum width = 16 + ceil(log2 rows).")
@click.option("--no-glitches", is_flag=True, help="Zero-delay toggles only (faster).")
@click.option("--export-table", type=click.Path(dir_okay=False),
              help="Also write the characterisation as a table file.")
@format_option
@click.pass_context
def characterize_cmd(ctx: click.Context, rtl: str | None, top: str, table: str | None,
                     rows: int, no_glitches: bool, export_table: str | None, fmt: str) -> None:
    """Characterise the PE: energy per weight code, activation transition and psum group.
    The result is cached by content; a second run reuses it."""
    import time

    import numpy as np

    from dse_core.characterization import CharacterizationCache, write_table_file
    from dse_core.pipeline import characterize

    if table and rtl:
        raise DseError("--table and --rtl exclude each other: a table replaces the netlist")
    array = ArrayConfig(rows=rows, cols=1)
    opts: dict[str, Any]
    if table:
        name, opts = "table_file", {"table": table}
    else:
        name, opts = "gate_level", {"glitches": not no_glitches}
        if rtl:
            opts.update(rtl=rtl, top=top)
    start, started = time.perf_counter(), time.time()
    char = characterize(_registry(ctx), array, characterizer=name, options=opts,
                        progress=_progress())
    seconds = time.perf_counter() - start
    _say_if_reused("characterisation", CharacterizationCache().path(char.key), started,
                   "to characterise again")
    uniform = char.per_weight_energy(np.full((256, 256), 1 / 65536),
                                     np.full(char.msb_bits + 1, 1 / (char.msb_bits + 1)))
    if export_table:
        write_table_file(char, export_table)
    row: dict[str, Any] = {"key": char.key, "source": char.description.get("source"),
           "pe": char.description.get("rtl", char.description.get("path")),
           "gates": char.description.get("gates"), "psum_bits": char.psum_bits,
           "msb_bits": char.msb_bits,
           "cheapest_code": int(np.argmin(uniform)) - 128,
           "costliest_code": int(np.argmax(uniform)) - 128,
           "mean_pj_uniform": round(float(uniform.mean()), 4),
           "max_over_min": round(float(uniform.max() / uniform.min()), 2),
           "seconds": round(seconds, 2),
           "cache": str(CharacterizationCache().path(char.key))}
    click.echo(render([row], fmt))


@cli.command("stats")
@click.argument("model")
@click.option("--dataset", required=True, help="Dataset plugin, e.g. mnist5k.")
@click.option("--rows", type=click.IntRange(min=1), default=64, show_default=True,
              help="Array rows (the psum statistics depend on the fold height).")
@click.option("--checkpoint", type=click.Path(dir_okay=False))
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--calibration-images", type=click.IntRange(min=2), default=1024,
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also save the statistics to this file (for --stats).")
@format_option
@click.pass_context
def stats_cmd(ctx: click.Context, model: str, dataset: str, rows: int, checkpoint: str | None,
              epochs: int, calibration_images: int, output: str | None, fmt: str) -> None:
    """Per-layer switching statistics of MODEL's int8 version on real images."""
    import numpy as np

    from dse_core.pipeline import switching_inputs

    inputs = switching_inputs(_registry(ctx), model, dataset, ArrayConfig(rows=rows, cols=1),
                              checkpoint=checkpoint, epochs=epochs,
                              calibration_images=calibration_images, progress=_progress())
    if output:
        inputs.stats.save(output)
    out = []
    for name, st in inputs.stats.layers.items():
        p = st.act_transitions
        out.append({"layer": name, "p_act_hold": round(float(np.trace(p)), 4),
                    "p_act_zero": round(float(p[0].sum()), 4),
                    "mean_act_hd": round(float((p * _act_hd()).sum()), 3),
                    "p_psum_hold": round(st.psum_unchanged, 4),
                    **{f"psum_g{g}": round(float(v), 4) for g, v in enumerate(st.psum_groups)}})
    click.echo(render(out, fmt, meta={"model": model, "dataset": dataset, "rows": rows,
                                      "fingerprint": inputs.stats.fingerprint}))


def _act_hd() -> Any:
    from dse_core.characterization import activation_hd

    return activation_hd()


@cli.command("scalesim")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="SCALE-Sim .cfg file (array size and dataflow).")
@click.option("--compare", "report_path", type=click.Path(dir_okay=False),
              help="SCALE-Sim COMPUTE_REPORT.csv to cross-check layer by layer.")
@format_option
@click.pass_context
def scalesim_cmd(ctx: click.Context, topology: str, config_path: str, report_path: str | None,
                 fmt: str) -> None:
    """Map a SCALE-Sim topology with a SCALE-Sim config; with --compare, diff our cycles and
    mapping efficiency against SCALE-Sim's report, per layer. Exit status 1 on a mismatch."""
    from dse_core.evaluate import map_network
    from dse_core.scalesim import (
        compare_with_report,
        read_compute_report,
        read_config,
        read_topology,
    )

    array, run_name = read_config(config_path)
    layers = read_topology(topology)
    mapper = instantiate(_registry(ctx).get("mapping", SCALESIM_MAPPINGS[array.dataflow]))
    mappings = map_network(layers, array, mapper)
    meta = {"run": run_name, "array": str(array)}
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


def _add_commands() -> None:
    from dse_core.cli_compress import compress_cmd
    from dse_core.cli_search import COMMANDS

    cli.add_command(compress_cmd)
    for command in COMMANDS:
        cli.add_command(command)


_add_commands()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``dse`` console script."""
    try:
        # Without standalone mode click returns ctx.exit()'s status instead of exiting.
        status = cli.main(args=list(argv) if argv is not None else None, prog_name="dse",
                          standalone_mode=False)
    except DseError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted (a search keeps its finished trials: run it again to "
                   "continue)", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
