"""archive_cdrs: every leg exactly once, with its costs, archived exactly when it should be."""

# SQL here is built from the models' table names only.
# ruff: noqa: S608

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrs import archive
from cdrs.archive import ArchiveLocked, IdClash
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from cdrs.parameters import parse_list
from cdrs.queries import list_page
from cdrs.rows import COLUMNS
from enswitch import citus
from enswitch.api.params import Params
from tests import factories as f

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000
on_postgres = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL behaviour")


# --- helpers ------------------------------------------------------------------------


@pytest.fixture
def world():
    usd = f.currency("USD")
    eur = f.currency("EUR", "1.1")
    owner = f.customer(name="Owner")
    a = f.customer(owner, name="A")
    b = f.customer(owner, name="B", cur=eur)
    return {"usd": usd, "eur": eur, "owner": owner, "a": a, "b": b}


def costs_for(world: dict, i: int) -> list[dict]:
    """0, 1 or 2 cost records, varying with i."""
    picks = [[], [world["owner"]], [world["owner"], world["a"]]][i % 3]
    return [
        {"customer": c, "cost": Decimal(f"{i}.5"), "tax": Decimal(i % 2), "currency": world["usd"]}
        for c in picks
    ]


def make_legs(world: dict, starts: list[int]) -> list[Leg]:
    """Live legs with these starts (ties allowed), with 0-2 cost records each, in bulk."""
    legs = Leg.objects.bulk_create(
        Leg(
            uniqueid=f"{T0 + s}.{i:04d}",
            callid=f"call{i}",
            start=T0 + s,
            end=T0 + s + 60,
            talktime=10,
            direction="out",
            scustomer=world["a"] if i % 2 else world["b"],
            dcustomer=world["owner"] if i % 5 == 0 else None,
        )
        for i, s in enumerate(starts)
    )
    LegCost.objects.bulk_create(
        LegCost(leg=leg, **c) for i, leg in enumerate(legs) for c in costs_for(world, i)
    )
    return legs


def store() -> dict[str, tuple[str, int, tuple]]:
    """uniqueid -> (table, id, its cost records), after checking the invariant: each leg
    in exactly one table, every cost record with a leg of its own table."""
    out: dict[str, tuple[str, int, tuple]] = {}
    for table, leg_model, cost_model in (
        ("live", Leg, LegCost),
        ("archived", ArchivedLeg, ArchivedLegCost),
    ):
        legs = dict(leg_model.objects.values_list("id", "uniqueid"))
        costs: dict[int, list] = {}
        for leg_id, *rest in cost_model.objects.values_list(
            "leg_id", "customer_id", "card_id", "cost", "tax", "currency_id"
        ):
            assert leg_id in legs, f"{table} cost record of leg {leg_id} with no {table} leg"
            costs.setdefault(leg_id, []).append(tuple(rest))
        for leg_id, uid in legs.items():
            assert uid not in out, f"leg {uid} is in both tables"
            out[uid] = (table, leg_id, tuple(sorted(costs.get(leg_id, []))))
    return out


def rows() -> dict[str, list[dict]]:
    """Every row of the four tables, ids included: 'exactly as before' means this."""
    return {
        m.__name__: list(m.objects.order_by("pk").values())
        for m in (Leg, LegCost, ArchivedLeg, ArchivedLegCost)
    }


def order_key(leg_uid_start: tuple[str, int]) -> tuple[int, list[int]]:
    uid, start = leg_uid_start
    return (start, [ord(c) for c in uid])


def check_moved(before: dict, after: dict, archived: set[str]) -> None:
    """Same legs, same ids, same costs; archived exactly the given uniqueids."""
    assert after.keys() == before.keys()
    for uid, (table, leg_id, costs) in after.items():
        assert table == ("archived" if uid in archived else "live"), uid
        assert leg_id == before[uid][1], f"{uid} changed id"
        assert costs == before[uid][2], f"{uid} costs changed"


# --- batches --------------------------------------------------------------------------


