"""What the management commands share: signals, numeric options, database failures.

(A module whose name starts with "_" is not a command.)
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import CommandError

EXIT_SIGINT = 128 + signal.SIGINT  # 130, the shell's own status for Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A KeyboardInterrupt, so that psycopg cancels the
    statement it is waiting on (a lock wait included) before it is raised here."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread, so that both take the
    same way out (transactions rolled back, one line said). A second signal while that
    is under way ends the process at once: every transaction is all or nothing anyway."""

    def first(signum: int, frame: Any) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, again)
        raise Interrupted(signum)

    def again(signum: int, frame: Any) -> None:
        sys.stderr.write(f"{signal.Signals(signum).name} again: stopping now\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (a command run from a thread)
        return
    old = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def interrupted_error(exc: KeyboardInterrupt, what: str) -> CommandError:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name
    return CommandError(f"interrupted ({name}): {what}", returncode=128 + signum)


# --- numeric options ---------------------------------------------------------------------


def whole(name: str, value: int | None, lo: int, hi: int) -> int | None:
    """An integer option within [lo, hi] (None: not given), or a CommandError."""
    if value is not None and not lo <= value <= hi:
        raise CommandError(f"{name}: {value} is out of range; give {lo} to {hi:,}")
    return value


def seconds(name: str, value: float, hi: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= hi:
        raise CommandError(f"{name}: {value} is not a number of seconds from 0 to {hi:,.0f}")
    return value


def cpus() -> int:
    from cdrs.dataset.importer import cores  # one statement of the rule

    return cores()


# --- database failures -------------------------------------------------------------------


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind Django's wrapper, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.Error) or hasattr(cur, "sqlstate"):
            return cur
        cur = cur.__cause__ or cur.__context__
    return exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_problem(exc: BaseException) -> tuple[str, bool]:
    """What is wrong, in one line, and whether running the command again may help."""
    err = _driver_error(exc)
    text = first_line(err)
    low = text.lower()
    if isinstance(err, sqlite3.Error):
        name = getattr(err, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_READONLY") or "readonly database" in low:
            return (
                "the SQLite database is read-only (the file, its directory or the file "
                f"system): {text}",
                False,
            )
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in low:
            return (
                "the SQLite database is locked by another writer (an import, an archive run "
                f"or the admin) and stayed locked for the whole busy timeout: {text}",
                True,
            )
        if name.startswith("SQLITE_CANTOPEN"):
            return f"cannot open the SQLite database file: {text}", False
        if name.startswith("SQLITE_FULL"):
            return f"the disk is full: {text}", True
        return f"database error: {text}", True
    state = getattr(err, "sqlstate", None)
    if state == "25006":
        return (
            "the database is read-only (default_transaction_read_only is on, or this is a "
            f"standby): {text}",
            False,
        )
    if state == "42501":
        return f"the database role lacks a privilege: {text}", False
    if state in ("53300", "53400"):
        return f"the database server has no connection to spare: {text}", True
    if state == "53100":
        return f"the database server's disk is full: {text}", True
    if state is None and hasattr(err, "sqlstate") or (state or "").startswith("08"):
        return f"cannot reach the database: {text}", True
    if state in ("40001", "40P01", "55P03", "57014"):
        return f"the database gave up on a statement (lock, deadlock or timeout): {text}", True
    return f"database error: {text}", True


def free_connections(using: str) -> int:
    """Connections the PostgreSQL server can still accept from ordinary roles:
    max_connections less the reserved ones and those open now."""
    from django.db import connections

    with connections[using].cursor() as cur:
        cur.execute(
            "SELECT current_setting('max_connections')::int "
            "- current_setting('superuser_reserved_connections')::int "
            "- coalesce(current_setting('reserved_connections', true)::int, 0) "
            "- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        return cur.fetchone()[0]
