"""The results database: Optuna's tables plus ours (prefixed ``dse_``) behind one SQLAlchemy
URL, and the query API the ``dse studies / pareto / show / export / plot`` commands use.

Our tables (docs/database.md): ``dse_schema`` (one row: the schema version), ``dse_studies``
(resolved study spec and provenance), ``dse_trial_layers`` (per trial, per layer: cycles,
utilisation, energy terms, allowed-set size and codes) and ``dse_accuracy_cache`` (accuracy of
each compression plan, shared by every trial and worker of a study) and ``dse_trial_beats``
(the last heartbeat of each running trial, on the database's clock: search/workers.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dse_core.errors import DseError
from dse_core.search.report import design_key

__all__ = ["SCHEMA_VERSION", "MEMORY_URL", "ResultsDB", "open_storage", "list_studies",
           "load_study", "trial_rows", "export_columns", "pareto_rows", "trial_detail",
           "parse_where", "safe_url"]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2
_METRICS = ("energy_pj", "mac_energy_pj", "array_energy_pj", "memory_energy_pj", "accuracy",
            "accuracy_drop", "val_accuracy", "val_accuracy_drop", "cycles", "pe_count", "edp",
            "onchip_kb", "area_mm2")
#: metrics a trial does not store (each stored attribute is one more write per trial), derived
#: from its parameters and stored metrics when read
DERIVED_METRICS = ("pe_count", "array_energy_pj", "edp")
#: per-layer columns schema version 2 added (memory terms and traffic); NULL in version-1 rows,
#: whose energies are the PE array's alone
MEMORY_ENERGY_COLUMNS = ("sram_ifmap_pj", "sram_filter_pj", "sram_ofmap_pj", "dram_pj")
TRAFFIC_COLUMNS = ("sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
                   "sram_ofmap_reads", "dram_ifmap_reads", "dram_filter_reads",
                   "dram_ofmap_writes")


def safe_url(url: str) -> str:
    """The URL without its password, and with control characters escaped, for messages."""
    hidden = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], hidden)


def _tables() -> Any:
    from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, Text

    md = MetaData()
    Table("dse_schema", md, Column("id", Integer, primary_key=True, autoincrement=False),
          Column("version", Integer, nullable=False))
    Table("dse_studies", md, Column("study_name", String(512), primary_key=True),
          Column("created_at", String(40), nullable=False),
          Column("spec_json", Text, nullable=False),
          Column("provenance_json", Text, nullable=False))
    Table("dse_trial_layers", md,
          Column("study_name", String(512), primary_key=True),
          Column("trial_number", Integer, primary_key=True, autoincrement=False),
          Column("layer", String(256), primary_key=True),
          Column("position", Integer, nullable=False),
          Column("cycles", BigInteger, nullable=False),
          Column("utilisation", Float, nullable=False),
          Column("mapping_efficiency", Float, nullable=False),
          *(Column(n, Float, nullable=False) for n in (
              "mac_switching_pj", "clock_pj", "idle_pj", "fill_drain_pj", "weight_load_pj",
              "total_pj")),
          Column("n_levels", Integer), Column("allowed", Text),
          *(Column(n, Float) for n in MEMORY_ENERGY_COLUMNS),
          *(Column(n, BigInteger) for n in TRAFFIC_COLUMNS))
    Table("dse_accuracy_cache", md,
          Column("study_name", String(512), primary_key=True),
          Column("plan_key", String(64), primary_key=True),
          Column("plan_json", Text, nullable=False),
          Column("accuracy", Float, nullable=False),
          Column("val_accuracy", Float, nullable=False),
          Column("histograms_json", Text, nullable=False),
          Column("allowed_json", Text, nullable=False),
          Column("seconds", Float, nullable=False))
    Table("dse_trial_beats", md,
          Column("study_name", String(512), primary_key=True),
          Column("trial_number", Integer, primary_key=True, autoincrement=False),
          Column("beat_s", Float, nullable=False))
    return md


@functools.cache
def _metadata() -> Any:
    """Our tables' SQLAlchemy metadata, built on first use (no sqlalchemy import before)."""
    return _tables()


