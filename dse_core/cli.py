"""The ``dse`` command line. User errors print one line ``error: …`` and exit with status 2;
``-v`` adds the traceback. Plugins can add subcommands through ``dse_register_commands``."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Sequence
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
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An option of the energy model; repeatable.")
@input_option
@batch_option
@format_option
@click.pass_context
def energy_cmd(ctx: click.Context, workload: str, array_text: str, mapping: str,
               energy_model: str, mac_pj: float | None, options: tuple[str, ...],
               input_shape: str | None, batch: int, fmt: str) -> None:
    """Energy of one inference of WORKLOAD on an array, per layer and in total (pJ)."""
    from dse_core.evaluate import evaluate_network

    layers = _layers(ctx, workload, input_shape, batch)
    mapper, array = _mapping(ctx, mapping, array_text)
    opts = _options(options)
    if mac_pj is not None:
        opts["mac_pj"] = mac_pj
    model = instantiate(_registry(ctx).get("energy_model", energy_model), opts)
    result = evaluate_network(layers, array, mapper, model)
    total_pj = result.energy.total_pj
    rows = [{"layer": e.layer, "macs": e.macs, "cycles": e.cycles,
             "mac_pj": e.mac_switching_pj, "idle_pj": e.idle_pj,
             "fill_drain_pj": e.fill_drain_pj, "weight_load_pj": e.weight_load_pj,
             "total_pj": e.total_pj,
             "share_pct": round(100 * e.total_pj / total_pj, 2) if total_pj else 0.0}
            for e in result.energy.layers]
    net = result.energy
    total = {"layer": "total", "macs": net.macs, "cycles": net.cycles,
             "mac_pj": net.mac_switching_pj,
             "idle_pj": sum(e.idle_pj for e in net.layers),
             "fill_drain_pj": sum(e.fill_drain_pj for e in net.layers),
             "weight_load_pj": sum(e.weight_load_pj for e in net.layers),
             "total_pj": total_pj, "share_pct": 100.0}
    click.echo(render(rows, fmt, total=total, meta={
        "workload": workload, "array": str(array), "mapping": mapping,
        "energy_model": energy_model, **opts}))


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
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
