"""``dse train / characterize / stats``: the inputs of the switching-energy models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from dse_core.cli.formatting import render
from dse_core.cli.group import (
    format_option,
    registry_of,
    say_if_reused,
    show_progress,
)
from dse_core.errors import DseError
from dse_core.types import ArrayConfig


@click.command("train")
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

    from dse_core.workloads.training import trained_model

    started = time.time()
    _, meta, _ = trained_model(registry_of(ctx), model, dataset, epochs=epochs, seed=seed,
                               checkpoint=None, progress=show_progress())
    say_if_reused("checkpoint", Path(meta["path"]), started, "to train again")
    if output:
        import shutil

        shutil.copyfile(meta["path"], output)
        meta["path"] = output
    click.echo(render([{"model": model, "dataset": meta["dataset"], "epochs": epochs,
                        "val_accuracy_pct": round(meta["val_accuracy"], 2),
                        "checkpoint": meta["path"]}], fmt))


@click.command("characterize")
@click.option("--rtl", type=click.Path(dir_okay=False),
              help="Your PE's Verilog (synthesised with Yosys); default: the shipped PE.")
@click.option("--top", default="pe_mac", show_default=True,
              help="Module of --rtl with ports w[8], a[8], p[P], sum[P].")
@click.option("--pe", help="A shipped or registered PE (`dse plugins --kind pe`); default: "
              "array.")
@click.option("--table", type=click.Path(dir_okay=False),
              help="A power table CSV instead of a netlist (see docs/energy-model.md).")
@click.option("--rows", type=click.IntRange(min=1), default=64, show_default=True,
              help="Array rows the PE serves: psum width = 16 + ceil(log2 rows).")
@click.option("--no-glitches", is_flag=True, help="Zero-delay toggles only (faster).")
@click.option("--export-table", type=click.Path(dir_okay=False),
              help="Also write the characterisation as a table file.")
@format_option
@click.pass_context
def characterize_cmd(ctx: click.Context, rtl: str | None, top: str, pe: str | None,
                     table: str | None, rows: int, no_glitches: bool, export_table: str | None,
                     fmt: str) -> None:
    """Characterise the PE: energy per weight code, activation transition and psum group.
    The result is cached by content; a second run reuses it."""
    import time

    import numpy as np

    from dse_core.switching.characterization import CharacterizationCache, write_table_file
    from dse_core.switching.pipeline import characterize

    if sum(bool(x) for x in (table, rtl, pe)) > 1:
        raise DseError("--table, --rtl and --pe exclude each other: one source of the PE")
    array = ArrayConfig(rows=rows, cols=1)
    opts: dict[str, Any]
    if table:
        name, opts = "table_file", {"table": table}
    else:
        name, opts = "gate_level", {"glitches": not no_glitches}
        if rtl:
            opts.update(rtl=rtl, top=top)
        if pe:
            opts["pe"] = pe
    start, started = time.perf_counter(), time.time()
    char = characterize(registry_of(ctx), array, characterizer=name, options=opts,
                        progress=show_progress())
    seconds = time.perf_counter() - start
    say_if_reused("characterisation", CharacterizationCache().path(char.key), started,
                   "to characterise again")
    uniform = char.per_weight_energy(np.full((256, 256), 1 / 65536),
                                     np.full(char.msb_bits + 1, 1 / (char.msb_bits + 1)))
    if export_table:
        write_table_file(char, export_table)
    row: dict[str, Any] = {"key": char.key, "source": char.description.get("source"),
           "pe": _pe_name(char.description),
           "rtl": char.description.get("rtl", char.description.get("path")),
           "gates": char.description.get("gates"), "psum_bits": char.psum_bits,
           "msb_bits": char.msb_bits,
           "cheapest_code": int(np.argmin(uniform)) - 128,
           "costliest_code": int(np.argmax(uniform)) - 128,
           "mean_pj_uniform": round(float(uniform.mean()), 4),
           "max_over_min": round(float(uniform.max() / uniform.min()), 2),
           "seconds": round(seconds, 2),
           "cache": str(CharacterizationCache().path(char.key))}
    click.echo(render([row], fmt))


@click.command("stats")
@click.argument("model")
@click.option("--dataset", required=True, help="Dataset plugin, e.g. mnist5k.")
@click.option("--rows", type=click.IntRange(min=1), default=64, show_default=True,
              help="Array rows (the psum statistics depend on the fold height).")
@click.option("--checkpoint", type=click.Path(dir_okay=False))
@click.option("--weights", metavar="FILE|random",
              help="A torch state_dict file, or 'random'; nothing is trained.")
@click.option("-D", "--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the dataset (e.g. -D shape=3x224x224); repeatable.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--calibration-images", type=click.IntRange(min=2), default=1024,
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also save the statistics to this file (for --stats).")
@format_option
@click.pass_context
def stats_cmd(ctx: click.Context, model: str, dataset: str, rows: int, checkpoint: str | None,
              weights: str | None, dataset_options: tuple[str, ...], epochs: int,
              calibration_images: int, output: str | None, fmt: str) -> None:
    """Per-layer switching statistics of MODEL's int8 version on real images."""
    import numpy as np

    from dse_core.cli.group import parse_options
    from dse_core.switching.pipeline import switching_inputs

    inputs = switching_inputs(registry_of(ctx), model, dataset, ArrayConfig(rows=rows, cols=1),
                              checkpoint=checkpoint, epochs=epochs,
                              calibration_images=calibration_images, progress=show_progress(),
                              weights=weights, dataset_options=parse_options(dataset_options))
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


def _pe_name(description: Mapping[str, Any]) -> str:
    """The PE a characterisation is of (characterisations cached before PEs were plugins
    name none: theirs was the default PE or the user's RTL)."""
    if "pe" in description:
        return str(description["pe"])
    if description.get("source") != "gate_level":
        return "table"
    return "array" if "default PE" in str(description.get("rtl")) else "own RTL"


def _act_hd() -> Any:
    from dse_core.switching.characterization import activation_hd

    return activation_hd()


COMMANDS = [train_cmd, characterize_cmd, stats_cmd]
