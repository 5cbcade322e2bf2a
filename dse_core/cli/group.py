"""The ``dse`` group: its options, the shared option decorators and helpers. Every command
module imports this module and nothing else of the CLI; ``dse_core.cli`` puts them together."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dse_core.cli.formatting import FORMATS
from dse_core.errors import DseError
from dse_core.host.registry import MappingPlugin, Registry, get_registry, instantiate
from dse_core.types import CLOCK_GATING, ArrayConfig, BufferConfig, LayerSpec

log = logging.getLogger("dse")

DEFAULT_MAPPING = "ws_tile"
DEFAULT_ENERGY_MODEL = "constant"
DEFAULT_MEMORY_MODEL = "horowitz45"
# SCALE-Sim's dataflow -> the shipped mapping that reproduces its cycle counts.
SCALESIM_MAPPINGS = {"ws": "ws_tile", "os": "os_tile", "is": "is_tile"}

state = {"verbose": 0}


def registry_of(ctx: click.Context) -> Registry:
    root = ctx.find_root()
    return get_registry(no_plugins=bool(root.params.get("no_plugins")))


class PluginGroup(click.Group):
    """A group that also lists the subcommands registered by plugins."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        registry = registry_of(ctx)
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
buffers_option = click.option(
    "--buffers", "buffers_text", default="64,64,64", show_default=True, metavar="I,F,O",
    help="ifmap, filter and ofmap SRAM buffers in kB (one number: all three).")


psums_option = click.option(
    "--psums", type=click.Choice(("accumulate", "scalesim")), default="accumulate",
    show_default=True, help="Partial sums: kept in the ofmap buffer when a tile fits, or all "
    "written to DRAM as SCALE-Sim counts them.")


def memory_options(command: Any) -> Any:
    """--buffers, --memory-model, -m KEY=VALUE, --clock-gating, --index-storage."""
    for option in reversed([
        buffers_option,
        click.option("--memory-model", default=DEFAULT_MEMORY_MODEL, show_default=True,
                     help="Memory model plugin: energy per SRAM/DRAM access (see `dse "
                     "plugins --kind memory_model`)."),
        click.option("-m", "--memory-option", "memory_options", multiple=True,
                     metavar="KEY=VALUE", help="An option of the memory model; repeatable."),
        click.option("--clock-gating", type=click.Choice(CLOCK_GATING),
                     default="idle_and_skew", show_default=True,
                     help="Which idle PE cycles are clock-gated (docs/energy-model.md)."),
        click.option("--index-storage", is_flag=True,
                     help="Store a compressed layer's weights as codebook indices."),
        psums_option,
    ]):
        command = option(command)
    return command


def memory_setting(ctx: click.Context, buffers_text: str, memory_model: str,
                   options: Sequence[str], index_storage: bool = False,
                   psums: str = "accumulate") -> Any:
    from dse_core.mapping.system import MemorySetting

    buffers = BufferConfig.parse(buffers_text)
    model = instantiate(registry_of(ctx).get("memory_model", memory_model),
                        parse_options(options))
    return MemorySetting(buffers, model, index_storage, psums)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging; -v shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--no-plugins", is_flag=True, envvar="DSE_NO_PLUGINS",
              help="Load only the plugins shipped with systolic-dse.")
@click.version_option(package_name="systolic-dse", prog_name="dse")
def cli(verbose: int, quiet: bool, no_plugins: bool) -> None:
    """Design-space exploration of CNN accelerators on systolic arrays."""
    state["verbose"] = verbose
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def load_layers(ctx: click.Context, workload: str, input_shape: str | None, batch: int
            ) -> list[LayerSpec]:
    from dse_core.workloads.layers import load_workload, parse_input_shape

    shape = parse_input_shape(input_shape) if input_shape else None
    return load_workload(registry_of(ctx), workload, input_shape=shape, batch=batch)


def resolve_mapping(ctx: click.Context, name: str, array_text: str,
                    clock_gating: str | None = None) -> tuple[Any, ArrayConfig]:
    import dataclasses

    record = registry_of(ctx).get("mapping", name)
    assert isinstance(record, MappingPlugin)
    array = ArrayConfig.parse(array_text, dataflow=record.dataflow)  # type: ignore[arg-type]
    if clock_gating is not None:
        array = dataclasses.replace(array, clock_gating=clock_gating)  # type: ignore[arg-type]
    return instantiate(record), array


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    from dse_core.compression.study import parse_value

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DseError(f"option {pair!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out


def say_if_reused(what: str, path: Path, started: float, redo: str) -> None:
    """One line on stderr when a cached artefact was reused rather than made now."""
    try:
        reused = path.stat().st_mtime < started
    except OSError:
        return
    if reused:
        click.echo(f"reused the cached {what} {path} (delete it {redo})", err=True)


def show_progress() -> bool:
    return sys.stderr.isatty() and state["verbose"] >= 0


