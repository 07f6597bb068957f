"""Section 3 of docs/api.md, the parameter table: what an absent or empty parameter means.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import time

import pytest

from tests.api_helpers import (
    TABLE_ORDER,
    ids_of,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 3: defaults -------------------------------------------------------------


def test_end_defaults_to_now(client, actors):
    now = int(time.time())
    make_leg("past", 11, start=now - 100)
    make_leg("future", 11, start=now + 3600)
    assert ids_of(client, actors.customer) == ["past"]
    assert ids_of(client, actors.customer, end="") == ["past"]
    assert ids_of(client, actors.customer, end=now + 7200) == ["past", "future"]


def _defaults_dataset():
    make_leg("b", 11, start=20, talktime=0, status="busy", direction="in")
    make_leg("a", 11, start=20, talktime=10, stype="phone", snumber="201")
    make_leg("c", 11, start=10, archived=True)
    make_leg("d", 10, start=30)


def test_empty_value_means_the_default_for_every_parameter(client, actors):
    _defaults_dataset()
    who = actors.customer
    expected = ids_of(client, who)
    assert expected == ["a", "b"]
    everything_empty = dict.fromkeys(TABLE_ORDER, "")
    assert ids_of(client, who, **everything_empty) == expected
    for param in TABLE_ORDER:
        assert ids_of(client, who, **{param: ""}) == expected, param


def test_empty_sort_is_start_and_empty_customer_is_the_users_own(client, actors):
    _defaults_dataset()
    assert ids_of(client, actors.reseller, sort="", customer="") == ["d"]
    assert ids_of(client, actors.reseller, customer="", recurse=1, sort="") == ["a", "b", "d"]
