"""What a search run says at its end: failed trials grouped by message, and how many distinct
designs the study has evaluated (a repeated design is evaluated once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FailureSummary", "failures_since", "distinct_designs"]


@dataclass(frozen=True)
class FailureSummary:
    """Trials that failed since a moment, grouped by message."""

    failed: int
    configuration: int
    messages: list[tuple[int, str]]  # (count, message), most frequent first

    def lines(self) -> list[str]:
        return [f"  {count} x {message}" for count, message in self.messages]


def failures_since(optuna_study: Any, started: Any) -> FailureSummary:
    """The failed trials that started at or after ``started`` (a naive datetime, as Optuna
    stores them), by message; a trial whose worker died is counted as such."""
    from collections import Counter

    import optuna

    counter: Counter[str] = Counter()
    configuration = 0
    for t in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if t.datetime_start is None or t.datetime_start < started:
            continue
        message = t.user_attrs.get("error", "its worker stopped (heartbeat lost); retried")
        counter[message] += 1
        configuration += t.user_attrs.get("error_kind") == "configuration"
    return FailureSummary(sum(counter.values()), configuration,
                          [(count, message) for message, count in counter.most_common()])




def distinct_designs(optuna_study: Any) -> int:
    """How many different designs the study's complete trials evaluated."""
    import optuna

    return len({t.user_attrs.get("design", f"#{t.number}") for t in optuna_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))})


