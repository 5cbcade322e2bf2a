"""Shipped layer schedulers: ``energy_prioritized`` (the paper), ``energy_backtracking`` (the
same greedy, retrying failed layers with smaller steps), ``uniform`` (layer-agnostic,
PowerPruning's setting) and ``per_layer`` (sizes given by the user or a search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dse_core import SchedulerPlugin, hookimpl
from dse_core.compression.selection import FULL_LEVELS, CompressionSession, Knob
from dse_core.errors import ValidationError
from dse_core.types import CompressionPlan

# Smallest default set: 3 codes (e.g. -a, 0, b). With 2 codes every weight of a layer has one
# sign, and fine-tuning such layers diverged on LeNet-5 (accuracy to 10 %) in our runs.
DEFAULT_LADDER = (FULL_LEVELS, 64, 32, 16, 8, 4, 3)


def _ladder(owner: str, ladder: Sequence[int]) -> tuple[int, ...]:
    values = tuple(ladder)
    if (not values or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 255
                          for n in values) or list(values) != sorted(set(values), reverse=True)):
        raise ValidationError.field(owner, "ladder", list(values),
                                    "strictly decreasing allowed-set sizes in 1..255 "
                                    "(every set holds 0)")
    return values


def _epochs(owner: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationError.field(owner, name, value, "a number of epochs >= 0")
    return float(value)


class EnergyPrioritized:
    """Rank layers by energy; tighten the top layer that is not frozen one ladder step,
    fine-tune ``fine_tune_epochs``, keep the step if accuracy stays
    within the budget, else revert and freeze that layer; repeat until every layer is frozen
    or at the ladder's end (or ``max_steps``). High-energy layers therefore end up with the
    smallest sets. Layers below ``min_share`` of the energy are left alone (not worth the
    accuracy risk). ``rank_by``: ``"saving"`` ranks by the energy the layer's next step would
    save (its share times how much the step cuts it; previewed without training),
    ``"share"`` by the layer's current share of the MAC energy."""

    def __init__(self, ladder: Sequence[int] = DEFAULT_LADDER, fine_tune_epochs: float = 0.5,
                 max_steps: int = 100, min_share: float = 0.0, rank_by: str = "saving"
                 ) -> None:
        if rank_by not in ("saving", "share"):
            raise ValidationError.field("energy_prioritized", "rank_by", rank_by,
                                        "'saving' or 'share'")
        self.rank_by = rank_by
        self.ladder = _ladder("energy_prioritized", ladder)
        self.fine_tune_epochs = _epochs("energy_prioritized", "fine_tune_epochs",
                                        fine_tune_epochs)
        self.max_steps, self.min_share = int(max_steps), float(min_share)

    def knobs(self, layer_names: Sequence[str]) -> list[Knob]:
        # An integer count of layers, not an energy share: every value gives another plan
        # (a share threshold repeated plans between the layers' cumulative shares), and
        # ``high_layers = len(layers)`` would repeat ``n_low = n_high``.
        return [Knob("n_high", "categorical", choices=self.ladder),
                Knob("n_low", "categorical", choices=self.ladder),
                Knob("high_layers", "int", low=1, high=max(1, len(layer_names) - 1))]

    def plan(self, values: Mapping[str, Any], shares: Mapping[str, float]) -> CompressionPlan:
        """The ``high_layers`` layers of largest energy share get ``n_high`` codes; the
        rest get ``n_low`` (ties broken by name, so the plan is reproducible)."""
        high = int(values["high_layers"])
        ranked = sorted(shares, key=lambda n: (-shares[n], n))
        return CompressionPlan({name: int(values["n_high"] if i < high else values["n_low"])
                                for i, name in enumerate(ranked)})

    def run(self, session: CompressionSession) -> CompressionPlan:
        position = {name: 0 for name in session.layer_names}
        frozen: set[str] = set()
        for step in range(self.max_steps):
            shares = session.energy_shares()
            open_layers = [n for n in session.layer_names if n not in frozen
                           and position[n] + 1 < len(self.ladder)
                           and shares[n] >= self.min_share]
            if not open_layers:
                break
            if self.rank_by == "saving":
                now = session.mac_energy_pj()
                saving = {n: now - session.preview_energy({n: self.ladder[position[n] + 1]})
                          for n in open_layers}
                name = max(open_layers, key=lambda n: (saving[n], shares[n]))
            else:
                name = max(open_layers, key=lambda n: shares[n])
            snapshot = session.snapshot()
            n_levels = self.ladder[position[name] + 1]
            session.apply({name: n_levels})
            session.fine_tune(self.fine_tune_epochs)
            acc = session.accuracy()
            accepted = session.within_budget(acc)
            session.log_step(step=step, layer=name, share=shares[name], n_levels=n_levels,
                             accuracy=acc, accepted=accepted)
            if accepted:
                position[name] += 1
            else:
                session.restore(snapshot)
                frozen.add(name)
        return CompressionPlan({n: self.ladder[p] for n, p in position.items()})