def test_invariant_after_every_batch(world):
    starts = [(i * 7) % 23 for i in range(50)]  # ties on purpose
    make_legs(world, starts)
    before = store()
    cutoff = T0 + 12
    eligible = sorted(
        ((uid, T0 + s) for uid, s in ((u, int(u.split(".")[0]) - T0) for u in before)),
        key=order_key,
    )
    eligible = [uid for uid, start in eligible if start < cutoff]
    moved = 0
    while True:
        batch = archive.move_batch(archive.archive_move(before=cutoff), batch_size=7)
        if batch.selected == 0:
            break
        assert batch.legs == min(7, len(eligible) - moved)
        moved += batch.legs
        # Oldest first: what is archived is always a prefix of the eligible legs.
        check_moved(before, store(), set(eligible[:moved]))
    assert moved == len(eligible) == sum(1 for s in starts if T0 + s < cutoff)
    check_moved(before, store(), set(eligible))
    connection.check_constraints()


def test_whole_run_counts(world):
    legs = make_legs(world, list(range(40)))
    before = store()
    result = archive.run(archive.archive_move(before=T0 + 25), batch_size=6)
    assert (result.legs, result.batches, result.duplicates) == (25, 5, 0)
    assert result.costs == sum(len(costs_for(world, i)) for i in range(25))
    assert (result.first_start, result.last_start) == (T0, T0 + 24)
    check_moved(before, store(), {leg.uniqueid for leg in legs[:25]})
    # Nothing left to do: running again moves nothing.
    assert archive.run(archive.archive_move(before=T0 + 25), batch_size=6).legs == 0
    check_moved(before, store(), {leg.uniqueid for leg in legs[:25]})


def test_restore_brings_legs_back_with_costs(world):
    legs = make_legs(world, list(range(30)))
    before = store()
    archive.run(archive.archive_move(before=T0 + 100), batch_size=4)
    check_moved(before, store(), set(before))
    # [START, END): the leg starting at END stays archived.
    result = archive.run(archive.restore_move(start=T0 + 10, end=T0 + 20), batch_size=3)
    assert result.legs == 10
    assert (result.first_start, result.last_start) == (T0 + 10, T0 + 19)
    restored = {leg.uniqueid for leg in legs[10:20]}
    check_moved(before, store(), set(before) - restored)
    batch = archive.move_batch(archive.restore_move(start=T0, end=T0 + 1), batch_size=5)
    assert batch.legs == 1
    check_moved(before, store(), set(before) - restored - {legs[0].uniqueid})


@pytest.mark.parametrize(
    ("path", "step"),
    [
        ("fast", "_move_legs"),
        ("fast", "_move_costs"),
        ("careful", "_copy_legs"),
        ("careful", "_copy_costs"),
        ("careful", "_delete_costs"),
        ("careful", "_delete_legs"),
    ],
)
def test_failure_inside_a_batch_changes_nothing(world, monkeypatch, path, step):
    if path == "fast" and (connection.vendor != "postgresql" or citus.is_distributed()):
        pytest.skip("the fast path is one PostgreSQL server's")
    if path == "careful":
        monkeypatch.setattr(archive, "_fast_path_available", lambda conn: False)
    legs = make_legs(world, list(range(20)))
    before = store()
    archive.move_batch(
        archive.archive_move(before=T0 + 100), batch_size=5
    )  # a first batch goes through
    after_first = rows()

    real = getattr(archive, step)

    def step_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # the step's rows are written (archive side included) ...
        raise RuntimeError("injected failure")  # ... and then the process "dies"

    monkeypatch.setattr(archive, step, step_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        archive.move_batch(archive.archive_move(before=T0 + 100), batch_size=5)
    assert rows() == after_first
    with pytest.raises(CommandError, match="(?s)injected failure.*Run the command again"):
        call_command("archive_cdrs", "--before", str(T0 + 100), "--batch-size", "5")
    assert rows() == after_first
    check_moved(before, store(), {leg.uniqueid for leg in legs[:5]})

    monkeypatch.setattr(archive, step, real)
    call_command("archive_cdrs", "--before", str(T0 + 100), "--batch-size", "5")
    check_moved(before, store(), set(before))


def test_rerun_after_a_partial_run_completes_the_job(world, monkeypatch):
    legs = make_legs(world, list(range(50)))
    before = store()
    calls = {"n": 0}
    real = archive.move_picked

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "move_picked", dies_on_third_batch)
    out = io.StringIO()
    with pytest.raises(CommandError, match="interrupted") as err:
        call_command("archive_cdrs", "--before", str(T0 + 40), "--batch-size", "8", stdout=out)
    assert err.value.returncode == 130
    check_moved(before, store(), {leg.uniqueid for leg in legs[:16]})

    monkeypatch.setattr(archive, "move_picked", real)
    call_command("archive_cdrs", "--before", str(T0 + 40), "--batch-size", "8", stdout=out)
    check_moved(before, store(), {leg.uniqueid for leg in legs[:40]})
    assert "archived 24 legs" in out.getvalue()


