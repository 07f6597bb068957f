"""import_dataset: what a file becomes in the store, and what a bad file gets back."""

from __future__ import annotations

import copy
import io
import sys
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from cdrs.dataset.generator import generate
from cdrs.dataset.importer import DatasetError, ImportResult, import_dataset
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Card, Currency, Customer, Invoice, Peer, RatePlan, Role, User

pytestmark = pytest.mark.django_db

# The example of docs/dataset-format.md.
EXAMPLE: dict[str, Any] = {
    "currencies": [{"code": "USD", "value": "1"}, {"code": "EUR", "value": "1.08"}],
    "rate_plans": [{"id": 1, "name": "Standard", "features": ["cdrs"]}],
    "roles": [{"id": 1, "name": "Reseller", "privileges": ["cdrs", "archive"]}],
    "customers": [
        {
            "id": 1,
            "parent": None,
            "name": "Owner",
            "bill_type": "postpaid",
            "currency": "USD",
            "rate_plan": 1,
            "enabled": True,
        }
    ],
    "users": [
        {"username": "owner", "password": "secret", "customer": 1, "role": 1, "enabled": True}
    ],
    "peers": [{"id": 1, "name": "Carrier A"}],
    "cards": [{"id": 1, "customer": 1, "name": "Card 1"}],
    "invoices": [{"id": 1, "customer": 1}],
    "cdrs": [
        {
            "uniqueid": "1700000000.1",
            "callid": "1700000000.1",
            "start": 1700000000,
            "end": 1700000060,
            "talktime": 42,
            "status": "answer",
            "direction": "out",
            "stype": "phone",
            "snumber": "1001",
            "ctype": "",
            "cnumber": "442079460000",
            "dtype": "external",
            "dnumber": "442079460000",
            "callername": "Reception",
            "scustomer": 1,
            "dcustomer": None,
            "peer": 1,
            "invoice": None,
            "card": None,
            "archived": False,
            "costs": [
                {"customer": 1, "cost": "0.0120", "tax": "0.0024", "currency": "USD"},
                {"card": 1, "cost": "0.0300", "tax": "0", "currency": "EUR"},
            ],
        }
    ],
}


def example(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE)
    data.update(changes)
    return data


def a_leg(uniqueid: str, **changes: Any) -> dict[str, Any]:
    leg = {
        "uniqueid": uniqueid,
        "callid": uniqueid,
        "start": 1_700_000_000,
        "end": 1_700_000_030,
        "talktime": 20,
        "status": "answer",
        "direction": "in",
        "scustomer": 1,
    }
    leg.update(changes)
    return leg


