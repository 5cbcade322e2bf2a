"""The search: study files, trials, the results database and its queries, on SQLite and on a
real PostgreSQL (``DSE_TEST_POSTGRES_URL``; .ci/run starts a throwaway server and sets
``DSE_REQUIRE_POSTGRES=1`` so a missing server fails instead of skipping)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from dse_core import DseError, EnergyModelPlugin, build_registry, hookimpl
from dse_core.cli import cli

from .conftest import SCALESIM

TOPOLOGY = SCALESIM / "Resnet18.csv"

ENERGY_STUDY = """
name = "{name}"
seed = 0
n_trials = {n_trials}
objectives = ["energy_pj", "cycles"]
[workload]
topology = "{topology}"
[space]
rows = {{ min = 8, max = 128 }}
cols = [8, 16, 32, 64, 128]
dataflow = ["ws", "os"]
[energy]
model = "{energy}"
options = {options}
[sampler]
name = "random"
[scaling]
heartbeat_interval_s = {heartbeat}
grace_period_s = {grace}
"""


def _energy_study(path: Path, name: str, n_trials: int, storage: str,
                  energy: str = "constant",
                  options: str = "{ mac_pj = 0.04, pe_cycle_pj = 0.002 }",
                  heartbeat: int = 5, grace: int = 60, topology: Path = TOPOLOGY) -> Path:
    """The storage goes on the command line (``--storage``), not in the file. Short
    heartbeats only where a test kills a worker: on a busy 2-core machine a 2 s grace period
    can expire for a live worker, whose trial is then failed and retried."""
    path.write_text(ENERGY_STUDY.format(name=name, n_trials=n_trials, energy=energy,
                                        options=options, heartbeat=heartbeat, grace=grace,
                                        topology=topology))
    return path


def _dse(*args: str) -> tuple[int, str, str]:
    from dse_core.cli import main

    runner = CliRunner()
    result = runner.invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)
    if isinstance(result.exception, DseError):
        return 2, result.output, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    del main
    return result.exit_code or 0, result.stdout, ""


def _load(storage: str, name: str):
    from dse_core.search.results import load_study

    return load_study(storage, name)


def _states(study) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(t.state.name for t in study.get_trials()))


def test_energy_only_search_records_queries_and_continues(storage, tmp_path):
    path = _energy_study(tmp_path / "s.toml", "energy", 15, storage)
    code, out, err = _dse("run", str(path), "--storage", storage)
    assert code == 0, err
    study = _load(storage, "energy")
    assert _states(study) == {"COMPLETE": 15}
    from dse_core import ArrayConfig, get_registry, instantiate
    from dse_core.search.results import ResultsDB, _row
    from dse_core.workloads.scalesim import read_topology

    registry = get_registry()
    topology = read_topology(TOPOLOGY)
    db = ResultsDB(storage, create=False)
    for trial in study.trials:
        layers = db.trial_layers("energy", trial.number)
        assert len(layers) == 21  # SCALE-Sim's ResNet-18 topology
        assert sum(r["total_pj"] for r in layers) == pytest.approx(trial.values[0])
        assert sum(r["cycles"] for r in layers) == trial.values[1] == trial.user_attrs["cycles"]
        row = _row(trial)  # pe_count, edp and array_energy_pj are derived when read
        assert row["pe_count"] == trial.params["rows"] * trial.params["cols"]
        assert row["edp"] == pytest.approx(trial.values[0] * trial.values[1])
        # constant model: pe_cycle_pj charges every PE-cycle the default clock gating
        # (idle_and_skew) leaves: the active PEs of each fold while they stream and preload
        array = ArrayConfig(trial.params["rows"], trial.params["cols"],
                            dataflow=trial.params.get("dataflow", "ws"))
        mapper = instantiate(registry.get("mapping", f"{array.dataflow}_tile"))
        clocked = 0
        for layer in topology:
            m = mapper.map(layer, array)
            preload = m.cycles_per_fold - m.streamed - (array.rows + array.cols - 2)
            clocked += m.active_pe_folds * (m.streamed + preload)
        assert sum(r["clock_pj"] for r in layers) == pytest.approx(0.002 * clocked)
        # the system total: the array's terms plus the buffers' and DRAM's, all stored
        parts = ("mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj",
                 "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj", "dram_pj")
        for r in layers:
            assert r["total_pj"] == pytest.approx(sum(r[k] for k in parts))
            assert r["dram_pj"] > 0 and r["dram_filter_reads"] > 0
        assert trial.user_attrs["memory_energy_pj"] + row["array_energy_pj"] == \
            pytest.approx(trial.values[0])
        assert "pe_count" not in trial.user_attrs and "edp" not in trial.user_attrs
    # running again continues the same study: nothing redone
    code, out2, err = _dse("run", str(path), "--storage", storage)
    assert code == 0, err and _states(_load(storage, "energy")) == {"COMPLETE": 15}
    # a bigger budget adds exactly the missing trials
    code, _, err = _dse("run", str(path), "--storage", storage, "--set", "n_trials=18")
    assert code == 0, err
    assert _states(_load(storage, "energy")) == {"COMPLETE": 18}

    # the Pareto front: no complete trial dominates a front member
    code, out, err = _dse("pareto", "energy", "--storage", storage, "--format", "json")
    front = json.loads(out)["rows"]
    complete = [t.values for t in _load(storage, "energy").trials]
    assert front
    for row in front:
        e, c = row["energy_pj"], row["cycles"]
        assert not any(v[0] <= e and v[1] <= c and (v[0] < e or v[1] < c) for v in complete)
    code, out, _ = _dse("pareto", "energy", "--storage", storage, "--format", "json",
                        "--where", "cycles<=300000")
    assert all(r["cycles"] <= 300000 for r in json.loads(out)["rows"])
    code, out, _ = _dse("show", "energy", str(front[0]["trial"]), "--storage", storage,
                        "--format", "json")
    shown = json.loads(out)
    assert len(shown["rows"]) == 21 and shown["meta"]["trial"] == front[0]["trial"]
    code, out, _ = _dse("export", "energy", "--storage", storage, "--format", "csv")
    assert len(out.strip().splitlines()) == 1 + 18
    # the documented order: design parameters, then the objectives, then the other metrics
    header = out.splitlines()[0].split(",")
    assert header[:7] == ["trial", "state", "rows", "cols", "dataflow", "energy_pj", "cycles"]
    assert header.index("mac_energy_pj") > header.index("cycles")
    code, out, _ = _dse("export", "energy", "--storage", storage, "--layers")
    import csv
    import io

    long = list(csv.DictReader(io.StringIO(out)))
    assert len(long) == 18 * 21 and long[0]["layer"] and long[0]["rows"]
    assert sum(int(r["layer_cycles"]) for r in long[:21]) == int(long[0]["cycles"])
    first = [r for r in long if r["trial"] == long[0]["trial"]]
    assert sum(float(r["total_pj"]) for r in first) == pytest.approx(float(first[0]["energy_pj"]))
    code, out, _ = _dse("export", "energy", "--storage", storage, "--layers", "--format", "json")
    nested = json.loads(out)
    assert nested["meta"]["objectives"] == ["energy_pj", "cycles"]
    assert all(len(r["layers"]) == 21 for r in nested["rows"])
    code, out, _ = _dse("studies", "--storage", storage, "--format", "json")
    listed = json.loads(out)["rows"]
    assert [(r["study"], r["trials"]) for r in listed] == [("energy", 18)]
    code, out, _ = _dse("plot", "energy", "--storage", storage, "-o", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_provenance_and_a_changed_spec(storage, tmp_path):
    path = _energy_study(tmp_path / "s.toml", "prov", 3, storage)
    assert _dse("run", str(path), "--storage", storage)[0] == 0
    from dse_core.search.results import ResultsDB

    db = ResultsDB(storage, create=False)
    prov = db.provenance("prov")
    assert prov["plugins"]["energy_model:constant"].startswith("systolic-dse")
    assert prov["packages"]["optuna"].startswith("5.") and prov["seed"] == 0
    assert db.study_spec("prov")["objectives"] == ["energy_pj", "cycles"]
    code, _, err = _dse("run", str(path), "--storage", storage, "--set", "seed=3")
    assert code == 2 and "already exists in this database with a different spec (seed" in err


SLEEPY = '''
import os, time
from dse_core import EnergyModelPlugin, hookimpl
from systolic_dse_plugins.energy_constant import ConstantEnergy

class Sleepy(ConstantEnergy):
    def layer_energy(self, layer, mapping, **kw):
        if layer.name == "Conv2_1a":  # not the first layer, which validation charges once
            time.sleep(float(os.environ.get("SLEEPY_S", "0")))
        return super().layer_energy(layer, mapping, **kw)

@hookimpl
def dse_register_energy_models(register):
    register(EnergyModelPlugin(name="sleepy", factory=Sleepy, summary="sleeps in Conv2_1a"))
'''


def test_a_plugin_raising_in_a_trial_fails_that_trial_only(storage, tmp_path):
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import run_worker, validate
    from systolic_dse_plugins.energy_constant import ConstantEnergy

    class Flaky(ConstantEnergy):
        def layer_energy(self, layer, mapping, **kw):
            if mapping.array.rows == 16:
                raise RuntimeError("flaky model cannot do 16 rows")
            return super().layer_energy(layer, mapping, **kw)

    module = types.ModuleType("flaky_plugin")
    module.dse_register_energy_models = hookimpl(lambda register: register(EnergyModelPlugin(
        name="flaky", factory=Flaky, summary="fails at 16 rows")))
    registry = build_registry(extra_plugins=[(module, "tests", "0.0")])
    path = _energy_study(tmp_path / "s.toml", "flaky", 12, storage, energy="flaky",
                         options="{ mac_pj = 0.04 }")
    study = load_search_study(path, [f'storage="{storage}"', "space.rows=[8, 16, 32]"])
    validate(registry, study)
    run_worker(registry, study)
    trials = _load(storage, "flaky").trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(t.params["rows"] == 16 for t in failed)
    assert all("RuntimeError: flaky model cannot do 16 rows" in t.user_attrs["error"]
               for t in failed)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 12
    code, out, _ = _dse("export", "flaky", "--storage", storage, "--format", "json")
    assert any("flaky model" in (r.get("error") or "") for r in json.loads(out)["rows"])


def test_a_database_of_another_schema_version_is_refused(storage, tmp_path):
    path = _energy_study(tmp_path / "s.toml", "v", 2, storage)
    assert _dse("run", str(path), "--storage", storage)[0] == 0
    import sqlalchemy as sa

    from dse_core.search.results import ResultsDB

    with ResultsDB(storage).engine.begin() as conn:
        conn.execute(sa.text("UPDATE dse_schema SET version = 99"))
    for args in (["pareto", "v"], ["run", str(path)], ["studies"]):
        code, _, err = _dse(*args, "--storage", storage)
        assert code == 2 and "written by schema version 99; this systolic-dse reads version 2" \
            in err, (args, err)


@pytest.mark.parametrize("edit, message", [
    (("[sampler]", "colour = 'red'\n[sampler]"), "unknown key 'energy.colour'"),
    (("n_trials = 5", "n_trials = 'many'"), "n_trials = 'many': input should be a valid "
     "integer"),
    (("{ min = 8, max = 128 }", "{ min = 100, max = 120 }"), "no power of two between 100 "
     "and 120"),
    (("{ min = 8, max = 128 }", "{ min = 64, max = 8 }"), "min = 64 > max = 8"),
    (("cols = [8, 16, 32, 64, 128]", "cols = []"), "values must be a non-empty list"),
    (('objectives = ["energy_pj", "cycles"]', 'objectives = ["joules"]'),
     "unknown objective 'joules'"),
    (('objectives = ["energy_pj", "cycles"]', 'objectives = ["energy_pj", "accuracy"]'),
     "accuracy objectives and constraints need space.compression = true"),
    (('model = "constant"', 'model = "nope"'), "unknown energy model 'nope'"),
    (("pe_cycle_pj = 0.002", "pe_cycle_pj = -1"), "pe_cycle_pj = -1: expected a finite"),
    (('name = "random"', 'name = "annealing"'), "sampler.name = 'annealing'"),
    ((f'topology = "{TOPOLOGY}"', 'topology = "missing.csv"'), "missing.csv"),
    (('dataflow = ["ws", "os"]', 'mapping = ["ws_tile", "nope_tile"]'),
     "unknown mapping 'nope_tile'"),
    (('dataflow = ["ws", "os"]', 'dataflow = ["ws"]\nmapping = ["ws_tile"]'),
     "give space.mapping (mapping plugins by name) or space.dataflow"),
    (('dataflow = ["ws", "os"]', 'mapping = ["ws_tile", "ws_tile"]'),
     "space.mapping lists a mapping twice"),
])
def test_bad_study_files_create_nothing(tmp_path, edit, message):
    text = ENERGY_STUDY.format(name="bad", n_trials=5, energy="constant",
                               options="{ mac_pj = 0.04, pe_cycle_pj = 0.002 }",
                               heartbeat=5, grace=60, topology=TOPOLOGY)
    assert edit[0] in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(*edit))
    code, _, err = _dse("run", str(path))
    assert code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "bad.db").exists()  # no study, no trial, not even the file


def test_storage_and_study_name_errors(tmp_path):
    code, _, err = _dse("studies", "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert code == 2 and "storage postgresql+psycopg://nobody@127.0.0.1:1/x: cannot" in err
    code, _, err = _dse("studies", "--storage", "nosuchdb://x")
    assert code == 2 and "not a usable SQLAlchemy URL" in err or "cannot open" in err
    code, _, err = _dse("studies", "--storage", f"sqlite:///{tmp_path / 'typo.db'}")
    assert code == 2 and "no such database file" in err
    assert not (tmp_path / "typo.db").exists()
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    path = _energy_study(tmp_path / "s.toml", "known", 2, storage)
    assert _dse("run", str(path), "--storage", storage)[0] == 0
    code, _, err = _dse("pareto", "unknown", "--storage", storage)
    assert code == 2 and "no study 'unknown'" in err and "studies: known" in err
    code, _, err = _dse("show", "known", "7", "--storage", storage)
    assert code == 2 and "has no trial 7" in err
    code, _, err = _dse("pareto", "known", "--storage", storage, "--where", "energy is low")
    assert code == 2 and "--where 'energy is low': expected METRIC OP NUMBER" in err
    code, _, err = _dse("run", str(path), "--storage", storage, "--workers", "3")
    assert code == 2 and "use --storage postgresql" in err


def test_run_with_two_workers(storage, tmp_path):
    path = _energy_study(tmp_path / "s.toml", "duo", 24, storage)
    code, out, err = _dse("run", str(path), "--storage", storage, "--workers", "2",
                          "--format", "json")
    assert code == 0, err
    states = _states(_load(storage, "duo"))
    assert states == {"COMPLETE": 24}  # exactly the budget (tests/test_search_workers.py)
    assert json.loads(out)["meta"]["pareto_front"] >= 1


def test_a_worker_joins_by_study_name(storage, tmp_path):
    path = _energy_study(tmp_path / "s.toml", "joined", 5, storage)
    assert _dse("run", str(path), "--storage", storage)[0] == 0
    _load(storage, "joined").set_user_attr("n_trials", 9)  # as a bigger `dse run` would
    code, _, err = _dse("worker", "--study", "joined", "--storage", storage)
    assert code == 0, err
    assert _states(_load(storage, "joined")) == {"COMPLETE": 9}
    code, _, err = _dse("worker", "--study", "nobody", "--storage", storage)
    assert code == 2 and "no study 'nobody'" in err


def test_a_schema_table_caught_between_creation_and_its_row(tmp_path):
    """Two fresh workers: one has made the tables, not yet the version row, when the other
    looks. A writer completes the row; a reader waits, then names the version it found."""
    import sqlalchemy as sa

    from dse_core.search.results import SCHEMA_VERSION, ResultsDB

    url = f"sqlite:///{tmp_path / 'race.db'}"
    db = ResultsDB(url)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM dse_schema"))
    with pytest.raises(DseError, match="results written by schema version None"):
        ResultsDB(url, create=False)
    ResultsDB(url)  # a worker that may create: writes the row and goes on
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM dse_schema")).scalar() == \
            SCHEMA_VERSION
    ResultsDB(url, create=False)


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    """Results of the array-only energy (schema 1) stay readable: the per-layer table gains
    the memory columns, NULL in the old rows."""
    import sqlalchemy as sa

    from dse_core.search.results import (
        MEMORY_ENERGY_COLUMNS,
        TRAFFIC_COLUMNS,
        ResultsDB,
        _metadata,
    )

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    new = set(MEMORY_ENERGY_COLUMNS) | set(TRAFFIC_COLUMNS)
    old_md = sa.MetaData()
    for table in _metadata().tables.values():
        sa.Table(table.name, old_md, *(sa.Column(c.name, c.type, primary_key=c.primary_key,
                                                 nullable=c.nullable)
                                       for c in table.columns if c.name not in new))
    old_md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO dse_schema (id, version) VALUES (1, 1)"))
        conn.execute(sa.text(
            "INSERT INTO dse_trial_layers (study_name, trial_number, layer, position, cycles, "
            "utilisation, mapping_efficiency, mac_switching_pj, clock_pj, idle_pj, "
            "fill_drain_pj, weight_load_pj, total_pj) VALUES ('s', 0, 'conv1', 0, 10, 0.5, "
            "0.5, 1, 2, 3, 4, 5, 15)"))
    db = ResultsDB(url, create=False)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM dse_schema")).scalar() == 2
    (row,) = db.trial_layers("s", 0)
    assert row["total_pj"] == 15 and all(row[c] is None for c in new)
    db.write_trial_layers("s", 1, [{**{k: v for k, v in row.items() if k not in new},
                                    "dram_pj": 7.0, "dram_ifmap_reads": 3}])
    assert db.trial_layers("s", 1)[0]["dram_pj"] == 7.0
