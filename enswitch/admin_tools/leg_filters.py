"""The call-leg lists' filters: a customer (with or without its sub-customers), a range of
start dates, a peer. Each narrows with indexed columns only.

A filter whose form has inputs of its own (a customer picked with autocomplete, two
dates) renders `admin_tools/form_filter.html`; the rest of the page's parameters ride
along as hidden inputs, so applying one filter keeps the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse

from customers.models import Customer, Peer
from enswitch.admin_tools.unix_times import format_unix_utc, parse_unix_time

DAY = 86_400
_ID_RE = re.compile(r"[0-9]{1,18}")

# Select2 and Django's autocomplete glue, as the admin's own autocomplete widgets load them.
AUTOCOMPLETE_JS = (
    "admin/js/vendor/jquery/jquery.min.js",
    "admin/js/vendor/select2/select2.full.min.js",
    "admin/js/jquery.init.js",
    "admin/js/autocomplete.js",
)
AUTOCOMPLETE_CSS = ("admin/css/vendor/select2/select2.min.css", "admin/css/autocomplete.css")


def parse_id(name: str, value: str | None) -> int | None:
    """A customer or peer ID from the URL, or None; anything else is a 400-style error."""
    if value is None or value == "":
        return None
    if not _ID_RE.fullmatch(value):
        raise IncorrectLookupParameters(f"{name} must be an ID, not {value!r}")
    return int(value)


def kept_parameters(changelist: Any, drop: tuple[str, ...]) -> list[tuple[str, str]]:
    """The page's other parameters (search included), for hidden inputs; the page number
    is dropped, since the new selection starts at its first page."""
    skip = {*drop, "p", "e"}
    return [
        (name, value)
        for name, values in changelist.params.items()
        if name not in skip
        for value in (values if isinstance(values, list) else [values])
    ]


class FormFilter(admin.SimpleListFilter):
    """A SimpleListFilter whose parameters are typed in a small form."""

    template = "admin_tools/form_filter.html"
    form_params: tuple[str, ...] = ()

    def __init__(
        self, request: HttpRequest, params: dict, model: type, model_admin: admin.ModelAdmin
    ) -> None:
        # Taken out of `params` before the admin applies them as raw field lookups.
        self.raw = {n: params.pop(n)[-1] for n in self.form_params if n in params}
        super().__init__(request, params, model, model_admin)
        self.model = model
        self.used_parameters.update({k: v for k, v in self.raw.items() if v != ""})

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name, *self.form_params]

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return []

    def form(self, changelist: Any) -> dict[str, Any]:
        raise NotImplementedError

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        form = self.form(changelist)
        form["hidden"] = kept_parameters(changelist, tuple(self.expected_parameters()))
        form["clear"] = changelist.get_query_string(remove=self.expected_parameters())
        yield {"form": form, "selected": bool(self.used_parameters), "display": ""}


class CustomerFilter(FormFilter):
    """Legs of one customer (as source or destination), or of it and everything under
    it at any depth: the API's rule (`customer=ID;recurse=1`, cdrs/scope.py)."""

    title = "customer"
    parameter_name = "customer"
    form_params = ("subtree",)
    # The FK the autocomplete asks about (any FK to Customer on the listed model).
    autocomplete_field = "scustomer"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.customer_id = parse_id(self.parameter_name, self.value())
        self.customer = None
        if self.customer_id is not None:
            self.customer = Customer.objects.filter(pk=self.customer_id).first()
            if self.customer is None:
                raise IncorrectLookupParameters(f"no customer {self.customer_id}")

    @property
    def with_subtree(self) -> bool:
        return self.raw.get("subtree") == "1"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.customer is None:
            return queryset
        if not self.with_subtree:
            return queryset.for_customers([self.customer.pk])
        if self.customer.is_system_owner:
            return queryset  # the whole tree: every leg
        return queryset.for_customers(Customer.objects.subtree(self.customer).values("pk"))

    def form(self, changelist: Any) -> dict[str, Any]:
        meta = self.model._meta
        return {
            "kind": "customer",
            "name": self.parameter_name,
            "value": self.customer_id,
            "label": str(self.customer) if self.customer else "",
            "check": ("subtree", "and its sub-customers (any depth)", self.with_subtree),
            "note": (
                "Cost: what this customer is charged."
                if self.customer
                else "Cost: what each leg's source customer is charged."
            ),
            "autocomplete_url": reverse("admin:autocomplete"),
            "app_label": meta.app_label,
            "model_name": meta.model_name,
            "field_name": self.autocomplete_field,
        }


