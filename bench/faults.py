"""Fault tests of the production server and the importer, on loopback only.

    .venv/bin/python bench/faults.py                                  # all three
    .venv/bin/python bench/faults.py --only postgres-restart,import-kill
    .venv/bin/python bench/faults.py --only stream-kill --no-wait-slot-expiry

postgres-restart  A few clients run for 40 s against gunicorn on a small database of a
                  throwaway cluster (bench/work/reliability/pg-faults); after 10 s the
                  cluster is stopped (pg_ctl stop -m fast), 10 s later started again.
                  Before: every answer 200. During the outage: every answer the
                  envelope 500 `database` (JSON, quickly, never a hang or a traceback).
                  After the restart: every answer 200 again, same gunicorn master.
import-kill       `manage.py import_dataset --cdrs big.jsonl` (300,000 legs) into a
                  fresh database holding a small dataset, SIGKILLed after a random
                  delay once it is writing; legs, costs (counts and checksums),
                  indexes, constraints and triggers must be exactly as before, with no
                  temporary table, prepared transaction, backend, worker process or
                  temporary file left. Two writers: the staged one (legs already
                  stored) and the bulk one (no legs yet: indexes dropped and rebuilt).
                  Then the same import run to the end must load all the legs.
stream-kill       On bench_1000000 (bench/work/pg): a `customer=system;limit=0` export
                  is read for a few MB, then (1) the client hangs up, (2) the gunicorn
                  worker serving it is SIGKILLed, (3) all of gunicorn is SIGKILLed.
                  Each time: no backend left running the query or idle in transaction
                  (no cursor, no lock), the server (or a new one) answers normally.
                  The user's stream slots (table enswitch_cache, keys stream:<user>:<slot>)
                  leaked by the kills are reported; unless --no-wait-slot-expiry, the
                  test waits (up to ~11 min) until they expire and checks the user can
                  export again.

Exit status 1 if any check failed. Everything started here (clusters, gunicorn,
imports) is stopped in `finally`. Results go to the reliability section of
bench/results.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.loadtest import (  # noqa: E402
    HOST,
    REL,
    RESULTS,
    ReliabilityServer,
    ensure_bench_database,
    load_average,
    machine,
    open_cluster,
    path_for,
    write_results,
)
from bench.pgcluster import Cluster, free_port  # noqa: E402
from bench.run import (  # noqa: E402
    BENCH_PASSWORD,
    WORK,
    _children,
    manage,
    prepare_scenario,
    queries,
    setup_django,
    use_database,
)

APP = "enswitch-reliability"  # application_name of the servers started here
EXPORTER = "reliability_exporter"
TESTS = ("postgres-restart", "import-kill", "stream-kill")


class Checks:
    """Named checks, printed as they happen."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, bool, str]] = []

    def check(self, test: str, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append((test, name, ok, detail))
        print(f"  [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""),
              flush=True)  # fmt: skip
        return ok

    def failed(self, test: str | None = None) -> list[tuple[str, str, bool, str]]:
        return [c for c in self.items if not c[2] and (test is None or c[0] == test)]


_django_ready = False


def django_on(db_url: str) -> None:
    """Point this process's Django at a PostgreSQL database (set up on first use)."""
    global _django_ready
    if _django_ready:
        use_database(db_url)
    else:
        setup_django(db_url)
        _django_ready = True


def app_url(cluster: Cluster, db: str) -> str:
    return cluster.db_url(db) + f"?application_name={APP}"


def fresh_database(cluster: Cluster, db: str) -> None:
    cluster.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    cluster.psql("postgres", f"CREATE DATABASE {db}")
    manage("migrate", "--verbosity", "0", db_url=cluster.db_url(db))


def faults_dataset(args: argparse.Namespace) -> dict[str, Path]:
    """A small generated dataset: main file, the newest 20,000 legs (hot) to preload, the
    300,000 before them (archived and hot) to import."""
    data = REL / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"main": data / "faults-main.json", "all": data / "faults-legs.jsonl",
             "small": data / "small.jsonl", "big": data / "big.jsonl"}  # fmt: skip
    total = args.small_legs + args.big_legs
    stamp = data / f"legs-newest-{args.small_legs}-{args.big_legs}"
    if not stamp.exists() or not all(p.exists() for p in files.values()):
        manage(
            "generate_dataset", "--customers", "500", "--depth", "4", "--reseller-size", "200",
            "--legs", str(total), "--days", "30", "--users", "2", "--seed", "7",
            "--out", str(files["main"]), "--cdrs-out", str(files["all"]),
            db_url="sqlite:///:memory:", stdout=subprocess.DEVNULL,
        )  # fmt: skip
        with open(files["all"], "rb") as src:
            lines = src.readlines()
        files["small"].write_bytes(b"".join(lines[-args.small_legs :]))
        files["big"].write_bytes(b"".join(lines[: -args.small_legs]))
        for old in data.glob("legs-*"):
            old.unlink()
        stamp.touch()
    return files