class EnergyBacktracking(EnergyPrioritized):
    """The energy-prioritised greedy without its freeze-on-first-failure: a failed step is
    reverted and the layer is *retried later with a smaller step*. After a failure the layer
    rests while the other layers take their steps (their fine-tunes may let it recover), its
    next target is halfway between its current and the failed size, and it is frozen only
    after ``patience`` failures. So the schedule spends the budget rather than stopping at
    the first layer that breaks, and sizes between the ladder's rungs are reachable near the
    budget. ``selection_variants``: option tables of the study's selection policy (e.g.
    ``{criterion = "lagrangian", energy_weight = 3}``) tried in order, at the same size, when
    a step with the study's own selection fails, before the step counts as failed: another
    set of the same size may keep the accuracy; once every layer has settled, each layer left
    with a variant's set tries the study's own set of its size once more.
    ``squeeze_variants``: option tables tried in order *after* that, at the same sizes, to
    spend what is left of the budget below the ladder's floor (e.g. ``{deadzone = 0.6}``,
    then 0.7: more weights projected to 0): each on every compressed layer at once while
    that keeps the budget and saves energy, then the rest layer by layer, largest share
    first, a layer stopping at its first failure. Each variant's options go over those that
    made the layer's set. ``widen_deadzones`` (e.g. ``[0.55, 0.6, 0.65, 0.7]``), last, the
    same walk with each layer's dead zone widened *on the codes it has*
    (:meth:`CompressionSession.widen`), where a squeeze variant re-selects the set from
    latent weights that drifted since it was chosen (on ResNet-20 seed 0, at a 0.5 margin,
    widening kept 0.55-0.6 on 7 of 20 layers, the variants 0.55 on 5 of 18; network-wide,
    both fell to 10-28 % tuning accuracy at 0.55).
    A squeeze or widen step fine-tunes ``squeeze_epochs`` (default ``fine_tune_epochs``)
    and must keep ``squeeze_margin_pct`` points of the budget unspent on the tuning split:
    many small steps each kept on a noisy 500-image score pick the lucky ones, and the
    validation score then falls short (LeNet-5 seed 3: 1.0 points spent on the tuning split,
    2.8 on validation; the ResNet-20 study takes 0.3, where 0.5 turned down widenings its
    validation drops did not need). Knobs and search plans are ``energy_prioritized``'s."""

    def __init__(self, ladder: Sequence[int] = DEFAULT_LADDER, fine_tune_epochs: float = 0.5,
                 max_steps: int = 100, min_share: float = 0.0, rank_by: str = "saving",
                 patience: int = 2, selection_variants: Sequence[Mapping[str, Any]] = (),
                 squeeze_variants: Sequence[Mapping[str, Any]] = (),
                 squeeze_margin_pct: float = 0.5, widen_deadzones: Sequence[float] = (),
                 squeeze_epochs: float | None = None) -> None:
        super().__init__(ladder, fine_tune_epochs, max_steps, min_share, rank_by)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValidationError.field("energy_backtracking", "patience", patience,
                                        "failed steps per layer before it is frozen, >= 1")
        for name, variants in (("selection_variants", selection_variants),
                                ("squeeze_variants", squeeze_variants)):
            if isinstance(variants, str | bytes | Mapping) or not all(
                    isinstance(v, Mapping) and v for v in variants):
                raise ValidationError.field("energy_backtracking", name, variants,
                                            "a list of option tables of the study's "
                                            "selection policy")
        self.patience = patience
        self.selection_variants = tuple(dict(v) for v in selection_variants)
        self.squeeze_variants = tuple(dict(v) for v in squeeze_variants)
        if isinstance(squeeze_margin_pct, bool) or not isinstance(
                squeeze_margin_pct, int | float) or not squeeze_margin_pct >= 0:
            raise ValidationError.field("energy_backtracking", "squeeze_margin_pct",
                                        squeeze_margin_pct, "accuracy points >= 0")
        self.squeeze_margin_pct = float(squeeze_margin_pct)
        zones = widen_deadzones
        if isinstance(zones, str | bytes) or not isinstance(zones, Sequence) or not all(
                isinstance(z, int | float) and not isinstance(z, bool) and 0.5 < z < 1
                for z in zones) or list(zones) != sorted(set(zones)):
            raise ValidationError.field("energy_backtracking", "widen_deadzones", zones,
                                        "increasing dead zones in (0.5, 1)")
        self.widen_deadzones = tuple(float(z) for z in zones)
        self.squeeze_epochs = self.fine_tune_epochs if squeeze_epochs is None else _epochs(
            "energy_backtracking", "squeeze_epochs", squeeze_epochs)

    def run(self, session: CompressionSession) -> CompressionPlan:
        ladders = {name: list(self.ladder) for name in session.layer_names}
        position = {name: 0 for name in session.layer_names}
        failures = {name: 0 for name in session.layer_names}
        made_by: dict[str, Mapping[str, Any]] = {}  # options of the variant behind a set
        resting: set[str] = set()
        for step in range(self.max_steps):
            shares = session.energy_shares()
            open_layers = [n for n in session.layer_names if failures[n] < self.patience
                           and position[n] + 1 < len(ladders[n])
                           and shares[n] >= self.min_share]
            if not open_layers:
                break
            awake = [n for n in open_layers if n not in resting] or open_layers
            if self.rank_by == "saving":
                now = session.mac_energy_pj()
                saving = {n: now - session.preview_energy({n: ladders[n][position[n] + 1]})
                          for n in awake}
                name = max(awake, key=lambda n: (saving[n], shares[n]))
            else:
                name = max(awake, key=lambda n: shares[n])
            snapshot = session.snapshot()
            current, n_levels = ladders[name][position[name]], ladders[name][position[name] + 1]
            for variant, options in enumerate((None, *self.selection_variants)):
                if variant:
                    session.restore(snapshot)
                    session.apply({name: n_levels}, options)
                else:
                    session.apply({name: n_levels})
                session.fine_tune(self.fine_tune_epochs)
                acc = session.accuracy()
                accepted = session.within_budget(acc)
                session.log_step(step=step, layer=name, share=shares[name], n_levels=n_levels,
                                 accuracy=acc, accepted=accepted,
                                 **({"selection": options} if variant else {}))
                if accepted:
                    break
            if accepted:
                position[name] += 1
                made_by[name] = options or {}
                resting.clear()  # the network changed: every layer may try again
                continue
            session.restore(snapshot)
            failures[name] += 1
            resting.add(name)
            halfway = (current + n_levels) // 2
            if n_levels < halfway < current:  # a gentler step next time
                ladders[name].insert(position[name] + 1, halfway)
        sizes = {n: ladders[n][p] for n, p in position.items()}
        shares = session.energy_shares()
        for name in sorted((n for n in made_by if made_by[n]), key=lambda n: -shares[n]):
            # the study's own set (cheaper) once more, now that the others have settled
            if self._try(session, {name: sizes[name]}, {name: {}}, "squeeze", 0.0,
                         epochs=self.fine_tune_epochs):
                made_by[name] = {}
        self._squeeze_variants(session, sizes, made_by)
        self._widen(session, sizes)
        return CompressionPlan(sizes)

    def _try(self, session: CompressionSession, sizes: Mapping[str, int],
             options: Mapping[str, Mapping[str, Any]], step: str, margin_pct: float,
             zones: Mapping[str, float] | None = None, epochs: float | None = None) -> bool:
        """Select ``sizes`` with each layer's ``options`` (or, with ``zones``, widen the
        layers' dead zones on their codes), fine-tune, keep if within the budget less
        ``margin_pct`` and cheaper; else restore."""
        snapshot, before = session.snapshot(), session.mac_energy_pj()
        shares = session.energy_shares()
        if zones is not None:
            session.widen(zones)
        for name, n_levels in sizes.items() if zones is None else ():
            session.apply({name: n_levels}, options[name] or None)
        session.fine_tune(self.squeeze_epochs if epochs is None else epochs)
        acc = session.accuracy()
        accepted = session.within_budget(acc - margin_pct) and session.mac_energy_pj() < before
        first = next(iter(sizes))  # a network-wide step logs as layer "*"
        one = len(sizes) == 1
        what = {"deadzone": zones[first]} if zones is not None and one else (
            {"selection": dict(options[first])} if options.get(first) else {})
        session.log_step(step=step, layer=first if one else "*",
                         share=sum(shares[n] for n in sizes),
                         n_levels=sizes[first] if one else None, accuracy=acc,
                         accepted=accepted, **what)
        if not accepted:
            session.restore(snapshot)
        return accepted

    def _squeeze_variants(self, session: CompressionSession, sizes: Mapping[str, int],
                          made_by: dict[str, Mapping[str, Any]]) -> None:
        layers = [n for n in session.layer_names if sizes[n] < FULL_LEVELS]
        left = list(self.squeeze_variants)
        while left and layers:  # every compressed layer at once: one fine-tune a variant
            over = {n: {**made_by.get(n, {}), **left[0]} for n in layers}
            if not self._try(session, {n: sizes[n] for n in layers}, over, "squeeze-all",
                             self.squeeze_margin_pct):
                break
            made_by.update(over)
            left.pop(0)
        shares = session.energy_shares()
        for name in sorted(layers, key=lambda n: -shares[n]) if left else ():
            for variant in left:
                over = {name: {**made_by.get(name, {}), **variant}}
                if not self._try(session, {name: sizes[name]}, over, "squeeze",
                                 self.squeeze_margin_pct):
                    break
                made_by.update(over)

    def _widen(self, session: CompressionSession, sizes: Mapping[str, int]) -> None:
        """``widen_deadzones`` in order: every compressed layer at once while that holds,
        then layer by layer, largest share first, each to its first failure. A layer whose
        zone is already as wide (from a squeeze variant) is left out of that step."""
        layers = [n for n in session.layer_names if sizes[n] < FULL_LEVELS]
        if not self.widen_deadzones or not layers:
            return
        zone = {n: a.deadzone for n, a in session.allowed_sets().items() if n in layers}
        left = list(self.widen_deadzones)
        while left and layers:
            wider = {n: left[0] for n in layers if zone[n] < left[0]}
            if wider and not self._try(session, {n: sizes[n] for n in wider}, {},
                                       "widen-all", self.squeeze_margin_pct, wider):
                break
            zone.update(wider)
            left.pop(0)
        shares = session.energy_shares()
        for name in sorted(layers, key=lambda n: -shares[n]) if left else ():
            for z in (z for z in left if z > zone[name]):
                if not self._try(session, {name: sizes[name]}, {}, "widen",
                                 self.squeeze_margin_pct, {name: z}):
                    break
                zone[name] = z


