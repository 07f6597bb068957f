"""What one API request costs in Python, and the SQL it sends.

    .venv/bin/python bench/request_overhead.py                       # SQLite, in a temp dir
    DATABASE_URL=postgres://... .venv/bin/python bench/request_overhead.py   # an empty database
    .venv/bin/python bench/request_overhead.py --sql before.sql      # also write the SQL

Builds a small store (generate_dataset + import_dataset: 40 customers, 20,000 legs),
makes two users, then sends `--requests` cdrs/list requests of each kind
(Q1: one customer's day; Q3: a called-number search over a month; Q6: a reseller's day
sorted by cost) through Django's test client, and prints per request the median and
mean wall time and the mean CPU time of this process. On a store this small the
database answers in about a millisecond, so the figures are mostly the request's own
work: parsing, authentication (cached after the first request), validation, building
the query, encoding the rows.

`--sql FILE` writes the SQL statements each representative request sends (Q1, Q3, Q6,
a deep offset, archive=1, cdrs/get), so that two versions of the code can be compared
with `diff`. Times and ids that change between runs are the same in every run: the
data comes from a fixed seed and `end` is given explicitly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_store(work: Path) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    main_file, cdr_file = work / "dataset.json", work / "legs.jsonl"
    call_command(
        "generate_dataset", "--customers", "40", "--depth", "4", "--reseller-size", "15",
        "--legs", "20000", "--days", "60", "--currencies", "3", "--seed", "1",
        "--out", str(main_file), "--cdrs-out", str(cdr_file), verbosity=0,
    )  # fmt: skip
    call_command("import_dataset", str(main_file), "--cdrs", str(cdr_file), verbosity=0)


def scenario() -> dict[str, dict[str, str]]:
    """bench/run.py's Q1, Q2, Q3 and Q6, asked by users made here (password `secret`)."""
    from django.db.models import Count, Max, Q

    from cdrs.models import Leg
    from customers.models import Customer, Role, User

    end = Leg.objects.aggregate(m=Max("start"))["m"]
    day, week, month = 86400, 7 * 86400, 30 * 86400
    allowed = [
        c.pk for c in Customer.objects.all() if not c.rate_plan or c.rate_plan.allows("cdrs")
    ]
    reseller = (
        Customer.objects.filter(pk__in=allowed, depth=1, enabled=True)
        .annotate(n=Count("children"))
        .order_by("-n", "id")
        .first()
    )
    leaves = Customer.objects.subtree(reseller, include_self=False).filter(
        pk__in=allowed, enabled=True, children__isnull=True
    )
    recent = Leg.objects.filter(start__gte=end - day)
    busiest = max(
        leaves, key=lambda c: (recent.filter(Q(scustomer=c) | Q(dcustomer=c)).count(), -c.pk)
    )
    role = Role.objects.create(id=990001, name="Bench", privileges=["cdrs", "archive"])
    for name, customer in (("bench_customer", busiest), ("bench_reseller", reseller)):
        user = User(username=name, customer=customer, role=role)
        user.set_password("secret")
        user.save()

    def auth(name: str) -> dict[str, str]:
        return {"auth_username": name, "auth_password": "secret"}

    window = {"end": str(end), "limit": "100"}
    return {
        "Q1": {**auth("bench_customer"), "start": str(end - day), **window},
        "Q2": {**auth("bench_reseller"), "customer": "all", "recurse": "1",
               "start": str(end - week), **window, "sort": "start", "descending": "1"},
        "Q3": {**auth("bench_reseller"), "customer": "all", "recurse": "1",
               "start": str(end - month), **window, "cmatch": "contains", "cnumber": "12"},
        "Q6": {**auth("bench_reseller"), "customer": "all", "recurse": "1",
               "start": str(end - day), **window, "sort": "cost", "descending": "1",
               "cost_customer": "scustomer"},
    }  # fmt: skip


def representative(qs: dict[str, dict[str, str]]) -> dict[str, tuple[str, dict[str, str]]]:
    from cdrs.models import Leg

    q5 = {**qs["Q2"], "offset": "2000", "limit": "50"}
    archive = {**qs["Q1"], "archive": "1"}
    from customers.models import User

    reseller = User.objects.get(username="bench_reseller")
    leg = Leg.objects.visible_to(reseller).order_by("start", "uniqueid").last()
    get = {k: qs["Q6"][k] for k in ("auth_username", "auth_password")}
    get.update(uniqueid=leg.uniqueid, customer=str(leg.scustomer_id))
    return {
        "Q1": ("list", qs["Q1"]),
        "Q3": ("list", qs["Q3"]),
        "Q6": ("list", qs["Q6"]),
        "deep-offset": ("list", q5),
        "archive": ("list", archive),
        "get": ("get", get),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--sql", help="write the SQL of the representative requests here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="enswitch-overhead-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'db.sqlite3'}")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    os.environ["DJANGO_SETTINGS_MODULE"] = "enswitch.settings"
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    build_store(work)
    qs = scenario()
    client = Client()
    paths = {"list": "/api/json/cdrs/list/", "get": "/api/json/cdrs/get/"}

    def ask(path: str, params: dict[str, str]) -> bytes:
        response = client.get(path, params)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.startswith(b'{"responses":[{"code":"200"'), body[:300]
        return body

    if args.sql:
        lines = []
        for name, (kind, params) in representative(qs).items():
            ask(paths[kind], params)  # the authentication cache and prepared state warm
            with CaptureQueriesContext(connection) as captured:
                ask(paths[kind], params)
            lines.append(f"-- {name}: {kind} {sorted(params.items())}")
            lines += [q["sql"] for q in captured.captured_queries]
        Path(args.sql).write_text("\n".join(lines) + "\n")
        print(f"SQL of {len(representative(qs))} requests written to {args.sql}")

    print(f"{connection.vendor}, {args.requests} requests each, ms per request:")
    for name in ("Q1", "Q3", "Q6"):
        params = qs[name]
        ask(paths["list"], params)
        wall, cpu = [], []
        for _ in range(args.requests):
            started, started_cpu = time.perf_counter(), time.process_time()
            ask(paths["list"], params)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        # This process's CPU time is what a busy machine disturbs least; on PostgreSQL it
        # leaves out the server's work, so it is the request's own cost in Python.
        print(
            f"  {name}: wall median {statistics.median(wall):.3f} mean {statistics.fmean(wall):.3f}"
            f"  CPU mean {statistics.fmean(cpu):.3f}"
        )


if __name__ == "__main__":
    main()
