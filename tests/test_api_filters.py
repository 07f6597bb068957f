"""Section 3 of docs/api.md: matching numbers and names (`phone`, `*match`), the exact
filters, talk time, invoice and peer.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import pytest

from tests import api_helpers as h
from tests.api_helpers import (
    ids_of,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 3: phone, matching, exact filters ---------------------------------------


def test_phone(client, actors):
    make_leg("a", 11, stype="phone", snumber="201")
    make_leg("b", 11, stype="sip", snumber="201")
    make_leg("c", 11, stype="phone", snumber="2010")
    make_leg("d", 11, stype="Phone", snumber="201")
    make_leg("e", 11, stype="", snumber="")
    who = actors.customer
    assert ids_of(client, who, phone="201") == ["a"]
    assert ids_of(client, who, phone="20") == []
    assert ids_of(client, who, phone="2010") == ["c"]
    assert ids_of(client, who, phone="") == ["a", "b", "c", "d", "e"]
    assert ids_of(client, who, phone="201", stype="sip") == []
    assert ids_of(client, who, phone="201", smatch="start", snumber="20") == ["a"]


NUMBERS = {
    "pct": "100%",
    "und": "10_0",
    "bsl": "a\\b",
    "plain": "1000",
    "upper": "X10",
    "lower": "x10",
    "both": "%_\\",
    "empty": "",
}


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("contains", "%", ["both", "pct"]),
        ("contains", "_", ["both", "und"]),
        ("contains", "\\", ["both", "bsl"]),
        ("contains", "0%", ["pct"]),
        ("contains", "%_", ["both"]),
        ("contains", "1_0", []),
        ("contains", "10", ["lower", "pct", "plain", "und", "upper"]),
        ("contains", "x", ["lower"]),
        ("contains", "X", ["upper"]),
        ("start", "10", ["pct", "plain", "und"]),
        ("start", "%", ["both"]),
        ("start", "x", ["lower"]),
        ("start", "_", []),
        ("end", "0", ["lower", "plain", "und", "upper"]),
        ("end", "%", ["pct"]),
        ("end", "\\", ["both"]),
        ("end", "10", ["lower", "upper"]),
        ("exact", "1000", ["plain"]),
        ("exact", "100", []),
        ("exact", "10_0", ["und"]),
        ("exact", "10%0", []),
        ("exact", "x10", ["lower"]),
        ("exact", "a\\b", ["bsl"]),
        ("exact", "a\\\\b", []),
    ],
)
@pytest.mark.parametrize("field", ["s", "c", "d"])
def test_number_matching(client, actors, field, mode, value, expected):
    for uid, number in NUMBERS.items():
        make_leg(uid, 11, **{f"{field}number": number})
    params = {f"{field}match": mode, f"{field}number": value, "sort": "uniqueid"}
    assert ids_of(client, actors.customer, **params) == expected


@pytest.mark.parametrize("field", ["s", "c", "d"])
def test_number_match_defaults_to_contains(client, actors, field):
    for uid, number in NUMBERS.items():
        make_leg(uid, 11, **{f"{field}number": number})
    got = ids_of(client, actors.customer, **{f"{field}number": "0%", "sort": "uniqueid"})
    assert got == ["pct"]
    got = ids_of(client, actors.customer, **{f"{field}number": "0", f"{field}match": ""})
    assert sorted(got) == ["lower", "pct", "plain", "und", "upper"]


NAMES = {
    "acute_up": "\u00c9mile",  # Émile
    "acute_low": "\u00e9mile",  # émile
    "plain": "Emile",
    "strasse": "STRASSE",
    "eszett": "stra\u00dfe",  # straße
    "pct": "50% _off_ \\o/",
    "greek": "\u039f\u0394\u039f\u03a3",  # ΟΔΟΣ
    "empty": "",
}


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("contains", "\u00e9", ["acute_low", "acute_up"]),
        ("contains", "\u00c9", ["acute_low", "acute_up"]),
        ("contains", "MILE", ["acute_low", "acute_up", "plain"]),
        ("contains", "e", ["acute_low", "acute_up", "eszett", "plain", "strasse"]),
        ("contains", "ss", ["strasse"]),
        ("contains", "SS", ["strasse"]),
        ("contains", "\u00df", ["eszett"]),
        ("contains", "\u1e9e", ["eszett"]),  # ẞ lower-cases to ß
        ("contains", "%", ["pct"]),
        ("contains", "_", ["pct"]),
        ("contains", "\\", ["pct"]),
        ("contains", "% _O", ["pct"]),
        ("contains", "\u03c3", ["greek"]),  # σ
        ("contains", "\u03c2", []),  # ς: no folding to σ
        ("start", "\u00c9M", ["acute_low", "acute_up"]),
        ("start", "e", ["plain"]),
        ("start", "50%", ["pct"]),
        ("start", "5_", []),
        ("end", "ILE", ["acute_low", "acute_up", "plain"]),
        ("end", "SSE", ["strasse"]),
        ("end", "\\O/", ["pct"]),
        ("exact", "\u00c9MILE", ["acute_low", "acute_up"]),
        ("exact", "emile", ["plain"]),
        ("exact", "strasse", ["strasse"]),
        ("exact", "STRA\u00dfE", ["eszett"]),
        ("exact", "\u03bf\u03b4\u03bf\u03c3", ["greek"]),
        ("exact", "\u03bf\u03b4\u03bf\u03c2", []),
        ("exact", "mile", []),
    ],
)
def test_caller_name_matching(client, actors, mode, value, expected):
    for uid, name in NAMES.items():
        make_leg(uid, 11, callername=name)
    params = {"callername_match": mode, "callername_number": value, "sort": "uniqueid"}
    assert ids_of(client, actors.customer, **params) == expected


@pytest.mark.parametrize(
    ("param", "field", "stored", "other_case"),
    [
        ("callid", "callid", "AbC-1", "abc-1"),
        ("status", "status", "answer", "ANSWER"),
        ("stype", "stype", "sip", "SIP"),
        ("ctype", "ctype", "Queue", "queue"),
        ("dtype", "dtype", "ext", "Ext"),
        ("phone", "snumber", "abc", "ABC"),
    ],
)
def test_exact_filters_are_case_sensitive_equality(
    client, actors, param, field, stored, other_case
):
    extra = {"stype": "phone"} if param == "phone" else {}
    make_leg("a", 11, **{field: stored}, **extra)
    make_leg("b", 11, **{field: stored + "x"}, **extra)
    make_leg("c", 11, **{field: other_case}, **extra)
    assert ids_of(client, actors.customer, **{param: stored}) == ["a"]
    assert ids_of(client, actors.customer, **{param: other_case}) == ["c"]
    assert ids_of(client, actors.customer, **{param: stored[:-1]}) == []


def test_direction(client, actors):
    for d in ["in", "out", "internal"]:
        make_leg(d, 11, direction=d)
    for d in ["in", "out", "internal"]:
        assert ids_of(client, actors.customer, direction=d) == [d]


def test_filters_combine_with_and(client, actors):
    make_leg("a", 11, status="answer", direction="in", snumber="123")
    make_leg("b", 11, status="answer", direction="out", snumber="123")
    make_leg("c", 11, status="busy", direction="in", snumber="123")
    make_leg("d", 11, status="answer", direction="in", snumber="999")
    got = ids_of(client, actors.customer, status="answer", direction="in", snumber="12")
    assert got == ["a"]


# --- section 3: talk time, invoice, peer ---------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["t0", "t10", "t20"]),
        ({"talktime_minimum": 10}, ["t10", "t20"]),
        ({"talktime_minimum": 11}, ["t20"]),
        ({"talktime_minimum": 0}, ["t0", "t10", "t20"]),
        ({"talktime_maximum": 10}, ["t0", "t10"]),
        ({"talktime_maximum": 0}, ["t0"]),
        ({"talktime_maximum": -1}, ["t0", "t10", "t20"]),
        ({"talktime_minimum": 10, "talktime_maximum": 10}, ["t10"]),
        ({"talktime_minimum": 11, "talktime_maximum": 10}, []),
    ],
)
def test_talktime_bounds(client, actors, params, expected):
    for t in (0, 10, 20):
        make_leg(f"t{t}", 11, talktime=t)
    assert ids_of(client, actors.customer, **params, sort="talktime") == expected


def test_invoice_and_peer(client, actors):
    h.invoice(500, actors.customer.customer)
    h.invoice(501, actors.customer.customer)
    h.peer(7)
    h.peer(8)
    make_leg("a", 11, invoice_id=500, peer_id=7)
    make_leg("b", 11, invoice_id=501, peer_id=7)
    make_leg("c", 11, peer_id=8)
    make_leg("d", 11)
    who = actors.customer
    assert ids_of(client, who, invoice=500) == ["a"]
    assert ids_of(client, who, invoice=501) == ["b"]
    assert ids_of(client, who, invoice=0) == ["a", "b", "c", "d"]
    assert ids_of(client, who, invoice=502) == []
    assert ids_of(client, who, peer=7) == ["a", "b"]
    assert ids_of(client, who, peer=8) == ["c"]
    assert ids_of(client, who, peer=0) == ["a", "b", "c", "d"]
    assert ids_of(client, who, peer=7, invoice=501) == ["b"]