class Uniform:
    """One allowed-set size for every layer (layer-agnostic): walk down the ladder with all
    layers at once while accuracy stays within the budget; the last accepted size wins."""

    def __init__(self, ladder: Sequence[int] = DEFAULT_LADDER, fine_tune_epochs: float = 0.5
                 ) -> None:
        self.ladder = _ladder("uniform", ladder)
        self.fine_tune_epochs = _epochs("uniform", "fine_tune_epochs", fine_tune_epochs)

    def knobs(self, layer_names: Sequence[str]) -> list[Knob]:
        return [Knob("n_levels", "categorical", choices=self.ladder)]

    def plan(self, values: Mapping[str, Any], shares: Mapping[str, float]) -> CompressionPlan:
        return CompressionPlan({name: int(values["n_levels"]) for name in shares})

    def run(self, session: CompressionSession) -> CompressionPlan:
        accepted_n = self.ladder[0]
        for step, n_levels in enumerate(self.ladder[1:]):
            snapshot = session.snapshot()
            session.apply({name: n_levels for name in session.layer_names})
            session.fine_tune(self.fine_tune_epochs)
            acc = session.accuracy()
            accepted = session.within_budget(acc)
            session.log_step(step=step, layer="*", n_levels=n_levels, accuracy=acc,
                             accepted=accepted)
            if not accepted:
                session.restore(snapshot)
                break
            accepted_n = n_levels
        return CompressionPlan({name: accepted_n for name in session.layer_names})


