"""The switching-activity commands end to end: characterize, train, stats, energy."""

import json

import pytest

from dse_core import DseError

from .test_cli import run


def test_characterize_reports_the_cached_pe(capsys, characterization):
    code, out, _ = run(capsys, "characterize", "--format", "json")
    row = json.loads(out)["rows"][0]
    assert code == 0 and row["key"] == characterization.key
    assert (row["gates"], row["psum_bits"], row["cheapest_code"], row["costliest_code"]) == (
        481, 22, 0, -1)


def test_energy_with_a_dataset(capsys, lenet_inputs):
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and [r["layer"] for r in doc["rows"]] == [
        "conv1", "conv2", "fc1", "fc2", "fc3"]
    total = doc["total"]
    parts = ("mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj",
             "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj", "dram_pj")
    assert total["total_pj"] == pytest.approx(sum(total[p] for p in parts))
    assert total["array_pj"] == pytest.approx(sum(total[p] for p in parts[:5]))
    assert total["idle_pj"] == total["fill_drain_pj"] == 0  # the default gating
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "global_activation", "--format", "json")
    other = json.loads(out)["total"]
    assert other["mac_switching_pj"] != pytest.approx(total["mac_switching_pj"], rel=0.01)
    assert other["clock_pj"] == pytest.approx(total["clock_pj"])  # data-independent terms
    # the reference psum tables instead of the per-layer calibration: another estimate
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "-o", "layer_calibration=false",
                       "--format", "json")
    reference = json.loads(out)["total"]
    assert code == 0 and reference["clock_pj"] == pytest.approx(total["clock_pj"])
    assert reference["mac_switching_pj"] != pytest.approx(total["mac_switching_pj"], rel=1e-3)


def test_per_weight_curves(capsys, lenet_inputs):
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--per-weight", "--format", "json")
    rows = json.loads(out)["rows"]
    assert code == 0 and len(rows) == 256 and rows[0]["code"] == -128
    for layer in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        curve = [r[layer] for r in rows]
        assert min(curve) == curve[128]  # code 0 is the cheapest on every layer


def test_stats_command_and_stats_file(capsys, lenet_inputs, tmp_path):
    path = tmp_path / "s.npz"
    code, out, _ = run(capsys, "stats", "lenet5", "--dataset", "mnist5k", "-o", str(path),
                       "--format", "json")
    rows = json.loads(out)["rows"]
    assert code == 0 and path.exists() and rows[0]["p_act_hold"] > rows[2]["p_act_hold"]
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--stats", str(path), "--format",
                       "json")
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["energy", "lenet5", "--array", "64x64", "--energy-model", "msb_hamming"],
         "error: energy model 'msb_hamming' needs switching statistics for layer 'conv1': give a "
         "--dataset"),
        (["energy", "lenet5", "--dataset", "mnist9", "--array", "8x8", "--energy-model",
          "msb_hamming"], "error: unknown dataset 'mnist9'; known: cifar10, digits, fake"),
        (["characterize", "--table", "/nonexistent.csv"],
         "error: /nonexistent.csv: no such power table"),
        (["characterize", "--table", "a.csv", "--rtl", "b.v"],
         "error: --table, --rtl and --pe exclude each other"),
        (["characterize", "--pe", "booth", "--rtl", "b.v"],
         "error: --table, --rtl and --pe exclude each other"),
        (["energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64", "--energy-model",
          "exact", "-o", "sample_folds=0"], "error: sample_folds = 0"),
    ],
)
def test_energy_user_errors(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1


def test_a_stats_file_of_another_model_is_refused(capsys, lenet_inputs, tmp_path, registry):
    from dse_core import ArrayConfig
    from dse_core.switching.pipeline import switching_inputs

    digits = switching_inputs(registry, "lenet5", "digits", ArrayConfig(64, 64), epochs=1)
    path = digits.stats.save(tmp_path / "digits.npz")
    code, _, err = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--stats", str(path))
    assert code == 2 and "collected on another model" in err


def test_truncated_statistics_and_checkpoints_are_one_line(capsys, lenet_inputs, tmp_path):
    """A truncated --stats file or checkpoint is named in one line; a truncated cached entry
    is collected again (reliability issue, class 4)."""
    import os
    from pathlib import Path

    import torch

    path = tmp_path / "s.npz"
    assert run(capsys, "stats", "lenet5", "--dataset", "mnist5k", "-o", str(path))[0] == 0
    whole = path.read_bytes()
    for cut in (len(whole) // 2, 30, 0):
        path.write_bytes(whole[:cut])
        code, _, err = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array",
                           "64x64", "--energy-model", "msb_hamming", "--stats", str(path))
        assert code == 2 and "not a readable statistics file" in err
        assert len(err.strip().splitlines()) == 1
    from dse_core.switching.stats import NetworkStats

    cached = list(Path(os.environ["DSE_CACHE_DIR"], "stats").glob("*.npz"))
    for entry in cached:  # every cached entry truncated: the one this run needs among them
        entry.write_bytes(entry.read_bytes()[:1000])
    code, out, _ = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--format", "json")
    assert code == 0 and len(json.loads(out)["rows"]) == 5
    readable = []
    for entry in cached:
        try:
            readable.append(NetworkStats.load(entry))
        except DseError:
            pass
    assert any(r.layers["conv1"].rows == 64 for r in readable)  # collected again, whole
    checkpoint = tmp_path / "c.pt"
    torch.save({"format": "systolic-dse-checkpoint/1", "model": "lenet5"}, checkpoint)
    code, _, err = run(capsys, "energy", "lenet5", "--dataset", "mnist5k", "--array", "64x64",
                       "--energy-model", "msb_hamming", "--checkpoint", str(checkpoint))
    assert code == 2 and "missing" in err and len(err.strip().splitlines()) == 1
