"""The house: dse_core's folders follow the flow (DESIGN.md §3), imports point only downward
and never in a circle, modules stay readable in one sitting, and the wheel installs only
import names that are ours."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

CORE = ROOT / "dse_core"

#: each sub-package's place in the flow; an import may only point to the same or a lower rank
RANKS = {
    "errors": 0, "types": 0, "cache": 0,
    "host": 1,             # plugin host and contracts
    "workloads": 2,        # models, datasets, training, SCALE-Sim files -> LayerSpec
    "mapping": 3,          # LayerSpec x ArrayConfig -> LayerMapping (+ energy of one design)
    "quantization": 4,     # int8 quantisation and QAT (the statistics need the int8 codes)
    "switching": 5,        # gates, characterisation, statistics, calibration
    "compression": 6,      # selection, schedules' session, saved models
    "search": 7,           # study files, trials, results database, plots
    "cli": 8,
    "__init__": 9,         # the public API re-exports everything below
}
MAX_LINES = 560


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every dse_core module this file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dse_core")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("dse_core"):
            for alias in node.names:  # `from dse_core.cli import group` names a module
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def _rank(module: str) -> int:
    parts = module.split(".")
    return RANKS["__init__"] if len(parts) == 1 else RANKS[parts[1]]


def test_every_core_module_lives_in_a_ranked_room():
    for module in _modules():
        parts = module.split(".")
        assert len(parts) == 1 or parts[1] in RANKS, f"{module}: not in a known folder"
        assert len(parts) <= 3, f"{module}: nested deeper than one folder"
    for folder in CORE.iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert (folder / "__init__.py").is_file(), f"{folder.name}: not a package"


def test_imports_point_downward_and_never_in_a_circle():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    for module, deps in graph.items():
        for dep in deps:
            if dep == "dse_core":
                pytest.fail(f"{module} imports the dse_core package itself; import the module")
            assert _rank(dep) <= _rank(module), f"{module} imports {dep}: an upward arrow"
    # a circle would be a strongly connected component of more than one module
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_cli_command_modules_import_the_group_never_each_other():
    modules = _modules()
    commands = [m for m in modules if m.startswith("dse_core.cli.")
                and m.rsplit(".", 1)[1] not in ("group", "formatting", "__main__")]
    assert len(commands) >= 4
    for module in commands:
        cli_deps = {d for d in _imports(modules[module], modules) if d.startswith("dse_core.cli")}
        assert cli_deps <= {"dse_core.cli.group", "dse_core.cli.formatting"}, module


def test_modules_are_readable_in_one_sitting():
    for path in [*CORE.rglob("*.py"), *(ROOT / "systolic_dse_plugins").rglob("*.py")]:
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_the_wheel_installs_only_names_that_are_ours(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True,
                   timeout=300)
    wheel = next(tmp_path.glob("systolic_dse-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info",
                                                                          ".data"))}
    assert top == {"dse_core", "systolic_dse_plugins"}
    ours = {str(p.relative_to(ROOT)) for p in CORE.rglob("*.py")}
    assert ours <= set(names), sorted(ours - set(names))  # every room is a real package
    # the netlists of every shipped PE travel with it: no Yosys needed after pip install
    for top in ("pe_mac", "pe_mac_booth", "pe_mac_sm"):
        shipped = {n for n in names if n.startswith(f"systolic_dse_plugins/rtl/{top}_p")}
        assert len(shipped) == 13, top
        assert f"systolic_dse_plugins/rtl/{top}_p22.json.gz" in shipped
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        text = z.read(entry_points).decode()
    assert "= systolic_dse_plugins.mappings" in text and "= plugins." not in text
