"""Section 3 of docs/api.md: which customers (`customer` and `recurse`), and nothing
outside the user's scope.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import pytest

from customers.models import Customer
from tests import api_helpers as h
from tests import factories as f
from tests.api_helpers import (
    INT64_MAX,
    ask,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 3: customer and recurse -------------------------------------------------

# Under the reseller (10):
#   11 prepaid ─ 111 postpaid ─ 1111 external
#   12 postpaid ─ 121 prepaid_invoices
#   13 external ─ 131 external
#   14 prepaid_calls ─ 141 prepaid
#   15 prepaid_invoices
#   16 callshop
TREE = {
    111: (11, "postpaid"),
    1111: (111, "external"),
    12: (10, "postpaid"),
    121: (12, "prepaid_invoices"),
    13: (10, "external"),
    131: (13, "external"),
    14: (10, "prepaid_calls"),
    141: (14, "prepaid"),
    15: (10, "prepaid_invoices"),
    16: (10, "callshop"),
}
ALL_UNDER_R = ["L11", "L111", "L1111", "L12", "L121", "L13", "L131", "L14", "L141", "L15", "L16"]


@pytest.fixture
def tree(actors):
    for cid, (parent, bill_type) in TREE.items():
        f.customer(Customer.objects.get(pk=parent), id=cid, bill_type=bill_type)
    for cid in [1, 10, 11, 20, 21, *TREE]:
        make_leg(f"L{cid}", cid)
    make_leg("Xin", 21, 121)  # Charlie calls 121: it belongs to both sides
    make_leg("Oin", 1, 10)  # the owner calls the reseller
    return actors


@pytest.mark.parametrize(
    ("customer", "recurse", "expected"),
    [
        (None, 0, ["L10", "Oin"]),
        (None, 1, ["L10", *ALL_UNDER_R, "Oin", "Xin"]),
        ("10", 0, ["L10", "Oin"]),
        ("10", 1, ["L10", *ALL_UNDER_R, "Oin", "Xin"]),
        ("11", 0, ["L11"]),
        ("11", 1, ["L11", "L111", "L1111"]),
        ("12", 1, ["L12", "L121", "Xin"]),
        ("121", 0, ["L121", "Xin"]),
        ("all", 0, ["L11", "L12", "L13", "L14", "L15", "L16"]),
        ("all", 1, [*ALL_UNDER_R, "Xin"]),
        ("prepaid", 0, ["L11", "L14", "L15"]),
        ("prepaid", 1, ["L11", "L121", "L14", "L141", "L15", "Xin"]),
        ("postpaid", 0, ["L12"]),
        ("postpaid", 1, ["L111", "L12"]),
        ("external", 0, ["L13"]),
        ("external", 1, ["L1111", "L13", "L131"]),
    ],
)
def test_customer_and_recurse_table(client, tree, customer, recurse, expected):
    answer = ask(client, tree.reseller, customer=customer, recurse=recurse, sort="uniqueid")
    h.assert_ok(answer)
    assert answer.ids == sorted(expected)


@pytest.mark.parametrize(
    ("customer", "recurse", "expected"),
    [
        (None, 0, ["L1", "Oin"]),
        ("all", 0, ["L10", "L20", "Oin"]),
        ("1", 0, ["L1", "Oin"]),
        ("20", 1, ["L20", "L21", "Xin"]),
        ("system", 0, "everything"),
        ("system", 1, "everything"),
        ("1", 1, "everything"),
        (None, 1, "everything"),
        ("all", 1, "everything but L1"),
    ],
)
def test_customer_and_recurse_for_the_owner(client, tree, customer, recurse, expected):
    everything = sorted(["L1", "L10", "L20", "L21", *ALL_UNDER_R, "Oin", "Xin"])
    if expected == "everything":
        expected = everything
    elif expected == "everything but L1":
        expected = [i for i in everything if i != "L1"]
    answer = ask(client, tree.owner, customer=customer, recurse=recurse, sort="uniqueid")
    h.assert_ok(answer)
    assert answer.ids == sorted(expected)


@pytest.mark.parametrize(
    ("customer", "recurse", "expected"),
    [
        (None, 0, ["L21", "Xin"]),
        (None, 1, ["L21", "Xin"]),
        ("21", 1, ["L21", "Xin"]),
        ("all", 0, []),
        ("all", 1, []),
        ("prepaid", 1, []),
        ("postpaid", 1, []),
        ("external", 1, []),
    ],
)
def test_charlie_sees_nothing_of_the_other_branch(client, tree, customer, recurse, expected):
    answer = ask(client, tree.charlie, customer=customer, recurse=recurse, sort="uniqueid")
    h.assert_ok(answer)
    assert answer.ids == expected


OUTSIDE = {
    "reseller": ["1", "20", "21", "0", "-0", "999999", "-11", str(INT64_MAX)],
    "customer": ["1", "10", "12", "121", "21", "999999"],
    "charlie": ["1", "10", "11", "20", "121", "999999"],
}


@pytest.mark.parametrize("param", ["customer", "cost_customer"])
@pytest.mark.parametrize("who", list(OUTSIDE))
def test_ids_outside_the_scope_and_nonexistent_ids_share_one_400(client, tree, who, param):
    actor = getattr(tree, who)
    answers = [ask(client, actor, **{param: value}) for value in OUTSIDE[who]]
    for answer in answers:
        h.assert_invalid(answer, param)
    assert len({a.raw for a in answers}) == 1, [a.raw for a in answers]
    for recurse in (0, 1):
        again = ask(client, actor, **{param: OUTSIDE[who][0]}, recurse=recurse)
        assert again.raw == answers[0].raw


def test_an_id_of_the_users_own_customer_or_below_is_accepted(client, tree):
    for cid in ["11", "111", "1111"]:
        h.assert_ok(ask(client, tree.customer, customer=cid))
        h.assert_ok(ask(client, tree.customer, cost_customer=cid))
