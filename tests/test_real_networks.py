"""The user's own weights and images (issue 14): a folder of images in ImageFolder layout, a
torch ``state_dict`` instead of training, and ``--input`` / ``--batch`` beside ``--dataset``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dse_core import DseError


def _folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 5,
            size: tuple[int, int] = (36, 44)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_an_image_folder_is_resized_cropped_and_split(registry, tmp_path):
    from dse_core.workloads.datasets import load_dataset

    root = _folder(tmp_path / "images")
    splits = load_dataset(registry, f"imagefolder:{root}", {"shape": "3x24x24"})
    assert splits.input_shape == (3, 24, 24) and splits.num_classes == 2
    assert len(splits.train) + len(splits.val) == 10 and len(splits.val) == 2
    image, label = splits.train[0]
    assert tuple(image.shape) == (3, 24, 24) and label in (0, 1)
    assert image.min() < 0  # ImageNet normalisation moves values below zero
    plain = load_dataset(registry, "imagefolder", {"root": str(root), "shape": "1x20x20",
                                                   "normalize": "none"})
    grey = plain.train[0][0]
    assert tuple(grey.shape) == (1, 20, 20) and 0 <= float(grey.min()) <= float(grey.max()) <= 1
    assert splits.name != plain.name  # caches tell the two apart


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "Couldn't find any class folder"),
    (lambda p: (p / "a").mkdir(parents=True) or (p / "a" / "x.txt").write_text("x"),
     "Found no valid file"),
    (lambda p: None, "no such folder"),
])
def test_a_folder_without_images_is_one_line(registry, tmp_path, make, message):
    from dse_core.workloads.datasets import load_dataset

    root = tmp_path / "images"
    make(root)
    with pytest.raises(DseError, match=message) as caught:
        load_dataset(registry, f"imagefolder:{root}")
    assert "\n" not in str(caught.value)


def test_weights_of_the_user_replace_training(registry, tmp_path):
    import torch

    from dse_core.workloads.layers import build_model
    from dse_core.workloads.training import load_weights

    torch.manual_seed(1)
    model, _ = build_model(registry, "lenet5", num_classes=10)
    path = tmp_path / "lenet5.pt"
    torch.save(model.state_dict(), path)
    # a 2-class folder, a 10-class classifier: built with the class count the weights hold
    loaded = load_weights(registry, path, "lenet5", (1, 28, 28), num_classes=2)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    other, _ = build_model(registry, "vgg8", num_classes=10)
    torch.save(other.state_dict(), tmp_path / "vgg8.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02 not a pickle")
    torch.save({"w": [1, 2, 3]}, tmp_path / "lists.pt")
    for name, message in (("vgg8.pt", "not weights of lenet5"), ("junk.pt", "not a torch "
                          "state_dict"), ("lists.pt", "expected a state_dict"),
                          ("missing.pt", "no such file")):
        with pytest.raises(DseError, match=message) as caught:
            load_weights(registry, tmp_path / name, "lenet5", (1, 28, 28), 2)
        assert "\n" not in str(caught.value)


def _dse(*args: str) -> subprocess.CompletedProcess[str]:
    """In the session's cache (the characterisation other tests made is reused)."""
    return subprocess.run([sys.executable, "-m", "dse_core.cli", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def photos(registry, tmp_path_factory):
    """A folder of images and LeNet-5 weights, shared so the statistics are collected once."""
    import torch

    from dse_core.workloads.layers import build_model

    tmp_path = tmp_path_factory.mktemp("photos")
    root = _folder(tmp_path / "images")
    torch.manual_seed(0)
    model, _ = build_model(registry, "lenet5", num_classes=10)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    return root, tmp_path


def test_energy_of_a_network_with_its_weights_on_a_folder_at_a_batch(photos):
    """`dse energy … --weights W --dataset imagefolder:DIR --input … --batch …`: no training
    (no checkpoint in the cache), the batch streams through the array (cycles grow), the
    statistics and so the MAC energy per image stay."""
    root, tmp_path = photos
    runs = {}
    for batch in (1, 4):
        done = _dse("energy", "lenet5", "--weights", str(tmp_path / "w.pt"), "--dataset",
                    f"imagefolder:{root}", "--input", "1x28x28", "--batch", str(batch),
                    "--array", "16x16", "--energy-model", "msb_hamming", "-o",
                    "layer_calibration=false", "--calibration-images", "8", "--format", "json")
        assert done.returncode == 0, done.stderr
        runs[batch] = json.loads(done.stdout)["total"]
    checkpoints = Path(os.environ["DSE_CACHE_DIR"]) / "checkpoints"
    assert not list(checkpoints.glob("lenet5-imagefolder*"))  # nothing was trained
    assert runs[4]["cycles"] > 1.3 * runs[1]["cycles"]
    assert runs[4]["mac_switching_pj"] == pytest.approx(4 * runs[1]["mac_switching_pj"],
                                                        rel=0.05)
    bad = _dse("energy", "lenet5", "--weights", str(tmp_path / "w.pt"), "--dataset",
               "mnist5k", "--input", "1x32x32", "--array", "16x16")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "the images of dataset 'mnist5k' have one shape" in bad.stderr


SEARCH = """
name = "own"
n_trials = 3
objectives = ["energy_pj", "cycles"]
[workload]
model = "lenet5"
dataset = "imagefolder:{root}"
weights = "{weights}"
input = "1x28x28"
batch = 4
[space]
rows = [16]
cols = [8, 16]
[energy]
model = "msb_hamming"
options = {{ layer_calibration = false }}  # the plumbing is tested here, not the calibration
calibration_images = 8
[sampler]
name = "grid"
"""


def test_a_search_on_the_users_weights_and_images(registry, photos, tmp_path):
    from .test_search import _dse as dse_in_process
    from .test_search import _load

    root, weights = photos[0], photos[1] / "w.pt"
    path = tmp_path / "own.toml"
    path.write_text(SEARCH.format(root=root, weights=weights))
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    code, _, err = dse_in_process("run", str(path), "--storage", storage)
    assert code == 0, err
    trials = _load(storage, "own").trials
    assert sorted(t.params["cols"] for t in trials) == [8, 16]  # the grid, once each
    energy_cli = _dse("energy", "lenet5", "--weights", str(weights), "--dataset",
                      f"imagefolder:{root}", "--input", "1x28x28", "--batch", "4", "--array",
                      "16x16", "--energy-model", "msb_hamming", "-o", "layer_calibration=false",
                      "--calibration-images", "8", "--format", "json")
    total = json.loads(energy_cli.stdout)["total"]
    searched = next(t for t in trials if t.params["cols"] == 16)
    assert searched.user_attrs["energy_pj"] == pytest.approx(total["total_pj"], rel=1e-9)
    # weights of another model: one line before anything is written
    import torch

    from dse_core.workloads.layers import build_model

    torch.save(build_model(registry, "vgg8", num_classes=10)[0].state_dict(),
               tmp_path / "vgg8.pt")
    path.write_text(SEARCH.format(root=root, weights=tmp_path / "vgg8.pt"))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, _, err = dse_in_process("run", str(path), "--storage", other)
    assert code == 2 and "not weights of lenet5" in err
    assert not (tmp_path / "other.db").exists()


def test_every_shipped_study_file_validates():
    """Each file of studies/ reads and validates as the kind it is (search or compression)."""
    from dse_core.compression.study import load_study
    from dse_core.search.study_file import load_search_study

    from .conftest import ROOT

    files = sorted((ROOT / "studies").glob("*.toml"))
    assert len(files) >= 6
    for path in files:
        text = path.read_text()
        study = load_search_study(path) if "[space]" in text else load_study(path)
        assert study.name == path.stem


def test_the_imagenet_study_without_its_folder_stops_in_one_line(tmp_path):
    from .conftest import ROOT

    storage = f"sqlite:///{tmp_path / 'r.db'}"
    done = subprocess.run([sys.executable, "-m", "dse_core.cli", "run",
                           str(ROOT / "studies" / "resnet50_imagefolder.toml"), "--storage",
                           storage], capture_output=True, text=True, timeout=300)
    if (ROOT / "data" / "imagenet-sample").is_dir():
        pytest.skip("data/imagenet-sample exists here: the study would run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert str(ROOT / "data" / "imagenet-sample") in done.stderr
    assert not (tmp_path / "r.db").exists()


def test_stats_and_compress_studies_take_the_users_weights(photos, tmp_path):
    from dse_core.compression.study import load_study

    from .conftest import ROOT

    root, folder = photos
    done = _dse("stats", "lenet5", "--weights", str(folder / "w.pt"), "--dataset",
                f"imagefolder:{root}", "-D", "shape=1x28x28", "--rows", "16",
                "--calibration-images", "8", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [r["layer"] for r in json.loads(done.stdout)["rows"]] == ["conv1", "conv2", "fc1",
                                                                      "fc2", "fc3"]
    study = load_study(ROOT / "studies" / "lenet5_mnist5k.toml",
                       ['workload.weights="random"', f'workload.dataset="imagefolder:{root}"',
                        'workload.input="1x28x28"'])
    assert study.workload.data_options() == {"shape": "1x28x28"}
    with pytest.raises(DseError, match="workload.weights or workload.checkpoint, not both"):
        load_study(ROOT / "studies" / "lenet5_mnist5k.toml",
                   ['workload.weights="random"', 'workload.checkpoint="c.pt"'])


def test_a_terminal_sees_a_bar_with_eta_on_every_slow_step(photos):
    """On a terminal, `dse energy` shows bars (count, rate, ETA) for loading images,
    statistics, their partial-sum replay and the first evaluation's per-layer calibration;
    the table still goes to stdout alone."""
    import fcntl
    import pty
    import struct
    import termios

    root, tmp_path = photos
    leader, follower = pty.openpty()
    # a new pty is 0 columns wide, where tqdm draws empty bars: give it a terminal's size
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dse_core.cli", "energy", "lenet5", "--weights",
             str(tmp_path / "w.pt"), "--dataset", f"imagefolder:{root}", "--input",
             "1x28x28", "--array", "16x16", "--energy-model", "msb_hamming",
             "--calibration-images", "9", "--format", "json"],
            env=dict(os.environ), stdout=subprocess.PIPE, stderr=follower,
            text=True, timeout=600)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the child's side is closed: everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, terminal
    assert json.loads(done.stdout)["total"]["layer"] == "total"
    for bar in ("loading images", "switching statistics", "partial sums", "layer energies"):
        assert bar in terminal, (bar, terminal)
    assert "layer energies: 100%" in terminal and "5/5" in terminal   # LeNet-5's 5 layers
    assert terminal.count("<") >= 4  # tqdm's elapsed<remaining
