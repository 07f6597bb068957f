"""A small, independent reference of `cdrs/list` and `cdrs/get`, written from the contract
(docs/api.md), over plain Python data. No Django, no database.

It models what happens once a user is authenticated and its rate plan allows `cdrs`
(the 401 and 403 stages are the API tests' business): the role's 402s, the 400s of
section 4 in table order, the customer set S, the filters, the cost record and its
conversion, the order, offset and limit, and the rows of section 5. Cost fields are
exact `Decimal`s; the caller compares them numerically with the API's JSON numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STRING = 255
MATCH = ("contains", "start", "end", "exact")
DIRECTIONS = ("in", "out", "internal")
CUSTOMER_WORDS = ("all", "external", "postpaid", "prepaid", "system")
COST_WORDS = ("scustomer", "card")
PREPAID = ("prepaid", "prepaid_calls", "prepaid_invoices")
SORTS = (
    "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype", "end",
    "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime", "totaltime",
    "uniqueid",
)  # fmt: skip

# Section 3's table, in order (credentials aside), with each parameter's kind.
LIST_PARAMS: tuple[tuple[str, str], ...] = (
    ("start", "int>=0"),
    ("end", "int>=0"),
    ("archive", "flag"),
    ("callername_match", "match"),
    ("callername_number", "string"),
    ("callid", "string"),
    ("cost_customer", "cost_customer"),
    ("customer", "customer"),
    ("direction", "direction"),
    ("invoice", "int>=0"),
    ("limit", "int>=0"),
    ("offset", "int>=0"),
    ("peer", "int>=0"),
    ("phone", "string"),
    ("recurse", "flag"),
    ("status", "string"),
    ("talktime_maximum", "int>=-1"),
    ("talktime_minimum", "int>=0"),
    ("stype", "string"),
    ("smatch", "match"),
    ("snumber", "string"),
    ("ctype", "string"),
    ("cmatch", "match"),
    ("cnumber", "string"),
    ("caller_number", "string"),
    ("called_number", "string"),
    ("dtype", "string"),
    ("dmatch", "match"),
    ("dnumber", "string"),
    ("sort", "sort"),
    ("descending", "flag"),
)
GET_PARAMS: tuple[tuple[str, str], ...] = (("uniqueid", "string"), ("customer", "id"))

_INTEGER = re.compile(r"-?[0-9]+")


# --- the data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    id: int
    parent: int | None
    bill_type: str
    currency: str


@dataclass(frozen=True)
class Cost:
    """What one customer (customer set) or one card (card set) is charged for a leg."""

    amount: Decimal
    tax: Decimal
    currency: str
    customer: int | None = None
    card: int | None = None


@dataclass(frozen=True)
class Leg:
    uniqueid: str
    scustomer: int
    start: int
    end: int
    callid: str = ""
    talktime: int = 0
    status: str = ""
    direction: str = "out"
    stype: str = ""
    snumber: str = ""
    ctype: str = ""
    cnumber: str = ""
    dtype: str = ""
    dnumber: str = ""
    callername: str = ""
    dcustomer: int | None = None
    peer: int | None = None
    invoice: int | None = None
    card: int | None = None
    archived: bool = False
    costs: tuple[Cost, ...] = ()


@dataclass
class World:
    customers: dict[int, Customer]
    currencies: dict[str, Decimal]  # code -> value in the base currency
    cards: dict[int, int]  # card -> its customer
    legs: list[Leg] = field(default_factory=list)

    def owner(self) -> int:
        (root,) = [c.id for c in self.customers.values() if c.parent is None]
        return root

    def children(self, cid: int) -> list[int]:
        return [c.id for c in self.customers.values() if c.parent == cid]

    def under(self, cid: int) -> set[int]:
        """cid's descendants at any depth (not cid itself)."""
        found: set[int] = set()
        todo = self.children(cid)
        while todo:
            c = todo.pop()
            found.add(c)
            todo.extend(self.children(c))
        return found

    def subtree(self, cid: int) -> set[int]:
        return {cid} | self.under(cid)


@dataclass
class Result:
    code: int
    keys: list[str] = field(default_factory=list)  # the 400 entries' keys, in order
    data: Any = None  # a list of rows (list) or one row (get)


# --- parameters ----------------------------------------------------------------------


