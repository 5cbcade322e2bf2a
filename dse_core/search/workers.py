"""The worker loop of a search: exact budgets, heartbeats, and the trials of killed workers
(docs/scaling.md, "What holds it together").

Optuna's ``optimize`` asks for a trial without regard to the other workers (N workers overshoot
a budget by up to N - 1 trials), reaps a killed worker's trial only when it starts a trial of
its own after the grace period, and never reaps one killed before its first heartbeat. Here a
worker claims each trial under one lock per study (an advisory lock on PostgreSQL, ``flock``
on the SQLite file): it first fails the trials whose workers stopped beating (with a reason,
their per-layer rows deleted, re-queued with the same parameters), then asks for a trial only
while complete + pruned + running < ``n_trials``. A trial beats after each heartbeat interval
(one shorter than that writes nothing); a reaper that finds a running trial without a beat
writes one on its behalf, so that trial goes stale like any other. While the budget is claimed
by other workers' running trials it waits, so that it can redo their work if they die.
Heartbeats carry the database's clock, so workers on machines with unsynchronised clocks agree
on what is stale.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dse_core.errors import DseError
from dse_core.search.results import MEMORY_URL, ResultsDB

__all__ = ["Heartbeats", "TrialLoop", "study_lock", "create_or_load"]

_SQLITE_LOCK_FDS: dict[str, int] = {}
_THREADS = threading.Lock()  # flock does not exclude the threads of one process


@contextmanager
def study_lock(db: ResultsDB, study_name: str) -> Iterator[None]:
    """Held while a worker reaps and claims; released by the OS or the server when the
    worker dies."""
    import sqlalchemy as sa

    dialect = db.engine.dialect.name
    if dialect == "sqlite" and db.url != MEMORY_URL:
        import fcntl

        path = os.path.realpath(str(db.engine.url.database))
        fd = _SQLITE_LOCK_FDS.get(path)
        if fd is None:
            # kept open for the process's life: closing any descriptor of a SQLite file drops
            # the POSIX locks SQLite holds on it; flock and POSIX locks do not interact
            fd = _SQLITE_LOCK_FDS[path] = os.open(path, os.O_RDONLY)
        with _THREADS:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    elif dialect == "postgresql":
        digest = hashlib.blake2b(f"systolic-dse:{study_name}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
    else:  # one process (the in-memory storage); other servers are not supported for workers
        with _THREADS:
            yield


def _db_now(dialect: str) -> Any:
    """The database's clock in seconds since the epoch, as an SQL expression."""
    import sqlalchemy as sa

    if dialect == "sqlite":
        return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
    if dialect == "postgresql":
        return sa.literal_column("EXTRACT(EPOCH FROM clock_timestamp())")
    return sa.literal(time.time())


class Heartbeats:
    """``dse_trial_beats``: one row per running trial, its last beat on the database's clock."""

    def __init__(self, db: ResultsDB, study_name: str) -> None:
        self.engine, self.study = db.engine, study_name
        self.table = db.t["dse_trial_beats"]
        self.now = _db_now(self.engine.dialect.name)

    def beat(self, number: int) -> None:
        import sqlalchemy as sa

        t = self.table
        with self.engine.begin() as conn:
            updated = conn.execute(t.update().where(t.c.study_name == self.study,
                                                    t.c.trial_number == number)
                                   .values(beat_s=self.now)).rowcount
            if not updated:
                try:
                    with conn.begin_nested():
                        conn.execute(t.insert().values(study_name=self.study,
                                                       trial_number=number, beat_s=self.now))
                except sa.exc.IntegrityError:
                    pass  # a reaper wrote one on its behalf this moment: beaten either way

    def forget(self, numbers: list[int]) -> None:
        t = self.table
        if numbers:
            with self.engine.begin() as conn:
                conn.execute(t.delete().where(t.c.study_name == self.study,
                                              t.c.trial_number.in_(numbers)))

    def clear(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.study_name == self.study))

    def stale(self, running: set[int], grace_s: float) -> list[int]:
        """The running trials whose last beat is older than ``grace_s``. A running trial
        without a beat (its worker died between claiming and beating) gets one now on its
        behalf, so it goes stale after the grace period like any other."""
        import sqlalchemy as sa

        t = self.table
        with self.engine.connect() as conn:  # read only: a write after a read in one SQLite
            now = float(conn.execute(sa.select(self.now)).scalar_one())  # transaction fails
            beats = {int(n): float(s) for n, s in conn.execute(  # if another wrote between
                sa.select(t.c.trial_number, t.c.beat_s).where(t.c.study_name == self.study))}
        for number in sorted(running - set(beats)):
            try:
                with self.engine.begin() as conn:
                    conn.execute(t.insert().values(study_name=self.study, trial_number=number,
                                                   beat_s=now))
            except sa.exc.IntegrityError:
                pass  # its worker beat this moment: alive
        self.forget(sorted(set(beats) - running))  # left by a worker killed after its tell
        return sorted(n for n in running & set(beats) if now - beats[n] > grace_s)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


