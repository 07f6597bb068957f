"""Deep pages (large offsets) take another query path; it must answer exactly the same."""

from __future__ import annotations

import itertools

import pytest

from cdrs import filters
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
            [("start", 0), ("start", 1), ("callid", 0), ("snumber", 1), ("dcustomer", 0)],
            [(1, 5), (3, 0), (30, 100), (39, 1), (200, 10)],
            [{}, {"customer": "all", "recurse": 1}, {"snumber": "10", "smatch": "start"}],
        )
    ],
)
def test_deep_pages_answer_like_shallow_ones(client, world, monkeypatch, sort, descending,
                                             offset, limit, extra):  # fmt: skip
    who = world.owner if "customer" in extra else world.reseller
    params = {"sort": sort, "descending": descending, "offset": offset, "limit": limit, **extra}
    if "customer" not in extra:
        params.update(customer="all", recurse=1)
    monkeypatch.setattr(filters, "DEEP_OFFSET", 10**9)
    shallow = answers(client, who, **params)
    monkeypatch.setattr(filters, "DEEP_OFFSET", 1)
    deep = answers(client, who, **params)
    assert shallow.code == "200"
    assert deep.data == shallow.data
