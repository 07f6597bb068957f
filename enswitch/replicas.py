"""API reads on PostgreSQL hot standbys: which node a request reads on, and failover.

`DATABASE_REPLICA_URLS` adds one database alias per standby (`replica1`, ...). The
reads of an API answer (the customer tree, the legs, their costs) go, as a whole, to
one node chosen per request by `serve_reads`; everything else (credentials, the login
throttle, stream slots, the admin, the commands, migrations) stays on `default`, the
primary. `ReplicaRouter` only applies that choice.

Freshness (`DATABASE_REPLICA_MAX_LAG` seconds): a replica is used only if, at most that
long ago, it had replayed all the WAL the primary had flushed at that moment (the
primary's `pg_current_wal_flush_lsn()` sampled first, then the standby's
`pg_last_wal_replay_lsn()` compared with it). So an idle primary is never taken for
lag, and WAL received but not replayed (a paused or slow replay) counts as behind.
The verdict is refreshed at most every `CHECK_INTERVAL` seconds per process.

Failover: a replica that cannot be reached, or that fails or is cancelled by a recovery
conflict before the answer's first byte, is left for another replica or the primary;
one that could not be reached is not tried again for `DATABASE_REPLICA_RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.dispatch import receiver

log = logging.getLogger("enswitch.replicas")

T = TypeVar("T")

# The apps whose tables an API answer reads; the API's users (credentials) are not read
# on a replica.
READ_APPS = frozenset({"cdrs", "customers"})
PRIMARY_MODELS = frozenset({"customers.user"})
# A statement timeout is the query's own fault: the same query elsewhere would fail too.
QUERY_CANCELED = "57014"
# How a standby cancels a query (or ends a session) that holds back its replay.
RECOVERY_CONFLICTS = frozenset({"40001", "40P01"})

_reads: ContextVar[str | None] = ContextVar("enswitch_reads", default=None)


class NodeBehind(Exception):
    """The node chosen for the reads does not have yet what the primary has (e.g. the
    user's customer): the request is served by another node."""


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica")]


def reads_alias() -> str:
    """The database this request's API reads go to (the primary outside `serve_reads`)."""
    return _reads.get() or DEFAULT_DB_ALIAS


class ReplicaRouter:
    """Django's router for the choice `serve_reads` made; writes always on the primary."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        alias = _reads.get()
        if alias is None:
            return None
        meta = model._meta
        if meta.app_label not in READ_APPS or meta.label_lower in PRIMARY_MODELS:
            return DEFAULT_DB_ALIAS
        return alias

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # one database, copied

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


@receiver(request_started)
@receiver(request_finished)
def _reads_on_primary(**kwargs: Any) -> None:
    # A streamed answer keeps reading on its node until it ends; the next request starts
    # on the primary.
    _reads.set(None)


@dataclass
class _Replica:
    alias: str
    fresh_as_of: float = float("-inf")  # monotonic time of a primary LSN it had replayed
    checked_at: float = float("-inf")
    down_until: float = float("-inf")


class Replicas:
    """The replicas' state in this process: freshness verdicts and failures."""

    def __init__(self, aliases: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.nodes = {alias: _Replica(alias) for alias in aliases}
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def check_interval(self) -> float:
        return min(1.0, settings.DATABASE_REPLICA_MAX_LAG / 4)

    def candidates(self) -> list[str]:
        """Usable replicas in a random order (sharing the load), refreshed as needed."""
        now = self.clock()
        order = list(self.nodes.values())
        random.shuffle(order)
        usable = []
        for node in order:
            if now < node.down_until:
                continue
            if now - node.checked_at >= self.check_interval:
                self.check(node.alias)
                if self.clock() < node.down_until:
                    continue  # the check found it down
            if self.clock() - node.fresh_as_of <= settings.DATABASE_REPLICA_MAX_LAG:
                usable.append(node.alias)
        return usable

    def check(self, alias: str) -> None:
        """Sample the primary's WAL position, then ask the standby whether it has
        replayed up to it; a standby that cannot answer is marked down."""
        node = self.nodes[alias]
        sampled = self.clock()
        position = primary_position()
        try:
            caught_up = has_replayed(alias, position)
        except DatabaseError as exc:
            self.failed(alias, exc)
            return
        with self._lock:
            node.checked_at = sampled
            if caught_up:
                node.fresh_as_of = max(node.fresh_as_of, sampled)

    def failed(self, alias: str, exc: BaseException | None = None) -> None:
        with self._lock:
            self.nodes[alias].down_until = self.clock() + settings.DATABASE_REPLICA_RETRY_SECONDS
        log.warning("replica %s unavailable: %s", alias, _first_line(exc))
        _drop_connection(alias)


def primary_position() -> str:
    """How far the primary has flushed its WAL: every commit acknowledged so far (with
    synchronous_commit on) and all that a standby can have received."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_flush_lsn()::text")
        return cursor.fetchone()[0]


def has_replayed(alias: str, position: str) -> bool:
    """Whether the standby `alias` has replayed the WAL up to `position` (a node not in
    recovery is no standby of the primary: no)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= %s::pg_lsn", [position]
        )
        return bool(cursor.fetchone()[0])


_state: Replicas | None = None


def state() -> Replicas:
    global _state
    aliases = replica_aliases()
    if _state is None or list(_state.nodes) != aliases:
        _state = Replicas(aliases)
    return _state


def serve_reads(answer: Callable[[], T]) -> T:
    """`answer()` with its reads on one fresh replica, or on the primary when none is
    usable or when this thread is inside a transaction on the primary (it must see its
    own writes). If the replica fails before `answer()` returns (the first byte of a
    streamed answer included), `answer()` runs again on the next node."""
    replicas = state()
    if not replicas.nodes or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        _reads.set(None)
        return answer()
    for alias in replicas.candidates():
        _reads.set(alias)
        try:
            return answer()
        except NodeBehind:
            continue
        except (OperationalError, InterfaceError) as exc:
            code = _sqlstate(exc)
            if code == QUERY_CANCELED:
                raise
            if code in RECOVERY_CONFLICTS or not _unusable(alias):
                # The node is fine; this query lost to its replay.
                log.info("API read on %s retried elsewhere: %s", alias, _first_line(exc))
                _drop_connection(alias)
            else:
                replicas.failed(alias, exc)
    _reads.set(None)
    return answer()


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


def _unusable(alias: str) -> bool:
    conn = connections[alias]
    if conn.connection is None:
        return True  # it could not connect
    try:
        return not conn.is_usable()
    except Exception:  # noqa: BLE001 - any failure to answer SELECT 1 means unusable
        return True


def _drop_connection(alias: str) -> None:
    try:
        connections[alias].close()
    except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close: it is gone
        pass


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).splitlines() or [""])[0][:200] if exc is not None else ""
