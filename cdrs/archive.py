"""Moving call legs between the live tables and the archive, each leg exactly once.

A batch is one transaction: the legs and their cost records are inserted into the
destination pair of tables and deleted from the source pair, or nothing happens. So a
run may be killed at any instant (kill -9 included) and simply started again; and a
reader's single statement (the API's archive=1 query is one UNION ALL) sees every leg
exactly once, before or after a batch, never half-way.

A batch is picked first (the next legs in (start, uniqueid) order, a plain read), then
moved in one of two ways:

- the fast path (PostgreSQL): two statements, each a DELETE ... RETURNING that feeds a
  plain INSERT in the same statement, so exactly the rows removed are the rows written,
  even with other sessions writing under READ COMMITTED. If the role may, the per-row
  foreign-key triggers are skipped and their work done once per distinct parent row
  (see trigger_bypass_allowed). If anything unusual shows up (a leg already in the
  destination, a picked leg changed or gone), the batch is rolled back and done again
  the careful way.
- the careful path (SQLite always, PostgreSQL on demand): lock the picked legs that
  still qualify, refuse id clashes, copy legs (ON CONFLICT DO NOTHING), copy costs,
  delete costs, delete legs; the per-row triggers run.

A leg keeps its `id`. A leg the destination already holds (same uniqueid) is not
duplicated: the source copy is dropped and its cost records are added to the
destination copy unless that already has one for the same customer or card. Two
different calls with the same `id` in the two tables cannot both keep their id: the run
stops with `IdClash` and changes nothing. Cost records get fresh ids in the destination
(nothing refers to them), so cost ids can never clash.

All SQL is built from the models' _meta, so a column added to LegBase or CostBase is
moved without touching this file.
"""

# Every name spliced into the SQL comes from the models' _meta, quoted by the backend;
# every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connections,
    models,
    transaction,
)

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from enswitch.db import write_transaction

DEFAULT_BATCH_SIZE = {"postgresql": 50_000, "sqlite": 10_000}

# pg_try_advisory_lock key: the first 8 bytes of sha256("enswitch archive_cdrs"), signed.
# Advisory locks are per database, so two stores on one server do not block each other.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"enswitch archive_cdrs").digest()[:8], "big", signed=True)

# How often a batch that failed for a transient reason (deadlock, serialization failure,
# SQLite busy) is tried again before the run gives up.
RETRIES = 5


class ArchiveError(Exception):
    """A run could not go on; nothing of the batch in progress was written."""


class ArchiveLocked(ArchiveError):
    """`since`: Unix time the lock has been held from, when known (its holder says)."""

    def __init__(self, detail: str = "", since: float | None = None) -> None:
        self.detail, self.since = detail, since
        super().__init__(
            "another archive_cdrs is running (archive or restore) on this database"
            + (f" ({detail})" if detail else "")
            + "; try again when it has finished"
        )


class IdClash(ArchiveError):
    """The same id names two different calls in the source and the destination."""


class _Redo(Exception):
    """The fast path saw something unusual: roll the batch back, do it carefully."""


# --- what moves where ---------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    leg: type[models.Model]
    cost: type[models.Model]


LIVE = Tables(Leg, LegCost)
ARCHIVE = Tables(ArchivedLeg, ArchivedLegCost)


@dataclass(frozen=True)
class Move:
    """Legs whose start is in [lo, hi) go from `src` to `dst` (None: unbounded)."""

    src: Tables
    dst: Tables
    lo: int | None
    hi: int | None

    @property
    def verb(self) -> str:
        return "archived" if self.dst is ARCHIVE else "restored"


def archive_move(*, before: int) -> Move:
    return Move(LIVE, ARCHIVE, None, before)


def restore_move(*, start: int, end: int) -> Move:
    return Move(ARCHIVE, LIVE, start, end)


@dataclass(frozen=True)
class BatchResult:
    selected: int  # legs picked for the batch; 0 means there is nothing left to move
    legs: int = 0  # legs that left the source tables
    costs: int = 0  # cost records that left the source tables
    duplicates: int = 0  # legs the destination already had (source copy dropped)
    first_start: int | None = None
    last_start: int | None = None
    last_key: tuple[int, str] | None = None  # (start, uniqueid) of the last leg picked


@dataclass
class RunResult:
    legs: int = 0
    costs: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    first_start: int | None = None
    last_start: int | None = None
    trigger_bypass: bool = False  # per-row triggers skipped, parents locked explicitly
    jobs: int = 1

    @property
    def legs_per_second(self) -> float:
        return self.legs / self.seconds if self.seconds > 0 else 0.0

    def add(self, batch: BatchResult) -> None:
        self.legs += batch.legs
        self.costs += batch.costs
        self.duplicates += batch.duplicates
        self.batches += 1
        if batch.first_start is not None:
            self.first_start = _min(self.first_start, batch.first_start)
            self.last_start = _max(self.last_start, batch.last_start)


