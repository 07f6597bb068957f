"""Every `cdrs/list` and `cdrs/get` parameter, declared once, mapped to the query.

The declaration order of the filters is the order of the contract's parameter table:
400 entries are reported in that order. Parameters that shape the result rather than
narrow it (archive, cost_customer, sort, descending, limit, offset) are declared here
too, so they are validated in the same pass; `LegFilterSet.rows()` applies them.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import django_filters
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce

from cdrs.costs import CostSource, with_costs
from cdrs.models import ArchivedLeg, Leg, LegBase, fold_case
from customers.models import PREPAID_BILL_TYPES, BillType, Customer, User
from enswitch.api.envelope import InvalidParameters
from enswitch.api.fields import (
    FlagField,
    IdOrWordField,
    IntegerField,
    StringField,
    WordField,
)
from enswitch.api.params import Params

MATCH_MODES = ("contains", "start", "end", "exact")
MATCH_LOOKUPS = {"contains": "contains", "start": "startswith", "end": "endswith", "exact": "exact"}
CUSTOMER_WORDS = ("all", "external", "postpaid", "prepaid", "system")
COST_CUSTOMER_WORDS = ("scustomer", "card")
DIRECTIONS = ("in", "out", "internal")
SORT_FIELDS = (
    "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype", "end",
    "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime", "totaltime",
    "uniqueid",
)  # fmt: skip
OUT_OF_SCOPE = "No such customer, or it is not yours."
# From this offset on, a page is found by its ids first (LegFilterSet.ids_first).
DEEP_OFFSET = 1000


class ParamFilter(django_filters.Filter):
    """A filter whose empty value means "the default", which narrows nothing."""

    def __init__(self, *args: Any, field_class: type | None = None, **kwargs: Any) -> None:
        if field_class is not None:
            self.field_class = field_class
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: Any) -> QuerySet:
        if value is None:
            return qs
        return self.apply(qs, value)

    def apply(self, qs: QuerySet, value: Any) -> QuerySet:
        return qs.filter(**{f"{self.field_name}__{self.lookup_expr}": value})


class ExactFilter(ParamFilter):
    field_class = StringField


class IntegerFilter(ParamFilter):
    field_class = IntegerField

    def __init__(self, *args: Any, ignore: int | None = None, **kwargs: Any) -> None:
        self.ignore = ignore  # the value that means "no restriction" (0 = any, -1 = no limit)
        super().__init__(*args, **kwargs)

    def apply(self, qs: QuerySet, value: int) -> QuerySet:
        return qs if value == self.ignore else super().apply(qs, value)


class DefaultEndFilter(IntegerFilter):
    """`end` defaults to the time of the request."""

    def filter(self, qs: QuerySet, value: int | None) -> QuerySet:
        return self.apply(qs, self.parent.now if value is None else value)


class MatchModeFilter(ParamFilter):
    """A match mode only tells its number filter how to compare."""

    field_class = WordField

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(words=MATCH_MODES, **kwargs)

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        return qs


class MatchFilter(ParamFilter):
    field_class = StringField

    def __init__(self, field_name: str, *, mode: str, fold: bool = False, **kw: Any) -> None:
        self.mode, self.fold = mode, fold
        super().__init__(field_name=field_name, **kw)

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        mode = self.parent.value(self.mode) or "contains"
        needle = fold_case(value) if self.fold else value
        return qs.matching(self.field_name, MATCH_LOOKUPS[mode], needle)


class PhoneFilter(ParamFilter):
    field_class = StringField

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        return qs.filter(stype="phone", snumber=value)


class ShapeFilter(ParamFilter):
    """Validated here, applied elsewhere: by LegFilterSet.rows(), or for `customer` by
    EnswitchFilterSet.filtered() together with the user's scope."""

    def apply(self, qs: QuerySet, value: Any) -> QuerySet:
        return qs


