"""The call totals of `cdrs/totals/list` are kept as legs are written, whatever writes
them: every import way, the admin and the ORM; archiving and restoring change nothing;
`rebuild_totals` recomputes the same counts from the legs.

The differential test drives random imports (updates, legs changing sides), archives,
restores, saves and deletes, and compares the kept totals after each step with a small
reference model (the legs it believes are stored, counted in Python) and with a rebuild.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrs import totals
from cdrs.dataset.importer import DatasetError, import_dataset, pg_bulk
from cdrs.models import ArchivedLeg, CallTotals, Leg

pytestmark = pytest.mark.django_db

T0 = 1_699_999_200  # a whole hour
CUSTOMERS = (1, 2, 3, 4)
UIDS = [f"u{i}" for i in range(8)]

BASE: dict[str, Any] = {
    "currencies": [{"code": "USD", "value": "1"}],
    "customers": [
        {"id": 1, "parent": None, "name": "Owner", "bill_type": "postpaid", "currency": "USD"},
        {"id": 2, "parent": 1, "name": "R", "bill_type": "postpaid", "currency": "USD"},
        {"id": 3, "parent": 2, "name": "C", "bill_type": "prepaid", "currency": "USD"},
        {"id": 4, "parent": 1, "name": "D", "bill_type": "postpaid", "currency": "USD"},
    ],
}

# A leg as the reference keeps it: uniqueid -> (scustomer, dcustomer, start, direction).
Legs = dict[str, tuple[int, int | None, int, str]]


def reference_totals(legs: Legs) -> dict[tuple[int, int], tuple[int, int, int]]:
    counts: Counter[tuple[int, int, str]] = Counter()
    for s, d, start, direction in legs.values():
        hour = start - start % 3600
        for c in {s, d} - {None}:
            counts[(c, hour, direction)] += 1
    keys = {(c, hour) for c, hour, _ in counts}
    return {
        k: tuple(counts[(*k, d)] for d in ("in", "out", "internal"))  # type: ignore[misc]
        for k in keys
    }


def kept_totals() -> dict[tuple[int, int], tuple[int, int, int]]:
    return {
        (c, hour): (i, o, n)
        for c, hour, i, o, n in CallTotals.objects.values_list(
            "customer_id", "hour", "inbound", "outbound", "internal"
        )
        if (i, o, n) != (0, 0, 0)
    }


def cdr(uid: str, leg: tuple[int, int | None, int, str], archived: bool) -> dict[str, Any]:
    s, d, start, direction = leg
    return {
        "uniqueid": uid, "callid": uid, "start": start, "end": start + 30, "talktime": 0,
        "status": "answer", "direction": direction, "scustomer": s, "dcustomer": d,
        "archived": archived, "costs": [{"customer": s, "cost": "0.01", "currency": "USD"}],
    }  # fmt: skip


legs_ = st.tuples(
    st.sampled_from(CUSTOMERS),
    st.sampled_from([None, *CUSTOMERS]),
    st.integers(0, 4 * 3600 - 1).map(lambda s: T0 + s),
    st.sampled_from(["in", "out", "internal"]),
)
steps = st.one_of(
    st.tuples(
        st.just("import"),
        st.dictionaries(st.sampled_from(UIDS), st.tuples(legs_, st.booleans()), max_size=5),
        st.booleans(),  # bulk, where the store allows it
    ),
    st.tuples(st.just("archive"), st.integers(0, 4 * 3600).map(lambda s: T0 + s)),
    st.tuples(st.just("restore"), st.integers(0, 4 * 3600).map(lambda s: T0 + s)),
    st.tuples(st.just("save"), st.sampled_from(UIDS), legs_),
    st.tuples(st.just("delete"), st.sampled_from(UIDS)),
)


def load(data: dict[str, Any], **kw: Any) -> Any:
    try:
        return import_dataset(data, **kw)
    except DatasetError as exc:  # say why
        raise AssertionError(exc.lines()) from None


def stored(uid: str) -> Leg | ArchivedLeg | None:
    return (
        Leg.objects.filter(uniqueid=uid).first() or ArchivedLeg.objects.filter(uniqueid=uid).first()
    )


def run(step: tuple, legs: Legs) -> None:
    kind = step[0]
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    if kind == "import":
        _, named, bulk = step
        data = {**BASE, "cdrs": [cdr(uid, leg, arch) for uid, (leg, arch) in named.items()]}
        load(data, bulk=bulk, batch_size=3)
        legs.update({uid: leg for uid, (leg, _) in named.items()})
    elif kind == "archive":
        call_command("archive_cdrs", "--before", str(step[1]), "--batch-size", "2", **quiet)
    elif kind == "restore":
        call_command("archive_cdrs", "--restore", "--between", str(T0), str(step[1]), **quiet)
    elif kind == "save":
        _, uid, (s, d, start, direction) = step
        leg = stored(uid)
        if leg is not None:
            leg.scustomer_id, leg.dcustomer_id, leg.direction = s, d, direction
            leg.start, leg.end = start, start + 30
            leg.save()
            legs[uid] = (s, d, start, direction)
    elif kind == "delete":
        leg = stored(step[1])
        if leg is not None:
            leg.delete()
            del legs[step[1]]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(steps, min_size=1, max_size=7))
def test_kept_totals_equal_the_reference_and_a_rebuild(plan):
    with transaction.atomic():
        import_dataset(BASE)
        legs: Legs = {}
        for step in plan:
            run(step, legs)
            assert kept_totals() == reference_totals(legs), step
        totals.rebuild()
        assert kept_totals() == reference_totals(legs)
        transaction.set_rollback(True)


def test_archiving_and_restoring_leave_the_totals_as_they_are():
    import_dataset(BASE)
    legs = {f"a{i}": (2 + i % 2, 4 if i % 3 else None, T0 + 600 * i, "out") for i in range(20)}
    import_dataset({**BASE, "cdrs": [cdr(u, leg, False) for u, leg in legs.items()]})
    before = kept_totals()
    assert before == reference_totals(legs)
    call_command("archive_cdrs", "--before", str(T0 + 6000), stdout=io.StringIO())
    assert ArchivedLeg.objects.count() == 10
    assert kept_totals() == before
    call_command(
        "archive_cdrs", "--restore", "--between", "0", str(T0 + 3000), stdout=io.StringIO()
    )
    assert ArchivedLeg.objects.count() == 5
    assert kept_totals() == before


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the bulk way is PostgreSQL's")
@pytest.mark.parametrize(
    ("held", "order"),
    [(None, 1), (2, 1), (2, -1)],
    ids=["held-to-the-end", "flushed-often", "flushed-often-legs-back-in-time"],
)
def test_the_bulk_import_into_an_empty_store_keeps_them(monkeypatch, held, order):
    if held is not None:  # the counts written several times, a customer's hour in several
        monkeypatch.setattr(pg_bulk, "TOTALS_HELD", held)
    legs = {
        f"b{i}": (2 + i % 3, 1 if i % 2 else None, T0 + 97 * i, "in") for i in range(50)[::order]
    }
    data = {**BASE, "cdrs": [cdr(u, leg, i % 4 == 0) for i, (u, leg) in enumerate(legs.items())]}
    result = load(data, bulk=True, batch_size=7)
    assert "bulk" in result.method
    assert kept_totals() == reference_totals(legs)


def test_the_admin_keeps_them(admin_client):
    import_dataset(BASE)
    import_dataset({**BASE, "cdrs": [cdr("x", (2, 3, T0 + 10, "in"), False)]})
    leg = Leg.objects.get(uniqueid="x")
    assert kept_totals() == {(2, T0): (1, 0, 0), (3, T0): (1, 0, 0)}
    page = admin_client.get(f"/admin/cdrs/leg/{leg.pk}/delete/")
    assert page.status_code == 200
    admin_client.post(f"/admin/cdrs/leg/{leg.pk}/delete/", {"post": "yes"})
    assert not Leg.objects.exists()
    assert kept_totals() == {}


def test_rebuild_totals_command_recomputes_them():
    import_dataset(BASE)
    legs = {f"r{i}": (3, 2, T0 + 1000 * i, "internal") for i in range(9)}
    import_dataset(
        {**BASE, "cdrs": [cdr(u, leg, i % 2 == 1) for i, (u, leg) in enumerate(legs.items())]}
    )
    with connection.cursor() as cursor:  # counts spoiled behind the product's back
        cursor.execute("UPDATE cdrs_calltotals SET internal = internal + 5")
        cursor.execute(
            "INSERT INTO cdrs_calltotals (customer_id, hour, inbound, outbound, internal) "
            "VALUES (4, 0, 1, 1, 1)"
        )
    assert kept_totals() != reference_totals(legs)
    out = io.StringIO()
    call_command("rebuild_totals", stdout=out)
    assert out.getvalue().startswith("rebuilt the call totals: 6 customer-hours")
    assert kept_totals() == reference_totals(legs)
