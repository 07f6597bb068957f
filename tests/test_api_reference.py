"""Differential test: the API against tests/reference.py on random small worlds.

Each example stores a random customer tree with random legs (strings with accents,
`%`, `_`, `\\`, digits and mixed case; starts with ties; costs in several currencies,
some negative; some legs archived), then sends a few random parameter sets to
`cdrs/list` and a few `cdrs/get` calls, and compares every answer with the
reference's: the code, the 400 keys in order, and the rows in order, field by field.
Each example's data is rolled back at its end.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests import api_helpers as h
from tests import reference as ref
from tests.api_helpers import GET, INT64_MAX, LIST

pytestmark = pytest.mark.django_db

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)
PRIVILEGES = [["cdrs"], ["cdrs", "archive"], ["callshop"], ["callshop", "archive"]]


def _values(world: ref.World, the_legs: list[ref.Leg]) -> dict[str, tuple[list, list]]:
    """Per parameter: (valid values, invalid values)."""
    ids = [str(c) for c in sorted(world.customers)]
    callids = sorted({leg.callid for leg in the_legs}) or ["c1"]
    numbers = sorted({leg.snumber[:2] for leg in the_legs} | {"0", "%", "_", "a", "\\"})
    match = [*ref.MATCH]
    return {
        "start": (["0", "1", "5", "6", "10", "007", "-0", "100", "1700000000"], ["-1", "x"]),
        "end": (["0", "5", "10", "100", "2000000000", str(INT64_MAX)], ["-1", "1e3"]),
        "archive": (["0", "1", "01"], ["2", "true"]),
        "callername_match": (match, ["Start"]),
        "callername_number": (
            ["a", "\u00c9", "\u00e9", "s", "\u00df", "\u1e9e", "\u03a3", "%", "_", "i", "\u0130"],
            [],
        ),
        "callid": (callids, ["c" * 256]),
        "cost_customer": (["scustomer", "card", *ids, "0" + ids[-1]], ["all", "999"]),
        "customer": ([*ref.CUSTOMER_WORDS, *ids], ["999", "x", "Prepaid"]),
        "direction": (list(ref.DIRECTIONS), ["IN"]),
        "invoice": (["0", "1", "2", "3"], ["-1"]),
        "limit": (["0", "1", "2", "3", "7"], ["-1"]),
        "offset": (["0", "1", "2", "5", str(INT64_MAX)], ["+1"]),
        "peer": (["0", "1", "2"], ["-1"]),
        "phone": (numbers, ["a\x00"]),
        "recurse": (["0", "1"], ["2"]),
        "status": (h.STATUSES, []),
        "talktime_maximum": (["-1", "0", "10", "50"], ["-2"]),
        "talktime_minimum": (["0", "1", "10", "50"], ["-1"]),
        "stype": (h.TYPES, []),
        "smatch": (match, ["begins"]),
        "snumber": (numbers, []),
        "ctype": (h.TYPES, []),
        "cmatch": (match, []),
        "cnumber": (numbers, []),
        "caller_number": (numbers, ["a" * 256]),
        "called_number": (numbers, ["\x00"]),
        "dtype": (h.TYPES, []),
        "dmatch": (match, []),
        "dnumber": (numbers, []),
        "sort": (list(ref.SORTS), ["Start", "card"]),
        "descending": (["0", "1"], ["-1"]),
    }


@st.composite
def list_params(
    draw: Any, world: ref.World, the_legs: list[ref.Leg], viewer: int
) -> dict[str, str]:
    values = _values(world, the_legs)
    names = draw(st.lists(st.sampled_from(sorted(values)), max_size=4, unique=True))
    params = {}
    # Wide selections are the interesting ones: ask for them often.
    if draw(st.booleans()):
        names = [n for n in names if n != "customer"]
        wide = ["all", str(viewer)] + (["system"] if viewer == world.owner() else [])
        params["customer"] = draw(st.sampled_from(wide))
        params["recurse"] = "1"
        params["end"] = str(h.FUTURE + 1000)
    for name in names:
        valid, invalid = values[name]
        roll = draw(st.integers(0, 19))
        if roll == 0 and invalid:
            params[name] = draw(st.sampled_from(invalid))
        elif roll == 1:
            params[name] = ""  # empty means the default
        else:
            params[name] = draw(st.sampled_from(valid))
    if "customer" in params and params["customer"] not in ("", "system") and draw(st.booleans()):
        params["recurse"] = "1"
    return params


@st.composite
def scenarios(draw: Any) -> tuple:
    world = draw(h.trees(max_customers=6))
    world.legs = draw(h.legs(world, max_legs=10))
    parents = sorted({c.parent for c in world.customers.values() if c.parent is not None})
    viewer = draw(st.sampled_from([world.owner()] * 3 + parents * 2 + sorted(world.customers)))
    privileges = draw(st.sampled_from(PRIVILEGES))
    queries = draw(st.lists(list_params(world, world.legs, viewer), min_size=1, max_size=4))
    uids = [leg.uniqueid for leg in world.legs] + ["nope"]
    gets = draw(
        st.lists(
            st.fixed_dictionaries(
                {"uniqueid": st.sampled_from(uids)},
                optional={"customer": st.sampled_from([*map(str, world.customers), "999"])},
            ),
            max_size=3,
        )
    )
    return world, viewer, privileges, queries, gets


def assert_same(answer: h.Answer, expected: ref.Result, context: Any) -> None:
    assert answer.code == str(expected.code), (context, answer, expected)
    rows = expected.data if isinstance(expected.data, list) else [expected.data]
    size = "no rows" if not rows or rows == [None] else "1 row" if len(rows) == 1 else "rows"
    event(f"{context[0]} {expected.code}, {size}")
    if expected.code == 400:
        assert answer.keys == expected.keys, (context, answer)
        return
    if expected.code != 200:
        return
    got = answer.data
    want = expected.data
    if isinstance(want, dict):
        got, want = [got], [want]
    assert [r["uniqueid"] for r in got] == [r["uniqueid"] for r in want], (context, answer)
    for g, w in zip(got, want, strict=True):
        h.assert_row_shape(g)
        for key, value in w.items():
            if isinstance(value, Decimal):
                assert h.money(g[key]) == value, (context, key, g, w)
            else:
                assert g[key] == value, (context, key, g, w)


@SETTINGS
@given(scenario=scenarios())
def test_api_answers_like_the_reference(client, scenario):
    world, viewer, privileges, queries, gets = scenario
    with transaction.atomic():
        who = h.build_world(world, viewer, privileges)
        for params in queries:
            answer = h.call(client, LIST, **who.creds, **params)
            expected = ref.cdrs_list(world, viewer, set(privileges), params, int(time.time()))
            assert_same(answer, expected, ("list", viewer, privileges, params))
        for params in gets:
            answer = h.call(client, GET, **who.creds, **params)
            expected = ref.cdrs_get(world, viewer, set(privileges), params)
            assert_same(answer, expected, ("get", viewer, privileges, params))
        transaction.set_rollback(True)


@st.composite
def sort_scenarios(draw: Any) -> tuple:
    """Many legs seen by the owner, sorted every way: ties, accents, costs, archive."""
    world = draw(h.trees(max_customers=4))
    world.legs = draw(h.legs(world, max_legs=12))
    params = {
        "customer": "system",
        "archive": "1",
        "end": str(INT64_MAX),
        "sort": draw(st.sampled_from(ref.SORTS)),
        "descending": draw(st.sampled_from(["0", "1"])),
        "cost_customer": draw(st.sampled_from(["", "scustomer", "card", "1"])),
        "offset": draw(st.sampled_from(["", "0", "1", "3"])),
        "limit": draw(st.sampled_from(["", "0", "2", "5"])),
    }
    return world, params


@SETTINGS
@given(scenario=sort_scenarios())
def test_order_limit_offset_like_the_reference(client, scenario):
    world, params = scenario
    with transaction.atomic():
        who = h.build_world(world, 1, ["cdrs", "archive"])
        answer = h.call(client, LIST, **who.creds, **params)
        expected = ref.cdrs_list(world, 1, {"cdrs", "archive"}, params, int(time.time()))
        assert_same(answer, expected, ("sorted", params))
        transaction.set_rollback(True)


def test_reference_sanity():
    """The reference itself, on a hand-checked case (section 3's examples)."""
    world = ref.World(
        customers={
            1: ref.Customer(1, None, "none", "USD"),
            2: ref.Customer(2, 1, "prepaid_calls", "THR"),
            3: ref.Customer(3, 2, "postpaid", "USD"),
        },
        currencies={"USD": Decimal(1), "THR": Decimal(3)},
        cards={},
        legs=[
            ref.Leg("9", 3, 5, 10, callername="\u00c9", costs=(ref.Cost(Decimal(1), 0, "USD", 2),)),
            ref.Leg("10", 2, 5, 10, callername="e"),
            ref.Leg("a", 1, 6, 6, archived=True),
        ],
    )
    got = ref.cdrs_list(world, 2, {"cdrs"}, {"recurse": "1"}, 100)
    assert [r["uniqueid"] for r in got.data] == ["10", "9"]
    assert got.data[1]["cost"] == Decimal("0.333333")
    got = ref.cdrs_list(world, 2, {"cdrs"}, {"callername_number": "\u00e9"}, 100)
    assert got.data == []
    got = ref.cdrs_list(world, 2, {"cdrs"}, {"callername_number": "\u00e9", "recurse": "1"}, 100)
    assert [r["uniqueid"] for r in got.data] == ["9"]
    assert ref.cdrs_list(world, 2, {"cdrs"}, {"customer": "1"}, 100).keys == ["customer"]
    assert ref.cdrs_list(world, 2, {"cdrs"}, {"archive": "01"}, 100).code == 402
    assert ref.cdrs_list(world, 2, {"cdrs"}, {"customer": "system"}, 100).code == 402
    got = ref.cdrs_list(world, 1, {"cdrs"}, {"customer": "prepaid"}, 100)
    assert [r["uniqueid"] for r in got.data] == ["10"]
    assert ref.cdrs_get(world, 2, {"cdrs"}, {"uniqueid": "a"}).code == 404
    assert ref.cdrs_get(world, 2, {"cdrs"}, {}).keys == ["uniqueid"]
    assert ref.parse_integer("1" + "0" * 5000) is None
    assert ref.parse_integer("-0") == 0
