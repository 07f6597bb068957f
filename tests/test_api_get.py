"""Section 6 of docs/api.md: `cdrs/get`.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests import api_helpers as h
from tests.api_helpers import (
    GET,
    INT64_MAX,
    ask,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 6: cdrs/get -------------------------------------------------------------


@pytest.fixture
def legs(actors):
    h.card(500, actors.customer.customer)
    make_leg(
        "mine",
        11,
        card_id=500,
        costs=[
            {"customer": 11, "cost": "2"},
            {"customer": 10, "cost": "1.1"},
            {"customer": 21, "cost": "9"},
        ],
    )
    make_leg("charlies", 21, costs=[{"customer": 21, "cost": "3"}])
    make_leg("shared", 21, 11, costs=[{"customer": 21, "cost": "3"}])
    make_leg("old", 11, archived=True, costs=[{"customer": 11, "cost": "4"}])
    return actors


def test_get_answers_the_row_as_list_shows_it(client, legs):
    for who in (legs.customer, legs.reseller, legs.owner):
        listed = h.assert_ok(ask(client, who, recurse=1, archive=1))
        for row in listed:
            answer = ask(client, who, GET, uniqueid=row["uniqueid"])
            assert answer.responses == [h.OK]
            assert answer.data == row


def test_get_requires_uniqueid(client, legs):
    h.assert_invalid(ask(client, legs.customer, GET), "uniqueid")
    h.assert_invalid(ask(client, legs.customer, GET, uniqueid=""), "uniqueid")


@pytest.mark.parametrize("value", ["x" * 256, "\u00e9" * 256, "a\x00", "\x00"])
def test_get_uniqueid_string_rules(client, legs, value):
    h.assert_invalid(ask(client, legs.customer, GET, uniqueid=value), "uniqueid")


def test_get_uniqueid_of_255_code_points_is_valid(client, legs):
    uid = "\u00e9" * 255
    make_leg(uid, 11, callid="c")
    answer = ask(client, legs.customer, GET, uniqueid=uid)
    assert answer.responses == [h.OK]
    assert answer.data["uniqueid"] == uid


def test_get_customer_is_the_cost_customer(client, legs):
    answer = ask(client, legs.reseller, GET, uniqueid="mine")
    assert h.money(answer.data["cost"]) == 1
    assert answer.data["currency"] == "EUR"
    answer = ask(client, legs.reseller, GET, uniqueid="mine", customer=11)
    assert h.money(answer.data["cost"]) == Decimal("1.818182")
    answer = ask(client, legs.reseller, GET, uniqueid="mine", customer="011")
    assert h.money(answer.data["cost"]) == Decimal("1.818182")
    answer = ask(client, legs.customer, GET, uniqueid="shared")
    assert h.money(answer.data["cost"]) == 0


@pytest.mark.parametrize(
    "value", ["all", "scustomer", "card", "system", "prepaid", "x", "+11", "1.0", "\uff11\uff11"]
)
def test_get_customer_accepts_only_an_id(client, legs, value):
    h.assert_invalid(ask(client, legs.owner, GET, uniqueid="mine", customer=value), "customer")


def test_get_customer_out_of_scope_is_400_with_one_message(client, legs):
    answers = [
        ask(client, legs.reseller, GET, uniqueid="mine", customer=v)
        for v in ["1", "20", "21", "999999", "0", str(INT64_MAX)]
    ]
    for a in answers:
        h.assert_invalid(a, "customer")
    assert len({a.raw for a in answers}) == 1
    h.assert_invalid(
        ask(client, legs.reseller, GET, uniqueid="mine", customer=str(2**63)), "customer"
    )


def test_get_400_entries_in_order(client, legs):
    h.assert_invalid(ask(client, legs.reseller, GET, customer="all"), "uniqueid", "customer")
    answer = ask(client, legs.reseller, GET, customer="21", uniqueid="a\x00")
    h.assert_invalid(answer, "uniqueid", "customer")


def test_get_404_for_missing_out_of_scope_or_archived_without_privilege(client, legs):
    nobody = ask(client, legs.customer, GET, uniqueid="nonexistent")
    h.assert_error(nobody, 404, "uniqueid")
    assert ask(client, legs.customer, GET, uniqueid="charlies").raw == nobody.raw
    assert ask(client, legs.charlie, GET, uniqueid="mine").raw == nobody.raw
    assert ask(client, legs.charlie, GET, uniqueid="old").raw == nobody.raw
    h.assert_ok(ask(client, legs.charlie, GET, uniqueid="shared"))
    h.assert_ok(ask(client, legs.customer, GET, uniqueid="shared"))
    noarch = h.actor(legs.customer.customer, "noarch", ["cdrs"])
    assert ask(client, noarch, GET, uniqueid="old").raw == nobody.raw
    assert ask(client, noarch, GET, uniqueid="old", archive=1).raw == nobody.raw
    h.assert_ok(ask(client, noarch, GET, uniqueid="mine"))


def test_get_archived_leg_with_privilege(client, legs):
    answer = ask(client, legs.customer, GET, uniqueid="old")
    assert answer.responses == [h.OK]
    h.assert_row_shape(answer.data)
    assert answer.data["archived"] == 1
    assert h.money(answer.data["cost"]) == 4


def test_get_ignores_list_parameters(client, legs):
    noarch = h.actor(legs.customer.customer, "noarch", ["cdrs"])
    # archive=1 is unknown to cdrs/get: no 402; nor are list-only checks applied.
    answer = ask(
        client,
        noarch,
        GET,
        uniqueid="mine",
        archive=1,
        start="x",
        sort="nope",
        cost_customer="x",
        status="busy",
    )
    assert answer.responses == [h.OK]
    assert answer.data["uniqueid"] == "mine"


def test_get_customer_system_by_non_owner_is_400_not_402(client, legs):
    h.assert_invalid(
        ask(client, legs.reseller, GET, uniqueid="mine", customer="system"), "customer"
    )


def test_get_envelope_data_is_an_object(client, legs):
    answer = ask(client, legs.customer, GET, uniqueid="mine")
    assert isinstance(answer.data, dict)
    assert answer.http["Content-Type"] == "application/json; charset=utf-8"