# --------------------------------------------------------------------------- a. restart
def outcome(status: int, ctype: str, body: bytes) -> str:
    if status != 200:
        return f"http {status}"
    if not ctype.startswith("application/json") or b"Traceback" in body:
        return "not an envelope"
    try:
        doc = json.loads(body)
        first = doc["responses"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return "not an envelope"
    if first["code"] == "200":
        return "200"
    return f"{first['code']} {first['key']}".strip()


def restart_client(args: tuple[int, int, list[tuple[str, str, dict]], float]) -> list[tuple]:
    index, port, requests, until = args
    rng = random.Random(index)
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    done = []
    while time.time() < until:
        kind, call, params = rng.choice(requests)
        sent = time.time()
        try:
            conn.request("GET", path_for(call, params))
            resp = conn.getresponse()
            body = resp.read()
            result = outcome(resp.status, resp.getheader("Content-Type", ""), body)
        except (OSError, http.client.HTTPException) as exc:
            result = f"transport {type(exc).__name__}"
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
        done.append((sent, time.time(), kind, result))
        time.sleep(0.05)
    conn.close()
    return done


def test_postgres_restart(fc: Cluster, files: dict[str, Path], args: argparse.Namespace,
                          checks: Checks) -> dict[str, Any]:  # fmt: skip
    test = "postgres-restart"
    print(f"== {test}", flush=True)
    db = "rel_restart"
    fresh_database(fc, db)
    manage("import_dataset", str(files["main"]), "--cdrs", str(files["small"]),
           db_url=fc.db_url(db), stdout=subprocess.DEVNULL)  # fmt: skip
    fc.psql(db, "VACUUM ANALYZE")
    django_on(fc.db_url(db))
    scenario = prepare_scenario(1000)
    q = queries(scenario)
    from cdrs.models import Leg

    uid = Leg.objects.filter(scustomer_id=scenario.customer).values_list("uniqueid", flat=True)[0]
    requests = [("Q1", "list", q["Q1"]), ("Q2", "list", q["Q2"]), ("Q8", "list", q["Q8"]),
                ("get", "get", {**{k: q["Q1"][k] for k in ("auth_username", "auth_password")},
                                "uniqueid": uid})]  # fmt: skip
    port = free_port()
    log = REL / "gunicorn-faults.log"
    seconds, stop_at, down_for = args.restart_seconds, args.restart_seconds / 4, 10.0
    marks: dict[str, float] = {}
    with ReliabilityServer(app_url(fc, db), port, args.workers, env={}, log=log) as server:
        for kind, call, params in requests:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("GET", path_for(call, params))
            resp = conn.getresponse()
            result = outcome(resp.status, resp.getheader("Content-Type", ""), resp.read())
            if result != "200":
                raise RuntimeError(f"warm-up {kind}: {result}")
        master, workers_before = server.proc.pid, sorted(server.worker_pids())
        t0 = time.time()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.restart_clients) as pool:
            jobs = [(i, port, requests, t0 + seconds) for i in range(args.restart_clients)]
            pending = pool.map_async(restart_client, jobs)
            time.sleep(max(0.0, t0 + stop_at - time.time()))
            marks["stop"] = time.time()
            fc.stop()
            marks["stopped"] = time.time()
            print(f"  cluster stopped in {marks['stopped'] - marks['stop']:.2f} s", flush=True)
            time.sleep(down_for)
            marks["start"] = time.time()
            fc.start()
            marks["started"] = time.time()
            print(f"  cluster started in {marks['started'] - marks['start']:.2f} s", flush=True)
            done = [r for part in pending.get(seconds + 120) for r in part]
        same_master = server.proc.poll() is None and server.proc.pid == master
        workers_after = sorted(server.worker_pids())
    phases: dict[str, Counter] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    first_ok_after = None
    for sent, finished, _kind, result in sorted(done):
        if finished < marks["stop"]:
            phase = "1 before"
        elif sent < marks["stopped"]:
            phase = "2 stopping"
        elif sent < marks["start"]:
            phase = "3 down"
        elif sent < marks["started"]:
            phase = "4 starting"
        else:
            phase = "5 after"
            if first_ok_after is None and result == "200":
                first_ok_after = finished - marks["started"]
        phases[phase][result] += 1
        slowest[phase] = max(slowest[phase], finished - sent)
    allowed = {"1 before": {"200"}, "2 stopping": {"200", "500 database"},
               "3 down": {"500 database"}, "4 starting": {"200", "500 database"},
               "5 after": {"200"}}  # fmt: skip
    for phase in sorted(allowed):
        counts = phases.get(phase, Counter())
        bad = {k: v for k, v in counts.items() if k not in allowed[phase]}
        checks.check(test, f"{phase[2:]}: only {' or '.join(sorted(allowed[phase]))}",
                     bool(counts) and not bad,
                     f"{dict(counts)}, slowest {slowest[phase]:.2f} s")  # fmt: skip
    checks.check(test, "no answer slower than 5 s", max(slowest.values()) <= 5.0,
                 f"slowest {max(slowest.values()):.2f} s")  # fmt: skip
    checks.check(test, "the same gunicorn master served throughout", same_master,
                 f"master {master}; workers {workers_before} -> {workers_after}")  # fmt: skip
    return {"phases": {p: dict(c) for p, c in sorted(phases.items())},
            "slowest_s": {p: round(v, 3) for p, v in sorted(slowest.items())},
            "stop_s": marks["stopped"] - marks["stop"], "down_s": marks["start"] - marks["stopped"],
            "start_s": marks["started"] - marks["start"],
            "first_ok_after_restart_s": first_ok_after, "workers_before": workers_before,
            "workers_after": workers_after, "requests": len(done),
            "log": server.log_summary()}  # fmt: skip


