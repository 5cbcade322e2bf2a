"""The PE characterisation: physics of the shipped PE, accuracy of the decomposition against
the netlist, the cache, table files, and user RTL."""

import numpy as np
import pytest

from dse_core import DseError, instantiate
from dse_core.switching.characterization import (
    CharacterizationCache,
    MacCharacterization,
    read_table_file,
    write_table_file,
)
from dse_core.switching.gates import simulate_toggles
from dse_core.switching.stats import psum_group

UNIFORM_ACT = np.full((256, 256), 1 / 65536)


def first_row(text, energy):
    lines = text.splitlines()
    lines[1] = f"-128,0,0,{energy}"
    return "\n".join(lines) + "\n"


def empty(path):
    return not path.exists() or not any(path.iterdir())
UNIFORM_G = np.full(7, 1 / 7)


def test_weight_zero_is_cheapest_and_all_ones_costliest(characterization):
    curve = characterization.per_weight_energy(UNIFORM_ACT, UNIFORM_G)
    assert int(np.argmin(curve)) - 128 == 0
    assert int(np.argmax(curve)) - 128 == -1
    assert 2.4 <= curve.max() / curve.min() <= 6  # measured range on array multipliers
    # negative codes cost more than their positive counterparts (sign extension switches)
    ratio = curve[128 - np.arange(1, 128)] / curve[128 + np.arange(1, 128)]
    assert 1.05 < np.median(ratio) < 2.0
    # calibrated to Horowitz 45 nm: ~0.27 pJ per MAC on random operands
    assert curve.mean() == pytest.approx(0.27, rel=0.05)


def test_decomposition_matches_the_netlist_on_random_transitions(characterization):
    """e(w, a→a', p→p') ≈ act_pj + psum_pj, checked against unit-delay simulation of the same
    transitions: the aggregate over 8,192 transitions of ReLU-like data agrees within 6 %."""
    from dse_core.switching.characterization import register_pj

    netlist = characterization.netlist()
    tech = characterization.technology()
    rng = np.random.default_rng(3)
    n = 8192
    w = rng.integers(-127, 128, n)
    a0 = np.where(rng.random(n) < 0.4, 0, rng.integers(0, 64, n))   # ReLU-like: many zeros
    a1 = np.where(rng.random(n) < 0.5, a0, np.where(rng.random(n) < 0.4, 0,
                                                    rng.integers(0, 64, n)))
    p0 = rng.integers(-3000, 3000, n)
    p1 = p0 + rng.integers(-800, 800, n)
    toggles = simulate_toggles(netlist, {"w": w, "a": a0, "p": p0}, {"w": w, "a": a1, "p": p1})
    net_pj = tech.net_pj(netlist)
    exact = toggles.per_net @ net_pj + register_pj(22, tech, w, a0, a1, p0, p1).sum()
    groups = psum_group(p0, p1, 22, 6)
    model = characterization.energy(w, a0, a1, groups, p0 != p1, p_held=p0).sum()
    assert model == pytest.approx(exact, rel=0.05)
    # the magnitude correction touches exactly the cycles whose activation changes
    uncorrected = characterization.energy(w, a0, a1, groups, p0 != p1)
    corrected = characterization.energy(w, a0, a1, groups, p0 != p1, p_held=p0)
    held = a0 == a1
    assert np.array_equal(corrected[held], uncorrected[held])
    assert not np.allclose(corrected[~held], uncorrected[~held])


def test_small_partial_sums_cost_more_for_negative_weights(characterization):
    # a negative product flips the sign of a small held partial sum: the sign-extension bits
    # of the adder all toggle. The correction is largest for small sums and negative codes.
    mag = characterization.mag_pj
    small, large = mag[:, 4:10].mean(axis=1), mag[:, 17:21].mean(axis=1)
    negative, positive = slice(0, 127), slice(129, 256)
    assert small[negative].mean() > large[negative].mean()
    assert small[negative].mean() > small[positive].mean()


def test_cache_is_reused_and_corrupt_entries_are_rebuilt(tmp_path, caplog):
    cache = CharacterizationCache(tmp_path)
    char = MacCharacterization(
        key="k1", description={"source": "test"}, psum_bits=22, msb_bits=6,
        act_pj=np.ones((256, 256, 256), dtype=np.float32),
        psum_pj=np.zeros((256, 7, 2), dtype=np.float32), clock_pj=0.01, weight_shift_pj=0.02)
    entry = cache.store(char)
    loaded = cache.load("k1")
    assert loaded is not None and loaded.clock_pj == 0.01
    assert np.array_equal(loaded.act_pj, char.act_pj)
    # flip one byte of the stored energies: the checksum catches it, the entry goes
    data = bytearray((entry / "act_pj.npy").read_bytes())
    data[-1] ^= 0xFF
    (entry / "act_pj.npy").write_bytes(bytes(data))
    assert cache.load("k1") is None
    assert "corrupt" in caplog.text and not entry.exists()
    # an entry filed under another key is not trusted either
    cache.store(char)
    (tmp_path / "k1").rename(tmp_path / "k2")
    assert cache.load("k2") is None


