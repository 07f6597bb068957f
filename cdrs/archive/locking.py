"""One run at a time: a PostgreSQL advisory lock, or a lock file next to an SQLite store."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import (
    DatabaseError,
    connections,
)

from cdrs.archive.moves import ArchiveError, ArchiveLocked

# pg_try_advisory_lock key: the first 8 bytes of sha256("enswitch archive_cdrs"), signed.
# Advisory locks are per database, so two stores on one server do not block each other.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"enswitch archive_cdrs").digest()[:8], "big", signed=True)


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
