"""The customer tree in the admin: names indented by depth, a filter by any ancestor,
and what a customer's page shows of its place (sub-customers, users, calls, figures)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Count, FilteredRelation, Q, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cdrs.models import Leg
from customers.models import PATH_SEP, Customer
from enswitch import citus
from enswitch.admin_tools.call_view import money
from enswitch.admin_tools.leg_filters import CustomerFilter, readable_utc
from enswitch.db import use_statement_timeout

DAY = 86_400
# A customer's page lists at most this many direct sub-customers and users.
MAX_LISTED = 50
# How long (PostgreSQL) the figures of one window may take before a shorter one is tried.
FIGURES_BUDGET_MS = 150
# ... and the most legs (the planner's estimate) a window may hold to be tried at all.
FIGURES_MAX_LEGS = 20_000


class AncestorFilter(CustomerFilter):
    """Customers under one customer, at any depth (`?ancestor=ID`), or only its direct
    children (`?ancestor=ID&children=1`)."""

    title = "place in the tree"
    parameter_name = "ancestor"
    form_params = ("children",)
    autocomplete_field = "parent"

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.customer is None:
            return queryset
        if self.raw.get("children") == "1":
            return queryset.filter(parent_id=self.customer.pk)
        return queryset.filter(path__startswith=self.customer.path).exclude(pk=self.customer.pk)

    def form(self, changelist: Any) -> dict[str, Any]:
        form = super().form(changelist)
        children = self.raw.get("children") == "1"
        form.update(check=("children", "only its direct sub-customers", children), note="")
        return form


def ancestor_ids(customer: Customer) -> list[int]:
    return [int(part) for part in customer.path.strip(PATH_SEP).split(PATH_SEP)[:-1] if part]


def indented_name(customer: Customer) -> SafeString:
    """The name, indented by depth, with its ancestors' names above it small."""
    return format_html(
        '<span class="tree-name" style="padding-left: {}em">{}{}</span>',
        1.5 * customer.depth,
        "\u2514 " if customer.depth else "",
        customer.name,
    )


def breadcrumb(customer: Customer) -> SafeString:
    ids = ancestor_ids(customer)
    names = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "name"))
    url = reverse("admin:customers_customer_change", args=[0]).replace("/0/", "/{}/")
    links = format_html_join(
        " \u203a ", '<a href="{}">{}</a>', ((url.format(i), names.get(i, i)) for i in ids)
    )
    return links or SafeString("(the system owner: the top of the tree)")


def sub_customers(customer: Customer) -> SafeString:
    children = list(Customer.objects.children_of(customer).order_by("name", "id")[:MAX_LISTED])
    whole = Customer.objects.subtree(customer, include_self=False).count()
    changelist = reverse("admin:customers_customer_changelist")
    change = reverse("admin:customers_customer_change", args=[0]).replace("/0/", "/{}/")
    items = format_html_join(
        " · ", '<a href="{}">{}</a>', ((change.format(c.pk), str(c)) for c in children)
    )
    return format_html(
        '<div class="tree-children">{}</div><a href="{}?ancestor={}&amp;children=1">{} direct'
        '</a> · <a href="{}?ancestor={}">{} at any depth</a>',
        items,
        changelist,
        customer.pk,
        Customer.objects.children_of(customer).count(),
        changelist,
        customer.pk,
        whole,
    )


def users(customer: Customer) -> SafeString:
    found = list(customer.users.order_by("username")[:MAX_LISTED])
    if not found:
        return SafeString("none")
    change = reverse("admin:customers_user_change", args=[0]).replace("/0/", "/{}/")
    return format_html_join(
        " · ", '<a href="{}">{}</a>', ((change.format(u.pk), u.username) for u in found)
    )


def call_links(customer: Customer) -> SafeString:
    live = reverse("admin:cdrs_leg_changelist")
    archived = reverse("admin:cdrs_archivedleg_changelist")
    return format_html(
        'Live: <a href="{0}?customer={1}">its own</a> · '
        '<a href="{0}?customer={1}&amp;subtree=1">with its sub-customers</a>'
        '<br>Archived: <a href="{2}?customer={1}">its own</a> · '
        '<a href="{2}?customer={1}&amp;subtree=1">with its sub-customers</a>',
        live,
        customer.pk,
        archived,
    )


