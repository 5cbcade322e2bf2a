"""The `dse` command line: tables, CSV/JSON, and one-line errors with exit status 2."""

import csv
import io
import json
import subprocess
import sys

import pytest

from dse_core.cli import main

from .conftest import SCALESIM


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_plugins_table_lists_kind_name_summary_provider_version(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header == ["kind", "name", "summary", "provider", "version"]
    assert any(line.split()[:2] == ["mapping", "ws_tile"] and "systolic-dse" in line
               for line in out.splitlines())


def test_plugins_json_and_kind_filter(capsys):
    code, out, _ = run(capsys, "plugins", "--kind", "mapping", "--format", "json")
    rows = json.loads(out)["rows"]
    assert code == 0 and [r["name"] for r in rows] == ["is_tile", "os_tile", "ws_packed", "ws_tile"]
    code, _, err = run(capsys, "plugins", "--kind", "mappings")
    assert code == 2 and err.startswith("error: --kind 'mappings': expected one of mapping")


def test_layers_csv(capsys):
    code, out, _ = run(capsys, "layers", "lenet5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 5
    assert (rows[0]["M"], rows[0]["K"], rows[0]["N"], rows[0]["macs"]) == ("784", "25", "6",
                                                                          "117600")


def test_map_json_totals(capsys):
    code, out, _ = run(capsys, "map", "resnet20", "--array", "64x64", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["meta"]["array"] == "64x64 ws"
    assert doc["total"]["cycles"] == sum(r["cycles"] for r in doc["rows"])
    first = doc["rows"][0]  # conv1: K = 27, N = 16, M = 1024: one fold
    assert (first["folds"], first["cycles"]) == (1, 2 * 64 + 64 + 1024 - 2)


def test_map_a_topology_file_like_a_model(capsys):
    code, out, _ = run(capsys, "map", str(SCALESIM / "Resnet18.csv"), "--array", "32x32",
                       "--format", "json")
    assert code == 0 and json.loads(out)["total"]["cycles"] == 2_519_836


def test_energy_constant_end_to_end(capsys):
    code, out, _ = run(capsys, "energy", "resnet20", "--array", "64x64", "--energy-model",
                       "constant", "--mac-pj", "0.5", "--format", "json")
    doc = json.loads(out)
    assert code == 0
    total = doc["total"]
    assert total["mac_switching_pj"] == pytest.approx(40_551_040 * 0.5)
    assert total["total_pj"] == pytest.approx(total["array_pj"] + total["memory_pj"])
    assert total["memory_pj"] == pytest.approx(sum(total[k] for k in (
        "sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj", "dram_pj")))
    assert doc["meta"]["mac_pj"] == 0.5 and doc["meta"]["buffers"] == "64,64,64 kB"
    assert sum(r["share_pct"] for r in doc["rows"]) == pytest.approx(100, abs=0.05)


def test_scalesim_compare_table(capsys):
    code, out, _ = run(capsys, "scalesim", str(SCALESIM / "Resnet18.csv"), "--config",
                       str(SCALESIM / "resnet18_ws_32x32.cfg"), "--compare",
                       str(SCALESIM / "results" / "resnet18_ws_32x32.COMPUTE_REPORT.csv"))
    assert code == 0
    assert "21/21 layers match SCALE-Sim" in out


def test_scalesim_compare_mismatch_exits_1(capsys, tmp_path):
    report = (SCALESIM / "results" / "conv3x3_64x64_56_ws_32x32.COMPUTE_REPORT.csv").read_text()
    bad = tmp_path / "r.csv"
    bad.write_text(report.replace("108359", "108000"))
    code, out, _ = run(capsys, "scalesim", str(SCALESIM / "conv3x3_64x64_56.csv"), "--config",
                       str(SCALESIM / "conv3x3_ws_32x32.cfg"), "--compare", str(bad))
    assert code == 1 and "0/1 layers match" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["layers", "resnet21"], "error: unknown model 'resnet21'; known: lenet5, resnet20, "),
        (["map", "resnet20", "--array", "64"], "error: array = '64': expected ROWSxCOLS"),
        (["map", "resnet20", "--array", "0x64"], "error: ArrayConfig.rows = 0"),
        (["map", "resnet20", "--array", "8x8", "--mapping", "rs"], "error: unknown mapping 'rs'"),
        (["energy", "lenet5", "--array", "8x8", "--energy-model", "nope"],
         "error: unknown energy model 'nope'; known: constant"),
        (["energy", "lenet5", "--array", "8x8", "--mac-pj", "-1"],
         "error: mac_pj = -1.0: expected a finite energy in pJ >= 0"),
        (["energy", "lenet5", "--array", "8x8", "-o", "bogus"],
         "error: option 'bogus': expected KEY=VALUE"),
        (["layers", "lenet5", "--input", "3x32"], "error: input = '3x32': expected CxHxW"),
        (["map", "/nonexistent/topology.csv", "--array", "8x8"], "error: /nonexistent/topology"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malformed_topology_names_file_line_field(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text((SCALESIM / "Resnet18.csv").read_text().replace("Conv2_1b,56,56,3,3,64,",
                                                                    "Conv2_1b,56,5x6,3,3,64,"))
    code, _, err = run(capsys, "map", str(bad), "--array", "8x8")
    assert code == 2
    assert err.strip() == f"error: {bad}:4: IFMAP Width = '5x6': expected a positive integer"


def test_verbose_shows_the_traceback(capsys):
    code, _, err = run(capsys, "-v", "layers", "resnet21")
    assert code == 2 and "Traceback" in err and err.strip().endswith(
        "known: lenet5, resnet20, torchvision, vgg8")


def test_console_script_help_is_fast_to_import():
    # `dse --help` must not import torch: it is what keeps it well under a second.
    code = ("import sys; from dse_core.cli import cli; import dse_core.host.registry as p; "
            "p.get_registry(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_option_values_are_typed_as_docs_plugins_md_says():
    """-o and --set read a value the same way: TOML, else JSON, else the string."""
    from dse_core.cli.group import parse_options
    from dse_core.compression.study import apply_overrides

    pairs = ["a=0.2", "b=3", "c=true", "d=[255, 8]", "e=my.csv", 'f={"x": 1}', 'g="t"',
             "h={ x = 1 }"]
    want = {"a": 0.2, "b": 3, "c": True, "d": [255, 8], "e": "my.csv", "f": {"x": 1},
            "g": "t", "h": {"x": 1}}
    assert parse_options(pairs) == want
    assert apply_overrides({}, [f"energy.{p}" for p in pairs]) == {"energy": want}
    for key, value in parse_options(pairs).items():
        assert type(value) is type(want[key]), key
