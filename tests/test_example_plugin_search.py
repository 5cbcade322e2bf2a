"""A third-party plugin package, installed as a user would, is fully usable: a search samples
its mapping and its energy model, provenance records and shows it, and continuing the study
after the plugin was upgraded warns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, SCALESIM

EXAMPLE = ROOT / "docs" / "examples" / "dse-example-plugin"

STUDY = f"""
name = "ext"
seed = 0
n_trials = 4
objectives = ["energy_pj", "cycles"]
[workload]
topology = "{SCALESIM / 'Resnet18.csv'}"
[space]
rows = [16, 32]
cols = [16]
mapping = ["ws_tile", "ws_prefetch"]
[energy]
model = "idle_aware"
options = {{ idle_pj = 0.005 }}
[sampler]
name = "grid"
"""


def _install(source: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)


def _dse(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "dse_core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def example_copy(tmp_path):
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    return copy


def test_a_search_samples_the_example_plugins_mapping_and_energy_model(tmp_path, example_copy):
    site = tmp_path / "site"
    _install(example_copy, site)
    study = tmp_path / "ext.toml"
    study.write_text(STUDY)
    storage = f"sqlite:///{tmp_path / 'ext.db'}"
    result = _dse(site, tmp_path, "run", str(study), "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 complete; 4 distinct designs" in result.stderr

    from dse_core.search.results import ResultsDB, load_study

    trials = load_study(storage, "ext").trials
    by = {(t.params["rows"], t.params["mapping"]): t for t in trials}
    assert set(by) == {(r, m) for r in (16, 32) for m in ("ws_tile", "ws_prefetch")}
    for rows in (16, 32):  # the prefetching mapping hides the R-cycle preload of each fold
        assert by[rows, "ws_prefetch"].user_attrs["cycles"] < by[rows, "ws_tile"].user_attrs[
            "cycles"]
    db = ResultsDB(storage, create=False)
    layers = db.trial_layers("ext", by[16, "ws_tile"].number)
    assert all(r["idle_pj"] >= 0 for r in layers) and any(r["idle_pj"] > 0 for r in layers)
    prov = db.provenance("ext")
    assert prov["plugins"]["mapping:ws_prefetch"] == "dse-example-plugin 0.1.0"
    assert prov["plugins"]["energy_model:idle_aware"] == "dse-example-plugin 0.1.0"
    assert prov["plugins"]["mapping:ws_tile"].startswith("systolic-dse ")
    assert prov["files"]["topology"]["digest"].startswith("sha256:")

    shown = _dse(site, tmp_path, "show", "ext", "0", "--storage", storage)
    assert shown.returncode == 0, shown.stderr
    assert "mapping:ws_prefetch" in shown.stdout and "dse-example-plugin 0.1.0" in shown.stdout
    listed = _dse(site, tmp_path, "studies", "--storage", storage, "--format", "json")
    row = json.loads(listed.stdout)["rows"][0]
    assert "dse-example-plugin 0.1.0" in row["plugins_from"] and row["runs"] == 1

    # upgrade the plugin and continue the study: a warning names what changed
    pyproject = example_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"',
                                                       'version = "0.1.1"'))
    shutil.rmtree(site)
    _install(example_copy, site)
    again = _dse(site, tmp_path, "run", str(study), "--set", "n_trials=4", "--format", "json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "warning: study 'ext' continues with other versions" in again.stderr
    assert ("mapping:ws_prefetch: dse-example-plugin 0.1.0 -> dse-example-plugin 0.1.1"
            in again.stderr)
    prov = ResultsDB(storage, create=False).provenance("ext")
    assert prov["plugins"]["mapping:ws_prefetch"] == "dse-example-plugin 0.1.0"  # the first
    assert prov["later_runs"][-1]["plugins"]["mapping:ws_prefetch"] == \
        "dse-example-plugin 0.1.1"
    third = _dse(site, tmp_path, "run", str(study), "--format", "json")
    assert "continues with other versions" not in third.stderr  # compared with the last run