# --------------------------------------------------------------------------- b. import kill
SNAPSHOT_SQL = """
SET statement_timeout = 120000;
SELECT json_build_object(
 'legs', (SELECT count(*) FROM cdrs_leg),
 'archived_legs', (SELECT count(*) FROM cdrs_archivedleg),
 'costs', (SELECT count(*) FROM cdrs_legcost),
 'archived_costs', (SELECT count(*) FROM cdrs_archivedlegcost),
 'legs_md5', (SELECT md5(coalesce(string_agg(id || ':' || uniqueid || ':' || start || ':' ||
   scustomer_id, ',' ORDER BY id), '')) FROM cdrs_leg),
 'archived_legs_md5', (SELECT md5(coalesce(string_agg(id || ':' || uniqueid, ',' ORDER BY id),
   '')) FROM cdrs_archivedleg),
 'costs_md5', (SELECT md5(coalesce(string_agg(leg_id || ':' || coalesce(customer_id, -1) || ':'
   || coalesce(card_id, -1) || ':' || cost || ':' || tax || ':' || currency_id, ',' ORDER BY id),
   '')) FROM cdrs_legcost),
 'archived_costs_md5', (SELECT md5(coalesce(string_agg(leg_id || ':' || cost, ',' ORDER BY id),
   '')) FROM cdrs_archivedlegcost),
 'customers', (SELECT count(*) FROM customers_customer),
 'indexes', (SELECT md5(string_agg(indexdef, ';' ORDER BY indexname)) FROM pg_indexes
   WHERE schemaname = 'public'),
 'index_count', (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'),
 'invalid_indexes', (SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready),
 'constraints', (SELECT md5(string_agg(conrelid::regclass || '.' || conname || ':' ||
   pg_get_constraintdef(oid) || convalidated::text, ';' ORDER BY conrelid::regclass::text, conname))
   FROM pg_constraint WHERE connamespace = 'public'::regnamespace),
 'constraint_count', (SELECT count(*) FROM pg_constraint
   WHERE connamespace = 'public'::regnamespace),
 'triggers', (SELECT md5(string_agg(tgrelid::regclass || '.' || tgname || ':' ||
   tgenabled::text, ';' ORDER BY tgrelid::regclass::text, tgname)) FROM pg_trigger)
)::text;
"""
LEFTOVERS_SQL = """
SELECT json_build_object(
 'temp_tables', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname LIKE 'pg_temp%' AND c.relkind IN ('r', 'p')),
 'import_tables', (SELECT count(*) FROM pg_class WHERE relname LIKE 'enswitch_import%'),
 'prepared_xacts', (SELECT count(*) FROM pg_prepared_xacts),
 'sequences', (SELECT json_object_agg(sequencename, last_value) FROM pg_sequences
   WHERE sequencename LIKE 'cdrs_%')
)::text;
"""


def sql_json(cluster: Cluster, db: str, sql: str) -> dict[str, Any]:
    try:
        text = cluster.psql(db, sql)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"psql: {(exc.stderr or '').strip()}") from None
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def backends(cluster: Cluster, db: str) -> list[str]:
    out = cluster.psql(
        "postgres",
        "SELECT pid || ' ' || coalesce(state, '') || ' ' || left(query, 60) FROM pg_stat_activity "
        f"WHERE datname = '{db}' AND backend_type = 'client backend'",
    )
    return [line for line in out.splitlines() if line.strip()]


def copy_progress(cluster: Cluster, db: str) -> str:
    return cluster.psql(
        "postgres",
        "SELECT coalesce(string_agg(tuples_processed || ' rows copied', ', '), '') "
        f"FROM pg_stat_progress_copy WHERE datname = '{db}'",
    ).strip()


def file_position(pid: int, name: str) -> int | None:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                return int(re.search(r"pos:\s+(\d+)", info).group(1))
    except (OSError, AttributeError):
        return None
    return None


def pgsql_tmp_files(cluster: Cluster) -> list[str]:
    found = []
    for tmp in cluster.data.glob("base/pgsql_tmp"):
        found += [p.name for p in tmp.iterdir()]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def start_import(fc: Cluster, db: str, files: dict[str, Path], label: str) -> subprocess.Popen:
    """`manage.py import_dataset --cdrs big.jsonl` in a subprocess, with a TMPDIR of its own."""
    tmp = REL / "tmp-import"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {**os.environ, "DATABASE_URL": fc.db_url(db) + "?application_name=reliability-import",
           "SECRET_KEY": "bench-secret-key-" + "x" * 40, "TMPDIR": str(tmp)}  # fmt: skip
    log = REL / f"import-{re.sub(r'[^a-z0-9]+', '-', label)}.log"
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "import_dataset", "--cdrs", str(files["big"])],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip


