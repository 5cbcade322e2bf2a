"""``dse compress`` end to end on LeNet-5 / mnist5k (short training), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dse_core.cli import cli
from dse_core.compression.study import load_study

STUDY = """
name = "tiny"
seed = 0
[workload]
model = "lenet5"
dataset = "mnist5k"
[array]
rows = 64
cols = 64
[energy]
model = "msb_hamming"
[compression]
policy = "energy_accuracy"
scheduler = "energy_prioritized"
scheduler_options = { ladder = [255, 8, 3], fine_tune_epochs = 0.2 }
accuracy_budget_pct = 2.0
[training]
float_epochs = 5
qat_epochs = 0.5
final_epochs = 0.25
tune_images = 300
"""


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compress")
    study = tmp / "tiny.toml"
    study.write_text(STUDY)
    result = CliRunner().invoke(cli, ["compress", str(study), "-o", str(tmp / "out")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp / "out" / "report.json").read_text())
    return tmp, result.output, report


def test_compress_reports_energy_and_accuracy(compressed):
    tmp, output, report = compressed
    assert "reduction:     MAC energy" in output and "int8 baseline: accuracy" in output
    layers = {lc["layer"]: lc for lc in report["layers"]}
    assert list(layers) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert {lc["n_levels"] for lc in layers.values()} <= {255, 8, 3}
    assert sum(lc["share_before"] for lc in layers.values()) == pytest.approx(1.0)
    for lc in layers.values():
        assert len(lc["allowed"]) == lc["n_levels"] and 0 in lc["allowed"]
        if lc["n_levels"] < 255:
            assert lc["energy_after_pj"] < lc["energy_before_pj"]
    assert report["compressed_mac_pj"] == pytest.approx(
        sum(lc["energy_after_pj"] for lc in layers.values()))
    assert report["mac_reduction_pct"] == pytest.approx(
        100 * (1 - report["compressed_mac_pj"] / report["baseline_mac_pj"]))
    # the schedule compressed something, and only kept steps within the budget
    kept = [s for s in report["steps"] if s["accepted"]]
    assert kept and report["mac_reduction_pct"] > 20
    assert all(s["accuracy"] >= report["baseline_tune_accuracy"] - 2.0 for s in kept)
    assert all(s["accuracy"] < report["baseline_tune_accuracy"] - 2.0
               for s in report["steps"] if not s["accepted"])
    # the highest-energy layer (conv2, ~65 % of the MAC energy) went first
    assert report["steps"][0]["layer"] == "conv2"
    # the budget: kept on the tuning split; the validation drop is said, and judged
    assert report["tune_accuracy_drop"] == pytest.approx(
        report["baseline_tune_accuracy"] - report["compressed_tune_accuracy"])
    assert report["tune_accuracy_drop"] <= 2.0 + 1e-9
    assert report["within_budget"] == (report["accuracy_drop"] <= 2.0 + 1e-9)
    assert ("budget exceeded on the validation split" in output) == (
        not report["within_budget"])
    assert report["baseline_accuracy"] > 90 and report["compressed_accuracy"] > 85
    assert report["plugins"]["selector:energy_accuracy"].startswith("systolic-dse")


def test_compressed_model_file_matches_the_report(compressed, registry):
    tmp, _, report = compressed
    from dse_core.compression.model_io import load_compressed
    from dse_core.quantization.qat import integer_predict
    from dse_core.workloads.datasets import load_dataset

    net, meta = load_compressed(registry, tmp / "out" / "model.npz")
    assert meta["model"] == "lenet5" and meta["study"] == "tiny"
    for lc in report["layers"]:
        codes = net.codes()[lc["layer"]]
        assert set(np.unique(codes)) <= set(lc["allowed"])
    x, y = load_dataset(registry, "mnist5k").val.tensors
    logits = integer_predict(net, x)  # integer-only inference
    with torch.no_grad():
        assert torch.equal(logits, net.model.eval()(x))
    acc = 100.0 * int((logits.argmax(1) == y).sum()) / len(y)
    assert acc == pytest.approx(report["compressed_accuracy"], abs=1e-9)


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


SCHEDULER = ('scheduler = "energy_prioritized"\n'
             'scheduler_options = { ladder = [255, 8, 3], fine_tune_epochs = 0.2 }')


@pytest.mark.parametrize("edit, message", [
    (('policy = "energy_accuracy"', 'policy = "magic"'),
     "unknown selector 'magic'; known: energy_accuracy, full, kmeans, lowest_energy, "
     "power_of_two"),
    ((SCHEDULER, 'scheduler = "energy_backtracking"\n'
      'scheduler_options = { selection_variants = [{ criterion = "lagrangian" }, '
      '{ energy_wieght = 3 }] }'),
     "compression.scheduler_options.selection_variants: {'energy_wieght': 3}: option "
     "'energy_wieght' is not accepted by 'energy_accuracy'"),
    ((SCHEDULER, 'scheduler = "energy_backtracking"\n'
      'scheduler_options = { patience = 0 }'), "energy_backtracking.patience = 0"),
    ((SCHEDULER, 'scheduler = "energy_backtracking"\n'
      'scheduler_options = { squeeze_variants = [{ deadzone = 0.6 }, { deadzone = 1.2 }] }'),
     "compression.scheduler_options.squeeze_variants: {'deadzone': 1.2}: "
     "energy_accuracy.deadzone = 1.2"),
    (("tune_images = 300", "tune_images = 300\ndistill_weight = 2"),
     "training.distill_weight = 2: input should be less than or equal to 1"),
    (('scheduler = "energy_prioritized"', 'scheduler = "greedy"'), "unknown scheduler 'greedy'"),
    (("accuracy_budget_pct = 2.0", "accuracy_budget_pct = 120"),
     "compression.accuracy_budget_pct = 120: input should be less than 100"),
    (("accuracy_budget_pct = 2.0", "accuracy_budget_pct = 0"),
     "compression.accuracy_budget_pct = 0: input should be greater than 0"),
    (("ladder = [255, 8, 3]", "ladder = [255, 8, 0]"), "energy_prioritized.ladder = [255, 8, 0]"),
    (("rows = 64", "rows = 64\nbanks = 2"), "unknown key 'array.banks'"),
    (('model = "lenet5"', 'model = 5'), "workload.model = 5: input should be a valid string"),
    (("[workload]", "[workload]\ncheckpoint = 'nope.pt'"), "nope.pt: no such checkpoint"),
    (("[training]", "[training\n"), "not valid TOML"),
])
def test_bad_study_files_fail_with_one_line(tmp_path, capsys, edit, message):
    from dse_core.cli import main

    path = _study(tmp_path, STUDY.replace(*edit))
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.count("\n") == 0, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_another_model_is_refused(tmp_path, capsys, registry):
    from dse_core.cli import main
    from dse_core.workloads.datasets import load_dataset
    from dse_core.workloads.layers import build_model
    from dse_core.workloads.training import save_checkpoint

    splits = load_dataset(registry, "mnist5k")
    model, _ = build_model(registry, "vgg8", input_shape=(1, 28, 28), num_classes=10)
    ckpt = save_checkpoint(tmp_path / "vgg.pt", model, model_ref="vgg8", splits=splits,
                           epochs=1, seed=0, val_accuracy=10.0)
    path = _study(tmp_path, STUDY.replace("[workload]", f"[workload]\ncheckpoint = '{ckpt}'"))
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(path), "-o", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "checkpoint of model 'vgg8', not 'lenet5'" in capsys.readouterr().err


def test_overrides_and_defaults(tmp_path):
    path = _study(tmp_path, STUDY)
    study = load_study(path, ["compression.accuracy_budget_pct=3", "array.rows=32",
                              'compression.policy="lowest_energy"'])
    assert study.compression.accuracy_budget_pct == 3.0 and study.array.rows == 32
    assert study.compression.policy == "lowest_energy" and study.name == "tiny"
    assert study.training.lr == 1e-3 and study.training.optimizer == "sgd"