def jsonl(legs: list[Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(orjson.dumps(leg) + b"\n" for leg in legs))


def load(
    data: dict[str, Any] | None = None, legs: list[Any] | None = None, **kw: Any
) -> ImportResult:
    source = io.BytesIO(orjson.dumps(data)) if data is not None else None
    cdrs = jsonl(legs) if legs is not None else None
    return import_dataset(source, source_name="data.json", cdrs=cdrs, cdrs_name="cdrs.jsonl", **kw)


def errors_of(
    data: dict[str, Any] | None = None, legs: list[Any] | None = None, **kw: Any
) -> list[str]:
    before = snapshot()
    with pytest.raises(DatasetError) as caught:
        load(data, legs, **kw)
    assert snapshot() == before, "a file with errors must write nothing"
    return caught.value.lines()


def snapshot() -> dict[str, list[Any]]:
    """Everything a load can write, in a comparable form."""

    def legs(model: type) -> list[Any]:
        return list(
            model.objects.order_by("uniqueid").values_list(
                "id", "uniqueid", "callid", "start", "end", "talktime", "status", "direction",
                "stype", "snumber", "ctype", "cnumber", "dtype", "dnumber", "callername",
                "callername_folded", "scustomer_id", "dcustomer_id", "peer_id", "invoice_id",
                "card_id",
            )
        )  # fmt: skip

    def costs(model: type) -> list[Any]:
        rows = model.objects.values_list(
            "leg__uniqueid", "customer_id", "card_id", "cost", "tax", "currency_id"
        )
        return sorted(rows, key=repr)

    return {
        "currencies": list(Currency.objects.values_list("code", "value")),
        "rate_plans": list(RatePlan.objects.values_list("id", "name", "features")),
        "roles": list(Role.objects.values_list("id", "name", "privileges")),
        "customers": list(
            Customer.objects.values_list(
                "id",
                "parent_id",
                "name",
                "bill_type",
                "currency_id",
                "rate_plan_id",
                "enabled",
                "path",
                "depth",
            )
        ),  # fmt: skip
        "users": list(
            User.objects.values_list("username", "password", "customer_id", "role_id", "enabled")
        ),
        "peers": list(Peer.objects.values_list("id", "name")),
        "cards": list(Card.objects.values_list("id", "customer_id", "name")),
        "invoices": list(Invoice.objects.values_list("id", "customer_id")),
        "legs": legs(Leg),
        "archived_legs": legs(ArchivedLeg),
        "costs": costs(LegCost),
        "archived_costs": costs(ArchivedLegCost),
    }


def legs_of(uniqueid: str) -> tuple[list[Leg], list[ArchivedLeg]]:
    return (
        list(Leg.objects.filter(uniqueid=uniqueid)),
        list(ArchivedLeg.objects.filter(uniqueid=uniqueid)),
    )


def costs_of(leg: Leg | ArchivedLeg) -> set[tuple[Any, ...]]:
    return {(c.customer_id, c.card_id, c.cost, c.tax, c.currency_id) for c in leg.costs.all()}


# --- a good file ------------------------------------------------------------------------


def test_the_spec_example_loads_with_its_ids_and_a_hashed_password():
    result = load(EXAMPLE)

    assert result.legs == 1
    assert result.costs == 2
    owner = Customer.objects.get()
    assert (owner.id, owner.parent_id, owner.path, owner.depth) == (1, None, "/1/", 0)
    assert owner.rate_plan.allows("cdrs")
    assert Currency.objects.get(code="EUR").value == Decimal("1.08")
    assert Role.objects.get(id=1).allows("archive")
    user = User.objects.get(username="owner")
    assert user.password != "secret"
    assert user.check_password("secret")
    assert not user.check_password("Secret")
    assert (Peer.objects.get().name, Card.objects.get().customer_id, Invoice.objects.get().id) == (
        "Carrier A",
        1,
        1,
    )
    leg = Leg.objects.get()
    assert (leg.uniqueid, leg.start, leg.end, leg.talktime, leg.totaltime) == (
        "1700000000.1",
        1700000000,
        1700000060,
        42,
        60,
    )
    assert (leg.callername, leg.callername_folded, leg.peer_id, leg.dcustomer_id) == (
        "Reception",
        "reception",
        1,
        None,
    )
    assert costs_of(leg) == {
        (1, None, Decimal("0.012"), Decimal("0.0024"), "USD"),
        (None, 1, Decimal("0.03"), Decimal("0"), "EUR"),
    }
    assert not ArchivedLeg.objects.exists()


def test_left_out_fields_take_their_defaults():
    data = {
        "currencies": [{"code": "USD", "value": "1"}],
        "roles": [{"id": 3, "name": "R"}],
        "customers": [{"id": 1, "name": "Owner", "bill_type": "none", "currency": "USD"}],
        "users": [{"username": "u", "password": "p", "customer": 1, "role": 3}],
        "peers": [{"id": 4}],
        "cdrs": [a_leg("x.1", callername=None)],
    }
    load(data)

    owner = Customer.objects.get()
    assert (owner.parent_id, owner.rate_plan_id, owner.enabled) == (None, None, True)
    assert Role.objects.get().privileges == []
    assert User.objects.get().enabled
    assert Peer.objects.get().name == ""
    leg = Leg.objects.get()
    assert (leg.stype, leg.callername, leg.dcustomer_id, leg.card_id) == ("", "", None, None)
    assert not leg.costs.exists()


def test_an_archived_leg_lives_in_the_archive_tables():
    data = example()
    data["cdrs"][0]["archived"] = True
    load(data)

    assert not Leg.objects.exists()
    leg = ArchivedLeg.objects.get()
    assert leg.uniqueid == "1700000000.1"
    assert len(costs_of(leg)) == 2
    assert not LegCost.objects.exists()


def test_caller_names_are_folded_character_by_character():
    names = ["ÉLODIE Durand", "ΟΔΟΣ", "İpek", "Straße", "MiXeD"]
    load(example(cdrs=[a_leg(f"n.{i}", callername=n) for i, n in enumerate(names)]))

    folded = dict(Leg.objects.values_list("callername", "callername_folded"))
    assert folded == {n: "".join(ch.lower() for ch in n) for n in names}
    assert folded["ΟΔΟΣ"] == "οδοσ"  # no final sigma: one character at a time


def test_customers_may_come_before_their_parents():
    data = example(
        customers=[
            {
                "id": 30,
                "parent": 20,
                "name": "Grandchild",
                "bill_type": "prepaid",
                "currency": "USD",
            },
            {"id": 20, "parent": 1, "name": "Child", "bill_type": "callshop", "currency": "EUR"},
            {"id": 1, "parent": None, "name": "Owner", "bill_type": "postpaid", "currency": "USD"},
        ]
    )
    load(data)

    tree = {c.id: (c.parent_id, c.path, c.depth) for c in Customer.objects.all()}
    assert tree == {1: (None, "/1/", 0), 20: (1, "/1/20/", 1), 30: (20, "/1/20/30/", 2)}
    assert set(
        Customer.objects.subtree(Customer.objects.get(id=20)).values_list("id", flat=True)
    ) == {
        20,
        30,
    }


def test_moving_a_customer_moves_the_stored_customers_under_it():
    load(
        example(
            customers=[
                *EXAMPLE["customers"],
                {"id": 2, "parent": 1, "name": "A", "bill_type": "postpaid", "currency": "USD"},
                {"id": 3, "parent": 1, "name": "B", "bill_type": "postpaid", "currency": "USD"},
                {"id": 4, "parent": 2, "name": "A1", "bill_type": "postpaid", "currency": "USD"},
                {"id": 5, "parent": 4, "name": "A11", "bill_type": "postpaid", "currency": "USD"},
            ]
        )
    )
    # A second file that only moves customer 2 under customer 3.
    load(
        {
            "customers": [
                {"id": 2, "parent": 3, "name": "A", "bill_type": "postpaid", "currency": "USD"}
            ]
        }
    )

    paths = dict(Customer.objects.values_list("id", "path"))
    depths = dict(Customer.objects.values_list("id", "depth"))
    assert paths == {1: "/1/", 2: "/1/3/2/", 3: "/1/3/", 4: "/1/3/2/4/", 5: "/1/3/2/4/5/"}
    assert depths == {1: 0, 2: 2, 3: 1, 4: 3, 5: 4}


def test_a_new_system_owner_may_replace_the_stored_one():
    load(EXAMPLE)
    load(
        {
            "customers": [
                {
                    "id": 9,
                    "parent": None,
                    "name": "New owner",
                    "bill_type": "postpaid",
                    "currency": "USD",
                },
                {"id": 1, "parent": 9, "name": "Owner", "bill_type": "postpaid", "currency": "USD"},
            ]
        }
    )

    assert Customer.objects.system_owner().id == 9
    assert Customer.objects.get(id=1).path == "/9/1/"


# --- loading again ---------------------------------------------------------------------


def test_loading_the_same_file_twice_gives_the_same_store():
    data = generate(customers=25, depth=4, legs=400, seed=3)
    load(data)
    once = snapshot()
    load(data)

    assert snapshot() == once
    assert ArchivedLeg.objects.exists()
    assert Leg.objects.exists()


def test_a_second_load_updates_what_it_names_and_keeps_the_rest():
    load(example(cdrs=[a_leg("keep.1"), a_leg("change.1")]))
    user_hash = User.objects.get().password
    data = example(cdrs=[a_leg("change.1", status="busy", talktime=0)])
    data["customers"][0]["name"] = "Renamed"
    data["users"][0]["password"] = "new secret"
    load(data)

    assert Customer.objects.get().name == "Renamed"
    assert set(Leg.objects.values_list("uniqueid", "status")) == {
        ("keep.1", "answer"),
        ("change.1", "busy"),
    }
    user = User.objects.get()
    assert user.password != user_hash
    assert user.check_password("new secret")


def test_an_unchanged_password_keeps_its_stored_hash():
    load(EXAMPLE)
    stored = User.objects.get().password
    load(EXAMPLE)

    assert User.objects.get().password == stored


def test_a_legs_cost_records_become_those_of_the_latest_file():
    usd = {"cost": "1", "currency": "USD"}
    load(example(cdrs=[a_leg("c.1", costs=[{"customer": 1, **usd}, {"card": 1, **usd}])]))
    load(
        example(
            cdrs=[
                a_leg(
                    "c.1", costs=[{"customer": 1, "cost": "-2.5", "tax": "0.1", "currency": "EUR"}]
                )
            ]
        )
    )

    leg = Leg.objects.get(uniqueid="c.1")
    assert costs_of(leg) == {(1, None, Decimal("-2.5"), Decimal("0.1"), "EUR")}

    load(example(cdrs=[a_leg("c.1", costs=[])]))
    assert not LegCost.objects.exists()


def test_a_leg_that_changes_sides_moves_with_its_id_and_costs():
    costs = [{"customer": 1, "cost": "0.5", "currency": "USD"}]
    load(example(cdrs=[a_leg("m.1", costs=costs), a_leg("m.2")]))
    (live,), _ = legs_of("m.1")

    load(example(cdrs=[a_leg("m.1", archived=True, costs=costs)]))
    hot, (archived,) = legs_of("m.1")
    assert hot == []
    assert archived.id == live.id
    assert costs_of(archived) == {(1, None, Decimal("0.5"), Decimal("0"), "USD")}
    assert not LegCost.objects.filter(leg_id=live.id).exists()

    load(example(cdrs=[a_leg("m.1", archived=False)]))
    (back,), archived_now = legs_of("m.1")
    assert archived_now == []
    assert back.id == live.id
    assert not ArchivedLegCost.objects.exists()
    assert not back.costs.exists()


def test_legs_get_ids_unique_across_the_live_and_archive_tables():
    load(example(cdrs=[a_leg(f"u.{i}", archived=i % 2 == 0) for i in range(10)]))
    load(example(cdrs=[a_leg(f"v.{i}", archived=i % 3 == 0) for i in range(10)]))

    ids = list(Leg.objects.values_list("id", flat=True)) + list(
        ArchivedLeg.objects.values_list("id", flat=True)
    )
    assert len(ids) == len(set(ids)) == 20
    # ...and with the ones handed out later by the ORM.
    new = Leg.objects.create(
        uniqueid="orm.1", callid="orm.1", start=1, end=2, talktime=0, direction="in", scustomer_id=1
    )
    assert new.id not in ids


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "staged"])
def test_both_postgresql_ways_store_the_same(bulk):
    data = generate(customers=20, depth=3, legs=300, seed=5)
    load(data, bulk=bulk)
    first = snapshot()
    load(data, bulk=not bulk)

    assert snapshot() == first


