"""The management commands as real processes (issue 12): signals, file modes, lock waits,
/dev/zero, an unreachable server. Each runs `manage.py` against a store of its own (an
SQLite file, or a fresh database on the PostgreSQL test server), bounded in time.
"""

# SQL here is built from constants only.
# ruff: noqa: S608

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cdrs.management.commands.archive_cdrs import EXIT_LOCKED
from tests.test_archive_kill import Store, _pg_store, _sqlite_store, command, env, manage
from tests.test_import import EXAMPLE, a_leg

ON_PG = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
sqlite_only = pytest.mark.skipif(ON_PG, reason="SQLite files")
pg_only = pytest.mark.skipif(not ON_PG, reason="PostgreSQL locks")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("process")
    umask = os.umask(0o022)  # the usual umask, whatever the test runner's
    if ON_PG:
        stores = _pg_store(os.environ["DATABASE_URL"])
        store = next(stores)
    else:
        stores, store = None, _sqlite_store(tmp)
    try:
        result = manage(store, "migrate", "-v0")
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr
    main = tmp / "main.json"
    main.write_bytes(orjson.dumps({**EXAMPLE, "cdrs": []}))
    result = manage(store, "import_dataset", str(main))
    assert result.returncode == 0, result.stderr
    store.tmp = tmp  # type: ignore[attr-defined]
    store.main = main  # type: ignore[attr-defined]
    yield store
    if stores is not None:
        stores.close()


def legs_file(store: Store, name: str, n: int, **changes) -> Path:
    path = store.tmp / name  # type: ignore[attr-defined]
    path.write_bytes(
        b"".join(orjson.dumps(a_leg(f"{name}.{i}", **changes)) + b"\n" for i in range(n))
    )
    return path


def count(store: Store, table: str = "cdrs_leg") -> int:
    return store.query(f"SELECT count(*) FROM {table}")[0][0]


