"""Admin pages for call legs and their costs, live and archived.

These tables hold millions of rows. Every list here avoids the admin's full-table
COUNT(*) (LargeTableAdminMixin), orders by an indexed column, searches only with exact
or prefix lookups, filters with fixed choices (never SELECT DISTINCT over the table),
and edits foreign keys by ID (no dropdown of every customer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegBase, LegCost
from enswitch.admin_tools.index_search import IdSearchMixin
from enswitch.admin_tools.large_tables import LargeTableAdminMixin
from enswitch.admin_tools.unix_times import UnixTimeFormField, format_unix_utc, parse_unix_time
from enswitch.admin_tools.url_lookups import SecretLookupGuard

ARCHIVE_NOTE = (
    "ARCHIVE: legs moved out of the live tables. The API shows them only with "
    "archive=1, to roles with the archive privilege."
)

# Statuses seen on real switches; a filter over SELECT DISTINCT status would scan the
# whole table. Any other status can still be chosen with ?status=<word> in the URL.
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


class StartRangeFilter(admin.SimpleListFilter):
    """Legs by start time: today / last 7 days / last 30 days (UTC), or any range with
    `?start__gte=...&start__lt=...`, each a date (`2024-01-31`, midnight UTC), a
    date-time or a Unix time. Both use the index on start."""

    title = "start (UTC)"
    parameter_name = "start_range"
    bound_params = ("start__gte", "start__lt")
    ranges = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days"}

    def __init__(
        self, request: HttpRequest, params: dict, model: type, model_admin: admin.ModelAdmin
    ) -> None:
        # Taken out of `params` before the admin applies them as raw lookups (it would
        # refuse a date for an integer column).
        raw = {name: params.pop(name)[-1] for name in self.bound_params if name in params}
        super().__init__(request, params, model, model_admin)
        self.bounds: dict[str, int] = {}
        for name, text in raw.items():
            try:
                self.bounds[name] = parse_unix_time(text)
            except ValueError as error:
                raise IncorrectLookupParameters(f"{name}: {error}") from error
            self.used_parameters[name] = text
        if self.value() is not None and self.value() not in self.ranges:
            raise IncorrectLookupParameters(f"{self.parameter_name}: unknown range")

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return list(self.ranges.items())

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name, *self.bound_params]

    def range_start(self, now: datetime) -> int | None:
        value = self.value()
        if value == "today":
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return int(midnight.timestamp())
        if value == "7d":
            return int((now - timedelta(days=7)).timestamp())
        if value == "30d":
            return int((now - timedelta(days=30)).timestamp())
        return None

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        start = self.range_start(datetime.now(tz=UTC))
        if start is not None:
            queryset = queryset.filter(start__gte=start)
        if "start__gte" in self.bounds:
            queryset = queryset.filter(start__gte=self.bounds["start__gte"])
        if "start__lt" in self.bounds:
            queryset = queryset.filter(start__lt=self.bounds["start__lt"])
        return queryset

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None and not self.bounds,
            "query_string": changelist.get_query_string(remove=self.expected_parameters()),
            "display": "All",
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value and not self.bounds,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value}, list(self.bound_params)
                ),
                "display": label,
            }
        if self.bounds:
            low = self.bounds.get("start__gte")
            high = self.bounds.get("start__lt")
            yield {
                "selected": True,
                "query_string": changelist.get_query_string(),
                "display": "From {} to {}".format(
                    format_unix_utc(low) if low is not None else "the beginning",
                    format_unix_utc(high) if high is not None else "now",
                ),
            }


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
    """Shared by the live and the archived legs; subclasses set the cost inline."""

    form = LegForm
    list_display = (
        "uniqueid",
        "callid",
        "start_utc",
        "end_utc",
        "talktime",
        "totaltime_display",
        "status",
        "direction",
        "snumber",
        "cnumber",
        "dnumber",
        "scustomer",
        "dcustomer",
    )
    list_filter = ("direction", StatusFilter, StartRangeFilter)
    # Explicit case-sensitive lookups: `uniqueid = x` and `snumber LIKE 'x%'` on the
    # "C"-collated columns can use a btree; Django's `=`/`^` would compare UPPER()s.
    search_fields = (
        "uniqueid__exact",
        "callid__exact",
        "snumber__startswith",
        "cnumber__startswith",
        "dnumber__startswith",
    )
    search_help_text = (
        "Exact uniqueid or callid, or the start of a source, called or destination number."
    )
    # (start, uniqueid) is the index every query uses; uniqueid also makes it total.
    ordering = ("-start", "-uniqueid")
    # Only indexed columns: sorting millions of rows by anything else means a full
    # scan and sort on every page.
    sortable_by = ("uniqueid", "start_utc")
    list_select_related = ("scustomer", "dcustomer")
    raw_id_fields = ("scustomer", "dcustomer", "peer", "invoice", "card")
    readonly_fields = ("start_utc", "end_utc", "totaltime_display", "callername_folded")
    fieldsets = (
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


@admin.register(Leg)
class LegAdmin(LegAdminBase):
    inlines = (LegCostInline,)


@admin.register(ArchivedLeg)
class ArchivedLegAdmin(LegAdminBase):
    inlines = (ArchivedLegCostInline,)
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