def _leg_table_ddl() -> list[tuple[str, str]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = ANY(%s::regclass[]) UNION ALL "
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
            [[m._meta.db_table for m in (Leg, ArchivedLeg, LegCost, ArchivedLegCost)]] * 2,
        )
        return cur.fetchall()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bulk way is PostgreSQL's")
def test_bulk_without_the_privilege_to_skip_triggers_restores_keys_and_indexes(monkeypatch):
    from cdrs.dataset.importer import loader

    monkeypatch.setattr(loader, "pg_session", lambda connection: False)
    before = _leg_table_ddl()

    # The main file's objects and the legs in one import, as an operator loads them.
    legs = [a_leg(f"k.{i}", archived=i % 2 == 0) for i in range(20)]
    result = load(example(cdrs=[]), legs, bulk=True)

    assert result.method.startswith("postgresql (bulk")
    assert _leg_table_ddl() == before
    assert (Leg.objects.count(), ArchivedLeg.objects.count()) == (10, 10)


# --- JSONL and standard input -----------------------------------------------------------


def test_legs_from_jsonl_in_batches():
    load(EXAMPLE)
    result = load(None, [a_leg(f"j.{i}", archived=i % 4 == 0) for i in range(25)], batch_size=4)

    assert result.legs == 25
    assert (Leg.objects.count(), ArchivedLeg.objects.count()) == (1 + 18, 7)


