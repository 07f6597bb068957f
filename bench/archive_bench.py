"""Benchmark for `manage.py archive_cdrs` on a throwaway PostgreSQL 15 cluster.

    .venv/bin/python bench/archive_bench.py --legs 2000000

Starts a cluster in a temporary directory (as the `postgres` user when run as root),
migrates, fills the live tables with set-based SQL (about two cost records a leg),
then measures:

  (a) an archive=0-style query (one customer's legs over the last day, ordered by
      start, uniqueid, LIMIT 100), median of 50 runs, before archiving;
  (b) `manage.py archive_cdrs --older-than DAYS` moving about 90% of the legs: legs/s;
  (c) the same query after archiving, then again after VACUUM ANALYZE;

checks that every leg and cost record is still there exactly once, prints the figures
and appends them to bench/archive-results.md with the machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
DAY = 86_400
CUSTOMERS = 50  # children of the system owner (id 1): ids 2 .. CUSTOMERS + 1

QUERY_LIVE = """
SELECT id, uniqueid, start, "end", scustomer_id, dcustomer_id
FROM cdrs_leg
WHERE (scustomer_id = %(c)s OR dcustomer_id = %(c)s) AND start >= %(lo)s AND start <= %(hi)s
ORDER BY start, uniqueid LIMIT 100
"""

QUERY_BOTH = """
SELECT * FROM (
  SELECT id, uniqueid, start, "end", scustomer_id, dcustomer_id, 0 AS archived FROM cdrs_leg
  WHERE (scustomer_id = %(c)s OR dcustomer_id = %(c)s) AND start >= %(lo)s AND start <= %(hi)s
  UNION ALL
  SELECT id, uniqueid, start, "end", scustomer_id, dcustomer_id, 1 FROM cdrs_archivedleg
  WHERE (scustomer_id = %(c)s OR dcustomer_id = %(c)s) AND start >= %(lo)s AND start <= %(hi)s
) legs ORDER BY start, uniqueid LIMIT 100
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd: list[str]) -> list[str]:
    # The server refuses to run as root.
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def cluster(pg_bin: Path, settings: list[str], keep: bool):
    tmp = Path(tempfile.mkdtemp(prefix="archive-bench-pg."))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    data, port = tmp / "data", free_port()
    subprocess.run(
        as_postgres(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 " + " ".join(
        f"-c {s}" for s in settings
    )
    subprocess.run(
        as_postgres(
            [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log")]
            + ["-w", "-t", "60", "-o", opts, "start"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres", data
    finally:
        subprocess.run(
            as_postgres([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        if keep:
            log(f"cluster kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def manage(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONWARNINGS": "ignore"}
    env.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    return subprocess.run(
        [str(PYTHON), str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def fill(conn: psycopg.Connection, legs: int, days: int, now: int) -> None:
    span = days * DAY
    with conn.cursor() as cur:
        cur.execute("INSERT INTO customers_currency (code, value) VALUES ('USD', 1), ('EUR', 1.1)")
        cur.execute(
            "INSERT INTO customers_customer (id, parent_id, name, bill_type, currency_id, "
            "enabled, path, depth) VALUES (1, NULL, 'Owner', 'postpaid', 'USD', true, '/1/', 0)"
        )
        cur.execute(
            "INSERT INTO customers_customer (id, parent_id, name, bill_type, currency_id, "
            "enabled, path, depth) SELECT i, 1, 'Customer ' || i, "
            "CASE WHEN i %% 3 = 0 THEN 'prepaid' ELSE 'postpaid' END, "
            "CASE WHEN i %% 4 = 0 THEN 'EUR' ELSE 'USD' END, true, '/1/' || i || '/', 1 "
            "FROM generate_series(2, %s) i",
            [CUSTOMERS + 1],
        )
        # Loading only: the rows are made consistent by construction, so the per-row
        # foreign-key triggers are skipped (superuser); archive_cdrs runs with them on.
        cur.execute("SET session_replication_role = replica")
        # Starts spread evenly over `days` up to now, in id order as a switch writes them.
        cur.execute(
            """
            INSERT INTO cdrs_leg (id, uniqueid, callid, start, "end", talktime, status,
              direction, stype, snumber, ctype, cnumber, dtype, dnumber, callername,
              callername_folded, scustomer_id, dcustomer_id, peer_id, invoice_id, card_id)
            SELECT i, s || '.' || i, 'call' || (i / 2), s, s + 200 + i %% 300, i %% 200,
              (ARRAY['answer','noanswer','busy','cancel'])[1 + i %% 4],
              (ARRAY['in','out','internal'])[1 + i %% 3],
              'phone', '4420' || (7000000 + i %% 100000), 'number', '1555' || (i %% 1000000),
              'number', '1555' || (i %% 1000000), 'Caller ' || (i %% 5000),
              'caller ' || (i %% 5000), 2 + i %% %(n)s,
              CASE WHEN i %% 3 = 0 THEN 2 + (i / 7) %% %(n)s END, NULL, NULL, NULL
            FROM (SELECT i, %(t0)s + (i::bigint * %(span)s) / %(legs)s AS s
                  FROM generate_series(1, %(legs)s) i) g
            """,
            {"n": CUSTOMERS, "t0": now - span, "span": span, "legs": legs},
        )
        # Two cost records a leg: its source customer and the system owner.
        cur.execute(
            """
            INSERT INTO cdrs_legcost (leg_id, customer_id, card_id, cost, tax, currency_id)
            SELECT id, scustomer_id, NULL::bigint, (id % 1000) / 100.0, (id % 1000) / 500.0, 'USD'
            FROM cdrs_leg
            UNION ALL
            SELECT id, 1, NULL, (id % 700) / 100.0, 0, 'EUR' FROM cdrs_leg
            """
        )
        cur.execute("RESET session_replication_role")
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('cdrs_leg', 'id'), max(id)) FROM cdrs_leg"
        )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE)")
    conn.autocommit = False


def time_query(conn: psycopg.Connection, sql: str, params: dict, runs: int) -> tuple[float, str]:
    """Median milliseconds of `runs` executions, and the EXPLAIN ANALYZE of one."""
    times = []
    with conn.cursor() as cur:
        for _ in range(runs + 3):  # the first few warm the cache and the plan
            t = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            times.append((time.perf_counter() - t) * 1000)
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    conn.rollback()
    return statistics.median(times[3:]), plan


def counts(conn: psycopg.Connection) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT (SELECT count(*) FROM cdrs_leg), (SELECT count(*) FROM cdrs_archivedleg),
                   (SELECT count(*) FROM cdrs_legcost), (SELECT count(*) FROM cdrs_archivedlegcost),
                   (SELECT count(DISTINCT uniqueid) FROM (SELECT uniqueid FROM cdrs_leg
                      UNION ALL SELECT uniqueid FROM cdrs_archivedleg) u),
                   (SELECT count(*) FROM cdrs_legcost c
                      JOIN cdrs_archivedleg a ON a.id = c.leg_id),
                   (SELECT count(*) FROM cdrs_archivedlegcost c
                      JOIN cdrs_leg l ON l.id = c.leg_id)
            """
        )
        row = cur.fetchone()
    conn.rollback()
    keys = ["live", "archived", "live_costs", "archived_costs", "distinct", "stray1", "stray2"]
    return dict(zip(keys, row, strict=True))


def cluster_cpu(data: Path) -> float:
    """CPU seconds used so far by the cluster: the postmaster, its live children, and the
    children it has reaped (backends of closed connections count there)."""
    ticks = os.sysconf("SC_CLK_TCK")
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def loadavg() -> str:
    # The machine may be shared: a busy neighbour slows every figure here.
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> str:
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, {platform.platform()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--legs", type=int, default=2_000_000)
    ap.add_argument("--days", type=int, default=400, help="Spread of the legs' start times.")
    ap.add_argument("--older-than", type=int, default=40, help="Archive cut-off (days).")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="Passed to archive_cdrs --jobs.")
    ap.add_argument(
        "--no-trigger-bypass",
        action="store_true",
        help="Pass --no-trigger-bypass: the speed of a role that may not skip triggers.",
    )
    ap.add_argument("--runs", type=int, default=50, help="Executions per timed query.")
    ap.add_argument("--pg-bin", default=os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
    ap.add_argument(
        "--pg-setting",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="Server setting (repeatable). Default: a modest production-like set.",
    )
    ap.add_argument("--results", default=str(ROOT / "bench" / "archive-results.md"))
    ap.add_argument("--no-results", action="store_true", help="Do not write the results file.")
    ap.add_argument("--keep", action="store_true", help="Keep the cluster directory.")
    args = ap.parse_args()

    settings = args.pg_setting or [
        "shared_buffers=1GB",
        "max_wal_size=4GB",
        "checkpoint_timeout=15min",
        "wal_buffers=128MB",
        "fsync=on",
        "synchronous_commit=on",
    ]
    now = int(time.time())
    day_ago = {"c": 2, "lo": now - DAY, "hi": now}
    with cluster(Path(args.pg_bin), settings, args.keep) as (url, data):
        log(f"cluster up: {url} ({' '.join(settings)})")
        manage(url, "migrate", "-v0")
        with psycopg.connect(url) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
            conn.rollback()
            log(f"filling {args.legs:,} legs over {args.days} days")
            t = time.perf_counter()
            fill(conn, args.legs, args.days, now)
            before_counts = counts(conn)
            log(f"filled in {time.perf_counter() - t:.1f} s: {before_counts}")

            live_a, plan_a = time_query(conn, QUERY_LIVE, day_ago, args.runs)
            both_a, _ = time_query(conn, QUERY_BOTH, day_ago, args.runs)
            log(f"(a) before: archive=0 query {live_a:.3f} ms, archive=1 query {both_a:.3f} ms")

            cmd = ["archive_cdrs", "--older-than", str(args.older_than), "-v", "2"]
            if args.batch_size:
                cmd += ["--batch-size", str(args.batch_size)]
            if args.no_trigger_bypass:
                cmd += ["--no-trigger-bypass"]
            if args.jobs != 1:
                cmd += ["--jobs", str(args.jobs)]
            load_before = loadavg()
            log(f"(b) manage.py {' '.join(cmd)}")
            cpu_pg, ru0 = cluster_cpu(data), resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            out = manage(url, *cmd).stdout.strip()
            wall = time.perf_counter() - t
            load_after = loadavg()
            cpu_pg = cluster_cpu(data) - cpu_pg
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_py = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
            log(f"    {out}")
            log(f"    load average before {load_before}, after {load_after}")
            m = re.search(r"archived ([\d,]+) legs .* ([\d.]+) s, ([\d,]+) legs/s", out)
            moved = int(m.group(1).replace(",", "")) if m else 0
            rate = int(m.group(3).replace(",", "")) if m else 0
            log(f"    {moved:,} legs, {rate:,} legs/s (command wall time {wall:.1f} s)")
            per_cpu = moved / cpu_pg if cpu_pg else 0
            log(
                f"    PostgreSQL CPU {cpu_pg:.1f} s ({per_cpu:,.0f} legs per CPU-second), "
                f"archive_cdrs process CPU {cpu_py:.1f} s"
            )

            after_counts = counts(conn)
            ok = (
                after_counts["live"] + after_counts["archived"] == before_counts["live"]
                and after_counts["distinct"] == before_counts["live"]
                and after_counts["live_costs"] + after_counts["archived_costs"]
                == before_counts["live_costs"]
                and after_counts["stray1"] == 0
                and after_counts["stray2"] == 0
            )
            log(f"    after: {after_counts} -> {'consistent' if ok else 'INCONSISTENT'}")

            live_c, plan_c = time_query(conn, QUERY_LIVE, day_ago, args.runs)
            both_c, _ = time_query(conn, QUERY_BOTH, day_ago, args.runs)
            log(f"(c) after: archive=0 query {live_c:.3f} ms, archive=1 query {both_c:.3f} ms")
            conn.autocommit = True
            t = time.perf_counter()
            conn.execute("VACUUM (ANALYZE) cdrs_leg, cdrs_legcost")
            conn.execute("ANALYZE cdrs_archivedleg, cdrs_archivedlegcost")
            vac = time.perf_counter() - t
            conn.autocommit = False
            live_v, plan_v = time_query(conn, QUERY_LIVE, day_ago, args.runs)
            both_v, _ = time_query(conn, QUERY_BOTH, day_ago, args.runs)
            log(
                f"(c') after VACUUM ANALYZE ({vac:.1f} s): archive=0 query {live_v:.3f} ms, "
                f"archive=1 query {both_v:.3f} ms"
            )

    versions = (
        f"PostgreSQL {server}, Python {platform.python_version()}, "
        f"Django {_version('django')}, psycopg {psycopg.__version__}"
    )
    report = f"""
## {datetime.now(tz=UTC):%Y-%m-%d %H:%M} UTC: {args.legs:,} legs

- Machine: {machine()}
- Versions: {versions}
- Server settings: `{" ".join(settings)}`
- Command: `.venv/bin/python bench/archive_bench.py {" ".join(sys.argv[1:])}`
- Data: {args.legs:,} legs spread over {args.days} days, {before_counts["live_costs"]:,} cost
  records, {CUSTOMERS + 1} customers
- Archive run: `manage.py {" ".join(cmd)}`: moved {moved:,} legs at **{rate:,} legs/s**
  (command wall time {wall:.1f} s, Python start-up included; load average
  {load_before} before, {load_after} after); the cluster used {cpu_pg:.1f} CPU-seconds,
  **{per_cpu:,.0f} legs per PostgreSQL CPU-second** (background processes included:
  roughly what one job reaches on an otherwise idle core), the command's own process
  {cpu_py:.1f} CPU-seconds; result
  {"consistent" if ok else "INCONSISTENT"} ({after_counts["live"]:,} live +
  {after_counts["archived"]:,} archived legs, each once, costs with their legs)
- Query "customer 2's legs over the last day, ORDER BY start, uniqueid LIMIT 100",
  median of {args.runs} runs:

| | archive=0 (live only) | archive=1 (UNION ALL) |
|---|---|---|
| (a) before archiving | {live_a:.3f} ms | {both_a:.3f} ms |
| (c) right after archiving | {live_c:.3f} ms | {both_c:.3f} ms |
| (c') after VACUUM ANALYZE ({vac:.1f} s) | {live_v:.3f} ms | {both_v:.3f} ms |

<details><summary>archive=0 plans</summary>

Before:
```
{plan_a}
```
Right after archiving:
```
{plan_c}
```
After VACUUM ANALYZE:
```
{plan_v}
```
</details>
"""
    print(report)
    if not args.no_results:
        path = Path(args.results)
        if not path.exists():
            path.write_text(
                "# archive_cdrs benchmark results\n\nAppended by `bench/archive_bench.py`.\n"
            )
        with path.open("a") as f:
            f.write(report)
        log(f"appended to {path}")
    return 0 if ok else 1


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
