"""``dse report`` and ``dse plot --html`` in a real browser: headless Chromium renders the page
offline; what it drew (read off the SVG by the page's captions) equals what ``dse pareto``
lists, the console has no error, and the screenshot is not blank. CI installs Debian's
chromium and sets ``DSE_REQUIRE_BROWSER=1`` so a missing browser fails instead of skipping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_search import _dse, _energy_study

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)


def _browser() -> str:
    if BROWSER is None:
        if os.environ.get("DSE_REQUIRE_BROWSER"):
            pytest.fail("DSE_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium (apt-get install -y chromium; .ci/run installs it)")
    return BROWSER


def _render(page: Path, tmp_path: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and the browser's console output."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3400",
             "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0"]
    action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([_browser(), *flags, *action, page.as_uri()], capture_output=True,
                          text=True, timeout=120)
    return done.stdout, done.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "CONSOLE" in line and re.search(r"error|uncaught", line, re.I)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    path = _energy_study(tmp_path / "s.toml", "page", 14, storage)
    assert _dse("run", str(path), "--storage", storage)[0] == 0
    code, out, _ = _dse("pareto", "page", "--storage", storage, "--format", "json")
    return storage, len(json.loads(out)["rows"]), tmp_path


def test_the_report_draws_the_front_and_the_breakdown(study, tmp_path):
    storage, front, _ = study
    page = tmp_path / "page.html"
    code, out, err = _dse("report", "page", "--storage", storage, "-o", str(page))
    assert code == 0, err
    assert out.startswith(f"report: {page} (") and "the knee of the front" in out
    text = page.read_text()
    assert "<script src" not in text and page.stat().st_size < 10e6  # offline, mailable
    dom, log = _render(page, tmp_path)
    drawn = re.search(r'id="pareto-drawn" data-points="(\d+)"', dom)
    layers = re.search(r'id="layers-drawn" data-layers="(\d+)"', dom)
    assert drawn and int(drawn.group(1)) == front, (drawn, front)
    assert layers and int(layers.group(1)) == 21  # ResNet-18's layers, one bar each
    assert _console_errors(log) == []
    shot = tmp_path / "page.png"
    _render(page, tmp_path, shot)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[0] >= 3000 and pixels.std() > 0.05  # drawn, not a blank page
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 0.3).mean()
    assert coloured > 0.01  # the stacked bars and the front's colours are there


def test_the_report_of_a_chosen_trial_and_its_errors(study, tmp_path):
    storage, _, _ = study
    page = tmp_path / "t3.html"
    code, out, _ = _dse("report", "page", "--storage", storage, "-o", str(page), "--trial", "3")
    assert code == 0 and "trial 3, asked for" in out
    assert "<h2>Trial 3 (asked for)</h2>" in page.read_text()
    missing = tmp_path / "none.html"
    code, _, err = _dse("report", "page", "--storage", storage, "-o", str(missing),
                        "--trial", "99")
    assert code == 2 and "has no trial 99" in err and not missing.exists()
    code, _, err = _dse("report", "page", "--storage", storage, "-o",
                        str(tmp_path / "no" / "such" / "folder.html"))
    assert code == 2 and "cannot write the report" in err


def test_the_html_plot_draws_the_front(study, tmp_path):
    storage, front, _ = study
    page = tmp_path / "plot.html"
    assert _dse("plot", "page", "--storage", storage, "-o", str(page), "--html")[0] == 0
    dom, log = _render(page, tmp_path)
    traces = re.findall(r'<g class="trace scatter[^"]*"[^>]*>(.*?)</g></g>', dom, re.S)
    assert traces, "no scatter trace drawn"
    assert len(re.findall(r'class="point"', traces[-1])) == front  # the front is drawn last
    assert _console_errors(log) == []
