"""What `dse run` says at the end: failed trials one line each and summarised, a non-zero exit
when trials failed, repeated designs counted once; `dse plot` counts the front `dse pareto`
lists."""

from __future__ import annotations

import json
import types

import pytest
from click.testing import CliRunner

from dse_core import DseError, EnergyModelPlugin, build_registry, hookimpl

from .test_search import _energy_study


def _registry_with(error: type[Exception]):
    from systolic_dse_plugins.energy_constant import ConstantEnergy

    class FailsAt16(ConstantEnergy):
        def layer_energy(self, layer, mapping, **kw):
            if mapping.array.rows == 16:
                raise error("cannot charge 16 rows")
            return super().layer_energy(layer, mapping, **kw)

    module = types.ModuleType("fails_at_16")
    module.dse_register_energy_models = hookimpl(lambda register: register(EnergyModelPlugin(
        name="fails_at_16", factory=FailsAt16, summary="fails at 16 rows")))
    return build_registry(extra_plugins=[(module, "tests", "0.0")])


def _run(monkeypatch, registry, *args: str):
    import dse_core.cli as cli_module
    import dse_core.cli.group as group

    monkeypatch.setattr(group, "get_registry", lambda no_plugins=False: registry)
    result = CliRunner().invoke(cli_module.cli, list(args), standalone_mode=False,
                                catch_exceptions=True)
    # dse_core.cli.main turns a DseError into exit 2 and a returned status into the exit code
    code = 2 if isinstance(result.exception, DseError) else (
        result.return_value if isinstance(result.return_value, int) else result.exit_code)
    return code, result.stdout, result.stderr, result.exception


@pytest.mark.parametrize("error, kind", [(DseError, "configuration"),
                                         (RuntimeError, "runtime")])
def test_failed_trials_are_one_line_each_and_summarised(monkeypatch, tmp_path, error, kind):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    path = _energy_study(tmp_path / "s.toml", "f", 12, storage, energy="fails_at_16",
                         options="{ mac_pj = 0.04 }")
    code, out, err, exc = _run(monkeypatch, _registry_with(error), "run", str(path),
                               "--storage", storage, "--set", "space.rows=[8, 16]")
    from dse_core.search.results import load_study

    trials = load_study(storage, "f").trials
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(t.params["rows"] == 16 for t in failed)
    assert all(t.user_attrs["error_kind"] == kind for t in failed)
    message = ("cannot charge 16 rows" if kind == "configuration"
               else "RuntimeError: cannot charge 16 rows")
    lines = [ln for ln in err.splitlines() if ln.startswith("trial ")]
    assert len(lines) == len(failed)  # one line per failed trial, naming it and its params
    assert all(" failed (rows=16, " in ln and ln.endswith(message)
               for ln in lines)
    assert f"{len(failed)} trials failed in this run:" in err
    assert f"  {len(failed)} x {message}" in err
    assert "Traceback" not in err
    if kind == "configuration":  # will fail again: no front as if the search were complete
        assert code == 2 and "failed with a configuration error" in str(exc)
        assert "pareto_front" not in out
    else:
        assert code == 1 and "pareto_front" in out and "warning:" in err


def test_a_repeated_design_costs_nothing_and_counts_once(tmp_path, registry):
    from dse_core.search.report import distinct_designs
    from dse_core.search.results import ResultsDB, load_study, open_storage
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import create_or_load, make_sampler, run_worker

    storage = f"sqlite:///{tmp_path / 'd.db'}"
    path = _energy_study(tmp_path / "s.toml", "d", 3, storage)
    study = load_search_study(path, [f'storage="{storage}"'])
    seeded = create_or_load(study, open_storage(storage), make_sampler(study, 0, {}))
    for _ in range(2):
        seeded.enqueue_trial({"rows": 16, "cols": 32, "dataflow": "ws"})
    seeded.enqueue_trial({"rows": 32, "cols": 32, "dataflow": "ws"})
    run_worker(registry, study)
    optuna_study = load_study(storage, "d")
    first, again, other = optuna_study.trials[:3]
    assert again.user_attrs["repeat_of"] == first.number and "repeat_of" not in other.user_attrs
    assert again.values == first.values
    db = ResultsDB(storage, create=False)
    assert db.trial_layers("d", again.number) == db.trial_layers("d", first.number)
    assert distinct_designs(optuna_study) == 2


def test_plot_counts_the_front_that_pareto_lists(tmp_path, registry, monkeypatch):
    from dse_core.search.plotting import plot_data
    from dse_core.search.results import load_study, pareto_rows
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import run_worker

    storage = f"sqlite:///{tmp_path / 'p.db'}"
    path = _energy_study(tmp_path / "s.toml", "p", 25, storage)
    study = load_search_study(path, [f'storage="{storage}"'])
    run_worker(registry, study)
    optuna_study = load_study(storage, "p")
    data = plot_data(optuna_study)
    assert sorted(d.trial for d in data.front) == sorted(r["trial"] for r in
                                                        pareto_rows(optuna_study))
    assert len({d.trial for d in data.designs}) == len(data.designs)
    assert data.title().endswith(f"{len(pareto_rows(optuna_study))} on the 2-objective front")
    # with two objectives the plotted pair's front is the front
    assert {d.trial for d in data.designs if d.on_pair_front} == {d.trial for d in data.front}
    code, out, err, _ = _run(monkeypatch, registry, "plot", "p", "--storage", storage,
                             "-o", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 10_000
    assert data.title() in out
    code, out, err, _ = _run(monkeypatch, registry, "plot", "p", "--storage", storage,
                             "-o", str(tmp_path / "p.html"), "--html")
    page = (tmp_path / "p.html").read_text()
    assert code == 0 and "latency (cycles)" in page and data.title() in page


def test_one_number_format_per_column():
    from dse_core.cli.formatting import render

    rows = [{"layer": "a", "pj": 10550.5318, "n": 3, "drop": 0.8},
            {"layer": "b", "pj": 100757.0, "n": 100757, "drop": -0.25}]
    lines = render(rows, "table", total={"layer": "total", "pj": 111307.5318},
                   meta={"x": 0.123456789}).splitlines()
    assert lines[0] == "x: 0.1235"
    assert lines[3].split() == ["a", "10,551", "3", "0.8000"]
    assert lines[4].split() == ["b", "100,757", "100,757", "-0.2500"]
    assert lines[6].split() == ["total", "111,308"]
    assert json.loads(render(rows, "json"))["rows"][0]["pj"] == 10550.5318  # raw in json


def test_the_validation_budget_is_judged_in_the_report():
    from dse_core.compression.compress import CompressionResult

    def result(val_drop: float, tune_drop: float) -> CompressionResult:
        return CompressionResult(
            study={"compression": {"accuracy_budget_pct": 2.0}}, float_accuracy=98.0,
            baseline_accuracy=97.0, compressed_accuracy=97.0 - val_drop,
            baseline_tune_accuracy=96.0, compressed_tune_accuracy=96.0 - tune_drop,
            baseline_mac_pj=10.0, compressed_mac_pj=5.0, baseline_total_pj=20.0,
            compressed_total_pj=15.0, layers=[])

    over = result(2.3, 1.6).to_json()
    assert over["within_budget"] is False and over["accuracy_drop"] == pytest.approx(2.3)
    assert over["tune_accuracy_drop"] == pytest.approx(1.6)
    assert result(1.9, 1.6).to_json()["within_budget"] is True
