"""The admin as an operator uses it, in headless Chromium at 1366 px, on the demo data:
log in, filter legs by a customer with its sub-customers and a date range, open a call,
search a caller name, browse the customer tree, restore and archive legs."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.db.models import Count

from cdrs.models import ArchivedLeg, Leg, fold_case
from customers.models import Customer
from tests.browser.conftest import ROOT

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "Kettle-Orbit-7731"
DEMO = ROOT / "fixtures" / "demo.json"
RESELLER = 2  # "Initech Call Centre (reseller 2)", with sub-customers three levels deep


@pytest.fixture
def demo(django_user_model) -> None:
    call_command("import_dataset", str(DEMO), verbosity=0)
    django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)


@pytest.fixture
def admin_page(demo, live_server, page, camera):
    page.goto(f"{live_server.url}/admin/")
    camera.shot("login")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    assert "View site" not in page.content()
    camera.shot("index")
    return page


def fits(page) -> bool:
    """No horizontal scrolling at the window's width, of the page or of a leg list."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth && "
        "[...document.querySelectorAll('.results')].every(e => e.scrollWidth <= e.clientWidth)"
    )


def shown_count(page) -> int:
    text = page.inner_text("#changelist-form .paginator")
    return int(re.search(r"([\d,]+) (?:archived )?call legs?", text).group(1).replace(",", ""))


def pick_customer(page, form: str, name: str, typed: str) -> None:
    """Choose a customer in a filter's autocomplete box, as a user does."""
    page.click(f"{form} .select2-selection")
    page.fill(".select2-search__field", typed)
    page.click(f".select2-results__option:has-text('{name}')")


def test_filter_legs_by_customer_with_sub_customers_and_dates(admin_page, live_server, camera):
    page = admin_page
    page.goto(f"{live_server.url}/admin/cdrs/leg/")
    assert fits(page)
    camera.shot("leg-list")
    pick_customer(page, ".form-filter-customer", "Initech Call Centre", "Initech Call")
    page.check(".form-filter-customer input[name=subtree]")
    camera.shot("customer-picked")
    page.click(".form-filter-customer button[type=submit]")
    page.wait_for_url(re.compile(r"customer=2.*subtree=1|subtree=1.*customer=2"))
    page.fill(".form-filter-dates input[name=start__gte]", "2026-10-01")
    page.fill(".form-filter-dates input[name=start__to]", "2026-10-07")
    page.click(".form-filter-dates button[type=submit]")
    page.wait_for_url(re.compile(r"start__to=2026-10-07"))
    assert fits(page)
    camera.shot("filtered")

    subtree = Customer.objects.subtree(Customer.objects.get(pk=RESELLER)).values("pk")
    expected = Leg.objects.for_customers(subtree).filter(
        start__gte=1790812800, start__lt=1791417600
    )
    assert expected.count() > 0
    assert shown_count(page) == expected.count()
    body = page.inner_text("#result_list")
    assert "Initech" in body
    assert "USD" in body  # the cost column, in the customer's currency


def test_open_a_call_and_see_all_its_legs_and_costs(admin_page, live_server, camera):
    page = admin_page
    calls = Leg.objects.filter(costs__isnull=False).values("callid")  # calls with costs
    callid = calls.annotate(n=Count("pk", distinct=True)).order_by("-n", "callid")[0]["callid"]
    page.goto(f"{live_server.url}/admin/cdrs/leg/?q={callid}")
    camera.shot("search-callid")
    legs = list(Leg.objects.filter(callid=callid).order_by("start", "uniqueid"))
    assert shown_count(page) == len(legs) > 1
    page.click("#result_list tbody tr:first-child th a")
    page.wait_for_selector("table.call-legs")
    assert fits(page)
    camera.shot("call", full_page=True)
    table = page.inner_text("table.call-legs")
    assert any(leg.costs.exists() for leg in legs)
    positions = [table.index(leg.uniqueid) for leg in legs]
    assert positions == sorted(positions)  # in order
    for leg in legs:
        for cost in leg.costs.all():
            assert f"{cost.cost.normalize():f}"[:6] in table
            assert cost.currency_id in table