def test_the_main_file_and_jsonl_together():
    result = load(EXAMPLE, [a_leg("j.1"), a_leg("j.2", archived=True)])

    assert result.legs == 3
    assert set(Leg.objects.values_list("uniqueid", flat=True)) == {"1700000000.1", "j.1"}


def test_blank_lines_in_jsonl_are_skipped():
    load(EXAMPLE)
    import_dataset(
        cdrs=io.BytesIO(orjson.dumps(a_leg("b.1")) + b"\n\n  \n" + orjson.dumps(a_leg("b.2")))
    )

    assert Leg.objects.filter(uniqueid__startswith="b.").count() == 2


def test_command_reads_the_main_file_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Stdin(orjson.dumps(EXAMPLE)))
    call_command("import_dataset", "-")

    assert Leg.objects.get().uniqueid == "1700000000.1"
    assert "Imported" in capsys.readouterr().out


def test_command_reads_jsonl_from_stdin(monkeypatch):
    load(EXAMPLE)
    monkeypatch.setattr(sys, "stdin", _Stdin(jsonl([a_leg("p.1"), a_leg("p.2")]).getvalue()))
    call_command("import_dataset", "--cdrs", "-")

    assert Leg.objects.filter(uniqueid__startswith="p.").count() == 2


def test_command_loads_jsonl(tmp_path, capsys):
    load(EXAMPLE)
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(jsonl([a_leg("f.1"), a_leg("f.2")]).getvalue())
    call_command("import_dataset", "--cdrs", str(path))

    assert Leg.objects.filter(uniqueid__startswith="f.").count() == 2
    assert "2 legs" in capsys.readouterr().out


