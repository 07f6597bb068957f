"""The admin as an operator's daily tool (issue 16): what the leg lists show and filter,
a call on one page, the customer tree, archive actions, the site's names and links.
Run on every store; tests/browser/ drives the same pages in Chromium."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import OperationalError, transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrs import archive
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Card, Currency, Customer, Peer
from enswitch.admin_tools import archive_actions, customer_tree
from tests import api_helpers as h
from tests import factories as f

pytestmark = pytest.mark.django_db

DAY = 86_400
T0 = 1_790_000_000  # Sat 2026-09-21 14:13:20 UTC


@dataclass
class Tree:
    usd: Currency
    eur: Currency
    owner: Customer
    reseller: Customer  # under owner
    shop: Customer  # under reseller
    kiosk: Customer  # under shop: the reseller's grandchild
    other: Customer  # under owner, beside the reseller
    peer: Peer
    rare_peer: Peer
    card: Card
    call: list[Leg]  # three legs of one call, the middle one archived
    kiosk_leg: Leg
    other_leg: Leg
    old_leg: Leg


@pytest.fixture
def tree() -> Tree:
    usd, eur = f.currency("USD"), f.currency("EUR", "1.08")
    owner = f.customer(name="Owner Telecom", cur=usd)
    reseller = f.customer(owner, name="Initech Call Centre", cur=usd)
    shop = f.customer(reseller, name="Corner Shop", cur=eur)
    kiosk = f.customer(shop, name="Harbour Kiosk", cur=eur)
    other = f.customer(owner, name="Globex Voice", cur=usd)
    peer = Peer.objects.create(id=301, name="Carrier A")
    rare_peer = Peer.objects.create(id=302, name="Emergency services")
    card = Card.objects.create(id=401, customer=shop, name="Phone card")
    costs = [
        {"customer": shop, "cost": Decimal("0.25"), "tax": Decimal("0.05"), "currency": eur},
        {"customer": reseller, "cost": Decimal("0.2"), "currency": usd},
        {"card": card, "cost": Decimal("1.5"), "currency": eur},
    ]
    first = f.leg(
        shop,
        start=T0,
        callid="c-1",
        uniqueid="u-1",
        snumber="2001",
        cnumber="442079460000",
        callername="Émile ZOLA",
        peer=peer,
        costs=costs,
    )
    # Ids are shared by both tables (a leg keeps its id when it moves): none may clash.
    middle = f.leg(
        shop,
        archived=True,
        start=T0 + 5,
        callid="c-1",
        uniqueid="u-2",
        id=9001,
        costs=[{"customer": reseller, "cost": Decimal("0.07"), "currency": usd}],
    )
    last = f.leg(
        reseller, start=T0 + 9, callid="c-1", uniqueid="u-3", dcustomer=shop, callername="Reception"
    )
    kiosk_leg = f.leg(
        kiosk,
        start=T0 + 3 * DAY,
        uniqueid="u-kiosk",
        callername="Zoë Ørsted",
        status="failed",
        peer=rare_peer,
    )
    other_leg = f.leg(
        other, start=T0 + 2 * DAY, uniqueid="u-other", snumber="7001", callername="Dvořák, Antonín"
    )
    old_leg = f.leg(other, start=T0 - 40 * DAY, uniqueid="u-old")  # fmt: skip
    return Tree(usd, eur, owner, reseller, shop, kiosk, other, peer, rare_peer, card,
                [first, middle, last], kiosk_leg, other_leg, old_leg)  # fmt: skip


def listed(admin_client, model: type, query: str = "") -> set[str]:
    """The uniqueids of the legs a leg list shows."""
    opts = model._meta
    response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
                                + query)  # fmt: skip
    assert response.status_code == 200, response.get("Location")
    return {leg.uniqueid for leg in response.context["cl"].result_list}


def body(admin_client, path: str) -> str:
    response = admin_client.get(path)
    assert response.status_code == 200
    return response.content.decode()


# --- 1. the leg lists -------------------------------------------------------------------


def test_leg_list_shows_what_an_operator_reads(admin_client, tree):
    page = body(admin_client, reverse("admin:cdrs_leg_changelist"))
    for text in (
        "Mon 21 Sep 2026 14:13",
        "Start (UTC)",
        "0:30",
        "1:00",
        "2001",
        "442079460000",
        "Corner Shop",
        "Émile ZOLA",
        "Carrier A",
        "Caller name",
    ):
        assert text in page, text  # fmt: skip
    # The source customer's cost, in its currency, by default.
    assert "0.25 EUR" in page


def test_cost_column_is_the_filtered_customers(admin_client, tree):
    url = reverse("admin:cdrs_leg_changelist")
    page = body(admin_client, f"{url}?customer={tree.reseller.pk}&subtree=1")
    assert "0.20 USD" in page  # the reseller's own record, in its currency
    assert "0.25 EUR" not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("customer={shop}", {"u-1", "u-3"}),  # as source or as destination
        ("customer={shop}&subtree=1", {"u-1", "u-3", "u-kiosk"}),  # any depth
        ("customer={reseller}", {"u-3"}),
        ("customer={reseller}&subtree=1", {"u-1", "u-3", "u-kiosk"}),
        ("customer={owner}&subtree=1", {"u-1", "u-3", "u-kiosk", "u-other", "u-old"}),
        ("customer={owner}", set()),
        ("customer={kiosk}&subtree=1", {"u-kiosk"}),
    ],
)
def test_customer_filter_follows_the_apis_subtree_rule(admin_client, tree, query, expected):
    ids = {name: getattr(tree, name).pk for name in ("owner", "reseller", "shop", "kiosk")}
    assert listed(admin_client, Leg, "?" + query.format(**ids)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("start__gte=2026-09-21&start__to=2026-09-21", {"u-1", "u-3"}),
        ("start__gte=2026-09-22&start__to=2026-09-23", {"u-other"}),  # last day included
        ("start__to=2026-09-20", {"u-old"}),
        ("start__gte=2026-09-24", {"u-kiosk"}),
        # The latest days of the table's calls, whatever the clock says.
        ("start_range=1d", {"u-kiosk"}),
        ("start_range=7d", {"u-1", "u-3", "u-kiosk", "u-other"}),
        ("start_range=30d", {"u-1", "u-3", "u-kiosk", "u-other"}),
    ],
)
def test_start_date_range(admin_client, tree, query, expected):
    assert listed(admin_client, Leg, "?" + query) == expected


def test_date_inputs_keep_the_other_filters(admin_client, tree):
    url = reverse("admin:cdrs_leg_changelist")
    page = body(admin_client, f"{url}?customer={tree.shop.pk}&subtree=1&status=answer")
    dates = page[page.index("form-filter-dates") :]
    dates = dates[: dates.index("</form>")]
    assert f'name="customer" value="{tree.shop.pk}"' in dates
    assert 'name="subtree" value="1"' in dates
    assert 'name="status" value="answer"' in dates
    assert 'type="date"' in dates


def test_peer_direction_status_filters(admin_client, tree):
    assert listed(admin_client, Leg, f"?peer={tree.rare_peer.pk}") == {"u-kiosk"}
    assert listed(admin_client, Leg, "?status=failed") == {"u-kiosk"}
    assert listed(admin_client, Leg, "?direction__exact=out&peer=301") == {"u-1"}
    page = body(admin_client, reverse("admin:cdrs_leg_changelist"))
    assert "Emergency services" in page  # peers offered by name


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("zola", {"u-1"}),  # anywhere in the caller name, any case
        ("Émile Zola", {"u-1"}),  # the whole text is one term
        ("ØRSTED", {"u-kiosk"}),
        ("Initech", {"u-3"}),  # a customer's name: its own legs
        ("globex", {"u-other", "u-old"}),
        ("u-kiosk", {"u-kiosk"}),  # uniqueid
        ("c-1", {"u-1", "u-3"}),  # callid
        ("7001", {"u-other"}),  # a source number's start
        ("44207946", {"u-1"}),  # a called number's start
        ("Zzyzx", set()),
    ],
)
def test_search(admin_client, tree, term, expected):
    assert listed(admin_client, Leg, "?" + f"q={term}") == expected


def test_archived_list_has_the_same_columns_filters_and_search(admin_client, tree):
    assert listed(admin_client, ArchivedLeg, f"?customer={tree.reseller.pk}&subtree=1") == {"u-2"}
    assert listed(admin_client, ArchivedLeg, "?q=c-1") == {"u-2"}
    page = body(admin_client, reverse("admin:cdrs_archivedleg_changelist"))
    assert "0.07 USD" not in page  # the source (shop) has no record on it: none shown
    assert 'class="page-banner"' in page
    assert "ARCHIVE:" in page


def test_no_full_count_on_the_new_pages(admin_client, tree, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:cdrs_leg_changelist")
    for query in (f"?customer={tree.reseller.pk}&subtree=1", "?start_range=7d",
                  "?q=zola", f"?peer={tree.peer.pk}", "?start__gte=2026-09-01"):  # fmt: skip
        with CaptureQueriesContext(connection) as ctx:
            admin_client.get(url + query)
        counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()
                  and "cdrs_leg" in q["sql"]]  # fmt: skip
        assert counts == [], query


# --- 2. a call on one page --------------------------------------------------------------


def test_a_legs_page_shows_its_whole_call_with_costs(admin_client, tree):
    page = body(admin_client, reverse("admin:cdrs_leg_change", args=[tree.call[0].pk]))
    call = page[page.index('class="call-legs"') :]
    call = call[: call.index("</table>")]
    assert [call.index(u) for u in ("u-1", "u-2", "u-3")] == sorted(
        call.index(u) for u in ("u-1", "u-2", "u-3")
    )
    assert "3 legs with callid" in page
    assert "(archived)" in call  # the middle leg lives in the archive
    for text in (
        "customer Corner Shop",
        "0.25 EUR",
        "tax 0.05 EUR",
        "customer Initech",
        "0.20 USD",
        "card Phone card",
        "1.50 EUR",
        "0.07 USD",
        "no cost records",
    ):
        assert text in call, text  # fmt: skip
    assert "u-kiosk" not in call


def test_an_archived_legs_page_shows_its_call_too(admin_client, tree):
    page = body(admin_client, reverse("admin:cdrs_archivedleg_change", args=[tree.call[1].pk]))
    assert "3 legs with callid" in page


# --- 3. the customer tree ---------------------------------------------------------------


def test_customer_list_is_the_tree_in_order_indented(admin_client, tree):
    response = admin_client.get(reverse("admin:customers_customer_changelist"))
    order = [c.pk for c in response.context["cl"].result_list]
    assert order == [tree.owner.pk, tree.reseller.pk, tree.shop.pk, tree.kiosk.pk, tree.other.pk]
    page = response.content.decode()
    assert re.search(r'padding-left: 4\.5em">\u2514 Harbour Kiosk', page)  # depth 3
    assert "Parent" not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ancestor={owner}", {"reseller", "shop", "kiosk", "other"}),
        ("ancestor={reseller}", {"shop", "kiosk"}),  # at any depth
        ("ancestor={reseller}&children=1", {"shop"}),
        ("ancestor={kiosk}", set()),
    ],
)
def test_customer_list_filters_by_any_ancestor(admin_client, tree, query, expected):
    ids = {name: getattr(tree, name).pk for name in ("owner", "reseller", "kiosk")}
    response = admin_client.get(
        reverse("admin:customers_customer_changelist") + "?" + query.format(**ids)
    )
    names = {c.pk for c in response.context["cl"].result_list}
    assert names == {getattr(tree, n).pk for n in expected}


def test_customer_page_shows_its_place_users_calls_and_figures(admin_client, tree):
    f.user(tree.reseller, username="initech-api")
    page = body(admin_client, reverse("admin:customers_customer_change", args=[tree.reseller.pk]))
    assert "Owner Telecom" in page  # the breadcrumb of ancestors
    assert "Corner Shop" in page  # a sub-customer
    assert "1 direct" in page
    assert "2 at any depth" in page
    assert "initech-api" in page
    assert f"?customer={tree.reseller.pk}&amp;subtree=1" in page  # its calls with the subtree
    assert f'?customer={tree.reseller.pk}"' in page  # its own calls
    figures = page[page.index("figures") :]
    # The 30 days to the subtree's latest live call: u-1, u-3, u-kiosk; 30 s each.
    assert re.search(r"calls \(legs\)</td><td><strong>3</strong>", figures)
    assert re.search(r"minutes talked</td><td><strong>1\.5</strong>", figures)
    assert "0.20 USD" in figures  # only the reseller's own records


def test_customer_figures_fall_back_to_a_shorter_window(monkeypatch, tree):
    real = customer_tree._totals
    calls = []

    def slow_then_fast(legs, customer, first, last):
        calls.append(last - first)
        if len(calls) == 1:
            raise OperationalError("canceling statement due to statement timeout")
        return real(legs, customer, first, last)

    monkeypatch.setattr(customer_tree, "_totals", slow_then_fast)
    planned = iter([10**6, 10])  # the 30-day window: a million legs; the 7-day: ten
    monkeypatch.setattr(customer_tree, "planned_rows", lambda qs: next(planned))
    html = customer_tree.figures_html(tree.reseller)
    # 30 days: too many legs planned, not started; 7 days: over the time budget.
    assert calls == [7 * DAY, DAY]
    assert "The last 1 day to its latest call" in html
    assert re.search(r"<strong>1</strong>", html)  # only u-kiosk in its last day


def test_customer_label_does_not_repeat_the_id(tree):
    named = f.customer(tree.owner, name="Initech Trading (reseller 8)", id=8)
    assert str(named) == "Initech Trading (reseller 8)"
    assert str(tree.shop) == f"Corner Shop ({tree.shop.pk})"


# --- 4. archive from the admin ----------------------------------------------------------


def _act(admin_client, model: type, action: str, legs: list, **extra: str):
    opts = model._meta
    data = {"action": action, "_selected_action": [leg.pk for leg in legs], **extra}
    return admin_client.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), data, follow=True
    )


def test_archive_action_asks_first_then_moves_legs_with_costs(admin_client, tree):
    first = tree.call[0]
    response = _act(admin_client, Leg, "archive_selected", [first, tree.other_leg])
    page = response.content.decode()
    assert "Archive 2 call legs?" in page
    assert Leg.objects.filter(pk=first.pk).exists()  # nothing moved yet

    response = _act(admin_client, Leg, "archive_selected", [first, tree.other_leg], confirm="yes")
    assert "Archived 2 call legs and 3 cost records to the archive" in response.content.decode()
    assert not Leg.objects.filter(pk__in=[first.pk, tree.other_leg.pk]).exists()
    moved = ArchivedLeg.objects.get(pk=first.pk)  # the same id
    assert ArchivedLegCost.objects.filter(leg=moved).count() == 3
    assert not LegCost.objects.filter(leg_id=first.pk).exists()


def test_restore_action_brings_legs_back(admin_client, tree):
    middle = tree.call[1]
    response = _act(admin_client, ArchivedLeg, "restore_selected", [middle], confirm="yes")
    assert "Restored 1 call leg and 1 cost records" in response.content.decode()
    assert Leg.objects.get(pk=middle.pk).uniqueid == "u-2"
    assert LegCost.objects.filter(leg_id=middle.pk).count() == 1
    assert not ArchivedLeg.objects.filter(pk=middle.pk).exists()


def test_archive_action_goes_through_archive_cdrs_lock(admin_client, tree, monkeypatch):
    seen = []

    @contextlib.contextmanager
    def held(**kwargs):
        seen.append(kwargs)
        raise archive.ArchiveLocked("pid 4242")
        yield  # pragma: no cover

    monkeypatch.setattr("cdrs.archive.selected.exclusive_lock", held)
    response = _act(admin_client, Leg, "archive_selected", [tree.call[0]], confirm="yes")
    assert "archive_cdrs run (or another move) is in progress; nothing moved" in (
        response.content.decode()
    )
    assert seen
    assert Leg.objects.filter(pk=tree.call[0].pk).exists()


def test_archive_action_refuses_too_many(admin_client, tree, monkeypatch):
    monkeypatch.setattr(archive_actions, "MAX_LEGS", 1)
    response = _act(admin_client, Leg, "archive_selected", [tree.call[0], tree.other_leg])
    assert "Refusing to archive more than 1 legs" in response.content.decode()
    assert Leg.objects.filter(pk=tree.call[0].pk).exists()


def test_move_actions_need_the_change_permission(client, tree, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_leg"))
    client.force_login(viewer)
    page = client.get(reverse("admin:cdrs_leg_changelist")).content.decode()
    assert "archive_selected" not in page


# --- 5. the small ones ------------------------------------------------------------------


def test_no_view_site_link_and_plain_names(admin_client, tree):
    page = body(admin_client, reverse("admin:index"))
    assert "View site" not in page
    assert "Staff logins (this admin site)" in page
    assert "API users (logins of the Enswitch API)" in page


# --- the customer filter against the reference model, over random trees ----------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_customer_filter_matches_the_reference_subtree_rule(admin_client, data):
    world = data.draw(h.trees(max_customers=7, max_depth=4, currencies=["USD"]))
    world.legs = data.draw(h.legs(world, max_legs=8, unique_costs=True))
    chosen = data.draw(st.sampled_from(sorted(world.customers)))
    subtree = data.draw(st.booleans())
    with transaction.atomic():
        h.build_world(world, world.owner(), ["cdrs", "archive"])
        members = world.subtree(chosen) if subtree else {chosen}
        for model, archived in ((Leg, False), (ArchivedLeg, True)):
            expected = {
                leg.uniqueid
                for leg in world.legs
                if leg.archived == archived
                and (leg.scustomer in members or leg.dcustomer in members)
            }
            query = f"?customer={chosen}" + ("&subtree=1" if subtree else "")
            assert listed(admin_client, model, query) == expected, (chosen, subtree)
        transaction.set_rollback(True)
