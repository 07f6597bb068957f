"""The rules the database itself holds, whoever writes; and the customer tree."""

from __future__ import annotations

import io
from decimal import Decimal

import orjson
import pytest
from django.db import IntegrityError, transaction

from cdrs.dataset.generator import generate
from cdrs.dataset.importer import import_dataset
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Card, Customer
from tests import factories as f

pytestmark = pytest.mark.django_db


def refused(write) -> None:
    """The write fails with IntegrityError, and the transaction goes on afterwards."""
    with pytest.raises(IntegrityError), transaction.atomic():
        write()


@pytest.fixture
def owner() -> Customer:
    return f.customer(name="Owner")


@pytest.mark.parametrize("model", [Leg, ArchivedLeg])
def test_a_leg_cannot_end_before_it_starts(owner, model):
    refused(lambda: f.leg(owner, archived=model is ArchivedLeg, start=100, end=99, talktime=0))


@pytest.mark.parametrize("talktime", [-1, 61])
def test_talk_time_stays_within_the_leg(owner, talktime):
    refused(lambda: f.leg(owner, start=100, end=160, talktime=talktime))
    f.leg(owner, start=100, end=160, talktime=60)  # the edge itself is fine


def test_a_leg_has_a_known_direction(owner):
    refused(lambda: f.leg(owner, direction="sideways"))


# One server: a database constraint. On a Citus cluster the writers keep the rule
# (docs/scaling.md; tests/test_citus_layout.py).
@pytest.mark.usefixtures("single_node")
def test_a_uniqueid_names_one_leg_per_table(owner):
    f.leg(owner, uniqueid="u.1")
    refused(lambda: f.leg(owner, uniqueid="u.1"))


@pytest.mark.parametrize(("cost_model", "archived"), [(LegCost, False), (ArchivedLegCost, True)])
def test_a_cost_record_is_for_exactly_one_of_a_customer_and_a_card(owner, cost_model, archived):
    card = Card.objects.create(id=7, customer=owner)
    leg = f.leg(owner, archived=archived)
    usd = f.currency()

    refused(
        lambda: cost_model.objects.create(leg=leg, customer=owner, card=card, cost=1, currency=usd)
    )
    refused(lambda: cost_model.objects.create(leg=leg, cost=1, currency=usd))
    cost_model.objects.create(leg=leg, customer=owner, cost=1, currency=usd)
    cost_model.objects.create(leg=leg, card=card, cost=1, currency=usd)


@pytest.mark.parametrize(("cost_model", "archived"), [(LegCost, False), (ArchivedLegCost, True)])
def test_one_cost_record_per_customer_and_per_card_on_a_leg(owner, cost_model, archived):
    card = Card.objects.create(id=8, customer=owner)
    leg = f.leg(owner, archived=archived)
    other = f.leg(owner, archived=archived)
    usd = f.currency()
    cost_model.objects.create(leg=leg, customer=owner, cost=1, currency=usd)
    cost_model.objects.create(leg=leg, card=card, cost=1, currency=usd)

    refused(lambda: cost_model.objects.create(leg=leg, customer=owner, cost=2, currency=usd))
    refused(lambda: cost_model.objects.create(leg=leg, card=card, cost=2, currency=usd))
    # The same customer and card on another leg are fine.
    cost_model.objects.create(leg=other, customer=owner, cost=Decimal("-1.5"), currency=usd)
    cost_model.objects.create(leg=other, card=card, cost=2, currency=usd)


def test_a_customer_has_a_known_billing_type(owner):
    refused(lambda: Customer.objects.filter(pk=owner.pk).update(bill_type="gold"))
    refused(lambda: f.customer(owner, bill_type="gold"))


def test_there_is_only_one_system_owner(owner):
    # Customer.save() keeps depth 0 for the customer without a parent; a second one
    # written behind its back still meets the database's unique index.
    refused(lambda: f.customer(name="Second owner"))
    refused(
        lambda: Customer.objects.bulk_create(
            [Customer(id=99, name="X", bill_type="none", currency=f.currency(), path="/99/")]
        )
    )


def test_a_customer_depth_matches_having_a_parent(owner):
    child = f.customer(owner)
    refused(lambda: Customer.objects.filter(pk=child.pk).update(depth=0))
    refused(lambda: Customer.objects.filter(pk=owner.pk).update(depth=3))