def test_command_reports_errors_on_stderr_and_fails(tmp_path, capsys):
    load(EXAMPLE)
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(jsonl([a_leg("e.1"), a_leg("e.2"), a_leg("e.3", scustomer=99)]).getvalue())

    with pytest.raises(CommandError, match="nothing was written"):
        call_command("import_dataset", "--cdrs", str(path))
    assert f"{path} line 3: scustomer: no customer 99" in capsys.readouterr().err
    assert not Leg.objects.filter(uniqueid__startswith="e.").exists()


def test_command_needs_something_to_load():
    with pytest.raises(CommandError, match="give a dataset FILE"):
        call_command("import_dataset")


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


# --- a bad file: every error, with its place; nothing written ----------------------------


def _leg_with(**changes: Any) -> dict[str, Any]:
    return example(cdrs=[{**EXAMPLE["cdrs"][0], **changes}])


def _without(section: str, field: str) -> dict[str, Any]:
    data = example()
    del data[section][0][field]
    return data


def _customer(**changes: Any) -> dict[str, Any]:
    data = example()
    data["customers"][0].update(changes)
    return data


def _cost(**changes: Any) -> dict[str, Any]:
    entry = {"customer": 1, "cost": "0.01", "currency": "USD", **changes}
    return _leg_with(costs=[{k: v for k, v in entry.items() if v is not ...}])


BAD_FILES = {
    "unknown scustomer": (_leg_with(scustomer=99), "cdrs[0].scustomer: no customer 99"),
    "unknown dcustomer": (_leg_with(dcustomer=7), "cdrs[0].dcustomer: no customer 7"),
    "unknown peer": (_leg_with(peer=5), "cdrs[0].peer: no peer 5"),
    "unknown invoice": (_leg_with(invoice=5), "cdrs[0].invoice: no invoice 5"),
    "unknown card": (_leg_with(card=5), "cdrs[0].card: no card 5"),
    "string id": (_leg_with(scustomer="1"), 'cdrs[0].scustomer: must be an integer, not "1"'),
    "bool id": (_leg_with(peer=True), "cdrs[0].peer: must be an integer, not true"),
    "unknown direction": (
        _leg_with(direction="sideways"),
        'cdrs[0].direction: "sideways" is not one of',
    ),
    "end before start": (_leg_with(end=1699999999), "cdrs[0].end: 1699999999 is before start"),
    "negative talktime": (_leg_with(talktime=-1), "cdrs[0].talktime: -1 is not between 0 and"),
    "talktime too long": (
        _leg_with(talktime=61),
        "cdrs[0].talktime: 61 is not between 0 and end - start (60)",
    ),
    "beyond 64 bits": (_leg_with(end=2**63), "cdrs[0].end: 9223372036854775808 does not fit"),
    "fraction": (_leg_with(start=1.5), "cdrs[0].start: must be an integer, not 1.5"),
    "long string": (
        _leg_with(callername="x" * 256),
        "cdrs[0].callername: is 256 characters long; at most 255",
    ),
    "NUL": (_leg_with(snumber="1\x002"), "cdrs[0].snumber: must not contain a NUL character"),
    "missing uniqueid": (_without("cdrs", "uniqueid"), "cdrs[0].uniqueid: missing"),
    "empty uniqueid": (_leg_with(uniqueid=""), "cdrs[0].uniqueid: must not be empty"),
    "unknown leg field": (_leg_with(totaltime=60), "cdrs[0].totaltime: unknown field"),
    "archived not a flag": (
        _leg_with(archived="yes"),
        'cdrs[0].archived: must be true or false, not "yes"',
    ),
    "cost for both": (
        _cost(card=1),
        "cdrs[0].costs[0]: must name exactly one of customer and card",
    ),
    "cost for nobody": (
        _cost(customer=...),
        "cdrs[0].costs[0]: must name exactly one of customer and card",
    ),
    "cost unknown customer": (_cost(customer=8), "cdrs[0].costs[0].customer: no customer 8"),
    "cost unknown card": (_cost(customer=..., card=8), "cdrs[0].costs[0].card: no card 8"),
    "7 decimal places": (
        _cost(cost="0.0000001"),
        'cdrs[0].costs[0].cost: "0.0000001" is not a decimal string',
    ),
    "cost as a number": (_cost(cost=0.5), "cdrs[0].costs[0].cost: must be a decimal string"),
    "cost missing": (_cost(cost=...), "cdrs[0].costs[0].cost: missing"),
    "bad tax": (_cost(tax="1e3"), 'cdrs[0].costs[0].tax: "1e3" is not a decimal string'),
    "unknown currency": (_cost(currency="XYZ"), 'cdrs[0].costs[0].currency: no currency "XYZ"'),
    "two costs for a customer": (
        _leg_with(costs=[{"customer": 1, "cost": "1", "currency": "USD"}] * 2),
        "cdrs[0].costs[1].customer: a second cost record for customer 1",
    ),
    "two costs for a card": (
        _leg_with(costs=[{"card": 1, "cost": "1", "currency": "USD"}] * 2),
        "cdrs[0].costs[1].card: a second cost record for card 1",
    ),
    "unknown bill type": (
        _customer(bill_type="gold"),
        'customers[0].bill_type: "gold" is not one of: callshop',
    ),
    "unknown parent": (_customer(parent=42), "customers[0].parent: no customer 42"),
    "own parent": (_customer(parent=1), "customers[0].parent: makes a cycle: 1 → 1"),
    "unknown customer currency": (
        _customer(currency="ABC"),
        'customers[0].currency: no currency "ABC"',
    ),
    "unknown rate plan": (_customer(rate_plan=9), "customers[0].rate_plan: no rate plan 9"),
    "negative id": (_customer(id=-1), "customers[0].id: must be a positive integer, not -1"),
    "enabled not a flag": (
        _customer(enabled=1),
        "customers[0].enabled: must be true or false, not 1",
    ),
    "customer name missing": (_without("customers", "name"), "customers[0].name: missing"),
    "unknown role": (
        example(users=[{**EXAMPLE["users"][0], "role": 2}]),
        "users[0].role: no role 2",
    ),
    "empty username": (
        example(users=[{**EXAMPLE["users"][0], "username": ""}]),
        "users[0].username: must not be empty",
    ),
    "card of nobody": (
        example(cards=[{"id": 1, "customer": 3}]),
        "cards[0].customer: no customer 3",
    ),
    "invoice of nobody": (example(invoices=[{"id": 1}]), "invoices[0].customer: missing"),
    "zero currency value": (
        example(currencies=[{"code": "USD", "value": "0"}, EXAMPLE["currencies"][1]]),
        "currencies[0].value: must be more than 0",
    ),
    "currency value as a number": (
        example(currencies=[{"code": "USD", "value": 1}, EXAMPLE["currencies"][1]]),
        'currencies[0].value: must be a positive decimal string such as "1.08", not 1',
    ),
    "features not words": (
        example(rate_plans=[{"id": 1, "name": "P", "features": "cdrs"}]),
        'rate_plans[0].features: must be a list of words, not "cdrs"',
    ),
    "id twice": (
        example(peers=[{"id": 1}, {"id": 1, "name": "again"}]),
        "peers[1].id: 1 appears twice in peers (also peers[0])",
    ),
    "uniqueid twice": (
        example(cdrs=[a_leg("d.1"), a_leg("d.2"), a_leg("d.1")]),
        'cdrs[2].uniqueid: "d.1" appears twice (also cdrs[0])',
    ),
    "not an object": (example(cdrs=[5]), "cdrs[0]: must be an object, not 5"),
    "section not a list": (example(peers={"id": 1}), "peers: must be a list, not an object"),
    "cdrs not a list": (example(cdrs={}), "cdrs: must be a list, not an object"),
    "unknown section": (example(calls=[]), "calls: unknown section"),
}


