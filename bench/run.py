"""The benchmark: build a large store, serve it with the production server, measure.

    .venv/bin/python bench/run.py                    # 10,000,000 legs (and 1,000,000 for scaling)
    .venv/bin/python bench/run.py --legs 2000000 --no-scaling
    .venv/bin/python bench/run.py --reuse            # keep databases built by an earlier run
    .venv/bin/python bench/run.py --reuse --cluster  # the same, side by side on Citus

See bench/README.md. Results go to bench/results.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# BENCH_WORK: another directory for the clusters and files (a second benchmark at once);
# put it under bench/work/ (ignored by git).
WORK = Path(os.environ.get("BENCH_WORK") or ROOT / "bench" / "work")
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))

from bench.citus import CitusCluster  # noqa: E402
from bench.pgcluster import Cluster, free_port  # noqa: E402

BENCH_PASSWORD = "bench-password"  # noqa: S105 - a throwaway benchmark credential


# --------------------------------------------------------------------------- load
def manage(*args: str, db_url: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "bench-secret-key-" + "x" * 40}
    return subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], env=env, check=True, **kw)


def build_database(
    cluster: Cluster | CitusCluster, db: str, legs: int, customers: int, load_mode: str = "import"
) -> dict:
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    main_file, cdr_file = data / f"dataset-{legs}.json", data / f"dataset-{legs}.jsonl"
    stats: dict = {}
    if not cdr_file.exists():
        started = time.perf_counter()
        manage(
            "generate_dataset", "--customers", str(customers), "--depth", "5",
            "--reseller-size", "1000", "--legs", str(legs), "--days", "60",
            "--currencies", "3", "--seed", "1", "--out", str(main_file),
            "--cdrs-out", str(cdr_file), db_url=cluster.url,
        )  # fmt: skip
        stats["generate_s"] = time.perf_counter() - started
    citus = isinstance(cluster, CitusCluster)
    # --cluster-load convert: the store is loaded on the coordinator alone, then converted
    # (`migrate` once the workers are registered: Citus moves the rows to them).
    convert = citus and load_mode == "convert"
    if citus:
        cluster.create_database(db, register=not convert)
    else:
        cluster.create_database(db)
    url = cluster.db_url(db)
    manage("migrate", "--verbosity", "0", db_url=url)
    if citus and not convert:
        cluster.check_layout(db)
    # The customers, users (whose passwords take most of a second each to hash) and the
    # rest first; then the legs, which are what the legs/s figure is about.
    manage("import_dataset", str(main_file), db_url=url)
    started = time.perf_counter()
    manage("import_dataset", "--cdrs", str(cdr_file), db_url=url)
    stats["import_s"] = time.perf_counter() - started
    stats["import_legs_per_s"] = legs / stats["import_s"]
    if convert:
        stats["import_on"] = "the coordinator alone, before conversion"
        cluster.register_workers(db)
        started = time.perf_counter()
        manage("migrate", "--verbosity", "0", db_url=url)
        stats["convert_s"] = time.perf_counter() - started
        cluster.check_layout(db)
    started = time.perf_counter()
    cluster.vacuum_analyze(db)
    stats["vacuum_s"] = time.perf_counter() - started
    # Kept so that a later --reuse run still reports how the database was loaded.
    (WORK / f"load-{_store_name(cluster)}{db}.json").write_text(json.dumps(stats))
    return stats


def _store_name(cluster: Cluster | CitusCluster) -> str:
    """A prefix for files about one store: none for the single node."""
    if isinstance(cluster, CitusCluster):
        return f"{cluster.dir.name}-"
    return ""


# --------------------------------------------------------------------------- django
def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    os.environ["DJANGO_SETTINGS_MODULE"] = "enswitch.settings"
    import django

    django.setup()


def use_database(db_url: str) -> None:
    from django.db import connections

    from enswitch.settings import database_from_url

    connections["default"].close()
    connections["default"].settings_dict.update(database_from_url(db_url))


@dataclass
class Scenario:
    """Who asks what: chosen from the data, with users made for the benchmark."""

    end: int
    customer: int
    reseller: int
    customer_user: str
    reseller_user: str
    owner_user: str
    export_start: int
    export_end: int
    export_rows: int
    digits: list[str] = field(default_factory=list)


def prepare_scenario(export_rows: int) -> Scenario:
    from django.db.models import Count, Max, Q

    from cdrs.models import Leg
    from customers.models import Customer, Role, User

    end = Leg.objects.aggregate(m=Max("start"))["m"]
    allowed = Q(enabled=True) & (
        Q(rate_plan__isnull=True) | Q(rate_plan__features__contains="cdrs")
    )
    reseller = (
        Customer.objects.filter(allowed, depth=1)
        .annotate(n=Count("children"))
        .order_by("-n", "id")
        .first()
    )
    leaf = (
        Customer.objects.subtree(reseller, include_self=False)
        .filter(allowed, children__isnull=True)
        .order_by("id")
    )
    # A customer with calls on the last day.
    day = Leg.objects.filter(start__gte=end - 86400)
    counts = sorted((day.filter(Q(scustomer=c) | Q(dcustomer=c)).count(), c.id) for c in leaf[:40])
    customer_id = counts[len(counts) // 2][1]
    role, _ = Role.objects.update_or_create(
        id=990001, defaults={"name": "Bench", "privileges": ["cdrs", "archive"]}
    )
    owner = Customer.objects.system_owner()
    names = {}
    for k, (name, cust_id) in enumerate((("bench_customer", customer_id),
                                         ("bench_reseller", reseller.id),
                                         ("bench_owner", owner.id))):  # fmt: skip
        # Ids of their own, like the role's: nothing of the dataset's can hold them.
        user = User.objects.filter(username=name).first() or User(id=990001 + k, username=name)
        user.customer_id, user.role, user.enabled = cust_id, role, True
        user.set_password(BENCH_PASSWORD)
        user.save()
        names[name] = name
    # The most recent window holding about `export_rows` legs, for the export.
    total = Leg.objects.count()
    span = max(86400, int(60 * 86400 * export_rows / max(total, 1)))
    start = end - span
    rows = Leg.objects.filter(start__gte=start, start__lte=end).count()
    return Scenario(
        end=end, customer=customer_id, reseller=reseller.id,
        customer_user="bench_customer", reseller_user="bench_reseller",
        owner_user="bench_owner", export_start=start, export_end=end, export_rows=rows,
        digits=["1234", "5678", "4207", "9981", "3030", "7712", "2468", "1357"],
    )  # fmt: skip


def queries(s: Scenario) -> dict[str, dict[str, str]]:
    day, week, month = 86400, 7 * 86400, 30 * 86400

    def auth(user: str) -> dict[str, str]:
        return {"auth_username": user, "auth_password": BENCH_PASSWORD}

    q2 = {**auth(s.reseller_user), "customer": "all", "recurse": "1",
          "start": str(s.end - week), "end": str(s.end), "limit": "100",
          "sort": "start", "descending": "1"}  # fmt: skip
    return {
        "Q1": {**auth(s.customer_user), "start": str(s.end - day), "end": str(s.end),
               "limit": "100"},
        "Q2": q2,
        "Q3": {**auth(s.reseller_user), "customer": "all", "recurse": "1",
               "start": str(s.end - month), "end": str(s.end), "cmatch": "contains",
               "cnumber": s.digits[0], "limit": "100"},
        "Q4": {**auth(s.owner_user), "customer": "system", "start": str(s.export_start),
               "end": str(s.export_end), "limit": "0"},
        "Q5": {**q2, "offset": "100000"},
        "Q6": {**auth(s.reseller_user), "customer": "all", "recurse": "1",
               "start": str(s.end - day), "end": str(s.end), "sort": "cost",
               "descending": "1", "cost_customer": "scustomer", "limit": "100"},
        "Q8": {**auth(s.customer_user), "limit": "100"},
        "Q9": totals_query(s, auth(s.reseller_user)),
    }  # fmt: skip


# The endpoint of a query other than cdrs/list travels with its parameters, under a key
# no parameter has.
PATH = " path"


def totals_query(s: Scenario, auth: dict[str, str]) -> dict[str, str]:
    """Q9: cdrs/totals/list, the reseller and all its sub-customers, 30 days."""
    month = 30 * 86400
    return {PATH: "/api/json/cdrs/totals/list/", **auth, "customer": str(s.reseller),
            "recurse": "1", "start": str(s.end - month), "end": str(s.end)}  # fmt: skip


def totals_sql(params: dict[str, str]) -> tuple[str, str]:
    """query_sql() for Q9: its SQL, and the same rows as JSON for psql."""
    from django.db import connection

    from cdrs import queries
    from cdrs.parameters import parse_totals
    from customers.models import User
    from enswitch.api.params import Params

    user = User.objects.for_api().get(username=params["auth_username"])
    request = parse_totals(Params(values=dict(params)), user=user, now=int(time.time()))
    sql, sql_params = queries.totals_rows(request).query.sql_with_params()
    connection.ensure_connection()
    bound = psycopg.ClientCursor(connection.connection).mogrify(sql, sql_params)
    as_json = (
        "SELECT json_build_object('customer', t.customer_id, 'start', t.hour, 'end', t.hour + 3599,"
        " 'inbound', t.inbound, 'outbound', t.outbound, 'internal', t.internal)"
        f" FROM ({bound}) t"
    )
    return bound, f"COPY ({as_json}) TO STDOUT"


def query_sql(params: dict[str, str]) -> tuple[str, str]:
    """The SQL the API runs for these parameters, and the same rows as JSON for psql."""
    if PATH in params:
        return totals_sql(params)
    from django.db import connection

    from cdrs import queries
    from cdrs.parameters import parse_list
    from cdrs.rows import COLUMNS
    from customers.models import User
    from enswitch.api.params import Params

    user = User.objects.for_api().get(username=params["auth_username"])
    request = parse_list(Params(values=dict(params)), user=user, now=int(time.time()))
    qs = queries.list_page(request, COLUMNS).rows
    sql, sql_params = qs.query.sql_with_params()
    connection.ensure_connection()
    # The app binds parameters on the server; psql needs them written into the text.
    bound = psycopg.ClientCursor(connection.connection).mogrify(sql, sql_params)
    currency = user.customer.currency_id
    as_json = (
        "SELECT json_build_object('uniqueid', t.uniqueid, 'callid', t.callid, 'start', t.start,"
        " 'end', t.\"end\", 'talktime', t.talktime, 'totaltime', t.\"end\" - t.start,"
        " 'status', t.status, 'direction', t.direction, 'stype', t.stype,"
        " 'snumber', t.snumber, 'ctype', t.ctype, 'cnumber', t.cnumber, 'dtype', t.dtype,"
        " 'dnumber', t.dnumber, 'callername', t.callername, 'scustomer', t.scustomer_id,"
        " 'dcustomer', coalesce(t.dcustomer_id, 0), 'peer', coalesce(t.peer_id, 0),"
        " 'invoice', coalesce(t.invoice_id, 0), 'card', coalesce(t.card_id, 0),"
        " 'archived', t.archived, 'cost', t.row_cost::float8,"
        " 'cost_excluding_tax', t.row_cost::float8,"
        f" 'cost_including_tax', t.row_cost_tax::float8, 'currency', '{currency}')"
        f" FROM ({bound}) t"
    )
    return bound, f"COPY ({as_json}) TO STDOUT"


# --------------------------------------------------------------------------- server
class Server:
    def __init__(self, db_url: str, port: int, workers: int) -> None:
        self.port, self.db_url, self.workers = port, db_url, workers
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "DATABASE_URL": self.db_url, "BIND": f"127.0.0.1:{self.port}",
               "WEB_CONCURRENCY": str(self.workers), "ACCESS_LOG": "/dev/null",
               "SECRET_KEY": "bench-secret-key-" + "x" * 40}  # fmt: skip
        self.proc = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
             "enswitch.wsgi"],
            cwd=ROOT, env=env, stderr=open(WORK / "gunicorn.log", "w"),  # noqa: SIM115
        )  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=2).request("GET", "/")
                time.sleep(1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start; see bench/work/gunicorn.log")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def worker_peak_rss_mb(self) -> float:
        peaks = []
        for pid in _children(self.proc.pid):
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return max(peaks, default=0.0)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def get(conn: http.client.HTTPConnection, params: dict[str, str]) -> tuple[float, bytes]:
    params = dict(params)
    endpoint = params.pop(PATH, "/api/json/cdrs/list/")
    path = endpoint + "?" + urlencode(params).replace("&", ";")
    started = time.perf_counter()
    conn.request("GET", path)
    body = conn.getresponse().read()
    return time.perf_counter() - started, body


def check_ok(body: bytes) -> None:
    head = body[:200]
    if b'"code":"200"' not in head:
        raise RuntimeError(f"API error: {head!r}")


def percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": qs[49] * 1000, "p95": qs[94] * 1000, "p99": qs[98] * 1000}


def measure_latency(port: int, params: dict[str, str], n: int, vary: list[dict] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    variants = vary or [params]

    # Warm the caches (page cache, plans, each worker's password digest): requests from
    # 8 clients at once, so that every worker serves some (one after the other, the
    # same worker tends to take them all, and another's first request in the timed run
    # would pay the full password hash).
    def warm(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for i in range(5):
            check_ok(get(c, variants[(k + i) % len(variants)])[1])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(warm, range(8)))
    for i in range(10):
        check_ok(get(conn, variants[i % len(variants)])[1])
    samples = []
    for i in range(n):
        seconds, body = get(conn, variants[i % len(variants)])
        check_ok(body)
        samples.append(seconds)
    return percentiles(samples), body.count(b'"start":')  # one per row of either endpoint


def measure_export(port: int, params: dict[str, str]) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    path = "/api/json/cdrs/list/?" + urlencode(params).replace("&", ";")
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    first = response.read(1)
    first_byte = time.perf_counter() - started
    rows, tail, size = 0, first, 1
    while chunk := response.read(1 << 20):
        data = tail + chunk
        rows += data.count(b'{"uniqueid"')
        tail = data[-16:]
        rows -= tail.count(b'{"uniqueid"')
        size += len(chunk)
    rows += tail.count(b'{"uniqueid"')
    total = time.perf_counter() - started
    return {"first_byte_s": first_byte, "seconds": total, "rows": rows,
            "rows_per_s": rows / total, "bytes": size}  # fmt: skip


def _hammer(args: tuple[int, dict[str, str], float]) -> tuple[int, int]:
    port, params, until = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ok = errors = 0
    while time.time() < until:
        try:
            _, body = get(conn, params)
            if b'"code":"200"' in body[:200]:
                ok += 1
            else:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    return ok, errors


def measure_concurrency(port: int, params: dict[str, str], clients: int, seconds: float):
    until = time.time() + seconds
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(_hammer, [(port, params, until)] * clients)
    ok, errors = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"requests_per_s": ok / seconds, "ok": ok, "errors": errors}


def psql_reference(cluster: Cluster, db: str, copy_sql: str, runs: int) -> dict[str, float]:
    """The same rows as JSON straight from PostgreSQL: median ms over `runs` (after one)."""
    warm_up = 1 if runs > 1 else 0
    times = cluster.timed_psql(db, copy_sql, runs + warm_up)[warm_up:]
    return {"p50": statistics.median(times)}


def explain(cluster: Cluster | CitusCluster, db: str, sql: str) -> str:
    if isinstance(cluster, CitusCluster):
        return cluster.psql(db, f"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) {sql}")
    return cluster.psql(db, f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")


# --------------------------------------------------------------------------- run
TARGETS = {
    "Q1": ("one customer, one day, limit 100", "p50 <= 15 ms, p99 <= 50 ms"),
    "Q2": ("reseller, all;recurse=1, 7 days, limit 100, start desc", "p50 <= 30 ms"),
    "Q3": ("reseller subtree, 30 days, cmatch=contains 4 digits, limit 100", "p50 <= 100 ms"),
    "Q4": ("limit=0 export of ~1,000,000 legs", ">= 50% psql rows/s; <= 150 MB; first byte <= 1 s"),
    "Q5": ("Q2 with offset=100000", "p50 <= 250 ms"),
    "Q6": ("reseller, 1 day, sort=cost desc, cost_customer=scustomer, limit 100", "p50 <= 60 ms"),
    "Q7": ("Q1, 8 concurrent clients for 30 s", ">= 250 requests/s, no error"),
    "Q8": ("no start/end, one customer, limit 100", "p50 <= 20 ms"),
    "Q9": ("cdrs/totals/list, reseller with recurse=1, 30 days", "p50 <= 50 ms"),
}


def met(qid: str, r: dict) -> bool:
    if qid == "Q1":
        return r["p50"] <= 15 and r["p99"] <= 50
    if qid == "Q4":
        return (r["rows_per_s"] >= 0.5 * r["psql_rows_per_s"] and r["peak_rss_mb"] <= 150
                and r["first_byte_s"] <= 1)  # fmt: skip
    if qid == "Q7":
        return r["requests_per_s"] >= 250 and r["errors"] == 0
    limit = {"Q2": 30, "Q3": 100, "Q5": 250, "Q6": 60, "Q8": 20, "Q9": 50}[qid]
    return r["p50"] <= limit


def run_scale(
    cluster: Cluster | CitusCluster, legs: int, args: argparse.Namespace, only: list[str]
) -> dict:
    db = f"bench_{legs}"
    load = {}
    store = _store_name(cluster)
    if not (args.reuse and cluster.database_exists(db)):
        print(f"[{store}{legs:,} legs] building database {db}", flush=True)
        load = build_database(cluster, db, legs, args.customers, args.cluster_load)
        print(f"[{store}{legs:,} legs] load: {json.dumps(load)}", flush=True)
    else:
        manage("migrate", "--verbosity", "0", db_url=cluster.db_url(db))
        saved = WORK / f"load-{store}{db}.json"
        load = json.loads(saved.read_text()) if saved.exists() else {}
    if args.load_only:
        return {"legs": legs, "load": load, "results": {}, "plans": {}}
    use_database(cluster.db_url(db))
    scenario = prepare_scenario(args.export_rows)
    qset = queries(scenario)
    results: dict[str, dict] = {}
    plans: dict[str, str] = {}
    port = free_port()
    with Server(cluster.db_url(db), port, args.workers) as server:
        for qid in only:
            if qid == "Q7":
                continue
            params = qset[qid]
            sql, copy_sql = query_sql(params)
            plans[qid] = explain(cluster, db, sql)
            if qid == "Q4":
                r = measure_export(port, params)
                r["peak_rss_mb"] = server.worker_peak_rss_mb()
                ref = psql_reference(cluster, db, copy_sql, 1)
                r["psql_rows_per_s"] = r["rows"] / (ref["p50"] / 1000)
                r["psql_ms"] = ref["p50"]
            else:
                vary = None
                if qid == "Q3":
                    vary = [{**params, "cnumber": d} for d in scenario.digits]
                r, rows = measure_latency(port, params, args.requests, vary)
                r["rows"] = rows
                ref = psql_reference(cluster, db, copy_sql, args.psql_runs)
                r["psql_p50"] = ref["p50"]
                r["ratio"] = r["p50"] / ref["p50"]
            r["met"] = met(qid, r)
            # The machine's load when it was measured (others may be using it).
            r["loadavg"] = os.getloadavg()[0]
            results[qid] = r
            print(f"[{store}{legs:,} legs] {qid}: {json.dumps(r)}", flush=True)
        if "Q7" in only:
            r = measure_concurrency(port, qset["Q1"], 8, args.concurrency_seconds)
            r["met"] = met("Q7", r)
            results["Q7"] = r
            print(f"[{store}{legs:,} legs] Q7: {json.dumps(r)}", flush=True)
    out = {"legs": legs, "load": load, "scenario": scenario.__dict__, "results": results,
           "plans": plans}  # fmt: skip
    if isinstance(cluster, CitusCluster):
        out["workers"] = len(cluster.workers)
        out["layout"] = cluster.layout(db)
    return out


def machine() -> dict[str, str]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"cpu": f"{os.cpu_count()} x {cpu}", "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
            "os": platform.platform(), "python": platform.python_version()}  # fmt: skip


def versions(cluster: Cluster) -> dict[str, str]:
    import django

    pg = cluster.psql("postgres", "SHOW server_version").strip()
    return {**machine(), "django": django.get_version(), "postgresql": pg}


def fmt_ms(value: float) -> str:
    return f"{value:.1f}"


def write_results(path: Path, runs: list[dict], info: dict, command: str) -> None:
    lines = ["# Benchmark results", "", f"Command: `{command}`", "",
             f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]  # fmt: skip
    lines += ["## Machine and versions", ""] + [f"- {k}: {v}" for k, v in info.items()] + [""]
    for run in runs:
        legs = run["legs"]
        lines += [f"## {legs:,} legs", ""]
        if run["load"]:
            load = run["load"]
            lines += [f"- import_dataset --cdrs: {load['import_s']:.0f} s, "
                      f"**{load['import_legs_per_s']:,.0f} legs/s** (target >= 50,000)",
                      f"- VACUUM ANALYZE afterwards: {load['vacuum_s']:.0f} s", ""]  # fmt: skip
        lines += ["| id | request | target | API | psql | API/psql | met |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for qid, r in run["results"].items():
            what, target = TARGETS[qid]
            if qid == "Q4":
                api = (f"{r['rows']:,} rows in {r['seconds']:.1f} s ="
                       f" {r['rows_per_s']:,.0f} rows/s;"
                       f" first byte {r['first_byte_s'] * 1000:.0f} ms;"
                       f" worker peak RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip
                ref = f"{r['psql_rows_per_s']:,.0f} rows/s"
                ratio = f"{r['rows_per_s'] / r['psql_rows_per_s']:.0%} of psql"
            elif qid == "Q7":
                api = f"{r['requests_per_s']:.0f} req/s, {r['errors']} errors"
                ref, ratio = "", ""
            else:
                api = (f"p50 {fmt_ms(r['p50'])} / p95 {fmt_ms(r['p95'])} / "
                       f"p99 {fmt_ms(r['p99'])} ms ({r['rows']} rows)")  # fmt: skip
                ref = f"p50 {fmt_ms(r['psql_p50'])} ms"
                ratio = f"{r['ratio']:.2f}"
            lines.append(f"| {qid} | {what} | {target} | {api} | {ref} | {ratio} | "
                         f"{'yes' if r['met'] else '**no**'} |")  # fmt: skip
        lines.append("")
    if len(runs) == 2:
        small, big = sorted(runs, key=lambda r: r["legs"])
        lines += [f"## Scaling: {small['legs']:,} -> {big['legs']:,} legs (p50, target <= 2x)", "",
                  "| id | small | large | factor |", "|---|---|---|---|"]  # fmt: skip
        for qid in ("Q1", "Q2", "Q3", "Q6"):
            if qid in small["results"] and qid in big["results"]:
                a, b = small["results"][qid]["p50"], big["results"][qid]["p50"]
                lines.append(f"| {qid} | {fmt_ms(a)} ms | {fmt_ms(b)} ms | {b / a:.2f}x |")
        lines.append("")
    big = max(runs, key=lambda r: r["legs"])
    lines += [f"## Query plans ({big['legs']:,} legs, EXPLAIN ANALYZE)", ""]
    for qid, plan in big["plans"].items():
        lines += [f"### {qid}", "", "```", plan.rstrip(), "```", ""]
    path.write_text("\n".join(lines) + _kept_section(path))


def _kept_section(path: Path) -> str:
    """The reliability figures (bench/loadtest.py, bench/faults.py) survive a rewrite."""
    start, end = "<!-- reliability:start -->", "<!-- reliability:end -->"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        return "\n" + old[old.index(start) : old.index(end) + len(end)] + "\n"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", type=int, default=10_000_000)
    parser.add_argument("--small-legs", type=int, default=1_000_000)
    parser.add_argument("--no-scaling", action="store_true", help="skip the small-scale run")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--psql-runs", type=int, default=20)
    parser.add_argument("--concurrency-seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reuse", action="store_true", help="reuse databases already built")
    parser.add_argument("--only", default="Q1,Q2,Q3,Q4,Q5,Q6,Q7,Q8,Q9")
    parser.add_argument(
        "--load-only", action="store_true", help="build the database, measure nothing"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    parser.add_argument(
        "--cluster", action="store_true",
        help="also on a Citus coordinator and workers, side by side (bench/cluster-results.md)",
    )  # fmt: skip
    parser.add_argument(
        "--cluster-workers", default="2",
        help="workers of the Citus cluster; several (1,2,4) for one cluster each",
    )  # fmt: skip
    parser.add_argument(
        "--shard-count", type=int, default=32, help="citus.shard_count (Citus's default: 32)"
    )
    parser.add_argument(
        "--cluster-load", choices=("import", "convert"), default="import",
        help="import: import_dataset into the cluster; convert: into the coordinator alone,"
        " then distributed by migrate (as an existing store is converted)",
    )  # fmt: skip
    parser.add_argument("--cluster-out", default=str(ROOT / "bench" / "cluster-results.md"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.cluster:
        from bench.citus_report import run_cluster_mode

        run_cluster_mode(args, sys.argv[1:])
        return
    cluster = Cluster(WORK / "pg")
    cluster.start()
    try:
        setup_django(cluster.url)
        runs = [run_scale(cluster, args.legs, args, args.only.split(","))]
        if args.load_only:
            return
        if not args.no_scaling and args.small_legs < args.legs:
            runs.append(run_scale(cluster, args.small_legs, args, ["Q1", "Q2", "Q3", "Q6"]))
        command = "bench/run.py " + " ".join(sys.argv[1:])
        write_results(Path(args.out), runs, versions(cluster), command.strip())
        print(f"wrote {args.out}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
