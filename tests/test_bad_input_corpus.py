"""Classes of bad input, each refused by the one reader or validation layer it passes through:
one `error:` line, exit status 2, no traceback, nothing written (reliability issue, classes 1,
2, 3, 5, 6 (in part) and 7: undecodable bytes, digits int() rejects, unbounded numbers,
storage that is not ours, list dimensions checked before writing, click's usage errors).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, SCALESIM

BAD_BYTES = b"\xff\xfe\x00 not text \x81"


def _dse(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSE_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "dse_core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "studies" / "quickstart.toml", tmp_path / "quick.toml")
    shutil.copy(ROOT / "studies" / "lenet5_mnist5k.toml", tmp_path / "compress.toml")
    shutil.copy(SCALESIM / "Resnet18.csv", tmp_path / "topo.csv")
    shutil.copy(SCALESIM / "resnet18_ws_32x32.cfg", tmp_path / "scale.cfg")
    (tmp_path / "binary").write_bytes(BAD_BYTES)
    return tmp_path


CASES = {
    # 1. undecodable bytes in every text file dse reads
    "study file (run)": (["run", "binary"], "not a text file"),
    "study file (compress)": (["compress", "binary"], "not a text file"),
    "SCALE-Sim cfg": (["scalesim", "topo.csv", "--config", "binary"], "not a text file"),
    "topology": (["map", "binary", "--array", "8x8"], "not a text file"),
    "power table": (["characterize", "--table", "binary"], "not a text file"),
    "memory table": (["energy", "topo.csv", "--array", "8x8", "--memory-model", "table",
                      "-m", "file=binary"], "not a text file"),
    "access report": (["scalesim", "topo.csv", "--config", "scale.cfg", "--compare-access",
                       "binary"], "not a text file"),
    # 2. digits that str.isdigit() accepts and int() rejects
    "array ²": (["map", "topo.csv", "--array", "²x64"], "array = '²x64'"),
    "input ²": (["layers", "lenet5", "--input", "²x32x32"], "²x32x32"),
    "buffers ²": (["map", "topo.csv", "--array", "8x8", "--buffers", "²,64,64"],
                  "buffers = '²,64,64'"),
    # 3. numbers nobody bounded
    "seed -1": (["run", "quick.toml", "--set", "seed=-1"], "seed = -1"),
    "seed 2^32": (["compress", "compress.toml", "--set", "seed=4294967296"], "seed ="),
    "qat_epochs inf": (["compress", "compress.toml", "--set", "training.qat_epochs=inf"],
                       "training.qat_epochs = inf: input should be a finite number"),
    "budget nan": (["run", "quick.toml", "--set", "constraints.accuracy_budget_pct=nan"],
                   "accuracy_budget_pct = nan: input should be a finite number"),
    # 6. every value a trial can draw is checked before the first write
    "rows beyond any array": (["run", "quick.toml", "--set", "space.rows=[16, 100000]"],
                              "space.rows = 100000: expected at most 65536"),
    "checkpoint that does not load": (["run", "quick.toml", "--set",
                                       'workload.checkpoint="binary"'],
                                      "binary: not a systolic-dse checkpoint"),
    # 7. click's own usage errors
    "misspelt option": (["map", "topo.csv", "--arrray", "8x8"], "No such option '--arrray'"),
    "unknown command": (["frobnicate"], "No such command 'frobnicate'"),
    "out of range": (["map", "topo.csv", "--array", "8x8", "--batch", "0"], "--batch"),
    "missing option": (["map", "topo.csv"], "Missing option '--array'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_writes_nothing(sandbox, case):
    args, message = CASES[case]
    before = _snapshot(sandbox)
    result = _dse(sandbox, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (case, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    after = {k: v for k, v in _snapshot(sandbox).items() if not k.startswith("cache")}
    assert after == {k: v for k, v in before.items() if not k.startswith("cache")}
    assert not [p for p in (sandbox / "cache").rglob("*") if p.is_file()]  # nothing cached


def test_cfg_digits_int_rejects(sandbox):
    text = (sandbox / "scale.cfg").read_text()
    (sandbox / "scale.cfg").write_text(text.replace("ArrayHeight:    32", "ArrayHeight:    ²"))
    result = _dse(sandbox, "scalesim", "topo.csv", "--config", "scale.cfg")
    assert result.returncode == 2 and "ArrayHeight = '²'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["text file", "another application's SQLite"])
@pytest.mark.parametrize("command", [["run", "quick.toml"], ["studies"], ["pareto", "quick"],
                                     ["export", "quick"]])
def test_storage_that_is_not_ours_is_refused_unchanged(sandbox, kind, command):
    """Class 5: nothing, not even a WAL pragma, is written to a database we did not make."""
    import hashlib
    import sqlite3

    db = sandbox / "other.db"
    if kind == "text file":
        db.write_text("a text file, not a database\n")
        message = "cannot open it as a database (file is not a database)"
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE studies (id INTEGER, name TEXT)")
            conn.execute("INSERT INTO studies VALUES (1, 'theirs')")
        conn.close()
        message = "a database of another application (tables studies)"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = _dse(sandbox, *command, "--storage", f"sqlite:///{db}")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in sandbox.glob("other.db*")) == ["other.db"]
