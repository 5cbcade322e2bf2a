"""Property-based fuzzing of every reader of user input (reliability issue): whatever bytes or
values arrive, a reader either returns or raises one ``DseError`` whose message is one line,
and nothing is created or changed beside the input. Inputs are random bytes, and valid files
with random fields replaced, truncated or padded, which reach deeper than noise does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse_core import DseError

from .conftest import ROOT, SCALESIM

#: examples per reader; DSE_FUZZ_EXAMPLES=2000 searches harder (and at random) when you change
#: a reader
EXAMPLES = int(os.environ.get("DSE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="DSE_FUZZ_EXAMPLES" not in
                os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@contextmanager
def _folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dse-fuzz-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused_cleanly(read: Callable[[], Any], folder: Path) -> None:
    """The property: a result, or one DseError of one line; the folder unchanged."""
    before = _snapshot(folder)
    try:
        read()
    except DseError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
    assert _snapshot(folder) == before


# -- values: scalars of every kind, bounds and beyond ------------------------------------------
NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1, 2**31, 2**63, 65537, 1e308, -0.0]))
SCALARS = st.one_of(NUMBERS, st.booleans(), st.text(max_size=12),
                    st.sampled_from(["", "²", "8x8", "ws", "nope", "../x", "\x00", "1e400"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4),
                   st.dictionaries(st.sampled_from(["min", "max", "values", "x"]), SCALARS,
                                   max_size=3))


def _toml(value: Any) -> str:
    """A TOML literal (JSON is close enough for scalars and lists; tables become inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


SEARCH_KEYS = ["seed", "n_trials", "name", "storage", "workload.model", "workload.dataset",
               "workload.topology", "workload.checkpoint", "space.rows", "space.cols",
               "space.dataflow", "space.mapping", "space.compression", "space.ifmap_kb",
               "space.index_storage", "objectives", "constraints.accuracy_budget_pct",
               "constraints.max_pe_count", "constraints.max_onchip_kb", "sampler.name",
               "sampler.options", "energy.model", "energy.options", "memory.buffers_kb",
               "memory.clock_gating", "memory.psums", "training.qat_epochs",
               "training.fine_tune_epochs", "scaling.heartbeat_interval_s",
               "scaling.grace_period_s", "scaling.max_retry", "compression.scheduler",
               "compression.scheduler_options", "colour", "space.rows.min"]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(SEARCH_KEYS), VALUES), min_size=1, max_size=3))
def test_search_study_fields(edits):
    from dse_core.search.study_file import load_search_study

    with _folder() as folder:
        shutil.copy(ROOT / "studies" / "quickstart.toml", folder / "q.toml")
        overrides = [f"{key}={_toml(value)}" for key, value in edits]
        _refused_cleanly(lambda: load_search_study(folder / "q.toml", overrides), folder)


@FUZZ
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_set_values_as_typed(overrides):
    """``--set`` strings exactly as a user could type them."""
    from dse_core.compression.study import load_study

    with _folder() as folder:
        shutil.copy(ROOT / "studies" / "lenet5_mnist5k.toml", folder / "c.toml")
        _refused_cleanly(lambda: load_study(folder / "c.toml", overrides), folder)


def _mutated(text: str, data: st.DataObject) -> str:
    """A valid text with one cell, line or tail changed."""
    lines = text.splitlines()
    action = data.draw(st.sampled_from(["cell", "truncate", "drop_line", "append"]))
    if action == "truncate":
        return text[:data.draw(st.integers(0, len(text)))]
    index = data.draw(st.integers(0, len(lines) - 1))
    if action == "drop_line":
        return "\n".join(lines[:index] + lines[index + 1:])
    if action == "append":
        return text + data.draw(st.text(max_size=40))
    cells = lines[index].split(",")
    cell = data.draw(st.integers(0, len(cells) - 1))
    cells[cell] = " " + str(data.draw(SCALARS))
    lines[index] = ",".join(cells)
    return "\n".join(lines)


def _file_reader_case(name: str, filename: str, source: str, read: Callable[[Path], Any]):
    @FUZZ
    @given(st.data())
    def case(data):
        with _folder() as folder:
            path = folder / filename
            if data.draw(st.booleans()):
                path.write_bytes(data.draw(st.binary(max_size=200)))
            else:
                path.write_text(_mutated(source, data))
            _refused_cleanly(lambda: read(path), folder)
    case.__name__ = f"test_{name}"
    return case


def _power_table(path: Path) -> Any:
    from dse_core.switching.characterization import read_table_file

    return read_table_file(path, psum_bits=21, msb_bits=4, clock_pj=0.01, weight_shift_pj=0.0)


def _memory_table(path: Path) -> Any:
    from systolic_dse_plugins.memory_models import TableMemory

    return TableMemory(str(path)).access_pj("ifmap", 65536, 8, False)