def test_search_a_caller_name(admin_page, live_server, camera):
    page = admin_page
    page.goto(f"{live_server.url}/admin/cdrs/leg/")
    page.fill("#searchbar", "Zola")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=Zola"))
    assert fits(page)
    camera.shot("caller-zola")
    expected = Leg.objects.filter(callername_folded__contains=fold_case("Zola")).count()
    assert expected > 0
    assert shown_count(page) == expected
    assert "Émile ZOLA" in page.inner_text("#result_list")


def test_browse_the_customer_tree(admin_page, live_server, camera):
    page = admin_page
    page.goto(f"{live_server.url}/admin/customers/customer/")
    assert fits(page)
    camera.shot("tree")
    names = page.locator("#result_list .tree-name")
    assert names.count() == Customer.objects.count()
    assert "(reseller 8) (8)" not in page.content()  # the ID is not repeated
    pick_customer(page, ".form-filter-customer", "Initech Call Centre", "Initech Call")
    page.click(".form-filter-customer button[type=submit]")
    page.wait_for_url(re.compile(r"ancestor=2"))
    camera.shot("under-reseller-2")
    under = Customer.objects.subtree(Customer.objects.get(pk=RESELLER), include_self=False)
    assert page.locator("#result_list .tree-name").count() == under.count()
    assert under.filter(depth=3).exists()  # a grandchild's grandchild is listed too

    page.click("#result_list a:has-text('Initech Trading')")
    page.wait_for_selector(".field-sub_customers")
    assert fits(page)
    camera.shot("customer-8", full_page=True)
    body = page.inner_text("#content-main")
    assert "Initech Voice (reseller 23)" in body  # its sub-customer
    assert "calls (legs)" in body  # the figures of its subtree
    page.click(".field-calls a:has-text('with its sub-customers')")
    page.wait_for_url(re.compile(r"customer=8&subtree=1"))
    camera.shot("customer-8-calls")
    subtree = Customer.objects.subtree(Customer.objects.get(pk=8)).values("pk")
    assert shown_count(page) == Leg.objects.for_customers(subtree).count()


def test_restore_an_archived_leg_then_archive_it_again(admin_page, live_server, camera):
    page = admin_page
    leg = ArchivedLeg.objects.order_by("-start", "-uniqueid").first()
    page.goto(f"{live_server.url}/admin/cdrs/archivedleg/")
    assert fits(page)
    camera.shot("archive")
    banner = page.locator(".page-banner").bounding_box()
    add = page.locator(".object-tools").bounding_box()
    assert add is None or banner["y"] >= add["y"] + add["height"]  # no overlap
    page.check("#result_list tbody tr:first-child input.action-select")
    page.select_option("select[name=action]", "restore_selected")
    page.click("button[name=index]")
    page.wait_for_selector("body.move-confirmation")
    assert "Restore 1 call leg?" in page.inner_text("#content")
    camera.shot("restore-confirm")
    page.click("input[type=submit][value^='Yes']")
    page.wait_for_selector(".messagelist")
    camera.shot("restored")
    assert "Restored 1 call leg" in page.inner_text(".messagelist")
    assert Leg.objects.filter(uniqueid=leg.uniqueid).exists()
    assert not ArchivedLeg.objects.filter(uniqueid=leg.uniqueid).exists()

    page.goto(f"{live_server.url}/admin/cdrs/leg/?q={leg.uniqueid}")
    page.check("#result_list tbody tr:first-child input.action-select")
    page.select_option("select[name=action]", "archive_selected")
    page.click("button[name=index]")
    page.wait_for_selector("body.move-confirmation")
    page.click("input[type=submit][value^='Yes']")
    page.wait_for_selector(".messagelist")
    camera.shot("archived-again")
    assert ArchivedLeg.objects.filter(uniqueid=leg.uniqueid).exists()
    assert not Leg.objects.filter(uniqueid=leg.uniqueid).exists()
