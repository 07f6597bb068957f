"""The admin pages for data maintenance, with a superuser logged in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Card, Currency, Customer, Invoice, Peer, RatePlan, Role, User
from enswitch.admin_tools.large_tables import LargeTablePaginator
from enswitch.admin_tools.unix_times import parse_unix_time
from tests import factories as f

pytestmark = pytest.mark.django_db

ALL_MODELS = [
    Currency,
    RatePlan,
    Role,
    Customer,
    User,
    Peer,
    Card,
    Invoice,
    Leg,
    LegCost,
    ArchivedLeg,
    ArchivedLegCost,
]
LARGE_TABLES = [Leg, ArchivedLeg, LegCost, ArchivedLegCost]
STRONG_PASSWORD = "Kettle-Orbit-7731"


@dataclass
class World:
    usd: Currency
    eur: Currency
    plan: RatePlan
    role: Role
    owner: Customer
    reseller: Customer
    shop: Customer
    peer: Peer
    card: Card
    invoice: Invoice
    api_user: User
    leg: Leg
    leg_cost: LegCost
    archived: ArchivedLeg
    archived_cost: ArchivedLegCost

    def object_of(self, model: type) -> object:
        return {
            Currency: self.usd,
            RatePlan: self.plan,
            Role: self.role,
            Customer: self.shop,
            User: self.api_user,
            Peer: self.peer,
            Card: self.card,
            Invoice: self.invoice,
            Leg: self.leg,
            LegCost: self.leg_cost,
            ArchivedLeg: self.archived,
            ArchivedLegCost: self.archived_cost,
        }[model]


def build_world() -> World:
    """One of everything; factories.py has no peer, card, invoice or cost builders."""
    usd = f.currency("USD")
    eur = f.currency("EUR", "1.08")
    plan = f.rate_plan(["cdrs"])
    role = f.role(["cdrs", "archive"], name="Reseller role")
    owner = f.customer(name="Owner", rate_plan=plan)
    reseller = f.customer(owner, name="Reseller", bill_type="prepaid")
    shop = f.customer(reseller, name="Corner shop", bill_type="callshop", cur=eur)
    peer = Peer.objects.create(id=71, name="Carrier A")
    card = Card.objects.create(id=72, customer=shop, name="Phone card")
    invoice = Invoice.objects.create(id=73, customer=shop)
    api_user = f.user(shop, username="shopuser", password="pw", role=role)
    leg = f.leg(
        shop,
        start=1_700_000_000,
        dcustomer=reseller,
        peer=peer,
        invoice=invoice,
        card=card,
        snumber="1001",
        cnumber="442079460000",
        dnumber="442079460001",
        callername="Reception",
        costs=[
            {"customer": shop, "cost": Decimal("0.012"), "tax": Decimal("0.002"), "currency": usd},
            {"card": card, "cost": Decimal("0.03"), "currency": eur},
        ],
    )
    archived = f.leg(
        reseller,
        archived=True,
        start=1_600_000_000,
        status="busy",
        direction="in",
        snumber="2002",
        costs=[{"customer": reseller, "cost": Decimal("0.5"), "currency": usd}],
    )
    return World(
        usd=usd,
        eur=eur,
        plan=plan,
        role=role,
        owner=owner,
        reseller=reseller,
        shop=shop,
        peer=peer,
        card=card,
        invoice=invoice,
        api_user=api_user,
        leg=leg,
        leg_cost=LegCost.objects.get(leg=leg, customer=shop),
        archived=archived,
        archived_cost=ArchivedLegCost.objects.get(leg=archived),
    )


@pytest.fixture
def world() -> World:
    return build_world()


def url(model: type, view: str, *args: object) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def change_url(obj: object) -> str:
    return url(type(obj), "change", obj.pk)


# --- Every page answers ----------------------------------------------------------------


def test_index_lists_every_model(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    for model in ALL_MODELS:
        assert url(model, "changelist") in response.content.decode()


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_changelist_add_and_change_pages(admin_client, world, model):
    obj = world.object_of(model)
    listing = admin_client.get(url(model, "changelist"))
    assert listing.status_code == 200
    assert change_url(obj) in listing.content.decode()
    assert admin_client.get(url(model, "add")).status_code == 200
    assert admin_client.get(change_url(obj)).status_code == 200


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_delete_and_history_pages(admin_client, world, model):
    obj = world.object_of(model)
    assert admin_client.get(url(model, "delete", obj.pk)).status_code == 200
    assert admin_client.get(url(model, "history", obj.pk)).status_code == 200


# Per model: (query string, the object expected in the list or None for "not listed",
# which object). Query strings may name objects of the world: {shop}, {role}...
FILTER_CASES = [
    (Currency, "q=US", "usd", True),
    (Currency, "q=EU", "usd", False),
    (RatePlan, "feature=cdrs", "plan", True),
    (RatePlan, "q=Plan", "plan", True),
    (RatePlan, "q={plan}", "plan", True),
    (Role, "privilege=archive", "role", True),
    (Role, "privilege=callshop", "role", False),
    (Role, "q=Reseller", "role", True),
    (Customer, "bill_type__exact=callshop", "shop", True),
    (Customer, "bill_type__exact=postpaid", "shop", False),
    (Customer, "enabled__exact=1", "shop", True),
    (Customer, "enabled__exact=0", "shop", False),
    (Customer, "ancestor={reseller}", "shop", True),
    (Customer, "ancestor={owner}", "shop", True),
    (Customer, "ancestor={owner}&children=1", "shop", False),
    (Customer, "ancestor={shop}", "shop", False),
    (Customer, "q=corner", "shop", True),
    (Customer, "q={shop}", "shop", True),
    (Customer, "q={owner}", "shop", False),
    (User, "role__id__exact={role}", "api_user", True),
    (User, "enabled__exact=1", "api_user", True),
    (User, "enabled__exact=0", "api_user", False),
    (User, "q=shopu", "api_user", True),
    (User, "q={shop}", "api_user", True),
    (Peer, "q=carrier", "peer", True),
    (Peer, "q={peer}", "peer", True),
    (Card, "q=phone", "card", True),
    (Card, "q={shop}", "card", True),
    (Invoice, "q={invoice}", "invoice", True),
    (Invoice, "q=abc", "invoice", False),
    (Leg, "direction__exact=out", "leg", True),
    (Leg, "direction__exact=in", "leg", False),
    (Leg, "status=answer", "leg", True),
    (Leg, "status=busy", "leg", False),
    (Leg, "status=some-rare-status", "leg", False),
    (Leg, "start_range=1d", "leg", True),
    (Leg, "start_range=30d", "leg", True),
    (Leg, "start__gte=2023-11-14&start__to=2023-11-14", "leg", True),
    (Leg, "start__to=2023-11-13", "leg", False),
    (Leg, "start__gte=2023-11-14&start__lt=2023-11-15", "leg", True),
    (Leg, "start__gte=2023-11-15", "leg", False),
    (Leg, "start__gte=1700000000&start__lt=1700000001", "leg", True),
    (Leg, "start__lt=2023-11-14T22:13:20Z", "leg", False),
    (Leg, "scustomer={shop}", "leg", True),
    (Leg, "dcustomer={shop}", "leg", False),
    (Leg, "q=1700000000.{legn}", "leg", True),
    (Leg, "q=call{legn}", "leg", True),
    (Leg, "q=100", "leg", True),
    (Leg, "q=4420794", "leg", True),
    (Leg, "q=001", "leg", False),
    (ArchivedLeg, "direction__exact=in", "archived", True),
    (ArchivedLeg, "status=busy", "archived", True),
    (ArchivedLeg, "start_range=30d", "archived", True),
    (ArchivedLeg, "start__gte=2020-09-13&start__lt=2020-09-14", "archived", True),
    (ArchivedLeg, "q=200", "archived", True),
    (LegCost, "charged_to=customer", "leg_cost", True),
    (LegCost, "charged_to=card", "leg_cost", False),
    (LegCost, "currency__code__exact=USD", "leg_cost", True),
    (LegCost, "currency__code__exact=EUR", "leg_cost", False),
    (LegCost, "q=1700000000.{legn}", "leg_cost", True),
    (LegCost, "q={shop}", "leg_cost", True),
    (LegCost, "q={reseller}", "leg_cost", False),
    (ArchivedLegCost, "charged_to=customer", "archived_cost", True),
    (ArchivedLegCost, "q={reseller}", "archived_cost", True),
]


@pytest.mark.parametrize(
    ("model", "query", "attr", "listed"),
    FILTER_CASES,
    ids=[f"{m.__name__}-{q}" for m, q, _, _ in FILTER_CASES],
)
def test_changelist_filters_and_search(admin_client, world, model, query, attr, listed):
    names = {
        name: getattr(world, name).pk
        for name in ("owner", "reseller", "shop", "role", "plan", "peer", "invoice")
    }
    names["legn"] = world.leg.uniqueid.split(".")[1]
    response = admin_client.get(url(model, "changelist") + "?" + query.format(**names))
    assert response.status_code == 200, response.get("Location")
    assert (change_url(getattr(world, attr)) in response.content.decode()) is listed


def test_filters_are_offered(admin_client, world):
    body = admin_client.get(url(Leg, "changelist")).content.decode()
    for text in ("?direction__exact=in", "?status=answer", "?start_range=7d"):
        assert text in body
    for text in ('name="customer"', 'name="subtree"', 'name="start__gte"', 'name="start__to"'):
        assert text in body
    body = admin_client.get(url(Customer, "changelist")).content.decode()
    # Any ancestor is picked with autocomplete, not from a list of links.
    assert 'name="ancestor"' in body
    assert "admin-autocomplete" in body


@pytest.mark.parametrize("query", ["start__gte=yesterday", "start_range=forever", "ancestor=abc"])
def test_invalid_filter_values_are_refused(admin_client, world, query):
    model = Customer if query.startswith("ancestor") else Leg
    response = admin_client.get(url(model, "changelist") + "?" + query)
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_custom_start_range_is_shown(admin_client, world):
    body = admin_client.get(url(Leg, "changelist") + "?start__gte=2023-11-14").content.decode()
    assert 'name="start__gte" value="2023-11-14"' in body


def test_leg_list_shows_utc_times(admin_client, world):
    body = admin_client.get(url(Leg, "changelist")).content.decode()
    assert "Start (UTC)" in body
    assert "Tue 14 Nov 2023 22:13" in body  # 1_700_000_000


def test_archived_pages_are_marked(admin_client, world):
    for page in (url(ArchivedLeg, "changelist"), change_url(world.archived)):
        body = admin_client.get(page).content.decode()
        assert "ARCHIVE:" in body
        assert "archived call leg" in body.lower()
    assert "ARCHIVE:" not in admin_client.get(url(Leg, "changelist")).content.decode()


# --- Large tables: no COUNT(*) ---------------------------------------------------------


def _counts_over(queries: list[dict], model: type) -> list[str]:
    table = model._meta.db_table
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]


LEG_QUERIES = ["", "?q=1001", "?status=answer&start_range=30d", "?p=1", "?direction__exact=out"]
COST_QUERIES = ["", "?q=1001", "?charged_to=customer&currency__code__exact=USD", "?p=1"]
NO_COUNT_CASES = [
    (model, query)
    for model in LARGE_TABLES
    for query in (LEG_QUERIES if model in (Leg, ArchivedLeg) else COST_QUERIES)
]


@pytest.mark.parametrize(
    ("model", "query"), NO_COUNT_CASES, ids=[f"{m.__name__}-{q}" for m, q in NO_COUNT_CASES]
)
def test_large_changelists_run_no_count(admin_client, world, model, query):
    for _ in range(5):
        f.leg(world.shop, archived=model in (ArchivedLeg, ArchivedLegCost))
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(url(model, "changelist") + query)
    assert response.status_code == 200
    assert _counts_over(ctx.captured_queries, model) == []
    # The legs themselves were read, so the check looked at the right queries.
    assert any(model._meta.db_table in q["sql"] for q in ctx.captured_queries)


def test_leg_list_pages_beyond_the_first(admin_client, world, monkeypatch):
    monkeypatch.setattr(admin.site._registry[Leg], "list_per_page", 3)
    legs = [f.leg(world.shop, start=1_650_000_000 + i) for i in range(7)]
    # Newest first: page 3 holds the two oldest of the seven (the world's leg is newest).
    body = admin_client.get(url(Leg, "changelist") + "?p=3").content.decode()
    assert change_url(legs[0]) in body
    assert change_url(legs[1]) in body
    assert change_url(legs[2]) not in body
    assert "8 call legs" in body


def test_leg_list_query_count_does_not_grow_with_rows(admin_client, world):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url(Leg, "changelist")).status_code == 200
        return len(ctx.captured_queries)

    before = queries()
    for _ in range(10):
        f.leg(f.customer(world.shop), dcustomer=f.customer(world.reseller))
    assert queries() == before  # customers come with the legs (list_select_related)


def test_raw_id_popup_and_autocomplete(admin_client, world):
    popup = url(Customer, "changelist") + "?_popup=1&_to_field=id&q=corner"
    response = admin_client.get(popup)
    assert response.status_code == 200
    assert f'data-popup-opener="{world.shop.pk}"' in response.content.decode()
    autocomplete = reverse("admin:autocomplete") + (
        "?app_label=customers&model_name=customer&field_name=currency&term=us"
    )
    response = admin_client.get(autocomplete)
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == ["USD"]


def test_paginator_caps_the_count():
    owner = f.customer()
    for i in range(25):
        f.leg(owner, start=1_700_000_000 + i)
    # A filtered list is counted by reading at most cap + 1 keys, never with COUNT(*).
    filtered = Leg.objects.filter(start__gte=0).order_by("-start")
    paginator = LargeTablePaginator(filtered, per_page=1, cap=5)
    assert paginator.cap == 11  # ten pages past the first stay reachable
    assert paginator.count == 12
    assert not paginator.count_is_exact
    assert len(paginator.page(12).object_list) == 1
    # Asking for a later page moves the cap along.
    later = LargeTablePaginator(filtered, per_page=1, cap=5, page_hint=20)
    assert later.count == 25
    assert later.count_is_exact
    small = LargeTablePaginator(filtered, per_page=100)
    assert small.count == 25
    assert small.count_is_exact


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_class estimate")
def test_paginator_uses_the_planner_estimate_on_postgres():
    owner = f.customer()
    for i in range(15):
        f.leg(owner, start=1_700_000_000 + i)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Leg._meta.db_table}")
    paginator = LargeTablePaginator(Leg.objects.order_by("-start"), per_page=1, cap=5)
    with CaptureQueriesContext(connection) as ctx:
        assert paginator.count == 15
    assert paginator.count_is_estimate
    assert _counts_over(ctx.captured_queries, Leg) == []
    # Near the end the sliding cap passes the estimate; the estimate still serves.
    last = LargeTablePaginator(Leg.objects.order_by("-start"), per_page=1, cap=5, page_hint=15)
    assert last.cap > 15
    assert last.count == 15
    assert last.count_is_estimate


def test_parse_unix_time():
    assert parse_unix_time("1700000000") == 1_700_000_000
    assert parse_unix_time("2023-11-14") == 1_699_920_000
    assert parse_unix_time("2023-11-14 22:13:20") == 1_700_000_000
    assert parse_unix_time("2023-11-14T23:13:20+01:00") == 1_700_000_000
    with pytest.raises(ValueError, match="Invalid"):
        parse_unix_time("yesterday")


# --- Deleting: bounded ------------------------------------------------------------------


def test_delete_page_of_customer_with_legs_does_not_list_them(admin_client, world):
    response = admin_client.get(url(Customer, "delete", world.shop.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert "call legs" in body
    assert "at least one" in body
    admin_client.post(url(Customer, "delete", world.shop.pk), {"post": "yes"})
    assert Customer.objects.filter(pk=world.shop.pk).exists()


def test_leg_can_be_deleted_with_its_costs(admin_client, world):
    response = admin_client.post(url(Leg, "delete", world.leg.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Leg.objects.filter(pk=world.leg.pk).exists()
    assert not LegCost.objects.filter(leg_id=world.leg.pk).exists()


def test_bulk_delete_is_bounded(admin_client, world, monkeypatch):
    monkeypatch.setattr(admin.site._registry[Leg], "max_bulk_delete", 1)
    other = f.leg(world.shop)
    data = {"action": "delete_selected", "_selected_action": [world.leg.pk, other.pk]}
    response = admin_client.post(url(Leg, "changelist"), data, follow=True)
    assert "Refusing to delete more than 1" in response.content.decode()
    assert Leg.objects.filter(pk__in=[world.leg.pk, other.pk]).count() == 2
    data["_selected_action"] = [other.pk]
    response = admin_client.post(url(Leg, "changelist"), data)
    assert response.status_code == 200  # the confirmation page
    assert "Are you sure" in response.content.decode()


# --- API users: only a hash is stored --------------------------------------------------


def _user_form(world: World, **overrides: object) -> dict:
    data = {
        "username": "newuser",
        "customer": world.shop.pk,
        "role": world.role.pk,
        "enabled": "on",
        "new_password1": STRONG_PASSWORD,
        "new_password2": STRONG_PASSWORD,
    }
    data.update(overrides)
    return data


def test_creating_an_api_user_stores_a_hash(admin_client, world):
    response = admin_client.post(url(User, "add"), _user_form(world))
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(username="newuser")
    assert user.password != STRONG_PASSWORD
    assert STRONG_PASSWORD not in user.password
    assert user.check_password(STRONG_PASSWORD)
    assert not user.check_password("something else")
    assert user.customer == world.shop
    assert user.enabled


def test_api_user_page_never_shows_the_hash(admin_client, world):
    body = admin_client.get(change_url(world.api_user)).content.decode()
    assert world.api_user.password not in body
    assert world.api_user.password.split("$")[-1] not in body
    assert 'name="password"' not in body
    assert "Set (stored as a" in body


def test_api_user_password_is_required_when_adding(admin_client, world):
    data = _user_form(world, new_password1="", new_password2="")
    response = admin_client.post(url(User, "add"), data)
    assert response.status_code == 200
    assert "new_password1" in response.context["adminform"].form.errors
    assert not User.objects.filter(username="newuser").exists()


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [(STRONG_PASSWORD, STRONG_PASSWORD + "x", "new_password2"), ("pw", "pw", "new_password1")],
)
def test_api_user_password_checks(admin_client, world, first, second, field):
    data = _user_form(world, new_password1=first, new_password2=second)
    response = admin_client.post(url(User, "add"), data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors


def test_changing_an_api_user_keeps_or_replaces_the_hash(admin_client, world):
    user = world.api_user
    old_hash = user.password
    data = _user_form(world, username="renamed", new_password1="", new_password2="")
    assert admin_client.post(change_url(user), data).status_code == 302
    user.refresh_from_db()
    assert (user.username, user.password) == ("renamed", old_hash)
    assert user.check_password("pw")
    data = _user_form(world, username="renamed")
    assert admin_client.post(change_url(user), data).status_code == 302
    user.refresh_from_db()
    assert user.check_password(STRONG_PASSWORD)
    assert not user.check_password("pw")


def test_changing_an_api_user_with_only_one_password_field_filled_is_refused(admin_client, world):
    user = world.api_user
    data = _user_form(world, new_password2="")
    response = admin_client.post(change_url(user), data)
    assert response.status_code == 200
    assert "new_password2" in response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.check_password("pw")


# --- Customers: the tree --------------------------------------------------------------


def _customer_form(customer: Customer, **overrides: object) -> dict:
    data = {
        "name": customer.name,
        "parent": customer.parent_id or "",
        "bill_type": customer.bill_type,
        "currency": customer.currency_id,
        "rate_plan": customer.rate_plan_id or "",
        "enabled": "on" if customer.enabled else "",
    }
    data.update(overrides)
    return data


def test_reparenting_a_customer_updates_descendants(admin_client, world):
    # owner > reseller > shop, and a sub-customer under the shop.
    leaf = f.customer(world.shop, name="Kiosk")
    assert (world.shop.depth, leaf.depth) == (2, 3)
    data = _customer_form(world.shop, parent=world.owner.pk)
    response = admin_client.post(change_url(world.shop), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    world.shop.refresh_from_db()
    leaf.refresh_from_db()
    assert (world.shop.depth, leaf.depth) == (1, 2)
    assert world.shop.path == f"/{world.owner.pk}/{world.shop.pk}/"
    assert leaf.path == f"/{world.owner.pk}/{world.shop.pk}/{leaf.pk}/"
    assert set(Customer.objects.subtree(world.reseller)) == {world.reseller}


def test_customer_cycle_is_a_form_error(admin_client, world):
    data = _customer_form(world.reseller, parent=world.shop.pk)
    response = admin_client.post(change_url(world.reseller), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "cannot be placed under itself" in str(errors["parent"])
    world.reseller.refresh_from_db()
    assert world.reseller.parent_id == world.owner.pk


def test_second_system_owner_is_a_form_error(admin_client, world):
    data = _customer_form(world.shop, id=9001, name="Pretender", parent="")
    response = admin_client.post(url(Customer, "add"), data)
    assert response.status_code == 200
    assert "already has an owner" in str(response.context["adminform"].form.errors["parent"])
    assert not Customer.objects.filter(pk=9001).exists()


def test_adding_a_customer_sets_path_and_depth(admin_client, world):
    data = _customer_form(world.shop, id=9002, name="New shop", parent=world.shop.pk)
    response = admin_client.post(url(Customer, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    new = Customer.objects.get(pk=9002)
    assert new.depth == 3
    assert new.path == f"{world.shop.path}9002/"


def test_customer_page_shows_tree_read_only(admin_client, world):
    body = admin_client.get(change_url(world.reseller)).content.decode()
    assert world.reseller.path in body
    assert 'name="path"' not in body
    assert 'name="depth"' not in body
    assert 'name="id"' not in body  # the ID is fixed once the customer exists
    assert f"?ancestor={world.reseller.pk}" in body  # link to its sub-customers


# --- Roles and rate plans: word lists ---------------------------------------------------


def test_role_privileges_are_checkboxes_plus_free_words(admin_client, world):
    data = {
        "id": 5001,
        "name": "Auditor",
        "privileges_0": ["archive", "cdrs"],
        "privileges_1": "reports, extra reports",
    }
    response = admin_client.post(url(Role, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Role.objects.get(pk=5001).privileges == ["cdrs", "archive", "reports", "extra"]
    body = admin_client.get(url(Role, "change", 5001)).content.decode()
    checked = re.findall(r'name="privileges_0" value="(\w+)"[^>]* checked', body)
    assert checked == ["cdrs", "archive"]
    assert 'value="reports, extra"' in body


def test_rate_plan_features_can_be_emptied(admin_client, world):
    data = {"name": "Plan", "features_0": [], "features_1": ""}
    response = admin_client.post(change_url(world.plan), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    world.plan.refresh_from_db()
    assert world.plan.features == []


def test_word_list_refuses_odd_words(admin_client, world):
    data = {"id": 5002, "name": "Odd", "privileges_0": ["cdrs"], "privileges_1": "ok, b@d"}
    response = admin_client.post(url(Role, "add"), data)
    assert response.status_code == 200
    assert "b@d" in str(response.context["adminform"].form.errors["privileges"])


# --- Legs: saving goes through Leg.save() ----------------------------------------------


def _leg_form(leg: Leg, prefix: str = "costs", **overrides: object) -> dict:
    data = {
        name: getattr(leg, name)
        for name in (
            "uniqueid",
            "callid",
            "status",
            "direction",
            "start",
            "end",
            "talktime",
            "stype",
            "snumber",
            "ctype",
            "cnumber",
            "dtype",
            "dnumber",
            "callername",
        )
    }
    for name in ("scustomer", "dcustomer", "peer", "invoice", "card"):
        data[name] = getattr(leg, f"{name}_id") or ""
    costs = list(leg.costs.order_by("pk"))
    data.update({f"{prefix}-TOTAL_FORMS": len(costs), f"{prefix}-INITIAL_FORMS": len(costs)})
    for i, cost in enumerate(costs):
        data.update(
            {
                f"{prefix}-{i}-id": cost.pk,
                f"{prefix}-{i}-leg": leg.pk,
                f"{prefix}-{i}-customer": cost.customer_id or "",
                f"{prefix}-{i}-card": cost.card_id or "",
                f"{prefix}-{i}-cost": cost.cost,
                f"{prefix}-{i}-tax": cost.tax,
                f"{prefix}-{i}-currency": cost.currency_id,
            }
        )
    data.update(overrides)
    return data


def test_saving_a_leg_folds_the_caller_name_and_takes_dates(admin_client, world):
    data = _leg_form(
        world.leg,
        callername="ÉCOLE Ünïcode",
        start="2023-11-14 22:13:00",
        end="1700000010",
        talktime=5,
        **{"costs-0-cost": "0.5"},
    )
    response = admin_client.post(change_url(world.leg), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    world.leg.refresh_from_db()
    assert world.leg.callername_folded == "école ünïcode"
    assert (world.leg.start, world.leg.end) == (1_699_999_980, 1_700_000_010)
    assert LegCost.objects.get(pk=world.leg_cost.pk).cost == Decimal("0.5")


def test_leg_constraints_are_form_errors(admin_client, world):
    data = _leg_form(world.leg, end=world.leg.start - 1)
    response = admin_client.post(change_url(world.leg), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors


def test_adding_an_archived_leg(admin_client, world):
    data = _leg_form(world.archived, uniqueid="new.1", callername="Ångström")
    data.update({"costs-TOTAL_FORMS": 1, "costs-INITIAL_FORMS": 0})
    data.update({"costs-0-customer": world.shop.pk, "costs-0-cost": "1", "costs-0-tax": "0"})
    data.update({"costs-0-currency": "USD"})
    for key in [k for k in data if k.startswith("costs-0-") and k[8:] in ("id", "leg", "card")]:
        data[key] = ""
    response = admin_client.post(url(ArchivedLeg, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    leg = ArchivedLeg.objects.get(uniqueid="new.1")
    assert leg.callername_folded == "ångström"
    assert leg.costs.get().customer == world.shop
