"""The importer's two leg checks agree: the fast path accepts a leg only as the detailed
check (the reference, which names every problem) would, and builds the same row.

Legs start valid and are then spoiled at random, field by field, with the values hostile
files carry (wrong types, NUL, over-long strings, out-of-range times, unknown keys,
repeated cost records), so both sides of every rule are reached.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdrs.dataset.importer.errors import Errors, main_place
from cdrs.dataset.importer.legs import LegChecker
from cdrs.dataset.importer.values import MAX_STR, TIME_MAX

KNOWN: dict[str, set[Any]] = {
    "customers": {1, 2, 3},
    "currencies": {"USD", "EUR"},
    "cards": {7},
    "peers": {5},
    "invoices": {9},
}

HOSTILE = [
    None, "", "x", "É", "a\x00b", "9" * (MAX_STR + 1), 0, 1, 2, 7, 9, -1, 2**63, True, False,
    1.5, [], {}, ["in"], {"a": 1}, "in", "out", "internal", "1.5", "-0.000001", "1e3",
    TIME_MAX, TIME_MAX + 1, "USD", "usd",
]  # fmt: skip
FIELDS = [
    "uniqueid", "callid", "start", "end", "talktime", "status", "direction", "stype",
    "snumber", "ctype", "cnumber", "dtype", "dnumber", "callername", "scustomer",
    "dcustomer", "peer", "invoice", "card", "archived", "costs", "unknown",
]  # fmt: skip
COST_FIELDS = ["customer", "card", "cost", "tax", "currency", "unknown"]


def valid_leg() -> dict[str, Any]:
    return {
        "uniqueid": "u1", "callid": "c1", "start": 1_700_000_000, "end": 1_700_000_060,
        "talktime": 42, "status": "answer", "direction": "out", "stype": "phone",
        "snumber": "1001", "cnumber": "4420", "callername": "Zoë", "scustomer": 1,
        "dcustomer": 2, "peer": 5, "invoice": 9, "card": 7, "archived": False,
        "costs": [
            {"customer": 1, "cost": "0.0120", "tax": "0.0024", "currency": "USD"},
            {"card": 7, "cost": "0.03", "currency": "EUR"},
        ],
    }  # fmt: skip


spoil_leg = st.tuples(st.just("leg"), st.sampled_from(FIELDS), st.sampled_from(HOSTILE))
spoil_cost = st.tuples(st.integers(0, 1), st.sampled_from(COST_FIELDS), st.sampled_from(HOSTILE))
drop = st.tuples(st.just("drop"), st.sampled_from(FIELDS))
spoilings = st.lists(st.one_of(spoil_leg, spoil_cost, drop), min_size=1, max_size=3)


def spoiled(changes: list[tuple]) -> Any:
    leg = valid_leg()
    for change in changes:
        if change[0] == "leg":
            leg[change[1]] = change[2]
        elif change[0] == "drop":
            leg.pop(change[1], None)
        elif (
            isinstance(leg.get("costs"), list)
            and len(leg["costs"]) > change[0]
            and isinstance(leg["costs"][change[0]], dict)
        ):
            # A cost spoilt into a non-object by an earlier change stays spoilt.
            leg["costs"][change[0]][change[1]] = change[2]
    return leg


def agree(leg: Any) -> None:
    errors = Errors(limit=100)
    batch = LegChecker(KNOWN).check([(0, leg)], main_place, errors)
    reference = LegChecker(KNOWN)._detailed(leg)
    if isinstance(reference, list):
        assert batch.rows == []
        assert errors.messages == [
            f"{main_place(0, name)}: {problem}" for name, problem in reference
        ]
    else:
        row, archived, costs = reference
        assert errors.messages == []
        assert batch.rows == [row]
        assert batch.archived == [archived]
        assert batch.costs == [(0, *cost) for cost in costs]


@settings(max_examples=2000, deadline=None)
@given(spoilings)
def test_the_fast_path_accepts_exactly_what_the_reference_accepts(changes) -> None:
    agree(spoiled(changes))


def test_both_refuse_a_leg_that_is_not_an_object() -> None:
    agree([valid_leg()])


def test_an_unspoiled_leg_takes_the_fast_path_and_is_accepted() -> None:
    errors = Errors(limit=10)
    batch = LegChecker(KNOWN).check([(0, valid_leg())], main_place, errors)
    assert errors.messages == []
    assert batch.rows[0][:3] == ("u1", "c1", 1_700_000_000)
    assert batch.rows[0][14] == "zoë"  # the folded caller name
