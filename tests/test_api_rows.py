"""Section 5 of docs/api.md: a row, its keys, values and JSON types.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests import api_helpers as h
from tests.api_helpers import (
    ask,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 5: a row ----------------------------------------------------------------


def test_row_keys_values_and_types(client, actors):
    h.peer(7)
    h.invoice(8, actors.customer.customer)
    h.card(9, actors.customer.customer)
    make_leg(
        "1234567890.123456",
        11,
        21,
        callid="call-1",
        start=1234567890,
        end=1234567990,
        talktime=42,
        status="answer",
        direction="in",
        stype="phone",
        snumber="201",
        ctype="did",
        cnumber="+44 20 7946 0000",
        dtype="queue",
        dnumber="5",
        callername="\u00c9mile \U0001f600",
        peer_id=7,
        invoice_id=8,
        card_id=9,
        costs=[{"customer": 10, "cost": "2.2", "tax": "0.44"}],
    )
    make_leg("bare", 11, start=1234567891, end=1234567891, talktime=0)
    rows = h.assert_ok(ask(client, actors.reseller, recurse=1))
    for row in rows:
        h.assert_row_shape(row)
    full, bare = rows
    assert {k: v for k, v in full.items() if not k.startswith("cost")} == {
        "uniqueid": "1234567890.123456",
        "callid": "call-1",
        "start": 1234567890,
        "end": 1234567990,
        "talktime": 42,
        "totaltime": 100,
        "status": "answer",
        "direction": "in",
        "stype": "phone",
        "snumber": "201",
        "ctype": "did",
        "cnumber": "+44 20 7946 0000",
        "dtype": "queue",
        "dnumber": "5",
        "callername": "\u00c9mile \U0001f600",
        "scustomer": 11,
        "dcustomer": 21,
        "peer": 7,
        "invoice": 8,
        "card": 9,
        "archived": 0,
        "currency": "EUR",
    }
    assert h.money(full["cost"]) == 2
    assert h.money(full["cost_including_tax"]) == Decimal("2.4")
    assert bare["dcustomer"] == bare["peer"] == bare["invoice"] == bare["card"] == 0
    assert bare["totaltime"] == 0
    assert bare["cost"] == bare["cost_including_tax"] == 0
    assert bare["stype"] == bare["snumber"] == bare["callername"] == ""


def test_row_types_in_the_raw_json(client, actors):
    make_leg("a", 11, costs=[{"customer": 11, "cost": "1"}])
    answer = ask(client, actors.customer)
    assert b'"code":"200"' in answer.raw.replace(b" ", b"")
    (row,) = json.loads(answer.raw)["data"]
    for key in ["cost", "cost_excluding_tax", "cost_including_tax"]:
        assert type(row[key]) in (int, float), key