def wait_writing(fc: Cluster, db: str, proc: subprocess.Popen) -> float:
    """When the import's backend was first seen writing legs (COPY or INSERT)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(" COPY" in b.upper() or " INSERT" in b.upper() for b in backends(fc, db)):
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"the import never started writing (exit status {proc.poll()})")


def control_import(fc: Cluster, db: str, files: dict[str, Path], big_legs: int, test: str,
                   label: str, checks: Checks) -> float:  # fmt: skip
    """The same import, not killed, into a copy of the database: it loads every leg.
    Returns how long it wrote (from its first COPY/INSERT to its end)."""
    copy = f"{db}_control"
    fc.psql("postgres", f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")
    fc.psql("postgres", f"CREATE DATABASE {copy} TEMPLATE {db}")
    before = sql_json(fc, copy, SNAPSHOT_SQL)
    proc = start_import(fc, copy, files, label)
    try:
        writing = wait_writing(fc, copy, proc)
        proc.wait(1800)
        seconds = time.time() - writing
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    after = sql_json(fc, copy, SNAPSHOT_SQL)
    fc.psql("postgres", f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")
    loaded = after["legs"] + after["archived_legs"] - before["legs"] - before["archived_legs"]
    detail = f"{loaded:,} legs, exit status {proc.returncode}, {seconds:.1f} s writing"
    ok = proc.returncode == 0 and loaded == big_legs
    checks.check(test, f"{label}: the import, not killed, loads all {big_legs:,} legs", ok, detail)
    return seconds


def kill_round(fc: Cluster, db: str, files: dict[str, Path], delay: float, test: str,
               label: str, checks: Checks) -> dict[str, Any]:  # fmt: skip
    before = sql_json(fc, db, SNAPSHOT_SQL)
    tmp = REL / "tmp-import"
    proc = start_import(fc, db, files, label)
    result: dict[str, Any] = {"delay_s": round(delay, 2)}
    children: list[int] = []
    try:
        writing = wait_writing(fc, db, proc)
        while time.time() < writing + delay and proc.poll() is None:
            time.sleep(0.02)
        size = files["big"].stat().st_size
        position = file_position(proc.pid, files["big"].name)
        result["read_share"] = round(position / size, 3) if position is not None else None
        result["backend_at_kill"] = backends(fc, db)
        result["copy_progress_at_kill"] = copy_progress(fc, db)
        children = _children(proc.pid)
        result["children_at_kill"] = len(children)
        killed_running = proc.poll() is None
        if killed_running:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        killed_at = time.time()
        result["returncode"] = proc.returncode
        result["doing"] = " ".join((result["backend_at_kill"] or ["?"])[0].split()[1:4])
        checks.check(test, f"{label}: killed while loading (after {delay:.2f} s of writing, "
                     f"{100 * (result['read_share'] or 0):.0f}% of big.jsonl read)",
                     killed_running and proc.returncode == -signal.SIGKILL,
                     f"backend: {result['backend_at_kill']}; COPY progress: "
                     f"{result['copy_progress_at_kill'] or '-'}")  # fmt: skip
        # Worker processes must not outlive the import.
        deadline = time.time() + 15
        while time.time() < deadline and any(alive(p) for p in children):
            time.sleep(0.1)
        orphans = [p for p in children if alive(p)]
        checks.check(test, f"{label}: no worker process left", not orphans,
                     f"{len(children)} workers at the kill; left: {orphans}")  # fmt: skip
        deadline = time.time() + 180
        while time.time() < deadline and backends(fc, db):
            time.sleep(0.1)
        left = backends(fc, db)
        result["backend_gone_s"] = round(time.time() - killed_at, 2)
        detail = f"after {result['backend_gone_s']} s" + (f"; left: {left}" if left else "")
        checks.check(test, f"{label}: the import's backend ended", not left, detail)
        after = sql_json(fc, db, SNAPSHOT_SQL)
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        checks.check(test, f"{label}: legs, costs, indexes, constraints, triggers unchanged",
                     not changed, f"{after['legs']:,} + {after['archived_legs']:,} archived legs, "
                     f"{after['costs']:,} + {after['archived_costs']:,} costs, "
                     f"{after['index_count']} indexes, {after['constraint_count']} constraints"
                     + (f"; CHANGED: {changed}" if changed else ""))  # fmt: skip
        leftovers = sql_json(fc, db, LEFTOVERS_SQL)
        tmp_files = [p.name for p in tmp.iterdir()]
        pg_tmp = pgsql_tmp_files(fc)
        checks.check(test, f"{label}: no staging/temporary table, prepared transaction or "
                     "temporary file left",
                     not (leftovers["temp_tables"] or leftovers["import_tables"]
                          or leftovers["prepared_xacts"] or tmp_files or pg_tmp),
                     f"{leftovers}; TMPDIR files {tmp_files}; pgsql_tmp {pg_tmp}")  # fmt: skip
        result.update(before=before, after=after, leftovers=leftovers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for p in children:
            if alive(p):
                os.kill(p, signal.SIGKILL)
    return result


def test_import_kill(fc: Cluster, files: dict[str, Path], args: argparse.Namespace,
                     checks: Checks) -> dict[str, Any]:  # fmt: skip
    test = "import-kill"
    print(f"== {test}", flush=True)
    rng = random.Random(args.seed)
    big_legs = sum(1 for _ in open(files["big"], "rb"))  # noqa: SIM115
    out: dict[str, Any] = {"big_legs": big_legs, "rounds": []}
    for writer, preload in (("staged", files["small"]), ("bulk", None)):
        db = f"rel_import_{writer}"
        fresh_database(fc, db)
        cmd = ["import_dataset", str(files["main"])] + (["--cdrs", str(preload)] if preload else [])
        manage(*cmd, db_url=fc.db_url(db), stdout=subprocess.DEVNULL)
        writing = control_import(fc, db, files, big_legs, test, f"{writer} writer", checks)
        out[f"{writer}_writing_s"] = round(writing, 1)
        for i in range(args.kill_rounds):
            delay = rng.uniform(0.05, 0.95) * writing
            label = f"{writer} writer, round {i + 1}"
            print(f" - {label}: SIGKILL {delay:.2f} s after it starts writing", flush=True)
            r = kill_round(fc, db, files, delay, test, label, checks)
            out["rounds"].append({"writer": writer, **{k: r.get(k) for k in (
                "delay_s", "read_share", "copy_progress_at_kill", "children_at_kill",
                "backend_gone_s", "returncode", "doing")}})  # fmt: skip
        fc.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return out


# --------------------------------------------------------------------------- c. stream kill
class Monitor:
    """pg_stat_activity and the shared cache, seen from our own connection."""

    def __init__(self, cluster: Cluster, db: str, user_id: int) -> None:
        self.conn = psycopg.connect(cluster.db_url(db), autocommit=True)
        self.db, self.user_id = db, user_id

    def close(self) -> None:
        self.conn.close()

    def server_backends(self) -> list[tuple]:
        """(pid, state, query) of the backends of the servers started here."""
        return self.conn.execute(
            "SELECT pid, state, left(query, 50) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = %s AND pid <> pg_backend_pid() ORDER BY pid",
            (self.db, APP),
        ).fetchall()

    def busy(self) -> list[tuple]:
        """Backends in a transaction (a cursor open), running something, or holding locks."""
        rows = self.conn.execute(
            "SELECT a.pid, a.state, left(a.query, 50), "
            "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype <> 'virtualxid') "
            "FROM pg_stat_activity a WHERE a.datname = %s AND a.application_name = %s "
            "AND a.pid <> pg_backend_pid()",
            (self.db, APP),
        ).fetchall()
        return [r for r in rows if r[1] != "idle" or r[3] > 0]

    def slot(self) -> tuple[Any, float | None]:
        """The user's stream-slot counter and the seconds until it expires."""
        value, expires = self.slot_expires()
        return value, None if expires is None else expires - time.time()

    def slot_expires(self) -> tuple[Any, float | None]:
        """The user's stream-slot counter and when it expires (Unix time)."""
        # One cache key per slot held (enswitch/api/throttle.py): the number of live keys
        # is the number of slots in use, the last to expire says when all are free.
        row = self.conn.execute(
            "SELECT count(*), extract(epoch FROM max(expires)) FROM enswitch_cache "
            "WHERE cache_key LIKE %s AND expires > now()",
            (f"%stream:{self.user_id}:%",),
        ).fetchone()
        if not row or not row[0]:
            return 0, None
        return row[0], float(row[1])

    def wait_gone(self, timeout: float) -> tuple[float, list[tuple]]:
        """Until no backend of the servers started here is left."""
        started = time.time()
        while time.time() - started < timeout:
            if not self.server_backends():
                return time.time() - started, []
            time.sleep(0.05)
        return time.time() - started, self.server_backends()

    def wait_idle(self, timeout: float) -> tuple[float, list[tuple]]:
        started = time.time()
        while time.time() - started < timeout:
            busy = self.busy()
            if not busy:
                return time.time() - started, []
            time.sleep(0.05)
        return time.time() - started, self.busy()