@pytest.mark.parametrize(("data", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_file_is_refused_with_the_place_of_the_error(data, expected):
    messages = errors_of(data)

    assert any(m.startswith(expected) for m in messages), messages
    assert not Customer.objects.exists()


def test_a_store_with_data_is_left_untouched_by_a_bad_file():
    load(generate(customers=12, depth=3, legs=50, seed=2))
    data = generate(customers=12, depth=3, legs=50, seed=9)
    data["cdrs"][-1]["scustomer"] = 999

    assert errors_of(data) == ["cdrs[49].scustomer: no customer 999"]


def test_every_error_is_reported_up_to_a_limit():
    legs = [a_leg(f"x.{i}", scustomer=50) for i in range(150)]
    messages = errors_of(example(cdrs=legs))

    assert len(messages) == 101
    assert messages[0] == "cdrs[0].scustomer: no customer 50"
    assert messages[-1] == "... and 50 more"


def test_all_the_problems_of_one_leg_are_reported():
    leg = {
        "uniqueid": 7,
        "start": "now",
        "end": 1,
        "talktime": 0,
        "direction": "up",
        "scustomer": 2,
    }
    messages = errors_of(example(cdrs=[leg]))

    assert messages == [
        "cdrs[0].uniqueid: must be a string, not 7",
        "cdrs[0].callid: missing",
        "cdrs[0].status: missing",
        'cdrs[0].direction: "up" is not one of: in, out, internal',
        'cdrs[0].start: must be an integer, not "now"',
        "cdrs[0].scustomer: no customer 2",
    ]


def test_an_error_late_in_a_jsonl_file_undoes_the_batches_before_it():
    load(EXAMPLE)
    before = snapshot()
    legs = [a_leg(f"l.{i}", archived=i % 3 == 0) for i in range(40)]
    legs[37]["talktime"] = 31

    messages = errors_of(None, legs, batch_size=10)

    assert messages == ["cdrs.jsonl line 38: talktime: 31 is not between 0 and end - start (30)"]
    assert snapshot() == before


def test_jsonl_lines_that_are_not_json():
    load(EXAMPLE)
    source = io.BytesIO(orjson.dumps(a_leg("g.1")) + b"\n{not json}\n" + orjson.dumps(a_leg("g.2")))
    with pytest.raises(DatasetError) as caught:
        import_dataset(cdrs=source, cdrs_name="legs.jsonl")

    (message,) = caught.value.lines()
    assert message.startswith("legs.jsonl line 2: not valid JSON")
    assert not Leg.objects.filter(uniqueid__startswith="g.").exists()


def test_a_main_file_that_is_not_json():
    with pytest.raises(DatasetError, match="nothing was written") as caught:
        import_dataset(io.BytesIO(b'{"customers": ['), source_name="broken.json")
    assert caught.value.lines()[0].startswith("broken.json: not valid JSON")


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "staged"])
def test_a_uniqueid_twice_in_different_batches(bulk):
    load(EXAMPLE)
    legs = [a_leg(f"t.{i}") for i in range(6)] + [a_leg("t.1")]

    messages = errors_of(None, legs, batch_size=3, bulk=bulk)

    assert any('"t.1" appears more than once in this import' in m for m in messages), messages


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "staged"])
def test_a_uniqueid_twice_once_archived_and_once_not(bulk):
    load(EXAMPLE)
    legs = [a_leg(f"t.{i}") for i in range(6)] + [a_leg("t.4", archived=True)]

    messages = errors_of(None, legs, batch_size=3, bulk=bulk)

    assert any('"t.4" appears more than once in this import' in m for m in messages), messages


