"""Pages found by their ids first (deep offsets, orders other than by start) take another
query path; it must answer exactly the same."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection

from cdrs import queries, views
from cdrs.parameters import parse_list
from cdrs.rows import COLUMNS
from enswitch import citus
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
    monkeypatch.setattr(queries, "finds_page_by_ids", lambda request: False)
    shallow = answers(client, who, **params)
    monkeypatch.setattr(queries, "finds_page_by_ids", lambda request: True)
    deep = answers(client, who, **params)
    assert shallow.code == "200"
    assert deep.data == shallow.data


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sort": "start", "limit": 100}, False),
        ({"sort": "start", "offset": 999, "limit": 100}, False),
        ({"sort": "start", "offset": 1000, "limit": 100}, True),
        ({"limit": 100}, False),
        ({"sort": "cost", "limit": 100}, True),
        ({"sort": "name", "offset": 5, "limit": 1}, True),
        ({"sort": "start", "offset": 5000, "limit": 0}, True),
        ({"sort": "callid", "offset": 5000}, True),
        ({"sort": "cost", "offset": 5000, "limit": 0}, False),
        ({"sort": "cost"}, False),
        ({"sort": "cost", "limit": 100, "archive": 1}, False),
        ({"offset": 5000, "limit": 100, "archive": 1}, False),
    ],
)
def test_which_pages_are_found_by_ids(world, params, expected):
    values = {k: str(v) for k, v in params.items()}
    request = parse_list(Params(values=values), user=world.owner.user, now=0)
    assert queries.finds_page_by_ids(request) is expected


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's plan cache")
def test_pages_found_by_ids_are_planned_with_their_values(client, world, monkeypatch):
    seen = []

    def run_select(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SHOW plan_cache_mode")
            seen.append(cursor.fetchone()[0])
        return real(*args, **kwargs)

    real = views.row_to_dict
    monkeypatch.setattr(views, "row_to_dict", run_select)
    assert answers(client, world.owner, sort="cost", limit=5).code == "200"
    assert set(seen) == {"force_custom_plan"}
    seen.clear()
    assert answers(client, world.owner, limit=5).code == "200"
    assert set(seen) == {"auto"}
    with connection.cursor() as cursor:  # and nothing outlives the request
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "auto"


def rows_plan(world, **params) -> str:
    values = {"customer": "all", "recurse": "1", "start": "1699999999", "end": "1700000100"}
    values.update({k: str(v) for k, v in params.items()})
    request = parse_list(Params(values=values), user=world.owner.user, now=0)
    assert queries.finds_page_by_ids(request)
    sql, sql_params = queries.list_page(request, COLUMNS).rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (COSTS OFF) {sql}", sql_params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_pages_found_by_ids_on_the_cluster_send_the_ids_to_their_shards(world):
    """On Citus, a page with a limit gets its ids first: the rows' query carries them, so
    no step of its own runs first and sends them to every shard. Without a limit the ids
    may be millions: the rows are read as one statement, which streams."""
    if not citus.is_distributed():
        pytest.skip("a Citus cluster's plan")
    assert "Distributed Subplan" not in rows_plan(world, sort="name", offset=3, limit=5)
    assert "Distributed Subplan" in rows_plan(world, sort="name", offset=3000, limit=0)
