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

This module moves one batch and runs whole moves; `moves` says what moves where,
`statements` holds the SQL of each step, `locking` keeps runs one at a time.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import (
    IntegrityError,
    OperationalError,
    connections,
    transaction,
)

from cdrs.archive.locking import LOCK_KEY, _file_lock, _lock_path, exclusive_lock
from cdrs.archive.moves import (
    ARCHIVE,
    LIVE,
    ArchiveError,
    ArchiveLocked,
    BatchResult,
    FastPathDeclined,
    IdClash,
    Move,
    Plan,
    RunResult,
    Tables,
    archive_move,
    restore_move,
)
from cdrs.archive.statements import (
    _check_id_clashes,
    _copy_costs,
    _copy_legs,
    _delete_costs,
    _delete_legs,
    _lock_costs,
    _lock_picked,
    _move_costs,
    _move_legs,
    _select_batch,
    _Sql,
)
from enswitch import citus
from enswitch.db import write_transaction

DEFAULT_BATCH_SIZE = {"postgresql": 50_000, "sqlite": 10_000}

# How often a batch that failed for a transient reason (deadlock, serialization failure,
# SQLite busy) is tried again before the run gives up.
RETRIES = 5


# --- one batch ---------------------------------------------------------------------


def _fast_path_available(connection: Any) -> bool:
    # Citus plans a DELETE ... RETURNING feeding an INSERT through the coordinator; the
    # careful path's statements each stay on the shards (a leg and its costs share one).
    return connection.vendor == "postgresql" and not citus.is_distributed(connection.alias)


def trigger_bypass_allowed(move: Move, *, using: str = "default") -> bool:
    """Whether batches may skip PostgreSQL's per-row triggers (session_replication_role).

    The foreign-key checks they make, one query per row, are most of a batch's work.
    Only when the role may set the parameter
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
                    # Every statement of a batch reaches its rows through an id list;
                    # given a long literal list, the planner would rather scan the whole
                    # cost table once per batch than probe its index.
                    cur.execute("SET LOCAL enable_seqscan = off")
                if careful:
                    return _careful_batch(cur, sql, picked)
                return _fast_batch(cur, sql, picked, bypass_triggers)
        except (FastPathDeclined, IntegrityError):
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
    sql = _Sql(move, connection, using)
    with connection.cursor() as cur:
        q = connection.ops.quote_name
        cur.execute("SELECT pg_get_serial_sequence(%s, %s)", [q(table), column])
        (seq,) = cur.fetchone()
        if seq is None:
            return
        # The sequence's name comes from pg_get_serial_sequence, quoted as it must be.
        cur.execute(
            sql.statement(
                "SELECT setval(%s::regclass, m) FROM (SELECT max({id}) AS m FROM {dst}) x "
                "WHERE m > (SELECT last_value FROM {sequence})",
                sequence=seq,
            ),
            [seq],
        )


def count_legs(move: Move, *, using: str = "default") -> int:
    connection = connections[using]
    sql = _Sql(move, connection, using)
    where, params = sql.where()
    with connection.cursor() as cur:
        cur.execute(sql.statement("SELECT count(*) FROM {src} WHERE {where}", where=where), params)
        return cur.fetchone()[0]


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
            sql.statement(
                "SELECT count(*), min(s.{start}), max(s.{start}) FROM {src} s WHERE {where}",
                where=where,
            ),
            params,
        )
        legs, first, last = cur.fetchone()
        cur.execute(
            sql.statement(
                "SELECT count(*) FROM {src_cost} c JOIN {src} s ON s.{id} = c.{cost_leg} "
                "WHERE {where}",
                where=where,
            ),
            params,
        )
        (costs,) = cur.fetchone()
        cur.execute(
            sql.statement(
                "SELECT count(*) FROM {src} s JOIN {dst} d ON d.{uniqueid} = s.{uniqueid} "
                "WHERE {where}",
                where=where,
            ),
            params,
        )
        (already,) = cur.fetchone()
        cur.execute(
            sql.statement(
                "SELECT count(*) FROM {src} s JOIN {dst} d ON d.{id} = s.{id} "
                "WHERE {where} AND d.{uniqueid} <> s.{uniqueid}",
                where=where,
            ),
            params,
        )
        (clashes,) = cur.fetchone()
    return Plan(legs, costs, first, last, already, clashes)


def vacuum(move: Move, *, using: str = "default") -> None:
    """Reclaim the source tables' dead rows and refresh both sides' planner statistics."""
    connection = connections[using]
    sql = _Sql(move, connection, using)
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # VACUUM cannot run in a transaction block: Django's default autocommit is fine.
            cur.execute(sql.statement("VACUUM (ANALYZE) {src}, {src_cost}"))
            cur.execute(sql.statement("ANALYZE {dst}, {dst_cost}"))
        else:
            for template in (
                "ANALYZE {src}",
                "ANALYZE {src_cost}",
                "ANALYZE {dst}",
                "ANALYZE {dst_cost}",
            ):
                cur.execute(sql.statement(template))


__all__ = [
    "ARCHIVE",
    "DEFAULT_BATCH_SIZE",
    "LIVE",
    "LOCK_KEY",
    "RETRIES",
    "ArchiveError",
    "ArchiveLocked",
    "BatchResult",
    "FastPathDeclined",
    "IdClash",
    "Move",
    "Plan",
    "RunResult",
    "Tables",
    "archive_move",
    "count_legs",
    "exclusive_lock",
    "move_batch",
    "move_picked",
    "pick",
    "plan_move",
    "restore_move",
    "run",
    "sync_id_sequence",
    "trigger_bypass_allowed",
    "vacuum",
    # for tests of the lock itself
    "_file_lock",
    "_lock_path",
]
