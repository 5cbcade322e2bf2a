"""Provenance: what made a study's results. Every plugin used (all kinds) with its providing
distribution and version, package versions, seeds, and digests of the input files; and the
comparison that warns when a continued study runs on other versions (docs/search.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dse_core.host.registry import Registry
from dse_core.search.study_file import SearchStudy

__all__ = ["provenance", "provenance_changes", "PACKAGES"]

#: the distributions whose versions change results
PACKAGES = ("systolic-dse", "optuna", "torch", "torchvision", "numpy", "sqlalchemy", "pydantic")


def _plugins_used(study: SearchStudy) -> list[tuple[str, str]]:
    kinds = [("mapping", name) for name in study.space.mapping_choices().values()]
    kinds.append(("energy_model", study.energy.model))
    kinds.append(("memory_model", study.memory.model))
    w = study.workload
    if w.model:
        kinds.append(("model", w.model.split(":")[0]))
    if w.dataset:
        kinds += [("dataset", w.dataset.partition(":")[0]),
                  ("characterizer", study.energy.characterizer)]
    if study.space.compression:
        kinds += [("selector", study.compression.policy),
                  ("scheduler", study.compression.scheduler)]
    return kinds


def _digest(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def provenance(registry: Registry, study: SearchStudy) -> dict[str, Any]:
    """Plugins (``kind:name`` -> ``distribution version``), package versions, seeds, the
    workload and digests of its input files."""
    from importlib import metadata

    plugins = {}
    for kind, name in _plugins_used(study):
        record = registry.get(kind, name)
        plugins[f"{kind}:{name}"] = f"{record.provider} {record.version}"
    packages: dict[str, str | None] = {}
    for dist in PACKAGES:
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = None
    w = study.workload
    files = {key: {"path": str(Path(value).resolve()), "digest": _digest(value)}
             for key, value in (("topology", w.topology), ("checkpoint", w.checkpoint),
                                ("weights", w.weights))
             if value and Path(value).is_file()}
    workload = w.topology or f"{w.model}/{w.dataset}"
    return {"plugins": plugins, "packages": packages,
            "seeds": {"study": study.seed, "sampler": f"{study.seed} + 1000 x worker index"},
            "seed": study.seed, "workload": workload, "files": files}


def provenance_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a study's recorded provenance and this run's: plugin versions
    and providers, package versions, input file digests. Empty when nothing that changes
    results differs."""
    changes = []
    for section in ("plugins", "packages"):
        old, new = recorded.get(section, {}), now.get(section, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(f"{key}: {old.get(key) or 'absent'} -> {new.get(key) or 'absent'}")
    old_files, new_files = recorded.get("files", {}), now.get("files", {})
    for key in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(key, {}).get("digest"), new_files.get(key, {}).get("digest")
        if a != b:
            changes.append(f"{key} file: {a or 'absent'} -> {b or 'absent'}")
    return changes