def test_second_characterization_comes_from_the_cache(registry, characterization, monkeypatch):
    import systolic_dse_plugins.characterizers as module

    def fail(*_args):
        raise AssertionError("recomputed instead of reusing the cache")

    monkeypatch.setattr(module, "_characterize_weights", fail)
    again = instantiate(registry.get("characterizer", "gate_level")).characterize()
    assert again.key == characterization.key
    assert np.array_equal(again.psum_pj, characterization.psum_pj)


def test_table_file_has_no_netlist(tmp_path, characterization):
    path = write_table_file(characterization, tmp_path / "table.csv")
    table = read_table_file(path, psum_bits=22, msb_bits=6, clock_pj=0.02,
                            weight_shift_pj=0.01)
    with pytest.raises(DseError, match="has no netlist: it came from a table file"):
        table.netlist()
    assert characterization.netlist().n_gates == 481


def test_table_file_round_trip(tmp_path, characterization):
    path = write_table_file(characterization, tmp_path / "table.csv")
    assert sum(1 for _ in path.open()) == 1 + 256 * 9 * 7
    table = read_table_file(path, psum_bits=22, msb_bits=6, clock_pj=0.02,
                            weight_shift_pj=0.01)
    # at the table's resolution (Hamming distance), energies are preserved
    hd_only = np.zeros((256, 256))
    hd_only[0, 3] = hd_only[5, 5] = 0.5  # HD 2 and HD 0
    got = table.per_weight_energy(hd_only, np.eye(7)[0])
    from dse_core.switching.characterization import activation_hd

    mean_hd = [characterization.act_pj[:, activation_hd() == h].mean(axis=1) for h in (2, 0)]
    assert got == pytest.approx(0.5 * (mean_hd[0] + mean_hd[1]), rel=1e-4)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("energy_pj", "energy_mj", 1), "unknown: energy_mj"),
        (lambda t: first_row(t, "nan"), "bad.csv:2: energy_pj = 'nan': expected a finite"),
        (lambda t: first_row(t, "-0.5"), "bad.csv:2: energy_pj = '-0.5': expected a finite"),
        (lambda t: first_row(t, "1e-3pJ"), "bad.csv:2: .*expected integers and an energy"),
        (lambda t: "\n".join(t.splitlines()[:-5]) + "\n", "5 of 16128 rows missing"),
        (lambda t: t + "300,0,0,1.0\n", "weight = 300: expected -128..127"),
    ],
)
def test_bad_table_files(tmp_path, characterization, edit, message):
    good = write_table_file(characterization, tmp_path / "good.csv").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(edit(good))
    cache = CharacterizationCache(tmp_path / "cache")
    from systolic_dse_plugins.characterizers import TableFileCharacterizer

    with pytest.raises(DseError, match=message):
        TableFileCharacterizer(str(bad), cache=cache).characterize()
    assert empty(tmp_path / "cache")  # nothing half-written


@pytest.mark.skipif(__import__("shutil").which("yosys") is None, reason="yosys not installed")
def test_user_rtl_with_the_wrong_ports_is_refused(tmp_path):
    from dse_core.cache import cache_dir
    from systolic_dse_plugins.characterizers import GateLevelCharacterizer

    rtl = tmp_path / "pe.v"
    rtl.write_text("module my_pe(input [7:0] w, input [7:0] a, input [15:0] p, "
                   "output [15:0] sum); assign sum = p + w * a; endmodule\n")
    cache = CharacterizationCache(tmp_path / "cache")
    netlists = set(cache_dir("netlists").iterdir())
    with pytest.raises(DseError, match=r"do not match the PE contract.*p\[22\]"):
        GateLevelCharacterizer(rtl=str(rtl), top="my_pe", cache=cache).characterize()
    rtl.write_text("module my_pe(input a; endmodule\n")
    with pytest.raises(DseError, match="yosys rejected"):
        GateLevelCharacterizer(rtl=str(rtl), top="my_pe", cache=cache).characterize()
    assert empty(tmp_path / "cache")
    assert set(cache_dir("netlists").iterdir()) == netlists  # no netlist kept either


def test_characterizer_options_are_validated():
    from systolic_dse_plugins.characterizers import GateLevelCharacterizer

    with pytest.raises(DseError, match="psum_bits = 12"):
        GateLevelCharacterizer(psum_bits=12)
    with pytest.raises(DseError, match="samples = 100"):
        GateLevelCharacterizer(samples=100)