STORED_WAYS = {
    "bulk asked (the store holds legs: staged)": {"bulk": True},
    "staged": {"bulk": False},
}


@pytest.mark.parametrize("way", STORED_WAYS.values(), ids=STORED_WAYS.keys())
def test_a_stored_leg_named_in_two_jsonl_batches_is_refused(way):
    load(example(cdrs=[]))
    load(None, [a_leg("s.1"), a_leg("s.2")])
    before = snapshot()

    legs = [a_leg("s.1", callid="first"), a_leg("n.1"), a_leg("s.1", archived=True)]
    messages = errors_of(None, legs, batch_size=1, **way)

    assert messages == ['cdrs.jsonl line 3: uniqueid: "s.1" appears more than once in this import']
    assert snapshot() == before


@pytest.mark.parametrize("way", STORED_WAYS.values(), ids=STORED_WAYS.keys())
def test_a_stored_leg_named_in_the_main_file_and_in_jsonl_is_refused(way):
    load(example(cdrs=[]))
    load(None, [a_leg("s.1")])

    messages = errors_of({"cdrs": [a_leg("s.1")]}, [a_leg("s.1", talktime=1)], **way)

    assert messages == ['cdrs.jsonl line 1: uniqueid: "s.1" appears more than once in this import']


def test_a_new_leg_named_twice_into_an_empty_store_is_refused_by_the_bulk_way_too():
    load(example(cdrs=[]))

    messages = errors_of({"cdrs": [a_leg("n.1")]}, [a_leg("n.1")], bulk=True)

    assert messages == ['cdrs.jsonl line 1: uniqueid: "n.1" appears more than once in this import']


