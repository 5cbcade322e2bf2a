from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SCALESIM = DATA / "scalesim"

# Two workers computing at once on 2 cores must not oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees only the plugins it asks for: no allow-list or opt-out from the
    caller's environment, and a fresh process-wide registry."""
    from dse_core.plugins import reset_registry

    monkeypatch.delenv("DSE_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("DSE_NO_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def registry():
    from dse_core import build_registry

    return build_registry()
