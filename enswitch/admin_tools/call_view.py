"""A call on one page: every leg with the same callid, in order, with each leg's cost
records per customer and card, in their currencies (the leg change page shows it)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Prefetch
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from enswitch.admin_tools.leg_filters import duration, readable_utc

# A call has a handful of legs; a callid shared by more (a data error) shows this many.
MAX_LEGS = 100


def money(value: Decimal | None, currency: str, places: int = 6) -> str:
    """`0.0123 USD`: at least two decimals, at most `places`, trailing zeros dropped."""
    if value is None:
        return ""
    text = f"{value:.{places}f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')} {currency}"


def cost_holder(cost: object) -> str:
    if cost.customer_id is not None:  # type: ignore[attr-defined]
        return f"customer {cost.customer}"  # type: ignore[attr-defined]
    return f"card {cost.card}"  # type: ignore[attr-defined]


def _costs_html(leg: object) -> SafeString:
    rows = [
        (cost_holder(c), money(c.cost, c.currency_id), money(c.tax, c.currency_id))
        for c in leg.costs.all()  # type: ignore[attr-defined]
    ]
    if not rows:
        return SafeString("<em>no cost records</em>")
    return format_html_join("", "<div>{}: <strong>{}</strong> <small>(tax {})</small></div>", rows)


def call_legs(leg_models: list[type], current: object) -> SafeString:
    """The legs of `current`'s call from each table in `leg_models`, oldest first."""
    callid = current.callid  # type: ignore[attr-defined]
    legs: list[tuple[object, bool]] = []
    for model in leg_models:
        cost_model = model._meta.get_field("costs").related_model
        costs = cost_model.objects.select_related("customer", "card").order_by("id")
        found = (
            model.objects.filter(callid=callid)
            .select_related("scustomer", "dcustomer", "peer")
            .prefetch_related(Prefetch("costs", queryset=costs))
            .order_by("start", "uniqueid")[:MAX_LEGS]
        )
        legs += [(leg, model.ARCHIVED == 1) for leg in found]
    legs.sort(key=lambda pair: (pair[0].start, pair[0].uniqueid))  # type: ignore[attr-defined]
    rows = []
    for leg, archived in legs:
        meta = leg._meta  # type: ignore[attr-defined]
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[leg.pk])  # type: ignore[attr-defined]
        rows.append(
            format_html(
                '<tr class="{}"><td><a href="{}">{}</a>{}</td><td>{}</td><td>{}</td>'
                "<td>{} &rarr; {}</td><td>{} / {}</td><td>{}</td></tr>",
                "current" if leg.pk == current.pk and type(leg) is type(current) else "",  # type: ignore[attr-defined]
                url,
                readable_utc(leg.start),  # type: ignore[attr-defined]
                " (archived)" if archived else "",
                leg.uniqueid,  # type: ignore[attr-defined]
                f"{leg.direction}, {leg.status}",  # type: ignore[attr-defined]
                f"{leg.snumber} ({leg.scustomer.name})",  # type: ignore[attr-defined]
                f"{leg.cnumber}" + (f" ({leg.dcustomer.name})" if leg.dcustomer_id else ""),  # type: ignore[attr-defined]
                duration(leg.talktime),  # type: ignore[attr-defined]
                duration(leg.end - leg.start),  # type: ignore[attr-defined]
                _costs_html(leg),
            )
        )
    header = SafeString(
        "<tr><th>start (UTC)</th><th>uniqueid</th><th>direction, status</th>"
        "<th>from &rarr; to</th><th>talk / total</th><th>costs</th></tr>"
    )
    return format_html(
        '<p>{} leg{} with callid <code>{}</code>.</p><table class="call-legs">{}{}</table>',
        len(legs),
        "s" if len(legs) != 1 else "",
        callid,
        header,
        SafeString("".join(rows)),
    )