def test_picked_legs_that_changed_or_went_meanwhile(world):
    legs = make_legs(world, list(range(6)))
    before = store()
    move = archive.archive_move(before=T0 + 10)
    picked = archive.pick(move, batch_size=10)
    assert [row[0] for row in picked] == [leg.id for leg in legs]
    Leg.objects.filter(pk=legs[2].pk).update(start=T0 + 50, end=T0 + 110)  # no longer old
    LegCost.objects.filter(leg=legs[4]).delete()
    Leg.objects.filter(pk=legs[4].pk).delete()  # gone
    result = archive.move_picked(move, picked)
    assert (result.selected, result.legs) == (6, 4)
    after = store()
    del before[legs[4].uniqueid]
    assert after[legs[2].uniqueid][0] == "live"
    check_moved(before, after, {legs[i].uniqueid for i in (0, 1, 3, 5)})


# --- the destination already has the leg ----------------------------------------------


def test_leg_already_archived_under_same_id_is_not_duplicated(world):
    (leg,) = make_legs(world, [0])  # two cost records? i=0: none; give it one
    LegCost.objects.create(leg=leg, customer=world["a"], cost=Decimal("2"), currency=world["usd"])
    LegCost.objects.create(leg=leg, customer=world["b"], cost=Decimal("3"), currency=world["usd"])
    # As if an earlier copy had reached the archive without being removed from live.
    copy = ArchivedLeg.objects.create(
        **{fld.attname: getattr(leg, fld.attname) for fld in Leg._meta.concrete_fields}
    )
    ArchivedLegCost.objects.create(
        leg=copy, customer=world["a"], cost=Decimal("9"), currency=world["usd"]
    )
    result = archive.run(archive.archive_move(before=T0 + 1), batch_size=10)
    assert (result.legs, result.duplicates) == (1, 1)
    table, leg_id, costs = store()[leg.uniqueid]
    assert (table, leg_id) == ("archived", leg.id)
    # The archive's record for A wins; B's record, which it lacked, joins it.
    assert [(c[0], c[2]) for c in costs] == [(world["a"].id, Decimal("9")), (world["b"].id, 3)]


# Not on the cluster: there the importer keeps a uniqueid to one id, and a leg's copy is
# found by id as well, so that the costs' join stays on the leg's shard.
@pytest.mark.usefixtures("single_node")
def test_leg_already_archived_under_another_id_keeps_one_copy(world):
    (leg,) = make_legs(world, [0])
    LegCost.objects.create(leg=leg, customer=world["b"], cost=Decimal("3"), currency=world["usd"])
    fields = {fld.attname: getattr(leg, fld.attname) for fld in Leg._meta.concrete_fields}
    fields["id"] = leg.id + 10_000
    ArchivedLeg.objects.create(**fields)
    result = archive.run(archive.archive_move(before=T0 + 1), batch_size=10)
    assert result.duplicates == 1
    table, leg_id, costs = store()[leg.uniqueid]
    assert (table, leg_id) == ("archived", leg.id + 10_000)
    assert [(c[0], c[2]) for c in costs] == [(world["b"].id, Decimal("3"))]


def test_id_used_by_another_call_stops_the_run_and_changes_nothing(world):
    legs = make_legs(world, [0, 1, 2])
    ArchivedLeg.objects.create(
        id=legs[1].id, uniqueid="someone-else", callid="x", start=T0, end=T0,
        direction="in", scustomer=world["a"],
    )  # fmt: skip
    before = rows()
    with pytest.raises(IdClash, match="someone-else"):
        archive.run(archive.archive_move(before=T0 + 10), batch_size=10)
    assert rows() == before
    with pytest.raises(CommandError, match="already used by other calls"):
        call_command("archive_cdrs", "--before", str(T0 + 10))
    assert rows() == before


# --- dry run, options, output -------------------------------------------------------------


