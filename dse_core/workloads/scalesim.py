"""SCALE-Sim 3.0.0 files: topology CSVs (convolution and GEMM), ``.cfg`` configs and
``COMPUTE_REPORT.csv`` reports, read by SCALE-Sim's own rules but strictly.

SCALE-Sim's rules we follow: IFMAP dims are already padded (no padding field); output size is
ceil((H - F + S) / S); a name containing ``DP`` is a depthwise layer (one GEMM per channel);
a GEMM file (header ``Layer, M, N, K``) maps M to streamed rows, K to the window, N to filters.
Where SCALE-Sim drops the last field of every row (so rows must end with a comma), we accept
rows with or without it; where it silently misreads a row, we stop with the file, line and
field.
"""

from __future__ import annotations

import configparser
import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dse_core.errors import DseError, read_user_text
from dse_core.types import DATAFLOWS, ArrayConfig, BufferConfig, LayerMapping, LayerSpec

__all__ = [
    "read_topology", "read_config", "read_compute_report", "ScaleSimReportRow",
    "compare_with_report", "SCALESIM_REPORT_OFFSET", "read_buffers", "read_access_report",
    "ACCESS_COLUMNS", "report_slices",
]

log = logging.getLogger(__name__)

# SCALE-Sim's "Total Cycles" is the index of the last OFMAP write: the stall-free cycle count
# minus one (its issue #125). We count cycles, so ours = report + 1.
SCALESIM_REPORT_OFFSET = 1

_CONV_FIELDS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                "Channels", "Num Filter", "Strides")
_GEMM_FIELDS = ("Layer", "M", "N", "K")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of every non-blank row, trailing empty fields removed."""
    text = read_user_text(path, "CSV file")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "," if "," in first or "\t" not in first else "\t"
    out = []
    for number, fields in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
        fields = [f.strip() for f in fields]
        while fields and fields[-1] == "":
            fields.pop()
        if fields and any(fields):
            out.append((number, fields))
    return out


def _positive(path: Path, line: int, column: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise DseError(f"{path}:{line}: {column} = {value!r}: expected a positive integer")
    return number


def read_topology(path: str | Path, *, batch: int = 1) -> list[LayerSpec]:
    """Layers of a SCALE-Sim topology file (convolution or GEMM format)."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise DseError(f"{path}: empty topology file: expected a header and at least one layer")
    header_line, header = rows[0]
    names = [h.lower() for h in header]
    is_gemm = names[1:4] == ["m", "n", "k"]
    expected = _GEMM_FIELDS if is_gemm else _CONV_FIELDS
    if not is_gemm and [n.lower() for n in _CONV_FIELDS[1:]] != names[1:8]:
        raise DseError(
            f"{path}:{header_line}: header {', '.join(header)!r}: expected "
            f"{', '.join(_CONV_FIELDS)!r} (convolution) or {', '.join(_GEMM_FIELDS)!r} (GEMM)"
        )
    extra_named = header[len(expected):]
    if extra_named:
        log.warning("%s: columns %s are not used by the mapping and are ignored",
                    path, ", ".join(repr(h) for h in extra_named))
    layers: list[LayerSpec] = []
    for line, fields in rows[1:]:
        if len(fields) == 1:  # SCALE-Sim v1 section markers such as "Transformer,"
            log.info("%s:%d: name-only row %r skipped", path, line, fields[0])
            continue
        if len(fields) < len(expected):
            missing = expected[len(fields)]
            raise DseError(f"{path}:{line}: {missing} is missing: expected "
                           f"{len(expected)} fields, got {len(fields)}")
        if len(fields) > len(header):
            raise DseError(f"{path}:{line}: field {len(header) + 1} = "
                           f"{fields[len(header)]!r} has no column in the header")
        for column, value in zip(extra_named, fields[len(expected):], strict=False):
            if column.lower().startswith("sparsity") and value not in ("", "1:1"):
                raise DseError(f"{path}:{line}: {column} = {value!r}: sparse layers are not "
                               "supported; expected 1:1 or an empty field")
        name = fields[0]
        if not name:
            raise DseError(f"{path}:{line}: {expected[0]} is empty: expected a layer name")
        values = [_positive(path, line, col, v)
                  for col, v in zip(expected[1:], fields[1:len(expected)], strict=True)]
        if is_gemm:
            m, n, k = values
            layers.append(LayerSpec(name=name, kind="linear", in_channels=k, out_channels=n,
                                    batch=batch * m))
            continue
        h, w, fh, fw, channels, filters, stride = values
        if fh > h or fw > w:
            raise DseError(f"{path}:{line}: filter {fh}x{fw} is larger than the IFMAP {h}x{w}: "
                           "expected filter <= IFMAP (dims are padded)")
        out_hw = (math.ceil((h - fh + stride) / stride), math.ceil((w - fw + stride) / stride))
        depthwise = "DP" in name
        layers.append(LayerSpec(
            name=name, kind="depthwise" if depthwise else "conv", in_channels=channels,
            out_channels=channels * filters if depthwise else filters, kernel=(fh, fw),
            stride=(stride, stride), groups=channels if depthwise else 1, input_hw=(h, w),
            output_hw=out_hw, batch=batch,
        ))
    if not layers:
        raise DseError(f"{path}: no layer rows after the header")
    return layers