WAYS = {
    "bulk, checked in worker processes": {"bulk": True, "workers": 2},
    "bulk, checked here": {"bulk": True, "workers": 0},
    "staged": {"bulk": False},
}


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
def test_jsonl_into_an_empty_store_every_way(way):
    load(example(cdrs=[]))
    legs = [
        a_leg(
            f"w.{i}",
            archived=i % 3 == 0,
            costs=[{"customer": 1, "cost": f"0.{i}", "currency": "USD"}],
        )
        for i in range(45)
    ]

    result = load(None, legs, batch_size=10, **way)

    assert (result.legs, result.archived_legs, result.costs) == (45, 15, 45)
    assert (Leg.objects.count(), ArchivedLeg.objects.count()) == (30, 15)
    assert ArchivedLegCost.objects.get(leg__uniqueid="w.9").cost == Decimal("0.9")
    ids = list(Leg.objects.values_list("id", flat=True)) + list(
        ArchivedLeg.objects.values_list("id", flat=True)
    )
    assert len(set(ids)) == 45


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
def test_jsonl_errors_every_way(way):
    load(example(cdrs=[]))
    before = snapshot()
    legs = [a_leg(f"w.{i}") for i in range(45)]
    legs[12]["scustomer"] = 5
    legs[40] = a_leg("w.3", archived=True)

    messages = errors_of(None, legs, batch_size=10, **way)

    assert messages[0] == "cdrs.jsonl line 13: scustomer: no customer 5"
    assert snapshot() == before


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
def test_a_uniqueid_twice_in_jsonl_every_way(way):
    load(example(cdrs=[]))
    legs = [a_leg(f"w.{i}", archived=i > 30) for i in range(45)]
    legs[40] = a_leg("w.3", archived=True)  # the other table, another batch
    legs[41] = a_leg("w.5")  # the same table, another batch

    messages = errors_of(None, legs, batch_size=10, **way)

    assert messages[0] in (
        'cdrs.jsonl line 41: uniqueid: "w.3" appears more than once in this import',
        'cdrs.jsonl line 42: uniqueid: "w.5" appears more than once in this import',
    ), messages


@pytest.mark.parametrize("repeat", [False, True], ids=["distinct", "repeated"])
def test_uniqueids_that_share_a_hash_are_told_apart_by_the_bulk_way(monkeypatch, repeat):
    # On a Citus cluster the bulk way looks a batch up only when a hash of one of its
    # uniqueids was met before: here every hash is the same, so every batch is looked up.
    from cdrs.dataset.importer import pg_bulk

    monkeypatch.setattr(pg_bulk, "uid_hash", lambda uid: 7)
    load(example(cdrs=[]))
    legs = [a_leg(f"h.{i}", archived=i % 4 == 0) for i in range(25)]
    if repeat:
        legs[22] = a_leg("h.8")  # archived the first time, live now: the other table

    if repeat:
        messages = errors_of(None, legs, batch_size=5, bulk=True, workers=0)
        assert messages == [
            'cdrs.jsonl line 23: uniqueid: "h.8" appears more than once in this import'
        ]
    else:
        result = load(None, legs, batch_size=5, bulk=True, workers=0)
        assert result.legs == 25
        assert Leg.objects.count() + ArchivedLeg.objects.count() == 25


def test_references_may_point_to_stored_objects():
    load(EXAMPLE)
    load(
        {
            "customers": [
                {"id": 2, "parent": 1, "name": "New", "bill_type": "prepaid", "currency": "EUR"}
            ],
            "cdrs": [a_leg("s.1", scustomer=2, dcustomer=1, peer=1, card=1, invoice=1)],
        }
    )

    leg = Leg.objects.get(uniqueid="s.1")
    assert (leg.scustomer_id, leg.dcustomer_id, leg.card_id) == (2, 1, 1)


# --- the customer tree -------------------------------------------------------------------


def _tree(*edges: tuple[int, int | None]) -> dict[str, Any]:
    customers = [
        {"id": cid, "parent": parent, "name": f"C{cid}", "bill_type": "postpaid", "currency": "USD"}
        for cid, parent in edges
    ]
    return {"currencies": [{"code": "USD", "value": "1"}], "customers": customers}


def test_a_cycle_is_refused():
    messages = errors_of(_tree((1, None), (2, 4), (3, 2), (4, 3), (5, 4)))

    assert messages == ["customers[1].parent: makes a cycle: 2 → 4 → 3 → 2"]


def test_a_cycle_through_stored_customers_is_refused():
    load(_tree((1, None), (2, 1), (3, 2), (4, 3)))

    messages = errors_of(_tree((2, 4)))

    assert messages == ["customers[0].parent: makes a cycle: 2 → 4 → 3 → 2"]


def test_two_system_owners_in_a_file_are_refused():
    messages = errors_of(_tree((1, None), (2, 1), (3, None)))

    assert messages == [
        "customers[2].parent: null, but customer 1 is already the system owner "
        "(exactly one customer has no parent)"
    ]


def test_a_second_system_owner_beside_the_stored_one_is_refused():
    load(_tree((1, None)))

    messages = errors_of(_tree((7, None)))

    assert messages == [
        "customers[0].parent: null, but customer 1 is already the system owner "
        "(exactly one customer has no parent)"
    ]


def test_a_tree_without_a_system_owner_is_refused():
    messages = errors_of(_tree((1, 2), (2, 1)))

    assert messages[0].startswith("customers: no system owner")
