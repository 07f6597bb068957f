"""`cdrs/totals/list` (docs/api.md, section 9): per-customer, per-hour call counts."""

from __future__ import annotations

import pytest

from tests import api_helpers as h
from tests import factories as f
from tests.api_helpers import make_leg

pytestmark = pytest.mark.django_db

TOTALS = "/api/json/cdrs/totals/list/"
H = 1_699_999_200  # a whole hour (a multiple of 3600)


@pytest.fixture
def legs(actors):
    make_leg("a", 11, start=H + 10, direction="out")
    make_leg("b", 11, 10, start=H + 20, direction="in")  # for 11 and for 10
    make_leg("c", 11, 11, start=H + 30, direction="internal")  # once for 11
    make_leg("d", 21, start=H + 40, direction="out")  # charlie's
    make_leg("e", 11, start=H + 3600 + 5, direction="out", archived=True)  # archived counts
    make_leg("f", 10, 21, start=H + 7200 + 3599, direction="in")  # for 10 and for 21
    make_leg("g", 11, start=h.FUTURE, direction="out")  # after "now"
    return actors


def row(customer, hour, inbound=0, outbound=0, internal=0):
    return {"customer": customer, "start": hour, "end": hour + 3599, "inbound": inbound,
            "outbound": outbound, "internal": internal}  # fmt: skip


def totals(client, who, **params):
    return h.call(client, TOTALS, **who.creds, **params)


def rows(client, who, **params):
    return h.assert_ok(totals(client, who, **params))


@pytest.mark.parametrize("path", [TOTALS, TOTALS.rstrip("/")])
def test_one_customers_hours(client, legs, path):
    answer = h.call(client, path, **legs.customer.creds)
    assert h.assert_ok(answer) == [row(11, H, 1, 1, 1), row(11, H + 3600, outbound=1)]
    assert answer.http["Content-Type"] == "application/json; charset=utf-8"


def test_a_leg_counts_for_both_customers_once_each(client, legs):
    assert rows(client, legs.reseller) == [row(10, H, inbound=1), row(10, H + 7200, inbound=1)]
    assert rows(client, legs.reseller, recurse=1) == [
        row(10, H, inbound=1),
        row(11, H, 1, 1, 1),
        row(11, H + 3600, outbound=1),
        row(10, H + 7200, inbound=1),
    ]
    everything = rows(client, legs.owner, customer="system", end=h.FUTURE + 3599)
    assert [(r["start"], r["customer"]) for r in everything] == [
        (H, 10), (H, 11), (H, 21), (H + 3600, 11), (H + 7200, 10), (H + 7200, 21),
        (h.FUTURE - h.FUTURE % 3600, 11),
    ]  # fmt: skip


def test_only_hours_entirely_inside_the_request(client, legs):
    who = legs.customer
    assert rows(client, who, start=H, end=H + 3599) == [row(11, H, 1, 1, 1)]
    assert rows(client, who, start=H, end=H + 3598) == []
    assert rows(client, who, start=H + 1, end=H + 7199) == [row(11, H + 3600, outbound=1)]
    assert rows(client, who, start=H + 3600, end=H + 3600 + 3599) == [row(11, H + 3600, outbound=1)]
    assert rows(client, who, start=H + 7200, end=H) == []  # start after end: empty


def test_end_defaults_to_now(client, legs):
    everything = rows(client, legs.customer, end=h.FUTURE + 3599)
    assert everything[-1]["start"] == h.FUTURE - h.FUTURE % 3600
    assert all(r["start"] < h.FUTURE - 3600 for r in rows(client, legs.customer))


def test_customer_words_and_recurse_as_in_cdrs_list(client, legs):
    owner = legs.owner
    assert {r["customer"] for r in rows(client, owner, customer="all")} == {10}
    assert {r["customer"] for r in rows(client, owner, customer="all", recurse=1)} == {10, 11, 21}
    assert {r["customer"] for r in rows(client, owner, customer="prepaid", recurse=1)} == {11}
    assert {r["customer"] for r in rows(client, owner, customer="postpaid")} == {10}
    assert {r["customer"] for r in rows(client, owner, customer=21)} == {21}
    assert {r["customer"] for r in rows(client, owner, customer=1, recurse=1)} == {10, 11, 21}
    assert rows(client, owner) == []  # the owner's own customer has no legs


def test_nothing_outside_the_users_customers(client, legs):
    h.assert_invalid(totals(client, legs.reseller, customer=21), "customer")
    h.assert_invalid(totals(client, legs.reseller, customer=999), "customer")
    h.assert_error(totals(client, legs.reseller, customer="system"), 402)
    assert {r["customer"] for r in rows(client, legs.charlie, recurse=1)} == {21}


def test_400s_in_table_order(client, legs):
    answer = totals(client, legs.owner, recurse=2, customer="x", end="-1", start="1e3")
    h.assert_invalid(answer, "start", "end", "customer", "recurse")
    assert [e["message"] for e in answer.responses] == [
        "Must be a whole number written with the digits 0-9.",
        "Must be 0 or more.",
        "Must be a customer ID or one of: all, external, postpaid, prepaid, system.",
        "Must be 0 or 1.",
    ]
    h.assert_invalid(h.post_json(client, TOTALS, {**legs.owner.creds, "start": True}), "start")
    h.assert_ok(totals(client, legs.owner, archive=7, limit="x"))  # unknown here: ignored


def test_needs_the_cdrs_privilege_and_the_rate_plan_feature(client, legs):
    shop = h.actor(legs.customer.customer, "shop", privileges=["callshop"])
    h.assert_error(totals(client, shop), 402)
    assert h.call(client, h.LIST, **shop.creds).code == "200"  # cdrs/list takes callshop
    plan = f.rate_plan(["voicemail"])
    legs.customer.customer.rate_plan = plan
    legs.customer.customer.save()
    h.assert_error(totals(client, legs.customer), 403)
    h.assert_error(h.call(client, TOTALS, auth_username="customer", auth_password="x"), 401)


def test_zero_rows_are_not_returned(client, legs):
    from cdrs.models import Leg

    Leg.objects.get(uniqueid="f").delete()
    assert rows(client, legs.reseller) == [row(10, H, inbound=1)]
    leg = Leg.objects.get(uniqueid="b")
    leg.direction, leg.start, leg.end = "out", H + 3600, H + 3660  # another hour, direction
    leg.save()
    assert rows(client, legs.reseller, recurse=1) == [
        row(11, H, 0, 1, 1),
        row(10, H + 3600, outbound=1),
        row(11, H + 3600, outbound=2),
    ]
