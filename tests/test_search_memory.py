"""Searches over the memory system: buffer sizes and index storage as dimensions, on-chip and
area budgets, the memory objectives, and the study-file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import DATA
from .test_search import _dse, _load, _states

STUDY = f"""
name = "mem"
seed = 0
n_trials = 12
objectives = ["energy_pj", "memory_energy_pj", "onchip_kb"]
[workload]
topology = "{DATA / 'scalesim_access' / 'topology.csv'}"
[space]
rows = [8, 16]
cols = [8, 16]
ifmap_kb = [1, 4, 16]
ofmap_kb = {{ min = 1, max = 4 }}
[constraints]
max_onchip_kb = 80
[memory]
buffers_kb = [8, 64, 8]
clock_gating = "idle"
[energy]
model = "constant"
options = {{ mac_pj = 0.04, pe_cycle_pj = 0.002 }}
[sampler]
name = "random"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mem.toml"
    path.write_text(text)
    return path


def test_buffer_sizes_are_searched_and_budgeted(tmp_path):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    code, _, err = _dse("run", str(_write(tmp_path, STUDY)), "--storage", storage)
    assert code == 0, err
    study = _load(storage, "mem")
    from dse_core import ArrayConfig, get_registry, instantiate
    from dse_core.search.results import ResultsDB
    from dse_core.workloads.scalesim import read_topology

    mapper = instantiate(get_registry().get("mapping", "ws_tile"))
    topology = read_topology(DATA / "scalesim_access" / "topology.csv")
    db = ResultsDB(storage, create=False)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert complete and sum(_states(study).values()) == 12
    for t in complete:
        onchip = t.params["ifmap_kb"] + 64 + t.params["ofmap_kb"]
        assert t.params["ifmap_kb"] in (1, 4, 16) and t.params["ofmap_kb"] in (1, 2, 4)
        assert t.values[2] == onchip <= 80 and t.user_attrs["onchip_kb"] == onchip
        layers = db.trial_layers("mem", t.number)
        assert sum(r["sram_ifmap_pj"] + r["sram_filter_pj"] + r["sram_ofmap_pj"]
                   + r["dram_pj"] for r in layers) == pytest.approx(t.values[1])
        assert t.user_attrs["area_mm2"] > 0
        # clock gating "idle": the constant model clocks each fold's tile for the whole fold
        array = ArrayConfig(t.params["rows"], t.params["cols"], clock_gating="idle")
        clocked = sum(m.active_pe_folds * m.cycles_per_fold
                      for m in (mapper.map(layer, array) for layer in topology))
        assert sum(r["clock_pj"] for r in layers) == pytest.approx(0.002 * clocked)
    assert pruned and all(t.params["ifmap_kb"] == 16 for t in pruned)  # 16 + 64 + ofmap > 80
    assert all(t.user_attrs["rejected"] == f"onchip_kb {t.user_attrs['onchip_kb']} > 80"
               for t in pruned)
    # a smaller ifmap buffer never reads less from DRAM for the same array
    by_array: dict[tuple[int, int], dict[int, int]] = {}
    for t in complete:
        words = sum(r["dram_ifmap_reads"] for r in db.trial_layers("mem", t.number))
        by_array.setdefault((t.params["rows"], t.params["cols"]), {})[t.params["ifmap_kb"]] = words
    for reads in by_array.values():
        sizes = sorted(reads)
        assert [reads[s] for s in sizes] == sorted(reads.values(), reverse=True)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace("buffers_kb = [8, 64, 8]", "buffers_kb = [8, 0, 8]"),
     "buffers_kb"),
    (lambda s: s.replace("buffers_kb = [8, 64, 8]", "buffers_kb = [8, 8]"), "buffers_kb"),
    (lambda s: s.replace('clock_gating = "idle"', 'clock_gating = "often"'), "clock_gating"),
    (lambda s: s.replace("[memory]", '[memory]\nmodel = "sram9000"'),
     "unknown memory model 'sram9000'"),
    (lambda s: s.replace("max_onchip_kb = 80", "max_onchip_kb = -3"), "max_onchip_kb"),
    (lambda s: s.replace("ifmap_kb = [1, 4, 16]", "ifmap_kb = [0]"), "ifmap_kb"),
])
def test_bad_memory_settings_are_refused_before_anything_is_written(tmp_path, edit, message):
    storage = tmp_path / "r.db"
    code, _, err = _dse("run", str(_write(tmp_path, edit(STUDY))), "--storage",
                        f"sqlite:///{storage}")
    assert code == 2 and message in err and "\n" not in err.strip()
    assert not storage.exists()


def test_a_study_recorded_before_system_energy_is_not_continued(tmp_path):
    """Its energy_pj is the array's alone: new trials priced with memory would not compare."""
    import json

    import sqlalchemy as sa

    storage = f"sqlite:///{tmp_path / 'r.db'}"
    path = _write(tmp_path, STUDY)
    assert _dse("run", str(path), "--storage", storage, "--set", "n_trials=1")[0] == 0
    from dse_core.search.results import ResultsDB

    db = ResultsDB(storage, create=False)
    spec = db.study_spec("mem")
    del spec["memory"]
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE dse_studies SET spec_json = :s"), {"s": json.dumps(spec)})
    code, _, err = _dse("run", str(path), "--storage", storage)
    assert code == 2 and "recorded before system energy" in err
    assert _dse("pareto", "mem", "--storage", storage)[0] == 0  # still readable


def test_a_failed_trial_shows_no_energies_even_if_it_wrote_rows(tmp_path):
    """A worker killed after writing a trial's per-layer rows leaves them behind: they are
    not that trial's result and `dse show` does not present them as one."""
    import json

    import optuna

    from dse_core.search.results import ResultsDB, load_study, open_storage

    storage = f"sqlite:///{tmp_path / 'r.db'}"
    assert _dse("run", str(_write(tmp_path, STUDY)), "--storage", storage,
                "--set", "n_trials=1")[0] == 0
    study = optuna.load_study(study_name="mem", storage=open_storage(storage))
    killed = study.ask()
    db = ResultsDB(storage, create=False)
    db.write_trial_layers("mem", killed.number, db.trial_layers("mem", 0))
    study.tell(killed, state=optuna.trial.TrialState.FAIL)
    code, out, _ = _dse("show", "mem", str(killed.number), "--storage", storage)
    assert code == 0 and f"trial {killed.number} failed: its worker stopped" in out
    assert "dram_pj" not in out
    code, out, _ = _dse("show", "mem", str(killed.number), "--storage", storage,
                        "--format", "json")
    assert json.loads(out)["rows"] == [] and load_study(storage, "mem") is not None
