"""The customer tree in the admin: names indented by depth, a filter by any ancestor,
and what a customer's page shows of its place (sub-customers, users, calls, figures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cdrs.models import Leg, LegCost
from customers.models import PATH_SEP, Customer
from enswitch.admin_tools.call_view import money
from enswitch.admin_tools.leg_filters import CustomerFilter, readable_utc

DAY = 86_400
# A customer's page lists at most this many direct sub-customers and users.
MAX_LISTED = 50


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
        form["subtree_label"] = ""
        form["children"] = self.raw.get("children") == "1"
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
        "", '<li><a href="{}">{}</a></li>', ((change.format(c.pk), str(c)) for c in children)
    )
    return format_html(
        '<ul class="tree-children">{}</ul><a href="{}?ancestor={}&amp;children=1">{} direct</a>'
        ' · <a href="{}?ancestor={}">{} at any depth</a>',
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
    first: int
    last: int  # exclusive
    calls: int
    minutes: float
    costs: list[tuple[str, Any]]  # (currency, total) of the customer's own cost records


def figures(customer: Customer, days: int = 30) -> Figures | None:
    """The live legs of the customer's subtree in the `days` days up to its latest call
    (so a store of older calls still shows them): legs, talk minutes, and what the
    customer itself is charged for them, per currency. None without a call."""
    legs = Leg.objects.all()
    if not customer.is_system_owner:
        legs = legs.for_customers(Customer.objects.subtree(customer).values("pk"))
    latest = legs.order_by("-start").values_list("start", flat=True).first()
    if latest is None:
        return None
    last = latest + 1
    first = last - days * DAY
    window = legs.filter(start__gte=first, start__lt=last)
    totals = window.aggregate(calls=Count("pk"), talk=Sum("talktime"))
    costs = (
        LegCost.objects.filter(customer_id=customer.pk, leg__in=window.values("pk"))
        .values("currency_id")
        .annotate(total=Sum("cost"))
        .order_by("currency_id")
    )
    return Figures(
        first,
        last,
        totals["calls"],
        (totals["talk"] or 0) / 60,
        [(row["currency_id"], row["total"]) for row in costs],
    )


def figures_html(customer: Customer) -> SafeString:
    found = figures(customer)
    if found is None:
        return SafeString("No live calls.")
    cost = ", ".join(money(total, currency) for currency, total in found.costs) or "nothing"
    return format_html(
        "<p>The 30 days to its latest call: {} to {} (UTC)</p><table class='figures'>"
        "<tr><td>calls (legs)</td><td><strong>{}</strong></td></tr>"
        "<tr><td>minutes talked</td><td><strong>{}</strong></td></tr>"
        "<tr><td>charged to this customer</td><td><strong>{}</strong></td></tr></table>",
        readable_utc(found.first),
        readable_utc(found.last),
        f"{found.calls:,}",
        f"{found.minutes:,.1f}",
        cost,
    )
