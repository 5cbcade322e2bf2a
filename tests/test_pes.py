"""The PE as a design axis: shipped PEs, what they make cheap, and a search over them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dse_core import DseError, ValidationError, instantiate
from dse_core.switching.pe_design import PeDesign
from dse_core.switching.pipeline import characterize, resolve_pe

from .test_search_accuracy import STUDY as ACCURACY_STUDY


def uniform_curve(char):
    """pJ per PE-cycle of each weight code under uniform activations and psum groups."""
    return char.per_weight_energy(np.full((256, 256), 1 / 65536),
                                  np.full(char.msb_bits + 1, 1 / (char.msb_bits + 1)))


def ranks(values):
    return np.argsort(np.argsort(values))


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def booth_digits(code):
    """Non-zero radix-4 Booth digits of an int8 weight."""
    bits = [(code >> i) & 1 for i in range(8)]
    padded = [0, *bits]  # w[-1] = 0
    digits = [-2 * padded[2 * i + 2] + padded[2 * i + 1] + padded[2 * i] for i in range(4)]
    assert sum(d * 4 ** i for i, d in enumerate(digits)) == code
    return sum(d != 0 for d in digits)


@pytest.fixture(scope="module")
def booth(registry):
    from dse_core import ArrayConfig

    return characterize(registry, ArrayConfig(64, 8), options={"pe": "booth"})


def test_the_shipped_pes_are_plugins(registry):
    assert registry.names("pe") == ["array", "booth", "sign_magnitude"]
    for name in registry.names("pe"):
        design = instantiate(registry.get("pe", name))
        assert isinstance(design, PeDesign) and design.name == name
        assert design.rtl.is_file() and sorted(design.netlists) == list(range(16, 29))
    done = subprocess.run([sys.executable, "-m", "dse_core.cli", "plugins", "--kind", "pe",
                           "--format", "json"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert [r["name"] for r in json.loads(done.stdout)["rows"]] == registry.names("pe")


def test_designs_and_options_are_validated(registry, tmp_path):
    with pytest.raises(ValidationError, match="PeDesign.top = 'not a module'"):
        PeDesign("x", tmp_path / "x.v", "not a module")
    with pytest.raises(ValidationError, match="PeDesign.netlists = 0"):
        PeDesign("x", tmp_path / "x.v", "x", {0: tmp_path / "x.json"})
    record = registry.get("characterizer", "gate_level")
    with pytest.raises(DseError, match="give a shipped PE or your own RTL, not both"):
        instantiate(record, resolve_pe({"pe": "booth", "rtl": "mine.v"}, registry))
    with pytest.raises(DseError, match="unknown pe 'wallace'; known: array, booth, "
                                       "sign_magnitude"):
        resolve_pe({"pe": "wallace"}, registry)
    done = subprocess.run([sys.executable, "-m", "dse_core.cli", "characterize", "--pe",
                           "wallace"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: unknown pe 'wallace'")


def test_booth_makes_other_weights_cheap(characterization, booth):
    """The array PE's cost follows the weight's bits, the Booth PE's its non-zero radix-4
    digits: their rankings of the 256 codes differ, and each tracks its own structure."""
    array_pj, booth_pj = uniform_curve(characterization), uniform_curve(booth)
    assert characterization.key != booth.key
    assert booth.description["pe"] == "booth" and booth.description["gates"] > 500
    codes = np.arange(-128, 128)
    digits = np.array([booth_digits(int(c)) for c in codes])
    assert spearman(booth_pj, digits) > 0.6
    assert spearman(booth_pj, digits) > spearman(array_pj, digits) + 0.2
    assert spearman(array_pj, booth_pj) < 0.7
    assert booth_pj[128] == booth_pj.min()  # weight 0: every digit 0, nothing selected


SEARCH = """
name = "pes"
seed = 0
n_trials = 2
objectives = ["energy_pj", "cycles"]
[workload]
model = "lenet5"
dataset = "mnist5k"
[space]
rows = [64]
cols = [16]
pe = ["array", "booth"]
[energy]
model = "msb_hamming"
calibration_images = 128
[sampler]
name = "grid"
"""


def test_a_search_over_pes_prices_each_with_its_own_netlist(lenet_inputs, booth, tmp_path,
                                                             no_eda_path):
    """On a machine without Yosys and Icarus: the PEs' netlists ship."""
    study = tmp_path / "pes.toml"
    study.write_text(SEARCH)
    done = subprocess.run([sys.executable, "-m", "dse_core.cli", "run", str(study), "--format",
                           "json"], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, "PATH": no_eda_path})
    assert done.returncode == 0, done.stderr[-3000:]
    from dse_core.search.results import load_study

    trials = load_study(f"sqlite:///{tmp_path / 'pes.db'}", "pes").trials
    by_pe = {t.params["pe"]: t.user_attrs for t in trials}
    assert sorted(by_pe) == ["array", "booth"]
    assert by_pe["array"]["cycles"] == by_pe["booth"]["cycles"]  # same array, same mapping
    assert by_pe["array"]["mac_energy_pj"] != pytest.approx(by_pe["booth"]["mac_energy_pj"],
                                                            rel=0.01)
    assert by_pe["array"]["area_mm2"] < by_pe["booth"]["area_mm2"]  # 481 vs 571 cells
    bad = tmp_path / "bad.toml"
    bad.write_text(SEARCH.replace('pe = ["array", "booth"]', 'pe = ["array", "nope"]')
                   .replace('name = "pes"', 'name = "bad"'))
    refused = subprocess.run([sys.executable, "-m", "dse_core.cli", "run", str(bad)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path,
                             env=dict(os.environ))
    assert refused.returncode == 2 and refused.stderr.startswith("error: unknown pe 'nope'")
    assert not (tmp_path / "bad.db").exists()  # validated before anything is written


# the accuracy-cache study of test_search_accuracy, over two PEs
COMPRESSED = (ACCURACY_STUDY.replace('name = "acc"', 'name = "pec"')
              .replace("n_trials = 6", "n_trials = 4")
              .replace('objectives = ["energy_pj"', 'objectives = ["mac_energy_pj"')
              .replace("cols = [16, 64]", 'cols = [16]\npe = ["array", "booth"]'))


def test_a_search_over_pe_and_compression_selects_each_pes_codes(
        registry, lenet_inputs, booth, tmp_path, without_eda_tools):
    """PE x compression, without Yosys: each PE's guide picks its own cheap codes for the
    same knobs; the accuracy cache is keyed by the codes, so a plan whose sets two PEs
    share is fine-tuned once."""
    import json

    import optuna
    import sqlalchemy as sa

    from dse_core.search.results import ResultsDB, load_study, open_storage
    from dse_core.search.study_file import load_search_study
    from dse_core.search.trials import create_or_load, make_sampler, run_worker, validate

    path = tmp_path / "pec.toml"
    path.write_text(COMPRESSED)
    study = load_search_study(path)
    validate(registry, study)
    seeded = create_or_load(study, open_storage(study.storage), make_sampler(study, 0, {}))
    squeezed = {"rows": 64, "cols": 16, "n_high": 3, "n_low": 255, "high_layers": 1}
    full = {**squeezed, "n_high": 255}
    for knobs in (squeezed, full):
        for pe in ("array", "booth"):
            seeded.enqueue_trial({**knobs, "pe": pe})
    run_worker(registry, study)
    trials = [t for t in load_study(study.storage, "pec").trials
              if t.state == optuna.trial.TrialState.COMPLETE]
    assert [(t.params["pe"], t.params["n_high"]) for t in trials] == [
        ("array", 3), ("booth", 3), ("array", 255), ("booth", 255)]
    db = ResultsDB(study.storage)
    conv2 = [json.loads({r["layer"]: r for r in db.trial_layers("pec", t.number)}["conv2"]
                        ["allowed"]) for t in trials]
    # conv2 holds most of LeNet-5's MAC energy on both PEs: the one squeezed layer
    assert trials[0].user_attrs["plan"] == trials[1].user_attrs["plan"]
    assert trials[0].user_attrs["plan"]["conv2"] == 3
    assert conv2[0] != conv2[1] and len(conv2[0]) == len(conv2[1]) == 3
    assert not trials[0].user_attrs["accuracy_cached"]
    assert not trials[1].user_attrs["accuracy_cached"]  # other codes: its own fine-tune
    # the int8 plan: the same codes on both PEs, one fine-tune, each PE's own energy
    assert conv2[2] == conv2[3] == list(range(-127, 128))  # FULL_CODES: symmetric int8
    assert trials[3].user_attrs["accuracy_cached"]
    assert trials[3].user_attrs["accuracy"] == trials[2].user_attrs["accuracy"]
    assert trials[3].user_attrs["mac_energy_pj"] != pytest.approx(
        trials[2].user_attrs["mac_energy_pj"], rel=0.01)
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT allowed_json FROM dse_accuracy_cache "
                                    "WHERE study_name = 'pec'")).all()
    assert len(rows) == 3
    assert sorted(json.loads(r[0])["conv2"] for r in rows if len(json.loads(r[0])["conv2"])
                  == 3) == sorted(conv2[:2])
    # squeezing conv2 saves MAC energy on both PEs
    for squeezed_trial, full_trial in ((trials[0], trials[2]), (trials[1], trials[3])):
        assert squeezed_trial.user_attrs["mac_energy_pj"] < \
            0.8 * full_trial.user_attrs["mac_energy_pj"]