def test_a_customer_cannot_be_its_own_parent(owner):
    child = f.customer(owner)
    refused(lambda: Customer.objects.filter(pk=child.pk).update(parent_id=child.pk))


# --- the tree ---------------------------------------------------------------------------


@pytest.fixture
def big_tree() -> dict[int, int | None]:
    """10,000 customers, 8 levels below the owner; loaded through the importer."""
    data = generate(customers=10_000, depth=8, reseller_size=2_000, legs=0, users=1, seed=4)
    import_dataset(io.BytesIO(orjson.dumps(data)))
    return {c["id"]: c["parent"] for c in data["customers"]}


def _under(tree: dict[int, int | None], top: int) -> set[int]:
    """Expected subtree, walking parent links: the slow, obviously right way."""
    found = set()
    for cid in tree:
        node: int | None = cid
        while node is not None:
            if node == top:
                found.add(cid)
                break
            node = tree[node]
    return found


def test_subtree_is_one_query_whatever_the_depth(big_tree, django_assert_num_queries):
    depth = dict(Customer.objects.values_list("id", "depth"))
    assert max(depth.values()) == 8
    deepest = max(depth, key=lambda cid: (depth[cid], -cid))
    chosen = [
        1,
        next(c for c in big_tree if depth[c] == 1),
        next(c for c in big_tree if depth[c] == 4),
    ]
    chosen.append(big_tree[deepest])  # a customer at depth 7 with one below it
    chosen.append(deepest)

    for cid in chosen:
        customer = Customer.objects.get(pk=cid)
        with django_assert_num_queries(1):
            got = set(Customer.objects.subtree(customer).values_list("id", flat=True))
        assert got == _under(big_tree, cid)
        with django_assert_num_queries(1):
            below = set(
                Customer.objects.subtree(customer, include_self=False).values_list("id", flat=True)
            )
        assert below == got - {cid}
    assert len(_under(big_tree, 1)) == 10_000


def test_moving_a_customer_moves_everything_under_it(owner):
    a = f.customer(owner, name="A")
    b = f.customer(owner, name="B")
    a1 = f.customer(a, name="A1")
    a11 = f.customer(a1, name="A11")

    a.parent = b
    a.save()

    for c in (a, a1, a11):
        c.refresh_from_db()
    assert (a.path, a.depth) == (f"/{owner.id}/{b.id}/{a.id}/", 2)
    assert (a1.path, a1.depth) == (f"{a.path}{a1.id}/", 3)
    assert (a11.path, a11.depth) == (f"{a1.path}{a11.id}/", 4)
    assert set(Customer.objects.subtree(b).values_list("id", flat=True)) == {
        b.id,
        a.id,
        a1.id,
        a11.id,
    }
    assert set(Customer.objects.subtree(a).values_list("id", flat=True)) == {a.id, a1.id, a11.id}


def test_a_selection_never_widens_what_a_user_sees(owner):
    # The API only ever asks for customers inside the scope; the rule must hold even if
    # a selection reached outside it (a bug elsewhere must not become a leak).
    reseller = f.customer(owner, name="Reseller")
    mine = f.customer(reseller, name="Mine")
    other = f.customer(owner, name="Other")
    legs = {
        "mine": f.leg(mine),
        "reseller's": f.leg(reseller),
        "other's": f.leg(other),
        "other to mine": f.leg(other, dcustomer=mine),
        "owner's": f.leg(owner),
    }
    viewer = f.user(reseller)

    def seen(within) -> set[str]:
        shown = set(Leg.objects.visible_to(viewer, within=within).values_list("pk", flat=True))
        return {name for name, leg in legs.items() if leg.pk in shown}

    visible = {"mine", "reseller's", "other to mine"}
    assert seen(None) == visible
    everyone = Customer.objects.all()
    for within in (everyone, everyone.filter(pk=other.pk), [other.pk], [owner.pk, mine.pk]):
        assert seen(within) <= visible, within
    assert seen(everyone) == visible
    assert seen([mine.pk]) == {"mine", "other to mine"}
    below = Customer.objects.subtree(reseller, include_self=False)
    assert seen(below) == {"mine", "other to mine"}
    owner_user = f.user(owner)
    assert set(Leg.objects.visible_to(owner_user, within=[other.pk])) == {
        legs["other's"],
        legs["other to mine"],
    }