def parse_integer(text: str) -> int | None:
    """An optional `-` and ASCII digits; None if not one, or beyond a signed 64-bit."""
    if not _INTEGER.fullmatch(text):
        return None
    digits = text.lstrip("-").lstrip("0")
    if len(digits) > 19:  # no int() on thousands of digits
        return None
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _valid_string(text: str) -> bool:
    return "\x00" not in text and len(text) <= MAX_STRING


def _parse(kind: str, text: str, scope: set[int]) -> tuple[bool, Any]:
    """(valid, value) for a non-empty value of a parameter of this kind."""
    if kind.startswith("int>="):
        number = parse_integer(text)
        return number is not None and number >= int(kind[5:]), number
    if kind == "flag":
        number = parse_integer(text)
        return number in (0, 1), number
    if kind == "string":
        return _valid_string(text), text
    words = {"match": MATCH, "direction": DIRECTIONS, "sort": SORTS}.get(kind)
    if words is not None:
        return text in words, text
    words = {"customer": CUSTOMER_WORDS, "cost_customer": COST_WORDS, "id": ()}[kind]
    if text in words:
        return True, text
    number = parse_integer(text)
    return number is not None and number in scope, number


def validate(
    table: tuple[tuple[str, str], ...], params: dict[str, str], scope: set[int]
) -> tuple[dict[str, Any], list[str]]:
    """The parsed values of the set parameters, and the invalid ones in table order."""
    values: dict[str, Any] = {}
    invalid: list[str] = []
    for name, kind in table:
        text = params.get(name, "")
        if text == "":
            continue  # empty means the default
        ok, value = _parse(kind, text, scope)
        if ok:
            values[name] = value
        else:
            invalid.append(name)
    return values, invalid


# --- selection, filters --------------------------------------------------------------


def selection(world: World, viewer: int, customer: Any, recurse: bool) -> set[int]:
    """The customer set S of section 3."""
    if customer == "system":
        return set(world.customers)
    if customer is None or isinstance(customer, int):
        root = viewer if customer is None else customer
        return world.subtree(root) if recurse else {root}
    chosen = world.under(viewer) if recurse else set(world.children(viewer))
    if customer == "prepaid":
        chosen = {c for c in chosen if world.customers[c].bill_type in PREPAID}
    elif customer in ("postpaid", "external"):
        chosen = {c for c in chosen if world.customers[c].bill_type == customer}
    return chosen


def fold(text: str) -> str:
    """Unicode lower case, character by character (no folding: ß stays ß)."""
    return "".join(ch.lower() for ch in text)


def matches(mode: str, needle: str, haystack: str) -> bool:
    if mode == "start":
        return haystack.startswith(needle)
    if mode == "end":
        return haystack.endswith(needle)
    if mode == "exact":
        return haystack == needle
    return needle in haystack


def _keep(leg: Leg, v: dict[str, Any], now: int) -> bool:
    if leg.start < v.get("start", 0) or leg.start > v.get("end", now):
        return False
    for name in ("callid", "status", "stype", "ctype", "dtype", "direction"):
        if name in v and getattr(leg, name) != v[name]:
            return False
    if "phone" in v and not (leg.stype == "phone" and leg.snumber == v["phone"]):
        return False
    for name in ("invoice", "peer"):
        if v.get(name, 0) != 0 and getattr(leg, name) != v[name]:
            return False
    if v.get("talktime_maximum", -1) != -1 and leg.talktime > v["talktime_maximum"]:
        return False
    if leg.talktime < v.get("talktime_minimum", 0):
        return False
    for side in "scd":
        needle = v.get(f"{side}number")
        if needle is not None:
            mode = v.get(f"{side}match", "contains")
            if not matches(mode, needle, getattr(leg, f"{side}number")):
                return False
    for name, column in (("caller_number", "snumber"), ("called_number", "cnumber")):
        if name in v and v[name] not in getattr(leg, column):
            return False
    needle = v.get("callername_number")
    if needle is not None:
        mode = v.get("callername_match", "contains")
        if not matches(mode, fold(needle), fold(leg.callername)):
            return False
    return True


# --- costs and rows ------------------------------------------------------------------

MICRO = Decimal("0.000001")


def convert(world: World, amount: Decimal, currency: str, viewer: int) -> Decimal:
    """amount x its currency's value / the viewer's currency's value, 6 places, halves
    away from zero."""
    to_value = world.currencies[world.customers[viewer].currency]
    with localcontext() as ctx:
        ctx.prec = 200
        exact = amount * world.currencies[currency] / to_value
        return exact.quantize(MICRO, rounding=ROUND_HALF_UP)


