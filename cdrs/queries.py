"""The query behind an answer: the legs a request selects, ordered, paged, as rows.

Every query starts from `LegQuerySet.visible_to` (the user's scope, cut down to the
customers the request names), is narrowed by the request's FilterSet, gets the
columns a row shows beyond the leg's own (its cost, `archived`), and is ordered by
the sort key, then `uniqueid`. `archive=1` is one UNION ALL of both tables, so one
statement and one snapshot; on a Citus cluster the UNION ALL is a subquery in FROM, which
Citus runs on each pair of co-located shards as one statement (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce
from django.db.models.sql import Query

from cdrs.costs import CostSource, with_costs
from cdrs.models import ArchivedLeg, CallTotals, Leg, LegBase
from cdrs.parameters import COST_CUSTOMER_WORDS, GetRequest, ListRequest, TotalsRequest
from cdrs.scope import Scope
from customers.models import PREPAID_BILL_TYPES, BillType, Customer
from enswitch import citus
from enswitch.db import custom_plans
from enswitch.fields import INT64_MAX

# From this offset on, a page is found by its legs' ids first.
DEEP_OFFSET = 1000
# On Citus, the ids of a page found by ids are fetched first, then its rows by the list
# of them, for pages of at most this many rows (a list held in memory; longer pages and
# limit=0 keep the one statement, which streams).
IDS_FIRST_AT_MOST = 5000


@dataclass(frozen=True)
class Page:
    """The rows of an answer (tuples of the columns asked for, then the sort key)."""

    rows: QuerySet
    found_by_ids: bool

    @contextmanager
    def planned(self) -> Iterator[None]:
        """Run the rows' query inside this block: a page found by ids reads many legs to
        pick a few, so it is planned with its values (PostgreSQL)."""
        with custom_plans(self.found_by_ids, using=self.rows.db):
            yield


def list_page(request: ListRequest, columns: tuple[str, ...]) -> Page:
    """The whole cdrs/list answer as one ordered, sliced query."""
    shape, selection = request.shape, selected_customers(request)
    if shape.archive:
        both = _both_tables(request, selection, columns)
        return Page(_slice(both, shape.offset, shape.limit), False)
    if finds_page_by_ids(request):
        return Page(_page_by_ids(request, selection, columns), True)
    rows = _ordered(request, _sorted_rows(request, Leg, selection, columns))
    return Page(_slice(rows, shape.offset, shape.limit), False)


def get_row(request: GetRequest, columns: tuple[str, ...], *, archive: bool) -> tuple | None:
    """The leg cdrs/get asks for (live first, then archived if `archive`), or None."""
    source = _cost_source(request.scope, request.cost_customer)
    for model in [Leg, ArchivedLeg] if archive else [Leg]:
        legs = request.filters.filter_queryset(model.objects.visible_to(request.user))
        rows = _with_columns(legs, model, request.scope, source)
        found = rows.values_list(*columns).first()
        if found is not None:
            return found
    return None


def totals_rows(request: TotalsRequest) -> QuerySet:
    """cdrs/totals/list: (customer, hour, inbound, outbound, internal) of the selected
    customers' hours inside the request, by hour, then customer. From the kept totals
    (cdrs/totals.py): no leg is read."""
    scope, selection = request.scope, selected_customers(request)
    rows = CallTotals.objects.filter(hour__gte=request.start, hour__lte=request.end - 3599)
    if isinstance(selection, list):  # IDs checked against the scope already
        rows = rows.filter(customer_id__in=selection)
    elif selection is not None:
        within = selection if scope.is_everything else selection & scope.customers()
        rows = rows.filter(customer_id__in=within.values("pk"))
    elif not scope.is_everything:
        rows = rows.filter(customer_id__in=scope.customers().values("pk"))
    rows = rows.exclude(inbound=0, outbound=0, internal=0)
    return rows.order_by("hour", "customer_id").values_list(
        "customer_id", "hour", "inbound", "outbound", "internal"
    )


def selected_customers(request: ListRequest | TotalsRequest) -> QuerySet | list[int] | None:
    """The customer set S of the contract's table; None means every customer."""
    shape, viewer = request.shape, request.scope.customer
    value, customers = shape.customer, Customer.objects.all()
    if value == "system":
        return None
    if value is None or isinstance(value, int):
        root_id = viewer.pk if value is None else value
        if not shape.recurse:
            return [root_id]
        root = viewer if root_id == viewer.pk else customers.get(pk=root_id)
        if root.is_system_owner:
            return None
        return customers.subtree(root)
    if shape.recurse:
        chosen = customers.subtree(viewer, include_self=False)
    else:
        chosen = customers.children_of(viewer)
    if value == "prepaid":
        chosen = chosen.filter(bill_type__in=PREPAID_BILL_TYPES)
    elif value in ("postpaid", "external"):
        chosen = chosen.filter(bill_type=BillType(value))
    return chosen


