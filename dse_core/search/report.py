"""What a search run says at its end: failed trials grouped by message, and how many distinct
designs the study has evaluated (a repeated design is evaluated once)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["FailureSummary", "failures_since", "distinct_designs", "design_key"]

#: the trial parameters that are the design (the rest are knobs that only make the plan)
#: trial parameters that describe the hardware (the scheduler's knobs count through the plan)
#: every trial parameter of a design that is not a compression knob (tests/test_pes.py
#: checks that the evaluator suggests no other)
DESIGN_PARAMS = ("rows", "cols", "dataflow", "mapping", "pe", "ifmap_kb", "filter_kb",
                 "ofmap_kb", "index_storage")


def design_key(params: Any, plan: Any = None) -> str:
    """What makes two trials the same design: the array and its mapping (the trial's
    parameters) and, when compressing, the compression plan (layer -> n_levels): knob
    settings that give the same plan are the same design. Derived from what every trial
    already stores, so it costs no extra write per trial."""
    doc: dict[str, Any] = {k: params[k] for k in DESIGN_PARAMS if k in params}
    if plan is not None:
        doc["plan"] = dict(sorted(dict(plan).items()))
    return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class FailureSummary:
    """Trials that failed since a moment, grouped by message."""

    failed: int
    configuration: int
    messages: list[tuple[int, str]]  # (count, message), most frequent first
    worker_lost: int = 0  # failed because their worker stopped; retried, so not the design's

    def lines(self) -> list[str]:
        return [f"  {count} x {message}" for count, message in self.messages]


def failures_since(optuna_study: Any, started: Any) -> FailureSummary:
    """The failed trials that started at or after ``started`` (a naive datetime, as Optuna
    stores them), by message; a trial whose worker died is counted as such."""
    from collections import Counter

    import optuna

    counter: Counter[str] = Counter()
    configuration = lost = 0
    for t in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if t.datetime_start is None or t.datetime_start < started:
            continue
        message = t.user_attrs.get("error", "its worker stopped (heartbeat lost)")
        counter[message] += 1
        configuration += t.user_attrs.get("error_kind") == "configuration"
        lost += t.user_attrs.get("error_kind", "worker_lost") == "worker_lost"
    return FailureSummary(sum(counter.values()), configuration,
                          [(count, message) for message, count in counter.most_common()], lost)




def distinct_designs(optuna_study: Any) -> int:
    """How many different designs the study's complete trials evaluated."""
    import optuna

    return len({design_key(t.params, t.user_attrs.get("plan")) for t in optuna_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))})