@dataclass(frozen=True)
class Plan:
    legs: int
    costs: int
    first_start: int | None
    last_start: int | None
    already_there: int  # legs whose uniqueid the destination already has
    id_clashes: int  # legs whose id the destination uses for another call


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


# --- SQL built from the models -------------------------------------------------------


class _Sql:
    """Quoted names for one Move on one connection."""

    def __init__(self, move: Move, connection: Any, alias: str) -> None:
        _check_twins(move.src.leg, move.dst.leg)
        _check_twins(move.src.cost, move.dst.cost)
        _check_only_costs_refer(move.src.leg, move.src.cost)
        q = connection.ops.quote_name
        self.alias = alias
        self.vendor = connection.vendor
        self.move = move
        self.src, self.dst = q(move.src.leg._meta.db_table), q(move.dst.leg._meta.db_table)
        self.src_cost = q(move.src.cost._meta.db_table)
        self.dst_cost = q(move.dst.cost._meta.db_table)
        leg_meta = move.src.leg._meta
        self.id = q(leg_meta.pk.column)
        self.start = q(leg_meta.get_field("start").column)
        self.uniqueid = q(leg_meta.get_field("uniqueid").column)
        self.leg_cols = [q(c) for c in _columns(move.src.leg)]
        cost_meta = move.src.cost._meta
        self.cost_leg = q(cost_meta.get_field("leg").column)
        # Everything but the cost's own id (fresh in the destination) and its leg link.
        self.cost_cols = [
            q(f.column) for f in cost_meta.concrete_fields if not f.primary_key and f.name != "leg"
        ]

    def where(self, alias: str = "") -> tuple[str, list[int]]:
        col = f"{alias}.{self.start}" if alias else self.start
        parts, params = [], []
        if self.move.lo is not None:
            parts.append(f"{col} >= %s")
            params.append(self.move.lo)
        if self.move.hi is not None:
            parts.append(f"{col} < %s")
            params.append(self.move.hi)
        return (" AND ".join(parts) or "1 = 1"), params

    def in_ids(self, column: str) -> str:
        # One parameter for the whole batch: no limit on the number of bound variables.
        if self.vendor == "postgresql":
            return f"{column} = ANY(%s::bigint[])"
        return f"{column} IN (SELECT value FROM json_each(%s))"

    def ids_param(self, ids: list[int]) -> str:
        # As array text, not a list: the driver adapts a list element by element in
        # Python (about 25 ms for 50,000 ids, three times a batch, holding the GIL that
        # the --jobs threads share); joining ints is a hundred times cheaper.
        if self.vendor == "postgresql":
            return "{" + ",".join(map(str, ids)) + "}"
        return json.dumps(ids)


def _columns(model: type[models.Model]) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def _check_twins(a: type[models.Model], b: type[models.Model]) -> None:
    if sorted(_columns(a)) != sorted(_columns(b)):
        raise ImproperlyConfigured(
            f"{a.__name__} and {b.__name__} must have the same columns to move rows between "
            f"them: {sorted(set(_columns(a)) ^ set(_columns(b)))} differ"
        )


def _check_only_costs_refer(leg: type[models.Model], cost: type[models.Model]) -> None:
    # Rows of another table pointing at a leg would be left behind, pointing at nothing.
    others = [
        rel.related_model.__name__
        for rel in leg._meta.get_fields(include_hidden=True)
        if rel.auto_created and not rel.concrete and rel.related_model is not cost
    ]
    if others:
        raise ImproperlyConfigured(
            f"{', '.join(others)} refer to {leg.__name__}: archiving does not know how to "
            "move them with the legs"
        )


# --- the steps of a batch (each one statement, or two) --------------------------------


def _select_batch(
    cur: Any, sql: _Sql, limit: int, *, after: tuple[int, str] | None
) -> list[tuple[int, int, str]]:
    """The next `limit` legs in (start, uniqueid) order, after the key `after` if given.

    (start, uniqueid) is an index on both tables, so the pick is one index range scan,
    and starting after the previous batch's last key never rescans the index entries of
    the legs already moved (dead until VACUUM).
    """
    where, params = sql.where()
    if after is not None:
        where += f" AND ({sql.start}, {sql.uniqueid}) > (%s, %s)"
        params = [*params, *after]
    cur.execute(
        f"SELECT {sql.id}, {sql.start}, {sql.uniqueid} FROM {sql.src} WHERE {where} "
        f"ORDER BY {sql.start}, {sql.uniqueid} LIMIT %s",
        [*params, limit],
    )
    return cur.fetchall()


