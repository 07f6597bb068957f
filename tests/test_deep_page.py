"""Pages found by their ids first (deep offsets, orders other than by start) take another
query path; it must answer exactly the same."""

from __future__ import annotations

import itertools

import pytest

from cdrs import filters
from enswitch.api.params import Params
from tests import api_helpers as h

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    actors = h.make_actors()
    customers = [actors.owner.id, actors.reseller.id, actors.customer.id, actors.charlie.id]
    for i in range(40):
        s, d = customers[i % 4], customers[(i * 7) % 4] if i % 3 else None
        h.make_leg(
            f"{i % 9}-{i:02d}",
            s,
            d,
            start=1_700_000_000 + (i % 6) * 10,
            callid=f"c{i % 5}",
            snumber=str(10 ** (i % 4)),
            archived=i % 10 == 0,
            costs=[{"customer": s, "cost": f"{i}.{i:02d}"}],
        )
    return actors


def answers(client, who, **params):
    return h.call(client, h.LIST, **who.creds, **params)


@pytest.mark.parametrize(
    ("sort", "descending", "offset", "limit", "extra"),
    [
        (sort, desc, off, lim, extra)
        for (sort, desc), (off, lim), extra in itertools.product(
            [
                ("start", 0),
                ("start", 1),
                ("callid", 0),
                ("snumber", 1),
                ("dcustomer", 0),
                ("cost", 1),
                ("cost", 0),
                ("totaltime", 1),
            ],
            [(1, 5), (3, 0), (30, 100), (39, 1), (200, 10), (0, 3)],
            [
                {},
                {"customer": "all", "recurse": 1},
                {"snumber": "10", "smatch": "start"},
                {"cost_customer": "scustomer"},
            ],
        )
    ],
)
def test_deep_pages_answer_like_shallow_ones(client, world, monkeypatch, sort, descending,
                                             offset, limit, extra):  # fmt: skip
    who = world.owner if "customer" in extra else world.reseller
    params = {"sort": sort, "descending": descending, "offset": offset, "limit": limit, **extra}
    if "customer" not in extra:
        params.update(customer="all", recurse=1)
    monkeypatch.setattr(filters.LegFilterSet, "page_first", lambda self, offset, limit: False)
    shallow = answers(client, who, **params)
    monkeypatch.setattr(filters.LegFilterSet, "page_first", lambda self, offset, limit: True)
    deep = answers(client, who, **params)
    assert shallow.code == "200"
    assert deep.data == shallow.data


@pytest.mark.parametrize(
    ("sort", "offset", "limit", "expected"),
    [
        ("start", 0, 100, False),
        ("start", 999, 100, False),
        ("start", 1000, 100, True),
        ("cost", 0, 100, True),
        ("name", 5, 1, True),
        ("start", 5000, 0, True),
        ("callid", 5000, 0, True),
        ("cost", 5000, 0, False),
        ("cost", 0, 0, False),
    ],
)
def test_which_pages_are_found_by_ids_first(world, sort, offset, limit, expected):
    fs = filters.LegFilterSet(Params(values={"sort": sort}), user=world.owner.user, now=0)
    fs.validate()
    assert fs.page_first(offset, limit) is expected