def test_dry_run_writes_nothing(world):
    make_legs(world, list(range(10)))
    before = rows()
    out = io.StringIO()
    call_command("archive_cdrs", "--before", str(T0 + 6), "--dry-run", stdout=out)
    assert rows() == before
    text = out.getvalue()
    assert "would move 6 legs" in text
    costs = sum(len(costs_for(world, i)) for i in range(6))
    assert f"and {costs} cost records" in text
    assert f"from {T0} (2023-11-14 22:13:20 UTC) to {T0 + 5}" in text
    p = archive.plan_move(archive.archive_move(before=T0 + 6))
    assert (p.legs, p.costs, p.first_start, p.last_start) == (6, costs, T0, T0 + 5)
    assert (p.already_there, p.id_clashes) == (0, 0)

    archive.run(archive.archive_move(before=T0 + 6), batch_size=100)
    before = rows()
    call_command(
        "archive_cdrs", "--restore", "--between", str(T0), str(T0 + 3), "--dry-run", stdout=out
    )
    assert rows() == before
    assert "would move 3 archived legs" in out.getvalue()


def test_older_than_counts_days_back_from_now(world):
    now = int(time.time())
    old = f.leg(world["a"], start=now - 31 * 86400)
    recent = f.leg(world["a"], start=now - 29 * 86400)
    out = io.StringIO()
    call_command("archive_cdrs", "--older-than", "30", stdout=out)
    assert ArchivedLeg.objects.filter(uniqueid=old.uniqueid).exists()
    assert Leg.objects.filter(uniqueid=recent.uniqueid).exists()
    assert out.getvalue().startswith("archived 1 legs and 0 cost records in 1 batches")
    assert out.getvalue().count("\n") == 1  # one summary line when not on a terminal


def test_progress_on_a_terminal(world, monkeypatch):
    make_legs(world, list(range(9)))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    call_command(
        "archive_cdrs", "--before", str(T0 + 100), "--batch-size", "4", stdout=io.StringIO()
    )
    shown = err.getvalue()
    assert "\rarchived 4 of 9 (44%) legs, 1 batches" in shown
    assert "\rarchived 9 of 9 (100%) legs, 3 batches" in shown
    assert shown.endswith("\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say which legs"),
        (["--between", "1", "2"], "--between goes with --restore"),
        (["--restore"], "--restore needs --between"),
        (["--restore", "--between", "5", "1"], "START must not be after END"),
        (["--older-than", "-1"], "0 or more days"),
        (["--before", "5", "--batch-size", "0"], "--batch-size: 0 is out of range; give 1 to"),
        (["--before", "5", "--jobs", "0"], "--jobs: 0 is out of range; give 1 to"),
        (["--before", "5", "--batch-size", str(2**64)], "--batch-size: .* is out of range"),
        (["--before", "5", "--wait", "nan"], "--wait: nan is not a number of seconds"),
        (["--before", "5", "--wait", "inf"], "--wait: inf is not a number of seconds"),
        (["--before", "5", "--wait", "-5"], "--wait: -5.0 is not a number of seconds"),
        (["--before", "1704067200000"], "milliseconds\\? In seconds that is 1704067200 "),
        (["--before", str(10**18)], "not a Unix time in seconds from 0"),
        (["--before", "-1"], "before 1970-01-01"),
        (["--older-than", "1000000000000"], "reaches before 1970-01-01"),
        (["--restore", "--between", "0", "1704067200000"], "milliseconds"),
    ],
)
def test_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("archive_cdrs", *args)


def test_cut_offs_are_exclusive_one_way():
    with pytest.raises(CommandError):
        call_command("archive_cdrs", "--before", "5", "--older-than", "3")


# --- one run at a time ------------------------------------------------------------------


def test_second_run_is_refused_while_the_lock_is_held(world):
    make_legs(world, [0, 1])
    before = rows()
    with archive.exclusive_lock():
        with pytest.raises(ArchiveLocked, match="another archive_cdrs is running"):  # noqa: SIM117
            with archive.exclusive_lock():
                pass
        with pytest.raises(CommandError, match="another archive_cdrs is running") as err:
            call_command("archive_cdrs", "--before", str(T0 + 10))
        assert err.value.returncode == archive_cdrs_exit_locked()
        with pytest.raises(CommandError, match="another archive_cdrs is running"):
            call_command("archive_cdrs", "--restore", "--between", "0", "1", "--dry-run")
    assert rows() == before
    # Released: the next run goes ahead.
    call_command("archive_cdrs", "--before", str(T0 + 10), stdout=io.StringIO())
    assert ArchivedLeg.objects.count() == 2