def finds_page_by_ids(request: ListRequest) -> bool:
    """Whether the page's live legs are found first (their ids and sort keys only), and
    rows built for those legs only. With a limit: past a deep offset, in any order but
    start's, or for a called-number search. Without one (all rows are built anyway):
    past a deep offset, unless sorted by cost. Never with the archive (one UNION ALL).
    Why, in figures: bench/README.md, "Figures behind rules in the code"."""
    shape = request.shape
    if shape.archive:
        return False
    if shape.limit:
        data = request.filters.form.cleaned_data
        called = bool(data.get("cnumber") or data.get("called_number"))
        return shape.offset >= DEEP_OFFSET or shape.sort != "start" or called
    return shape.offset >= DEEP_OFFSET and shape.sort != "cost"


def _legs(request: ListRequest, model: type[LegBase], selection: Any) -> QuerySet:
    """One table's legs that the user may see and the parameters select."""
    legs = model.objects.visible_to(request.user, within=selection)
    return request.filters.filter_queryset(legs)


def _cost_source(scope: Scope, value: int | str | None) -> CostSource:
    if value in COST_CUSTOMER_WORDS:
        return CostSource(kind=value)
    return CostSource(kind="customer", customer_id=scope.customer.pk if value is None else value)


def _with_columns(
    qs: QuerySet, model: type[LegBase], scope: Scope, source: CostSource, *, union: bool = False
) -> QuerySet:
    """`qs` with the columns a row shows beyond the leg's own: costs, `archived`.
    `union`: an arm of a UNION ALL on Citus (cdrs.costs.with_costs says why)."""
    qs = with_costs(qs, viewer=scope.customer, source=source, currency_subquery=union)
    return qs.annotate(archived=Value(model.ARCHIVED))


def _sort_expression(sort: str) -> Any:
    if sort == "name":
        return F("callername")
    if sort == "totaltime":
        return F("end") - F("start")
    if sort == "cost":
        return F("row_cost")
    if sort in ("dcustomer", "peer"):
        # Rows show 0 for "none"; sorting must agree (and NULL placement differs
        # between the databases).
        return Coalesce(F(f"{sort}_id"), Value(0))
    if sort == "scustomer":
        return F("scustomer_id")
    return F(sort)


def _ordered(request: ListRequest, qs: QuerySet) -> QuerySet:
    if request.shape.descending:
        return qs.order_by(F("sort_key").desc(), F("uniqueid").desc())
    return qs.order_by(F("sort_key").asc(), F("uniqueid").asc())


def _sorted_rows(
    request: ListRequest,
    model: type[LegBase],
    selection: Any,
    columns: tuple[str, ...],
    *,
    union: bool = False,
) -> QuerySet:
    """One table's rows as `columns` tuples, with the sort key they are ordered by (and,
    as an arm of a UNION ALL on Citus, the leg's id: the distribution column)."""
    source = _cost_source(request.scope, request.shape.cost_customer)
    legs = _legs(request, model, selection)
    rows = _with_columns(legs, model, request.scope, source, union=union)
    rows = rows.annotate(sort_key=_sort_expression(request.shape.sort))
    return rows.values_list(*columns, "sort_key", *(["pk"] if union else []))


