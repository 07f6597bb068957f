"""API reads on a hot standby against the primary alone, in the same run.

    .venv/bin/python bench/replicas.py                      # 1,000,000 legs
    .venv/bin/python bench/replicas.py --legs 200000 --requests 100 --seconds 10

Builds (or, with --reuse, keeps) a store on a primary of its own in bench/work/, makes a
hot standby of it (pg_basebackup -R), and serves the same store with two gunicorns at
once: one on the primary alone, one with DATABASE_REPLICA_URLS on the standby. It then
measures, alternating between the two: Q1 and Q2 of bench/run.py (p50/p95/p99 over
--requests requests, two rounds each) and Q7 (Q1 from 8 concurrent clients for --seconds),
counting every answer that is not a 200 envelope as an error, and the transactions the
standby served. Last, in this process, the routing's own cost per request: choosing the
node (enswitch.replicas.serve_reads) and reading the user's customer there (the work a
request with replicas does that one without them does not). Both nodes share this
machine's cores, so the point is the overhead and the errors, not the capacity.
Writes bench/replicas-results.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pgcluster import SERVER_SETTINGS, Cluster, _as_postgres, free_port  # noqa: E402
from bench.run import (  # noqa: E402
    WORK,
    Server,
    build_database,
    machine,
    measure_concurrency,
    measure_latency,
    prepare_scenario,
    queries,
    setup_django,
)

# Two clusters on one machine: half the benchmark's memory each.
SERVER_SETTINGS.update({"shared_buffers": "2GB", "effective_cache_size": "8GB"})
STANDBY_SETTINGS = "hot_standby = on\nhot_standby_feedback = on\n"


def make_standby(primary: Cluster, directory: Path) -> Cluster:
    """A fresh copy of the primary (a standby left from an earlier run may lack WAL the
    primary has recycled since)."""
    shutil.rmtree(directory, ignore_errors=True)
    standby = Cluster(directory)
    if not (standby.data / "PG_VERSION").exists():
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres", str(directory)], check=True)
        _as_postgres(
            [str(Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")) / "pg_basebackup"),
             "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
             "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"],
        )  # fmt: skip
        _as_postgres(["tee", "-a", str(standby.data / "postgresql.auto.conf")],
                     input=STANDBY_SETTINGS.encode(), stdout=subprocess.DEVNULL)  # fmt: skip
    standby.start()
    return standby


def wait_for_replay(primary: Cluster, standby: Cluster, db: str) -> None:
    position = primary.psql(db, "SELECT pg_current_wal_flush_lsn()").strip()
    sql = f"SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn"
    while standby.psql("postgres", sql).strip() != "t":
        time.sleep(0.05)


def standby_transactions(standby: Cluster, db: str) -> int:
    sql = f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{db}'"
    return int(standby.psql("postgres", sql).strip())


def routing_overhead(username: str, n: int) -> dict[str, float]:
    """Milliseconds per request of serve_reads' choice and the customer read on the node."""
    from django.db import connections

    from cdrs.scope import _place_on, as_the_reads_see_it
    from customers.models import User
    from enswitch import replicas

    user = User.objects.for_api().get(username=username)
    result = {}
    parts = {
        "choice": lambda: None,
        "choice+place": lambda: as_the_reads_see_it(user),
        # For scale: the same query on the primary, outside any routing.
        "place query on the primary alone": lambda: _place_on("default", user.customer_id),
    }
    for part, work in parts.items():
        samples, chosen = [], set()
        for _ in range(n):
            replicas._reads_on_primary()
            started = time.perf_counter()
            replicas.serve_reads(work) if part.startswith("choice") else work()
            samples.append((time.perf_counter() - started) * 1000)
            chosen.add(replicas.reads_alias())
        qs = statistics.quantiles(samples, n=100, method="inclusive")
        result[part] = {
            "p50": qs[49],
            "p95": qs[94],
            "p99": qs[98],
            "nodes": ",".join(sorted(chosen)),
        }
    connections.close_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--reuse", action="store_true", help="keep the store of an earlier run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "replicas-results.md"))
    parser.add_argument(
        "--overhead-only", action="store_true", help="only the routing's cost, no servers"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    db = f"bench_{args.legs}"
    primary = Cluster(WORK / "replica-primary")
    primary.start()
    standby = None
    try:
        if not (args.reuse and primary.database_exists(db)):
            build_database(primary, db, args.legs, args.customers)
        standby = make_standby(primary, WORK / "replica-standby")
        primary_url, standby_url = primary.db_url(db), standby.db_url(db)
        os.environ["DATABASE_REPLICA_URLS"] = standby_url
        setup_django(primary_url)
        scenario = prepare_scenario(export_rows=1000)
        wait_for_replay(primary, standby, db)
        q = queries(scenario)
        if args.overhead_only:
            print("routing overhead", routing_overhead(scenario.customer_user, 2000))
            return
        del os.environ["DATABASE_REPLICA_URLS"]
        alone = Server(primary_url, free_port(), args.workers).__enter__()
        os.environ["DATABASE_REPLICA_URLS"] = standby_url
        routed = Server(primary_url, free_port(), args.workers).__enter__()
        rows: list[tuple[str, str, str, str]] = []
        try:
            for qid in ("Q1", "Q2"):
                for rnd in (1, 2):
                    for name, server in (("primary alone", alone), ("standby", routed)):
                        before = standby_transactions(standby, db)
                        p, n = measure_latency(server.port, q[qid], args.requests)
                        served = standby_transactions(standby, db) - before
                        latency = ", ".join(f"{k} {v:.2f} ms" for k, v in p.items())
                        answers = f"{n} rows; 0 errors; {served} standby transactions"
                        rows.append((f"{qid} round {rnd}", name, latency, answers))
                        print(rows[-1], flush=True)
            for name, server in (("primary alone", alone), ("standby", routed)):
                before = standby_transactions(standby, db)
                r = measure_concurrency(server.port, q["Q1"], 8, args.seconds)
                served = standby_transactions(standby, db) - before
                answers = f"{r['ok']} ok, {r['errors']} errors; {served} standby transactions"
                rate = f"{r['requests_per_s']:.0f} requests/s"
                rows.append(("Q7 (Q1, 8 clients)", name, rate, answers))
                print(rows[-1], flush=True)
        finally:
            alone.__exit__()
            routed.__exit__()
        overhead = routing_overhead(scenario.customer_user, 2000)
        print("routing overhead", overhead, flush=True)
        write(Path(args.out), args, rows, overhead)
        print(f"wrote {args.out}")
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()


def write(path: Path, args: argparse.Namespace, rows: list, overhead: dict) -> None:
    info = machine()
    lines = [
        "# Reads on a hot standby against the primary alone",
        "",
        f"`bench/replicas.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"({args.legs:,} legs, {args.customers:,} customers; {args.workers} gunicorn workers "
        f"per server, both servers and both PostgreSQL clusters on this machine; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        + ", ".join(f"{k}: {v}" for k, v in info.items())
        + ")",
        "",
        "| query | reads on | latency / throughput | answers |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "Routing overhead per request, in this process, over 2,000 requests each:",
        "",
        *[
            f"- {part} (on {o['nodes']}): p50 {o['p50']:.3f} ms, p95 {o['p95']:.3f} ms, "
            f"p99 {o['p99']:.3f} ms"
            for part, o in overhead.items()
        ],  # fmt: skip
        "",
        "`choice`: serve_reads' choice of the node (the remembered verdict, checks included); "
        "`choice+place`: and reading the user's place in the tree on that node.",
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