def _lock_picked(cur: Any, sql: _Sql, ids: list[int]) -> list[tuple[int, int, str]]:
    """The picked legs that still qualify, locked on PostgreSQL (SQLite: our snapshot)."""
    where, params = sql.where()
    lock_clause = " FOR UPDATE" if sql.vendor == "postgresql" else ""
    cur.execute(
        f"SELECT {sql.id}, {sql.start}, {sql.uniqueid} FROM {sql.src} "
        f"WHERE {sql.in_ids(sql.id)} AND {where} "
        f"ORDER BY {sql.start}, {sql.uniqueid}{lock_clause}",
        [sql.ids_param(ids), *params],
    )
    return cur.fetchall()


def _parent_locks(sql: _Sql, model: type[models.Model]) -> tuple[list[str], list[str]]:
    """CTEs that lock, FOR KEY SHARE, each parent row the `moved` rows refer to, and
    conditions that hold if every one was found.

    This is the work of PostgreSQL's per-row foreign-key triggers (when they are
    bypassed), done once per distinct parent instead of once per row.
    """
    q = connections[sql.alias].ops.quote_name
    targets: dict[tuple[str, str], list[str]] = {}
    for f in model._meta.concrete_fields:
        if f.is_relation and f.name != "leg":
            target = (f.target_field.model._meta.db_table, f.target_field.column)
            targets.setdefault(target, []).append(q(f.column))
    ctes, checks = [], []
    for n, ((table, column), fks) in enumerate(sorted(targets.items())):
        # One pass over the moved rows per parent table, its distinct values kept for
        # both the lock and the count: the moved rows are the batch (50,000 legs, or
        # twice as many cost records), the parents a few hundred at most.
        if len(fks) == 1:
            values = f"SELECT DISTINCT {fks[0]} AS v FROM moved WHERE {fks[0]} IS NOT NULL"
        else:
            refs = ", ".join(f"({c})" for c in fks)
            values = (
                f"SELECT DISTINCT r.v FROM moved CROSS JOIN LATERAL (VALUES {refs}) r(v) "
                "WHERE r.v IS NOT NULL"
            )
        ctes.append(f"parents{n} AS MATERIALIZED ({values})")
        ctes.append(
            f"lock{n} AS (SELECT 1 FROM {q(table)} p WHERE p.{q(column)} IN "
            f"(SELECT v FROM parents{n}) FOR KEY SHARE OF p)"
        )
        checks.append(f"(SELECT count(*) FROM lock{n}) = (SELECT count(*) FROM parents{n})")
    return ctes, checks


def _move_rows(
    cur: Any, sql: _Sql, *, model: type[models.Model], statement: str, params: list, bypass: bool
) -> int:
    """Run a `moved AS (DELETE ... RETURNING), copied AS (INSERT ...)` statement; with
    `bypass`, lock the parents too. The number of rows moved, or _Redo."""
    ctes, checks = _parent_locks(sql, model) if bypass else ([], [])
    cur.execute(
        f"WITH {', '.join([statement, *ctes])} "
        f"SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM copied), "
        f"{' AND '.join(checks) or 'true'}",
        params,
    )
    deleted, inserted, parents_found = cur.fetchone()
    if inserted != deleted or not parents_found:
        raise _Redo
    return deleted


def _move_legs(cur: Any, sql: _Sql, ids: list[int], *, bypass: bool) -> int:
    """PostgreSQL: delete the legs and insert exactly the rows deleted."""
    where, params = sql.where()
    cols = ", ".join(sql.leg_cols)
    moved = _move_rows(
        cur,
        sql,
        model=sql.move.src.leg,
        statement=(
            f"moved AS (DELETE FROM {sql.src} WHERE {sql.in_ids(sql.id)} AND {where} "
            f"RETURNING {cols}), "
            f"copied AS (INSERT INTO {sql.dst} ({cols}) SELECT {cols} FROM moved RETURNING 1)"
        ),
        params=[sql.ids_param(ids), *params],
        bypass=bypass,
    )
    if moved != len(ids):
        raise _Redo  # a picked leg changed or went meanwhile
    return moved


