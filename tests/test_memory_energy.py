"""Memory models, clock gating and the system total."""

from __future__ import annotations

import pytest

from dse_core import ArrayConfig, BufferConfig, DseError, LayerEnergy, LayerSpec, instantiate
from dse_core.host.registry import build_registry
from dse_core.mapping.system import MemorySetting, area_mm2, index_bits, with_memory
from dse_core.mapping.traffic import access_counts

from .conftest import DATA
from .test_cli import run

ZIGZAG = DATA / "zigzag"
LAYER = LayerSpec("c", "conv", 16, 32, kernel=(3, 3), input_hw=(20, 20), output_hw=(18, 18))


def _model(name: str, **options):
    return instantiate(build_registry().get("memory_model", name), options)


def test_horowitz_anchors_and_scaling():
    m = _model("horowitz45")
    for kb, pj in ((8, 10.0), (32, 20.0), (1024, 100.0)):
        assert m.access_pj("ifmap", kb * 1024, 64, False) == pytest.approx(pj)
    assert m.access_pj("ifmap", 16 * 1024, 64, False) == pytest.approx(10 * 2 ** 0.5)
    assert m.access_pj("ifmap", 8 * 1024, 8, False) == pytest.approx(10 / 8)
    # below 8 kB the 8-32 kB slope continues: a 2 kB buffer costs half an 8 kB one
    assert m.access_pj("filter", 2 * 1024, 64, False) == pytest.approx(5.0)
    assert m.access_pj("dram", 0, 64, False) == pytest.approx(1950.0)
    assert _model("horowitz45", write_factor=1.5).access_pj("ofmap", 8192, 64, True) == 15.0
    with pytest.raises(DseError, match="dram_pj_per_bit = -1"):
        _model("horowitz45", dram_pj_per_bit=-1)


def _table(tmp_path, text: str):
    path = tmp_path / "mem.toml"
    path.write_text(text)
    return str(path)


GOOD_TABLE = """word_bits = 64
dram_read_pj = 1000.0
dram_write_pj = 1200.0
[[sram]]
size_kb = 8
read_pj = 10.0
write_pj = 12.0
[[sram]]
size_kb = 128
read_pj = 40.0
write_pj = 48.0
"""


def test_a_user_table(tmp_path):
    m = _model("table", file=_table(tmp_path, GOOD_TABLE))
    assert m.access_pj("ifmap", 8192, 64, False) == pytest.approx(10.0)
    assert m.access_pj("ofmap", 128 * 1024, 32, True) == pytest.approx(24.0)
    assert m.access_pj("ifmap", 32 * 1024, 64, False) == pytest.approx(20.0)  # log-log
    assert m.access_pj("dram", 0, 8, True) == pytest.approx(150.0)


@pytest.mark.parametrize(("text", "message"), [
    ("word_bits = ", "not TOML"),
    (GOOD_TABLE.replace("word_bits = 64", "word_bits = 0"), "word_bits = 0: expected a positive"),
    (GOOD_TABLE.replace("dram_write_pj = 1200.0\n", ""), "dram_write_pj is missing"),
    ("colour = 1\n" + GOOD_TABLE, "key 'colour' is not known"),
    (GOOD_TABLE + "colour = 1\n", r"sram\[1\] = .*: expected size_kb, read_pj and write_pj"),
    (GOOD_TABLE.replace("size_kb = 128", "size_kb = 4"), "expected strictly increasing"),
    (GOOD_TABLE.replace("read_pj = 40.0", "read_pj = nan"), "read_pj = nan"),
    (GOOD_TABLE.replace("read_pj = 40.0", 'read_pj = "40"'), "read_pj = '40'"),
])
def test_bad_tables_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(DseError, match=message):
        _model("table", file=_table(tmp_path, text))