def test_a_pe_dimension_takes_your_rtl_and_names_a_missing_file(registry, tmp_path):
    from dse_core.search.study_file import load_search_study, pe_options
    from dse_core.search.trials import validate

    assert pe_options("booth") == {"pe": "booth"}
    assert pe_options("my_pe.v") == {"rtl": "my_pe.v", "top": "pe_mac"}
    assert pe_options("rtl/my_pe.sv:mac") == {"rtl": "rtl/my_pe.sv", "top": "mac"}
    (tmp_path / "mine.v").write_text("module pe_mine(); endmodule\n")
    path = tmp_path / "s.toml"
    path.write_text(SEARCH.replace('pe = ["array", "booth"]',
                                   'pe = ["array", "mine.v:pe_mine", "gone.v"]'))
    study = load_search_study(path)
    assert study.space.pe == ["array", f"{tmp_path / 'mine.v'}:pe_mine",
                              str(tmp_path / "gone.v")]  # made absolute beside the study
    with pytest.raises(DseError, match=r"space.pe: '.*gone.v': no such Verilog file"):
        validate(registry, study)


def test_every_dimension_a_trial_draws_makes_it_another_design(registry):
    """A searched parameter that design_key ignored would make two designs one (the second
    a 'repeat' of the first, its results copied): every parameter the evaluator suggests,
    with every non-compression dimension searched, is a design parameter."""
    import optuna

    from dse_core.search.report import DESIGN_PARAMS
    from dse_core.search.study_file import SearchStudy
    from dse_core.search.trials import Evaluator

    study = SearchStudy.model_validate({
        "name": "all", "objectives": ["energy_pj"], "energy": {"model": "constant"},
        "workload": {"model": "lenet5"},
        "space": {"rows": [8, 16], "cols": [8, 16], "mapping": ["ws_tile", "ws_packed"],
                  "ifmap_kb": [8, 16], "filter_kb": [8, 16], "ofmap_kb": [8, 16],
                  "index_storage": [False, True], "pe": ["array", "booth"]}})
    evaluator = Evaluator(registry, study, db=None)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    evaluator.suggest(trial)
    evaluator.suggest_memory(trial)
    evaluator.suggest_pe(trial)
    assert set(trial.params) == {"rows", "cols", "mapping", "ifmap_kb", "filter_kb",
                                 "ofmap_kb", "index_storage", "pe"}
    assert set(trial.params) <= set(DESIGN_PARAMS)


def test_characterisations_cached_before_pes_were_plugins_still_name_their_pe():
    from dse_core.cli.switching import _pe_name

    assert _pe_name({"source": "gate_level", "pe": "booth"}) == "booth"
    assert _pe_name({"source": "gate_level",
                     "rtl": "default PE (systolic_dse_plugins/rtl/pe.v)"}) == "array"
    assert _pe_name({"source": "gate_level", "rtl": "mine.v"}) == "own RTL"
    assert _pe_name({"source": "table_file", "path": "t.csv"}) == "table"


def test_an_unknown_pe_stops_dse_energy_before_anything_is_written(tmp_path):
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "dse_core.cli", "energy", "lenet5",
                           "--weights", "random", "--dataset", "digits", "--array", "8x8",
                           "--energy-model", "msb_hamming", "--pe", "wallace"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DSE_CACHE_DIR": str(cache)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: unknown pe 'wallace'")
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