def _move_costs(cur: Any, sql: _Sql, ids: list[int], *, bypass: bool) -> int:
    """PostgreSQL: delete the legs' cost records and insert exactly the rows deleted."""
    cols = ", ".join([sql.cost_leg, *sql.cost_cols])
    moved = _move_rows(
        cur,
        sql,
        model=sql.move.src.cost,
        statement=(
            f"moved AS (DELETE FROM {sql.src_cost} WHERE {sql.in_ids(sql.cost_leg)} "
            f"RETURNING {cols}), "
            f"copied AS (INSERT INTO {sql.dst_cost} ({cols}) SELECT {cols} FROM moved "
            f"RETURNING 1)"
        ),
        params=[sql.ids_param(ids)],
        bypass=bypass,
    )
    if bypass:
        # Without the triggers, nothing else would notice a cost record committed for one
        # of these legs after the DELETE above took its snapshot.
        cur.execute(
            f"SELECT EXISTS (SELECT 1 FROM {sql.src_cost} WHERE {sql.in_ids(sql.cost_leg)})",
            [sql.ids_param(ids)],
        )
        if cur.fetchone()[0]:
            raise _Redo
    return moved


def _lock_costs(cur: Any, sql: _Sql, ids: list[int]) -> None:
    # PostgreSQL's careful path runs several statements under READ COMMITTED: locking the
    # cost records keeps them from changing between the copy and the delete.
    if sql.vendor == "postgresql":
        cur.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {sql.src_cost} "
            f"WHERE {sql.in_ids(sql.cost_leg)} FOR UPDATE) locked",
            [sql.ids_param(ids)],
        )


def _check_id_clashes(cur: Any, sql: _Sql, ids: list[int]) -> None:
    cur.execute(
        f"SELECT s.{sql.id}, s.{sql.uniqueid}, d.{sql.uniqueid} FROM {sql.src} s "
        f"JOIN {sql.dst} d ON d.{sql.id} = s.{sql.id} "
        f"WHERE {sql.in_ids('s.' + sql.id)} AND d.{sql.uniqueid} <> s.{sql.uniqueid} LIMIT 5",
        [sql.ids_param(ids)],
    )
    clashes = cur.fetchall()
    if clashes:
        where = "archive" if sql.move.dst is ARCHIVE else "live tables"
        listed = "; ".join(f"id {i}: {a!r} here, {b!r} in the {where}" for i, a, b in clashes)
        raise IdClash(
            f"leg ids already used by other calls in the {where} ({listed}). A leg keeps its "
            "id when it moves, so these cannot be moved; nothing of this batch was changed. "
            "Give one of each pair a new id by hand, then run again."
        )


def _copy_legs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cols = ", ".join(sql.leg_cols)
    cur.execute(
        f"INSERT INTO {sql.dst} ({cols}) SELECT {cols} FROM {sql.src} "
        f"WHERE {sql.in_ids(sql.id)} ON CONFLICT DO NOTHING",
        [sql.ids_param(ids)],
    )
    return cur.rowcount


def _copy_costs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    # Joined on uniqueid, so the costs of a leg the destination already had (under the
    # same id, or another one) land on that copy; a customer's or card's record the copy
    # already has wins (ON CONFLICT DO NOTHING).
    cols = ", ".join(sql.cost_cols)
    src_cols = ", ".join(f"c.{c}" for c in sql.cost_cols)
    cur.execute(
        f"INSERT INTO {sql.dst_cost} ({sql.cost_leg}, {cols}) "
        f"SELECT d.{sql.id}, {src_cols} FROM {sql.src_cost} c "
        f"JOIN {sql.src} s ON s.{sql.id} = c.{sql.cost_leg} "
        f"JOIN {sql.dst} d ON d.{sql.uniqueid} = s.{sql.uniqueid} "
        f"WHERE {sql.in_ids('c.' + sql.cost_leg)} ON CONFLICT DO NOTHING",
        [sql.ids_param(ids)],
    )
    return cur.rowcount


def _delete_costs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cur.execute(
        f"DELETE FROM {sql.src_cost} WHERE {sql.in_ids(sql.cost_leg)}", [sql.ids_param(ids)]
    )
    return cur.rowcount


def _delete_legs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cur.execute(f"DELETE FROM {sql.src} WHERE {sql.in_ids(sql.id)}", [sql.ids_param(ids)])
    return cur.rowcount


# --- one batch ---------------------------------------------------------------------


def _fast_path_available(connection: Any) -> bool:
    return connection.vendor == "postgresql"


