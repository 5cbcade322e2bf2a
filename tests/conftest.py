from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SCALESIM = DATA / "scalesim"

# Two workers computing at once on 2 cores must not oversubscribe them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never read or write the user's cache; within a session they share one, so the
    characterisation and the trained LeNet-5 are built once."""
    path = tmp_path_factory.mktemp("dse-cache")
    os.environ["DSE_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees only the plugins it asks for: no allow-list or opt-out from the
    caller's environment, and a fresh process-wide registry."""
    from dse_core.host.registry import reset_registry

    monkeypatch.delenv("DSE_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("DSE_NO_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def registry():
    from dse_core import build_registry

    return build_registry()


@pytest.fixture(scope="session")
def characterization(registry):
    """The real characterisation of the shipped PE (22-bit psum), built once (~45 s)."""
    from dse_core import ArrayConfig
    from dse_core.switching.pipeline import characterize

    return characterize(registry, ArrayConfig(64, 64))


@pytest.fixture(scope="session")
def lenet_inputs(registry, characterization):
    """LeNet-5 trained on mnist5k, its int8 statistics for a 64-row array."""
    from dse_core import ArrayConfig
    from dse_core.switching.pipeline import switching_inputs

    return switching_inputs(registry, "lenet5", "mnist5k", ArrayConfig(64, 64), epochs=5)


EDA_TOOLS = ("yosys", "yosys-abc", "yosys-config", "yosys-filterlib", "yosys-smtbmc",
             "iverilog", "vvp")


def path_without_eda_tools(folder: Path) -> str:
    """A PATH on which every program of the current PATH is found except Yosys and Icarus:
    what a user who never installed them has. Links in ``folder``, one per program."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            target = folder / entry.name
            if entry.name in EDA_TOOLS or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    path = str(folder)
    assert shutil.which("yosys", path=path) is None and shutil.which("iverilog", path=path) \
        is None and shutil.which("python3", path=path) is not None
    return path


@pytest.fixture(scope="session")
def no_eda_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return path_without_eda_tools(tmp_path_factory.mktemp("bin-without-eda"))


@pytest.fixture
def without_eda_tools(monkeypatch: pytest.MonkeyPatch, no_eda_path: str) -> str:
    """This test runs as on a machine without Yosys and Icarus (in-process and in the
    processes it starts)."""
    monkeypatch.setenv("PATH", no_eda_path)
    return no_eda_path


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    """A fresh, empty results database URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    url = os.environ.get("DSE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("DSE_REQUIRE_POSTGRES"):
            pytest.fail("DSE_REQUIRE_POSTGRES is set but DSE_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL (set DSE_TEST_POSTGRES_URL; .ci/run starts one)")
    import sqlalchemy as sa

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"dse_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()
