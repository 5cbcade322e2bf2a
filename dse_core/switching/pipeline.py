"""The inputs of the switching-activity energy models, built and cached in order:
trained float model -> its layers -> int8 statistics for the array's row count -> the PE
characterisation for the array's psum width."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dse_core.cache import cache_dir, content_hash
from dse_core.errors import DseError
from dse_core.host.registry import Registry, instantiate
from dse_core.switching.characterization import MacCharacterization
from dse_core.switching.stats import (
    STATS_FORMAT,
    STATS_METHOD,
    NetworkStats,
    collect_stats,
    network_fingerprint,
)
from dse_core.types import ArrayConfig, LayerSpec
from dse_core.workloads.layers import layers_from_module
from dse_core.workloads.training import trained_model

__all__ = ["SwitchingInputs", "switching_inputs", "characterize"]

log = logging.getLogger(__name__)
DEFAULT_CHARACTERIZER = "gate_level"


@dataclass(frozen=True)
class SwitchingInputs:
    layers: list[LayerSpec]
    stats: NetworkStats
    characterization: MacCharacterization
    checkpoint: dict[str, Any]
    model: Any


def _file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def resolve_pe(options: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Characteriser options with ``pe`` (a PE plugin's name) replaced by its design."""
    if isinstance(options.get("pe"), str):
        return {**options, "pe": instantiate(registry.get("pe", options["pe"]))}
    return options


def characterize(registry: Registry, array: ArrayConfig, *, characterizer: str =
                 DEFAULT_CHARACTERIZER, options: dict[str, Any] | None = None,
                 progress: bool = False) -> MacCharacterization:
    opts = resolve_pe({"psum_bits": array.psum_bits, **(options or {})}, registry)
    char = instantiate(registry.get("characterizer", characterizer), opts).characterize(
        progress=progress)
    if not isinstance(char, MacCharacterization):
        raise DseError(f"characterizer {characterizer!r} returned {type(char).__name__}")
    return char


def switching_inputs(
    registry: Registry, model_ref: str, dataset: str, array: ArrayConfig, *,
    checkpoint: str | None = None, epochs: int = 5, seed: int = 0,
    calibration_images: int = 1024, batch_size: int = 64, stats_file: str | None = None,
    characterizer: str = DEFAULT_CHARACTERIZER, characterizer_options: dict[str, Any] | None
    = None, progress: bool = False, weights: str | None = None,
    dataset_options: dict[str, Any] | None = None, batch: int = 1,
) -> SwitchingInputs:
    """Everything ``msb_hamming`` / ``global_activation`` / ``exact`` need, from the caches
    where possible. With ``weights`` (a state_dict) the model is never trained; ``batch``
    is the batch the array streams (the statistics do not depend on it)."""
    import torch

    # plugin names first: a wrong characteriser or PE must stop before training or
    # statistics write anything to the cache
    registry.get("characterizer", characterizer)
    resolve_pe(dict(characterizer_options or {}), registry)
    model, meta, splits = trained_model(registry, model_ref, dataset, epochs=epochs, seed=seed,
                                        checkpoint=checkpoint, progress=progress,
                                        weights=weights, dataset_options=dataset_options)
    layers = layers_from_module(model, splits.input_shape, batch=batch)
    stats: NetworkStats | None = None
    if stats_file is not None:
        stats = NetworkStats.load(stats_file)
        stats.check_layers(layers)
        expected = network_fingerprint(model, layers, splits.train[0][0][None])
        if stats.fingerprint != expected:
            raise DseError(f"{stats_file}: statistics were collected on another model "
                           f"(fingerprint {stats.fingerprint}, this model's {expected})")
    else:
        weights_id = (_file_hash(meta["path"]) if meta.get("path") else
                      f"random:{model_ref}:{seed}")  # --weights random: the seed is the model
        key = content_hash(STATS_FORMAT, STATS_METHOD, weights_id, splits.name,
                           str(array.rows), str(array.psum_bits), str(calibration_images),
                           str(seed))
        path = cache_dir("stats") / f"{key}.npz"
        if path.exists():
            try:
                stats = NetworkStats.load(path)
            except DseError as exc:  # a truncated or corrupt cache entry: collect it again
                log.warning("cached statistics %s are unreadable (%s); collecting them again",
                            path, exc)
        if stats is None:
            n = min(calibration_images, len(splits.train))
            indices: Any = range(n)
            if progress:  # decoding and resizing a folder of photos takes a while
                from tqdm import tqdm

                indices = tqdm(indices, desc="loading images", unit="image")
            images = torch.stack([splits.train[i][0] for i in indices])
            stats = collect_stats(model, layers, list(images.split(batch_size)),
                                  rows=array.rows, psum_bits=array.psum_bits, seed=seed,
                                  progress=progress,
                                  meta={"model": model_ref, "dataset": splits.name,
                                        "checkpoint": meta["path"]})
            stats.save(path)
    assert stats is not None
    stats.check_layers(layers)
    if any(s.rows != array.rows for s in stats.layers.values()):
        raise DseError(f"statistics were collected for {stats.meta.get('rows')} rows, the "
                       f"array has {array.rows}")
    char = characterize(registry, array, characterizer=characterizer,
                        options=characterizer_options, progress=progress)
    return SwitchingInputs(layers, stats, char, meta, model)