def trigger_bypass_allowed(move: Move, *, using: str = "default") -> bool:
    """Whether batches may skip PostgreSQL's per-row triggers (session_replication_role).

    Skipping them more than doubles the speed: the foreign-key checks they make, one
    query per row, are most of a batch's work. Only when the role may set the parameter
    (superuser, or PostgreSQL 15's GRANT SET ON PARAMETER session_replication_role), when
    the four tables have no triggers of their own that replica mode would skip (those
    enabled ALWAYS, like the one keeping `CalledNumber`, still fire) and when nothing
    but the cost records refers to a leg.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    tables = [m._meta.db_table for m in (move.src.leg, move.src.cost, move.dst.leg, move.dst.cost)]
    q = connection.ops.quote_name
    with connection.cursor() as cur:
        if connection.pg_version >= 150000:
            cur.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
        else:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            return False
        cur.execute(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'O' "
            "AND tgrelid = ANY(%s::regclass[])",
            [[q(t) for t in tables]],
        )
        return cur.fetchone()[0] == 0


def _fast_batch(
    cur: Any, sql: _Sql, picked: list[tuple[int, int, str]], bypass: bool
) -> BatchResult:
    ids = [row[0] for row in picked]
    if bypass:
        cur.execute("SET LOCAL session_replication_role = replica")
    legs = _move_legs(cur, sql, ids, bypass=bypass)
    costs = _move_costs(cur, sql, ids, bypass=bypass)
    if bypass:
        # Back to normal for anything else this transaction does (an enclosing one, in
        # tests); the rows moved above are covered by the parent locks.
        cur.execute("SET LOCAL session_replication_role = DEFAULT")
    return _result(picked, picked, legs, costs, legs)


def _careful_batch(cur: Any, sql: _Sql, picked: list[tuple[int, int, str]]) -> BatchResult:
    rows = _lock_picked(cur, sql, [row[0] for row in picked])
    if not rows:
        return _result(picked, rows, 0, 0, 0)
    ids = [row[0] for row in rows]
    _lock_costs(cur, sql, ids)
    _check_id_clashes(cur, sql, ids)
    inserted = _copy_legs(cur, sql, ids)
    _copy_costs(cur, sql, ids)
    costs = _delete_costs(cur, sql, ids)
    deleted = _delete_legs(cur, sql, ids)
    if deleted != len(ids):
        # The rows are locked (PostgreSQL) or in our snapshot (SQLite, one writer): they
        # cannot have gone. Refuse to commit rather than guess.
        raise ArchiveError(f"expected to delete {len(ids)} legs, deleted {deleted}")
    return _result(picked, rows, deleted, costs, inserted)


def _result(
    picked: list[tuple[int, int, str]],
    moved: list[tuple[int, int, str]],
    legs: int,
    costs: int,
    inserted: int,
) -> BatchResult:
    starts = [row[1] for row in moved]
    return BatchResult(
        selected=len(picked),
        legs=legs,
        costs=costs,
        duplicates=legs - inserted,
        first_start=min(starts, default=None),
        last_start=max(starts, default=None),
        last_key=(picked[-1][1], picked[-1][2]),
    )


def _transient(exc: BaseException) -> bool:
    # SQLite's "database is locked" is not retried: the batch's transaction starts
    # IMMEDIATE, so it has already waited the whole busy timeout for the other writer.
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in {"40001", "40P01", "55P03"}


def pick(
    move: Move, *, batch_size: int, after: tuple[int, str] | None = None, using: str = "default"
) -> list[tuple[int, int, str]]:
    """(id, start, uniqueid) of the next `batch_size` legs to move, oldest first."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    connection = connections[using]
    with connection.cursor() as cur:
        return _select_batch(cur, _Sql(move, connection, using), batch_size, after=after)


def move_picked(
    move: Move,
    picked: list[tuple[int, int, str]],
    *,
    using: str = "default",
    bypass_triggers: bool | None = None,
) -> BatchResult:
    """Move the picked legs that still qualify, with their cost records, in one
    transaction. Legs changed or gone since the pick are taken as they are now.

    bypass_triggers: None decides with trigger_bypass_allowed(); False never bypasses.
    """
    if not picked:
        return BatchResult(selected=0)
    connection = connections[using]
    sql = _Sql(move, connection, using)
    careful = not _fast_path_available(connection)
    if bypass_triggers is None:
        bypass_triggers = not careful and trigger_bypass_allowed(move, using=using)
    for attempt in range(RETRIES + 1):
        try:
            with write_transaction(using), connection.cursor() as cur:
                if connection.vendor == "postgresql":
                    # JIT compilation costs more than it saves on these statements. An
                    # asynchronous commit risks only durability, never atomicity: after a
                    # server crash a batch is either wholly there or wholly to be redone.
                    # The moved rows stay in memory rather than spilling to temp files.
                    cur.execute("SET LOCAL jit = off")
                    cur.execute("SET LOCAL synchronous_commit = off")
                    cur.execute("SET LOCAL work_mem = '64MB'")
                    # Every statement of a batch reaches its rows through an id list.
                    # Given a long literal list, the planner prices the index probes
                    # above a full scan of the cost table and reads all of it, once per
                    # batch (2M legs: half of a batch's time, measured in bench/).
                    cur.execute("SET LOCAL enable_seqscan = off")
                if careful:
                    return _careful_batch(cur, sql, picked)
                return _fast_batch(cur, sql, picked, bypass_triggers)
        except (_Redo, IntegrityError):
            # Something unusual (a leg already in the destination, a picked leg changed
            # meanwhile): the fast attempt is rolled back; the careful path sorts it out,
            # or raises the real error.
            if careful:
                raise
            careful = True
        except OperationalError as exc:
            if attempt == RETRIES or not _transient(exc):
                raise
            time.sleep(0.05 * 2**attempt)
    raise ArchiveError("the batch could not be moved")  # pragma: no cover - loop returns


