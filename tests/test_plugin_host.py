"""The plugin host: entry points, typed records, clashes, broken plugins, allow-lists."""

import sys
import textwrap
import types

import pytest

from dse_core import (
    DseError,
    EnergyModelPlugin,
    MappingPlugin,
    PluginConflictError,
    UnknownPluginError,
    build_registry,
    hookimpl,
    instantiate,
)
from dse_core.host.registry import KINDS, get_registry

from .conftest import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "dse-example-plugin"


def install_metadata(site, dist, module, entry_points):
    """Write the .dist-info that `pip install` would write, so importlib.metadata finds it."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[dse]\n{lines}\n")


def plugin_module(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_shipped_plugins_come_through_the_entry_point_group(registry):
    assert registry.names("mapping") == ["is_tile", "os_tile", "ws_packed", "ws_tile"]
    assert "constant" in registry.names("energy_model")
    assert {"lenet5", "resnet20", "vgg8", "torchvision"} <= set(registry.names("model"))
    ws = registry.get("mapping", "ws_tile")
    assert (ws.provider, ws.version) == ("systolic-dse", "0.1.0")
    assert isinstance(ws, MappingPlugin) and ws.dataflow == "ws"
    assert registry.failures == []


def test_every_kind_has_a_hook():
    from dse_core.host import hookspecs

    for kind, (hook, _record) in KINDS.items():
        assert callable(getattr(hookspecs, hook)), kind


def test_example_plugin_registers_through_its_entry_point(tmp_path, monkeypatch):
    install_metadata(tmp_path, "dse-example-plugin", "dse_example_plugin",
                     {"idle_aware": "dse_example_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "dse_example_plugin", raising=False)
    registry = build_registry()
    record = registry.get("energy_model", "idle_aware")
    assert (record.provider, record.version) == ("dse-example-plugin", "0.1.0")
    model = instantiate(record, {"mac_pj": 0.5, "idle_pj": 0.25})
    from dse_core import ArrayConfig, LayerSpec

    layer = LayerSpec(name="fc", kind="linear", in_channels=40, out_channels=8, batch=3)
    mapping = instantiate(registry.get("mapping", "ws_tile")).map(layer, ArrayConfig(32, 32))
    energy = model.layer_energy(layer, mapping)
    assert energy.mac_switching_pj == 0.5 * 40 * 8 * 3
    # 2 row folds (32 + 8 rows) x 1 col fold (8 of 32 cols): 2048 PEs, 320 busy, 3 vectors.
    assert energy.idle_pj == 0.25 * (2 * 1024 - 320) * 3

    # The allow-list keeps third-party plugins out but never the shipped ones.
    monkeypatch.setenv("DSE_LOAD_PLUGINS", "something-else")
    restricted = build_registry()
    assert "idle_aware" not in restricted.names("energy_model")
    assert "ws_tile" in restricted.names("mapping")
    monkeypatch.setenv("DSE_LOAD_PLUGINS", "dse-example-plugin")
    assert "idle_aware" in build_registry().names("energy_model")
    monkeypatch.setenv("DSE_LOAD_PLUGINS", "idle_aware")
    assert "idle_aware" in build_registry().names("energy_model")
    monkeypatch.delenv("DSE_LOAD_PLUGINS")
    assert "idle_aware" not in build_registry(no_plugins=True).names("energy_model")
    monkeypatch.setenv("DSE_NO_PLUGINS", "1")
    assert "idle_aware" not in build_registry().names("energy_model")


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(tmp_path, monkeypatch):
    install_metadata(tmp_path, "broken-plugin", "no_such_module",
                     {"broken": "no_such_module_xyz"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = build_registry()
    assert "ws_tile" in registry.names("mapping")
    (failure,) = registry.failures
    assert failure.plugin == "broken" and failure.provider == "broken-plugin"
    assert "ModuleNotFoundError" in failure.error


def test_a_misspelt_hook_is_caught_and_the_plugin_skipped():
    def dse_register_mapings(register):  # sic
        raise AssertionError("never called")

    registry = build_registry(
        load_entrypoints=False,
        extra_plugins=[(plugin_module("typo", dse_register_mapings=dse_register_mapings),
                        "typo-dist", "1.0")],
    )
    (failure,) = registry.failures
    assert failure.provider == "typo-dist" and "dse_register_mapings" in failure.error


def test_a_plugin_raising_while_registering_is_skipped():
    def dse_register_energy_models(register):
        raise RuntimeError("boom")

    registry = build_registry(extra_plugins=[
        (plugin_module("bad", dse_register_energy_models=dse_register_energy_models),
         "bad-dist", "1.0")])
    assert "constant" in registry.names("energy_model")
    assert registry.failures[0].error == "dse_register_energy_models: boom"


def test_a_name_clash_names_both_providers():
    def dse_register_mappings(register):
        register(MappingPlugin(name="ws_tile", factory=object, summary="mine"))

    registry = build_registry(extra_plugins=[
        (plugin_module("clash", dse_register_mappings=dse_register_mappings),
         "other-dist", "2.0")])
    # the clash does not break the host: other names still resolve
    assert registry.get("mapping", "os_tile").provider == "systolic-dse"
    with pytest.raises(PluginConflictError) as err:  # using the clashing name says who
        registry.get("mapping", "ws_tile")
    message = str(err.value)
    assert "mapping 'ws_tile' is registered twice" in message
    assert "systolic-dse" in message and "other-dist" in message
    assert [r.provider for r in registry.conflicts["mapping", "ws_tile"]] == [
        "systolic-dse", "other-dist"]


def test_a_clash_leaves_other_commands_working(capsys, monkeypatch):
    """`dse plugins` runs and shows the clash; a command that does not use the name works;
    one that does names both providers in one line."""
    from dse_core.cli import main
    from dse_core.host import registry as host

    def dse_register_mappings(register):
        register(MappingPlugin(name="ws_tile", factory=object, summary="mine"))

    clashing = build_registry(extra_plugins=[
        (plugin_module("clash", dse_register_mappings=dse_register_mappings),
         "other-dist", "2.0")])
    monkeypatch.setattr(host, "get_registry", lambda no_plugins=False: clashing)
    monkeypatch.setattr("dse_core.cli.group.get_registry", lambda no_plugins=False: clashing)

    def run(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    code, out, err = run("plugins")
    assert code == 0 and "os_tile" in out
    assert "ws_tile' is registered twice: by systolic-dse and by other-dist" in err
    code, out, _ = run("map", "resnet20", "--array", "8x8", "--mapping", "os_tile")
    assert code == 0 and "total" in out
    code, _, err = run("map", "resnet20", "--array", "8x8")  # ws_tile is the default
    assert code == 2 and "other-dist" in err and len(err.strip().splitlines()) == 1


def test_records_are_typed_and_validated():
    def dse_register_mappings(register):
        register(EnergyModelPlugin(name="x", factory=object, summary="wrong kind"))

    registry = build_registry(load_entrypoints=False, extra_plugins=[
        (plugin_module("wrong", dse_register_mappings=dse_register_mappings), "w", "1")])
    assert "expected a MappingPlugin, got EnergyModelPlugin" in registry.failures[0].error
    with pytest.raises(DseError, match="name = 'Bad Name'"):
        MappingPlugin(name="Bad Name", factory=object, summary="s")
    with pytest.raises(DseError, match="expected one line"):
        MappingPlugin(name="ok", factory=object, summary="two\nlines")


def test_unknown_plugin_and_unknown_option(registry):
    with pytest.raises(UnknownPluginError, match="unknown mapping 'rs_tile'; known: is_tile, "
                                                 "os_tile, ws_packed, ws_tile"):
        registry.get("mapping", "rs_tile")
    with pytest.raises(DseError, match="option 'mac_nj' is not accepted by 'constant'; "
                                       "accepted: mac_pj"):
        instantiate(registry.get("energy_model", "constant"), {"mac_nj": 1})


def test_process_registry_is_cached():
    assert get_registry() is get_registry()


def test_plugin_cli_command_is_listed_and_runs(monkeypatch):
    import click
    from click.testing import CliRunner

    from dse_core import CommandPlugin
    from dse_core.cli import cli
    from dse_core.host import registry as plugins

    @click.command()
    def hello():
        """Say hello."""
        click.echo("hello from a plugin")

    def dse_register_commands(register):
        register(CommandPlugin(name="hello", factory=lambda: hello, summary="says hello"))

    registry = build_registry(extra_plugins=[
        (plugin_module("cmd", dse_register_commands=dse_register_commands), "cmd-dist", "1")])
    monkeypatch.setattr(plugins, "_registry", registry)
    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"
    assert "hello" in CliRunner().invoke(cli, ["--help"]).output


def test_example_plugin_source_is_what_the_docs_show():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert textwrap.dedent("""\
        [project.entry-points.dse]
        idle_aware = "dse_example_plugin"
        """) in text