def archive_cdrs_exit_locked() -> int:
    from cdrs.management.commands.archive_cdrs import EXIT_LOCKED

    return EXIT_LOCKED


def test_wait_for_the_lock(world):
    make_legs(world, [0])
    held = threading.Event()

    def hold_briefly():
        with archive.exclusive_lock():
            held.set()
            time.sleep(0.6)

    t = threading.Thread(target=hold_briefly)
    t.start()
    held.wait(5)
    started = time.monotonic()
    call_command("archive_cdrs", "--before", str(T0 + 10), "--wait", "10", stdout=io.StringIO())
    t.join()
    assert time.monotonic() - started > 0.3
    assert ArchivedLeg.objects.count() == 1


def test_lock_held_by_another_process_refuses_the_run(world):
    """The lock as another program sees it: a PostgreSQL session of its own, or flock()."""
    release = _hold_lock_elsewhere()
    try:
        with pytest.raises(CommandError, match="another archive_cdrs is running"):
            call_command("archive_cdrs", "--before", str(T0))
    finally:
        release()
    with archive.exclusive_lock(wait=5):  # freed when its holder went away
        pass


def _hold_lock_elsewhere():
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute("SELECT pg_advisory_lock(%s)", [archive.LOCK_KEY])
        return conn.close
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a');"
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(archive._lock_path(connection)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"

    def release():
        proc.kill()
        proc.wait()
        proc.stdout.close()

    return release


# --- property: the result matches a tiny reference ---------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    starts=st.lists(st.integers(0, 15), max_size=25),
    cutoff=st.integers(-1, 17),
    batch_size=st.integers(1, 9),
    restore=st.none() | st.tuples(st.integers(-1, 17), st.integers(-1, 17)).map(sorted),
    careful=st.booleans(),
)
def test_matches_reference(world, monkeypatch, starts, cutoff, batch_size, restore, careful):
    with monkeypatch.context() as m, transaction.atomic():
        if careful:  # PostgreSQL's careful path too (SQLite's only path)
            m.setattr(archive, "_fast_path_available", lambda conn: False)
        legs = make_legs(world, starts)
        before = store()
        reference = {leg.uniqueid for leg in legs if leg.start < T0 + cutoff}
        archive.run(archive.archive_move(before=T0 + cutoff), batch_size=batch_size)
        check_moved(before, store(), reference)
        if restore is not None:
            lo, hi = restore
            archive.run(archive.restore_move(start=T0 + lo, end=T0 + hi), batch_size=batch_size)
            reference -= {leg.uniqueid for leg in legs if T0 + lo <= leg.start < T0 + hi}
            check_moved(before, store(), reference)
        transaction.set_rollback(True)


@on_postgres
def test_trigger_bypass_is_used_when_allowed_and_can_be_refused(world):
    # The test cluster's role is a superuser: the bypass is allowed there.
    assert archive.trigger_bypass_allowed(archive.archive_move(before=0))
    legs = make_legs(world, list(range(12)))
    before = store()
    result = archive.run(archive.archive_move(before=T0 + 6), batch_size=4)
    assert result.trigger_bypass
    result = archive.run(archive.archive_move(before=T0 + 12), batch_size=4, bypass_triggers=False)
    assert not result.trigger_bypass
    check_moved(before, store(), {leg.uniqueid for leg in legs})
    connection.check_constraints()


# Not on the cluster: Citus refuses triggers on distributed tables.
@on_postgres
@pytest.mark.usefixtures("single_node")
def test_an_ordinary_trigger_of_an_operator_turns_the_bypass_off(world):
    # Replica mode would skip it; the called-number trigger (ENABLE ALWAYS) it would not.
    move = archive.archive_move(before=0)
    with connection.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION audit_noop() RETURNS trigger LANGUAGE plpgsql AS "
            "'BEGIN RETURN NULL; END'"
        )
        cur.execute(
            "CREATE TRIGGER audit AFTER INSERT ON cdrs_archivedleg "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_noop()"
        )
        assert not archive.trigger_bypass_allowed(move)
        cur.execute("ALTER TABLE cdrs_archivedleg ENABLE ALWAYS TRIGGER audit")
        assert archive.trigger_bypass_allowed(move)


