"""The study's Optuna sampler, by name (docs/search.md, "Samplers")."""

from __future__ import annotations

from typing import Any

from dse_core.errors import DseError
from dse_core.search.study_file import SearchStudy

__all__ = ["make_sampler"]

#: sampler name -> (Optuna class name, options it gets unless the study sets them)
_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "tpe": ("TPESampler", {"multivariate": True}),
    "nsga2": ("NSGAIISampler", {}),
    "nsga3": ("NSGAIIISampler", {}),
    "gp": ("GPSampler", {}),
    "random": ("RandomSampler", {}),
    "grid": ("GridSampler", {}),
}


def _grid(study: SearchStudy, knob_space: dict[str, Any]) -> dict[str, list[Any]]:
    """Every value of every dimension, for the grid sampler."""
    grid: dict[str, list[Any]] = {"rows": study.space.rows.choices(),
                                  "cols": study.space.cols.choices()}
    if len(study.space.mapping_choices()) > 1:
        grid[study.space.mapping_param] = list(study.space.mapping_choices())
    if study.space.pe is not None and len(study.space.pe) > 1:
        grid["pe"] = list(study.space.pe)
    grid.update(study.space.memory_dimensions())
    for key, value in knob_space.items():
        if value.kind == "categorical":
            grid[key] = list(value.choices)
        elif value.kind == "int" and not value.log:
            grid[key] = list(range(int(value.low), int(value.high) + 1))
        else:
            raise DseError(f"sampler.name = 'grid': knob {key!r} is continuous; use another "
                           "sampler or a scheduler with discrete knobs")
    return grid


def make_sampler(study: SearchStudy, worker_index: int, knob_space: dict[str, Any]) -> Any:
    """The study's sampler, seeded per worker so workers do not suggest the same designs."""
    import optuna

    class_name, defaults = _SAMPLERS[study.sampler.name]  # the study file checked the name
    opts = {**defaults, "seed": study.seed + 1000 * worker_index, **study.sampler.options}
    args = (_grid(study, knob_space),) if study.sampler.name == "grid" else ()
    try:
        return getattr(optuna.samplers, class_name)(*args, **opts)
    except TypeError as exc:
        raise DseError(f"sampler.options = {dict(study.sampler.options)}: {exc}") from exc
