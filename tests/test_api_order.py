"""Section 3 of docs/api.md: order, limit and offset, and `archive=1` in one ordered list.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import pytest

from cdrs.models import Leg
from tests import api_helpers as h
from tests.api_helpers import (
    SORT_FIELDS,
    ask,
    ids_of,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 3: order, limit, offset -------------------------------------------------


def test_strings_order_by_code_point(client, actors):
    values = ["9", "10", "a", "B", "\u00e9", "z", "Z", "\U0001f600", "\uff21", "aa", "A"]
    for i, v in enumerate(values):
        make_leg(f"u{i:02d}", 11, callid=v, callername=v, snumber=v, status=v)
    expected = sorted(values)  # Python compares str by code point
    assert expected[:6] == ["10", "9", "A", "B", "Z", "a"]
    for sort, key in [("callid", "callid"), ("name", "callername"), ("snumber", "snumber")]:
        rows = h.assert_ok(ask(client, actors.customer, sort=sort))
        assert [r[key] for r in rows] == expected, sort
        rows = h.assert_ok(ask(client, actors.customer, sort=sort, descending=1))
        assert [r[key] for r in rows] == expected[::-1], sort


def test_uniqueid_orders_by_code_point_and_breaks_ties(client, actors):
    uids = ["9", "10", "B", "a", "\u00e9", "z", "1700000000.5", "1700000000.10"]
    for uid in uids:
        make_leg(uid, 11, start=42)
    assert ids_of(client, actors.customer) == sorted(uids)
    assert ids_of(client, actors.customer, descending=1) == sorted(uids, reverse=True)
    assert ids_of(client, actors.customer, sort="uniqueid") == sorted(uids)


def _sort_dataset(actors):
    h.peer(3)
    h.peer(4)
    rows = [
        ("u1", 11, None, dict(start=30, end=90, talktime=5, peer_id=3, callid="9")),
        ("u2", 11, 10, dict(start=10, end=20, talktime=5, direction="in", callid="10")),
        ("u3", 10, 11, dict(start=30, end=31, talktime=0, status="busy", callid="B")),
        ("u4", 10, None, dict(start=20, end=200, talktime=100, peer_id=4, callid="a")),
        ("U5", 11, 10, dict(start=10, end=70, direction="internal", callername="\u00e9")),
        ("u6", 11, None, dict(start=50, end=51, talktime=1, stype="phone", callername="Z")),
        ("u7", 10, 11, dict(start=50, end=60, talktime=0, dtype="B", dnumber="10")),
    ]
    amounts = {"u1": "1", "u2": "0.5", "u3": "-2", "u4": "1", "u6": "0.000001"}
    for uid, s, d, kw in rows:
        cost = [{"customer": 10, "cost": amounts[uid]}] if uid in amounts else []
        kw.setdefault("ctype", uid[-1] if int(uid[-1]) % 2 else "")
        kw.setdefault("cnumber", str(10 - int(uid[-1])))
        make_leg(uid, s, d, costs=cost, **kw)


@pytest.mark.parametrize("descending", [0, 1])
@pytest.mark.parametrize("sort", SORT_FIELDS)
def test_sort_on_each_field_then_uniqueid(client, actors, sort, descending):
    _sort_dataset(actors)
    rows = h.assert_ok(ask(client, actors.reseller, recurse=1, sort=sort, descending=descending))
    assert len(rows) == 7
    key = "callername" if sort == "name" else sort
    expected = sorted(rows, key=lambda r: (r[key], r["uniqueid"]), reverse=bool(descending))
    assert [r["uniqueid"] for r in rows] == [r["uniqueid"] for r in expected]


def test_sort_on_dcustomer_and_peer_puts_none_as_zero(client, actors):
    _sort_dataset(actors)
    got = ids_of(client, actors.reseller, recurse=1, sort="dcustomer")
    assert got == ["u1", "u4", "u6", "U5", "u2", "u3", "u7"]
    got = ids_of(client, actors.reseller, recurse=1, sort="peer", descending=1)
    assert got == ["u4", "u1", "u7", "u6", "u3", "u2", "U5"]


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (None, None, "abcde"),
        (2, None, "ab"),
        (2, 1, "bc"),
        (0, 3, "de"),
        (None, 4, "e"),
        (10, 4, "e"),
        (1, 5, ""),
        (5, 0, "abcde"),
        (6000, 0, "abcde"),
        (6000, 2, "cde"),
    ],
)
def test_limit_and_offset(client, actors, limit, offset, expected):
    for i, uid in enumerate("abcde"):
        make_leg(uid, 11, start=100 + i)
    got = ids_of(client, actors.customer, limit=limit, offset=offset)
    assert got == list(expected)
    got = ids_of(client, actors.customer, limit=limit, offset=offset, descending=1)
    assert got == list(expected.translate(str.maketrans("abcde", "edcba")))


def test_limit_zero_streams_every_row(client, actors):
    n = 2500  # more than one chunk of the stream
    Leg.objects.bulk_create(
        Leg(
            uniqueid=f"{i:05d}",
            callid="c",
            start=1000 + i // 2,
            end=1000 + i // 2,
            direction="out",
            scustomer_id=11,
        )
        for i in range(n)
    )
    answer = ask(client, actors.customer, limit=0)
    assert answer.http.streaming
    assert answer.http["Content-Type"] == "application/json; charset=utf-8"
    rows = h.assert_ok(answer)
    assert [r["uniqueid"] for r in rows] == [f"{i:05d}" for i in range(n)]
    assert ids_of(client, actors.customer, limit=0, offset=n - 2) == [
        f"{n - 2:05d}",
        f"{n - 1:05d}",
    ]


def test_archive_includes_archived_legs_in_one_ordered_list(client, actors):
    make_leg("a", 11, start=10)
    make_leg("b", 11, start=20, archived=True)
    make_leg("c", 11, start=30)
    make_leg("d", 11, start=5, archived=True)
    make_leg("e", 11, start=20)
    who = actors.customer
    assert ids_of(client, who) == ["a", "e", "c"]
    assert ids_of(client, who, archive=0) == ["a", "e", "c"]
    rows = h.assert_ok(ask(client, who, archive=1))
    assert [(r["uniqueid"], r["archived"]) for r in rows] == [
        ("d", 1), ("a", 0), ("b", 1), ("e", 0), ("c", 0),
    ]  # fmt: skip
    assert ids_of(client, who, archive=1, descending=1) == ["c", "e", "b", "a", "d"]
    assert ids_of(client, who, archive=1, limit=2, offset=1) == ["a", "b"]
    assert ids_of(client, who, archive=1, sort="uniqueid", limit=0) == ["a", "b", "c", "d", "e"]


def test_archived_legs_keep_their_costs_and_filters(client, actors):
    make_leg("a", 11, start=10, archived=True, status="busy", costs=[{"customer": 11, "cost": 2}])
    make_leg("b", 11, start=20, archived=True, status="answer")
    rows = h.assert_ok(ask(client, actors.customer, archive=1, status="busy"))
    assert [(r["uniqueid"], h.money(r["cost"])) for r in rows] == [("a", 2)]
    assert ids_of(client, actors.customer, archive=1, sort="cost", descending=1) == ["a", "b"]