def open_stream(
    port: int, params: dict[str, str], megabytes: float
) -> tuple[http.client.HTTPConnection, Any, int, bytes]:
    """Start an answer and read about `megabytes` of it (the rest stays unread)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("GET", path_for("list", params))
    conn.client_port = conn.sock.getsockname()[1]  # http.client drops sock on "close"
    resp = conn.getresponse()
    got = 0
    head = b""
    while got < megabytes * 1e6:
        chunk = resp.read1(1 << 16) if hasattr(resp, "read1") else resp.read(1 << 16)
        if not chunk:
            break
        if not head:
            head = chunk[:200]
        got += len(chunk)
    return conn, resp, got, head


def hang_up(conn: http.client.HTTPConnection, resp: Any) -> None:
    """Close the client's side: the response holds the socket's last reference."""
    resp.close()
    conn.close()


def try_export(port: int, params: dict[str, str]) -> str:
    """Start an export, read a little, hang up: '200' or the envelope's code and key."""
    conn, resp, _, head = open_stream(port, params, 0.2)
    hang_up(conn, resp)
    if head.startswith(b'{"responses":[{"code":"200"'):
        return "200"
    return outcome(200, "application/json", head)


def serving_worker(port: int, client_port: int) -> int | None:
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout  # fmt: skip
    for line in out.splitlines():
        if re.search(rf"127\.0\.0\.1:{client_port}\s", line + " "):
            found = re.search(r"pid=(\d+)", line)
            if found:
                return int(found.group(1))
    return None


def normal_answers(port: int, q: dict[str, dict[str, str]], n: int = 12) -> Counter:
    results = Counter()
    for i in range(n):
        params = q[("Q1", "Q8", "Q2")[i % 3]]
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("GET", path_for("list", params))
            resp = conn.getresponse()
            results[outcome(resp.status, resp.getheader("Content-Type", ""), resp.read())] += 1
        except (OSError, http.client.HTTPException) as exc:
            results[f"transport {type(exc).__name__}"] += 1
        finally:
            conn.close()
    return results