def test_bad_table_on_the_command_line_writes_nothing(capsys, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DSE_CACHE_DIR", str(cache))
    path = _table(tmp_path, GOOD_TABLE.replace("read_pj = 40.0", "read_pj = -1"))
    code, _, err = run(capsys, "energy", "lenet5", "--array", "16x16", "--memory-model",
                       "table", "-m", f"file={path}")
    assert code == 2 and err.startswith("error: ") and "read_pj = -1" in err
    assert len(err.strip().splitlines()) == 1 and not (cache / "traffic").exists()
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    code, _, err = run(capsys, "energy", "lenet5", "--array", "16x16", "--memory-model",
                       "table", "-m", f"file={tmp_path / 'binary.toml'}")
    assert code == 2 and "not a text file" in err


def test_zigzag_hardware_file():
    m = _model("zigzag", file=str(ZIGZAG / "tpu_like.yaml"))
    assert m.chosen == {"dram": "dram", "ifmap": "sram_2MB", "filter": "sram_2MB",
                        "ofmap": "sram_2MB"}
    assert m.access_pj("dram", 0, 64, False) == pytest.approx(700.0)
    assert m.access_pj("dram", 0, 64, True) == pytest.approx(750.0)
    assert m.access_pj("ifmap", 0, 2048, False) == pytest.approx(416.16)
    eyeriss = _model("zigzag", file=str(ZIGZAG / "eyeriss_like.yaml"))
    assert set(eyeriss.chosen) == {"dram", "ifmap", "filter", "ofmap"}


def test_zigzag_errors(tmp_path):
    bad = tmp_path / "hw.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(DseError, match="memories is missing"):
        _model("zigzag", file=str(bad))
    bad.write_text("memories:\n  m:\n    size: 8\n    r_cost: 1\n    w_cost: 1\n")
    with pytest.raises(DseError, match="ports is missing"):
        _model("zigzag", file=str(bad))
    bad.write_text("memories: [unclosed\n")
    with pytest.raises(DseError, match="not YAML"):
        _model("zigzag", file=str(bad))


# -- clock gating ---------------------------------------------------------------------------

def _constant_energy(gating: str) -> LayerEnergy:
    model = instantiate(build_registry().get("energy_model", "constant"),
                        {"mac_pj": 0.0, "pe_cycle_pj": 1.0})
    mapper = instantiate(build_registry().get("mapping", "ws_tile"))
    array = ArrayConfig(16, 16, clock_gating=gating)  # type: ignore[arg-type]
    return model.layer_energy(LAYER, mapper.map(LAYER, array))


def test_clock_gating_keeps_only_what_clocks():
    mapper = instantiate(build_registry().get("mapping", "ws_tile"))
    m = mapper.map(LAYER, ArrayConfig(16, 16))
    none, idle, skew = (_constant_energy(g).clock_pj for g in ("none", "idle", "idle_and_skew"))
    assert none == m.cycles * 256
    assert idle == m.active_pe_folds * (m.cycles_per_fold)
    assert skew == m.active_pe_folds * (m.streamed + 16)  # streaming and the 16-row preload
    with pytest.raises(DseError, match="clock_gating = 'sometimes'"):
        ArrayConfig(8, 8, clock_gating="sometimes")  # type: ignore[arg-type]


def test_switching_array_terms_follow_the_gating(characterization):
    from systolic_dse_plugins.energy_switching import array_terms

    mapper = instantiate(build_registry().get("mapping", "ws_tile"))
    out = {}
    for gating in ("none", "idle", "idle_and_skew"):
        array = ArrayConfig(64, 64, clock_gating=gating)  # type: ignore[arg-type]
        out[gating] = array_terms(mapper.map(LAYER, array), characterization)
    assert out["none"]["idle_pj"] > 0 and out["idle"]["idle_pj"] == 0
    assert out["idle"]["fill_drain_pj"] > 0 and out["idle_and_skew"]["fill_drain_pj"] == 0
    assert out["none"]["clock_pj"] == out["idle_and_skew"]["clock_pj"]
    assert out["idle"]["weight_load_pj"] == out["idle_and_skew"]["weight_load_pj"] < out[
        "none"]["weight_load_pj"]


# -- the system total ---------------------------------------------------------------------

def test_with_memory_prices_every_word():
    mapper = instantiate(build_registry().get("mapping", "ws_tile"))
    array = ArrayConfig(16, 16)
    m = mapper.map(LAYER, array)
    memory = MemorySetting(BufferConfig(8, 8, 8), _model("horowitz45"))
    base = LayerEnergy("c", mac_switching_pj=5.0, clock_pj=1.0)
    energy, traffic = with_memory(base, LAYER, m, memory)
    assert traffic == access_counts(LAYER, array, BufferConfig(8, 8, 8))
    read8 = 10 / 8  # an 8-bit read of an 8 kB buffer
    assert energy.sram_ifmap_pj == pytest.approx(
        (traffic.sram_ifmap_reads + traffic.dram_ifmap_reads) * read8)
    psum = 10 * array.psum_bits / 64
    assert energy.sram_ofmap_pj == pytest.approx(
        (traffic.sram_ofmap_writes + traffic.dram_ofmap_writes) * psum)
    assert energy.dram_pj == pytest.approx(1950 / 64 * (
        8 * (traffic.dram_ifmap_reads + traffic.dram_filter_reads)
        + array.psum_bits * traffic.dram_ofmap_writes))
    assert energy.total_pj == pytest.approx(6.0 + energy.memory_pj)
    assert energy.array_pj == 6.0


def test_index_storage_shrinks_filter_traffic_energy():
    mapper = instantiate(build_registry().get("mapping", "ws_tile"))
    m = mapper.map(LAYER, ArrayConfig(16, 16))
    base = LayerEnergy("c", mac_switching_pj=0.0)
    plain, _ = with_memory(base, LAYER, m, MemorySetting(BufferConfig(), _model("horowitz45")))
    indexed, _ = with_memory(base, LAYER, m, MemorySetting(BufferConfig(), _model("horowitz45"),
                                                           index_storage=True), n_levels=4)
    assert index_bits(4, 8) == 2 and index_bits(5, 8) == 3 and index_bits(256, 8) == 8
    assert index_bits(1, 8) == 1 and index_bits(None, 8) == 8
    assert indexed.sram_filter_pj == pytest.approx(plain.sram_filter_pj / 4)
    codebook = 4 * 8 * 1950 / 64
    filter_dram = LAYER.weight_count * 8 * 1950 / 64
    assert plain.dram_pj - indexed.dram_pj == pytest.approx(filter_dram * 3 / 4 - codebook)
    unrestricted, _ = with_memory(base, LAYER, m, MemorySetting(
        BufferConfig(), _model("horowitz45"), index_storage=True), n_levels=None)
    assert unrestricted == plain


def test_area_estimate():
    a = area_mm2(ArrayConfig(32, 32), BufferConfig(64, 64, 64), pe_gates=500)
    assert a == pytest.approx((1024 * 500 * 1.2 + 192 * 1024 * 8 * 0.346 / 0.5) / 1e6)
    assert area_mm2(ArrayConfig(64, 64), BufferConfig(64, 64, 64), 500) > a


def test_energy_command_shows_the_breakdown(capsys):
    code, out, _ = run(capsys, "energy", "lenet5", "--array", "16x16")
    lines = out.splitlines()
    assert code == 0 and "clock_gating: idle_and_skew" in out and "memory_model: horowitz45" in out
    header = next(line for line in lines if line.startswith("layer")).split()
    assert header == ["layer", "cycles", "mac_switching_pj", "pe_clock_pj", "sram_ifmap_pj",
                      "sram_filter_pj", "sram_ofmap_pj", "dram_pj", "total_pj", "share_pct"]
    assert lines[-1].startswith("shares of the total: MAC switching ")
    shares = [float(part.split()[-2]) for part in lines[-1].split(":")[1].split(",")]
    assert sum(shares) == pytest.approx(100, abs=0.2)
    import json

    totals = {}
    for gating in ("none", "idle_and_skew"):
        code, out, _ = run(capsys, "energy", "lenet5", "--array", "16x16", "--clock-gating",
                           gating, "-o", "pe_cycle_pj=0.01", "--buffers", "8", "--format",
                           "json")
        doc = json.loads(out)
        assert code == 0 and doc["meta"]["buffers"] == "8,8,8 kB"
        totals[gating] = doc["total"]
    assert totals["none"]["pe_clock_pj"] > totals["idle_and_skew"]["pe_clock_pj"] > 0
    assert totals["none"]["memory_pj"] == totals["idle_and_skew"]["memory_pj"] > 0
    assert {"sram_ifmap_pj", "dram_pj", "pe_clock_pj", "array_pj", "memory_pj"} <= set(
        totals["none"])
