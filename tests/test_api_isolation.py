"""Isolation: a user never sees a leg, or a cost, from outside its own subtree.

A hypothesis property over random customer trees (depth up to 4) and random legs
(scustomer and dcustomer anywhere, cost records for random customers and cards), for a
random user and every value of `customer` (words, every ID of the tree, a nonexistent
ID), both values of `recurse`, and each kind of `cost_customer`. Every cost record has a
distinct whole amount in one currency, so a row's cost names the record it came from.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrs.models import ArchivedLegCost, LegCost
from tests import api_helpers as h
from tests import reference as ref
from tests.api_helpers import GET, INT64_MAX, LIST, make_leg

pytestmark = pytest.mark.django_db

NONEXISTENT = "999"  # tree IDs are 1..99, and 999 is never one of them


@st.composite
def scenarios(draw: Any) -> tuple:
    world = draw(h.trees(max_customers=7, max_depth=4, currencies=["USD"]))
    world.legs = draw(h.legs(world, max_legs=8, unique_costs=True))
    viewer = draw(st.sampled_from(sorted(world.customers)))
    privileges = draw(st.sampled_from([["cdrs"], ["cdrs", "archive"], ["callshop", "archive"]]))
    return world, viewer, privileges


def _records(world: ref.World) -> dict[int, tuple[str, int]]:
    """amount -> (the leg's uniqueid, the customer who owns the record)."""
    found = {}
    for leg in world.legs:
        for c in leg.costs:
            owner = c.customer if c.customer is not None else world.cards[c.card]
            found[int(c.amount)] = (leg.uniqueid, owner)
    return found


def _check_rows(rows: list[dict], world: ref.World, scope: set[int], context: Any) -> None:
    records = _records(world)
    for r in rows:
        assert r["scustomer"] in scope or r["dcustomer"] in scope, (context, r)
        for key in ("cost", "cost_excluding_tax", "cost_including_tax"):
            amount = h.money(r[key])
            if amount == 0:
                continue
            assert amount == amount.to_integral_value(), (context, r)
            uid, owner = records[int(amount)]
            assert uid == r["uniqueid"], (context, "a cost from another leg", r)
            assert owner in scope, (context, "a cost of a customer outside the scope", r)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_nothing_outside_the_subtree_is_ever_shown(client, scenario):
    world, viewer, privileges = scenario
    scope = world.subtree(viewer)
    is_owner = viewer == world.owner()
    ids = [str(c) for c in sorted(world.customers)]
    customers = ["", "all", "prepaid", "postpaid", "external", "system", *ids, NONEXISTENT]
    cost_customers = itertools.cycle(["", "scustomer", "card", *ids, NONEXISTENT])
    archive = "1" if "archive" in privileges else "0"
    with transaction.atomic():
        who = h.build_world(world, viewer, privileges)

        # The 400 for an ID outside the scope is the 400 for an ID that does not exist.
        for param in ("customer", "cost_customer"):
            baseline = h.call(client, LIST, **who.creds, **{param: NONEXISTENT})
            h.assert_invalid(baseline, param)
            for cid in [*ids, "0", str(INT64_MAX)]:
                if cid.isdigit() and int(cid) in scope:
                    continue
                answer = h.call(client, LIST, **who.creds, **{param: cid})
                assert answer.raw == baseline.raw, (param, cid)

        # Every value of `customer`, each with both values of `recurse` over two examples
        # (the example's parity picks which comes first), and `cost_customer` in turn.
        recurses = itertools.cycle(["0", "1"] if len(world.legs) % 2 else ["1", "0"])
        for customer in customers:
            recurse, cost_customer = next(recurses), next(cost_customers)
            params = {
                "customer": customer,
                "recurse": recurse,
                "cost_customer": cost_customer,
                "archive": archive,
                "end": str(INT64_MAX),
            }
            answer = h.call(client, LIST, **who.creds, **params)
            context = (viewer, privileges, params)
            if customer == "system" and not is_owner:
                h.assert_error(answer, 402)
                continue
            bad = [
                p
                for p in ("cost_customer", "customer")
                if params[p].isdigit() and int(params[p]) not in scope
            ]
            if bad:
                h.assert_invalid(answer, *bad)
                continue
            _check_rows(h.assert_ok(answer), world, scope, context)

        # cdrs/get: an ID outside the scope answers exactly as one that does not exist.
        missing = h.call(client, GET, **who.creds, uniqueid="\u2603 no such leg")
        h.assert_error(missing, 404, "uniqueid")
        bad_customer = h.call(client, GET, **who.creds, uniqueid="x", customer=NONEXISTENT)
        h.assert_invalid(bad_customer, "customer")
        for cid in ids:
            answer = h.call(client, GET, **who.creds, uniqueid="x", customer=cid)
            if int(cid) not in scope:
                assert answer.raw == bad_customer.raw, cid
        cost_ids = itertools.cycle(["", *[str(c) for c in sorted(scope)]])
        for leg in world.legs:
            params = {"uniqueid": leg.uniqueid, "customer": next(cost_ids)}
            answer = h.call(client, GET, **who.creds, **params)
            visible = leg.scustomer in scope or leg.dcustomer in scope
            if visible and (not leg.archived or "archive" in privileges):
                assert answer.responses == [h.OK], (params, answer)
                _check_rows([answer.data], world, scope, params)
            else:
                assert answer.raw == missing.raw, (params, answer)
        transaction.set_rollback(True)


# --- the named actors, exhaustively ----------------------------------------------------


@pytest.fixture
def branches():
    """The reseller's branch and Charlie's, with legs and costs on both sides."""
    a = h.make_actors()
    h.card(500, a.customer.customer)
    h.card(600, a.charlie.customer)
    amounts = itertools.count(1)

    def costs(*owners: tuple[str, int]) -> list[dict]:
        return [{kind: who, "cost": next(amounts)} for kind, who in owners]

    every = [("customer", c) for c in (1, 10, 11, 20, 21)] + [("card", 500), ("card", 600)]
    make_leg("r", 10, costs=costs(*every))
    make_leg("c", 11, card_id=500, costs=costs(*every))
    make_leg("rc", 11, 21, card_id=600, costs=costs(*every))  # across the branches
    make_leg("ch", 21, card_id=600, costs=costs(*every))
    make_leg("ch-old", 21, archived=True, costs=costs(*every))
    make_leg("old", 11, archived=True, card_id=500, costs=costs(*every))
    make_leg("o", 1, costs=costs(*every))
    return a


@pytest.mark.parametrize(
    ("who", "allowed_legs"),
    [
        ("charlie", {"rc", "ch", "ch-old"}),
        ("customer", {"c", "rc", "old"}),
        ("reseller", {"r", "c", "rc", "old"}),
    ],
)
def test_named_actors_see_only_their_branch(client, branches, who, allowed_legs):
    actor = getattr(branches, who)
    scope = {"charlie": {21}, "customer": {11}, "reseller": {10, 11}}[who]
    cards = {500: 11, 600: 21}
    ids = ["1", "10", "11", "20", "21", "999"]
    seen = set()
    cost_customers = itertools.cycle(["", "scustomer", "card", *ids])
    for customer, recurse, archive in itertools.product(
        ["", "all", "prepaid", "postpaid", "external", *ids], ["0", "1"], ["0", "1"]
    ):
        cost_customer = next(cost_customers)
        params = dict(
            customer=customer, recurse=recurse, cost_customer=cost_customer, archive=archive
        )
        answer = h.call(client, LIST, **actor.creds, **params)
        if answer.code == "400":
            assert set(answer.keys) <= {"customer", "cost_customer"}, answer
            for key in answer.keys:
                assert int(params[key]) not in scope, answer
            continue
        for row in h.assert_ok(answer):
            seen.add(row["uniqueid"])
            assert row["uniqueid"] in allowed_legs, (params, row)
            cost = h.money(row["cost"])
            if cost:
                # Records are in USD (worth 1): the amount is the cost x the viewer's value.
                amount = round(cost * actor.customer.currency.value)
                assert _owner_of(row["uniqueid"], amount, cards) in scope, (params, row)
    assert seen == allowed_legs


def _owner_of(uid: str, amount: int, cards: dict[int, int]) -> int:
    for model in (LegCost, ArchivedLegCost):
        record = model.objects.filter(leg__uniqueid=uid, cost=amount).first()
        if record is not None:
            return record.customer_id or cards[record.card_id]
    raise AssertionError(("no such record on this leg", uid, amount))