def move_batch(
    move: Move,
    *,
    batch_size: int,
    using: str = "default",
    after: tuple[int, str] | None = None,
    bypass_triggers: bool | None = None,
) -> BatchResult:
    """Pick the oldest `batch_size` legs of `move` (after the (start, uniqueid) key
    `after`, if given) and move them with their cost records, in one transaction."""
    picked = pick(move, batch_size=batch_size, after=after, using=using)
    return move_picked(move, picked, using=using, bypass_triggers=bypass_triggers)


def archive_batch(*, before: int, batch_size: int, using: str = "default") -> BatchResult:
    """Archive the oldest `batch_size` live legs that started before `before`."""
    return move_batch(archive_move(before=before), batch_size=batch_size, using=using)


def restore_batch(*, start: int, end: int, batch_size: int, using: str = "default") -> BatchResult:
    """Bring back up to `batch_size` archived legs with start in [start, end)."""
    return move_batch(restore_move(start=start, end=end), batch_size=batch_size, using=using)


# --- whole runs ------------------------------------------------------------------------


def run(
    move: Move,
    *,
    batch_size: int,
    using: str = "default",
    progress: Callable[[RunResult], None] | None = None,
    bypass_triggers: bool | None = None,
    jobs: int = 1,
) -> RunResult:
    """Move batches until none is left; the result so far goes to `progress` after each.

    Each pick starts after the previous one's last (start, uniqueid), so picks never
    overlap; once a pick finds nothing, one more pass starts from the oldest leg (after
    the batches in flight are done), for any leg written meanwhile behind the cursor. The
    run ends when a pass from the oldest leg finds nothing.

    jobs > 1 (PostgreSQL): that many threads, each with its own connection, move the
    batches this thread picks. Each batch is still one transaction of its own.
    """
    if bypass_triggers is None:
        bypass_triggers = trigger_bypass_allowed(move, using=using)
    if connections[using].vendor != "postgresql":
        jobs = 1  # one writer at a time on SQLite anyway
    if jobs > 1 and connections[using].in_atomic_block:
        raise ValueError("jobs > 1 moves batches on other connections: not inside a transaction")
    result = RunResult(trigger_bypass=bypass_triggers, jobs=jobs)
    began = time.monotonic()
    with _Movers(move, using=using, bypass_triggers=bypass_triggers, jobs=jobs) as movers:
        after: tuple[int, str] | None = None
        while True:
            picked = pick(move, batch_size=batch_size, after=after, using=using)
            if picked:
                after = (picked[-1][1], picked[-1][2])
                movers.submit(picked)
            # Keep every mover busy, plus one batch ready; wait for all before a new pass.
            while movers.in_flight > (jobs if picked else 0):
                result.add(movers.collect())
                result.seconds = time.monotonic() - began
                if progress is not None:
                    progress(result)
            if not picked:
                if after is None:
                    break
                after = None
    result.seconds = time.monotonic() - began
    sync_id_sequence(move, using=using)
    return result


