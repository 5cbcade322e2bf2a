"""Access counts against SCALE-Sim 3.0.0's DETAILED_ACCESS_REPORT.csv: every recorded layer of
the shared ResNet-18 / conv reports (ws, 32x32 and 128x128, 64 kB) and of twelve runs of our own
over ws/os/is, other array shapes and buffer sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dse_core import ArrayConfig, BufferConfig, DseError, LayerSpec
from dse_core.mapping.traffic import access_counts, compare_access, sram_counts
from dse_core.workloads.scalesim import (
    read_access_report,
    read_buffers,
    read_config,
    read_topology,
)

from .conftest import DATA, SCALESIM
from .test_cli import run

ACCESS = DATA / "scalesim_access"
SHARED_RUNS = [("resnet18_ws_32x32", "Resnet18.csv", "resnet18_ws_32x32.cfg"),
               ("resnet18_ws_128x128", "Resnet18.csv", "resnet18_ws_128x128.cfg"),
               ("conv3x3_64x64_56_ws_32x32", "conv3x3_64x64_56.csv", "conv3x3_ws_32x32.cfg"),
               ("conv3x3_64x64_56_ws_128x128", "conv3x3_64x64_56.csv",
                "conv3x3_ws_128x128.cfg")]
OWN_RUNS = sorted(p.stem for p in ACCESS.glob("run_*.cfg"))


def _compare(topology: Path, config: Path, report: Path) -> list[dict[str, object]]:
    array, _ = read_config(config)
    buffers = read_buffers(config)
    layers = read_topology(topology)
    traffic = [access_counts(layer, array, buffers) for layer in layers]
    return compare_access(layers, traffic, read_access_report(report))


@pytest.mark.parametrize(("run_name", "topology", "config"), SHARED_RUNS)
def test_every_layer_of_the_shared_reports_is_identical(run_name, topology, config):
    rows = _compare(SCALESIM / topology, SCALESIM / config,
                    SCALESIM / "results" / f"{run_name}.DETAILED_ACCESS_REPORT.csv")
    assert rows and all(r["identical"] for r in rows), [r for r in rows if not r["identical"]]


def test_own_runs_cover_all_dataflows_and_buffer_shapes():
    assert len(OWN_RUNS) == 12
    assert {name.split("_")[2] for name in OWN_RUNS} == {"ws", "os", "is"}


@pytest.mark.parametrize("run_name", OWN_RUNS)
def test_every_layer_of_our_scalesim_runs_is_identical(run_name):
    rows = _compare(ACCESS / "topology.csv", ACCESS / f"{run_name}.cfg",
                    ACCESS / f"{run_name}.csv")
    assert len(rows) == 5 and all(r["identical"] for r in rows), [
        r for r in rows if not r["identical"]]


def test_sram_closed_forms_per_dataflow():
    layer = LayerSpec("c", "conv", 8, 24, kernel=(3, 3), input_hw=(30, 30), output_hw=(28, 28))
    m, k, n = layer.gemm_m, layer.gemm_k, layer.gemm_n
    assert sram_counts(layer, ArrayConfig(8, 8, "ws")) == (m * k * 3, k * n, m * n * 9)
    assert sram_counts(layer, ArrayConfig(8, 8, "os")) == (
        m * k * 3, k * n * 98, m * n + 98 * 3 * 16)
    assert sram_counts(layer, ArrayConfig(8, 8, "is")) == (m * k, k * n * 98, m * n * 9)


def test_depthwise_counts_are_per_channel_sums():
    dw = LayerSpec("dw", "depthwise", 4, 4, kernel=(3, 3), groups=4, input_hw=(10, 10),
                   output_hw=(8, 8))
    one = LayerSpec("one", "conv", 1, 1, kernel=(3, 3), input_hw=(10, 10), output_hw=(8, 8))
    a, b = access_counts(dw, ArrayConfig(8, 8)), access_counts(one, ArrayConfig(8, 8))
    assert a.dram_ifmap_reads == 4 * b.dram_ifmap_reads and a.sram_ofmap_writes == 4 * (
        b.sram_ofmap_writes)


def test_padding_is_not_fetched_from_dram():
    padded = LayerSpec("p", "conv", 3, 8, kernel=(3, 3), padding=(1, 1), input_hw=(16, 16),
                       output_hw=(16, 16))
    t = access_counts(padded, ArrayConfig(8, 8), BufferConfig(64, 64, 64))
    assert t.dram_ifmap_reads == 16 * 16 * 3  # the whole input fits: each word once
    assert t.sram_ifmap_reads == 256 * 27 * 1  # the array reads every window position


def test_a_smaller_buffer_never_reads_less_from_dram():
    layer = LayerSpec("c", "conv", 16, 32, kernel=(3, 3), input_hw=(32, 32),
                      output_hw=(30, 30))
    reads = [access_counts(layer, ArrayConfig(16, 16), BufferConfig(kb, 64, 64))
             .dram_ifmap_reads for kb in (1, 4, 16, 64)]
    assert reads == sorted(reads, reverse=True) and reads[0] > reads[-1] == 32 * 32 * 16


def test_a_corrupt_cache_entry_is_recounted(tmp_path, monkeypatch):
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path))
    from dse_core.mapping import traffic

    layer = LayerSpec("c", "conv", 16, 32, kernel=(3, 3), input_hw=(20, 20),
                      output_hw=(18, 18))
    traffic._counts.cache_clear()
    first = access_counts(layer, ArrayConfig(8, 8), BufferConfig(1, 1, 1))
    (entry,) = (tmp_path / "traffic").glob("*.json")
    for garbage in ("not json", json.dumps([1, 2]), json.dumps([-1, 2, 3]), "\xff"):
        entry.write_text(garbage, encoding="latin-1")
        traffic._counts.cache_clear()
        assert access_counts(layer, ArrayConfig(8, 8), BufferConfig(1, 1, 1)) == first
        assert json.loads(entry.read_text()) == [first.dram_ifmap_reads,
                                                 first.dram_filter_reads,
                                                 first.dram_ofmap_writes]


# -- the command ------------------------------------------------------------------------------

def test_compare_access_command(capsys):
    code, out, _ = run(capsys, "scalesim", str(SCALESIM / "Resnet18.csv"), "--config",
                       str(SCALESIM / "resnet18_ws_32x32.cfg"), "--compare-access",
                       str(SCALESIM / "results/resnet18_ws_32x32.DETAILED_ACCESS_REPORT.csv"))
    assert code == 0
    assert "21/21 layers match SCALE-Sim's access report" in out
    assert "21/21 identical in all six counts" in out


def test_compare_access_reports_a_difference(capsys, tmp_path):
    source = SCALESIM / "results/conv3x3_64x64_56_ws_32x32.DETAILED_ACCESS_REPORT.csv"
    text = source.read_text().replace("3359263", "3400000")  # DRAM ofmap writes +1.2 %
    report = tmp_path / "r.csv"
    report.write_text(text)
    code, out, _ = run(capsys, "scalesim", str(SCALESIM / "conv3x3_64x64_56.csv"), "--config",
                       str(SCALESIM / "conv3x3_ws_32x32.cfg"), "--compare-access", str(report),
                       "--format", "json")
    (row,) = json.loads(out)["rows"]
    assert code == 1 and row["match"] is False and row["scalesim_dram_ofmap_writes"] == 3400000
    report.write_text(text.replace("3400000", "3359300"))  # within 1 %: a match, not identical
    code, out, _ = run(capsys, "scalesim", str(SCALESIM / "conv3x3_64x64_56.csv"), "--config",
                       str(SCALESIM / "conv3x3_ws_32x32.cfg"), "--compare-access", str(report),
                       "--format", "json")
    (row,) = json.loads(out)["rows"]
    assert code == 0 and row["match"] is True and row["identical"] is False


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("SRAM IFMAP Reads", "Reads"), "column 'SRAM IFMAP Reads' is missing"),
    (lambda t: t.replace("3359232", "3.5e", 1), "SRAM IFMAP Reads = '3.5e'"),
    (lambda t: t.replace("3359232", "nan", 1), "SRAM IFMAP Reads = 'nan'"),
    (lambda t: t.replace("3359232", "-4", 1), "SRAM IFMAP Reads = '-4'"),
])
def test_a_malformed_access_report_is_one_line(capsys, tmp_path, edit, message):
    source = SCALESIM / "results/conv3x3_64x64_56_ws_32x32.DETAILED_ACCESS_REPORT.csv"
    report = tmp_path / "r.csv"
    report.write_text(edit(source.read_text()))
    code, _, err = run(capsys, "scalesim", str(SCALESIM / "conv3x3_64x64_56.csv"), "--config",
                       str(SCALESIM / "conv3x3_ws_32x32.cfg"), "--compare-access", str(report))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_user_bandwidth_configs_and_bad_buffer_sizes_are_refused(tmp_path):
    text = (SCALESIM / "conv3x3_ws_32x32.cfg").read_text()
    cfg = tmp_path / "user.cfg"
    cfg.write_text(text.replace("InterfaceBandwidth: CALC", "InterfaceBandwidth: USER"))
    with pytest.raises(DseError, match="InterfaceBandwidth = 'USER': only CALC"):
        read_buffers(cfg)
    for bad in ("0", "²", "64.5", "-1"):
        cfg.write_text(text.replace("IfmapSramSzkB:   64", f"IfmapSramSzkB:   {bad}"))
        with pytest.raises(DseError, match=f"IfmapSramSzkB = '{bad}': expected a positive"):
            read_buffers(cfg)


def test_map_with_buffers_lists_the_counts(capsys):
    code, out, _ = run(capsys, "map", str(SCALESIM / "conv3x3_64x64_56.csv"), "--array",
                       "32x32", "--buffers", "64,64,64", "--format", "json")
    (row,) = json.loads(out)["rows"]
    assert code == 0 and (row["sram_ifmap_reads"], row["dram_ofmap_writes"]) == (
        3359232, 3359263)
    for bad in ("64,64", "64,x,64", "0", "²"):
        code, _, err = run(capsys, "map", str(SCALESIM / "conv3x3_64x64_56.csv"), "--array",
                           "32x32", "--buffers", bad)
        assert code == 2 and "buffers" in err and len(err.strip().splitlines()) == 1


def test_partial_sums_accumulate_in_the_ofmap_buffer_when_a_tile_fits():
    layer = LayerSpec("c", "conv", 16, 32, kernel=(3, 3), input_hw=(10, 10), output_hw=(8, 8))
    array = ArrayConfig(16, 16)  # K = 144: 9 row folds; a column fold's tile 64 x 16 psums
    scalesim = access_counts(layer, array, BufferConfig(64, 64, 64))
    kept = access_counts(layer, array, BufferConfig(64, 64, 64), psums="accumulate")
    assert scalesim.dram_ofmap_writes >= scalesim.sram_ofmap_writes == 64 * 32 * 9
    assert not scalesim.ofmap_final
    assert (kept.dram_ofmap_writes, kept.sram_ofmap_reads, kept.ofmap_final) == (
        64 * 32, 64 * 32 * 8, True)
    assert kept.sram_ofmap_writes == scalesim.sram_ofmap_writes
    assert kept.dram_ifmap_reads == scalesim.dram_ifmap_reads
    # a tile over half the ofmap buffer (64 x 16 x 3 bytes > 1 kB) spills as SCALE-Sim counts
    spilled = access_counts(layer, array, BufferConfig(64, 64, 2), psums="accumulate")
    assert spilled == access_counts(layer, array, BufferConfig(64, 64, 2))
    # one row fold or an output-stationary array: the sums are finished in the array
    assert access_counts(layer, ArrayConfig(256, 16), psums="accumulate").ofmap_final
    assert access_counts(layer, ArrayConfig(16, 16, "os"), psums="accumulate") == \
        access_counts(layer, ArrayConfig(16, 16, "os"))
    with pytest.raises(ValueError, match="psums = 'sometimes'"):
        access_counts(layer, array, psums="sometimes")