class EnswitchFilterSet(django_filters.FilterSet):
    """Common ground of the two endpoints: validation in contract order, scope checks."""

    scoped_ids: tuple[str, ...] = ()  # parameters whose customer ID must be U or under U

    def __init__(self, params: Params, *, user: User, now: int) -> None:
        # Not super().__init__(): it deep-copies every filter on every request, which
        # was a third of the request's time. A shallow copy per filter is enough, since
        # a filter's only per-request state is its `parent`.
        self.is_bound, self.data, self.form_prefix = True, params.values, None
        self.queryset, self.request = Leg.objects.none(), None
        self.filters = {name: copy.copy(f) for name, f in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model, filter_.parent = Leg, self
        self.params, self.user, self.viewer, self.now = params, user, user.customer, now

    @classmethod
    @cache
    def form_class(cls) -> type:
        fields = {name: f.field for name, f in cls.base_filters.items()}
        return type(f"{cls.__name__}Form", (cls._meta.form,), fields)

    def get_form_class(self) -> type:
        return self.form_class()

    def value(self, name: str) -> Any:
        return self.form.cleaned_data.get(name)

    def validate(self) -> None:
        """Raise InvalidParameters listing every invalid parameter, in contract order."""
        form = self.form
        form.is_valid()
        errors = {name: str(errs[0]) for name, errs in form.errors.items()}
        errors.update((k, msg) for k, msg in self.params.invalid.items() if k in self.filters)
        for name in self.scoped_ids:
            value = form.cleaned_data.get(name)
            if name not in errors and isinstance(value, int) and not self.in_scope(value):
                errors[name] = OUT_OF_SCOPE
        errors.update(self.extra_errors(errors))
        if self.params.body_error:
            errors["body"] = self.params.body_error
        if errors:
            order = list(self.filters) + ["body"]
            raise InvalidParameters(sorted(errors.items(), key=lambda e: order.index(e[0])))

    def extra_errors(self, errors: dict[str, str]) -> dict[str, str]:
        return {}

    def in_scope(self, customer_id: int) -> bool:
        return Customer.objects.subtree(self.viewer).filter(pk=customer_id).exists()

    def cost_source(self, name: str) -> CostSource:
        value = self.value(name)
        if value in COST_CUSTOMER_WORDS:
            return CostSource(kind=value)
        return CostSource(kind="customer", customer_id=self.viewer.pk if value is None else value)

    def rows_for(self, model: type[LegBase], *, cost_param: str) -> QuerySet:
        """One table's legs, visible to the user, filtered, with their cost columns."""
        return self.with_columns(self.filtered(model), model, cost_param=cost_param)

    def filtered(self, model: type[LegBase]) -> QuerySet:
        """One table's legs that the user may see and the parameters select."""
        legs = model.objects.visible_to(self.user, within=self.selected_customers())
        return self.filter_queryset(legs)

    def selected_customers(self) -> QuerySet | list[int] | None:
        """The customers whose legs the parameters ask for; None: all the user may see."""
        return None

    def with_columns(self, qs: QuerySet, model: type[LegBase], *, cost_param: str) -> QuerySet:
        """`qs` with the columns a row shows beyond the leg's own: costs, `archived`."""
        qs = with_costs(qs, viewer=self.viewer, source=self.cost_source(cost_param))
        return qs.annotate(archived=Value(model.ARCHIVED))


class LegFilterSet(EnswitchFilterSet):
    start = IntegerFilter(field_name="start", lookup_expr="gte", minimum=0)
    end = DefaultEndFilter(field_name="start", lookup_expr="lte", minimum=0)
    archive = ShapeFilter(field_class=FlagField)
    callername_match = MatchModeFilter()
    callername_number = MatchFilter("callername_folded", mode="callername_match", fold=True)
    callid = ExactFilter(field_name="callid", lookup_expr="exact")
    cost_customer = ShapeFilter(field_class=IdOrWordField, words=COST_CUSTOMER_WORDS)
    customer = ShapeFilter(field_class=IdOrWordField, words=CUSTOMER_WORDS)
    direction = ExactFilter(
        field_name="direction", lookup_expr="exact", field_class=WordField, words=DIRECTIONS
    )
    invoice = IntegerFilter(field_name="invoice_id", lookup_expr="exact", minimum=0, ignore=0)
    limit = ShapeFilter(field_class=IntegerField, minimum=0)
    offset = ShapeFilter(field_class=IntegerField, minimum=0)
    peer = IntegerFilter(field_name="peer_id", lookup_expr="exact", minimum=0, ignore=0)
    phone = PhoneFilter()
    recurse = ShapeFilter(field_class=FlagField)
    status = ExactFilter(field_name="status", lookup_expr="exact")
    talktime_maximum = IntegerFilter(
        field_name="talktime", lookup_expr="lte", minimum=-1, ignore=-1
    )
    talktime_minimum = IntegerFilter(field_name="talktime", lookup_expr="gte", minimum=0, ignore=0)
    stype = ExactFilter(field_name="stype", lookup_expr="exact")
    smatch = MatchModeFilter()
    snumber = MatchFilter("snumber", mode="smatch")
    ctype = ExactFilter(field_name="ctype", lookup_expr="exact")
    cmatch = MatchModeFilter()
    cnumber = MatchFilter("cnumber", mode="cmatch")
    dtype = ExactFilter(field_name="dtype", lookup_expr="exact")
    dmatch = MatchModeFilter()
    dnumber = MatchFilter("dnumber", mode="dmatch")
    sort = ShapeFilter(field_class=WordField, words=SORT_FIELDS)
    descending = ShapeFilter(field_class=FlagField)

    scoped_ids = ("cost_customer", "customer")

    class Meta:
        model = Leg
        fields: list[str] = []

    def selected_customers(self) -> QuerySet | list[int] | None:
        """The customer set S of the contract's table; None means every customer."""
        value, recurse, viewer = self.value("customer"), self.value("recurse") == 1, self.viewer
        customers = Customer.objects.all()
        if value == "system":
            return None
        if value is None or isinstance(value, int):
            root_id = viewer.pk if value is None else value
            if not recurse:
                return [root_id]
            root = viewer if root_id == viewer.pk else customers.get(pk=root_id)
            if root.is_system_owner:
                return None
            return customers.subtree(root)
        if recurse:
            chosen = customers.subtree(viewer, include_self=False)
        else:
            chosen = customers.children_of(viewer)
        if value == "prepaid":
            chosen = chosen.filter(bill_type__in=PREPAID_BILL_TYPES)
        elif value in ("postpaid", "external"):
            chosen = chosen.filter(bill_type=BillType(value))
        return chosen

    def sort_expression(self) -> Any:
        name = self.value("sort") or "start"
        if name == "name":
            return F("callername")
        if name == "totaltime":
            return F("end") - F("start")
        if name == "cost":
            return F("row_cost")
        if name in ("dcustomer", "peer"):
            # Rows show 0 for "none"; sorting must agree (and NULL placement differs
            # between the databases).
            return Coalesce(F(f"{name}_id"), Value(0))
        if name == "scustomer":
            return F("scustomer_id")
        return F(name)

    def ordered(self, qs: QuerySet) -> QuerySet:
        if self.value("descending") == 1:
            return qs.order_by(F("sort_key").desc(), F("uniqueid").desc())
        return qs.order_by(F("sort_key").asc(), F("uniqueid").asc())

    def sorted_rows(self, model: type[LegBase], columns: tuple[str, ...]) -> QuerySet:
        """One table's rows as `columns` tuples, with the sort key they are ordered by."""
        return (
            self.rows_for(model, cost_param="cost_customer")
            .annotate(sort_key=self.sort_expression())
            .values_list(*columns, "sort_key")
        )

    def rows(self, columns: tuple[str, ...]) -> QuerySet:
        """The whole answer as one ordered, sliced query of `columns` tuples."""
        offset, limit = self.value("offset") or 0, self.value("limit") or 0
        if self.value("archive") == 1:
            both = self.sorted_rows(Leg, columns).union(
                self.sorted_rows(ArchivedLeg, columns), all=True
            )
            return _page(self.ordered(both), offset, limit)
        if self.ids_first():
            return self.page_by_ids(columns, offset, limit)
        return _page(self.ordered(self.sorted_rows(Leg, columns)), offset, limit)

    def ids_first(self) -> bool:
        """Whether rows() finds the page's live legs first and builds rows for those only.

        Yes for a page far down the list: skipping 100,000 rows costs little when each
        is an index entry, a lot when each is a full row with its cost record joined.
        Yes for a page in any order but start's: every leg the filters pass must be
        looked at to know which come first, and that is cheaper with only its id and
        sort key than with every column and two amounts converted into the viewer's
        currency. Yes for a search by called number: the (cnumber, start) index
        carries the id, the sort key and the customers, so the legs outside the scope
        or the time range are rejected without reading them. Not for a whole export
        (limit=0): all its rows are built anyway.
        """
        offset, limit = self.value("offset") or 0, self.value("limit") or 0
        sort = self.value("sort") or "start"
        if self.value("archive") == 1:
            return False  # one UNION ALL of both tables, see rows()
        if limit:
            return offset >= DEEP_OFFSET or sort != "start" or bool(self.value("cnumber"))
        return offset >= DEEP_OFFSET and sort != "cost"

    def page_by_ids(self, columns: tuple[str, ...], offset: int, limit: int) -> QuerySet:
        """The page's legs' ids in order (from the covering start/uniqueid index when the
        sort is by start), then the rows of those legs only."""
        legs = self.filtered(Leg)
        if (self.value("sort") or "start") == "cost":
            legs = with_costs(legs, viewer=self.viewer, source=self.cost_source("cost_customer"))
        ids = self.ordered(legs.annotate(sort_key=self.sort_expression())).values("pk")
        # The ids were chosen under the user's scope and every filter above: the rows
        # need nothing more than the ids.
        page = Leg.objects.filter(pk__in=_page(ids, offset, limit))
        rows = self.with_columns(page, Leg, cost_param="cost_customer")
        return self.ordered(
            rows.annotate(sort_key=self.sort_expression()).values_list(*columns, "sort_key")
        )


def _page(qs: QuerySet, offset: int, limit: int) -> QuerySet:
    """`limit=0` means all the rows after `offset`."""
    return qs[offset : offset + limit] if limit else qs[offset:]


class LegGetFilterSet(EnswitchFilterSet):
    uniqueid = ExactFilter(field_name="uniqueid", lookup_expr="exact")
    customer = ShapeFilter(field_class=IdOrWordField, words=())

    scoped_ids = ("customer",)

    class Meta:
        model = Leg
        fields: list[str] = []

    def extra_errors(self, errors: dict[str, str]) -> dict[str, str]:
        if "uniqueid" not in errors and self.value("uniqueid") is None:
            return {"uniqueid": "Is required."}
        return {}

    def row(self, columns: tuple[str, ...], *, archive: bool) -> tuple | None:
        models = [Leg, ArchivedLeg] if archive else [Leg]
        for model in models:
            found = self.rows_for(model, cost_param="customer").values_list(*columns).first()
            if found is not None:
                return found
        return None