def _both_tables(request: ListRequest, selection: Any, columns: tuple[str, ...]) -> QuerySet:
    """The live and archived rows, ordered: one UNION ALL.

    On Citus a top-level UNION ALL of two distributed tables is run one table after the
    other (two snapshots: a leg moved in between is seen twice or not at all). A UNION
    ALL in a subquery whose arms both select the distribution column (`id`) is pushed
    down to each pair of co-located shards, where a leg moves between the tables."""
    union = citus.is_distributed(Leg.objects.db)
    live = _sorted_rows(request, Leg, selection, columns, union=union)
    archived = _sorted_rows(request, ArchivedLeg, selection, columns, union=union)
    both = _ordered(request, live.union(archived, all=True))
    if union:
        rows = both._iterable_class
        both.query = both.query.chain(klass=UnionInFrom)
        both._iterable_class = rows  # tuples still: the setter above assumes values()
    return both


class UnionInFrom(Query):
    """A combined query read as `SELECT * FROM (<union>) AS "rows" ORDER BY ... LIMIT ...`."""

    def get_compiler(
        self, using: str | None = None, connection: Any = None, elide_empty: bool = True
    ) -> Any:
        compiler = super().get_compiler(using, connection, elide_empty)
        compiler.as_sql = _union_in_from_sql(compiler)
        return compiler


def _union_in_from_sql(compiler: Any) -> Any:
    def as_sql(with_limits: bool = True, with_col_aliases: bool = False) -> tuple[str, tuple]:
        # Sets up the columns (and their converters); a combined query is ordered by
        # column positions, which are the same outside the subquery.
        _, order_by, _ = compiler.pre_sql_setup(with_col_aliases=True)
        inner = compiler.query.chain(klass=Query)
        inner.clear_ordering(force=True)
        inner.clear_limits()
        sql, params = inner.get_compiler(connection=compiler.connection).as_sql()
        params = list(params)
        name = compiler.connection.ops.quote_name("rows")
        parts = [f"SELECT * FROM ({sql}) AS {name}"]  # noqa: S608 - compiled SQL, a fixed name
        if order_by:
            parts.append("ORDER BY " + ", ".join(o_sql for _, (o_sql, _, _) in order_by))
            params.extend(p for _, (_, o_params, _) in order_by for p in o_params)
        if with_limits and compiler.query.is_sliced:
            q = compiler.query
            parts.append(compiler.connection.ops.limit_offset_sql(q.low_mark, q.high_mark))
        return " ".join(parts), tuple(params)

    return as_sql


def _page_by_ids(request: ListRequest, selection: Any, columns: tuple[str, ...]) -> QuerySet:
    """The page's legs' ids in order (from the covering start/uniqueid index when the
    sort is by start), then the rows of those legs only."""
    shape, scope = request.shape, request.scope
    source = _cost_source(scope, shape.cost_customer)
    legs = _legs(request, Leg, selection)
    if shape.sort == "cost":
        legs = with_costs(legs, viewer=scope.customer, source=source)
    ids = _ordered(request, legs.annotate(sort_key=_sort_expression(shape.sort))).values("pk")
    chosen: Any = _slice(ids, shape.offset, shape.limit)
    if 0 < shape.limit <= IDS_FIRST_AT_MOST and citus.is_distributed(chosen.db):
        # Citus would run the ids' subquery as a step of its own anyway and send its
        # result to every shard; a list of ids goes only to the shards that hold them,
        # where each id is an index lookup.
        with custom_plans(using=chosen.db):
            chosen = [row["pk"] for row in chosen]
    # The ids were chosen under the user's scope and every filter: the rows need
    # nothing more than the ids.
    page = Leg.objects.filter(pk__in=chosen)
    rows = _with_columns(page, Leg, scope, source)
    rows = rows.annotate(sort_key=_sort_expression(shape.sort))
    return _ordered(request, rows.values_list(*columns, "sort_key"))


def _slice(qs: QuerySet, offset: int, limit: int) -> QuerySet:
    """`limit=0` means all the rows after `offset`. The end is kept within a 64-bit
    integer: Citus adds offset and limit into one LIMIT for the shards."""
    return qs[offset : min(offset + limit, INT64_MAX)] if limit else qs[offset:]