class _Lost(Exception):
    """This worker's trial was failed by another worker (its heartbeats came too late)."""


class TrialLoop:
    """Claim, run and finish trials until the study holds ``n_trials`` complete or pruned
    trials, or ``fail_limit`` failed ones."""

    def __init__(self, optuna_study: Any, storage: Any, db: ResultsDB, *, n_trials: int,
                 heartbeat_interval_s: float, grace_period_s: float, max_retry: int,
                 fail_limit: int, collect_garbage: bool = False) -> None:
        self.study, self.storage, self.db = optuna_study, storage, db
        self.name = optuna_study.study_name
        self.n_trials, self.fail_limit, self.max_retry = n_trials, fail_limit, max_retry
        self.interval_s, self.grace_s = heartbeat_interval_s, grace_period_s
        self.beats = Heartbeats(db, self.name) if db.url != MEMORY_URL else None
        self.poll_s = min(1.0, heartbeat_interval_s / 2)
        self.collect_garbage = collect_garbage
        self.lost = 0
        self.sampler_done = False  # the sampler has nothing left to suggest (a full grid)

    def run(self, objective: Callable[[Any], tuple[float, ...]],
            on_counts: Callable[[Counter[str]], None] | None = None) -> Counter[str]:
        import signal

        if threading.current_thread() is not threading.main_thread():
            return self._run(objective, on_counts)
        # SIGTERM (a scheduler's, `kill`'s) unwinds like Ctrl-C: the trial is failed and
        # re-queued at once instead of after the grace period
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return self._run(objective, on_counts)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run(self, objective: Callable[[Any], tuple[float, ...]],
             on_counts: Callable[[Counter[str]], None] | None) -> Counter[str]:
        while True:
            trial, counts = self._claim()
            if on_counts is not None:
                on_counts(counts)
            if trial is None:
                if self._done(counts):
                    if self.beats is not None:  # beats written on behalf of short trials
                        self.beats.clear()
                    return counts
                time.sleep(self.poll_s)  # other workers hold the rest of the budget
                continue
            self._run_one(trial, objective)
            if self.sampler_done:  # as Optuna's optimize: this worker stops
                return Counter(t.state.name for t in self.study.get_trials(deepcopy=False))
            if self.collect_garbage:
                gc.collect()

    def _done(self, counts: Counter[str]) -> bool:
        return (counts["COMPLETE"] + counts["PRUNED"] >= self.n_trials
                or counts["FAIL"] >= self.fail_limit)

    def _claim(self) -> tuple[Any, Counter[str]]:
        import optuna

        with study_lock(self.db, self.name):
            trials = self.study.get_trials(deepcopy=False)
            running = {t.number: t for t in trials
                       if t.state == optuna.trial.TrialState.RUNNING}
            if self.beats is not None and running:
                stale = self.beats.stale(set(running), self.grace_s)
                for number in stale:
                    self._fail(running[number], f"its worker stopped: no heartbeat for more "
                               f"than {self.grace_s:g} s (killed, out of memory, or its "
                               "machine lost)", kind="worker_lost")
                if stale:
                    trials = self.study.get_trials(deepcopy=False)
            counts = Counter(t.state.name for t in trials)
            if self._done(counts) or (counts["COMPLETE"] + counts["PRUNED"]
                                      + counts["RUNNING"] >= self.n_trials):
                return None, counts
            trial = self.study.ask()  # a re-queued (waiting) trial first, else the sampler's
            counts["RUNNING"] += 1
            return trial, counts

    def _beat_until(self, number: int, stop: threading.Event, beaten: list[bool]) -> None:
        assert self.beats is not None
        while not stop.wait(self.interval_s):
            try:
                self.beats.beat(number)
                beaten[0] = True
            except Exception:  # a busy database: the next beat is in time (grace > 2 beats)
                pass

    def _run_one(self, trial: Any, objective: Callable[[Any], tuple[float, ...]]) -> None:
        import optuna

        State = optuna.trial.TrialState
        stop = threading.Event()
        beater, beaten = None, [False]
        if self.beats is not None:
            beater = threading.Thread(target=self._beat_until, args=(trial.number, stop, beaten),
                                      name=f"heartbeat-{trial.number}", daemon=True)
            beater.start()
        try:
            state, values = State.FAIL, None
            try:
                values = objective(trial)
                state = State.COMPLETE
            except optuna.TrialPruned:
                state = State.PRUNED
            except optuna.exceptions.UpdateFinishedTrialError:
                raise _Lost() from None
            except Exception:  # the objective recorded the error on the trial
                pass
            try:
                frozen = self.study.tell(trial, values, state=state, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                raise _Lost() from None
            except RuntimeError as exc:  # the grid sampler's stop() when its grid is done,
                if "Study.stop" not in str(exc):  # after the trial's state was stored
                    raise
                self.sampler_done = True
                frozen = self._frozen(trial.number)
            if frozen.state != state and frozen.state == State.FAIL:
                raise _Lost()
            if frozen.state == State.FAIL:
                self.db.delete_trial_layers(self.name, trial.number)
        except _Lost:
            self.lost += 1
            self.db.delete_trial_layers(self.name, trial.number)
            print(f"trial {trial.number}: another worker failed it (its heartbeats came later "
                  f"than {self.grace_s:g} s; raise scaling.grace_period_s if this worker was "
                  "only busy); its result is discarded, its retry counts", file=sys.stderr)
        except BaseException as exc:  # Ctrl-C, SIGTERM: fail it now and re-queue it
            how = {KeyboardInterrupt: "interrupted (Ctrl-C)", SystemExit: "stopped (SIGTERM)"}
            try:
                self._fail(self._frozen(trial.number), f"its worker was "
                           f"{how.get(type(exc), type(exc).__name__)}", kind="worker_lost")
            except Exception:  # the database is gone too: the grace period will tell
                pass
            raise
        finally:
            stop.set()
            if beater is not None:
                beater.join()
                if beaten[0]:  # a trial shorter than a heartbeat writes none
                    self.beats.forget([trial.number])  # type: ignore[union-attr]

    def _frozen(self, number: int) -> Any:
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)

    def _fail(self, frozen: Any, reason: str, *, kind: str) -> None:
        """Fail another (or this) worker's running trial with ``reason``, delete the rows it
        left, and re-queue its parameters unless they were retried ``max_retry`` times."""
        import optuna

        history = list(frozen.system_attrs.get("retry_history", []))
        retry = len(history) < self.max_retry
        message = reason + ("; retried with the same parameters" if retry else
                            f"; not retried (scaling.max_retry = {self.max_retry} reached)")
        trial_id = frozen._trial_id
        try:
            self.storage.set_trial_user_attr(trial_id, "error", message)
            self.storage.set_trial_user_attr(trial_id, "error_kind", kind)
            if not self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # it finished meanwhile: its result stands
        self.db.delete_trial_layers(self.name, frozen.number)
        if self.beats is not None:
            self.beats.forget([frozen.number])
        if retry:
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING, params=frozen.params,
                distributions=frozen.distributions,
                # Optuna's own retry attributes: RetryFailedTrialCallback.retry_history reads them
                system_attrs={"failed_trial": frozen.system_attrs.get("failed_trial",
                                                                      frozen.number),
                              "retry_history": [*history, frozen.number]}))
        print(f"trial {frozen.number} failed: {message}", file=sys.stderr)


def create_or_load(study: Any, storage: Any, sampler: Any) -> Any:
    import optuna

    optuna_study = optuna.create_study(study_name=study.name, storage=storage, sampler=sampler,
                                       directions=study.directions, load_if_exists=True)
    if [d.name.lower() for d in optuna_study.directions] != study.directions:
        raise DseError(f"study {study.name!r} exists with other objectives; give it a new name")
    if optuna_study.metric_names != study.objectives:
        optuna_study.set_metric_names(list(study.objectives))
    return optuna_study