@dataclass(frozen=True)
class Figures:
    days: int
    first: int
    last: int  # exclusive
    calls: int
    minutes: float
    costs: list[tuple[str, Any]]  # (currency, total) of the customer's own cost records


def _subtree_legs(customer: Customer) -> Any:
    legs = Leg.objects.all()
    if customer.is_system_owner:
        return legs
    # The IDs as a list: each side of the OR is then an index range per customer.
    ids = list(Customer.objects.subtree(customer).values_list("pk", flat=True))
    return legs.for_customers(ids)


def _totals(legs: Any, customer: Customer, first: int, last: int) -> tuple[int, int, list]:
    """One pass over the window's legs, each with the customer's own cost record (at most
    one: (leg, customer) is unique), per currency."""
    rows = (
        legs.filter(start__gte=first, start__lt=last)
        .annotate(own=FilteredRelation("costs", condition=Q(costs__customer_id=customer.pk)))
        .values("own__currency_id")
        .annotate(calls=Count("pk"), talk=Sum("talktime"), cost=Sum("own__cost"))
        .order_by("own__currency_id")
    )
    calls = talk = 0
    costs = []
    for row in rows:
        calls += row["calls"]
        talk += row["talk"] or 0
        if row["own__currency_id"] is not None:
            costs.append((row["own__currency_id"], row["cost"]))
    return calls, talk, costs


def planned_rows(queryset: Any) -> float:
    """The planner's estimate of a queryset's rows (PostgreSQL; 0 elsewhere): read from
    EXPLAIN, which runs nothing."""
    if connection.vendor != "postgresql" or citus.is_distributed(connection.alias):
        # A Citus coordinator's plan holds no estimate of the shards' rows (a fixed
        # placeholder): there the time budget alone decides.
        return 0
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return float(plan[0]["Plan"]["Plan Rows"])


def figures(customer: Customer, windows: tuple[int, ...] = (30, 7, 1)) -> Figures | None:
    """The live legs of the customer's subtree in the last 30 days up to its latest call
    (so a store of older calls still shows them): legs, talk minutes, and what the
    customer itself is charged for them, per currency. None without a call.

    On PostgreSQL a window the planner expects to hold more than FIGURES_MAX_LEGS legs
    is not started, and each has a time budget (FIGURES_BUDGET_MS): a subtree with more
    calls than can be totalled in time gets the next, shorter window instead, and the
    page says which; if none fits, the figures say so rather than hold the page up.
    """
    legs = _subtree_legs(customer)
    latest = legs.order_by("-start").values_list("start", flat=True).first()
    if latest is None:
        return None
    last = latest + 1
    for days in windows:
        window = legs.filter(start__gte=last - days * DAY, start__lt=last)
        if days != windows[-1] and planned_rows(window) > FIGURES_MAX_LEGS:
            continue  # too many to total in time: not even started
        try:
            with transaction.atomic():
                use_statement_timeout(FIGURES_BUDGET_MS, local=True)
                calls, talk, costs = _totals(legs, customer, last - days * DAY, last)
        except OperationalError:  # the budget ran out (query_canceled); rolled back
            continue
        return Figures(days, last - days * DAY, last, calls, talk / 60, costs)
    return Figures(0, last, last, 0, 0, [])


def figures_html(customer: Customer) -> SafeString:
    found = figures(customer)
    if found is None:
        return SafeString("No live calls.")
    if found.days == 0:
        return SafeString(
            "Too many calls to total within this page's time budget; the API's cdrs/list "
            "with customer=ID and recurse=1 lists them."
        )
    cost = ", ".join(money(total, currency) for currency, total in found.costs) or "nothing"
    return format_html(
        "<p>The last {} day{} to its latest call: {} to {} (UTC)</p><table class='figures'>"
        "<tr><td>calls (legs)</td><td><strong>{}</strong></td></tr>"
        "<tr><td>minutes talked</td><td><strong>{}</strong></td></tr>"
        "<tr><td>charged to this customer</td><td><strong>{}</strong></td></tr></table>",
        found.days,
        "s" if found.days != 1 else "",
        readable_utc(found.first),
        readable_utc(found.last),
        f"{found.calls:,}",
        f"{found.minutes:,.1f}",
        cost,
    )
