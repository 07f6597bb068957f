"""A `cdrs/list` or `cdrs/get` request's parameters, validated in one pass.

Two kinds of parameters: those that narrow the legs (cdrs/filters.py's FilterSets,
with the match modes) and those that shape the answer (`ListShapeForm`: whose legs,
whose costs, archive, order, paging). Both forms are validated together, with the
customer IDs checked against the user's scope, so that every invalid parameter gets
its 400 entry, in the order of the contract's parameter table (`LIST_PARAMETERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms

from cdrs.filters import LegFilterSet, LegGetFilterSet
from cdrs.scope import Scope
from customers.models import User
from enswitch.api.envelope import InvalidParameters
from enswitch.api.fields import FlagField, IdOrWordField, IntegerField, WordField
from enswitch.api.params import Params

CUSTOMER_WORDS = ("all", "external", "postpaid", "prepaid", "system")
COST_CUSTOMER_WORDS = ("scustomer", "card")
SORT_FIELDS = (
    "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype", "end",
    "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime", "totaltime",
    "uniqueid",
)  # fmt: skip
OUT_OF_SCOPE = "No such customer, or it is not yours."
REQUIRED = "Is required."

# The contract's parameter tables, in their order (the credentials aside).
LIST_PARAMETERS = (
    "start", "end", "archive", "callername_match", "callername_number", "callid",
    "cost_customer", "customer", "direction", "invoice", "limit", "offset", "peer", "phone",
    "recurse", "status", "talktime_maximum", "talktime_minimum", "stype", "smatch", "snumber",
    "ctype", "cmatch", "cnumber", "caller_number", "called_number", "dtype", "dmatch", "dnumber",
    "sort", "descending",
)  # fmt: skip
GET_PARAMETERS = ("uniqueid", "customer")
TOTALS_PARAMETERS = ("start", "end", "customer", "recurse")


class ListShapeForm(forms.Form):
    """The cdrs/list parameters that shape the answer rather than narrow the legs."""

    archive = FlagField()
    cost_customer = IdOrWordField(words=COST_CUSTOMER_WORDS)
    customer = IdOrWordField(words=CUSTOMER_WORDS)
    limit = IntegerField(minimum=0)
    offset = IntegerField(minimum=0)
    recurse = FlagField()
    sort = WordField(words=SORT_FIELDS)
    descending = FlagField()


class GetShapeForm(forms.Form):
    """cdrs/get's `customer` chooses the cost record only, so it takes no word."""

    customer = IdOrWordField(words=())


class TotalsForm(forms.Form):
    """cdrs/totals/list: which hours, which customers."""

    start = IntegerField(minimum=0)
    end = IntegerField(minimum=0)
    customer = IdOrWordField(words=CUSTOMER_WORDS)
    recurse = FlagField()


@dataclass(frozen=True)
class ListShape:
    """ListShapeForm's values, with the contract's defaults filled in."""

    customer: int | str | None  # an ID, a word of CUSTOMER_WORDS, or None: the user's own
    recurse: bool
    cost_customer: int | str | None  # an ID, a word of COST_CUSTOMER_WORDS, or None: own
    archive: bool
    sort: str
    descending: bool
    limit: int  # 0: every row
    offset: int

    @classmethod
    def from_form(cls, data: dict[str, Any]) -> ListShape:
        return cls(
            customer=data["customer"],
            recurse=data["recurse"] == 1,
            cost_customer=data["cost_customer"],
            archive=data["archive"] == 1,
            sort=data["sort"] or "start",
            descending=data["descending"] == 1,
            limit=data["limit"] or 0,
            offset=data["offset"] or 0,
        )


@dataclass(frozen=True)
class ListRequest:
    """A valid cdrs/list request: who asks, which legs, and how the answer is shaped."""

    user: User
    scope: Scope
    filters: LegFilterSet
    shape: ListShape


@dataclass(frozen=True)
class GetRequest:
    user: User
    scope: Scope
    filters: LegGetFilterSet
    cost_customer: int | None  # None: the user's own customer


@dataclass(frozen=True)
class Selection:
    """Whose legs: `customer` and `recurse` as cdrs/list takes them."""

    customer: int | str | None  # an ID, a word of CUSTOMER_WORDS, or None: the user's own
    recurse: bool


@dataclass(frozen=True)
class TotalsRequest:
    user: User
    scope: Scope
    shape: Selection
    start: int  # hours that begin at or after it
    end: int  # hours that end at or before it


def parse_totals(params: Params, *, user: User, now: int) -> TotalsRequest:
    scope = Scope(user.customer)
    form = TotalsForm(params.values)
    _validate(params, [form], TOTALS_PARAMETERS, scope, ids=("customer",))
    data = form.cleaned_data
    shape = Selection(customer=data["customer"], recurse=data["recurse"] == 1)
    end = now if data["end"] is None else data["end"]
    return TotalsRequest(user, scope, shape, start=data["start"] or 0, end=end)


def parse_list(params: Params, *, user: User, now: int) -> ListRequest:
    """The request, or InvalidParameters listing every invalid parameter in table order."""
    scope = Scope(user.customer)
    filters = LegFilterSet(params.values, now=now)
    shape = ListShapeForm(params.values)
    _validate(
        params, [filters.form, shape], LIST_PARAMETERS, scope, ids=("cost_customer", "customer")
    )
    return ListRequest(user, scope, filters, ListShape.from_form(shape.cleaned_data))


def parse_get(params: Params, *, user: User) -> GetRequest:
    scope = Scope(user.customer)
    filters = LegGetFilterSet(params.values)
    shape = GetShapeForm(params.values)
    _validate(
        params, [filters.form, shape], GET_PARAMETERS, scope, ids=("customer",), required="uniqueid"
    )
    return GetRequest(user, scope, filters, shape.cleaned_data["customer"])


def _validate(
    params: Params,
    forms_: list[forms.Form],
    order: tuple[str, ...],
    scope: Scope,
    *,
    ids: tuple[str, ...],
    required: str = "",
) -> None:
    """`ids`: parameters that name a customer, which must be in the scope."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for form in forms_:
        form.is_valid()
        errors.update((name, str(errs[0])) for name, errs in form.errors.items())
        values.update(form.cleaned_data)
    errors.update((k, msg) for k, msg in params.invalid.items() if k in order)
    for name in ids:  # IDs outside the scope and unknown IDs get the same answer
        value = values.get(name)
        if name not in errors and isinstance(value, int) and not scope.includes(value):
            errors[name] = OUT_OF_SCOPE
    if required and required not in errors and values.get(required) is None:
        errors[required] = REQUIRED
    if params.body_error:
        errors["body"] = params.body_error
    if errors:
        rank = {name: i for i, name in enumerate((*order, "body"))}
        raise InvalidParameters(sorted(errors.items(), key=lambda e: rank[e[0]]))


def parameter_fields(endpoint: str) -> dict[str, forms.Field]:
    """Each parameter's form field, in table order (for the OpenAPI description)."""
    if endpoint == "totals":
        return {name: TotalsForm.base_fields[name] for name in TOTALS_PARAMETERS}
    if endpoint == "list":
        filters, shape, order = LegFilterSet, ListShapeForm, LIST_PARAMETERS
    else:
        filters, shape, order = LegGetFilterSet, GetShapeForm, GET_PARAMETERS
    fields = {**filters.form_class().base_fields, **shape.base_fields}
    return {name: fields[name] for name in order}