_MEMORY: dict[str, Any] = {}
MEMORY_URL = "memory"


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    if url == MEMORY_URL:  # one process-wide in-memory database (benchmarks, notebooks)
        if "engine" not in _MEMORY:
            _MEMORY["engine"] = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        return _MEMORY["engine"]
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise DseError(f"storage = {safe_url(url)!r}: not a usable SQLAlchemy URL "
                       f"({str(exc).splitlines()[0]})") from exc
    if url.startswith("sqlite"):
        @sa.event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            # WAL lets readers (dse pareto, optuna-dashboard) run beside the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
    return engine


class ResultsDB:
    """Our tables in the study's database. Opening checks the schema version."""

    def __init__(self, url: str, *, create: bool = True, require: bool = True) -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = _engine(url)  # a URL that does not parse is one line here
        path = self.engine.url.database if url.startswith("sqlite") else None
        if not create and path and path != ":memory:" and not Path(path).exists():
            # reading must not leave an empty database file behind a mistyped path
            raise DseError(f"storage {safe_url(url)}: no such database file")
        md = _metadata()
        self.t = md.tables
        tables = foreign_tables_check(self.engine, url)
        has_schema = "dse_schema" in tables
        if has_schema:
            version = self._schema_version(create)
            if version == 1:
                try:
                    version = self._migrate_from_1()
                except sa.exc.DBAPIError:  # another worker migrated it at the same moment
                    version = self._schema_version(create)
            if version != SCHEMA_VERSION:
                raise DseError(f"storage {safe_url(url)}: results written by schema version "
                               f"{version}; this systolic-dse reads version {SCHEMA_VERSION}")
        elif not create and not require:
            return
        elif create:
            for attempt in range(5):  # concurrent workers on a fresh database may race here
                try:
                    md.create_all(self.engine)
                    break
                except (sa.exc.IntegrityError, sa.exc.ProgrammingError,
                        sa.exc.OperationalError):
                    if attempt == 4:
                        raise
                    time.sleep(0.5 * (attempt + 1))
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.t["dse_schema"].insert().values(
                        id=1, version=SCHEMA_VERSION))
            except sa.exc.IntegrityError:
                pass  # another worker created it first
        else:
            raise DseError(f"storage {safe_url(url)}: no systolic-dse results here")

    def _migrate_from_1(self) -> int:
        """Version 1 -> 2: the per-layer table gains the memory columns (NULL in old rows)."""
        import sqlalchemy as sa
        from sqlalchemy import BigInteger, Float

        with self.engine.begin() as conn:
            present = {c["name"] for c in sa.inspect(conn).get_columns("dse_trial_layers")}
            for name, kind in ([(n, Float()) for n in MEMORY_ENERGY_COLUMNS]
                               + [(n, BigInteger()) for n in TRAFFIC_COLUMNS]):
                if name not in present:
                    conn.execute(sa.text(f"ALTER TABLE dse_trial_layers ADD COLUMN {name} "
                                         f"{kind.compile(dialect=conn.dialect)}"))
            conn.execute(self.t["dse_schema"].update().values(version=SCHEMA_VERSION))
        log.info("storage %s: results upgraded from schema version 1 to %d", safe_url(self.url),
                 SCHEMA_VERSION)
        return SCHEMA_VERSION

    def _schema_version(self, create: bool) -> int | None:
        """The stored schema version. A ``dse_schema`` table without its row is one that
        another worker is creating this moment (its tables exist, its row not yet): wait for
        the row, and when we may create, write it ourselves (the first writer wins)."""
        import sqlalchemy as sa

        table = self.t["dse_schema"]
        for attempt in range(6):
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(table.c.version)).first()
            if row is not None:
                return int(row[0])
            if create:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(table.insert().values(id=1, version=SCHEMA_VERSION))
                except sa.exc.IntegrityError:
                    pass  # the other worker's row landed first: read it
                continue
            time.sleep(0.1 * (attempt + 1))
        return None

    # -- studies ---------------------------------------------------------------------------
    def study_spec(self, name: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        t = self.t["dse_studies"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.spec_json).where(t.c.study_name == name)).first()
        return json.loads(row[0]) if row else None

    def provenance(self, name: str) -> dict[str, Any]:
        import sqlalchemy as sa

        t = self.t["dse_studies"]
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.c.provenance_json, t.c.created_at)
                                   .where(t.c.study_name == name)).first()
        except sa.exc.DBAPIError:  # a plain Optuna database: no provenance
            return {}
        return {**json.loads(row[0]), "created_at": row[1]} if row else {}

    def record_study(self, name: str, spec: Mapping[str, Any],
                     provenance: Mapping[str, Any]) -> None:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                conn.execute(self.t["dse_studies"].insert().values(
                    study_name=name, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    spec_json=json.dumps(spec, sort_keys=True),
                    provenance_json=json.dumps(provenance, sort_keys=True)))
        except sa.exc.IntegrityError:
            pass

    def add_run_provenance(self, name: str, provenance: Mapping[str, Any]) -> None:
        """Append a continuing run's provenance (when it differs) under ``later_runs``: the
        first run's stays what the study was made with."""
        import sqlalchemy as sa

        t = self.t["dse_studies"]
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.c.provenance_json)
                               .where(t.c.study_name == name)).first()
            if row is None:
                return
            doc = json.loads(row[0])
            doc.setdefault("later_runs", []).append(
                {**provenance, "at": datetime.now(UTC).isoformat(timespec="seconds")})
            conn.execute(t.update().where(t.c.study_name == name).values(
                provenance_json=json.dumps(doc, sort_keys=True)))

    # -- trials ----------------------------------------------------------------------------
    def write_trial_layers(self, study: str, trial_number: int,
                           rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(self.t["dse_trial_layers"].insert(), [
                {"study_name": study, "trial_number": trial_number, "position": i, **row}
                for i, row in enumerate(rows)])

    def delete_trial_layers(self, study: str, trial_number: int) -> None:
        """The rows of a trial that failed after writing them: they are not a design."""
        t = self.t["dse_trial_layers"]
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.study_name == study,
                                          t.c.trial_number == trial_number))

    def study_layers(self, study: str) -> dict[int, list[dict[str, Any]]]:
        """Every trial's per-layer rows, in one query: trial number -> rows in layer order."""
        import sqlalchemy as sa

        t = self.t["dse_trial_layers"]
        out: dict[int, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(sa.select(t).where(t.c.study_name == study).order_by(
                    t.c.trial_number, t.c.position)).mappings():
                out.setdefault(int(r["trial_number"]), []).append(
                    {k: v for k, v in r.items() if k not in ("study_name", "trial_number")})
        return out

    def trial_layers(self, study: str, trial_number: int) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        t = self.t["dse_trial_layers"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.study_name == study,
                                                   t.c.trial_number == trial_number)
                                .order_by(t.c.position)).mappings().all()
        return [{k: v for k, v in r.items() if k not in ("study_name", "trial_number",
                                                          "position")} for r in rows]

    # -- accuracy cache --------------------------------------------------------------------
    def cached_accuracy(self, study: str, plan_key: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        t = self.t["dse_accuracy_cache"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.study_name == study,
                                                  t.c.plan_key == plan_key)).mappings().first()
        if row is None:
            return None
        return {"accuracy": row["accuracy"], "val_accuracy": row["val_accuracy"],
                "histograms": json.loads(row["histograms_json"]),
                "allowed": json.loads(row["allowed_json"]), "seconds": row["seconds"]}

    def store_accuracy(self, study: str, plan_key: str, plan: Mapping[str, int],
                       entry: Mapping[str, Any]) -> None:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                conn.execute(self.t["dse_accuracy_cache"].insert().values(
                    study_name=study, plan_key=plan_key, plan_json=json.dumps(dict(plan)),
                    accuracy=entry["accuracy"], val_accuracy=entry["val_accuracy"],
                    histograms_json=json.dumps(entry["histograms"]),
                    allowed_json=json.dumps(entry["allowed"]), seconds=entry["seconds"]))
        except sa.exc.IntegrityError:
            pass  # another worker trained the same plan meanwhile: same result, keep theirs


