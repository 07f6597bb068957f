"""A bounded load test of the production server (gunicorn) on PostgreSQL, over loopback.

    .venv/bin/python bench/loadtest.py                       # 16 clients, 60 s
    .venv/bin/python bench/loadtest.py --seconds 20 --clients 4

16 client processes (http.client, keep-alive when the server offers it) send a mix of
requests for `--seconds`: the benchmark's Q1, Q2, Q3, Q6, Q8 (with varying windows),
Q1 as a form POST, cdrs/get of random visible uniqueids (200) and of invisible or
unknown ones (404), invalid parameters (400 with the expected keys, in order), a
forbidden `customer=system` (402), wrong passwords for a dedicated user (401) and that
user's right password (200: the brute-force lock must not have fired: the server runs
with ENSWITCH_AUTH_MAX_FAILURES_PER_USER/ADDRESS raised to 10^9 for this test).

Every answer is checked (envelope code and keys, row keys, currency, visibility,
window, order, limit). One answer in `--sample-every` (list or get) is checked after
the run against PostgreSQL twice: with the SQL the FilterSet builds (bench/run.py
`query_sql`), and with tests/reference.py fed with the rows of that scope read from
the database: uniqueids in order, cost fields exactly, every other field.

Database: bench_1000000 in bench/work/pg (built with bench/run.py's build_database if
missing). If that cluster is already running (another benchmark), it is used as it is
and left running; otherwise it is started and stopped at the end. Results go to the
reliability section of bench/results.md; exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pgcluster import Cluster, free_port  # noqa: E402
from bench.run import (  # noqa: E402
    BENCH_PASSWORD,
    PYTHON,
    WORK,
    Scenario,
    Server,
    _children,
    build_database,
    machine,
    manage,
    prepare_scenario,
    query_sql,
    setup_django,
)

HOST = "127.0.0.1"  # the only address these tests ever talk to
REL = WORK / "reliability"
RESULTS = ROOT / "bench" / "results.md"
SECTION_START, SECTION_END = "<!-- reliability:start -->", "<!-- reliability:end -->"
VICTIM = "reliability_victim"
# The brute-force lock would lock the victim (10 failures) and then every user on the
# loopback address (300 failures): raised far out of reach for the load test.
NO_LOCK_ENV = {
    "ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS": "1000000000",
    "ENSWITCH_AUTH_MAX_FAILURES_PER_USER": "1000000000",
    "ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS": "1000000000",
}
ROW_KEYS = frozenset(
    "uniqueid callid start end talktime totaltime status direction stype snumber ctype "
    "cnumber dtype dnumber callername scustomer dcustomer peer invoice card archived cost "
    "cost_excluding_tax cost_including_tax currency".split()
)
DAY = 86400


# --------------------------------------------------------------------------- infrastructure
def open_cluster(directory: Path) -> tuple[Cluster, bool]:
    """The cluster in `directory`: attached to if it is already running (then it is not
    ours to stop), else started. Returns (cluster, started_here)."""
    pid_file = directory / "data" / "postmaster.pid"
    if pid_file.exists():
        lines = pid_file.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError, PermissionError):
            pass
        else:
            cluster = Cluster(directory, port=port)
            try:
                cluster.psql("postgres", "SELECT 1")
                print(f"attached to the running cluster in {directory} (port {port})", flush=True)
                return cluster, False
            except subprocess.CalledProcessError:
                pass
    cluster = Cluster(directory)
    cluster.start()
    print(f"started the cluster in {directory} (port {cluster.port})", flush=True)
    return cluster, True


def ensure_bench_database(cluster: Cluster, db: str, legs: int, customers: int) -> None:
    if cluster.database_exists(db):
        manage("migrate", "--verbosity", "0", db_url=cluster.db_url(db))
        return
    print(f"building {db} ({legs:,} legs) with bench/run.py's build_database", flush=True)
    print(json.dumps(build_database(cluster, db, legs, customers)), flush=True)


class ReliabilityServer(Server):
    """bench/run.py's production server, with extra environment and its own log."""

    def __init__(self, db_url: str, port: int, workers: int, *, env: dict[str, str],
                 log: Path) -> None:  # fmt: skip
        super().__init__(db_url, port, workers)
        self.env, self.log = env, log

    def __enter__(self) -> ReliabilityServer:
        import http.client

        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "DATABASE_URL": self.db_url,
               "BIND": f"{HOST}:{self.port}", "WEB_CONCURRENCY": str(self.workers),
               "ACCESS_LOG": "/dev/null", "SECRET_KEY": "bench-secret-key-" + "x" * 40}  # fmt: skip
        with open(self.log, "a") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} port {self.port}\n")
        self.proc = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
             "enswitch.wsgi"],
            cwd=ROOT, env=env, stderr=open(self.log, "a"),  # noqa: SIM115
        )  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                http.client.HTTPConnection(HOST, self.port, timeout=2).request("GET", "/")
                self.wait_workers()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"gunicorn did not start; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        pids = self.worker_pids()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in pids:  # workers whose master was killed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def worker_pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return _children(self.proc.pid)

    def wait_workers(self, timeout: float = 30) -> list[int]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            pids = self.worker_pids()
            if len(pids) >= self.workers:
                time.sleep(0.5)  # let them import the application
                return pids
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn has {len(self.worker_pids())} workers, not {self.workers}")

    def log_summary(self) -> dict[str, int]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return {
            "tracebacks": text.count("Traceback (most recent call last)"),
            "worker_timeouts": text.count("WORKER TIMEOUT"),
            "worker_kills": len(re.findall(r"was sent SIGKILL|Worker \(pid:\d+\) exited", text)),
            "database_failures_logged": text.count("API database failure"),
            "timeouts_logged": text.count("API query timed out"),
        }