def _zigzag(path: Path) -> Any:
    from systolic_dse_plugins.memory_models import ZigZagMemory

    return ZigZagMemory(str(path)).access_pj("ifmap", 65536, 8, False)


POWER_TABLE = "weight,activation_hd,psum_group,energy_pj\n" + "".join(
    f"{w},{a},{g},0.01\n" for w in range(-128, 128) for a in range(9) for g in range(5))


def _readers() -> dict[str, tuple[str, str, Callable[[Path], Any]]]:
    from dse_core.workloads.scalesim import (
        read_access_report,
        read_buffers,
        read_compute_report,
        read_config,
        read_topology,
    )

    results = SCALESIM / "results"
    files = {
        "topology": (SCALESIM / "Resnet18.csv", read_topology),
        "scalesim_config": (SCALESIM / "resnet18_ws_32x32.cfg", read_config),
        "scalesim_buffers": (SCALESIM / "resnet18_ws_32x32.cfg", read_buffers),
        "compute_report": (next(results.glob("*COMPUTE_REPORT.csv")), read_compute_report),
        "access_report": (next(results.glob("*DETAILED_ACCESS_REPORT.csv")),
                          read_access_report),
        "memory_table": (ROOT / "docs" / "examples" / "memory_table.toml", _memory_table),
        "zigzag_yaml": (ROOT / "tests" / "data" / "zigzag" / "tpu_like.yaml", _zigzag),
    }
    out = {name: (path.name, path.read_text(), read) for name, (path, read) in files.items()}
    out["power_table"] = ("power.csv", POWER_TABLE, _power_table)
    return out


for _name, (_filename, _source, _read) in _readers().items():
    globals()[f"test_{_name}"] = _file_reader_case(_name, _filename, _source, _read)


@FUZZ
@given(st.text(max_size=24))
def test_command_line_sizes(text):
    """``--array``, ``--buffers``, ``--input``, ``--where`` strings."""
    from dse_core.search.results import parse_where
    from dse_core.types import ArrayConfig, BufferConfig
    from dse_core.workloads.layers import parse_input_shape

    with _folder() as folder:
        for parse in (ArrayConfig.parse, BufferConfig.parse, parse_input_shape, parse_where):
            _refused_cleanly(lambda parse=parse: parse(text), folder)


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.builds(lambda s: f"sqlite:///{s}", st.text(max_size=20)),
                 st.builds(lambda s: f"postgresql+psycopg://{s}", st.text(
                     alphabet="abc:@/?=.-", max_size=20))))
def test_storage_urls(url):
    """A storage URL typed to a reading command never creates anything, and says why."""
    from dse_core.search.results import list_studies

    with _folder() as folder, pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        if url.startswith("postgresql"):  # never reach out: only the URL's parsing matters
            url = url.split("@")[0] + "@127.0.0.1:1/x"
        _refused_cleanly(lambda: list_studies(url), folder)


@FUZZ
@given(st.data())
def test_statistics_files(data):
    import numpy as np

    from dse_core.switching.stats import NetworkStats

    with _folder() as folder:
        path = folder / "s.npz"
        kind = data.draw(st.sampled_from(["bytes", "npz", "header"]))
        if kind == "bytes":
            path.write_bytes(data.draw(st.binary(max_size=300)))
        else:
            arrays = {"x": np.arange(data.draw(st.integers(0, 5)))}
            if kind == "header":
                header = data.draw(st.dictionaries(st.sampled_from(
                    ["format", "fingerprint", "meta", "layers"]), VALUES, max_size=4))
                arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
            with path.open("wb") as handle:
                np.savez(handle, **arrays)
        _refused_cleanly(lambda: NetworkStats.load(path), folder)


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None,
          derandomize="DSE_FUZZ_EXAMPLES" not in os.environ)
@given(st.data())
def test_checkpoints(data):
    import torch

    from dse_core import build_registry
    from dse_core.workloads.training import CHECKPOINT_FORMAT, load_checkpoint

    registry = build_registry(no_plugins=True)
    with _folder() as folder:
        path = folder / "c.pt"
        if data.draw(st.booleans()):
            path.write_bytes(data.draw(st.binary(max_size=300)))
        else:
            doc = {"format": data.draw(st.sampled_from([CHECKPOINT_FORMAT, "x", 3])),
                   "model": data.draw(st.sampled_from(["lenet5", "nope", 7])),
                   "input_shape": data.draw(st.one_of(
                       st.lists(st.integers(-2, 64), max_size=4), st.text(max_size=4))),
                   "num_classes": data.draw(st.one_of(st.integers(-3, 12), st.text(max_size=3))),
                   "state_dict": {"w": torch.zeros(data.draw(st.integers(0, 3)))}}
            for key in data.draw(st.lists(st.sampled_from(list(doc)), max_size=2)):
                doc.pop(key, None)
            torch.save(doc, path)
        _refused_cleanly(lambda: load_checkpoint(registry, path), folder)
