"""Accuracy-bearing trials: QAT per compression plan, cached by plan in the database."""

from __future__ import annotations

import json

import pytest

STUDY = """
name = "acc"
seed = 0
n_trials = 6
objectives = ["energy_pj", "accuracy_drop"]
[workload]
model = "lenet5"
dataset = "mnist5k"
[space]
rows = [64]
cols = [16, 64]
compression = true
[constraints]
accuracy_budget_pct = 3.0
[energy]
model = "msb_hamming"
[compression]
scheduler = "energy_prioritized"
scheduler_options = { ladder = [255, 8, 3] }
[training]
float_epochs = 5
qat_epochs = 0.3
fine_tune_epochs = 0.2
tune_images = 300
[sampler]
name = "random"
"""


def test_accuracy_is_trained_once_per_plan_and_reused_across_arrays(registry, tmp_path):
    import optuna

    from dse_core.search.results import ResultsDB, load_study, open_storage
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import create_or_load, make_sampler, run_worker, validate

    path = tmp_path / "acc.toml"
    path.write_text(STUDY)
    study = load_search_study(path)
    assert study.storage == f"sqlite:///{tmp_path / 'acc.db'}"
    validate(registry, study)
    db = ResultsDB(study.storage)
    same_plan = {"rows": 64, "n_high": 3, "n_low": 255, "high_layers": 1}
    seeded = create_or_load(study, open_storage(study.storage), make_sampler(study, 0, {}))
    seeded.enqueue_trial({**same_plan, "cols": 16})
    seeded.enqueue_trial({**same_plan, "cols": 64})
    seeded.enqueue_trial({"rows": 64, "cols": 16, "n_high": 255, "n_low": 255,
                          "high_layers": 1})  # the uncompressed plan, for comparison
    run_worker(registry, study)

    trials = [t for t in load_study(study.storage, "acc").trials
              if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 6
    first, second = trials[0], trials[1]
    assert first.params["cols"] == 16 and second.params["cols"] == 64
    # same plan, other array: no retraining, the same accuracy; the energy differs
    assert first.user_attrs["plan"] == second.user_attrs["plan"]
    assert first.user_attrs["accuracy_cached"] is False
    assert second.user_attrs["accuracy_cached"] is True
    assert first.user_attrs["accuracy"] == second.user_attrs["accuracy"]
    assert first.user_attrs["energy_pj"] != second.user_attrs["energy_pj"]
    # the highest-energy layer (conv2, ~65 %) holds >= 50 % of the energy: it gets n_high
    assert first.user_attrs["plan"]["conv2"] == 3 and first.user_attrs["plan"]["fc3"] == 255

    import sqlalchemy as sa

    with db.engine.connect() as conn:
        cache = conn.execute(sa.text("SELECT plan_json, accuracy FROM dse_accuracy_cache "
                                     "WHERE study_name = 'acc'")).all()
    plans = {json.dumps(t.user_attrs["plan"], sort_keys=True) for t in trials}
    assert len(cache) == len(plans)
    for t in trials:
        budget = 3.0
        assert t.values[1] == pytest.approx(t.user_attrs["accuracy_drop"])
        assert t.constraints["accuracy_drop_over_budget"] == pytest.approx(
            t.user_attrs["accuracy_drop"] - budget)
        # the list form optuna-dashboard reads holds the same value
        assert t.system_attrs["constraints"] == [t.constraints["accuracy_drop_over_budget"]]
        layers = {r["layer"]: r for r in db.trial_layers("acc", t.number)}
        assert {k: layers[k]["n_levels"] for k in layers} == {
            k: min(v, 255) for k, v in t.user_attrs["plan"].items()}
        allowed = json.loads(layers["conv2"]["allowed"])
        assert 0 in allowed and len(allowed) == t.user_attrs["plan"]["conv2"] or \
            t.user_attrs["plan"]["conv2"] == 255
    # Optuna's own API agrees with dse pareto: best_trials are the feasible front's designs
    from dse_core.search.report import design_key
    from dse_core.search.results import pareto_rows

    optuna_study = load_study(study.storage, "acc")
    best = {design_key(t.params, t.user_attrs.get("plan")) for t in optuna_study.best_trials}
    by_number = {t.number: t for t in optuna_study.trials}
    front = {design_key(by_number[r["trial"]].params, by_number[r["trial"]].user_attrs["plan"])
             for r in pareto_rows(optuna_study)}
    assert best == front and front
    assert all(t.user_attrs["accuracy_drop"] <= 3.0 for t in optuna_study.best_trials)
    # fewer codes in the big layers means less MAC energy than the full int8 plan, same array
    full = trials[2]
    assert set(full.user_attrs["plan"].values()) == {255} and full.params["cols"] == 16
    assert first.user_attrs["mac_energy_pj"] < 0.9 * full.user_attrs["mac_energy_pj"]
