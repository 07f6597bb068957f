"""`cdrs/list`, `cdrs/get`, `cdrs/totals/list`: parse -> authenticate -> authorise -> filter ->
order -> rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.http import HttpResponseBase, StreamingHttpResponse
from rest_framework.response import Response

from cdrs import queries
from cdrs.parameters import parse_get, parse_list, parse_totals
from cdrs.permissions import (
    RatePlanAllowsCdrs,
    RoleAllowsCdrs,
    RoleAllowsListOptions,
    RoleAllowsTotals,
)
from cdrs.rows import COLUMNS, row_to_dict, stream_rows, stream_totals
from enswitch.api.envelope import NotFound, entry, envelope
from enswitch.api.exceptions import as_enswitch_error, envelope_response
from enswitch.api.params import Params
from enswitch.api.throttle import stream_slot
from enswitch.api.views import EnswitchAPIView

# Answers up to this many rows are built in one piece; longer ones are streamed.
STREAM_ABOVE = 5000


class EnswitchView(EnswitchAPIView):
    """Parse and authenticate (EnswitchAuthentication: 401), authorise (the permission
    classes: 402, 403), then `respond()`: validate (400), filter, order, rows out."""

    permission_classes = [RoleAllowsCdrs, RatePlanAllowsCdrs]


class CdrListView(EnswitchView):
    permission_classes = [RoleAllowsCdrs, RoleAllowsListOptions, RatePlanAllowsCdrs]

    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        wanted = parse_list(params, user=request.user, now=int(time.time()))  # or a 400
        page = queries.list_page(wanted, COLUMNS)  # scope, filters, costs, order, page
        currency = request.user.customer.currency_id
        if 0 < wanted.shape.limit <= STREAM_ABOVE:
            with page.planned():
                data = [row_to_dict(r, currency) for r in page.rows]
            return Response(envelope([entry(200)], data))
        return streaming_response(streamed(page.rows, currency, user_id=request.user.pk))


class CdrGetView(EnswitchView):
    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        wanted = parse_get(params, user=request.user)  # or a 400
        row = queries.get_row(wanted, COLUMNS, archive=request.user.role.allows("archive"))
        if row is None:
            raise NotFound()
        data = row_to_dict(row, request.user.customer.currency_id)
        return Response(envelope([entry(200)], data))


class CdrTotalsListView(EnswitchView):
    permission_classes = [RoleAllowsTotals, RatePlanAllowsCdrs]

    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        wanted = parse_totals(params, user=request.user, now=int(time.time()))  # or a 400
        rows = queries.totals_rows(wanted)  # scope, selection, hours, order
        return streaming_response(stream_totals(rows))


def streamed(rows: Any, currency: str, *, user_id: int) -> Iterator[bytes]:
    with stream_slot(user_id):
        yield from stream_rows(rows, currency)


def streaming_response(chunks: Iterator[bytes]) -> HttpResponseBase:
    """Start the stream only once the query has run, so a failure is still an envelope."""
    try:
        head = next(chunks)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an envelope
        return envelope_response(as_enswitch_error(exc))

    def body() -> Iterator[bytes]:
        yield head
        yield from chunks

    return StreamingHttpResponse(body(), content_type="application/json; charset=utf-8")