#: tables every Optuna RDB storage has; a database with tables but neither these nor ours
#: belongs to another application
_OPTUNA_TABLES = {"studies", "trials", "version_info", "alembic_version"}


def foreign_tables_check(engine: Any, url: str) -> set[str]:
    """The database's table names; a database that is not one (a text file given as
    SQLite), cannot be reached, or belongs to another application is refused before anything
    is written to it."""
    import sqlite3

    import sqlalchemy as sa

    path = sa.engine.make_url(url).database if url.startswith("sqlite") else None
    try:
        if path and path != ":memory:" and Path(path).is_file():
            # read-only and without our engine's WAL pragma: looking must change no byte
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
        else:
            with engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
    except (sa.exc.DBAPIError, sqlite3.Error, UnicodeError, ValueError) as exc:
        # (a host name that is not one fails in the driver's IDNA encoding)
        reason = (str(getattr(exc, "orig", exc)).strip() or type(exc).__name__).splitlines()[0]
        raise DseError(f"storage {safe_url(url)}: cannot open it as a database "
                       f"({reason})") from exc
    if tables and "dse_schema" not in tables and not _OPTUNA_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise DseError(f"storage {safe_url(url)}: a database of another application (tables "
                       f"{shown}): expected a systolic-dse or Optuna results database, or an "
                       "empty one; nothing was written to it")
    return tables


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``; ``"memory"`` is one process-wide in-memory storage.
    Heartbeats and retries are ours (search/workers.py), not Optuna's."""
    import warnings

    import optuna
    import sqlalchemy as sa

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url == MEMORY_URL:
        if "storage" not in _MEMORY:
            _MEMORY["storage"] = optuna.storages.InMemoryStorage()
        return _MEMORY["storage"]
    foreign_tables_check(_engine(url), url)  # Optuna would add its tables to anything
    engine_kwargs = ({"connect_args": {"timeout": 60}} if url.startswith("sqlite")
                     else {"pool_pre_ping": True})
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            # two workers creating Optuna's schema at once on a fresh PostgreSQL race on
            # CREATE TYPE / CREATE TABLE; the loser retries and finds the schema there
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
        except (sa.exc.OperationalError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError,
                ImportError) as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            if attempt < 4 and ("already exists" in first or "locked" in first):
                time.sleep(0.5 * (attempt + 1))  # SQLite's form of the same race
                continue
            raise DseError(f"storage {safe_url(url)}: cannot open ({first})") from exc
    raise AssertionError("unreachable")