def path_for(call: str, params: dict[str, str], sep: str = ";") -> str:
    return f"/api/json/cdrs/{call}/?" + urlencode(params).replace("&", sep)


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    if len(samples) == 1:
        v = samples[0] * 1000
        return {"p50": v, "p95": v, "p99": v}
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": qs[49] * 1000, "p95": qs[94] * 1000, "p99": qs[98] * 1000}


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def cluster_pids(cluster: Cluster) -> list[int]:
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return [pid, *_children(pid)]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_results(part: str, text: str, path: Path = RESULTS) -> None:
    """Put `text` in the `part` block of the reliability section; the rest untouched."""
    blocks = ("loadtest", "faults")
    old = path.read_text() if path.exists() else ""
    if SECTION_START in old and SECTION_END in old:
        before, rest = old.split(SECTION_START, 1)
        inner, after = rest.split(SECTION_END, 1)
    else:
        before = old.rstrip("\n") + "\n\n" if old.strip() else ""
        after = "\n"
        inner = "\n## Reliability (bench/loadtest.py, bench/faults.py)\n\n"
        for name in blocks:
            inner += f"<!-- reliability:{name}:start -->\n(not run yet)\n"
            inner += f"<!-- reliability:{name}:end -->\n\n"
    start, end = f"<!-- reliability:{part}:start -->", f"<!-- reliability:{part}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in inner and end in inner:
        head, tail = inner.split(start, 1)
        inner = head + block + tail.split(end, 1)[1]
    else:
        inner = inner.rstrip("\n") + "\n\n" + block + "\n\n"
    path.write_text(before + SECTION_START + inner + SECTION_END + after)


# --------------------------------------------------------------------------- the mix
# kind: weight (percent of requests)
MIX = {
    "Q1": 17, "Q1-post": 4, "Q2": 12, "Q3": 8, "Q6": 10, "Q8": 12, "get": 15, "get-404": 4,
    "bad-params": 10, "forbidden": 2, "wrong-password": 1, "victim-ok": 5,
}  # fmt: skip
LIST_KINDS = ("Q1", "Q1-post", "Q2", "Q3", "Q6", "Q8", "victim-ok")


def bad_cases(invalid_customer: int) -> list[tuple[str, dict[str, str], list[str]]]:
    """(call, parameters, expected 400 keys in the contract's order)."""
    return [
        ("list", {"start": "abc"}, ["start"]),
        ("list", {"limit": "-1"}, ["limit"]),
        ("list", {"descending": "2", "sort": "bogus"}, ["sort", "descending"]),
        ("list", {"cmatch": "Start", "cnumber": "12"}, ["cmatch"]),
        ("list", {"customer": str(invalid_customer)}, ["customer"]),
        ("list", {"offset": "99999999999999999999"}, ["offset"]),
        ("list", {"cnumber": "7" * 256}, ["cnumber"]),
        ("list", {"callid": "a\x00b"}, ["callid"]),
        ("list", {"recurse": "2", "start": "1e9", "end": "-5"}, ["start", "end", "recurse"]),
        ("list", {"talktime_maximum": "-2", "direction": "sideways"},
         ["direction", "talktime_maximum"]),
        ("list", {"cost_customer": "nobody", "start": "\u0661\u0662"},
         ["start", "cost_customer"]),
        ("get", {}, ["uniqueid"]),
        ("get", {"uniqueid": "1.1", "customer": "abc"}, ["customer"]),
    ]  # fmt: skip