def cost_record(world: World, viewer: int, leg: Leg, source: Any) -> Cost | None:
    """The record that fills the row's cost fields, if there is one and it is visible."""
    scope = world.subtree(viewer)
    if source == "scustomer":
        if leg.scustomer not in scope:
            return None
        return next((c for c in leg.costs if c.customer == leg.scustomer), None)
    if source == "card":
        if leg.card is None or world.cards[leg.card] not in scope:
            return None
        return next((c for c in leg.costs if c.card == leg.card), None)
    customer = viewer if source is None else source
    return next((c for c in leg.costs if c.customer == customer), None)


def row(world: World, viewer: int, leg: Leg, source: Any) -> dict[str, Any]:
    record = cost_record(world, viewer, leg, source)
    if record is None:
        cost = with_tax = Decimal(0)
    else:
        cost = convert(world, record.amount, record.currency, viewer)
        with_tax = convert(world, record.amount + record.tax, record.currency, viewer)
    return {
        "uniqueid": leg.uniqueid,
        "callid": leg.callid,
        "start": leg.start,
        "end": leg.end,
        "talktime": leg.talktime,
        "totaltime": leg.end - leg.start,
        "status": leg.status,
        "direction": leg.direction,
        "stype": leg.stype,
        "snumber": leg.snumber,
        "ctype": leg.ctype,
        "cnumber": leg.cnumber,
        "dtype": leg.dtype,
        "dnumber": leg.dnumber,
        "callername": leg.callername,
        "scustomer": leg.scustomer,
        "dcustomer": leg.dcustomer or 0,
        "peer": leg.peer or 0,
        "invoice": leg.invoice or 0,
        "card": leg.card or 0,
        "archived": int(leg.archived),
        "cost": cost,
        "cost_excluding_tax": cost,
        "cost_including_tax": with_tax,
        "currency": world.customers[viewer].currency,
    }


# --- the two calls -------------------------------------------------------------------


def _role_allows(privileges: set[str]) -> bool:
    return "cdrs" in privileges or "callshop" in privileges


def cdrs_list(
    world: World, viewer: int, privileges: set[str], params: dict[str, str], now: int
) -> Result:
    if not _role_allows(privileges):
        return Result(402)
    archive_text = params.get("archive", "")
    if parse_integer(archive_text) == 1 and "archive" not in privileges:
        return Result(402)
    if params.get("customer") == "system" and world.customers[viewer].parent is not None:
        return Result(402)
    v, invalid = validate(LIST_PARAMS, params, world.subtree(viewer))
    if invalid:
        return Result(400, invalid)
    chosen = selection(world, viewer, v.get("customer"), v.get("recurse") == 1)
    legs = [
        leg
        for leg in world.legs
        if (leg.scustomer in chosen or leg.dcustomer in chosen)
        and (v.get("archive") == 1 or not leg.archived)
        and _keep(leg, v, now)
    ]
    rows = [row(world, viewer, leg, v.get("cost_customer")) for leg in legs]
    key = {"name": "callername"}.get(v.get("sort", "start"), v.get("sort", "start"))
    rows.sort(key=lambda r: (r[key], r["uniqueid"]), reverse=v.get("descending") == 1)
    offset, limit = v.get("offset", 0), v.get("limit", 0)
    rows = rows[offset:]
    return Result(200, data=rows[:limit] if limit else rows)


def cdrs_get(world: World, viewer: int, privileges: set[str], params: dict[str, str]) -> Result:
    if not _role_allows(privileges):
        return Result(402)
    v, invalid = validate(GET_PARAMS, params, world.subtree(viewer))
    if "uniqueid" not in v and "uniqueid" not in invalid:
        invalid.insert(0, "uniqueid")  # required
    if invalid:
        return Result(400, invalid)
    scope = world.subtree(viewer)
    for leg in world.legs:
        if leg.uniqueid != v["uniqueid"]:
            continue
        if leg.scustomer not in scope and leg.dcustomer not in scope:
            break
        if leg.archived and "archive" not in privileges:
            break
        return Result(200, data=row(world, viewer, leg, v.get("customer")))
    return Result(404, ["uniqueid"])
