"""The SCALE-Sim topology/config reader: SCALE-Sim's rules, but strict."""

import logging

import pytest

from dse_core import DseError
from dse_core.workloads.scalesim import read_compute_report, read_config, read_topology

from .conftest import SCALESIM

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, " \
         "Num Filter, Strides,\n"


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_resnet18_topology():
    layers = read_topology(SCALESIM / "Resnet18.csv")
    assert len(layers) == 21
    conv1 = layers[0]
    assert (conv1.name, conv1.input_hw, conv1.kernel, conv1.stride) == (
        "Conv1", (224, 224), (7, 7), (2, 2))
    assert conv1.padding == (0, 0)
    # ceil((224 - 7 + 2) / 2) = 110: SCALE-Sim rounds up where torch would give 109.
    assert conv1.output_hw == (110, 110)
    assert (conv1.gemm_m, conv1.gemm_k, conv1.gemm_n) == (12100, 147, 64)


def test_trailing_comma_is_optional_and_blank_lines_are_skipped(tmp_path):
    with_comma = read_topology(write(tmp_path, HEADER + "c,8,8,3,3,4,5,1,\n", "a.csv"))
    without = read_topology(write(tmp_path, HEADER + "\nc, 8, 8, 3, 3, 4, 5, 1\n\n", "b.csv"))
    assert with_comma == without
    assert with_comma[0].output_hw == (6, 6)


def test_bom_tabs_and_extra_named_columns(caplog):
    unet = read_topology(SCALESIM / "UNet_2d.csv")  # starts with a UTF-8 byte-order mark
    assert unet[0].name == "Conv1a" and unet[0].input_hw == (2048, 2048)
    maestro = read_topology(SCALESIM / "UNet_maestro.csv")  # tab-separated
    assert maestro[0].name == "Conv1_1" and maestro[0].kernel == (3, 3)
    with caplog.at_level(logging.WARNING):
        resnet50 = read_topology(SCALESIM / "Resnet50.csv")  # extra Eh, Ew, e2 columns
    assert resnet50[0].output_hw == (110, 110)
    assert "'Eh'" in caplog.text and "ignored" in caplog.text


def test_depthwise_rows(tmp_path):
    (layer,) = read_topology(write(tmp_path, HEADER + "Conv_DP1,114,114,3,3,32,1,1,\n"))
    assert layer.kind == "depthwise"
    assert (layer.groups, layer.in_channels, layer.out_channels) == (32, 32, 32)
    assert (layer.gemm_k, layer.gemm_n, layer.gemm_m) == (9, 1, 112 * 112)


def test_gemm_files(tmp_path):
    (layer,) = read_topology(write(tmp_path, "Layer, M, N, K,\nqkv, 512, 768, 2304,\n"),
                             batch=2)
    assert (layer.gemm_m, layer.gemm_n, layer.gemm_k) == (1024, 768, 2304)


def test_ceil_output_size(tmp_path):
    (layer,) = read_topology(write(tmp_path, HEADER + "c,10,11,3,3,1,1,2,\n"))
    assert layer.output_hw == (5, 5)  # ceil(9/2) = 5, ceil(10/2) = 5


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("c,8,8,3,3,4,five,1,", r"t.csv:2: Num Filter = 'five': expected a positive integer"),
        ("c,8,8,3,3,4,0,1,", r"t.csv:2: Num Filter = '0'"),
        ("c,8,8,3,3,4,", r"t.csv:2: Num Filter is missing"),
        (",8,8,3,3,4,5,1,", r"t.csv:2: Layer name is empty"),
        ("c,8,8,9,3,4,5,1,", r"t.csv:2: filter 9x3 is larger than the IFMAP 8x8"),
        ("c,8,8,3,3,4,5,1,7,", r"t.csv:2: field 9 = '7' has no column in the header"),
    ],
)
def test_malformed_rows_name_file_line_and_field(tmp_path, row, message):
    with pytest.raises(DseError, match=message):
        read_topology(write(tmp_path, HEADER + row + "\n"))


def test_bad_headers_and_empty_files(tmp_path):
    with pytest.raises(DseError, match="header"):
        read_topology(write(tmp_path, "a,b,c\n1,2,3\n"))
    with pytest.raises(DseError, match="empty topology"):
        read_topology(write(tmp_path, "\n\n"))
    with pytest.raises(DseError, match="no layer rows"):
        read_topology(write(tmp_path, HEADER))
    with pytest.raises(DseError, match="missing.csv: no such CSV file"):
        read_topology(tmp_path / "missing.csv")


def test_sparsity_column_is_refused_not_dropped(tmp_path):
    text = HEADER.rstrip(",\n") + ", Sparsity,\nc,8,8,3,3,4,5,1,2:4,\n"
    with pytest.raises(DseError, match="Sparsity = '2:4': sparse layers are not supported"):
        read_topology(write(tmp_path, text))
    assert read_topology(write(tmp_path, text.replace("2:4", "1:1")))[0].gemm_n == 5


def test_config(tmp_path):
    array, run = read_config(SCALESIM / "resnet18_ws_32x32.cfg")
    assert (array.rows, array.cols, array.dataflow, run) == (32, 32, "ws", "resnet18_ws_32x32")
    bad = write(tmp_path, "[architecture_presets]\nArrayHeight: 0\nArrayWidth: 8\n", "c.cfg")
    with pytest.raises(DseError, match=r"ArrayHeight = '0': expected a positive integer"):
        read_config(bad)
    bad.write_text("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nDataflow: rs\n")
    with pytest.raises(DseError, match="Dataflow = 'rs'"):
        read_config(bad)
    bad.write_text("[general]\n")
    with pytest.raises(DseError, match=r"\[architecture_presets\] is missing"):
        read_config(bad)


def test_compute_report():
    rows = read_compute_report(SCALESIM / "results" / "resnet18_ws_32x32.COMPUTE_REPORT.csv")
    assert len(rows) == 21
    assert (rows[0].total_cycles, rows[0].stall_free_cycles) == (121_939, 121_940)
    assert rows[0].mapping_efficiency_pct == pytest.approx(91.875)
