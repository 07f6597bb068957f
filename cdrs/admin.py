"""Admin pages for call legs and their costs, live and archived.

These tables hold millions of rows. Every list here avoids the admin's full-table
COUNT(*) (LargeTableAdminMixin), orders by an indexed column, searches only with exact
or prefix lookups, filters with fixed choices (never SELECT DISTINCT over the table),
and edits foreign keys by ID (no dropdown of every customer).
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import F, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Lower
from django.db.models.lookups import Contains
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegBase, LegCost, fold_case
from customers.models import Customer
from enswitch.admin_tools.archive_actions import archive_selected, restore_selected
from enswitch.admin_tools.call_view import call_legs, money
from enswitch.admin_tools.index_search import IdSearchMixin
from enswitch.admin_tools.large_tables import LargeTableAdminMixin
from enswitch.admin_tools.leg_filters import (
    AUTOCOMPLETE_CSS,
    AUTOCOMPLETE_JS,
    CustomerFilter,
    PeerFilter,
    StartRangeFilter,
    duration,
    readable_utc,
)
from enswitch.admin_tools.unix_times import UnixTimeFormField, format_unix_utc
from enswitch.admin_tools.url_lookups import SecretLookupGuard

ARCHIVE_NOTE = (
    "ARCHIVE: legs moved out of the live tables. The API shows them only with "
    "archive=1, to roles with the archive privilege."
)

# Statuses seen on real switches; a filter over SELECT DISTINCT status would scan the
# whole table. Any other status can still be chosen with ?status=<word> in the URL.
_DIGITS = re.compile(r"[0-9]{1,18}")
# A search for part of a customer's name takes the legs of at most this many customers.
MAX_NAMED_CUSTOMERS = 200

COMMON_STATUSES = ("answer", "noanswer", "busy", "cancel", "congestion", "chanunavail", "failed")


# --- Filters --------------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        choices = [(s, s) for s in COMMON_STATUSES]
        value = self.value()
        if value and value not in COMMON_STATUSES:
            choices.append((value, value))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset if value is None else queryset.filter(status=value)


class CostHolderFilter(admin.SimpleListFilter):
    title = "charged to"
    parameter_name = "charged_to"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("customer", "a customer"), ("card", "a card")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "customer":
            return queryset.filter(customer__isnull=False)
        if self.value() == "card":
            return queryset.filter(card__isnull=False)
        return queryset


# --- Legs -----------------------------------------------------------------------------


class LegForm(forms.ModelForm):
    start = UnixTimeFormField()
    end = UnixTimeFormField()


class CostInlineBase(admin.TabularInline):
    fields = ("customer", "card", "cost", "tax", "currency")
    raw_id_fields = ("customer", "card")
    extra = 0


class LegCostInline(CostInlineBase):
    model = LegCost


class ArchivedLegCostInline(CostInlineBase):
    model = ArchivedLegCost


class LegAdminBase(SecretLookupGuard, LargeTableAdminMixin, admin.ModelAdmin):
    """Shared by the live and the archived legs; subclasses set the cost inline and the
    move action."""

    form = LegForm
    list_display = (
        "start_display",
        "duration_display",
        "status_display",
        "from_display",
        "to_display",
        "caller",
        "peer_display",
        "cost_display",
    )
    list_display_links = ("start_display",)
    # A screenful or two; rendering a row costs more than finding it.
    list_per_page = 50
    list_filter = (CustomerFilter, StartRangeFilter, "direction", StatusFilter, PeerFilter)
    search_help_text = (
        "Exact uniqueid or callid; the start of a source, called or destination number; "
        "or part of a caller name or of a customer's name (any case)."
    )
    # (start, uniqueid) is the index every query uses; uniqueid also makes it total.
    ordering = ("-start", "-uniqueid")
    # Only indexed columns: sorting millions of rows by anything else means a full
    # scan and sort on every page.
    sortable_by = ("start_display",)
    list_select_related = ("scustomer", "dcustomer", "peer")
    raw_id_fields = ("scustomer", "dcustomer", "peer", "invoice", "card")
    readonly_fields = (
        "start_utc",
        "end_utc",
        "totaltime_display",
        "callername_folded",
        "whole_call",
    )
    fieldsets = (
        ("The whole call", {"fields": ("whole_call",)}),
        (None, {"fields": ("uniqueid", "callid", "status", "direction")}),
        (
            "Time",
            {"fields": ("start", "start_utc", "end", "end_utc", "talktime", "totaltime_display")},
        ),
        (
            "Numbers",
            {
                "fields": (
                    ("stype", "snumber"),
                    ("ctype", "cnumber"),
                    ("dtype", "dnumber"),
                    "callername",
                    "callername_folded",
                )
            },
        ),
        (
            "Customers and billing",
            {"fields": ("scustomer", "dcustomer", "peer", "invoice", "card")},
        ),
    )

    class Media:
        js = AUTOCOMPLETE_JS
        css = {"screen": (*AUTOCOMPLETE_CSS, "admin_tools/admin.css")}

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return ("uniqueid",)  # shows the search box; get_search_results does the work

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return (queryset.filter(search_condition(term)), False) if term else (queryset, False)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        cost_model = self.model._meta.get_field("costs").related_model
        costs = cost_model.objects.select_related("customer", "card").order_by("id")
        queryset = super().get_queryset(request).prefetch_related(Prefetch("costs", costs))
        # The cost shown is the filtered customer's (the one the operator looks at).
        chosen = request.GET.get(CustomerFilter.parameter_name, "")
        if _DIGITS.fullmatch(chosen):
            queryset = queryset.annotate(cost_for=Value(int(chosen)))
        return queryset

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj: LegBase) -> str:
        # The same markup as Django's, without rendering a form widget per row (the
        # most expensive cell of the list).
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            obj,
        )

    @admin.display(description="start (UTC)", ordering="start")
    def start_display(self, obj: LegBase) -> str:
        return readable_utc(obj.start)

    @admin.display(description="talk / total")
    def duration_display(self, obj: LegBase) -> str:
        return format_html(
            '{}<span class="sub">{}</span>', duration(obj.talktime), duration(obj.totaltime)
        )

    @admin.display(description="status", ordering=None)
    def status_display(self, obj: LegBase) -> str:
        return format_html('{}<span class="sub">{}</span>', obj.status, obj.direction)

    @admin.display(description="from")
    def from_display(self, obj: LegBase) -> str:
        return format_html(
            '<span class="num">{}</span><span class="sub">{}</span>',
            obj.snumber,
            obj.scustomer.name,
        )

    @admin.display(description="to")
    def to_display(self, obj: LegBase) -> str:
        who = obj.dcustomer.name if obj.dcustomer_id else obj.dnumber
        return format_html(
            '<span class="num">{}</span><span class="sub">{}</span>', obj.cnumber, who
        )

    @admin.display(description="caller name")
    def caller(self, obj: LegBase) -> str:
        return obj.callername

    @admin.display(description="peer")
    def peer_display(self, obj: LegBase) -> str:
        return obj.peer.name or f"#{obj.peer_id}" if obj.peer_id else ""

    @admin.display(description="cost")
    def cost_display(self, obj: LegBase) -> str:
        """The filtered customer's cost record, else the source customer's."""
        customer_id = getattr(obj, "cost_for", None) or obj.scustomer_id
        for cost in obj.costs.all():
            if cost.customer_id == customer_id:
                return format_html(
                    '<span title="charged to {}">{}</span>',
                    cost.customer,
                    money(cost.cost, cost.currency_id, places=4),
                )
        return "-"

    @admin.display(description="legs of this call")
    def whole_call(self, obj: LegBase) -> str:
        if obj.pk is None:
            return "-"
        return call_legs([Leg, ArchivedLeg], obj)

    @admin.display(description="start (UTC)", ordering="start")
    def start_utc(self, obj: LegBase) -> str:
        return format_unix_utc(obj.start)

    @admin.display(description="end (UTC)", ordering="end")
    def end_utc(self, obj: LegBase) -> str:
        return format_unix_utc(obj.end)

    @admin.display(description="totaltime", ordering=F("end") - F("start"))
    def totaltime_display(self, obj: LegBase) -> int | str:
        if obj.start is None or obj.end is None:
            return "-"
        return obj.totaltime

    def save_model(self, request: HttpRequest, obj: LegBase, form: Any, change: bool) -> None:
        # LegBase.save() fills callername_folded, which the API's name search reads.
        obj.save()


def search_condition(term: str) -> Q:
    """What the leg lists' search box matches: the whole text as one term (a caller name
    has spaces), each alternative an indexed lookup (exact; a prefix of a "C"-collated
    column; part of the folded caller name, a trigram index on PostgreSQL), and customers
    by name through their IDs (the customer table is small)."""
    condition = (
        Q(uniqueid=term)
        | Q(callid=term)
        | Q(snumber__startswith=term)
        | Q(cnumber__startswith=term)
        | Q(dnumber__startswith=term)
        | Q(callername_folded__contains=fold_case(term))
    )
    customers = list(
        Customer.objects.filter(Contains(Lower("name"), term.lower()))
        .order_by("id")
        .values_list("pk", flat=True)[:MAX_NAMED_CUSTOMERS]
    )
    if customers:
        condition |= Q(scustomer_id__in=customers) | Q(dcustomer_id__in=customers)
    return condition


@admin.register(Leg)
class LegAdmin(LegAdminBase):
    inlines = (LegCostInline,)
    actions = (archive_selected,)


@admin.register(ArchivedLeg)
class ArchivedLegAdmin(LegAdminBase):
    inlines = (ArchivedLegCostInline,)
    actions = (restore_selected,)
    page_note = ARCHIVE_NOTE


# --- Costs ----------------------------------------------------------------------------


class CostAdminBase(SecretLookupGuard, LargeTableAdminMixin, IdSearchMixin, admin.ModelAdmin):
    list_display = ("id", "leg", "customer", "card", "cost", "tax", "currency")
    list_filter = (CostHolderFilter, "currency")
    list_select_related = ("leg", "customer", "card", "currency")
    raw_id_fields = ("leg", "customer", "card")
    search_id_fields = ("customer_id", "card_id", "leg_id")
    sortable_by = ("id", "leg")  # indexed; the others would sort the whole table
    search_help_text = "Exact leg uniqueid, or exact customer, card or leg ID."
    ordering = ("-id",)

    def search_term_condition(self, term: str) -> Q:
        # The leg by uniqueid as a subquery, not a join: each alternative is then one
        # index lookup (PostgreSQL ORs them as bitmaps) instead of a join of two tables.
        leg_model = self.model._meta.get_field("leg").related_model
        legs = leg_model.objects.filter(uniqueid=term).values("pk")
        return super().search_term_condition(term) | Q(leg__in=legs)


@admin.register(LegCost)
class LegCostAdmin(CostAdminBase):
    pass


@admin.register(ArchivedLegCost)
class ArchivedLegCostAdmin(CostAdminBase):
    page_note = ARCHIVE_NOTE
