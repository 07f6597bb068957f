"""The `cdrs/list` and `cdrs/get` parameters that narrow the legs, as django-filter FilterSets.

Every filter narrows the legs, or leaves them as they are when its parameter is empty
(or holds the value the contract gives for "any"). The match modes (`smatch`, ...) are
fields of LegFilterSet's form, not filters: they only tell a number filter how to
compare. What shapes the answer instead (whose legs, whose costs, archive, order,
paging) is cdrs/parameters.py's; cdrs/queries.py puts both together.

Filters are declared in the order of the contract's parameter table, which is also the
order their conditions take in the SQL.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from cdrs.models import Leg, fold_case
from enswitch.api.fields import IntegerField, StringField, WordField

MATCH_MODES = ("contains", "start", "end", "exact")
MATCH_LOOKUPS = {"contains": "contains", "start": "startswith", "end": "endswith", "exact": "exact"}
DIRECTIONS = ("in", "out", "internal")
# The match mode parameter of each matched column, and the columns matched without case.
MATCH_MODE_OF = {
    "callername_folded": "callername_match",
    "snumber": "smatch",
    "cnumber": "cmatch",
    "dnumber": "dmatch",
}
FOLDED = {"callername_folded"}


class LegFilter(django_filters.Filter):
    """A filter on an Enswitch parameter (a StringField unless `field_class` says otherwise).

    `any_value` is the value that, like an empty parameter, narrows nothing (0 for
    `invoice`, -1 for `talktime_maximum`).
    """

    field_class = StringField

    def __init__(
        self,
        field_name: str | None = None,
        lookup_expr: str = "exact",
        *,
        field_class: type[forms.Field] | None = None,
        any_value: int | None = None,
        **kwargs: Any,
    ) -> None:
        if field_class is not None:
            self.field_class = field_class
        self.any_value = any_value
        super().__init__(field_name, lookup_expr, **kwargs)

    def filter(self, qs: QuerySet, value: Any) -> QuerySet:
        if value is not None and value == self.any_value:
            return qs
        return super().filter(qs, value)


class EndFilter(LegFilter):
    """`end` defaults to the time of the request."""

    def filter(self, qs: QuerySet, value: int | None) -> QuerySet:
        return super().filter(qs, self.parent.now if value is None else value)


class _FilterCopies(dict):
    def __deepcopy__(self, memo: dict) -> dict[str, django_filters.Filter]:
        copies = {}
        for name, filter_ in self.items():
            copies[name] = clone = copy.copy(filter_)
            if filter_.method is not None:
                clone.method = filter_.method  # binds the method to the copy, not the original
        return copies


class EnswitchFilterSet(django_filters.FilterSet):
    """A FilterSet whose per-request set-up copies only what a request changes.

    django-filter deep-copies every filter (and its form field) for each FilterSet and
    builds a form class each time; a request is short enough for that to show. Here
    `get_filters()` hands the metaclass a mapping whose deep copy is a shallow copy of
    each filter (a filter's only per-request state is `parent` and `model`, which
    FilterSet.__init__ sets), and the form class is built once per FilterSet class (its
    fields are copied by each form, as Django does).
    """

    @classmethod
    def get_filters(cls) -> dict[str, django_filters.Filter]:
        filters = super().get_filters()
        for filter_ in filters.values():
            filter_.field  # noqa: B018 - made once here, shared by every copy
        return _FilterCopies(filters)

    @classmethod
    @cache
    def form_class(cls) -> type[forms.Form]:
        fields = {name: f.field for name, f in cls.base_filters.items()}
        return type(f"{cls.__name__}Form", (cls._meta.form,), fields)

    def get_form_class(self) -> type[forms.Form]:
        return self.form_class()

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        # Only filters narrow: the form may hold other fields (the match modes).
        data = self.form.cleaned_data
        for name, filter_ in self.filters.items():
            queryset = filter_.filter(queryset, data.get(name))
        return queryset


class MatchModes(forms.Form):
    """How each number (and the caller name) is matched: part of LegFilterSet's form."""

    callername_match = WordField(words=MATCH_MODES)
    smatch = WordField(words=MATCH_MODES)
    cmatch = WordField(words=MATCH_MODES)
    dmatch = WordField(words=MATCH_MODES)


class LegFilterSet(EnswitchFilterSet):
    start = LegFilter("start", "gte", field_class=IntegerField, minimum=0)
    end = EndFilter("start", "lte", field_class=IntegerField, minimum=0)
    callername_number = LegFilter("callername_folded", method="match")
    callid = LegFilter("callid")
    direction = LegFilter("direction", field_class=WordField, words=DIRECTIONS)
    invoice = LegFilter("invoice_id", field_class=IntegerField, minimum=0, any_value=0)
    peer = LegFilter("peer_id", field_class=IntegerField, minimum=0, any_value=0)
    phone = LegFilter(method="from_phone")
    status = LegFilter("status")
    talktime_maximum = LegFilter(
        "talktime", "lte", field_class=IntegerField, minimum=-1, any_value=-1
    )
    talktime_minimum = LegFilter(
        "talktime", "gte", field_class=IntegerField, minimum=0, any_value=0
    )
    stype = LegFilter("stype")
    snumber = LegFilter("snumber", method="match")
    ctype = LegFilter("ctype")
    cnumber = LegFilter("cnumber", method="match")
    # What clients of deployed Enswitch systems send: a number inside snumber / cnumber.
    caller_number = LegFilter("snumber", method="contains")
    called_number = LegFilter("cnumber", method="contains")
    dtype = LegFilter("dtype")
    dnumber = LegFilter("dnumber", method="match")

    class Meta:
        model = Leg
        fields: list[str] = []
        form = MatchModes

    def __init__(self, data: dict[str, str], *, now: int) -> None:
        self.now = now  # the default `end`
        super().__init__(data, queryset=Leg.objects.none())

    def match(self, qs: QuerySet, column: str, value: str) -> QuerySet:
        mode = self.form.cleaned_data.get(MATCH_MODE_OF[column]) or "contains"
        needle = fold_case(value) if column in FOLDED else value
        return qs.matching(column, MATCH_LOOKUPS[mode], needle)

    def contains(self, qs: QuerySet, column: str, value: str) -> QuerySet:
        return qs.matching(column, "contains", value)

    def from_phone(self, qs: QuerySet, column: str, value: str) -> QuerySet:
        return qs.filter(stype="phone", snumber=value)


class LegGetFilterSet(EnswitchFilterSet):
    uniqueid = LegFilter("uniqueid")

    class Meta:
        model = Leg
        fields: list[str] = []

    def __init__(self, data: dict[str, str]) -> None:
        super().__init__(data, queryset=Leg.objects.none())