class StartRangeFilter(FormFilter):
    """Legs by start date, UTC: a range picked on a calendar (`start__gte`, the first
    day, and `start__to`, the last day, both included), or the latest 1, 7 or 30 days of
    the table's own calls (not of the clock: a store of last month's calls still shows
    them). `start__lt` (exclusive) and Unix times or date-times are taken too."""

    title = "start date (UTC)"
    parameter_name = "start_range"
    form_params = ("start__gte", "start__to", "start__lt")
    ranges = {"1d": 1, "7d": 7, "30d": 30}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.bounds: dict[str, int] = {}
        for name, text in self.raw.items():
            if text == "":
                continue
            try:
                moment = parse_unix_time(text)
            except ValueError as error:
                raise IncorrectLookupParameters(f"{name}: {error}") from error
            if name == "start__to":  # the last day, included
                name, moment = "start__lt", moment + DAY
            # Both an end day and an exclusive end: the earlier one holds.
            self.bounds[name] = min(moment, self.bounds.get(name, moment))
        if self.value() is not None and self.value() not in self.ranges:
            raise IncorrectLookupParameters(f"{self.parameter_name}: unknown range")

    def latest_start(self) -> int | None:
        # One step down the (start, uniqueid) index.
        return self.model.objects.order_by("-start").values_list("start", flat=True).first()  # type: ignore[attr-defined]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in self.ranges:
            latest = self.latest_start()
            if latest is not None:
                queryset = queryset.filter(start__gt=latest - self.ranges[self.value()] * DAY)
        if "start__gte" in self.bounds:
            queryset = queryset.filter(start__gte=self.bounds["start__gte"])
        if "start__lt" in self.bounds:
            queryset = queryset.filter(start__lt=self.bounds["start__lt"])
        return queryset

    def form(self, changelist: Any) -> dict[str, Any]:
        low, high = self.bounds.get("start__gte"), self.bounds.get("start__lt")
        quick = [
            {
                "display": f"Latest {days} day{'s' if days > 1 else ''} of calls",
                "selected": self.value() == key,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: key}, list(self.form_params)
                ),
            }
            for key, days in self.ranges.items()
        ]
        return {
            "kind": "dates",
            "first": format_unix_utc(low)[:10] if low is not None else "",
            "last": format_unix_utc(high - 1)[:10] if high is not None else "",
            "quick": quick,
        }


class PeerFilter(admin.SimpleListFilter):
    """Legs through one peer. Peers are few (tens), so each is offered by name."""

    title = "peer"
    parameter_name = "peer"
    max_choices = 100

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        peers = list(Peer.objects.order_by("name", "id")[: self.max_choices])
        chosen = parse_id("peer", self.value())
        if chosen is not None and all(p.pk != chosen for p in peers):
            peers += list(Peer.objects.filter(pk=chosen))
        return [(str(p.pk), str(p)) for p in peers]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        chosen = parse_id("peer", self.value())
        return queryset if chosen is None else queryset.filter(peer_id=chosen)


def readable_utc(value: int | None) -> str:
    """`Sat 31 Oct 2026 14:02` for a Unix time (UTC; the column header says so)."""
    if value is None:
        return ""
    try:
        return datetime.fromtimestamp(value, tz=UTC).strftime("%a %d %b %Y %H:%M")
    except (OverflowError, OSError, ValueError):
        return str(value)


def duration(seconds: int | None) -> str:
    """`1:02:05` or `2:05` (minutes and seconds)."""
    if seconds is None:
        return ""
    sign, seconds = ("-" if seconds < 0 else ""), abs(int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}"
    return f"{sign}{minutes}:{secs:02d}"


__all__ = [
    "AUTOCOMPLETE_CSS",
    "AUTOCOMPLETE_JS",
    "CustomerFilter",
    "PeerFilter",
    "StartRangeFilter",
    "duration",
    "readable_utc",
]
