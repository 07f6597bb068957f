"""Read replicas (enswitch/replicas.py): the choice of node, freshness, failover.

The first part runs on every store, against a simulated primary and standbys (their WAL
positions as integers, a clock of our own). The second needs the primary and hot standby
of scripts/replica.sh (`DB=replica bash scripts/test.sh`) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg.errors
import pytest
from django.db import OperationalError, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cdrs.models import Leg
from customers.models import User
from enswitch import replicas
from enswitch.models import LoginFailures
from enswitch.replicas import NodeBehind, ReplicaRouter, Replicas, reads_alias, serve_reads
from tests import api_helpers as h
from tests.replica_helpers import REPLICA_MODE, standby_ctl, wait_for_replay

ROOT = Path(__file__).resolve().parent.parent


# --- a simulated primary and its standbys ----------------------------------------------


@dataclass
class World:
    """WAL positions as integers: the primary's flushed position and each standby's
    replayed one; `commits` holds (time, position) of each commit."""

    now: float = 1000.0
    primary: int = 0
    replayed: dict[str, int] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    probes: int = 0
    commits: list[tuple[float, int]] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def write(self) -> None:
        self.primary += 1
        self.commits.append((self.now, self.primary))

    def has_replayed(self, alias: str, position: str) -> bool:
        self.probes += 1
        if alias in self.down:
            raise OperationalError("connection refused")
        return self.replayed[alias] >= int(position)


@pytest.fixture
def world(monkeypatch, settings):
    settings.DATABASE_REPLICA_MAX_LAG = 5.0
    settings.DATABASE_REPLICA_RETRY_SECONDS = 5.0
    w = World(replayed={"replica1": 0, "replica2": 0})
    monkeypatch.setattr(replicas, "primary_position", lambda: str(w.primary))
    monkeypatch.setattr(replicas, "has_replayed", w.has_replayed)
    monkeypatch.setattr(replicas, "_drop_connection", lambda alias: None)
    return w


def test_an_idle_primary_is_not_taken_for_lag(world):
    node = Replicas(["replica1"], clock=world.clock)
    world.write()
    world.replayed["replica1"] = world.primary
    for _ in range(120):  # a minute without a write: the standby stays in use
        world.now += 0.5
        assert node.candidates() == ["replica1"]


def test_wal_received_but_not_replayed_is_lag(world):
    node = Replicas(["replica1"], clock=world.clock)
    assert node.candidates() == ["replica1"]
    world.write()  # the standby receives it, but its replay is paused
    world.now += 4.9
    assert node.candidates() == ["replica1"]  # within the bound
    world.now += 0.2
    assert node.candidates() == []  # the commit is now older than the bound
    world.replayed["replica1"] = world.primary  # replay resumes
    world.now += 1.0
    assert node.candidates() == ["replica1"]


def test_the_verdict_is_cached_between_checks(world):
    node = Replicas(["replica1"], clock=world.clock)
    for _ in range(100):
        node.candidates()
        world.now += 0.01
    assert world.probes == 1  # once a second at most


def test_an_unreachable_replica_is_left_alone_then_used_again(world):
    node = Replicas(["replica1"], clock=world.clock)
    world.down.add("replica1")
    assert node.candidates() == []
    probes = world.probes
    for _ in range(9):
        world.now += 0.5
        assert node.candidates() == []
    assert world.probes == probes  # not asked again while it is marked down
    world.down.clear()
    world.now += 0.6
    assert node.candidates() == ["replica1"]


def test_a_fresh_replica_found_down_by_its_check_is_not_offered(world):
    node = Replicas(["replica1"], clock=world.clock)
    assert node.candidates() == ["replica1"]
    world.down.add("replica1")
    world.now += 1.0  # the next check: fresh a second ago, but down now
    assert node.candidates() == []


def test_several_replicas_share_the_reads(world):
    node = Replicas(["replica1", "replica2"], clock=world.clock)
    firsts = [node.candidates()[0] for _ in range(400)]
    assert 120 < firsts.count("replica1") < 280


@hsettings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("wait"), st.floats(0.01, 3.0)),
            st.tuples(st.just("write"), st.none()),
            st.tuples(st.just("replay"), st.sampled_from(["replica1", "replica2"])),
            st.tuples(st.just("fail"), st.sampled_from(["replica1", "replica2"])),
            st.tuples(st.just("request"), st.none()),
        ),
        max_size=60,
    )
)
def test_no_answer_misses_a_commit_older_than_the_bound(steps):
    """The promise against a model: a replica chosen at time t has replayed every commit
    made before t - DATABASE_REPLICA_MAX_LAG, whatever the writes, replays, pauses and
    failures before."""
    from django.conf import settings

    w = World(replayed={"replica1": 0, "replica2": 0})
    saved = replicas.primary_position, replicas.has_replayed, replicas._drop_connection
    replicas.primary_position = lambda: str(w.primary)
    replicas.has_replayed = w.has_replayed
    replicas._drop_connection = lambda alias: None
    try:
        node = Replicas(["replica1", "replica2"], clock=w.clock)
        for kind, arg in steps:
            if kind == "wait":
                w.now += arg
            elif kind == "write":
                w.write()
            elif kind == "replay":
                w.replayed[arg] = w.primary
            elif kind == "fail":
                w.down ^= {arg}
            else:
                for alias in node.candidates():
                    old = [p for t, p in w.commits if t < w.now - settings.DATABASE_REPLICA_MAX_LAG]
                    assert w.replayed[alias] >= max(old, default=0), (alias, w)
    finally:
        replicas.primary_position, replicas.has_replayed, replicas._drop_connection = saved


# --- serve_reads: one node per request, failover before the first byte -----------------


@pytest.fixture
def two_replicas(world, monkeypatch):
    node = Replicas(["replica1", "replica2"], clock=world.clock)
    monkeypatch.setattr(replicas, "state", lambda: node)
    monkeypatch.setattr(replicas, "_unusable", lambda alias: True)
    return node


def failing_on(*aliases: str, error: BaseException | None = None):
    served: list[str] = []

    def answer() -> str:
        served.append(reads_alias())
        if reads_alias() in aliases:
            raise error or OperationalError("server closed the connection unexpectedly")
        return reads_alias()

    return answer, served


def test_a_failing_replica_is_replaced_and_remembered(two_replicas):
    answer, served = failing_on("replica1", "replica2")
    assert serve_reads(answer) == "default"
    assert sorted(served[:2]) == ["replica1", "replica2"]
    assert served[2:] == ["default"]
    served.clear()
    assert serve_reads(answer) == "default"
    assert served == ["default"]  # both are remembered as down


def test_a_recovery_conflict_is_retried_without_marking_the_replica_down(two_replicas):
    conflict = OperationalError("canceling statement due to conflict with recovery")
    conflict.__cause__ = psycopg.errors.SerializationFailure("conflict with recovery")
    answer, served = failing_on("replica1", error=conflict)
    for _ in range(20):
        assert serve_reads(answer) == "replica2"
    assert served.count("replica1") > 0
    assert two_replicas.candidates() != []
    assert all(n.down_until < two_replicas.clock() for n in two_replicas.nodes.values())


def test_a_statement_timeout_is_not_retried(two_replicas):
    timeout = OperationalError("canceling statement due to statement timeout")
    timeout.__cause__ = psycopg.errors.QueryCanceled("statement timeout")
    answer, served = failing_on("replica1", "replica2", error=timeout)
    with pytest.raises(OperationalError):
        serve_reads(answer)
    assert len(served) == 1


def test_a_replica_without_the_users_customer_yet_is_passed_over(two_replicas):
    answer, served = failing_on("replica1", "replica2", error=NodeBehind())
    assert serve_reads(answer) == "default"
    assert two_replicas.candidates() != []  # not marked down


@pytest.mark.django_db
def test_inside_a_transaction_on_the_primary_reads_stay_there(two_replicas):
    answer, served = failing_on()
    with transaction.atomic():
        assert serve_reads(answer) == "default"


def test_the_router_applies_the_choice_to_the_answers_tables_only(two_replicas):
    router = ReplicaRouter()
    assert router.db_for_read(Leg) is None  # outside an API answer: the primary
    seen = {}

    def answer() -> None:
        seen.update({m: router.db_for_read(m) for m in (Leg, User, LoginFailures)})

    serve_reads(answer)
    assert seen[Leg].startswith("replica")
    assert seen[User] == seen[LoginFailures] == "default"
    assert router.db_for_write(Leg) == "default"
    assert router.allow_migrate("replica1", "cdrs") is False
    assert router.allow_migrate("default", "cdrs") is True


# --- settings ---------------------------------------------------------------------------


def _settings_of(**env: str) -> subprocess.CompletedProcess:
    code = (
        "from django.conf import settings as s; "
        "print({a: (d['HOST'], d['PORT'], d['TEST'].get('MIRROR'), d['OPTIONS'].get("
        "'connect_timeout')) for a, d in s.DATABASES.items() if a != 'default'}, "
        "s.DATABASE_REPLICA_MAX_LAG)"
    )
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "enswitch.settings", **env},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_replica_urls_become_aliases_that_mirror_the_primary_in_tests():
    done = _settings_of(
        DATABASE_URL="postgres://app@db1/cdrs",
        DATABASE_REPLICA_URLS="postgres://app@db2:6432/cdrs, postgres://app@db3/cdrs",
        DATABASE_REPLICA_MAX_LAG="2.5",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "{'replica1': ('db2', 6432, 'default', 2), 'replica2': ('db3', '', 'default', 2)} 2.5"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_REPLICA_MAX_LAG": "0"}, "DATABASE_REPLICA_MAX_LAG='0' is not a number"),
        ({"DATABASE_REPLICA_MAX_LAG": "soon"}, "DATABASE_REPLICA_MAX_LAG='soon' is not a"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_REPLICA_URLS: replicas are PostgreSQL"),
    ],
)
def test_bad_replica_settings_are_refused_with_one_line(env, message):
    env = {
        "DATABASE_URL": "postgres://app@db1/cdrs",
        "DATABASE_REPLICA_URLS": "postgres://r/c",
        **env,
    }
    done = subprocess.run(  # noqa: S603 - this checkout's manage.py
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert done.stderr.startswith(f"error: {message}")
    assert len(done.stderr.strip().splitlines()) == 1


# --- on a real primary and hot standby (scripts/replica.sh) -----------------------------

_needs_standby = pytest.mark.skipif(
    not REPLICA_MODE, reason="needs a primary and a hot standby: DB=replica scripts/test.sh"
)
_committed = pytest.mark.django_db(transaction=True, databases="__all__")


def on_standby(test):
    return _needs_standby(_committed(test))


STANDBY = "replica1"
DAY = 1_700_000_000
TOTALS = "/api/json/cdrs/totals/list/"


@pytest.fixture
def fresh_state(settings):
    settings.DATABASE_REPLICA_MAX_LAG = 2.0  # long enough for a request on a busy machine
    settings.DATABASE_REPLICA_RETRY_SECONDS = 1.0
    replicas._state = None
    yield
    replicas._state = None


@pytest.fixture
def calls(fresh_state):
    actors = h.make_actors()
    for n in range(30):
        h.make_leg(f"leg-{n:02}", 11, start=DAY + n, costs=[{"customer": 11, "cost": n}])
    h.make_leg("other-branch", 21, start=DAY)
    wait_for_replay()
    return actors


def _standby_sql(sql: str) -> None:
    with connections[STANDBY].cursor() as cursor:
        cursor.execute(sql)


def _answers(client: Client, who: h.Actor) -> list:
    """A page, a limit=0 export and a cdrs/get, as their rows."""
    page = h.call(client, **who.creds, customer="all", recurse=1, end=DAY + 99, limit=10)
    export = h.call(client, **who.creds, customer="all", recurse=1, end=DAY + 99, limit=0)
    one = h.call(client, h.GET, **who.creds, uniqueid="leg-07")
    return [h.assert_ok(page), h.assert_ok(export), h.assert_ok(one)]


@on_standby
def test_the_legs_and_the_customer_tree_are_read_on_the_standby(client, calls):
    with CaptureQueriesContext(connections[STANDBY]) as standby:
        with CaptureQueriesContext(connections["default"]) as primary:
            page, export, one = _answers(client, calls.reseller)
    assert [r["uniqueid"] for r in export] == [f"leg-{n:02}" for n in range(30)]
    assert [r["uniqueid"] for r in page] == [f"leg-{n:02}" for n in range(10)]
    assert one["uniqueid"] == "leg-07"
    on_standby_sql = " ".join(q["sql"] for q in standby.captured_queries)
    on_primary_sql = " ".join(q["sql"] for q in primary.captured_queries)
    for table in ("cdrs_leg", "customers_customer"):
        assert table in on_standby_sql
    assert "cdrs_leg" not in on_primary_sql
    # Credentials on the primary only.
    assert "customers_user" in on_primary_sql
    assert "customers_user" not in on_standby_sql


@on_standby
def test_the_totals_are_read_on_the_standby_inside_its_own_time_limit(client, calls):
    with CaptureQueriesContext(connections[STANDBY]) as standby:
        with CaptureQueriesContext(connections["default"]) as primary:
            answer = h.call(client, TOTALS, **calls.reseller.creds, customer="all", recurse=1,
                            start=0, end=DAY + 3599 * 2)  # fmt: skip
    rows = h.assert_ok(answer)
    assert sum(r["inbound"] + r["outbound"] + r["internal"] for r in rows) >= 30
    assert "cdrs_calltotals" in " ".join(q["sql"] for q in standby.captured_queries)
    assert "cdrs_calltotals" not in " ".join(q["sql"] for q in primary.captured_queries)

    # The export's time limit is set in the transaction the rows are read in.
    def export_limits(queries: list[dict]) -> list[str]:
        return [q["sql"] for q in queries if "statement_timeout" in q["sql"] and "true" in q["sql"]]

    assert export_limits(standby.captured_queries)
    assert not export_limits(primary.captured_queries)


@on_standby
def test_a_commit_is_served_once_the_bound_has_passed_while_replay_is_paused(
    client, calls, settings
):
    h.assert_ok(h.call(client, **calls.customer.creds))  # the standby is seen caught up
    _standby_sql("SELECT pg_wal_replay_pause()")
    try:
        h.make_leg("while-paused", 11, start=DAY + 50)
        committed = time.monotonic()
        plain = Client()  # no waiting for the replay
        seen_missing = False
        while True:
            asked = time.monotonic()
            answer = h.call(plain, **calls.customer.creds, end=DAY + 99, limit=0)
            found = "while-paused" in answer.ids
            if asked - committed > settings.DATABASE_REPLICA_MAX_LAG:
                assert found, "a commit older than the bound is missing"
                break
            seen_missing |= not found
            time.sleep(0.05)
        # Before the bound the paused standby answered (without the new leg).
        assert seen_missing
    finally:
        _standby_sql("SELECT pg_wal_replay_resume()")
    wait_for_replay()
    with CaptureQueriesContext(connections[STANDBY]) as standby:
        time.sleep(0.6)  # the next check (every 0.5 s) sees the standby caught up
        answer = h.call(client, **calls.customer.creds, end=DAY + 99, limit=0)
    assert "while-paused" in answer.ids
    assert any("cdrs_leg" in q["sql"] for q in standby.captured_queries)


@on_standby
def test_answers_stay_right_when_the_standby_is_shut_down_hard(client, calls):
    before = _answers(client, calls.reseller)
    standby_ctl("-m", "immediate", "-w", "stop")
    try:
        plain = Client()
        for _ in range(3):  # the first request finds the connection broken
            assert _answers(plain, calls.reseller) == before
            charlie = h.call(plain, **calls.charlie.creds, end=DAY + 99)
            assert charlie.ids == ["other-branch"]
        assert replicas.state().candidates() == []
    finally:
        standby_ctl("-w", "-t", "60", "-l", os.environ["PG_REPLICA_DATA"] + "/../restart.log",
                    "start")  # fmt: skip
    wait_for_replay()
    time.sleep(1.1)  # DATABASE_REPLICA_RETRY_SECONDS: then the standby is tried again
    with CaptureQueriesContext(connections[STANDBY]) as standby:
        assert _answers(client, calls.reseller) == before
    assert any("cdrs_leg" in q["sql"] for q in standby.captured_queries)


@on_standby
def test_the_throttle_and_the_admin_write_to_the_primary(client, calls, settings, admin_client):
    settings.ENSWITCH_AUTH_THROTTLE = True
    with CaptureQueriesContext(connections[STANDBY]) as standby:
        bad = h.call(client, auth_username="customer", auth_password="wrong")
        h.assert_error(bad, 401)
        good = h.call(client, **calls.customer.creds, end=DAY + 99, limit=0)
        response = admin_client.post(
            f"/admin/customers/user/{calls.charlie.user.pk}/change/",
            {"username": "charlie2", "customer": 21, "role": calls.charlie.user.role_id,
             "enabled": "on"},
        )  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    assert len(h.assert_ok(good)) == 30
    assert LoginFailures.objects.using("default").exists()
    assert User.objects.using("default").filter(username="charlie2").exists()
    written = [q["sql"] for q in standby.captured_queries]
    assert not [q for q in written if q.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert not [q for q in written if "loginfailures" in q or "customers_user" in q]


@on_standby
def test_a_customer_moved_while_the_standby_lags_sees_one_tree(client, calls):
    """The user's place in the tree comes from the node that serves the legs: just after a
    move, the lagging standby answers with its own (older) tree, not with the primary's
    path looked up in the standby's tree (which would find nothing)."""
    h.assert_ok(h.call(client, **calls.customer.creds))  # the standby is seen caught up
    _standby_sql("SELECT pg_wal_replay_pause()")
    try:
        moved = calls.customer.customer
        moved.parent = calls.charlie_reseller
        moved.save()
        answer = h.call(Client(), **calls.customer.creds, end=DAY + 99, limit=0)
        assert len(h.assert_ok(answer)) == 30
    finally:
        _standby_sql("SELECT pg_wal_replay_resume()")


def test_the_tree_as_the_reads_see_it_leaves_the_users_own_copy_alone(monkeypatch):
    from cdrs import scope
    from customers.models import Customer

    user = User(pk=1, username="u", customer=Customer(pk=5, path="/1/5/", parent_id=1))
    monkeypatch.setattr(scope, "reads_alias", lambda: "replica1")
    monkeypatch.setattr(scope, "_place_on", lambda alias, pk: ("/1/7/5/", 7))
    seen = scope.as_the_reads_see_it(user)
    assert (seen.customer.path, seen.customer.parent_id) == ("/1/7/5/", 7)
    assert (user.customer.path, user.customer.parent_id) == ("/1/5/", 1)
    monkeypatch.setattr(scope, "_place_on", lambda alias, pk: None)
    with pytest.raises(NodeBehind):
        scope.as_the_reads_see_it(user)


@pytest.mark.django_db
def test_the_place_query_reads_a_customers_path_and_parent():
    from cdrs import scope

    actors = h.make_actors()
    assert scope._place_on("default", actors.customer.id) == ("/1/10/11/", 10)
    assert scope._place_on("default", 999) is None
