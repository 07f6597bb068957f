"""Rows as the API shows them, encoded without model instances or serializers.

`Row` declares a row once: its keys, their order and JSON types; the columns a query
selects (`COLUMNS`) and the OpenAPI schema of a row (cdrs/schema.py) are derived from
it. The database hands back tuples of `COLUMNS`; `row_to_dict` makes them Rows;
`stream_rows` writes an envelope of any length with memory that does not grow with
the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import islice
from typing import Any, Literal, TypedDict, get_type_hints

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from enswitch.db import use_statement_timeout


class Row(TypedDict):
    """One leg as the API shows it (docs/api.md, section 5): keys in the answer's order."""

    uniqueid: str
    callid: str
    start: int
    end: int
    talktime: int
    totaltime: int
    status: str
    direction: Literal["in", "out", "internal"]
    stype: str
    snumber: str
    ctype: str
    cnumber: str
    dtype: str
    dnumber: str
    callername: str
    scustomer: int
    dcustomer: int  # 0: none
    peer: int  # 0: none
    invoice: int  # 0: none
    card: int  # 0: none
    archived: Literal[0, 1]
    cost: float  # a JSON number with exactly the rounded decimal's digits
    cost_excluding_tax: float
    cost_including_tax: float
    currency: str


ROW_FIELDS: dict[str, Any] = get_type_hints(Row)
# Where a row field comes from when it is not the leg column of its name; the fields
# computed from others (or from the user) have none.
COLUMN_OF = {
    "scustomer": "scustomer_id",
    "dcustomer": "dcustomer_id",
    "peer": "peer_id",
    "invoice": "invoice_id",
    "card": "card_id",
    "cost": "row_cost",
    "cost_including_tax": "row_cost_tax",
}
COMPUTED = ("totaltime", "cost_excluding_tax", "currency")
# The columns a query hands over for each row, in this order (see cdrs/queries.py).
COLUMNS = tuple(COLUMN_OF.get(name, name) for name in ROW_FIELDS if name not in COMPUTED)

OK_HEAD = b'{"responses":[{"code":"200","key":"","message":"OK"}],"data":['


def _money(value: Decimal | None) -> float | orjson.Fragment:
    """A rounded amount as a JSON number with exactly its decimal value."""
    if not value:
        return 0.0  # also turns a rounded -0.000000 into 0
    if len(value.as_tuple().digits) <= 15:
        return float(value)  # a double carries 15 significant digits exactly
    return orjson.Fragment(format(value.normalize(), "f"))


def row_to_dict(r: tuple, currency: str) -> Row:
    """A row of the query (COLUMNS, then anything else the query added) as a Row."""
    (
        uniqueid, callid, start, end, talktime, status, direction, stype, snumber, ctype,
        cnumber, dtype, dnumber, callername, scustomer_id, dcustomer_id, peer_id, invoice_id,
        card_id, archived, row_cost, row_cost_tax, *_,
    ) = r  # fmt: skip
    cost = _money(row_cost)
    return {
        "uniqueid": uniqueid,
        "callid": callid,
        "start": start,
        "end": end,
        "talktime": talktime,
        "totaltime": end - start,
        "status": status,
        "direction": direction,
        "stype": stype,
        "snumber": snumber,
        "ctype": ctype,
        "cnumber": cnumber,
        "dtype": dtype,
        "dnumber": dnumber,
        "callername": callername,
        "scustomer": scustomer_id,
        "dcustomer": dcustomer_id or 0,
        "peer": peer_id or 0,
        "invoice": invoice_id or 0,
        "card": card_id or 0,
        "archived": archived,
        "cost": cost,
        "cost_excluding_tax": cost,
        "cost_including_tax": _money(row_cost_tax),
        "currency": currency,
    }


def stream_rows(qs: QuerySet, currency: str) -> Iterator[bytes]:
    """The envelope, then the rows a chunk at a time (`stream`)."""
    return stream(qs, lambda batch: [row_to_dict(r, currency) for r in batch])


def stream(qs: QuerySet, encode: Callable[[list[tuple]], list[dict]]) -> Iterator[bytes]:
    """The envelope, then `qs`'s rows a chunk at a time, each chunk made dicts by `encode`.

    The query runs (and can fail) before the first byte is yielded, so the caller can
    still answer a failure with an error envelope. Inside a transaction PostgreSQL
    serves the rows from a server-side cursor instead of materialising them all.
    """
    chunk = settings.ENSWITCH_STREAM_CHUNK
    with transaction.atomic(using=qs.db):  # on the node the rows are read from
        use_statement_timeout(settings.ENSWITCH_EXPORT_TIMEOUT_MS, local=True, using=qs.db)
        rows = qs.iterator(chunk_size=chunk)
        batch = list(islice(rows, chunk))
        yield OK_HEAD
        separator = b""
        while batch:
            yield separator + orjson.dumps(encode(batch))[1:-1]
            separator = b","
            batch = list(islice(rows, chunk))
        yield b"]}"


class TotalsRow(TypedDict):
    """One customer's calls in one hour (cdrs/totals/list): keys in the answer's order."""

    customer: int
    start: int
    end: int
    inbound: int
    outbound: int
    internal: int


TOTALS_FIELDS: dict[str, Any] = get_type_hints(TotalsRow)


def stream_totals(qs: QuerySet) -> Iterator[bytes]:
    """cdrs/totals/list's envelope, its rows (customer, hour, inbound, outbound,
    internal) a chunk at a time (`stream`)."""
    return stream(qs, _totals_dicts)


def _totals_dicts(batch: list[tuple]) -> list[dict]:
    return [
        {"customer": c, "start": h, "end": h + 3599, "inbound": i, "outbound": o, "internal": n}
        for c, h, i, o, n in batch
    ]