# The fast path is for one node; the cluster always takes the careful one, whose each
# statement stays on the shards.
@on_postgres
@pytest.mark.usefixtures("single_node")
def test_fast_path_moves_ordinary_batches_without_falling_back(world, monkeypatch):
    # The fast path's parent check must pass when every parent is there; a check that
    # always failed would send every batch the slow careful way, unnoticed.
    legs = make_legs(world, list(range(20)))

    def not_expected(*args, **kwargs):
        raise AssertionError("an ordinary batch fell back to the careful path")

    monkeypatch.setattr(archive, "_careful_batch", not_expected)
    before = store()
    result = archive.run(archive.archive_move(before=T0 + 20), batch_size=7)
    assert result.trigger_bypass
    assert result.legs == 20
    check_moved(before, store(), {leg.uniqueid for leg in legs})


# (One node: the fast path.)
@on_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("single_node")
def test_fast_path_holds_the_parents_of_the_moved_rows(world):
    # What the skipped foreign-key triggers would have done: until the batch commits,
    # nobody may delete a customer or currency the moved rows refer to.
    make_legs(world, list(range(10)))
    with transaction.atomic():
        moved = archive.move_batch(archive.archive_move(before=T0 + 100), batch_size=100)
        assert moved.legs == 10
        with reader_connection() as other:
            for table, key in (
                ("customers_customer", world["a"].pk),
                ("customers_customer", world["owner"].pk),
                ("customers_currency", world["usd"].pk),
            ):
                column = "code" if table == "customers_currency" else "id"
                with pytest.raises(Exception, match="could not obtain lock"):
                    other.execute(
                        f"SELECT 1 FROM {table} WHERE {column} = %s FOR UPDATE NOWAIT", [key]
                    )
        transaction.set_rollback(True)


# Not on the cluster: replica mode is not set on the workers here, so no such leg can be made.
@on_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("single_node")
def test_a_leg_pointing_at_a_missing_parent_is_not_archived(world):
    # The fast path locks the parents it finds; one missing sends the batch the careful
    # way, whose foreign-key triggers refuse it: the run fails and nothing moves.
    make_legs(world, list(range(6)))
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(f"UPDATE {Leg._meta.db_table} SET dcustomer_id = 999999 WHERE start = %s", [T0])
        cur.execute("SET LOCAL session_replication_role = DEFAULT")
    before = rows()
    with pytest.raises(Exception, match="999999|foreign key"):
        archive.run(archive.archive_move(before=T0 + 100), batch_size=100)
    assert rows() == before


def test_a_leg_written_behind_the_cursor_during_a_run_is_archived_too(world, monkeypatch):
    legs = make_legs(world, list(range(10, 30)))
    real = archive.move_picked
    late: list[Leg] = []

    def write_a_late_leg(*args, **kwargs):
        if not late:  # a switch delivering an old call while the run is under way
            late.append(f.leg(world["a"], start=T0, costs=costs_for(world, 2)))
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "move_picked", write_a_late_leg)
    result = archive.run(archive.archive_move(before=T0 + 25), batch_size=4)
    assert result.legs == 16
    archived = {uid for uid, (table, _, _) in store().items() if table == "archived"}
    assert archived == {leg.uniqueid for leg in [*legs[:15], *late]}


# --- PostgreSQL: readers and parallel movers, with real transactions -------------------
# The readers run the API's archive=1 query (cdrs.queries.list_page), on one server and on
# the Citus cluster, where it is pushed down to each pair of co-located shards.

SNAPSHOT_QUERY = (
    "SELECT count(*), count(DISTINCT uniqueid) FROM "
    f"(SELECT uniqueid FROM {Leg._meta.db_table} "
    f"UNION ALL SELECT uniqueid FROM {ArchivedLeg._meta.db_table}) legs"
)


def reader_connection():
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def archive_query(world: dict, **params: str) -> tuple[str, tuple]:
    """The SQL of the API's cdrs/list?archive=1 over every leg of `world`, as the owner."""
    user = f.user(world["owner"], privileges=["cdrs", "archive"])
    values = {"archive": "1", "limit": "0", "recurse": "1", "start": str(T0 - 1)}
    values.update(end=str(T0 + 1000), **params)
    request = parse_list(Params(values=values), user=user, now=T0 + 1000)
    return list_page(request, COLUMNS).rows.query.sql_with_params()