def start(store: Store, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        command(store, *args),
        env={**env(store), **kw.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def one_line_error(err: str) -> str:
    """The command's complaint: one line, and no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- 2. files the product creates are owner-only ----------------------------------------


@sqlite_only
def test_the_database_its_journal_and_the_archive_lock_are_owner_only(store):
    """The store was made by `migrate` under the usual umask (022)."""
    path = Path(store.url.removeprefix("sqlite:///"))
    result = manage(store, "archive_cdrs", "--before", "1700000000")
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(path)  # SQLite gives -wal and -shm the database's mode
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    names = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.archive_cdrs.lock")]
    modes = {p.name: p.stat().st_mode & 0o777 for p in names}
    conn.close()
    assert modes == dict.fromkeys((p.name for p in names), 0o600)


# --- 4. SQLite waits for another writer, as documented --------------------------------------


def _hold_sqlite_write_lock(path: Path, seconds: float) -> threading.Event:
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE customers_customer SET name = name")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(10)
    return taken


@sqlite_only
@pytest.mark.parametrize("what", ["import", "archive"])
def test_sqlite_commands_wait_for_another_writer(store, what):
    path = Path(store.url.removeprefix("sqlite:///"))
    legs = legs_file(store, f"wait-{what}", 20)
    manage(store, "import_dataset", "--cdrs", str(legs)).check_returncode()
    args = (
        ["import_dataset", "--cdrs", str(legs)]
        if what == "import"
        else ["archive_cdrs", "--before", "1700000001", "--batch-size", "5"]
    )
    proc = start(store, *args)
    time.sleep(1.5)  # it has started and read what it reads first
    _hold_sqlite_write_lock(path, 3)
    rc, err = finish(proc)
    assert rc == 0, err


# --- 5. signals: one line, a documented status, nothing half-written -----------------------


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_import_interrupted_writes_nothing(store, sig, status):
    before = count(store)
    proc = start(store, "import_dataset", "--cdrs", "-", "--batch-size", "5", stdin=subprocess.PIPE)
    proc.stdin.write(b"".join(orjson.dumps(a_leg(f"sig.{i}")) + b"\n" for i in range(40)))
    proc.stdin.flush()
    time.sleep(3)  # batches written, the next line awaited
    proc.send_signal(sig)
    began = time.monotonic()
    rc, err = finish(proc, timeout=30)
    proc.stdin.close()
    assert time.monotonic() - began < 10
    assert rc == status
    name = signal.Signals(sig).name
    assert one_line_error(err) == f"CommandError: interrupted ({name}): nothing was written"
    assert count(store) == before


LEG_TABLES = ("cdrs_leg", "cdrs_archivedleg", "cdrs_legcost", "cdrs_archivedlegcost")


@pg_only
def test_an_import_killed_during_its_copies_leaves_nothing(store):
    # kill -9: no handler runs; the server (on a cluster, the coordinator, which has not
    # begun its two-phase commit) rolls the transaction back when the client is gone.
    costs = [{"customer": 1, "cost": "1", "currency": "USD"}]
    legs = legs_file(store, "killed", 60_000, costs=costs)
    totals = "SELECT count(*), coalesce(sum(inbound), 0) FROM cdrs_calltotals"
    before = [count(store, table) for table in LEG_TABLES], store.query(totals)
    proc = start(store, "import_dataset", "--cdrs", str(legs), "--bulk", "yes")
    try:
        _wait_for(store, "query LIKE 'COPY %' AND state <> 'idle'")
    finally:
        proc.kill()
        finish(proc)
    _wait_for(store, "query LIKE 'COPY %'", present=False)
    assert ([count(store, table) for table in LEG_TABLES], store.query(totals)) == before
    if store.cluster:  # nothing left prepared on a worker either
        prepared = store.query(
            "SELECT coalesce(sum(result::int), 0) FROM run_command_on_workers("
            "$$SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()$$)"
        )
        assert prepared == [(0,)]


@pg_only
def test_a_bulk_import_over_several_connections_per_worker(store):
    # On a cluster, Citus may open more connections to a worker as the import goes on;
    # each must skip the foreign-key triggers as the first did, or the index builds at
    # the end fail on the checks left pending.
    import psycopg

    legs = legs_file(store, "pool", 3000)
    options = "-c citus.max_adaptive_executor_pool_size=2 -c citus.max_cached_conns_per_worker=2"
    args = ("import_dataset", "--cdrs", str(legs), "--bulk", "yes", "--batch-size", "500")
    proc = start(store, *args, env={"PGOPTIONS": options})
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert "3,000 legs" in out.decode()
        assert "bulk COPY" in out.decode()
        assert count(store) == 3000
    finally:
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(LEG_TABLES)}, cdrs_calltotals")


def _wait_for(store: Store, where: str, *, present: bool = True) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = store.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            f"AND pid <> pg_backend_pid() AND {where}"
        )[0][0]
        if bool(found) == present:
            return
        time.sleep(0.02)
    raise AssertionError(f"no backend came to {where}" if present else f"still: {where}")


@pg_only
def test_an_import_waiting_on_a_postgresql_lock_stops_at_once(store):
    import psycopg

    legs = legs_file(store, "locked", 30, costs=[{"customer": 1, "cost": "1", "currency": "USD"}])
    before = count(store)
    with psycopg.connect(store.url) as holder:
        holder.execute("LOCK TABLE cdrs_legcost IN ACCESS EXCLUSIVE MODE")
        proc = start(store, "import_dataset", "--cdrs", str(legs), "--batch-size", "10")
        _wait_for_lock_wait(store)
        proc.send_signal(signal.SIGINT)
        began = time.monotonic()
        rc, err = finish(proc, timeout=30)
        assert time.monotonic() - began < 10
        holder.rollback()
    assert rc == 130
    assert one_line_error(err) == "CommandError: interrupted (SIGINT): nothing was written"
    assert count(store) == before


def _wait_for_lock_wait(store: Store) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = store.query(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )[0][0]
        if waiting:
            return
        time.sleep(0.1)
    raise AssertionError("the command never waited on the lock")


# One server: on a Citus cluster the row lock is taken, and waited on, on the workers.
@pg_only
@pytest.mark.usefixtures("single_node")
def test_an_archive_batch_waiting_on_a_row_lock_stops_at_once(store):
    import psycopg

    legs = legs_file(store, "rowlock", 20)
    manage(store, "import_dataset", "--cdrs", str(legs)).check_returncode()
    live, archived = count(store), count(store, "cdrs_archivedleg")
    with psycopg.connect(store.url) as holder:
        holder.execute("SELECT 1 FROM cdrs_leg FOR UPDATE")
        proc = start(store, "archive_cdrs", "--before", "1700000001")
        _wait_for_lock_wait(store)
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        rc, err = finish(proc, timeout=30)
        assert time.monotonic() - began < 10
        holder.rollback()
    assert rc == 143
    assert one_line_error(err) == (
        "CommandError: interrupted (SIGTERM): the batch in progress was rolled back; run "
        "again to continue"
    )
    assert (count(store), count(store, "cdrs_archivedleg")) == (live, archived)


def test_an_archive_run_waiting_for_the_lock_takes_sigterm(store):
    holder = start(store, "archive_cdrs", "--before", "1700000000", "--wait", "60")
    holder.wait(timeout=60)  # a run, to learn the lock's path on SQLite; then hold it
    release = _hold_archive_lock(store)
    try:
        proc = start(store, "archive_cdrs", "--before", "1700000000", "--wait", "60")
        time.sleep(2.5)
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc, timeout=30)
    finally:
        release()
    assert rc == 143, err
    assert one_line_error(err).startswith("CommandError: interrupted (SIGTERM)")
    # And without --wait, the held lock is an ordinary skipped run.
    release = _hold_archive_lock(store)
    try:
        result = manage(store, "archive_cdrs", "--before", "1700000000")
    finally:
        release()
    assert result.returncode == EXIT_LOCKED, result.stderr


def _hold_archive_lock(store: Store):
    if ON_PG:
        import psycopg

        conn = psycopg.connect(store.url, autocommit=True)
        from cdrs.archive import LOCK_KEY

        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        return conn.close
    import fcntl

    path = store.url.removeprefix("sqlite:///") + ".archive_cdrs.lock"
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return lambda: os.close(fd)


# --- 7. /dev/zero: refused before memory grows -------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/dev/zero"], "/dev/zero: is not text: it starts with NUL bytes"),
        (
            ["--cdrs", "/dev/zero"],
            "/dev/zero line 1: longer than ENSWITCH_IMPORT_MAX_LINE_BYTES (1,048,576 bytes); "
            "reading stopped there",
        ),
    ],
)
def test_dev_zero_is_refused_at_once_within_bounded_memory(store, args, message):
    proc = start(store, "import_dataset", *args, preexec_fn=_limit_memory)  # noqa: PLW1509
    rc, err = finish(proc, timeout=60)
    assert rc == 1, err
    assert "Traceback" not in err
    assert message in err


# --- 4. an unreachable server --------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["import_dataset", "--cdrs", "/dev/null"], ["archive_cdrs", "--before", "5"]]
)
def test_an_unreachable_database_is_one_line(store, args):
    unreachable = {"DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"}
    rc, err = finish(start(store, *args, env=unreachable))
    assert rc == 1
    assert one_line_error(err).startswith("CommandError: cannot reach the database: ")


def test_the_memory_limit_of_these_tests_is_no_obstacle_to_python():
    """A sanity check of _limit_memory: an ordinary command runs under it."""
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", "print(len(bytearray(10**8)))"],
        preexec_fn=_limit_memory,  # noqa: PLW1509
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "100000000"
