"""The closed-form tile mappings, against worked examples and SCALE-Sim's own reports."""

from pathlib import Path

import pytest

from dse_core import ArrayConfig, DseError, LayerSpec, instantiate, map_network
from dse_core.workloads.scalesim import (
    compare_with_report,
    read_compute_report,
    read_config,
    read_topology,
)

from .conftest import SCALESIM


def mapper(registry, name):
    return instantiate(registry.get("mapping", name))


# The single-layer example of docs/mapping.md: 56x56x64 input, 64 filters of 3x3, unpadded.
LAYER = LayerSpec(name="conv", kind="conv", in_channels=64, out_channels=64, kernel=(3, 3),
                  input_hw=(56, 56), output_hw=(54, 54))


def test_weight_stationary_worked_example(registry):
    m = mapper(registry, "ws_tile").map(LAYER, ArrayConfig(32, 32))
    assert (m.spatial_rows, m.spatial_cols, m.streamed) == (576, 64, 2916)
    assert (m.row_folds, m.col_folds, m.folds) == (18, 2, 36)
    assert m.cycles_per_fold == 2 * 32 + 32 + 2916 - 2 == 3010
    assert m.cycles == 108_360
    assert m.mapping_efficiency == 1.0
    assert m.utilisation == pytest.approx(107_495_424 / (108_360 * 1024))


def test_output_stationary_worked_example(registry):
    m = mapper(registry, "os_tile").map(LAYER, ArrayConfig(32, 32, dataflow="os"))
    assert (m.spatial_rows, m.spatial_cols, m.streamed) == (2916, 64, 576)
    assert m.folds == 92 * 2 == 184
    assert m.cycles_per_fold == 32 + 32 + 576 - 2 == 638
    assert m.cycles == 117_392


def test_input_stationary(registry):
    m = mapper(registry, "is_tile").map(LAYER, ArrayConfig(32, 16, dataflow="is"))
    assert (m.spatial_rows, m.spatial_cols, m.streamed) == (576, 2916, 64)
    assert m.folds == 18 * 183
    assert m.cycles == 18 * 183 * (64 + 16 + 64 - 2)


def test_dataflow_mismatch_is_an_error(registry):
    with pytest.raises(DseError, match="ws_tile.*is for ws arrays"):
        mapper(registry, "ws_tile").map(LAYER, ArrayConfig(8, 8, dataflow="os"))


def test_partial_folds_active_pes_and_idle(registry):
    # K = 147 on 32 rows: 4 full row folds and one of 19; N = 64 on 48 cols: 48 + 16.
    layer = LayerSpec(name="c1", kind="conv", in_channels=3, out_channels=64, kernel=(7, 7),
                      stride=(2, 2), input_hw=(224, 224), output_hw=(109, 109))
    m = mapper(registry, "ws_tile").map(layer, ArrayConfig(32, 48))
    tiles = list(m.tiles())
    assert len(tiles) == m.folds == 10
    assert [(t.active_rows, t.active_cols) for t in tiles[-2:]] == [(19, 48), (19, 16)]
    assert sum(t.active_rows * t.active_cols for t in tiles) == m.active_pe_folds == 147 * 64
    assert m.idle_pe_folds == 10 * 32 * 48 - 147 * 64
    assert m.mapping_efficiency == pytest.approx(147 * 64 / (10 * 32 * 48))
    assert all(t.streamed == 109 * 109 for t in tiles)


def test_depthwise_is_one_gemm_per_channel(registry):
    dw = LayerSpec(name="dw", kind="depthwise", in_channels=32, out_channels=32, kernel=(3, 3),
                   groups=32, input_hw=(112, 112), output_hw=(110, 110))
    m = mapper(registry, "ws_tile").map(dw, ArrayConfig(16, 16))
    assert (m.groups, m.spatial_rows, m.spatial_cols) == (32, 9, 1)
    assert m.folds == 32
    assert m.cycles == 32 * (2 * 16 + 16 + 110 * 110 - 2)
    assert [t.group for t in m.tiles()] == list(range(32))


REPORTS = [
    ("Resnet18.csv", "resnet18_ws_32x32.cfg", "resnet18_ws_32x32"),
    ("Resnet18.csv", "resnet18_ws_128x128.cfg", "resnet18_ws_128x128"),
    ("conv3x3_64x64_56.csv", "conv3x3_ws_32x32.cfg", "conv3x3_64x64_56_ws_32x32"),
    ("conv3x3_64x64_56.csv", "conv3x3_ws_128x128.cfg", "conv3x3_64x64_56_ws_128x128"),
]


@pytest.mark.parametrize(("topology", "config", "run"), REPORTS)
def test_weight_stationary_cycles_equal_scalesim_for_every_layer(registry, topology, config,
                                                                 run):
    array, _ = read_config(SCALESIM / config)
    layers = read_topology(SCALESIM / topology)
    report = read_compute_report(Path(SCALESIM, "results", f"{run}.COMPUTE_REPORT.csv"))
    mappings = map_network(layers, array, mapper(registry, "ws_tile"))
    assert len(mappings) == len(report)
    for mapping, row in zip(mappings, report, strict=True):
        assert row.stall_cycles == 0
        # SCALE-Sim prints the index of the last cycle: one less than the count.
        assert mapping.cycles == row.total_cycles + 1, mapping.layer
        assert 100 * mapping.mapping_efficiency == pytest.approx(row.mapping_efficiency_pct,
                                                                 abs=1e-9)
        assert 100 * mapping.macs / ((mapping.cycles - 1) * array.pe_count) == pytest.approx(
            row.overall_util_pct, rel=1e-12)
    rows = compare_with_report(layers, mappings, report)
    assert all(r["match"] and r["cycle_diff"] == 0 for r in rows)


def test_resnet18_totals_match_the_recorded_runs(registry):
    # docs/benchmarks.md and the peers' README quote these SCALE-Sim totals.
    layers = read_topology(SCALESIM / "Resnet18.csv")
    for cfg, scalesim_total in (("resnet18_ws_32x32.cfg", 2_519_815),
                                ("resnet18_ws_128x128.cfg", 417_628)):
        array, _ = read_config(SCALESIM / cfg)
        cycles = sum(m.cycles for m in map_network(layers, array, mapper(registry, "ws_tile")))
        assert cycles == scalesim_total + len(layers)


def test_compare_rejects_a_report_of_another_topology(registry):
    array, _ = read_config(SCALESIM / "conv3x3_ws_32x32.cfg")
    layers = read_topology(SCALESIM / "conv3x3_64x64_56.csv")
    report = read_compute_report(SCALESIM / "results" / "resnet18_ws_32x32.COMPUTE_REPORT.csv")
    mappings = map_network(layers, array, mapper(registry, "ws_tile"))
    with pytest.raises(DseError, match="21 layer rows but the topology gives 1"):
        compare_with_report(layers, mappings, report)
