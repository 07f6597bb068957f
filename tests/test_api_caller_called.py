"""`caller_number` and `called_number` in `cdrs/list` (docs/api.md, section 3): a number
inside `snumber` / `cnumber`, as clients of deployed Enswitch systems send them."""

from __future__ import annotations

import pytest

from tests import api_helpers as h
from tests.api_helpers import ids_of, make_leg

pytestmark = pytest.mark.django_db


@pytest.fixture
def numbers(actors):
    make_leg("a", 11, snumber="02079460001", cnumber="0161496000")
    make_leg("b", 11, snumber="2079460001", cnumber="441614960001")
    make_leg("c", 11, snumber="99%_\\1", cnumber="ABC123")
    make_leg("d", 11, snumber="", cnumber="")
    make_leg("e", 21, snumber="2079460001", cnumber="1614960")  # charlie's: never seen
    return actors


def test_caller_number_matches_inside_the_source_number(client, numbers):
    who = numbers.customer
    assert ids_of(client, who, caller_number="2079460001") == ["a", "b"]
    assert ids_of(client, who, caller_number="0207") == ["a"]
    assert ids_of(client, who, caller_number="0001") == ["a", "b"]
    assert ids_of(client, who, caller_number="%_\\") == ["c"]
    assert ids_of(client, who, caller_number="%") == ["c"]
    assert ids_of(client, who, caller_number="5") == []
    assert ids_of(client, who, caller_number="") == ["a", "b", "c", "d"]


def test_called_number_matches_inside_the_called_number(client, numbers):
    who = numbers.customer
    assert ids_of(client, who, called_number="161496") == ["a", "b"]
    assert ids_of(client, who, called_number="0001") == ["b"]
    assert ids_of(client, who, called_number="abc") == []  # case-sensitive
    assert ids_of(client, who, called_number="C1") == ["c"]
    assert ids_of(client, who, called_number="_") == []
    # A page (limit, another order) is found the way a cnumber search's is.
    assert ids_of(client, who, called_number="161496", limit=1, sort="cnumber") == ["a"]
    assert ids_of(client, who, called_number="161496", limit=1, descending=1) == ["b"]


def test_they_combine_with_every_filter_by_and(client, numbers):
    who = numbers.customer
    assert ids_of(client, who, caller_number="207", called_number="0001") == ["b"]
    assert ids_of(client, who, caller_number="207", snumber="0", smatch="start") == ["a"]
    assert ids_of(client, who, caller_number="207", snumber="02079460001", smatch="exact") == ["a"]
    assert ids_of(client, who, called_number="1614", cnumber="44", cmatch="start") == ["b"]
    assert ids_of(client, who, called_number="1614", cnumber="0", cmatch="contains") == ["a", "b"]
    # The owner sees charlie's leg too: the scope still applies.
    assert ids_of(client, numbers.owner, customer="system", caller_number="2079") == ["a", "b", "e"]


def test_their_400s_come_right_after_cnumber(client, numbers):
    answer = h.call(
        client,
        **numbers.owner.creds,
        cnumber="x" * 256,
        called_number="\x00",
        caller_number="y" * 256,
        dtype="\x00",
        ctype="\x00",
    )
    h.assert_invalid(answer, "ctype", "cnumber", "caller_number", "called_number", "dtype")
    messages = [e["message"] for e in answer.responses]
    assert messages[2:4] == [
        "Must be at most 255 characters long.",
        "Must not contain a NUL character.",
    ]


@pytest.mark.parametrize("limit", ["0", "100"])
def test_they_run_the_same_sql_as_the_contains_searches_they_equal(actors, limit):
    """So they are as fast: `called_number` goes through the called numbers' index
    (PostgreSQL) exactly as `cnumber` with `cmatch=contains` does."""
    import time

    from cdrs import queries
    from cdrs.parameters import parse_list
    from cdrs.rows import COLUMNS
    from enswitch.api.params import Params

    def sql(**params: str) -> str:
        request = parse_list(
            Params(values={**params, "limit": limit, "end": "2000000000"}),
            user=actors.reseller.user,
            now=int(time.time()),
        )
        return str(queries.list_page(request, COLUMNS).rows.query)

    # A leg found: on Citus the rows' query of a page found by ids carries the ids.
    h.make_leg("found", actors.reseller.id, cnumber="142070", snumber="142070", start=10**9)
    assert sql(called_number="4207") == sql(cnumber="4207", cmatch="contains")
    assert sql(caller_number="4207") == sql(snumber="4207", smatch="contains")
