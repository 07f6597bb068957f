"""kill -9 at random moments, copies started together: every leg stays exactly once.

These run `manage.py archive_cdrs` as real processes against a database of their own
(a fresh PostgreSQL database on the test server, or an SQLite file; on a Citus cluster a
fresh database on every node, laid out by `migrate`), filled and checked with plain SQL,
so the processes see exactly what a production run would.
"""

# SQL here is built from the models' table names only.
# ruff: noqa: S608

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from cdrs.management.commands.archive_cdrs import EXIT_LOCKED

ROOT = Path(__file__).resolve().parent.parent
LEGS = 12_000
T0 = 1_700_000_000
CUTOFF = T0 + 9_000  # three legs in four go
CUSTOMERS = (1, 2, 3)

LEG, COST = "cdrs_leg", "cdrs_legcost"
EXPECTED_COSTS = Counter(
    (f"{T0 + i}.{i}", c, Decimal(f"{i}.{c}"))
    for i in range(1, LEGS + 1)
    for c in CUSTOMERS[: i % 3 + 1]
)
ALEG, ACOST = "cdrs_archivedleg", "cdrs_archivedlegcost"


class Store:
    def __init__(self, url: str, connect, placeholder: str, *, cluster: bool = False) -> None:
        self.url, self._connect, self.ph = url, connect, placeholder
        self.cluster = cluster

    def query(self, sql: str) -> list[tuple]:
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            conn.close()

    def fill(self) -> None:
        conn = self._connect()
        try:
            cur = conn.cursor()
            p = self.ph
            cur.execute("INSERT INTO customers_currency (code, value) VALUES ('USD', 1)")
            for cid in CUSTOMERS:
                parent = None if cid == 1 else 1
                path = "/1/" if cid == 1 else f"/1/{cid}/"
                cur.execute(
                    "INSERT INTO customers_customer (id, parent_id, name, bill_type, "
                    "currency_id, enabled, path, depth) "
                    f"VALUES ({p}, {p}, {p}, 'postpaid', 'USD', {p}, {p}, {p})",
                    (cid, parent, f"C{cid}", True, path, 0 if cid == 1 else 1),
                )
            legs = [
                (i, f"{T0 + i}.{i}", f"c{i}", T0 + i, T0 + i + 5, 2 + i % 2, None)
                for i in range(1, LEGS + 1)
            ]
            costs = [
                (i, c, f"{i}.{c}") for i in range(1, LEGS + 1) for c in CUSTOMERS[: i % 3 + 1]
            ]
            if p == "%s":  # PostgreSQL: COPY (one statement per table, on a cluster too)
                leg_copy = (
                    f'COPY {LEG} (id, uniqueid, callid, start, "end", talktime, status, '
                    "direction, stype, snumber, ctype, cnumber, dtype, dnumber, callername, "
                    "callername_folded, scustomer_id, dcustomer_id) FROM STDIN"
                )
                with cur.copy(leg_copy) as copy:
                    for i, uid, callid, start, end, scust, dcust in legs:
                        copy.write_row(
                            (i, uid, callid, start, end, 0, "", "out", *[""] * 8, scust, dcust)
                        )
                cost_copy = f"COPY {COST} (leg_id, customer_id, cost, tax, currency_id) FROM STDIN"
                with cur.copy(cost_copy) as copy:
                    for leg_id, customer, amount in costs:
                        copy.write_row((leg_id, customer, amount, 0, "USD"))
                conn.commit()
                return
            cur.executemany(
                f'INSERT INTO {LEG} (id, uniqueid, callid, start, "end", talktime, status, '
                "direction, stype, snumber, ctype, cnumber, dtype, dnumber, callername, "
                "callername_folded, scustomer_id, dcustomer_id) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, 0, '', 'out', '', '', '', '', '', '', "
                f"'', '', {p}, {p})",
                legs,
            )
            cur.executemany(
                f"INSERT INTO {COST} (leg_id, customer_id, cost, tax, currency_id) "
                f"VALUES ({p}, {p}, {p}, 0, 'USD')",
                costs,
            )
            conn.commit()
        finally:
            conn.close()

    def check(self, *, done: bool = False, restoring: bool = False) -> Counter:
        """Each leg in exactly one table with all its cost records; batches go oldest
        first, so the archive is always the oldest legs (while restoring: the newest of
        those before CUTOFF); with done, exactly the legs that started before CUTOFF.
        On a Citus cluster, transactions a kill left prepared on the workers are first
        finished as the coordinator recorded them (as its maintenance daemon does)."""
        if self.cluster:
            self.query("SELECT recover_prepared_transactions()")
        live = dict(self.query(f"SELECT uniqueid, start FROM {LEG}"))
        archived = dict(self.query(f"SELECT uniqueid, start FROM {ALEG}"))
        assert not live.keys() & archived.keys(), "a leg in both tables"
        assert len(live) + len(archived) == LEGS, "a leg lost"
        for leg, cost in ((LEG, COST), (ALEG, ACOST)):
            orphans = self.query(
                f"SELECT count(*) FROM {cost} c LEFT JOIN {leg} l ON l.id = c.leg_id "
                "WHERE l.id IS NULL"
            )
            assert orphans == [(0,)], f"cost records without their leg in {cost}"
        costs = Counter(
            (uid, customer, Decimal(str(amount)).normalize())
            for uid, customer, amount in self.query(
                f"SELECT l.uniqueid, c.customer_id, c.cost FROM {COST} c "
                f"JOIN {LEG} l ON l.id = c.leg_id UNION ALL "
                f"SELECT l.uniqueid, c.customer_id, c.cost FROM {ACOST} c "
                f"JOIN {ALEG} l ON l.id = c.leg_id"
            )
        )
        assert costs == EXPECTED_COSTS, "cost records lost, changed or doubled"
        starts = sorted(archived.values())
        first = CUTOFF - len(starts) if restoring else T0 + 1
        assert starts == list(range(first, first + len(starts))), "not batch after batch"
        if done:
            assert len(starts) == CUTOFF - T0 - 1
        return Counter(live=len(live), archived=len(archived))