def list_studies(url: str) -> list[dict[str, Any]]:
    import optuna

    db = ResultsDB(url, create=False, require=False)
    storage = open_storage(url)
    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        prov = db.provenance(s.study_name)
        providers = sorted({v for v in prov.get("plugins", {}).values()})
        out.append({"study": s.study_name, "trials": s.n_trials,
                    "directions": ",".join(d.name.lower() for d in s.directions),
                    "created": prov.get("created_at", ""),
                    "workload": prov.get("workload", ""),
                    "seed": prov.get("seed"),
                    "plugins_from": ", ".join(providers),
                    "runs": 1 + len(prov.get("later_runs", [])) if prov else None})
    return out


def load_study(url: str, name: str) -> Any:
    import optuna

    ResultsDB(url, create=False, require=False)  # refuses another schema version
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as exc:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
        raise DseError(f"no study {name!r} in {safe_url(url)}; studies: "
                       + (", ".join(known) or "(none)")) from exc


def _row(trial: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
    row.update({k: v for k, v in trial.params.items()})
    attrs = dict(trial.user_attrs)
    if "rows" in trial.params and "cols" in trial.params:
        attrs.setdefault("pe_count", int(trial.params["rows"]) * int(trial.params["cols"]))
    if "energy_pj" in attrs:
        if "memory_energy_pj" in attrs:
            attrs.setdefault("array_energy_pj", attrs["energy_pj"] - attrs["memory_energy_pj"])
        if "cycles" in attrs:
            attrs.setdefault("edp", attrs["energy_pj"] * attrs["cycles"])
    row.update({k: attrs[k] for k in _METRICS if k in attrs})
    if trial.user_attrs.get("error"):
        row["error"] = trial.user_attrs["error"]
    constraints = trial.constraints
    if constraints:
        values = constraints.values() if isinstance(constraints, dict) else constraints
        row["feasible"] = all(c <= 0 for c in values)
    if "val_within_budget" in trial.user_attrs:
        row["val_within_budget"] = bool(trial.user_attrs["val_within_budget"])
    if "repeat_of" in trial.user_attrs:
        row["repeat_of"] = trial.user_attrs["repeat_of"]
    return row


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial's row, with its compression plan (layer -> allowed-set size) when it has
    one."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = _row(t)
        if "plan" in t.user_attrs:
            row["plan"] = t.user_attrs["plan"]
        rows.append(row)
    return rows


#: what `dse export` puts after the design parameters and objectives, in this order
_EXPORT_TAIL = ("feasible", "val_within_budget", "repeat_of", "plan", "error")


def export_columns(study: Any, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`dse export`'s stable column order (docs/cli.md): trial and state; the design
    parameters (array, mapping, buffers, index storage, then the scheduler's knobs by name);
    the objectives in the study's order; the other metrics; feasibility, repeats, the plan
    and the error; anything else by name."""
    from dse_core.search.report import DESIGN_PARAMS

    present = {k for r in rows for k in r}
    params = {k for t in study.get_trials(deepcopy=False) for k in t.params}
    objectives = list(study.metric_names or [])
    order = (["trial", "state"] + [k for k in DESIGN_PARAMS if k in params]
             + sorted(params - set(DESIGN_PARAMS)) + objectives
             + [m for m in _METRICS if m not in objectives] + list(_EXPORT_TAIL))
    columns = [c for c in dict.fromkeys(order) if c in present]
    return columns + sorted(present - set(columns))


_WHERE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.eE+-]+)\s*$")
_OPS = {"<=": float.__le__, ">=": float.__ge__, "==": float.__eq__, "!=": float.__ne__,
        "<": float.__lt__, ">": float.__gt__}


def parse_where(text: str | None) -> list[tuple[str, str, float]]:
    """``"accuracy_drop<=2, cycles<1e6"`` (also ``and``) -> conditions."""
    if not text:
        return []
    out = []
    for part in re.split(r",|\band\b", text):
        m = _WHERE.match(part)
        if not m:
            raise DseError(f"--where {part.strip()!r}: expected METRIC OP NUMBER, e.g. "
                           f"accuracy_drop<=2 (metrics: {', '.join(_METRICS)})")
        out.append((m.group(1), m.group(2), float(m.group(3))))
    return out


def _matches(row: Mapping[str, Any], where: Iterable[tuple[str, str, float]]) -> bool:
    for key, op, value in where:
        if key not in row or row[key] is None:
            return False
        if not _OPS[op](float(row[key]), value):
            return False
    return True


def pareto_rows(study: Any, where: str | None = None) -> list[dict[str, Any]]:
    """The feasible non-dominated trials (Optuna's ``best_trials``) that satisfy ``where``,
    sorted by the first objective."""
    conditions = parse_where(where)
    seen: set[str] = set()
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        # a design is its array and, when compressing, its plan: knob values that give the
        # same plan are the same design, and a discrete space repeats designs
        key = design_key(t.params, t.user_attrs.get("plan"))
        if key not in seen:
            seen.add(key)
            rows.append(_row(t))
    rows = [r for r in rows if _matches(r, conditions)]
    names = study.metric_names or []
    return sorted(rows, key=lambda r: (r.get(names[0], 0) if names else r["trial"]))


def trial_detail(url: str, name: str, number: int) -> tuple[dict[str, Any],
                                                             list[dict[str, Any]]]:
    study = load_study(url, name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise DseError(f"study {name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if trial.state.name != "COMPLETE":  # a killed trial may have written rows: not its result
        return _row(trial), []
    return _row(trial), ResultsDB(url, create=False).trial_layers(name, number)
