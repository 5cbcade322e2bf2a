"""A machine without Yosys and Icarus: what a new user has. Everything but a user's own RTL
works there: the default PE at every psum width of 1..4,096 rows, its characterisation, the
energy models, and a search over 16-, 32- and 64-row arrays with zero failed trials. Yosys and
Icarus are hidden from PATH (in this process and in the ``dse`` processes it starts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from dse_core import ArrayConfig, DseError, instantiate
from dse_core.types import default_psum_bits

from .conftest import ROOT

SEARCH = """
name = "fresh"
seed = 0
n_trials = 6
objectives = ["energy_pj", "accuracy_drop", "cycles"]
[workload]
model = "lenet5"
dataset = "mnist5k"
[space]
rows = [16, 32, 64]
cols = [16]
compression = true
[constraints]
accuracy_budget_pct = 3.0
[energy]
model = "msb_hamming"
calibration_images = 128
[compression]
scheduler = "uniform"
scheduler_options = { ladder = [255, 8] }
[training]
float_epochs = 5
qat_epochs = 0.3
fine_tune_epochs = 0.2
tune_images = 300
[sampler]
name = "grid"
"""


def test_the_tools_are_hidden(without_eda_tools):
    assert shutil.which("yosys") is None and shutil.which("iverilog") is None
    assert shutil.which("vvp") is None


@pytest.mark.parametrize("pe", ["array", "booth", "sign_magnitude"])
@pytest.mark.parametrize("rows", [1, 2, 16, 32, 64, 100, 1024, 4096])
def test_every_shipped_pe_needs_no_yosys_at_any_height(without_eda_tools, registry, rows, pe):
    """Every psum width an array of 1..4,096 rows needs ships for every PE, and meets the PE
    contract."""
    from dse_core.switching.pipeline import resolve_pe

    array = ArrayConfig(rows, 8)
    assert array.psum_bits == default_psum_bits(rows)
    char = instantiate(registry.get("characterizer", "gate_level"),
                       resolve_pe({"psum_bits": array.psum_bits, "pe": pe}, registry))
    netlist = char.netlist()  # checks the ports: w[8], a[8], p[P] -> sum[P]
    assert len(netlist.inputs["p"]) == array.psum_bits == len(netlist.outputs["sum"])
    assert char.netlist_file().name == f"{char.pe.top}_p{array.psum_bits}.json.gz"


def test_shipped_widths_are_16_to_28_bits_and_grow(without_eda_tools, registry):
    from dse_core.switching.gates import Netlist
    from systolic_dse_plugins.characterizers import SHIPPED_PSUM_BITS, shipped_netlist_file

    assert (default_psum_bits(1), default_psum_bits(4096)) == (16, 28)
    for name in ("array", "booth", "sign_magnitude"):
        pe = instantiate(registry.get("pe", name))
        gates = []
        for bits in SHIPPED_PSUM_BITS:
            path = shipped_netlist_file(bits, pe)
            assert path is not None
            gates.append(Netlist.from_yosys_json(path, pe.top).n_gates)
        assert gates == sorted(gates) and gates[0] > 300, name  # a wider adder: more gates


def test_what_still_needs_yosys_says_so(without_eda_tools, registry, tmp_path):
    wide = instantiate(registry.get("characterizer", "gate_level"), {"psum_bits": 29})
    with pytest.raises(DseError, match=r"psum_bits = 29: PE 'array' ships synthesised for "
                       r"16\.\.28 bits \(arrays of 1 to 4096 rows\); other widths need Yosys"):
        wide.netlist()
    rtl = tmp_path / "mine.v"
    rtl.write_text("module pe_mac(input [7:0] w, a, input [21:0] p, output [21:0] sum);\n"
                   "assign sum = p + w * a; endmodule\n")
    mine = instantiate(registry.get("characterizer", "gate_level"), {"rtl": str(rtl)})
    with pytest.raises(DseError, match="your own PE RTL needs Yosys, which is not installed"):
        mine.netlist()


def _dse(args: list[str], path: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "dse_core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_energy_of_a_32_row_array_without_yosys(no_eda_path, lenet_inputs, tmp_path):
    """The command that failed for new users: msb_hamming on a 32-row array (21-bit psums)."""
    result = _dse(["energy", "lenet5", "--dataset", "mnist5k", "--array", "32x32",
                   "--energy-model", "msb_hamming", "--calibration-images", "128",
                   "--format", "json"], no_eda_path, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert [r["layer"] for r in doc["rows"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert all(r["mac_switching_pj"] > 0 for r in doc["rows"])
    assert "Traceback" not in result.stderr


def test_a_search_over_16_32_and_64_rows_has_no_failed_trial(no_eda_path, lenet_inputs,
                                                             tmp_path):
    study = tmp_path / "fresh.toml"
    study.write_text(SEARCH)
    result = _dse(["run", str(study), "--format", "json"], no_eda_path, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "failed" not in result.stderr and "Traceback" not in result.stderr
    assert "study fresh: 6 complete; 6 distinct designs" in result.stderr
    from dse_core.search.results import load_study

    trials = load_study(f"sqlite:///{tmp_path / 'fresh.db'}", "fresh").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert {t.params["rows"] for t in trials} == {16, 32, 64}
    by_rows = {}
    for t in trials:
        by_rows.setdefault(t.params["n_levels"], {})[t.params["rows"]] = t.user_attrs
    for same_plan in by_rows.values():  # one accuracy per plan, an energy per array
        assert len({a["accuracy"] for a in same_plan.values()}) == 1
        assert len({a["mac_energy_pj"] for a in same_plan.values()}) == 3
    front = json.loads(result.stdout)
    assert front["meta"]["pareto_front"] == len(front["rows"]) >= 1


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
def test_yosys_is_still_used_for_a_users_rtl_where_present(registry, tmp_path):
    """The other side: with Yosys on PATH the user's RTL is synthesised (CI installs it)."""
    rtl = ROOT / "systolic_dse_plugins" / "rtl" / "pe.v"
    mine = instantiate(registry.get("characterizer", "gate_level"),
                       {"rtl": str(rtl), "psum_bits": 20})
    assert mine.netlist().n_gates > 400
