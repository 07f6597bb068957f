"""`cdrs/list`, `cdrs/get`, `cdrs/totals/list`: parse -> authenticate -> authorise -> filter ->
order -> rows.

Credentials and permissions are checked on the primary; the answer's reads (the user's
customer tree, the legs, their costs, the totals) are served as a whole by one node that
`enswitch.replicas.serve_reads` chooses: a fresh replica, or the primary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
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
from cdrs.scope import as_the_reads_see_it
from enswitch.api.envelope import NotFound, entry, envelope
from enswitch.api.params import Params, request_params
from enswitch.api.throttle import stream_slot
from enswitch.api.views import EnswitchAPIView
from enswitch.db import use_statement_timeout
from enswitch.replicas import reads_alias, serve_reads

# Answers up to this many rows are built in one piece; longer ones are streamed.
STREAM_ABOVE = 5000


class EnswitchView(EnswitchAPIView):
    """Parse and authenticate (EnswitchAuthentication: 401), authorise (the permission
    classes: 402, 403), then `respond()`: validate (400), filter, order, rows out."""

    permission_classes = [RoleAllowsCdrs, RatePlanAllowsCdrs]

    def get(self, request: Any) -> HttpResponseBase:
        params = request_params(request._request)
        user = request.user  # read with the credentials, on the primary

        def answer() -> HttpResponseBase:
            # Everything up to the first byte: a replica that fails here is replaced.
            use_statement_timeout(settings.ENSWITCH_STATEMENT_TIMEOUT_MS, using=reads_alias())
            request.user = as_the_reads_see_it(user)
            return self.respond(request, params)

        return serve_reads(answer)

    post = get


class CdrListView(EnswitchView):
    permission_classes = [RoleAllowsCdrs, RoleAllowsListOptions, RatePlanAllowsCdrs]

    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        user = request.user
        wanted = parse_list(params, user=user, now=int(time.time()))  # or a 400
        page = queries.list_page(wanted, COLUMNS)  # scope, filters, costs, order, page
        currency = user.customer.currency_id
        if 0 < wanted.shape.limit <= STREAM_ABOVE:
            with page.planned():
                data = [row_to_dict(r, currency) for r in page.rows]
            return Response(envelope([entry(200)], data))
        return streaming_response(streamed(page.rows, currency, user_id=user.pk))


class CdrGetView(EnswitchView):
    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        user = request.user
        wanted = parse_get(params, user=user)  # or a 400
        row = queries.get_row(wanted, COLUMNS, archive=user.role.allows("archive"))
        if row is None:
            raise NotFound()
        data = row_to_dict(row, user.customer.currency_id)
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
    """Start the stream only once the query has run, so that a failure can still be
    served by another node (serve_reads) or answered with an envelope (the view's
    exception handler)."""
    head = next(chunks)

    def body() -> Iterator[bytes]:
        yield head
        yield from chunks

    return StreamingHttpResponse(body(), content_type="application/json; charset=utf-8")