def seen_by(reader, query: tuple[str, tuple]) -> tuple[int, int]:
    """(rows, distinct uniqueids) of one run of the archive=1 query."""
    uniqueids = [row[0] for row in reader.execute(*query).fetchall()]
    return len(uniqueids), len(set(uniqueids))


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_archive_query_is_one_statement_on_the_shards(world):
    """On Citus, archive=1 must not be run one table after the other (each its own
    snapshot): the UNION ALL goes to each pair of co-located shards as one query, with
    ORDER BY ... LIMIT, and nothing is collected into an intermediate result first."""
    if not citus.is_distributed():
        pytest.skip("a Citus cluster's plan")
    make_legs(world, list(range(4)))
    sql, params = archive_query(world, limit="5", offset="2")
    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (VERBOSE, COSTS OFF) {sql}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "Distributed Subplan" not in plan
    assert "intermediate_result" not in plan
    tasks = [line for line in plan.splitlines() if line.strip().startswith("Query: ")]
    assert tasks, plan
    for task in tasks:
        assert "UNION ALL" in task, task
        assert "LIMIT '7'" in task or "LIMIT 7" in task, task


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_union_all_reader_sees_each_leg_once_while_a_batch_is_uncommitted(world, monkeypatch):
    make_legs(world, list(range(60)))
    query = archive_query(world)
    seen = []
    with reader_connection() as reader:

        def looking_before_commit(real):
            def step(*args, **kwargs):
                done = real(*args, **kwargs)  # the batch's last write, not committed
                seen.append(seen_by(reader, query))
                return done

            return step

        # The last write of a batch: on one server's fast path, and the careful path's.
        monkeypatch.setattr(archive, "_move_costs", looking_before_commit(archive._move_costs))
        monkeypatch.setattr(archive, "_delete_legs", looking_before_commit(archive._delete_legs))
        result = archive.run(archive.archive_move(before=T0 + 100), batch_size=7)
        assert result.batches == 9
        assert seen == [(60, 60)] * 9
        assert seen_by(reader, query) == (60, 60)


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_two_statements_would_not_be_enough(world):
    """Why archive=1 must be one statement: under READ COMMITTED, two statements take two
    snapshots, and a batch committed between them is counted twice."""
    make_legs(world, list(range(30)))
    with reader_connection() as reader, reader.transaction():
        live = reader.execute(f"SELECT count(*) FROM {Leg._meta.db_table}").fetchone()[0]
        archive.move_batch(archive.archive_move(before=T0 + 100), batch_size=10)
        archived = reader.execute(f"SELECT count(*) FROM {ArchivedLeg._meta.db_table}")
        assert live + archived.fetchone()[0] == 40  # not 30
        assert reader.execute(SNAPSHOT_QUERY).fetchone() == (30, 30)  # one statement: fine


@on_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("jobs", [1, 3])
def test_readers_during_whole_runs(world, jobs):
    legs = make_legs(world, list(range(150)))
    before = store()
    query = archive_query(world)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def read_continuously():
        with reader_connection() as reader:
            while not stop.is_set():
                seen.append(seen_by(reader, query))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        archive.run(archive.archive_move(before=T0 + 120), batch_size=4, jobs=jobs)
        archive.run(archive.restore_move(start=T0 + 10, end=T0 + 50), batch_size=3, jobs=jobs)
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10
    assert set(seen) == {(150, 150)}
    check_moved(before, store(), {leg.uniqueid for leg in legs[:10] + legs[50:120]})


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_jobs_failure_then_rerun(world, monkeypatch):
    legs = make_legs(world, list(range(100)))
    before = store()
    real = archive.move_picked
    calls = {"n": 0}
    lock = threading.Lock()

    def fails_once(*args, **kwargs):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 5:
            raise RuntimeError("injected failure in a mover")
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "move_picked", fails_once)
    with pytest.raises(CommandError, match="injected failure in a mover"):
        call_command("archive_cdrs", "--before", str(T0 + 90), "--batch-size", "6", "--jobs", "2")
    partial = store()
    assert 0 < sum(table == "archived" for table, _, _ in partial.values()) < 90
    monkeypatch.setattr(archive, "move_picked", real)
    call_command(
        "archive_cdrs", "--before", str(T0 + 90), "--batch-size", "6", "--jobs", "2",
        stdout=io.StringIO(),
    )  # fmt: skip
    check_moved(before, store(), {leg.uniqueid for leg in legs[:90]})