def full_small_stream(port: int, params: dict[str, str]) -> str:
    """A small limit=0 answer read to the end: '200 (N rows)' or what went wrong."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request("GET", path_for("list", params))
        resp = conn.getresponse()
        body = resp.read()
        result = outcome(resp.status, resp.getheader("Content-Type", ""), body)
        if result == "200":
            return f"200 ({len(json.loads(body)['data'])} rows)"
        return result
    except (OSError, http.client.HTTPException) as exc:
        return f"transport {type(exc).__name__}"
    finally:
        conn.close()


def test_stream_kill(args: argparse.Namespace, checks: Checks) -> dict[str, Any]:
    test = "stream-kill"
    print(f"== {test}", flush=True)
    db = f"bench_{args.legs}"
    cluster, started = open_cluster(Path(args.pgdir).resolve())
    out: dict[str, Any] = {"db": db}
    servers: list[ReliabilityServer] = []
    monitor = None
    try:
        ensure_bench_database(cluster, db, args.legs, args.customers)
        django_on(cluster.db_url(db))
        from customers.models import Customer, Role, User

        scenario = prepare_scenario(1000)
        q = queries(scenario)
        user = User.objects.filter(username=EXPORTER).first() or User(username=EXPORTER)
        user.customer = Customer.objects.system_owner()
        user.role, user.enabled = Role.objects.get(id=990001), True
        user.set_password(BENCH_PASSWORD)
        user.save()
        cache_key = f"%stream:{user.pk}:%"
        cluster.psql(db, f"DELETE FROM enswitch_cache WHERE cache_key LIKE '{cache_key}'")
        export = {"auth_username": EXPORTER, "auth_password": BENCH_PASSWORD,
                  "customer": "system", "limit": "0"}  # fmt: skip
        small_export = {**q["Q8"], "limit": "0"}
        monitor = Monitor(cluster, db, user.pk)
        log = REL / "gunicorn-faults.log"
        port = free_port()
        server = ReliabilityServer(app_url(cluster, db), port, args.workers, env={}, log=log)
        servers.append(server.__enter__())
        out["legs_exported_table"] = cluster.psql(db, "SELECT count(*) FROM cdrs_leg").strip()
        mb = args.stream_mb

        def start_export(label: str) -> tuple[Any, Any, int | None, list]:
            conn, resp, got, head = open_stream(port, export, mb)
            ok = head.startswith(b'{"responses":[{"code":"200"')
            worker = serving_worker(port, conn.client_port)
            time.sleep(0.5)  # the worker is now blocked writing to us
            busy = monitor.busy()
            value, ttl = monitor.slot()
            checks.check(test, f"{label}: export streaming, {got / 1e6:.1f} MB read",
                         ok and worker is not None,
                         f"worker {worker}, its backend: {busy}, slot counter {value} "
                         f"(expires in {ttl or 0:.0f} s)")  # fmt: skip
            return conn, resp, worker, busy

        # (1) The client hangs up.
        label = "client hangs up"
        workers = sorted(server.worker_pids())
        conn, resp, worker, _ = start_export(label)
        resp.close()  # the socket's last reference: the connection is closed
        conn.close()
        seconds, busy = monitor.wait_idle(30)
        checks.check(test, f"{label}: the worker ended its query and transaction", not busy,
                     f"in {seconds:.2f} s" + (f"; still: {busy}" if busy else ""))  # fmt: skip
        time.sleep(0.5)
        value, ttl = monitor.slot()
        checks.check(test, f"{label}: stream slot given back", value in (0, None),
                     f"counter {value}")  # fmt: skip
        answers = normal_answers(port, q)
        same = sorted(server.worker_pids()) == workers
        checks.check(test, f"{label}: the same workers keep serving", same
                     and set(answers) == {"200"}, f"{dict(answers)}; workers {workers} -> "
                     f"{sorted(server.worker_pids())}")  # fmt: skip
        out["hang_up"] = {"idle_after_s": round(seconds, 2), "slot": value}

        # (2) The worker serving the export is killed.
        label = "worker SIGKILLed"
        conn, resp, worker, busy_before = start_export(label)
        if worker is None:
            raise RuntimeError("could not tell which worker serves the export")
        os.kill(worker, signal.SIGKILL)
        seconds, busy = monitor.wait_idle(30)
        hang_up(conn, resp)
        gone = {b[0] for b in busy_before} - {b[0] for b in monitor.server_backends()}
        checks.check(test, f"{label}: its backend ended (no transaction, cursor or lock left)",
                     not busy and bool(gone), f"in {seconds:.2f} s; backends ended: {sorted(gone)}"
                     + (f"; still: {busy}" if busy else ""))  # fmt: skip
        value, ttl = monitor.slot()
        out["worker_kill"] = {"idle_after_s": round(seconds, 2), "slot": value,
                              "slot_expires_in_s": ttl}  # fmt: skip
        print(f"  stream slot counter after the kill: {value}, expires in {ttl or 0:.0f} s",
              flush=True)  # fmt: skip
        server.wait_workers()
        answers = normal_answers(port, q)
        small = full_small_stream(port, small_export)
        checks.check(test, f"{label}: gunicorn replaced the worker and answers normally",
                     set(answers) == {"200"} and small.startswith("200"),
                     f"{dict(answers)}; a small limit=0 export read to the end: {small}; "
                     f"workers {sorted(server.worker_pids())}")  # fmt: skip
        # One slot leaked (of 2): the user can still export.
        answer = try_export(port, export)
        seconds, busy = monitor.wait_idle(30)
        value, ttl = monitor.slot()
        out["export_with_one_leaked_slot"] = answer
        checks.check(test, f"{label}: with one slot leaked the user can still export",
                     answer == "200" and not busy,
                     f"{answer}; slot counter {value} afterwards")  # fmt: skip

        # (3) All of gunicorn is killed.
        label = "gunicorn SIGKILLed"
        conn, resp, worker, busy_before = start_export(label)
        pids = [server.proc.pid, *server.worker_pids()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        server.proc.wait(10)
        seconds, left = monitor.wait_gone(30)
        hang_up(conn, resp)
        checks.check(test, f"{label}: every backend of it ended (no transaction, cursor or "
                     "lock left)", not left,
                     f"in {seconds:.2f} s" + (f"; left: {left}" if left else ""))  # fmt: skip
        value, ttl = monitor.slot()
        out["server_kill"] = {"gone_after_s": round(seconds, 2), "slot": value,
                              "slot_expires_in_s": ttl}  # fmt: skip
        print(f"  stream slot counter after the kill: {value}, expires in {ttl or 0:.0f} s",
              flush=True)  # fmt: skip
        port = free_port()
        server = ReliabilityServer(app_url(cluster, db), port, args.workers, env={}, log=log)
        servers.append(server.__enter__())
        answers = normal_answers(port, q)
        small = full_small_stream(port, small_export)
        checks.check(test, f"{label}: a restarted server answers normally",
                     set(answers) == {"200"} and small.startswith("200"),
                     f"{dict(answers)}; small limit=0 export: {small}")  # fmt: skip

        # The leaked slots.
        limit = int(os.environ.get("ENSWITCH_MAX_STREAMS_PER_USER", "2"))
        bound = int(os.environ.get("ENSWITCH_EXPORT_TIMEOUT_MS", "600000")) // 1000 + 60
        blocked = try_export(port, export)
        value, expires = monitor.slot_expires()
        out["blocked_answer"] = blocked
        out["leaked_slots"] = value
        left_s = (expires - time.time()) if expires else 0
        checks.check(test, f"leaked slots expire within the designed bound ({bound} s)",
                     expires is None or left_s <= bound + 5,
                     f"{value} of {limit} slots taken by dead streams; a new export answers "
                     f"{blocked!r}; the counter expires in {left_s:.0f} s")  # fmt: skip
        if blocked != "200":
            time.sleep(args.retry_after)
            again = try_export(port, export)
            value2, expires2 = monitor.slot_expires()
            pushed = (expires2 or 0) - (expires or 0)
            out["retry"] = {"answer": again, "expiry_pushed_s": round(pushed, 1)}
            checks.check(test, "a refused export does not push the leaked slots' expiry",
                         pushed <= 1,
                         f"retried {args.retry_after:.0f} s later: {again!r}; the expiry moved "
                         f"{pushed:+.0f} s (counter {value2})"
                         + ("" if pushed <= 1 else ": a client retrying more often than the "
                            "expiry would stay locked out"))  # fmt: skip
            expires = expires2
        if blocked != "200" and not args.no_wait_slot_expiry and expires is not None:
            wait = max(0.0, expires - time.time()) + 2
            print(f"  waiting {wait:.0f} s for the slot counter to expire", flush=True)
            time.sleep(wait)
            answer = try_export(port, export)
            monitor.wait_idle(30)
            out["export_after_expiry"] = answer
            checks.check(test, "once the counter has expired the user can export again",
                         answer == "200", answer)  # fmt: skip
        elif blocked != "200":
            # Not waited for: free the test user's slots so the next run starts clean.
            cluster.psql(db, f"DELETE FROM enswitch_cache WHERE cache_key LIKE '{cache_key}'")
            out["slot_cleanup"] = "deleted the leaked counter (--no-wait-slot-expiry)"
        seconds, busy = monitor.wait_idle(30)
        checks.check(test, "at the end no backend of the servers is busy", not busy,
                     f"{busy}" if busy else "")  # fmt: skip
        out["log"] = server.log_summary()
    finally:
        for s in servers:
            s.__exit__()
        if monitor is not None:
            monitor.close()
        if started:
            cluster.stop()
    return out


# --------------------------------------------------------------------------- results
def _short(text: str, size: int = 200) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def report_markdown(results: dict[str, Any], checks: Checks, info: dict[str, Any]) -> str:
    lines = ["### Fault tests (bench/faults.py)", "", f"Command: `{info['command']}`", "",
             f"Run: {info['when']}; {info['machine']}; load average before: "
             f"{info['load_before']}; --seed {info['seed']}.", ""]  # fmt: skip
    for test in TESTS:
        if test not in results:
            continue
        r = results[test]
        failed = checks.failed(test)
        lines += [f"#### {test}: **{'FAIL' if failed else 'PASS'}**", ""]
        if test == "postgres-restart":
            lines += [
                f"{info['restart_clients']} clients for {info['restart_seconds']:.0f} s "
                f"({r['requests']} requests), gunicorn with {info['workers']} workers on a "
                "20,000-leg database of a throwaway cluster; `pg_ctl stop -m fast` took "
                f"{r['stop_s']:.2f} s, the cluster stayed down {r['down_s']:.1f} s, "
                f"`pg_ctl start` took {r['start_s']:.2f} s; first 200 after the restart "
                f"{r['first_ok_after_restart_s'] or 0:.2f} s after it.",
                "",
                "| phase | answers | slowest |",
                "|---|---|---|",
            ]
            for phase, counts in r["phases"].items():
                shown = ", ".join(f"{k}: {v}" for k, v in counts.items())
                lines.append(f"| {phase[2:]} | {shown} | {r['slowest_s'][phase]:.2f} s |")
            lines.append("")
        elif test == "import-kill":
            lines += [
                f"`manage.py import_dataset --cdrs big.jsonl` ({r['big_legs']:,} legs), "
                "SIGKILLed; staged writer: into a database holding 20,000 legs; bulk writer: "
                "into one holding only the main file (no legs). The same import, not killed "
                f"(into a copy), wrote for {r.get('staged_writing_s', '-')} s (staged) and "
                f"{r.get('bulk_writing_s', '-')} s (bulk); each kill came at a random point of "
                "that time.",
                "",
                "| writer | killed after writing for | big.jsonl read | backend doing | "
                "checker processes | backend gone after |",
                "|---|---|---|---|---|---|",
            ]
            for x in r["rounds"]:
                share = f"{100 * x['read_share']:.0f}%" if x["read_share"] is not None else "?"
                lines.append(f"| {x['writer']} | {x['delay_s']} s | {share} | "
                             f"`{x['doing']}` | {x['children_at_kill']} | "
                             f"{x['backend_gone_s']} s |")  # fmt: skip
            lines.append("")
        elif test == "stream-kill":
            hang, wk, sk = r.get("hang_up", {}), r.get("worker_kill", {}), r.get("server_kill", {})
            text = (
                f"`customer=system;limit=0` export on `{r['db']}` "
                f"({int(r.get('legs_exported_table', 0)):,} hot legs), gunicorn with "
                f"{info['workers']} workers, {info['stream_mb']} MB read, then: (1) the client "
                f"hangs up: the worker ended its transaction in {hang.get('idle_after_s')} s and "
                f"gave its stream slot back; (2) the worker is SIGKILLed: its backend was gone "
                f"in {wk.get('idle_after_s')} s, the slot counter stayed at {wk.get('slot')}; "
                f"(3) all of gunicorn is SIGKILLed: its backends were gone in "
                f"{sk.get('gone_after_s')} s, the counter stayed at {sk.get('slot')} "
                f"(expiring in {sk.get('slot_expires_in_s') or 0:.0f} s). A new export by that "
                f"user then answered `{r.get('blocked_answer')}`"
            )
            if "retry" in r:
                text += (f"; retried {info['retry_after']:.0f} s later: "
                         f"`{r['retry']['answer']}`, and the counter's expiry moved "
                         f"{r['retry']['expiry_pushed_s']:+.0f} s")  # fmt: skip
            if "export_after_expiry" in r:
                text += f"; once it had expired: `{r['export_after_expiry']}`"
            lines += [text + ".", ""]
        for t, name, ok, detail in checks.items:
            if t == test:
                shown = f" ({_short(detail)})" if detail else ""
                lines.append(f"- {'ok' if ok else '**FAIL**'}: {name}{shown}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(TESTS), help=",".join(TESTS))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--restart-seconds", type=float, default=40)
    parser.add_argument("--restart-clients", type=int, default=4)
    parser.add_argument("--small-legs", type=int, default=20_000)
    parser.add_argument("--big-legs", type=int, default=300_000)
    parser.add_argument("--kill-rounds", type=int, default=2, help="kills per writer")
    parser.add_argument("--legs", type=int, default=1_000_000, help="stream-kill's database")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--pgdir", default=str(WORK / "pg"), help="stream-kill's cluster")
    parser.add_argument("--stream-mb", type=float, default=4.0)
    parser.add_argument("--no-wait-slot-expiry", action="store_true")
    parser.add_argument(
        "--retry-after", type=float, default=20, help="seconds before retrying a refused export"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--no-results", action="store_true", help="don't write results.md")
    args = parser.parse_args()
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(only) - set(TESTS)
    if unknown:
        parser.error(f"unknown test(s): {', '.join(sorted(unknown))}")
    REL.mkdir(parents=True, exist_ok=True)
    (REL / "gunicorn-faults.log").write_text("")  # this run's servers only
    print(f"seed {args.seed}", flush=True)
    load_before = load_average()
    checks = Checks()
    results: dict[str, Any] = {}
    fc = None
    try:
        if "postgres-restart" in only or "import-kill" in only:
            files = faults_dataset(args)
            fc, _ = open_cluster(REL / "pg-faults")  # ours alone: stopped at the end
            for test, run in (("postgres-restart", test_postgres_restart),
                              ("import-kill", test_import_kill)):  # fmt: skip
                if test in only:
                    try:
                        results[test] = run(fc, files, args, checks)
                    except Exception as exc:  # noqa: BLE001 - reported as a failed check
                        checks.check(test, "ran to the end", False, f"{type(exc).__name__}: {exc}")
                        results.pop(test, None)
        if "stream-kill" in only:
            try:
                results["stream-kill"] = test_stream_kill(args, checks)
            except Exception as exc:  # noqa: BLE001 - reported as a failed check
                checks.check("stream-kill", "ran to the end", False,
                             f"{type(exc).__name__}: {exc}")  # fmt: skip
    finally:
        if fc is not None:
            fc.stop()
    failed = checks.failed()
    info = {
        "command": " ".join([".venv/bin/python bench/faults.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": ", ".join(f"{k} {v}" for k, v in machine().items()),
        "load_before": load_before, "workers": args.workers,
        "restart_clients": args.restart_clients, "restart_seconds": args.restart_seconds,
        "stream_mb": args.stream_mb, "retry_after": args.retry_after, "seed": args.seed,
    }  # fmt: skip
    print(json.dumps(results, indent=1, default=str))
    if not args.no_results:
        write_results("faults", report_markdown(results, checks, info))
        print(f"wrote {RESULTS}")
    for test, name, _, detail in failed:
        print(f"FAIL {test}: {name}: {detail}")
    print("PASS" if not failed else f"FAIL ({len(failed)} of {len(checks.items)} checks)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
