"""`cmatch=contains` on PostgreSQL looks the digits up among the distinct called numbers
(`CalledNumber`), kept by a trigger. A number missing there is a leg the search never
returns: every way a live leg gets written must leave its number there. On a Citus
cluster the table is not kept (the search reads the legs' shards): the answers must be
the same."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from cdrs import archive
from cdrs.models import CalledNumber, Leg
from enswitch import citus
from tests import api_helpers as api
from tests.test_import import a_leg, example, load

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL only"),
]


def missing_numbers() -> set[str]:
    live = set(Leg.objects.values_list("cnumber", flat=True))
    return live - set(CalledNumber.objects.values_list("value", flat=True))


def assert_numbers_kept() -> None:
    if citus.is_distributed():
        assert not CalledNumber.objects.exists()  # not kept, so never read, on the cluster
    else:
        assert missing_numbers() == set()


def found(client, actors: api.Actors, digits: str, mode: str = "contains") -> list[str]:
    search = {"customer": "all", "recurse": 1, "start": 0, "end": 2_000_000_000}
    answer = api.call(client, **actors.owner.creds, **search, cmatch=mode, cnumber=digits)
    return [row["uniqueid"] for row in api.assert_ok(answer)]


@pytest.fixture
def actors() -> api.Actors:
    return api.make_actors()


def test_legs_created_one_by_one_and_in_bulk(client, actors):
    api.make_leg("one", actors.customer.id, cnumber="441234000001")
    Leg.objects.bulk_create(
        Leg(uniqueid=f"bulk{i}", callid="c", start=1_700_000_000, end=1_700_000_060,
            direction="out", scustomer_id=actors.customer.id, cnumber=f"3312340000{i}")
        for i in range(3)
    )  # fmt: skip
    assert_numbers_kept()
    assert sorted(found(client, actors, "1234")) == ["bulk0", "bulk1", "bulk2", "one"]


def test_a_number_changed_afterwards(client, actors):
    leg = api.make_leg("saved", actors.customer.id, cnumber="100")
    api.make_leg("updated", actors.customer.id, cnumber="200")
    leg.cnumber = "4477770001"
    leg.save()
    Leg.objects.filter(uniqueid="updated").update(cnumber="4477770002")
    assert_numbers_kept()
    assert sorted(found(client, actors, "7777")) == ["saved", "updated"]
    assert found(client, actors, "70002", mode="end") == ["updated"]


def test_replica_mode_does_not_skip_the_trigger(client, actors):
    # The importer and the archive skip ordinary triggers this way when they may.
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        api.make_leg("replica", actors.customer.id, cnumber="4455550000")
    assert_numbers_kept()
    assert found(client, actors, "5555") == ["replica"]


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "staged"])
def test_imported_legs(bulk):
    legs = [a_leg(f"imp{i}", cnumber=f"49301234{i:04d}") for i in range(5)]
    result = load(example(), legs, bulk=bulk)
    assert result.legs == 6, result
    assert_numbers_kept()
    if not citus.is_distributed():
        assert CalledNumber.objects.filter(value__contains="301234").count() == 5


def test_legs_restored_from_the_archive(client, actors):
    api.make_leg("old", actors.customer.id, archived=True, start=1_600_000_000,
                 cnumber="4488880000")  # fmt: skip
    assert not CalledNumber.objects.filter(value="4488880000").exists()
    archive.run(archive.restore_move(start=0, end=1_700_000_000), batch_size=10)
    assert Leg.objects.filter(uniqueid="old").exists()
    assert_numbers_kept()
    assert found(client, actors, "8888") == ["old"]


def test_special_characters_are_matched_literally(client, actors):
    for uid, number in (("pct", "12%34"), ("under", "12_34"), ("plain", "12x34")):
        api.make_leg(uid, actors.customer.id, cnumber=number)
    assert found(client, actors, "%3") == ["pct"]
    assert found(client, actors, "2_3") == ["under"]
    assert sorted(found(client, actors, "34", mode="end")) == ["pct", "plain", "under"]
