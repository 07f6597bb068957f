"""Which cost record fills a row's cost fields, and its value in the user's currency.

The record is joined once per leg (a filtered LEFT JOIN on the leg's costs), converted
and rounded in the database, so `sort=cost` orders on exactly the value returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import (
    Case,
    DecimalField,
    F,
    FilteredRelation,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from cdrs.scope import Scope
from customers.models import Card, Currency, Customer

MONEY = DecimalField(max_digits=40, decimal_places=6)
ZERO = Value(Decimal("0"), output_field=MONEY)


class ConvertedAmount(Func):
    """sum(amounts) x from_value / to_value, rounded to 6 places, halves away from zero.

    PostgreSQL's numeric ROUND already rounds halves away from zero. SQLite gets the
    `enswitch_money` function (enswitch/db.py) because its own arithmetic is binary
    floating point; the amounts are summed there, as decimals, for the same reason.
    """

    output_field = MONEY

    def __init__(self, from_value: Any, to_value: Any, *amounts: Any) -> None:
        super().__init__(from_value, to_value, *amounts)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        parts, params = [], []
        for expr in self.get_source_expressions():
            sql, p = compiler.compile(expr)
            parts.append(sql)
            params.extend(p)
        from_value, to_value, *amounts = parts
        total = " + ".join(f"({a})" for a in amounts)
        return f"ROUND(({total}) * ({from_value}) / ({to_value}), 6)", params

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        return super().as_sql(compiler, connection, function="enswitch_money", **extra)


@dataclass(frozen=True)
class CostSource:
    """`cost_customer` resolved: a fixed customer, the leg's scustomer, or the leg's card."""

    kind: str  # "customer" | "scustomer" | "card"
    customer_id: int | None = None


def with_costs(
    qs: QuerySet, *, viewer: Customer, source: CostSource, currency_subquery: bool = False
) -> QuerySet:
    """Annotate `row_cost` and `row_cost_tax` (both converted into the viewer's currency).

    `currency_subquery`: the record's currency is read by a subquery, not a join. Citus
    pushes a UNION ALL down to the shards only if no arm outer-joins a reference table
    (the currencies) to the cost records, themselves outer-joined."""
    if source.kind == "customer":
        condition = Q(costs__customer_id=source.customer_id)
    elif source.kind == "scustomer":
        condition = Q(costs__customer_id=F("scustomer_id"))
    else:
        condition = Q(costs__card_id=F("card_id"))
    qs = qs.annotate(chosen_cost=FilteredRelation("costs", condition=condition))
    to_value = Value(viewer.currency.value, output_field=MONEY)
    from_value: Any = F("chosen_cost__currency__value")
    if currency_subquery:
        currency = Currency.objects.filter(code=OuterRef("chosen_cost__currency_id"))
        from_value = Subquery(currency.values("value")[:1])
    cost = ConvertedAmount(from_value, to_value, F("chosen_cost__cost"))
    cost_tax = ConvertedAmount(from_value, to_value, F("chosen_cost__cost"), F("chosen_cost__tax"))
    visible = _visibility(viewer, source)
    if visible is not None:
        # The record only counts when its owner is the viewer's or under it.
        cost = Case(When(visible, then=cost), default=ZERO, output_field=MONEY)
        cost_tax = Case(When(visible, then=cost_tax), default=ZERO, output_field=MONEY)
    return qs.annotate(
        row_cost=Coalesce(cost, ZERO, output_field=MONEY),
        row_cost_tax=Coalesce(cost_tax, ZERO, output_field=MONEY),
    )


def _visibility(viewer: Customer, source: CostSource) -> Q | None:
    scope = Scope(viewer)
    if source.kind == "customer" or scope.is_everything:
        return None  # a named customer was already checked to be the viewer's or under it
    subtree = scope.customers().values("pk")
    if source.kind == "scustomer":
        return Q(scustomer_id__in=subtree)
    return Q(card_id__in=Card.objects.filter(customer_id__in=subtree).values("pk"))
