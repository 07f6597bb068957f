"""The OpenAPI description of `cdrs/list` and `cdrs/get` (drf-spectacular extensions).

The parameters' names, order, types, enumerations and bounds are read from the fields
that validate them (`cdrs.parameters.parameter_fields`), a row's schema from `Row`:
only what those cannot say (defaults, sentences, which parameter is required) is
written here, and a test checks that both name the same parameters. How an endpoint's
description is built is enswitch/api/schema.py's.
"""

from __future__ import annotations

import copy
from functools import partial

from drf_spectacular.extensions import OpenApiViewExtension

from cdrs.parameters import parameter_fields
from cdrs.rows import ROW_FIELDS, TOTALS_FIELDS
from enswitch.api.schema import (
    COMPONENTS,
    Doc,
    Endpoint,
    described,
    envelope_schema,
    json_schema_of,
)

# --- what the fields cannot say -----------------------------------------------------------

_MATCH = "How `{}` matches: substring, prefix, suffix or equality."
_NUMBER = "{} number to match, case-sensitively, as `{}` says. Empty: any."
_TYPE = "{} type, exact. Empty: any."

LIST_DOCS: dict[str, Doc] = {
    "start": Doc("Unix time: only legs whose start time is >= start.", "0"),
    "end": Doc("Unix time: only legs whose start time is <= end. Default: now."),
    "archive": Doc("1: archived legs are included (needs the `archive` privilege).", "0"),
    "callername_match": Doc(_MATCH.format("callername_number"), "contains"),
    "callername_number": Doc(
        "Caller name (despite the parameter's name) to match, case-insensitively. Empty: any.",
        "",
    ),
    "callid": Doc("Exact call id. Empty: any.", ""),
    "cost_customer": Doc(
        "Whose costs fill the cost fields: a customer ID (yours or under yours), "
        "`scustomer` (the leg's source customer) or `card` (the leg's card). "
        "Default: your customer."
    ),
    "customer": Doc(
        "Whose calls: a customer ID (yours or under yours), `all` (your direct "
        "sub-customers), `external`, `postpaid`, `prepaid` (those of them with that "
        "billing type) or `system` (every customer; only for the system owner). "
        "Default: your customer."
    ),
    "direction": Doc("`in`, `out` or `internal`. Empty: any.", ""),
    "invoice": Doc("Invoice ID the leg is billed on; 0: any.", "0"),
    "limit": Doc("At most this many rows; 0: all of them.", "0"),
    "offset": Doc("Skip this many rows first.", "0"),
    "peer": Doc("Peer ID the leg went through; 0: any.", "0"),
    "phone": Doc(
        "Source telephone line: legs with `stype` = `phone` and `snumber` equal to this. "
        "Empty: any, including legs not from a line.",
        "",
    ),
    "recurse": Doc("1: each selected customer brings all its sub-customers.", "0"),
    "status": Doc("Exact leg status. Empty: any.", ""),
    "talktime_maximum": Doc("Talk time <= this many seconds; -1: no limit.", "-1"),
    "talktime_minimum": Doc("Talk time >= this many seconds.", "0"),
    "stype": Doc(_TYPE.format("Source"), ""),
    "smatch": Doc(_MATCH.format("snumber"), "contains"),
    "snumber": Doc(_NUMBER.format("Source", "smatch"), ""),
    "ctype": Doc(_TYPE.format("Called"), ""),
    "cmatch": Doc(_MATCH.format("cnumber"), "contains"),
    "cnumber": Doc(_NUMBER.format("Called", "cmatch"), ""),
    "caller_number": Doc(
        "Only legs whose `snumber` contains this, case-sensitively. Empty: any.", ""
    ),
    "called_number": Doc(
        "Only legs whose `cnumber` contains this, case-sensitively. Empty: any.", ""
    ),
    "dtype": Doc(_TYPE.format("Destination"), ""),
    "dmatch": Doc(_MATCH.format("dnumber"), "contains"),
    "dnumber": Doc(_NUMBER.format("Destination", "dmatch"), ""),
    "sort": Doc("The row field to order by (`name`: the caller name), then `uniqueid`.", "start"),
    "descending": Doc("1: sort descending (both keys).", "0"),
}

TOTALS_DOCS: dict[str, Doc] = {
    "start": Doc("Unix time: only hours that begin at or after it.", "0"),
    "end": Doc("Unix time: only hours that end at or before it. Default: now."),
    "customer": LIST_DOCS["customer"],
    "recurse": LIST_DOCS["recurse"],
}

GET_DOCS: dict[str, Doc] = {
    "uniqueid": Doc("The leg's unique id.", required=True),
    "customer": Doc(
        "Whose costs fill the cost fields: a customer ID, yours or under yours. "
        "Default: your customer."
    ),
}

# --- a row (contract section 5) -------------------------------------------------------------

ROW_PROPERTIES = {name: json_schema_of(hint) for name, hint in ROW_FIELDS.items()}
ROW_REF = {"$ref": "#/components/schemas/Row"}
COMPONENTS["Row"] = {
    "type": "object",
    "description": "One call leg. Amounts are in the currency of the user's customer.",
    "properties": copy.deepcopy(ROW_PROPERTIES),
    "required": list(ROW_PROPERTIES),
    "additionalProperties": False,
}
COMPONENTS["TotalsRow"] = {
    "type": "object",
    "description": "One customer's call legs that started in one hour [start, end], by "
    "direction (archived legs included).",
    "properties": {name: json_schema_of(hint) for name, hint in TOTALS_FIELDS.items()},
    "required": list(TOTALS_FIELDS),
    "additionalProperties": False,
}
COMPONENTS["TotalsEnvelope"] = envelope_schema(
    {"type": "array", "items": {"$ref": "#/components/schemas/TotalsRow"}}
)
COMPONENTS["ListEnvelope"] = envelope_schema({"type": "array", "items": ROW_REF})
COMPONENTS["GetEnvelope"] = envelope_schema(ROW_REF)

# --- the operations ------------------------------------------------------------------------

LIST = Endpoint(
    operation="cdrs_list",
    tag="cdrs",
    summary="List call legs (cdrs/list)",
    fields=partial(parameter_fields, "list"),
    docs=LIST_DOCS,
    envelope={"$ref": "#/components/schemas/ListEnvelope"},
    errors=(400, 401, 402, 403, 500),
)
GET = Endpoint(
    operation="cdrs_get",
    tag="cdrs",
    summary="One call leg (cdrs/get)",
    fields=partial(parameter_fields, "get"),
    docs=GET_DOCS,
    envelope={"$ref": "#/components/schemas/GetEnvelope"},
    errors=(400, 401, 402, 403, 404, 500),
)


TOTALS = Endpoint(
    operation="cdrs_totals_list",
    tag="cdrs",
    summary="Call legs per customer and hour (cdrs/totals/list)",
    fields=partial(parameter_fields, "totals"),
    docs=TOTALS_DOCS,
    envelope={"$ref": "#/components/schemas/TotalsEnvelope"},
    errors=(400, 401, 402, 403, 500),
)


class CdrTotalsListViewSchema(OpenApiViewExtension):
    target_class = "cdrs.views.CdrTotalsListView"

    def view_replacement(self) -> type:
        return described(self.target, TOTALS)


class CdrListViewSchema(OpenApiViewExtension):
    target_class = "cdrs.views.CdrListView"

    def view_replacement(self) -> type:
        return described(self.target, LIST)


class CdrGetViewSchema(OpenApiViewExtension):
    target_class = "cdrs.views.CdrGetView"

    def view_replacement(self) -> type:
        return described(self.target, GET)