class _Movers:
    """Runs move_picked() on batches: inline, or on `jobs` threads."""

    def __init__(self, move: Move, *, using: str, bypass_triggers: bool, jobs: int) -> None:
        self.move, self.using, self.bypass, self.jobs = move, using, bypass_triggers, jobs
        self.in_flight = 0
        self._done: queue.Queue[BatchResult | BaseException] = queue.Queue()
        self._todo: queue.Queue[list[tuple[int, int, str]] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"archive-mover-{n}", daemon=True)
            for n in range(jobs if jobs > 1 else 0)
        ]
        self._raw: list[Any] = []  # the threads' driver connections, to cancel them

    def __enter__(self) -> _Movers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # failing or interrupted: hand out nothing more
            with contextlib.suppress(queue.Empty):
                while True:
                    self._todo.get_nowait()
            # A batch waiting on a lock would hold the exit up: cancel what runs (its
            # transaction rolls back as a whole).
            for raw in list(self._raw):
                with contextlib.suppress(Exception):
                    raw.cancel_safe(timeout=5)
        # Batches a thread has started finish (each commits or rolls back as a whole).
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join()

    def submit(self, picked: list[tuple[int, int, str]]) -> None:
        self.in_flight += 1
        if self._threads:
            self._todo.put(picked)
        else:
            self._done.put(self._move(picked))

    def collect(self) -> BatchResult:
        """The next finished batch; a failed one raises its error."""
        outcome = self._done.get()
        self.in_flight -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _move(self, picked: list[tuple[int, int, str]]) -> BatchResult | BaseException:
        try:
            return move_picked(self.move, picked, using=self.using, bypass_triggers=self.bypass)
        except Exception as exc:  # noqa: BLE001 - handed to the coordinating thread
            if not self._threads:
                raise
            return exc

    def _work(self) -> None:
        try:
            connection = connections[self.using]
            with contextlib.suppress(Exception):  # the first batch meets it, and says so
                connection.ensure_connection()
                self._raw.append(connection.connection)
            while (picked := self._todo.get()) is not None:
                self._done.put(self._move(picked))
        finally:
            connections[self.using].close()  # this thread's own connection


def archive(
    *,
    before: int,
    batch_size: int,
    using: str = "default",
    progress: Callable[[RunResult], None] | None = None,
    bypass_triggers: bool | None = None,
    jobs: int = 1,
) -> RunResult:
    return run(
        archive_move(before=before),
        batch_size=batch_size,
        using=using,
        progress=progress,
        bypass_triggers=bypass_triggers,
        jobs=jobs,
    )


def restore(
    *,
    start: int,
    end: int,
    batch_size: int,
    using: str = "default",
    progress: Callable[[RunResult], None] | None = None,
    bypass_triggers: bool | None = None,
    jobs: int = 1,
) -> RunResult:
    return run(
        restore_move(start=start, end=end),
        batch_size=batch_size,
        using=using,
        progress=progress,
        bypass_triggers=bypass_triggers,
        jobs=jobs,
    )


def sync_id_sequence(move: Move, *, using: str = "default") -> None:
    """Keep the destination's id sequence above the ids that moved in.

    Rows written straight into the destination later (an import into the archive, say)
    must not be given an id a moved leg already has. SQLite's AUTOINCREMENT does this by
    itself; PostgreSQL's identity sequence does not.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    table = move.dst.leg._meta.db_table
    column = move.dst.leg._meta.pk.column
    with connection.cursor() as cur:
        q = connection.ops.quote_name
        cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [q(table), column])
        (seq,) = cur.fetchone()
        if seq is None:
            return
        cur.execute(
            f"SELECT setval(%s::regclass, m) FROM "
            f"(SELECT max({q(column)}) AS m FROM {q(table)}) x "
            f"WHERE m > (SELECT last_value FROM {seq})",
            [seq],
        )


def count_legs(move: Move, *, using: str = "default") -> int:
    connection = connections[using]
    sql = _Sql(move, connection, using)
    where, params = sql.where()
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {sql.src} WHERE {where}", params)
        return cur.fetchone()[0]


def plan(*, before: int, using: str = "default") -> Plan:
    """What archiving legs that started before `before` would move (writes nothing)."""
    return plan_move(archive_move(before=before), using=using)


def plan_restore(*, start: int, end: int, using: str = "default") -> Plan:
    return plan_move(restore_move(start=start, end=end), using=using)


def plan_move(move: Move, *, using: str = "default") -> Plan:
    connection = connections[using]
    sql = _Sql(move, connection, using)
    where, params = sql.where("s")
    # One snapshot, so the figures describe one state of the store (READ COMMITTED would
    # take one per statement). Inside a caller's transaction, its snapshot rules.
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(using=using), connection.cursor() as cur:
        if own_transaction and connection.vendor == "postgresql":
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute(
            f"SELECT count(*), min(s.{sql.start}), max(s.{sql.start}) FROM {sql.src} s "
            f"WHERE {where}",
            params,
        )
        legs, first, last = cur.fetchone()
        cur.execute(
            f"SELECT count(*) FROM {sql.src_cost} c JOIN {sql.src} s "
            f"ON s.{sql.id} = c.{sql.cost_leg} WHERE {where}",
            params,
        )
        (costs,) = cur.fetchone()
        cur.execute(
            f"SELECT count(*) FROM {sql.src} s JOIN {sql.dst} d "
            f"ON d.{sql.uniqueid} = s.{sql.uniqueid} WHERE {where}",
            params,
        )
        (already,) = cur.fetchone()
        cur.execute(
            f"SELECT count(*) FROM {sql.src} s JOIN {sql.dst} d ON d.{sql.id} = s.{sql.id} "
            f"WHERE {where} AND d.{sql.uniqueid} <> s.{sql.uniqueid}",
            params,
        )
        (clashes,) = cur.fetchone()
    return Plan(legs, costs, first, last, already, clashes)


def vacuum(move: Move, *, using: str = "default") -> None:
    """Reclaim the source tables' dead rows and refresh both sides' planner statistics."""
    connection = connections[using]
    q = connection.ops.quote_name
    src = [q(move.src.leg._meta.db_table), q(move.src.cost._meta.db_table)]
    dst = [q(move.dst.leg._meta.db_table), q(move.dst.cost._meta.db_table)]
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # VACUUM cannot run in a transaction block: Django's default autocommit is fine.
            cur.execute(f"VACUUM (ANALYZE) {', '.join(src)}")
            cur.execute(f"ANALYZE {', '.join(dst)}")
        else:
            for table in src + dst:
                cur.execute(f"ANALYZE {table}")


# --- one run at a time ---------------------------------------------------------------


@contextlib.contextmanager
def exclusive_lock(*, using: str = "default", wait: float = 0) -> Iterator[None]:
    """Held for a whole archive or restore run; raises ArchiveLocked if another holds it.

    PostgreSQL: a session advisory lock on a connection of its own, so nothing Django
    does with its connections (closing, reconnecting) can drop it, and the server frees
    it when the process dies however it dies. SQLite: flock() on a file next to the
    database, which the kernel frees with the process.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with _advisory_lock(using, wait):
            yield
    elif connection.vendor == "sqlite":
        with _file_lock(_lock_path(connection), wait):
            yield
    else:
        raise ArchiveError(f"archiving is not supported on {connection.vendor}")