def _config_parser(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(read_user_text(path, "SCALE-Sim config"), source=str(path))
    except configparser.Error as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0]
        raise DseError(f"{path}: not a SCALE-Sim config: {message}") from exc
    return parser


def read_config(path: str | Path) -> tuple[ArrayConfig, str]:
    """Array of a SCALE-Sim ``.cfg`` file and its run name."""
    path = Path(path)
    parser = _config_parser(path)
    section = "architecture_presets"
    if not parser.has_section(section):
        raise DseError(f"{path}: section [{section}] is missing")
    values = {}
    for key in ("ArrayHeight", "ArrayWidth"):
        raw = parser.get(section, key, fallback=None)
        if raw is None:
            raise DseError(f"{path}: [{section}] {key} is missing")
        if not (raw.strip().isascii() and raw.strip().isdecimal()) or int(raw) < 1:
            raise DseError(f"{path}: [{section}] {key} = {raw.strip()!r}: expected a positive "
                           "integer")
        values[key] = int(raw)
    dataflow = parser.get(section, "Dataflow", fallback="ws").strip().lower()
    if dataflow not in DATAFLOWS:
        raise DseError(f"{path}: [{section}] Dataflow = {dataflow!r}: expected one of "
                       f"{', '.join(DATAFLOWS)}")
    run_name = parser.get("general", "run_name", fallback=path.stem).strip().strip('"')
    array = ArrayConfig(rows=values["ArrayHeight"], cols=values["ArrayWidth"],
                        dataflow=dataflow)  # type: ignore[arg-type]
    return array, run_name


@dataclass(frozen=True, slots=True)
class ScaleSimReportRow:
    layer_id: int
    total_cycles: int
    stall_cycles: int
    overall_util_pct: float
    mapping_efficiency_pct: float
    compute_util_pct: float

    @property
    def stall_free_cycles(self) -> int:
        """Cycles as we count them: report minus stalls plus SCALE-Sim's one-cycle offset."""
        return self.total_cycles - self.stall_cycles + SCALESIM_REPORT_OFFSET


