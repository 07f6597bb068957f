"""Rows as the API shows them, encoded without model instances or serializers.

The database hands back plain tuples (`COLUMNS`); `row_to_dict` gives them the keys and
JSON types of the contract; `stream_rows` writes an envelope of any length with memory
that does not grow with the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import islice
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from enswitch.db import use_statement_timeout

COLUMNS = (
    "uniqueid", "callid", "start", "end", "talktime", "status", "direction",
    "stype", "snumber", "ctype", "cnumber", "dtype", "dnumber", "callername",
    "scustomer_id", "dcustomer_id", "peer_id", "invoice_id", "card_id",
    "archived", "row_cost", "row_cost_tax",
)  # fmt: skip

OK_HEAD = b'{"responses":[{"code":"200","key":"","message":"OK"}],"data":['


def _money(value: Decimal | None) -> float | orjson.Fragment:
    """A rounded amount as a JSON number with exactly its decimal value."""
    if not value:
        return 0.0  # also turns a rounded -0.000000 into 0
    if len(value.as_tuple().digits) <= 15:
        return float(value)  # a double carries 15 significant digits exactly
    return orjson.Fragment(format(value.normalize(), "f"))


def row_to_dict(r: tuple, currency: str) -> dict[str, Any]:
    cost = _money(r[20])
    return {
        "uniqueid": r[0],
        "callid": r[1],
        "start": r[2],
        "end": r[3],
        "talktime": r[4],
        "totaltime": r[3] - r[2],
        "status": r[5],
        "direction": r[6],
        "stype": r[7],
        "snumber": r[8],
        "ctype": r[9],
        "cnumber": r[10],
        "dtype": r[11],
        "dnumber": r[12],
        "callername": r[13],
        "scustomer": r[14],
        "dcustomer": r[15] or 0,
        "peer": r[16] or 0,
        "invoice": r[17] or 0,
        "card": r[18] or 0,
        "archived": r[19],
        "cost": cost,
        "cost_excluding_tax": cost,
        "cost_including_tax": _money(r[21]),
        "currency": currency,
    }


def stream_rows(qs: QuerySet, currency: str) -> Iterator[bytes]:
    """The envelope, then the rows a chunk at a time.

    The query runs (and can fail) before the first byte is yielded, so the caller can
    still answer a failure with an error envelope. Inside a transaction PostgreSQL
    serves the rows from a server-side cursor instead of materialising them all.
    """
    chunk = settings.ENSWITCH_STREAM_CHUNK
    with transaction.atomic():
        use_statement_timeout(settings.ENSWITCH_EXPORT_TIMEOUT_MS, local=True)
        rows = qs.iterator(chunk_size=chunk)
        batch = list(islice(rows, chunk))
        yield OK_HEAD
        separator = b""
        while batch:
            yield separator + orjson.dumps([row_to_dict(r, currency) for r in batch])[1:-1]
            separator = b","
            batch = list(islice(rows, chunk))
        yield b"]}"