@dataclass
class Plan:
    port: int
    end: int
    customer: int
    reseller: int
    customer_user: str
    reseller_user: str
    digits: list[str]
    visible: list[str]  # uniqueids the reseller may get
    invisible: list[str]  # uniqueids it may not (and unknown ones)
    customer_set: set[int]  # the customer user's subtree
    reseller_under: set[int]  # under the reseller, not itself
    reseller_set: set[int]  # the reseller's subtree
    currency: dict[str, str]  # user -> currency code
    invalid_customer: int
    sample_every: int
    until: float = 0.0
    seed: int = 0


@dataclass
class Request:
    kind: str
    call: str  # list | get
    user: str
    params: dict[str, str]  # everything, credentials included
    post: bool = False
    expect: str = "200"
    keys: list[str] = field(default_factory=list)


def make_request(rng: random.Random, plan: Plan) -> Request:
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    cu, ru = plan.customer_user, plan.reseller_user

    def auth(user: str, password: str = BENCH_PASSWORD) -> dict[str, str]:
        return {"auth_username": user, "auth_password": password}

    end = plan.end
    if kind in ("Q1", "Q1-post"):
        e = end - rng.randrange(7) * DAY
        p = {**auth(cu), "start": str(e - DAY), "end": str(e), "limit": "100"}
        return Request(kind, "list", cu, p, post=kind == "Q1-post")
    if kind == "Q2":
        e = end - rng.randrange(8) * DAY
        p = {**auth(ru), "customer": "all", "recurse": "1", "start": str(e - 7 * DAY),
             "end": str(e), "limit": "100", "sort": "start", "descending": "1"}  # fmt: skip
        return Request(kind, "list", ru, p)
    if kind == "Q3":
        p = {**auth(ru), "customer": "all", "recurse": "1", "start": str(end - 30 * DAY),
             "end": str(end), "cmatch": "contains", "cnumber": rng.choice(plan.digits),
             "limit": "100"}  # fmt: skip
        return Request(kind, "list", ru, p)
    if kind == "Q6":
        e = end - rng.randrange(7) * DAY
        p = {**auth(ru), "customer": "all", "recurse": "1", "start": str(e - DAY),
             "end": str(e), "sort": "cost", "descending": "1", "cost_customer": "scustomer",
             "limit": "100"}  # fmt: skip
        return Request(kind, "list", ru, p)
    if kind == "Q8":
        p = {**auth(cu), "limit": "100", "offset": rng.choice(["0", "0", "100"])}
        return Request(kind, "list", cu, p)
    if kind == "victim-ok":
        return Request(kind, "list", VICTIM, {**auth(VICTIM), "limit": "100"})
    if kind == "get":
        return Request(kind, "get", ru, {**auth(ru), "uniqueid": rng.choice(plan.visible)})
    if kind == "get-404":
        p = {**auth(ru), "uniqueid": rng.choice(plan.invisible)}
        return Request(kind, "get", ru, p, expect="404", keys=["uniqueid"])
    if kind == "bad-params":
        call, extra, keys = rng.choice(bad_cases(plan.invalid_customer))
        return Request(kind, call, ru, {**auth(ru), **extra}, expect="400", keys=keys)
    if kind == "forbidden":
        p = {**auth(ru), "customer": "system", "limit": "10"}
        return Request(kind, "list", ru, p, expect="402", keys=[""])
    assert kind == "wrong-password"
    p = {**auth(VICTIM, "wrong-" + str(rng.randrange(10**6))), "limit": "10"}
    return Request(kind, "list", VICTIM, p, expect="401", keys=[""])


# --------------------------------------------------------------------------- checks
def check_answer(req: Request, status: int, ctype: str, body: bytes, plan: Plan) -> str | None:
    """What is wrong with this answer, or None."""
    import orjson

    if status >= 500:
        return f"HTTP {status}"
    if status != 200:
        return f"HTTP {status} (ENSWITCH_HTTP_STATUS is 200)"
    if not ctype.startswith("application/json"):
        return f"content type {ctype!r}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:80]!r}"
    responses = doc.get("responses") if isinstance(doc, dict) else None
    if not responses or not isinstance(responses, list):
        return f"no responses: {body[:80]!r}"
    codes = [r.get("code") for r in responses]
    if any(c == "500" for c in codes):
        return f"envelope 500 key={responses[0].get('key')!r}"
    if codes != [req.expect] * len(codes):
        return f"envelope codes {codes}, expected {req.expect}: {body[:120]!r}"
    keys = [r.get("key") for r in responses]
    if req.expect != "200":
        if keys != req.keys:
            return f"keys {keys}, expected {req.keys}"
        if "data" in doc:
            return "data in a failed answer"
        return None
    data = doc.get("data")
    currency = plan.currency[req.user]
    if req.call == "get":
        if not isinstance(data, dict) or set(data) != ROW_KEYS:
            return "get: not one row"
        if data["uniqueid"] != req.params["uniqueid"] or data["currency"] != currency:
            return "get: another row"
        if (
            data["scustomer"] not in plan.reseller_set
            and data["dcustomer"] not in plan.reseller_set
        ):
            return "get: a row outside the user's customers"
        return None
    return check_rows(req, data, currency, plan)