def read_compute_report(path: str | Path) -> list[ScaleSimReportRow]:
    """Rows of a SCALE-Sim ``COMPUTE_REPORT.csv``."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise DseError(f"{path}: empty report")
    header = [h.lower() for h in rows[0][1]]
    wanted = {"layerid": "LayerID", "total cycles": "Total Cycles",
              "stall cycles": "Stall Cycles", "overall util %": "Overall Util %",
              "mapping efficiency %": "Mapping Efficiency %", "compute util %": "Compute Util %"}
    index = {}
    for key, label in wanted.items():
        if key not in header:
            raise DseError(f"{path}:{rows[0][0]}: column {label!r} is missing: expected a "
                           "SCALE-Sim COMPUTE_REPORT.csv")
        index[key] = header.index(key)
    out = []
    for line, fields in rows[1:]:
        try:
            out.append(ScaleSimReportRow(
                layer_id=int(fields[index["layerid"]]),
                total_cycles=int(fields[index["total cycles"]]),
                stall_cycles=int(fields[index["stall cycles"]]),
                overall_util_pct=float(fields[index["overall util %"]]),
                mapping_efficiency_pct=float(fields[index["mapping efficiency %"]]),
                compute_util_pct=float(fields[index["compute util %"]]),
            ))
        except (ValueError, IndexError) as exc:
            raise DseError(f"{path}:{line}: malformed report row: {exc}") from exc
    return out


def report_slices(layers: Sequence[LayerSpec], report_rows: int) -> list[slice]:
    """The report rows of each layer: one, or one per channel of a depthwise layer (SCALE-Sim
    runs it as single-channel layers). A report of another topology is a user error."""
    spans = [layer.groups if layer.kind == "depthwise" else 1 for layer in layers]
    if sum(spans) != report_rows:
        raise DseError(f"the report has {report_rows} layer rows but the topology gives "
                       f"{sum(spans)}: expected the report of this topology")
    starts = [sum(spans[:i]) for i in range(len(spans))]
    return [slice(start, start + span) for start, span in zip(starts, spans, strict=True)]


def compare_with_report(
    layers: Sequence[LayerSpec], mappings: Sequence[LayerMapping],
    report: Sequence[ScaleSimReportRow],
) -> list[dict[str, object]]:
    """Per-layer comparison rows. A depthwise layer covers one report row per channel, since
    SCALE-Sim expands it into single-channel layers."""
    out: list[dict[str, object]] = []
    for layer, mapping, rows in zip(layers, mappings, report_slices(layers, len(report)),
                                    strict=True):
        theirs = report[rows]
        span = len(theirs)
        scalesim_cycles = sum(r.stall_free_cycles for r in theirs)
        scalesim_eff = sum(r.mapping_efficiency_pct for r in theirs) / span
        out.append({
            "layer": layer.name,
            "cycles": mapping.cycles,
            "scalesim_total_cycles": sum(r.total_cycles for r in theirs),
            "scalesim_cycles": scalesim_cycles,
            "cycle_diff": mapping.cycles - scalesim_cycles,
            "mapping_eff_pct": round(100 * mapping.mapping_efficiency, 4),
            "scalesim_mapping_eff_pct": round(scalesim_eff, 4),
            "match": mapping.cycles == scalesim_cycles
            and abs(100 * mapping.mapping_efficiency - scalesim_eff) < 1e-6,
        })
    return out


def read_buffers(path: str | Path) -> BufferConfig:
    """The three SRAM sizes of a SCALE-Sim ``.cfg``; only its ``CALC`` bandwidth mode (the
    default, what its reports of DRAM traffic assume stall-free) is reproduced."""
    path = Path(path)
    parser = _config_parser(path)
    section = "architecture_presets"
    sizes = []
    for key in ("IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB"):
        raw = parser.get(section, key, fallback=None) if parser.has_section(section) else None
        if raw is None:
            raise DseError(f"{path}: [{section}] {key} is missing")
        raw = raw.strip()
        if not (raw.isascii() and raw.isdecimal()) or int(raw) < 1:
            raise DseError(f"{path}: [{section}] {key} = {raw!r}: expected a positive integer "
                           "(kB)")
        sizes.append(int(raw))
    mode = parser.get("run_presets", "InterfaceBandwidth", fallback="CALC").strip().upper()
    if mode != "CALC":
        raise DseError(f"{path}: [run_presets] InterfaceBandwidth = {mode!r}: only CALC is "
                       "reproduced (USER bandwidth adds stalls and another prefetch buffer)")
    return BufferConfig(*sizes)


#: our LayerTraffic field -> the DETAILED_ACCESS_REPORT.csv column
ACCESS_COLUMNS = {
    "sram_ifmap_reads": "SRAM IFMAP Reads", "sram_filter_reads": "SRAM Filter Reads",
    "sram_ofmap_writes": "SRAM OFMAP Writes", "dram_ifmap_reads": "DRAM IFMAP Reads",
    "dram_filter_reads": "DRAM Filter Reads", "dram_ofmap_writes": "DRAM OFMAP Writes",
}


def read_access_report(path: str | Path) -> list[dict[str, int]]:
    """Rows of a SCALE-Sim ``DETAILED_ACCESS_REPORT.csv``: the six counts per layer."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise DseError(f"{path}: empty report")
    header = [h.lower() for h in rows[0][1]]
    index = {}
    for ours, label in {"layer_id": "LayerID", **ACCESS_COLUMNS}.items():
        if label.lower() not in header:
            raise DseError(f"{path}:{rows[0][0]}: column {label!r} is missing: expected a "
                           "SCALE-Sim DETAILED_ACCESS_REPORT.csv")
        index[ours] = header.index(label.lower())
    out = []
    for line, fields in rows[1:]:
        row = {}
        for ours, i in index.items():
            raw = fields[i] if i < len(fields) else ""
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if value < 0 or not value.is_integer():
                label = ACCESS_COLUMNS.get(ours, "LayerID")
                raise DseError(f"{path}:{line}: {label} = {raw!r}: expected a count >= 0")
            row[ours] = int(value)
        out.append(row)
    return out
