"""Timings of the admin's call-leg and customer pages at 1 million legs, on PostgreSQL.

    .venv/bin/python bench/admin.py [--legs 1000000] [--runs 7] [--keep]

Starts a PostgreSQL 15 cluster of its own in bench/work/admin-pg (bench/pgcluster.py),
builds the store once with `generate_dataset` + `import_dataset` (kept between runs
with --keep), moves the oldest 10 days into the archive with `archive_cdrs`, then asks
every leg list, filter and search page, a leg's page and the customer pages through
Django's test client, logged in as a superuser: p50 and max of --runs requests each
(after one warm-up), with the time its SQL took and the CPU time the Django process
spent (what the page costs without the waiting a shared machine adds). Every SQL
statement a page runs is run again under EXPLAIN ANALYZE; one that reads more than 90%
of a leg or cost table's rows in a sequential scan is reported. Results go to stdout
and to bench/admin-results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = ROOT / ".venv" / "bin" / "python"
DB = "admin1m"
DAY = 86_400
END = 1_793_491_200  # 2026-11-01 00:00 UTC, as the demo
BIG_TABLES = ("cdrs_leg", "cdrs_legcost", "cdrs_archivedleg", "cdrs_archivedlegcost")


def manage(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONWARNINGS": "ignore"}
    env.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    done = subprocess.run(
        [str(PYTHON), str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout + done.stderr


def build(cluster, legs: int) -> None:
    url = cluster.db_url(DB)
    data = ROOT / "bench" / "data"
    data.mkdir(parents=True, exist_ok=True)
    dataset, cdrs = data / f"admin-{legs}.json", data / f"admin-{legs}-cdrs.jsonl"
    began = time.monotonic()
    if not cdrs.exists():
        manage(
            url, "generate_dataset", "--customers", "300", "--depth", "4", "--legs", str(legs),
            "--days", "60", "--end", str(END), "--seed", "16", "--out", str(dataset),
            "--cdrs-out", str(cdrs),
        )  # fmt: skip
    print(f"dataset ready in {time.monotonic() - began:.0f} s", flush=True)
    cluster.psql("postgres", f"CREATE DATABASE {DB}")
    manage(url, "migrate", "--noinput", "-v", "0")
    began = time.monotonic()
    manage(url, "import_dataset", str(dataset), "--cdrs", str(cdrs))
    took = time.monotonic() - began
    print(f"imported {legs:,} legs in {took:.0f} s ({legs / took:,.0f} legs/s)", flush=True)
    print(manage(url, "archive_cdrs", "--before", str(END - 50 * DAY)).strip(), flush=True)
    cluster.psql(DB, "VACUUM ANALYZE")


def setup_django(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url, DJANGO_SETTINGS_MODULE="enswitch.settings", DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-secret-key-" + "x" * 40),
    )  # fmt: skip
    import django

    django.setup()


def samples() -> dict[str, object]:
    """Values to search and filter with, taken from the data."""
    from django.db.models import Count

    from cdrs.models import ArchivedLeg, Leg
    from customers.models import Customer, Peer

    leg = Leg.objects.exclude(callername="").order_by("-start")[5000]
    old = ArchivedLeg.objects.order_by("start").first()
    leaf = Customer.objects.filter(depth=4).order_by("id").first() or Customer.objects.last()
    reseller = Customer.objects.filter(depth=1).order_by("id").first()
    owner = Customer.objects.system_owner()
    word = reseller.name.split()[0]
    by_count = Leg.objects.values("status").annotate(n=Count("pk")).order_by("n")
    peers = Leg.objects.values("peer_id").annotate(n=Count("pk")).order_by("n")
    return {
        "rare_status": by_count[0]["status"],
        "rare_peer": next(p["peer_id"] for p in peers if p["peer_id"] is not None),
        "leg": leg, "old": old, "leaf": leaf, "reseller": reseller, "owner": owner,
        "caller": leg.callername.split()[0], "word": word, "peer": Peer.objects.first(),
    }  # fmt: skip


def pages(s: dict) -> list[tuple[str, str]]:
    from django.urls import reverse

    legs = reverse("admin:cdrs_leg_changelist")
    arch = reverse("admin:cdrs_archivedleg_changelist")
    cust = reverse("admin:customers_customer_changelist")
    leg, old = s["leg"], s["old"]
    reseller, leaf, owner = s["reseller"], s["leaf"], s["owner"]
    day = datetime.fromtimestamp(leg.start, tz=UTC).strftime("%Y-%m-%d")
    old_day = datetime.fromtimestamp(old.start + 5 * DAY, tz=UTC).strftime("%Y-%m-%d")
    return [
        ("legs: first page", legs),
        ("legs: page 50", f"{legs}?p=50"),
        ("legs: a leaf customer", f"{legs}?customer={leaf.pk}"),
        ("legs: a reseller with its sub-customers", f"{legs}?customer={reseller.pk}&subtree=1"),
        ("legs: the owner with sub-customers", f"{legs}?customer={owner.pk}&subtree=1"),
        ("legs: reseller subtree, one day", f"{legs}?customer={reseller.pk}&subtree=1"
         f"&start__gte={day}&start__to={day}"),
        ("legs: a date range (one day)", f"{legs}?start__gte={day}&start__to={day}"),
        ("legs: latest 7 days", f"{legs}?start_range=7d"),
        ("legs: direction in", f"{legs}?direction__exact=in"),
        ("legs: status busy", f"{legs}?status=busy"),
        ("legs: a peer", f"{legs}?peer={s['peer'].pk}"),
        (f"legs: the rarest status ({s['rare_status']})", f"{legs}?status={s['rare_status']}"),
        ("legs: the rarest peer", f"{legs}?peer={s['rare_peer']}"),
        ("legs: direction out, rarest status", f"{legs}?direction__exact=out"
         f"&status={s['rare_status']}"),
        ("legs: search uniqueid", f"{legs}?q={leg.uniqueid}"),
        ("legs: search callid", f"{legs}?q={leg.callid}"),
        ("legs: search a number's start", f"{legs}?q={leg.cnumber[:6]}"),
        ("legs: search a caller name", f"{legs}?q={s['caller']}"),
        ("legs: search a customer name", f"{legs}?q={s['word']}"),
        ("legs: search nothing found", f"{legs}?q=Zzyzx"),
        ("legs: leaf customer + search caller", f"{legs}?customer={leaf.pk}&q={s['caller']}"),
        ("legs: a leg's page (whole call)", reverse("admin:cdrs_leg_change", args=[leg.pk])),
        ("archived: first page", arch),
        ("archived: reseller subtree", f"{arch}?customer={reseller.pk}&subtree=1"),
        ("archived: search caller name", f"{arch}?q={s['caller']}"),
        ("archived: search uniqueid", f"{arch}?q={old.uniqueid}"),
        ("archived: status busy", f"{arch}?status=busy"),
        ("archived: a date range (one day)", f"{arch}?start__gte={old_day}&start__to={old_day}"),
        ("archived: a leg's page", reverse("admin:cdrs_archivedleg_change", args=[old.pk])),
        ("customers: the tree", cust),
        ("customers: under a reseller", f"{cust}?ancestor={reseller.pk}"),
        ("customers: search", f"{cust}?q={s['word']}"),
        ("customer page: owner (whole store)", reverse("admin:customers_customer_change",
                                                       args=[owner.pk])),
        ("customer page: a reseller", reverse("admin:customers_customer_change",
                                              args=[reseller.pk])),
        ("customer page: a leaf", reverse("admin:customers_customer_change", args=[leaf.pk])),
    ]  # fmt: skip


def full_reads(statements: list[tuple[str, tuple]]) -> list[str]:
    """The big tables some statement of a page reads (nearly) whole: its plan's Seq Scan
    nodes, run (EXPLAIN ANALYZE), looked at more than 90% of the table's rows."""
    from django.db import connection

    sizes = {}
    found = set()
    with connection.cursor() as cur:
        for table in BIG_TABLES:
            cur.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            sizes[table] = max(1.0, cur.fetchone()[0])
        for sql, params in statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            for node in _nodes(plan[0]["Plan"]):
                table = node.get("Relation Name")
                if node["Node Type"] == "Seq Scan" and table in sizes:
                    loops = node.get("Actual Loops", 1)
                    read = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
                    if read > 0.9 * sizes[table]:
                        found.add(table)
    return sorted(found)


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def measure(runs: int) -> list[tuple[str, float, float, int, list[str]]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    admin, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    results = []
    for name, url in pages(samples()):
        statements: list[tuple[str, tuple]] = []

        def record(execute, sql, params, many, context, statements=statements):
            statements.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            response = client.get(url)  # warm-up, and the statements to EXPLAIN
        assert response.status_code == 200, (name, url, response.status_code)
        times, sql_times, cpu_times = [], [], []
        for _ in range(runs):
            spent = [0.0]

            def timed(execute, sql, params, many, context, spent=spent):
                began = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    spent[0] += time.perf_counter() - began

            with connection.execute_wrapper(timed):
                began, cpu = time.perf_counter(), time.process_time()
                client.get(url)
                times.append((time.perf_counter() - began) * 1000)
                cpu_times.append((time.process_time() - cpu) * 1000)
            sql_times.append(spent[0] * 1000)
        row = (name, statistics.median(times), max(times), statistics.median(sql_times),
               statistics.median(cpu_times), len(statements), full_reads(statements))  # fmt: skip
        print(f"{name:45} p50 {row[1]:6.1f} ms  max {row[2]:6.1f}  SQL p50 {row[3]:6.1f}"
              f"  Django CPU p50 {row[4]:6.1f}  {row[5]:2} statements"
              f"{'  FULL READ: ' + ', '.join(row[6]) if row[6] else ''}", flush=True)  # fmt: skip
        results.append(row)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the cluster running")
    args = parser.parse_args()
    from bench.pgcluster import Cluster

    cluster = Cluster(ROOT / "bench" / "work" / "admin-pg")
    pid = cluster.data / "postmaster.pid"
    if pid.exists():  # left running by --keep: its port is the pid file's fourth line
        cluster.port = int(pid.read_text().splitlines()[3])
    else:
        cluster.start()
    try:
        if not cluster.database_exists(DB):
            build(cluster, args.legs)
        setup_django(cluster.db_url(DB))
        legs = int(cluster.psql(DB, "SELECT count(*) FROM cdrs_leg").strip())
        archived = int(cluster.psql(DB, "SELECT count(*) FROM cdrs_archivedleg").strip())
        print(f"{legs:,} live legs, {archived:,} archived", flush=True)
        load_before = f"{os.getloadavg()[0]:.1f}"
        results = measure(args.runs)
    finally:
        if not args.keep:
            cluster.stop()
    lines = [
        f"\n## {datetime.now(tz=UTC):%Y-%m-%d %H:%M} UTC: {legs:,} live legs, "
        f"{archived:,} archived, {args.runs} runs a page\n",
        f"`.venv/bin/python bench/admin.py --legs {args.legs} --runs {args.runs}`; "
        f"load average before and after: {load_before} / {os.getloadavg()[0]:.1f} "
        f"({os.cpu_count()} CPUs)\n",
        "| page | p50 ms | max ms | SQL p50 ms | Django CPU p50 ms | statements "
        "| whole-table reads |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(f"| {n} | {p:.1f} | {m:.1f} | {s:.1f} | {c:.1f} | {q} | {', '.join(f) or 'none'} |"
          for n, p, m, s, c, q, f in results),  # fmt: skip
    ]
    with open(ROOT / "bench" / "admin-results.md", "a") as out:
        out.write("\n".join(lines) + "\n")
    slow = [r for r in results if r[2] >= 500 or r[6]]
    print("all pages under 500 ms, no whole-table read" if not slow else f"{len(slow)} failing")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
