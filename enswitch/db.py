"""Per-connection set-up that makes SQLite answer like PostgreSQL.

- LIKE is case-sensitive (PostgreSQL's is; SQLite's folds ASCII by default), so number
  matching means the same on both.
- `enswitch_money(from_value, to_value, amount, ...)` converts and rounds the sum of the
  amounts exactly, with Decimal, halves away from zero, as PostgreSQL's numeric
  `round(x, 6)` does; SQLite's own arithmetic is binary floating point.
- WAL journal, so readers (API requests) are not blocked by a writer (import, archive).
- The database file is created owner-only (create_private_sqlite_files, at start-up).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.signals import connection_created
from django.dispatch import receiver

MICRO = Decimal("0.000001")


def _decimal(value: Any) -> Decimal:
    # SQLite hands numeric columns over as int or float; repr() gives the shortest text
    # that reads back to the same float, which is the decimal that was stored.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def convert_money(amount: Any, from_value: Any, to_value: Any) -> Decimal:
    """amount x from_value / to_value, rounded to 6 places, halves away from zero."""
    exact = _decimal(amount) * _decimal(from_value) / _decimal(to_value)
    return exact.quantize(MICRO, rounding=ROUND_HALF_UP)


def _sqlite_money(from_value: Any, to_value: Any, *amounts: Any) -> float | None:
    if from_value is None or to_value is None or any(a is None for a in amounts):
        return None
    try:
        total = sum((_decimal(a) for a in amounts), Decimal(0))
        return float(convert_money(total, from_value, to_value))
    except (InvalidOperation, ZeroDivisionError):
        return None


@receiver(connection_created)
def setup_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "sqlite":
        return
    raw = connection.connection
    raw.create_function("enswitch_money", -1, _sqlite_money, deterministic=True)
    with raw:
        cursor = raw.cursor()
        cursor.execute("PRAGMA case_sensitive_like = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


_timeouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def custom_plans(enabled: bool = True, *, using: str = "default") -> Iterator[None]:
    """Plan the statements run in this block with their values, every time (PostgreSQL).

    For a query that reads many legs to pick a page: its best plan depends on the
    values, which a prepared statement's generic plan ignores. Other queries keep the
    generic plan, which spares them the planning (figures: bench/README.md). Nothing
    outlives the block.
    """
    connection = connections[using]
    if not enabled or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('plan_cache_mode'), "
            "set_config('plan_cache_mode', 'force_custom_plan', true)"
        )
        before = cursor.fetchone()[0]
        yield
        # Put back at once: inside an enclosing transaction, SET LOCAL would last until
        # that one ends. (On an error the block's transaction is rolled back, and with
        # it the setting.)
        cursor.execute("SELECT set_config('plan_cache_mode', %s, true)", [before])


def use_statement_timeout(
    milliseconds: int, *, local: bool = False, using: str = "default"
) -> None:
    """Bound how long the API's next statements may run (PostgreSQL; 0 = no limit).

    Session-wide by default, and only sent when the connection's value differs, so a
    persistent connection pays for it once. `local=True` lasts until the end of the
    current transaction (a long export's own, larger budget).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    raw = connection.connection
    if not local and _timeouts.get(raw) == milliseconds:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, %s)", [str(milliseconds), local])
    if not local:
        _timeouts[raw] = milliseconds


@contextmanager
def write_transaction(using: str = "default") -> Iterator[None]:
    """transaction.atomic() for a block that writes: on SQLite it starts IMMEDIATE, so it
    waits (the busy timeout) for another writer to finish. A deferred transaction that
    reads first fails at once when it then tries to write while another writer is busy."""
    conn = connections[using]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    conn.ensure_connection()
    mode = conn.transaction_mode  # from OPTIONS; read by atomic() when it says BEGIN
    conn.transaction_mode = "IMMEDIATE"
    try:
        with transaction.atomic(using=using):
            conn.transaction_mode = mode
            yield
    finally:
        conn.transaction_mode = mode


def create_private_sqlite_files() -> None:
    """Create the file of each SQLite database that does not exist yet, owner-only (0600),
    before SQLite would create it with 0644 less the umask: it holds password hashes.
    SQLite gives its -wal and -shm files the database file's mode. A file that exists
    keeps the mode its operator gave it."""
    for settings_dict in settings.DATABASES.values():
        name = str(settings_dict.get("NAME") or "")
        if not settings_dict["ENGINE"].endswith("sqlite3") or not name:
            continue
        if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            continue
        with suppress(FileExistsError, FileNotFoundError, PermissionError):
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