@contextlib.contextmanager
def _advisory_lock(using: str, wait: float) -> Iterator[None]:
    holder = connections.create_connection(using)
    try:
        with holder.cursor() as cur:
            deadline = time.monotonic() + wait
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise _advisory_holder(cur)
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        yield
    finally:
        with contextlib.suppress(DatabaseError):
            holder.close()  # ending the session frees the lock


def _advisory_holder(cur: Any) -> ArchiveLocked:
    """Who holds the advisory lock, and since when (its session's start: the lock is
    taken on a connection opened for it)."""
    unsigned = LOCK_KEY & (2**64 - 1)
    cur.execute(
        "SELECT a.pid, extract(epoch FROM a.backend_start)::float8, a.usename, "
        "a.client_addr::text, a.application_name FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [unsigned >> 32, unsigned & 0xFFFFFFFF],
    )
    row = cur.fetchone()
    if row is None:
        return ArchiveLocked(f"PostgreSQL advisory lock {LOCK_KEY} is held")
    pid, since, user, addr, app = row
    who = f"server process {pid}, role {user}" + (f", from {addr}" if addr else "")
    who += f", {app}" if app else ""
    return ArchiveLocked(f"PostgreSQL advisory lock {LOCK_KEY} is held by {who}", since)


def _lock_path(connection: Any) -> Path:
    name = str(connection.settings_dict["NAME"])
    if connection.is_in_memory_db():
        # No file to sit next to (the test database): one lock per database name.
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"enswitch-archive-{digest}.lock"
    return Path(f"{name}.archive_cdrs.lock")


@contextlib.contextmanager
def _file_lock(path: Path, wait: float) -> Iterator[None]:
    # Owner only: anyone who can open the file can flock() it and stop every run.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):  # made by an older version, with 0644
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise _file_holder(fd, path) from None
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        # The holder writes its pid and the time it took the lock, for the runs it stops.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.time():.0f}\n".encode(), 0)
        # The file is left in place: removing it would let a third run lock a new file
        # while a second still waits on the old one.
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _file_holder(fd: int, path: Path) -> ArchiveLocked:
    """The lock file holds its holder's pid and start time. A holder that is not an
    archive_cdrs run writes nothing: the time is then the last run's, older still."""
    try:
        pid, since = os.pread(fd, 64, 0).decode("ascii").split()
        return ArchiveLocked(f"lock file {path} is held, by process {int(pid)}", float(since))
    except (OSError, ValueError, UnicodeDecodeError):
        return ArchiveLocked(f"lock file {path} is held")
