"""Training a float classifier, and checkpoints that load without unpickling code.

A checkpoint is a ``torch.save`` d dict of tensors and plain values
(``format``, ``model``, ``dataset``, ``input_shape``, ``num_classes``, ``epochs``, ``seed``,
``val_accuracy``, ``state_dict``), read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dse_core.cache import atomic_write, cache_dir
from dse_core.errors import DseError
from dse_core.host.registry import Registry
from dse_core.workloads.datasets import DatasetSplits, load_dataset
from dse_core.workloads.layers import build_model

__all__ = ["load_weights", "train_classifier", "accuracy", "save_checkpoint", "load_checkpoint",
           "trained_model", "CHECKPOINT_FORMAT"]

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "systolic-dse-checkpoint/1"


def accuracy(model: Any, dataset: Any, *, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 accuracy in % of ``model`` on ``dataset``."""
    import torch
    from torch.utils.data import DataLoader

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            pred = model(x.to(device)).argmax(dim=1).cpu()
            correct += int((pred == y).sum())
            total += len(y)
    return 100.0 * correct / max(1, total)


def train_classifier(model: Any, splits: DatasetSplits, *, epochs: int = 5, lr: float = 1e-3,
                     batch_size: int = 64, seed: int = 0, device: str = "cpu",
                     progress: bool = True) -> float:
    """Adam + cross-entropy for ``epochs``; returns the validation accuracy in %."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    torch.manual_seed(seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    for epoch in range(epochs):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False, unit="batch")
        for x, y in bar:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            loss.backward()
            optimiser.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return accuracy(model, splits.val, device=device)


def save_checkpoint(path: Path, model: Any, *, model_ref: str, splits: DatasetSplits,
                    epochs: int, seed: int, val_accuracy: float) -> Path:
    import torch

    doc = {"format": CHECKPOINT_FORMAT, "model": model_ref, "dataset": splits.name,
           "input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
           "epochs": epochs, "seed": seed, "val_accuracy": float(val_accuracy),
           "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return atomic_write(Path(path), lambda tmp: torch.save(doc, tmp))


def load_checkpoint(registry: Registry, path: str | Path, model_ref: str | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model of a checkpoint. Never unpickles arbitrary objects; a checkpoint of
    another model, or whose tensors do not fit the model, is a user error."""
    import torch

    path = Path(path)
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DseError(f"{path}: no such checkpoint") from exc
    except Exception as exc:  # torch's unpickler raises anything on arbitrary bytes
        first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DseError(f"{path}: not a systolic-dse checkpoint ({first})") from exc
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise DseError(f"{path}: format = {doc.get('format') if isinstance(doc, dict) else None!r}"
                       f": expected {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("model", "input_shape", "num_classes", "state_dict") if k not in doc]
    if missing:
        raise DseError(f"{path}: {', '.join(missing)} missing: expected a checkpoint written "
                       "by `dse train`")
    shape = doc["input_shape"]
    if not isinstance(doc["model"], str):
        raise DseError(f"{path}: model = {doc['model']!r}: expected a model name")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 16
                       for d in shape)):
        raise DseError(f"{path}: input_shape = {shape!r}: expected three sizes C, H, W "
                       "in 1..65536")
    classes = doc["num_classes"]
    if not isinstance(classes, int) or isinstance(classes, bool) or not 0 < classes <= 1 << 20:
        raise DseError(f"{path}: num_classes = {classes!r}: expected an integer in "
                       "1..1048576")
    if not isinstance(doc["state_dict"], dict):
        raise DseError(f"{path}: state_dict is a {type(doc['state_dict']).__name__}: "
                       "expected a dict of tensors")
    if model_ref is not None and doc["model"] != model_ref:
        raise DseError(f"{path}: checkpoint of model {doc['model']!r}, not {model_ref!r}")
    shape = tuple(doc["input_shape"])
    model, _ = build_model(registry, doc["model"], input_shape=shape,  # type: ignore[arg-type]
                           num_classes=doc["num_classes"])
    try:
        model.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise DseError(f"{path}: does not match model {doc['model']!r}: "
                       f"{str(exc).splitlines()[0]}") from exc
    model.eval()
    return model, {k: v for k, v in doc.items() if k != "state_dict"}


#: ``--weights random``: the model's seeded initialisation, nothing trained (energy studies
#: that need a network of the right shape, not a trained one)
RANDOM_WEIGHTS = "random"