def check_rows(req: Request, data: Any, currency: str, plan: Plan) -> str | None:
    p = req.params
    if not isinstance(data, list):
        return "data is not a list"
    if len(data) > int(p.get("limit") or 10**9):
        return f"{len(data)} rows, limit {p['limit']}"
    if req.user == plan.reseller_user:
        chosen = plan.reseller_under  # customer=all;recurse=1
    else:
        chosen = plan.customer_set if req.user == VICTIM else {plan.customer}
    start, end = int(p.get("start") or 0), int(p.get("end") or 2**62)
    sort = p.get("sort") or "start"
    desc = p.get("descending") == "1"
    previous = None
    for row in data:
        if not isinstance(row, dict) or set(row) != ROW_KEYS:
            return "a row with other keys"
        if row["currency"] != currency:
            return f"currency {row['currency']}"
        if row["scustomer"] not in chosen and row["dcustomer"] not in chosen:
            return f"row {row['uniqueid']} outside the selection"
        if not start <= row["start"] <= end:
            return f"row {row['uniqueid']} outside the window"
        if row["totaltime"] != row["end"] - row["start"]:
            return "totaltime"
        if row["cost"] != row["cost_excluding_tax"]:
            return "cost != cost_excluding_tax"
        if "cnumber" in p and p["cnumber"] not in row["cnumber"]:
            return f"cnumber {row['cnumber']!r} does not contain {p['cnumber']!r}"
        key = (row[sort], row["uniqueid"])
        if previous is not None and (key > previous if desc else key < previous):
            return f"order: {previous} then {key}"
        previous = key
    return None