class PerLayer:
    """Fixed sizes: ``n_levels`` maps layer names to sizes; others get ``default``. No
    accuracy loop: the study's final fine-tune follows and the budget is only reported."""

    def __init__(self, n_levels: Mapping[str, int] | None = None, default: int = FULL_LEVELS,
                 ladder: Sequence[int] = DEFAULT_LADDER) -> None:
        self.ladder = _ladder("per_layer", ladder)
        self.n_levels = dict(n_levels or {})
        self.default = default
        CompressionPlan({**self.n_levels, "*": default})  # validates the sizes

    def knobs(self, layer_names: Sequence[str]) -> list[Knob]:
        return [Knob(f"n_levels.{name}", "categorical", choices=self.ladder)
                for name in layer_names]

    def plan(self, values: Mapping[str, Any], shares: Mapping[str, float]) -> CompressionPlan:
        return CompressionPlan({name: int(values.get(f"n_levels.{name}", self.default))
                                for name in shares})

    def run(self, session: CompressionSession) -> CompressionPlan:
        unknown = sorted(set(self.n_levels) - set(session.layer_names))
        if unknown:
            raise ValidationError.field("per_layer", "n_levels", unknown[0],
                                        "one of the layers " + ", ".join(session.layer_names))
        plan = {name: int(self.n_levels.get(name, self.default))
                for name in session.layer_names}
        session.apply(plan)
        return CompressionPlan(plan)


@hookimpl
def dse_register_schedulers(register):  # type: ignore[no-untyped-def]
    register(SchedulerPlugin(
        name="energy_prioritized", factory=EnergyPrioritized,
        summary="greedy: tighten the highest-energy layer, fine-tune, keep within the budget"))
    register(SchedulerPlugin(
        name="energy_backtracking", factory=EnergyBacktracking,
        summary="the energy-prioritised greedy, retrying a failed layer later with a "
                "smaller step instead of freezing it"))
    register(SchedulerPlugin(
        name="uniform", factory=Uniform,
        summary="one allowed-set size for every layer, as small as the budget allows"))
    register(SchedulerPlugin(
        name="per_layer", factory=PerLayer,
        summary="allowed-set sizes given per layer (by you or by a search)"))