def _sqlite_store(tmp: Path) -> Store:
    path = tmp / "kill.sqlite3"
    return Store(f"sqlite:///{path}", lambda: sqlite3.connect(path, timeout=30), "?")


def _pg_store(url: str) -> Iterator[Store]:
    import psycopg

    name = f"archive_kill_{os.getpid()}"
    admin = psycopg.connect(url, autocommit=True)
    parts = urlsplit(url)
    db_url = urlunsplit(parts._replace(path=f"/{name}"))
    workers = _citus_workers(admin)
    nodes = [url] + [
        urlunsplit(parts._replace(netloc=f"{parts.username}@{host}:{port}"))
        for host, port in workers
    ]
    for node in nodes:
        with psycopg.connect(node, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    if workers:  # a cluster of its own, laid out by migrate
        for node in nodes:
            node_url = urlunsplit(urlsplit(node)._replace(path=f"/{name}"))
            with psycopg.connect(node_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (parts.hostname, parts.port))
            for host, port in workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (host, port))
    try:
        yield Store(db_url, lambda: psycopg.connect(db_url), "%s", cluster=bool(workers))
    finally:
        for node in reversed(nodes):
            with psycopg.connect(node, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _citus_workers(admin) -> list[tuple[str, int]]:
    """The workers registered on the test server (a Citus coordinator), or none."""
    if not admin.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'").fetchone()[0]:
        return []
    return admin.execute(
        "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid"
    ).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        stores = _pg_store(url)
        store = next(stores)
    else:
        stores, store = None, _sqlite_store(tmp_path)
    manage(store, "migrate", "-v0").check_returncode()
    store.fill()
    yield store
    if stores is not None:
        stores.close()


def command(store: Store, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def env(store: Store) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": store.url, "PYTHONWARNINGS": "ignore"}


def manage(store: Store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        command(store, *args), env=env(store), capture_output=True, text=True, timeout=300
    )


def archive_cmd(*extra: str) -> list[str]:
    return ["archive_cdrs", "--before", str(CUTOFF), "--batch-size", "40", *extra]


def kill_when(db: Store, args: list[str], *, table: str, reach: int, extra: float) -> int:
    """Start archive_cdrs, SIGKILL it `extra` seconds after `table` holds `reach` legs
    (or when it ends by itself); its exit status."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        command(db, *args), env=env(db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if db.query(f"SELECT count(*) FROM {table}")[0][0] >= reach:
            break
        time.sleep(0.003)
    time.sleep(extra)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def test_kill_9_at_random_moments_then_rerun(db: Store):
    seed = int(os.environ.get("ARCHIVE_KILL_SEED", time.time()))
    rng = random.Random(seed)
    eligible = CUTOFF - T0 - 1
    kills = 0
    for _ in range(8):
        archived = db.check()["archived"]
        # Kill after a random share of what is left (small, so later rounds have work).
        reach = archived + rng.randint(1, max(1, (eligible - archived) // 4))
        rc = kill_when(
            db, archive_cmd("--wait", "30"), table=ALEG, reach=reach, extra=rng.uniform(0, 0.01)
        )
        state = db.check(done=rc == 0)
        kills += rc == -signal.SIGKILL and state["archived"] < eligible
        print(f"seed {seed}: killed at {reach}: rc {rc}, {dict(state)}")
    assert kills >= 4, f"too few kills landed mid-run (seed {seed})"
    result = manage(db, *archive_cmd("--wait", "30"))
    assert result.returncode == 0, result.stderr
    db.check(done=True)

    # And back: kill restores too, then finish.
    restore = ["archive_cdrs", "--restore", "--between", "0", str(CUTOFF), "--batch-size", "40"]
    for _ in range(3):
        live = db.check(restoring=True)["live"]
        reach = live + rng.randint(1, max(1, (LEGS - live) // 3))
        kill_when(
            db, [*restore, "--wait", "30"], table=LEG, reach=reach, extra=rng.uniform(0, 0.01)
        )
        db.check(restoring=True)
    result = manage(db, *restore, "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert db.check(restoring=True)["archived"] == 0


def test_copies_started_together(db: Store):
    procs = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
            command(db, *archive_cmd()),
            env=env(db),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _, _ in outcomes)
    assert codes[0] == 0, outcomes
    assert set(codes) <= {0, EXIT_LOCKED}, outcomes
    for rc, _, err in outcomes:
        if rc == EXIT_LOCKED:
            assert "another archive_cdrs is running" in err
    # A copy that got the lock ran to the end; the others gave up at once (or started
    # after it and found nothing left).
    db.check(done=True)
    # And a copy that waits for the lock instead of giving up goes ahead afterwards.
    result = manage(db, *archive_cmd("--wait", "60"))
    assert result.returncode == 0, result.stderr
    db.check(done=True)