# --------------------------------------------------------------------------- clients
def _send(conn: Any, req: Request, sep: str) -> tuple[int, str, bytes]:
    if req.post:
        body = urlencode(req.params).encode()
        conn.request("POST", f"/api/json/cdrs/{req.call}/", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    else:
        conn.request("GET", path_for(req.call, req.params, sep))
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, resp.getheader("Content-Type", ""), body


def client(args: tuple[int, Plan]) -> dict[str, Any]:
    import http.client

    index, plan = args
    cpu_start = time.process_time()
    rng = random.Random(plan.seed * 1000 + index)
    conn = http.client.HTTPConnection(HOST, plan.port, timeout=40)
    latencies: dict[str, list[float]] = defaultdict(list)
    outcomes: dict[str, Counter] = defaultdict(Counter)
    failures: list[str] = []
    samples: list[tuple[str, dict[str, str], bytes]] = []
    n = 0
    first = last = time.time()
    while time.time() < plan.until:
        req = make_request(rng, plan)
        n += 1
        started = time.perf_counter()
        try:
            status, ctype, body = _send(conn, req, rng.choice(";&"))
        except (OSError, http.client.HTTPException) as exc:
            outcomes[req.kind][f"transport: {type(exc).__name__}"] += 1
            failures.append(f"{req.kind}: {type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(HOST, plan.port, timeout=40)
            continue
        latencies[req.kind].append(time.perf_counter() - started)
        last = time.time()
        problem = check_answer(req, status, ctype, body, plan)
        if problem is None:
            outcomes[req.kind]["ok"] += 1
            if req.expect in ("200", "404") and n % plan.sample_every == 0:
                samples.append((req.kind, req.params, body))
        else:
            label = "wrong_answer"
            if status >= 500:
                label = "http_5xx"
            elif problem.startswith("envelope 500"):
                label = "envelope_500"
            outcomes[req.kind][label] += 1
            failures.append(f"{req.kind}: {problem}")
    conn.close()
    return {
        "cpu_s": time.process_time() - cpu_start,
        "latencies": dict(latencies),
        "outcomes": {k: dict(v) for k, v in outcomes.items()},
        "failures": failures[:50],
        "samples": samples,
        "first": first,
        "last": last,
    }


# --------------------------------------------------------------------------- the plan
def create_victim(scenario: Scenario) -> None:
    from customers.models import Role, User

    user = User.objects.filter(username=VICTIM).first() or User(username=VICTIM)
    user.customer_id, user.role, user.enabled = scenario.customer, Role.objects.get(id=990001), True
    user.set_password(BENCH_PASSWORD)
    user.save()


class Tree:
    """The customer tree read from the database, walked here (not by the product)."""

    def __init__(self) -> None:
        from customers.models import Customer

        self.rows = {c[0]: c for c in Customer.objects.values_list(
            "id", "parent_id", "bill_type", "currency_id")}  # fmt: skip
        self.kids: dict[int, list[int]] = defaultdict(list)
        self.memo: dict[int, frozenset[int]] = {}
        for cid, parent, _, _ in self.rows.values():
            if parent is not None:
                self.kids[parent].append(cid)

    def under(self, cid: int) -> set[int]:
        if cid in self.memo:
            return self.memo[cid]
        found: set[int] = set()
        todo = list(self.kids[cid])
        while todo:
            c = todo.pop()
            found.add(c)
            todo.extend(self.kids[c])
        self.memo[cid] = frozenset(found)
        return self.memo[cid]

    def subtree(self, cid: int) -> set[int]:
        return {cid} | self.under(cid)


def make_plan(scenario: Scenario, port: int, args: argparse.Namespace) -> Plan:
    from django.db.models import Q

    from cdrs.models import ArchivedLeg, Leg

    tree = Tree()
    rng = random.Random(args.seed)
    reseller_set = tree.subtree(scenario.reseller)
    inside = Q(scustomer_id__in=reseller_set) | Q(dcustomer_id__in=reseller_set)
    outside = ~Q(scustomer_id__in=reseller_set) & (
        Q(dcustomer_id__isnull=True) | ~Q(dcustomer_id__in=reseller_set)
    )
    recent = scenario.end - 10 * DAY
    visible = list(Leg.objects.filter(inside, start__gte=recent).values_list("uniqueid", flat=True)
                   .order_by("?")[:1500])  # fmt: skip
    visible += list(ArchivedLeg.objects.filter(inside).values_list("uniqueid", flat=True)
                    .order_by("?")[:300])  # fmt: skip
    invisible = list(Leg.objects.filter(outside, start__gte=recent)
                     .values_list("uniqueid", flat=True).order_by("?")[:300])  # fmt: skip
    invisible += [f"{rng.randrange(10**9, 2 * 10**9)}.{i}" for i in range(100)]
    invalid = next(c for c in sorted(tree.rows) if c not in reseller_set)
    currency = {
        scenario.customer_user: tree.rows[scenario.customer][3],
        VICTIM: tree.rows[scenario.customer][3],
        scenario.reseller_user: tree.rows[scenario.reseller][3],
    }
    return Plan(
        port=port, end=scenario.end, customer=scenario.customer, reseller=scenario.reseller,
        customer_user=scenario.customer_user, reseller_user=scenario.reseller_user,
        digits=scenario.digits, visible=visible, invisible=invisible,
        customer_set=tree.subtree(scenario.customer), reseller_under=tree.under(scenario.reseller),
        reseller_set=reseller_set, currency=currency, invalid_customer=invalid,
        sample_every=args.sample_every, seed=args.seed,
    )  # fmt: skip


# --------------------------------------------------------------------------- verification
class Verifier:
    """Sampled answers against PostgreSQL: the FilterSet's SQL, and tests/reference.py."""

    def __init__(self, plan: Plan) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        import reference as ref  # tests/reference.py

        from customers.models import Card, Currency

        self.ref, self.plan, self.tree = ref, plan, Tree()
        customers = {cid: ref.Customer(cid, parent, bill, cur)
                     for cid, parent, bill, cur in self.tree.rows.values()}  # fmt: skip
        currencies = dict(Currency.objects.values_list("code", "value"))
        cards = dict(Card.objects.values_list("id", "customer_id"))
        self.base = (customers, currencies, cards)
        self.leg_cache: dict[tuple, list] = {}
        self.viewer = {plan.customer_user: plan.customer, VICTIM: plan.customer,
                       plan.reseller_user: plan.reseller}  # fmt: skip
        self.done = Counter()
        self.failed: list[str] = []

    def world(self, legs: list) -> Any:
        ref, tree = self.ref, self.tree

        class FastWorld(ref.World):  # the reference's tree walks, from a children map
            def children(self, cid: int) -> list[int]:
                return tree.kids[cid]

            def under(self, cid: int) -> set[int]:
                return tree.under(cid)

        customers, currencies, cards = self.base
        return FastWorld(customers, currencies, cards, legs)

    def legs(self, customers: set[int], start: int | None, end: int | None,
             uniqueid: str | None = None) -> list:  # fmt: skip
        """Legs of these customers in [start, end] (or one uniqueid), with their costs,
        hot and archived, as the reference's records."""
        from django.db.models import Q

        from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost

        key = (frozenset(customers), start, end, uniqueid)
        if key in self.leg_cache:
            return self.leg_cache[key]
        fields = ("id", "uniqueid", "scustomer_id", "start", "end", "callid", "talktime",
                  "status", "direction", "stype", "snumber", "ctype", "cnumber", "dtype",
                  "dnumber", "callername", "dcustomer_id", "peer_id", "invoice_id",
                  "card_id")  # fmt: skip
        out = []
        for model, cost_model, archived in ((Leg, LegCost, False),
                                            (ArchivedLeg, ArchivedLegCost, True)):  # fmt: skip
            if uniqueid is not None:
                qs = model.objects.filter(uniqueid=uniqueid)
            else:
                if archived:
                    continue  # list queries here never ask for the archive
                qs = model.objects.filter(Q(scustomer_id__in=customers)
                                          | Q(dcustomer_id__in=customers))  # fmt: skip
                if start is not None:
                    qs = qs.filter(start__gte=start)
                if end is not None:
                    qs = qs.filter(start__lte=end)
            rows = list(qs.values_list(*fields))
            costs: dict[int, list] = defaultdict(list)
            ids = [r[0] for r in rows]
            for i in range(0, len(ids), 20000):
                for leg_id, cust, card, amount, tax, cur in cost_model.objects.filter(
                    leg_id__in=ids[i : i + 20000]
                ).values_list("leg_id", "customer_id", "card_id", "cost", "tax", "currency_id"):
                    costs[leg_id].append(self.ref.Cost(amount, tax, cur, cust, card))
            out += [self.ref.Leg(*r[1:], archived=archived, costs=tuple(costs[r[0]])) for r in rows]
        if len(self.leg_cache) > 64:
            self.leg_cache.clear()
        self.leg_cache[key] = out
        return out

    def verify(self, kind: str, params: dict[str, str], body: bytes) -> None:
        doc = json.loads(body, parse_float=Decimal)
        data = doc.get("data")
        try:
            if kind.startswith("get"):
                self.by_reference_get(kind, params, doc)
            else:
                self.by_sql(kind, params, data)
                self.by_reference_list(kind, params, data)
        except Exception as exc:  # noqa: BLE001 - a failed check, with its reason
            self.failed.append(f"{kind} {self.shown(params)}: {type(exc).__name__}: {exc}")

    @staticmethod
    def shown(params: dict[str, str]) -> str:
        return json.dumps({k: v for k, v in params.items() if k != "auth_password"})

    def fail(self, what: str, params: dict[str, str], message: str) -> None:
        self.failed.append(f"{what} {self.shown(params)}: {message}")

    def by_sql(self, kind: str, params: dict[str, str], data: list[dict]) -> None:
        from django.db import connection

        sql, _ = query_sql(params)
        with connection.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        self.done["sql"] += 1
        api_ids = [r["uniqueid"] for r in data]
        db_ids = [r[0] for r in rows]
        if api_ids != db_ids:
            self.fail(f"{kind} vs FilterSet SQL", params,
                      f"uniqueids differ: API {api_ids[:3]}... ({len(api_ids)}) vs "
                      f"PostgreSQL {db_ids[:3]}... ({len(db_ids)})")  # fmt: skip
            return
        for api, r in zip(data, rows, strict=True):
            if api["cost"] != (r[20] or 0) or api["cost_including_tax"] != (r[21] or 0):
                self.fail(f"{kind} vs FilterSet SQL", params,
                          f"{r[0]}: cost {api['cost']}/{api['cost_including_tax']} vs "
                          f"{r[20]}/{r[21]}")  # fmt: skip
                return

    def compare_rows(
        self, what: str, params: dict[str, str], api_rows: list, ref_rows: list
    ) -> None:
        api_ids = [r["uniqueid"] for r in api_rows]
        ref_ids = [r["uniqueid"] for r in ref_rows]
        if api_ids != ref_ids:
            self.fail(what, params, f"uniqueids differ: API {api_ids[:3]}... ({len(api_ids)}) vs "
                                    f"reference {ref_ids[:3]}... ({len(ref_ids)})")  # fmt: skip
            return
        for api, ref in zip(api_rows, ref_rows, strict=True):
            for key, value in ref.items():
                if api[key] != value:
                    self.fail(what, params, f"{ref['uniqueid']}: {key} {api[key]!r} vs {value!r}")
                    return

    def by_reference_list(self, kind: str, params: dict[str, str], data: list[dict]) -> None:
        user = params["auth_username"]
        viewer = self.viewer[user]
        selection = self.tree.under(viewer) if params.get("customer") == "all" else {viewer}
        if params.get("recurse") == "1" and params.get("customer") != "all":
            selection = self.tree.subtree(viewer)
        start = int(params["start"]) if params.get("start") else None
        end = int(params["end"]) if params.get("end") else None
        world = self.world(self.legs(selection, start, end))
        query = {k: v for k, v in params.items() if not k.startswith("auth_")}
        result = self.ref.cdrs_list(world, viewer, {"cdrs", "archive"}, query, int(time.time()))
        self.done["reference"] += 1
        if result.code != 200:
            self.fail(f"{kind} vs reference", params, f"reference says {result.code}")
            return
        self.compare_rows(f"{kind} vs reference", params, data, result.data)

    def by_reference_get(self, kind: str, params: dict[str, str], doc: dict) -> None:
        viewer = self.viewer[params["auth_username"]]
        world = self.world(self.legs(set(), None, None, uniqueid=params["uniqueid"]))
        query = {k: v for k, v in params.items() if not k.startswith("auth_")}
        result = self.ref.cdrs_get(world, viewer, {"cdrs", "archive"}, query)
        self.done["reference"] += 1
        code = doc["responses"][0]["code"]
        if str(result.code) != code:
            self.fail(f"{kind} vs reference", params, f"API {code}, reference {result.code}")
        elif result.code == 200:
            self.compare_rows(f"{kind} vs reference", params, [doc["data"]], [result.data])


# --------------------------------------------------------------------------- run
def summarise(results: list[dict], seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = defaultdict(list)
    outcomes: dict[str, Counter] = defaultdict(Counter)
    failures: list[str] = []
    for r in results:
        for kind, values in r["latencies"].items():
            latencies[kind].extend(values)
        for kind, counts in r["outcomes"].items():
            outcomes[kind].update(counts)
        failures += r["failures"]
    elapsed = max(r["last"] for r in results) - min(r["first"] for r in results)
    total = sum(sum(c.values()) for c in outcomes.values())
    kinds = {}
    for kind in MIX:
        c = outcomes.get(kind, Counter())
        kinds[kind] = {"requests": sum(c.values()), **percentiles_ms(latencies.get(kind, [])),
                       "errors": sum(v for k, v in c.items() if k != "ok"),
                       "outcomes": dict(c)}  # fmt: skip
    all_latencies = [v for values in latencies.values() for v in values]
    errors = Counter()
    for c in outcomes.values():
        for k, v in c.items():
            if k != "ok":
                errors[k] += v
    return {"requests": total, "seconds": elapsed, "requests_per_s": total / max(elapsed, 1e-9),
            "overall": percentiles_ms(all_latencies), "kinds": kinds, "errors": dict(errors),
            "failures": failures[:30]}  # fmt: skip


def report_markdown(s: dict[str, Any], checks: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [
        "### Load test (bench/loadtest.py)",
        "",
        f"Command: `{info['command']}`",
        "",
        f"Run: {info['when']}; {info['machine']}; load average before the run: "
        f"{info['load_before']} (other work on the machine shares the 2 cores).",
        "",
        f"Server: gunicorn.conf.py, {info['workers']} sync workers, database `{info['db']}` "
        f"({info['legs']:,} hot legs), PostgreSQL {info['pg']}; "
        "ENSWITCH_AUTH_MAX_FAILURES_PER_USER/ADDRESS raised to 10^9 for the run (the "
        "wrong-password requests would otherwise lock the test's user, then every user "
        "on 127.0.0.1).",
        "",
        f"**{s['requests']:,} requests in {s['seconds']:.1f} s = {s['requests_per_s']:.0f} "
        f"requests/s** with {info['clients']} clients; overall p50 {s['overall']['p50']:.1f} / "
        f"p95 {s['overall']['p95']:.1f} / p99 {s['overall']['p99']:.1f} ms.",
        "",
        "| kind | share | requests | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, k in s["kinds"].items():
        lines.append(f"| {kind} | {MIX[kind]}% | {k['requests']:,} | {k['p50']:.1f} | "
                     f"{k['p95']:.1f} | {k['p99']:.1f} | {k['errors']} |")  # fmt: skip
    errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
    cpu = s["cpu_s"]
    lines += [
        "",
        f"CPU seconds used during the {cpu['wall']:.0f} s (the machine has "
        f"{os.cpu_count()} cores, {os.cpu_count() * cpu['wall']:.0f} CPU-s): gunicorn "
        f"{cpu['gunicorn']:.0f}, PostgreSQL {cpu['postgresql']:.0f}, the test's clients "
        f"{cpu['clients']:.0f}, everything else on the machine {cpu['other']:.0f}. Each "
        "wrong password costs one PBKDF2 hash (~0.3 s of CPU).",
        "",
        f"- Errors (HTTP 5xx, envelope 500, wrong answers, transport failures): {errors}.",
        f"- Every answer checked (code and keys, rows: keys, currency, selection, window, "
        f"order, limit). Sampled answers (1 in {info['sample_every']}) checked against "
        f"PostgreSQL: {checks['sql']} with the FilterSet's SQL, {checks['reference']} with "
        f"tests/reference.py fed with the rows of their scope; **{checks['failed']} failed**.",
        f"- gunicorn log: {json.dumps(info['log'])}.",
        f"- Result: **{'PASS' if info['passed'] else 'FAIL'}**.",
    ]
    if info["failures"]:
        lines += ["", "First failures:", ""] + [f"- `{f}`" for f in info["failures"][:10]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--legs", type=int, default=1_000_000, help="the bench database's size")
    parser.add_argument("--customers", type=int, default=10_000, help="when building it")
    parser.add_argument("--pgdir", default=str(WORK / "pg"), help="the cluster's directory")
    parser.add_argument("--sample-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-results", action="store_true", help="don't write results.md")
    args = parser.parse_args()
    REL.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    db = f"bench_{args.legs}"
    cluster, started = open_cluster(Path(args.pgdir).resolve())
    try:
        ensure_bench_database(cluster, db, args.legs, args.customers)
        setup_django(cluster.db_url(db))
        from cdrs.models import Leg

        scenario = prepare_scenario(1000)
        create_victim(scenario)
        legs = Leg.objects.count()
        port = free_port()
        plan = make_plan(scenario, port, args)
        log = REL / "gunicorn-loadtest.log"
        log.write_text("")
        server = ReliabilityServer(cluster.db_url(db), port, args.workers, env=NO_LOCK_ENV,
                                   log=log)  # fmt: skip
        with server:
            warm = random.Random(0)
            for _ in range(40):  # each worker sees each user and query shape once
                client_once(make_request(warm, plan), plan)
            print(f"load: {args.clients} clients for {args.seconds:.0f} s on port {port}",
                  flush=True)  # fmt: skip
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(args.clients) as pool:
                pool.map(time.sleep, [0.01] * args.clients)  # started before the clock runs
                servers = [server.proc.pid, *server.worker_pids()]
                cpu0 = (cpu_seconds(servers), cpu_seconds(cluster_pids(cluster)),
                        machine_busy_seconds(), time.time())  # fmt: skip
                plan.until = time.time() + args.seconds
                results = pool.map(client, [(i, plan) for i in range(args.clients)])
                servers = [server.proc.pid, *server.worker_pids()]
                cpu1 = (cpu_seconds(servers), cpu_seconds(cluster_pids(cluster)),
                        machine_busy_seconds(), time.time())  # fmt: skip
            log_info = server.log_summary()
        summary = summarise(results, args.seconds)
        clients_cpu = sum(r["cpu_s"] for r in results)
        cpu = {"gunicorn": cpu1[0] - cpu0[0], "postgresql": cpu1[1] - cpu0[1],
               "clients": clients_cpu, "machine": cpu1[2] - cpu0[2],
               "wall": cpu1[3] - cpu0[3]}  # fmt: skip
        cpu["other"] = cpu["machine"] - cpu["gunicorn"] - cpu["postgresql"] - cpu["clients"]
        summary["cpu_s"] = {k: round(v, 1) for k, v in cpu.items()}
        print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1))
        verifier = Verifier(plan)
        samples = [s for r in results for s in r["samples"]]
        started_v = time.time()
        for kind, params, body in samples:
            verifier.verify(kind, params, body)
        checks = {"sql": verifier.done["sql"], "reference": verifier.done["reference"],
                  "failed": len(verifier.failed), "samples": len(samples),
                  "seconds": time.time() - started_v}  # fmt: skip
        print("checks:", json.dumps(checks))
        failures = summary["failures"] + verifier.failed
        for f in failures[:20]:
            print("FAIL:", f)
        passed = not failures and not summary["errors"] and log_info["worker_timeouts"] == 0
        info = {
            "command": " ".join([".venv/bin/python bench/loadtest.py", *sys.argv[1:]]),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": ", ".join(f"{k} {v}" for k, v in machine().items()),
            "load_before": load_before, "workers": args.workers, "db": db, "legs": legs,
            "pg": cluster.psql("postgres", "SHOW server_version").strip(),
            "clients": args.clients, "sample_every": args.sample_every, "log": log_info,
            "passed": passed, "failures": failures,
        }  # fmt: skip
        if not args.no_results:
            write_results("loadtest", report_markdown(summary, checks, info))
            print(f"wrote {RESULTS}")
        print("PASS" if passed else "FAIL")
        return 0 if passed else 1
    finally:
        if started:
            cluster.stop()


def client_once(req: Request, plan: Plan) -> None:
    import http.client

    conn = http.client.HTTPConnection(HOST, plan.port, timeout=40)
    try:
        status, ctype, body = _send(conn, req, ";")
    finally:
        conn.close()
    problem = check_answer(req, status, ctype, body, plan)
    if problem:
        raise RuntimeError(f"warm-up {req.kind}: {problem}")


if __name__ == "__main__":
    sys.exit(main())
