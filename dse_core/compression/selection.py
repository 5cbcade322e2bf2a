"""Contracts of weight-selection policies and layer schedulers, and the values they exchange.

A *selector* picks a layer's allowed int8 codes of a given size from the energy of each code
and the layer's weights. A *scheduler* decides how many codes each layer keeps: statically from
knob values (what a search tunes) and, in :meth:`LayerScheduler.run`, greedily against a
:class:`CompressionSession` (fine-tune, measure accuracy, accept or revert) under a global
accuracy budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from dse_core.errors import ValidationError
from dse_core.types import AllowedSet, CompressionPlan

__all__ = ["SelectionRequest", "WeightSelector", "Knob", "LayerScheduler",
           "CompressionSession", "FULL_LEVELS"]

#: n_levels meaning "every int8 code" (symmetric int8 has 255 codes, -127..127)
FULL_LEVELS = 255


@dataclass(frozen=True)
class SelectionRequest:
    """What a selector sees for one layer.

    ``energy_pj[c + 128]``: energy in pJ that one weight holding code ``c`` costs per inference
    (the energy model's per-cycle curve times the cycles it streams). ``weights``: the latent
    float weights in code units (w / scale, before rounding), flattened. ``sensitivity``:
    optional non-negative importance per weight (same shape), e.g. squared gradients."""

    layer: str
    n_levels: int
    energy_pj: np.ndarray
    weights: np.ndarray
    sensitivity: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_levels, bool) or not isinstance(self.n_levels, int) \
                or not 1 <= self.n_levels <= 256:
            raise ValidationError.field("SelectionRequest", "n_levels", self.n_levels,
                                        "an integer in 1..256 (the set always holds 0)")
        if np.shape(self.energy_pj) != (256,):
            raise ValidationError.field("SelectionRequest", "energy_pj",
                                        np.shape(self.energy_pj), "256 values")
        if self.sensitivity is not None and np.shape(self.sensitivity) != np.shape(self.weights):
            raise ValidationError.field("SelectionRequest", "sensitivity",
                                        np.shape(self.sensitivity), "the weights' shape")


@runtime_checkable
class WeightSelector(Protocol):
    """Chooses the allowed codes of one layer. The result must contain 0 and have at most
    ``request.n_levels`` codes (fewer only if the layer cannot use more)."""

    #: True if the selector uses ``SelectionRequest.sensitivity`` (the host then computes it)
    needs_sensitivity: bool

    def select(self, request: SelectionRequest) -> AllowedSet: ...


@dataclass(frozen=True)
class Knob:
    """One parameter a search may tune: an int/float range or a list of choices."""

    name: str
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = field(default=())
    log: bool = False

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValidationError.field("Knob", "choices", self.choices, "at least one")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValidationError.field("Knob", "low/high", (self.low, self.high),
                                        "low <= high")


class CompressionSession(Protocol):
    """What a scheduler's greedy loop drives (implemented by
    :mod:`dse_core.compression.compress`)."""

    layer_names: Sequence[str]
    budget_pct: float
    baseline_accuracy: float

    def energy_shares(self) -> dict[str, float]:
        """Each layer's share of the network's MAC energy under the current allowed sets."""
        ...

    def apply(self, plan: Mapping[str, int], options: Mapping[str, Any] | None = None
              ) -> None:
        """Select each named layer's allowed set of the given size (others unchanged).
        ``options``: one of the scheduler's ``selection_variants``: the study's selection
        policy with these options over its own, for this call."""
        ...

    def allowed_sets(self) -> dict[str, AllowedSet]:
        """Each layer's allowed set now (its codes and dead zone)."""
        ...

    def widen(self, zones: Mapping[str, float]) -> None:
        """Re-project each named layer's *current* allowed codes with this dead zone
        (:attr:`~dse_core.types.AllowedSet.deadzone`): the codes stay, only more small
        weights go to 0 (no re-selection from latent weights that drifted since)."""
        ...

    def preview_energy(self, plan: Mapping[str, int]) -> float:
        """The network's MAC energy in pJ if ``plan`` were applied now (nothing is kept)."""
        ...

    def mac_energy_pj(self) -> float:
        """The network's MAC energy in pJ now."""
        ...

    def fine_tune(self, epochs: float) -> None: ...

    def accuracy(self) -> float:
        """Accuracy in % on the held-out tuning split (what accept/revert decisions use)."""
        ...

    def within_budget(self, accuracy: float) -> bool: ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...

    def log_step(self, **fields: Any) -> None: ...


@runtime_checkable
class LayerScheduler(Protocol):
    """Decides each layer's allowed-set size."""

    def knobs(self, layer_names: Sequence[str]) -> list[Knob]:
        """The parameters a search may tune for a network with these layers."""
        ...

    def plan(self, values: Mapping[str, Any], shares: Mapping[str, float]) -> CompressionPlan:
        """The plan for knob ``values`` (names from :meth:`knobs`), given energy shares."""
        ...

    def run(self, session: CompressionSession) -> CompressionPlan:
        """Compress under ``session.budget_pct``; returns the plan it settled on."""
        ...
