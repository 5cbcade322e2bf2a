"""The gate-level netlist loader and the bit-parallel toggle simulator, checked against Icarus
Verilog on the same netlist and vectors."""

import re
import shutil

import numpy as np
import pytest

from benchmarks.icarus_flow import available as icarus_available
from benchmarks.icarus_flow import icarus_toggles
from dse_core import DseError
from dse_core.switching.gates import Netlist, pack_lanes, simulate_toggles, synthesize_with_yosys

from .conftest import ROOT

RTL = ROOT / "systolic_dse_plugins" / "rtl"
needs_icarus = pytest.mark.skipif(not icarus_available(), reason="iverilog not installed")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")


# every shipped PE: its Verilog and MAC module (systolic_dse_plugins/pes.py)
PES = {"array": ("pe.v", "pe_mac"), "booth": ("pe_booth.v", "pe_mac_booth"),
       "sign_magnitude": ("pe_sm.v", "pe_mac_sm")}


@pytest.fixture(scope="module", params=list(PES))
def pe_mac(request):
    top = PES[request.param][1]
    return Netlist.from_yosys_json(RTL / f"{top}_p22.json.gz", top)


def tiny(cells, inputs=None, outputs=None):
    """A hand-written Yosys-style netlist: cells as (type, A, B, Y)."""
    module = {
        "ports": {
            "x": {"direction": "input", "bits": inputs or [2, 3]},
            "y": {"direction": "output", "bits": outputs or [cells[-1][-1]]},
        },
        "cells": {
            f"c{i}": {"type": t, "connections": {"A": [a], "B": [b], "Y": [y]}}
            for i, (t, a, b, y) in enumerate(cells)
        },
    }
    return Netlist.from_yosys_json({"modules": {"m": module}})


def test_shipped_default_pe(pe_mac):
    assert {p: len(n) for p, n in pe_mac.inputs.items()} == {"w": 8, "a": 8, "p": 22}
    assert len(pe_mac.outputs["sum"]) == 22
    assert 300 < pe_mac.n_gates < 800 and pe_mac.depth > 20


def test_the_netlist_computes_the_mac(pe_mac):
    # Settled outputs equal p + w * a (mod 2**22) for random vectors: the simulator evaluates
    # the synthesised circuit, not a model of it.
    from dse_core.switching.gates import _Evaluator, _initial

    rng = np.random.default_rng(0)
    vec = {"w": rng.integers(-128, 128, 500), "a": rng.integers(0, 256, 500),
           "p": rng.integers(-(1 << 21), 1 << 21, 500)}
    values = _initial(pe_mac, vec, 8)
    _Evaluator(pe_mac).settle(values)
    bits = np.unpackbits(values[list(pe_mac.outputs["sum"])].view(np.uint8), axis=1,
                         bitorder="little")[:, :500].astype(np.int64)
    got = (bits * (1 << np.arange(22))[:, None]).sum(axis=0)
    assert np.array_equal(got, (vec["p"] + vec["w"] * vec["a"]) % (1 << 22))


def test_zero_and_unit_delay_on_a_hand_counted_glitch():
    # y = x0 XOR (NOT NOT x0): settled y is always 0, but under unit delay a change of x0
    # reaches the XOR two steps before the inverted path does, so y pulses once (2 toggles).
    nl = tiny([("$_NOT_", 2, 2, 4), ("$_NOT_", 4, 4, 5), ("$_XOR_", 2, 5, 6)], inputs=[2, 3])
    before, after = {"x": np.array([0, 1, 2])}, {"x": np.array([1, 1, 3])}
    zero = simulate_toggles(nl, before, after, glitches=False).per_net
    unit = simulate_toggles(nl, before, after, glitches=True).per_net
    assert zero[6] == 0 and unit[6] == 2 * 2  # two of the three vectors switch x0
    assert zero[4] == unit[4] == 2 and zero[2] == 2 and zero[3] == 0


def test_pack_lanes_round_trip():
    values = np.array([5, -1, 0, 200] * 40)
    words = pack_lanes(values, 8)
    assert words.shape == (8, 3)
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :160]
    assert np.array_equal((bits * (1 << np.arange(8))[:, None]).sum(0), values % 256)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ({"ports": {}, "cells": {"c": {"type": "$_DFF_P_", "connections": {}}}},
         "cell 'c' has type '$_DFF_P_'"),
        ({"ports": {"x": {"direction": "input", "bits": [2]}},
          "cells": {"c": {"type": "$_AND_", "connections": {"A": [2], "B": [9], "Y": [3]}}}},
         "net 9 is read but never driven"),
        ({"ports": {"x": {"direction": "input", "bits": [2]}},
          "cells": {"a": {"type": "$_AND_", "connections": {"A": [2], "B": [4], "Y": [3]}},
                    "b": {"type": "$_AND_", "connections": {"A": [2], "B": [3], "Y": [4]}}}},
         "combinational loop"),
    ],
)
def test_malformed_netlists(module, message):
    with pytest.raises(DseError, match=re.escape(message)):
        Netlist.from_yosys_json({"modules": {"m": module}})


@needs_icarus
@pytest.mark.parametrize("glitches", [False, True], ids=["zero-delay", "unit-delay"])
def test_toggle_counts_equal_icarus_per_net(pe_mac, glitches):
    rng = np.random.default_rng(7)
    n = 240
    vec = {"w": np.repeat(rng.integers(-128, 128, 4), n // 4),  # stationary weights, reloaded
           "a": rng.integers(0, 256, n), "p": rng.integers(-(1 << 21), 1 << 21, n)}
    vec["a"][::5] = 0  # ReLU zeros
    ours = simulate_toggles(pe_mac, {k: v[:-1] for k, v in vec.items()},
                            {k: v[1:] for k, v in vec.items()}, glitches=glitches).per_net
    reference = icarus_toggles(pe_mac, vec, unit_delay=glitches)
    internal = range(2, pe_mac.n_nets)
    assert sum(reference.values()) > 10_000
    assert [int(ours[n]) for n in internal] == [reference.get(n, 0) for n in internal]


@needs_yosys
@pytest.mark.parametrize("pe", list(PES))
@pytest.mark.parametrize("psum_bits", range(16, 29))
def test_shipped_netlist_is_what_yosys_makes_from_the_rtl(pe, psum_bits):
    """Every shipped PE and width, gate by gate: the same cells on the same nets, the same
    ports."""
    rtl, top = PES[pe]
    shipped = Netlist.from_yosys_json(RTL / f"{top}_p{psum_bits}.json.gz", top)
    fresh = synthesize_with_yosys(RTL / rtl, top, {"P_BITS": psum_bits})
    assert (fresh.n_gates, fresh.depth) == (shipped.n_gates, shipped.depth)
    assert fresh.gate_op == shipped.gate_op
    assert np.array_equal(fresh.gate_in, shipped.gate_in)
    assert np.array_equal(fresh.gate_out, shipped.gate_out)
    assert (fresh.inputs, fresh.outputs) == (shipped.inputs, shipped.outputs)


@needs_yosys
def test_yosys_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module pe_mac(input a, output y); assign y = a +; endmodule\n")
    with pytest.raises(DseError, match=r"bad.v: yosys rejected 'pe_mac': .*ERROR"):
        synthesize_with_yosys(bad, "pe_mac")
    with pytest.raises(DseError, match="no such Verilog file"):
        synthesize_with_yosys(tmp_path / "missing.v", "pe_mac")