def load_weights(registry: Registry, path: str | Path, model_ref: str,
                 input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """``model_ref`` with the user's weights: a ``state_dict`` saved by torch (torchvision's
    pretrained files are), read with ``weights_only=True`` (no code unpickled). A classifier
    of another class count than the dataset's (ImageNet's 1,000) is built with the count the
    weights hold; any other mismatch is one line naming the tensor."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DseError(f"--weights {path}: no such file") from exc
    except Exception as exc:  # the unpickler's errors on arbitrary bytes, or unsafe content
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DseError(f"--weights {path}: not a torch state_dict ({type(exc).__name__}"
                       f"{': ' + first[:200] if first else ''})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a dse checkpoint, or a trainer's {"state_dict": …}
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise DseError(f"--weights {path}: expected a state_dict (parameter name -> tensor), "
                       f"got {type(state).__name__}")
    model, _ = build_model(registry, model_ref, input_shape=input_shape,
                           num_classes=num_classes)
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    classes = {int(state[k].shape[0]) for k in wrong if state[k].ndim in (1, 2)}
    if wrong and len(classes) == 1 and len(wrong) <= 2:  # the classifier's weight and bias
        model, _ = build_model(registry, model_ref, input_shape=input_shape,
                               num_classes=classes.pop())
        own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} tensors missing (first {missing[0]!r})" if missing else
                f"{len(unexpected)} unknown tensors (first {unexpected[0]!r})" if unexpected
                else f"{wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, the model's "
                     f"{tuple(own[wrong[0]].shape)}")
        raise DseError(f"--weights {path}: not weights of {model_ref}: {what}")
    model.load_state_dict(state)
    model.eval()
    return model


def trained_model(registry: Registry, model_ref: str, dataset: str, *, epochs: int = 5,
                  seed: int = 0, checkpoint: str | Path | None = None, progress: bool = True,
                  weights: str | Path | None = None, dataset_options: dict[str, Any] | None
                  = None) -> tuple[Any, dict[str, Any], DatasetSplits]:
    """The model for ``dataset``: with the user's ``weights`` (no training), from
    ``checkpoint`` if given, else from the cache, else trained now and cached under
    ``checkpoints/`` of the cache directory."""
    splits = load_dataset(registry, dataset, dataset_options)
    if weights is not None:
        if checkpoint is not None:
            raise DseError("give --weights or --checkpoint, not both")
        if str(weights) == RANDOM_WEIGHTS:  # seeded initialisation: runs anywhere, untrained
            import torch

            torch.manual_seed(seed)
            model, _ = build_model(registry, model_ref, input_shape=splits.input_shape,
                                   num_classes=splits.num_classes)
            model.eval()
            return model, {"model": model_ref, "dataset": splits.name, "weights": "random",
                           "path": None, "seed": seed}, splits
        model = load_weights(registry, weights, model_ref, splits.input_shape,
                             splits.num_classes)
        return model, {"model": model_ref, "dataset": splits.name, "path": str(weights),
                       "weights": str(weights)}, splits
    if checkpoint is None:
        safe = model_ref.replace(":", "_")
        # n2: the shipped models' layers were renamed (conv1, fc1, … instead of 0, 3, …)
        checkpoint = cache_dir("checkpoints") / f"{safe}-{dataset}-e{epochs}-s{seed}-n2.pt"
        if not Path(checkpoint).exists():
            import torch

            log.info("training %s on %s for %d epochs", model_ref, dataset, epochs)
            # seed before the weights are initialised, not only before training: the same
            # seed must give the same network whatever ran earlier in the process
            torch.manual_seed(seed)
            model, _ = build_model(registry, model_ref, input_shape=splits.input_shape,
                                   num_classes=splits.num_classes)
            acc = train_classifier(model, splits, epochs=epochs, seed=seed, progress=progress)
            save_checkpoint(Path(checkpoint), model, model_ref=model_ref, splits=splits,
                            epochs=epochs, seed=seed, val_accuracy=acc)
    model, meta = load_checkpoint(registry, checkpoint, model_ref)
    if meta["dataset"] != splits.name:
        raise DseError(f"{checkpoint}: trained on {meta['dataset']}, not on {splits.name}")
    meta["path"] = str(checkpoint)
    return model, meta, splits
