"""Shared helpers for the API test files (transport, contract, isolation, reference).

`call(client, path, **params)` sends a GET whose query string is built by hand with `;`
between the parameters (as Enswitch clients do), every value percent-encoded, and
decodes the envelope into an `Answer`. `request(...)` is the low-level form: an exact
raw query string and an exact raw body, for the transport tests.

The named actors of the suite (see `make_actors`):

    owner (system owner, customer 1, USD)
    ├── reseller (customer 10, EUR)
    │   └── customer (customer 11, prepaid, USD)
    └── charlie's reseller (customer 20)
        └── charlie (customer 21), who must never see anything of the reseller's branch
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args, get_origin
from urllib.parse import quote

from django.db import connection
from django.http import HttpResponseBase
from hypothesis import strategies as st

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from cdrs.rows import ROW_FIELDS
from customers.models import Card, Customer, Invoice, Peer, User
from enswitch.api.fields import INT64_MAX as INT64_MAX  # re-exported for the API tests
from tests import factories as f
from tests import reference as ref

LIST = "/api/json/cdrs/list/"
GET = "/api/json/cdrs/get/"
PATHS = {
    "list": (LIST, LIST.rstrip("/")),
    "get": (GET, GET.rstrip("/")),
}

PASSWORD = "s3cret;&=+%"  # every separator and escape character a URL can hold

OK = {"code": "200", "key": "", "message": "OK"}
MESSAGES = {
    401: "The authentication details provided are invalid.",
    402: "Your role does not allow this.",
    403: "Your rate plan does not allow this.",
    404: "The call does not exist, or you do not have permission to view it.",
}


def _json_type(hint: Any) -> type:
    """The Python type json.loads (with parse_float=Decimal) gives a Row field."""
    if get_origin(hint) is Literal:
        return type(get_args(hint)[0])
    return Decimal if hint is float else hint


# The keys of a row and their JSON types (section 5), from the row's one declaration.
ROW_TYPES: dict[str, type] = {name: _json_type(hint) for name, hint in ROW_FIELDS.items()}


def vendor() -> str:
    return connection.vendor


# --- encoding ------------------------------------------------------------------------


def enc(value: Any) -> str:
    """Percent-encode a value completely (so `;`, `&`, `+`, `%`, `=` survive)."""
    return quote(str(value), safe="")


def query(params: dict[str, Any] | list[tuple[str, Any]], sep: str = ";") -> str:
    """`{"a": 1, "b": "x y"}` -> `a=1;b=x%20y`; None values are left out."""
    pairs = params.items() if isinstance(params, dict) else params
    return sep.join(f"{enc(k)}={enc(v)}" for k, v in pairs if v is not None)


# --- answers -------------------------------------------------------------------------


@dataclass
class Answer:
    http: HttpResponseBase
    raw: bytes
    body: dict[str, Any]

    @property
    def responses(self) -> list[dict[str, Any]]:
        return self.body["responses"]

    @property
    def code(self) -> str:
        return self.responses[0]["code"]

    @property
    def keys(self) -> list[str]:
        return [e["key"] for e in self.responses]

    @property
    def data(self) -> Any:
        return self.body["data"]

    @property
    def ids(self) -> list[str]:
        """The uniqueids of a cdrs/list answer, in order."""
        assert self.code == "200", self.body
        return [row["uniqueid"] for row in self.data]

    @property
    def status(self) -> int:
        return self.http.status_code

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.raw[:600]!r})"


def decode(response: HttpResponseBase) -> Answer:
    if response.streaming:
        # Read to the end: the stream holds a transaction open until then.
        raw = b"".join(response.streaming_content)
    else:
        raw = response.content
    # No response.close() here: the test client closes responses itself, with the
    # signal that would close the database connection disconnected.
    # Decimal for fractions: the exact text of every number is kept.
    body = json.loads(raw, parse_float=Decimal)
    return Answer(http=response, raw=raw, body=body)


def request(
    client: Any,
    path: str = LIST,
    *,
    method: str = "GET",
    query_string: str | bytes = "",
    body: bytes | str = b"",
    content_type: str = "",
) -> Answer:
    """One request with an exact query string (raw bytes allowed) and an exact body."""
    if isinstance(query_string, bytes):
        # WSGI carries the query string as latin-1-decoded bytes (PEP 3333).
        query_string = query_string.decode("latin-1")
    extra: dict[str, Any] = {}
    if query_string:
        extra["QUERY_STRING"] = query_string
    if content_type:
        extra["CONTENT_TYPE"] = content_type  # also on an empty body
    response = client.generic(method, path, data=body, content_type=content_type, **extra)
    return decode(response)


def call(client: Any, path: str = LIST, *, method: str = "GET", **params: Any) -> Answer:
    """GET (or POST with an empty body) with the parameters in a `;` query string."""
    return request(client, path, method=method, query_string=query(params))


def post_json(client: Any, path: str = LIST, payload: Any = None, *, qs: str = "") -> Answer:
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return request(
        client,
        path,
        method="POST",
        query_string=qs,
        body=body,
        content_type="application/json",
    )


def post_form(client: Any, path: str = LIST, params: Any = None, *, qs: str = "") -> Answer:
    body = params if isinstance(params, (bytes, str)) else query(params or {}, sep="&")
    return request(
        client,
        path,
        method="POST",
        query_string=qs,
        body=body,
        content_type="application/x-www-form-urlencoded",
    )


def post_multipart(client: Any, path: str = LIST, params: Any = None, *, qs: str = "") -> Answer:
    """A multipart/form-data body built by Django's test client."""
    url = f"{path}?{qs}" if qs else path
    return decode(client.post(url, data=params or {}))


# --- assertions ----------------------------------------------------------------------


def assert_ok(answer: Answer) -> list[dict[str, Any]]:
    assert answer.responses == [OK], answer
    return answer.data


def assert_error(answer: Answer, code: int, key: str = "") -> None:
    """A failure with exactly one entry (401, 402, 403, 404) and no data."""
    assert answer.responses == [{"code": str(code), "key": key, "message": MESSAGES[code]}], answer
    assert "data" not in answer.body, answer


def assert_invalid(answer: Answer, *keys: str) -> None:
    """A 400 listing exactly these parameters, in this order, each with a message."""
    assert answer.code == "400", answer
    assert answer.keys == list(keys), answer
    for e in answer.responses:
        assert e["code"] == "400", answer
        assert isinstance(e["message"], str), answer
        assert e["message"].strip(), answer
    assert "data" not in answer.body, answer


def assert_row_shape(row: dict[str, Any]) -> None:
    assert set(row) == set(ROW_TYPES), sorted(set(row) ^ set(ROW_TYPES))
    for key, kind in ROW_TYPES.items():
        value = row[key]
        if kind is Decimal:
            # A JSON number: an integer or a fraction, never a string or a bool.
            assert isinstance(value, (Decimal, int)), (key, row)
            assert not isinstance(value, bool), (key, row)
        else:
            assert type(value) is kind, (key, row)
    assert row["totaltime"] == row["end"] - row["start"], row
    assert row["archived"] in (0, 1), row
    assert row["cost"] == row["cost_excluding_tax"], row


def money(value: Any) -> Decimal:
    return Decimal(str(value))


# --- actors --------------------------------------------------------------------------


@dataclass
class Actor:
    user: User
    customer: Customer
    password: str = PASSWORD

    @property
    def creds(self) -> dict[str, str]:
        return {"auth_username": self.user.username, "auth_password": self.password}

    @property
    def id(self) -> int:
        return self.customer.pk


@dataclass
class Actors:
    owner: Actor
    reseller: Actor
    customer: Actor
    charlie_reseller: Customer
    charlie: Actor


def actor(
    cust: Customer,
    username: str,
    privileges: list[str] | None = None,
    password: str = PASSWORD,
    **kw: Any,
) -> Actor:
    u = f.user(cust, username=username, password=password, privileges=privileges, **kw)
    return Actor(user=u, customer=cust, password=password)


def make_actors(*, archive: bool = True) -> Actors:
    usd = f.currency("USD", "1")
    eur = f.currency("EUR", "1.1")
    privileges = ["cdrs", "archive"] if archive else ["cdrs"]
    owner = f.customer(None, id=1, name="Owner", bill_type="none", cur=usd)
    reseller = f.customer(owner, id=10, name="Reseller", bill_type="postpaid", cur=eur)
    cust = f.customer(reseller, id=11, name="Customer", bill_type="prepaid", cur=usd)
    charlie_reseller = f.customer(owner, id=20, name="Other reseller", cur=usd)
    charlie = f.customer(charlie_reseller, id=21, name="Charlie", cur=usd)
    return Actors(
        owner=actor(owner, "owner", privileges),
        reseller=actor(reseller, "reseller", privileges),
        customer=actor(cust, "customer", privileges),
        charlie_reseller=charlie_reseller,
        charlie=actor(charlie, "charlie", privileges),
    )


def make_leg(
    uniqueid: str,
    scustomer: int,
    dcustomer: int | None = None,
    *,
    archived: bool = False,
    costs: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    **fields: Any,
) -> Leg | ArchivedLeg:
    """A leg by customer IDs. `costs`: dicts with customer/card (IDs), cost, tax, currency."""
    start = fields.pop("start", 1_700_000_000)
    values = {
        "callid": f"call-{uniqueid}",
        "end": start + 60,
        "talktime": 30,
        "status": "answer",
        "direction": "out",
    }
    values.update(fields)
    if "end" in fields and "talktime" not in fields:
        values["talktime"] = 0
    model, cost_model = (ArchivedLeg, ArchivedLegCost) if archived else (Leg, LegCost)
    obj = model.objects.create(
        uniqueid=uniqueid, start=start, scustomer_id=scustomer, dcustomer_id=dcustomer, **values
    )
    for c in costs:
        cost_model.objects.create(
            leg=obj,
            customer_id=c.get("customer"),
            card_id=c.get("card"),
            cost=Decimal(str(c.get("cost", 0))),
            tax=Decimal(str(c.get("tax", 0))),
            currency_id=c.get("currency", "USD"),
        )
    return obj


def peer(pk: int) -> Peer:
    return Peer.objects.get_or_create(id=pk)[0]


def card(pk: int, cust: Customer) -> Card:
    return Card.objects.create(id=pk, customer=cust)


def invoice(pk: int, cust: Customer) -> Invoice:
    return Invoice.objects.create(id=pk, customer=cust)


# --- random worlds (tests/reference.py data) in the database ---------------------------

CURRENCIES = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.1"),
    "GBP": Decimal("1.25"),
    "JPY": Decimal("0.0067"),
    "THR": Decimal("3"),
    "TWO": Decimal("2"),
}
# Drawn more often: USD amounts seen in TWO (or EUR, GBP amounts seen in USD) end in
# an exact half at the 7th decimal for many amounts.
CURRENCY_WEIGHTS = ["USD", "USD", "TWO", "TWO", "EUR", "GBP", "JPY", "THR"]
BILL_TYPES = [
    "callshop", "external", "none", "postpaid", "prepaid", "prepaid_calls", "prepaid_invoices",
]  # fmt: skip
PEERS = (1, 2)
INVOICES = (1, 2)
FUTURE = 4_000_000_000  # a start after "now": out of the default `end`


def build_world(world: ref.World, viewer: int, privileges: list[str]) -> Actor:
    """Store a reference world; answer an actor for a user of customer `viewer`."""
    for code, value in world.currencies.items():
        f.currency(code, str(value))
    depth = {}
    for c in world.customers.values():
        d, p = 0, c.parent
        while p is not None:
            d, p = d + 1, world.customers[p].parent
        depth[c.id] = d
    for c in sorted(world.customers.values(), key=lambda c: depth[c.id]):
        Customer.objects.create(
            id=c.id,
            parent_id=c.parent,
            name=f"C{c.id}",
            bill_type=c.bill_type,
            currency_id=c.currency,
        )
    Card.objects.bulk_create(Card(id=k, customer_id=v) for k, v in world.cards.items())
    Peer.objects.bulk_create(Peer(id=p) for p in PEERS)
    owner = world.owner()
    Invoice.objects.bulk_create(Invoice(id=i, customer_id=owner) for i in INVOICES)
    for leg in world.legs:
        model, cost_model = (ArchivedLeg, ArchivedLegCost) if leg.archived else (Leg, LegCost)
        obj = model.objects.create(
            uniqueid=leg.uniqueid,
            callid=leg.callid,
            start=leg.start,
            end=leg.end,
            talktime=leg.talktime,
            status=leg.status,
            direction=leg.direction,
            stype=leg.stype,
            snumber=leg.snumber,
            ctype=leg.ctype,
            cnumber=leg.cnumber,
            dtype=leg.dtype,
            dnumber=leg.dnumber,
            callername=leg.callername,
            scustomer_id=leg.scustomer,
            dcustomer_id=leg.dcustomer,
            peer_id=leg.peer,
            invoice_id=leg.invoice,
            card_id=leg.card,
        )
        cost_model.objects.bulk_create(
            cost_model(
                leg=obj,
                customer_id=c.customer,
                card_id=c.card,
                cost=c.amount,
                tax=c.tax,
                currency_id=c.currency,
            )
            for c in leg.costs
        )
    cust = Customer.objects.get(pk=viewer)
    return actor(cust, "viewer", privileges, role=None)


@st.composite
def trees(
    draw: Any, *, max_customers: int = 7, max_depth: int = 4, currencies: Any = None
) -> ref.World:
    """A customer tree under one system owner (ID 1), IDs drawn at random."""
    currency = st.sampled_from([c for c in CURRENCY_WEIGHTS if c in (currencies or CURRENCIES)])
    n = draw(st.integers(1, max_customers))
    ids = draw(st.lists(st.integers(2, 99), min_size=n - 1, max_size=n - 1, unique=True))
    customers = {1: ref.Customer(1, None, draw(st.sampled_from(BILL_TYPES)), draw(currency))}
    depth = {1: 0}
    for cid in ids:
        parent = draw(st.sampled_from(sorted(c for c in customers if depth[c] < max_depth)))
        customers[cid] = ref.Customer(
            cid, parent, draw(st.sampled_from(BILL_TYPES)), draw(currency)
        )
        depth[cid] = depth[parent] + 1
    cards = {
        900 + i: draw(st.sampled_from(sorted(customers))) for i in range(draw(st.integers(0, 3)))
    }
    used = {code: CURRENCIES[code] for code in (currencies or CURRENCIES)}
    return ref.World(customers=customers, currencies=used, cards=cards)


# Mixed case, accents, LIKE's wildcards and escape, a fullwidth letter and an emoji
# (code point order differs from UTF-16 order between these two).
UID_ALPHABET = "019.aAbBz\u00e9_%\uff21\U0001f600"
NUMBER_ALPHABET = "0129aA\u00e9%_\\\uff21\U0001f600"
NAME_ALPHABET = "aAeE\u00e9\u00c9\u00dfsS%_\\ \u03c3\u03a3\u03c2\u1e9e\u0130i"
STATUSES = ["answer", "busy", "ANSWER", "noanswer", ""]
TYPES = ["", "phone", "sip", "Phone"]
STARTS = [0, 1, 5, 5, 10, 100, 1_700_000_000, FUTURE]
# Amounts that give exact halves at the 7th decimal once converted (x 1.1, x 1.25, / 2...).
HALVING_AMOUNTS = ["0.000002", "0.000005", "-0.000005", "0.000006", "-0.000002", "1.000005"]
AMOUNTS = st.one_of(
    st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal(a) for a in HALVING_AMOUNTS]),
)
TAXES = st.one_of(st.just(Decimal(0)), AMOUNTS)


@st.composite
def legs(
    draw: Any, world: ref.World, *, max_legs: int = 8, unique_costs: bool = False
) -> list[ref.Leg]:
    """Legs anywhere in the tree, with cost records for random customers and cards.

    unique_costs: every record's amount is a distinct whole number and its tax 0, all
    in the world's single currency, so a row's cost tells which record it came from.
    """
    customers = sorted(world.customers)
    uids = draw(
        st.lists(st.text(UID_ALPHABET, min_size=1, max_size=4), max_size=max_legs, unique=True)
    )
    number = st.text(NUMBER_ALPHABET, max_size=4)
    currency = st.sampled_from([c for c in CURRENCY_WEIGHTS if c in world.currencies])
    serial = 0
    result = []
    for uid in uids:
        start = draw(st.sampled_from(STARTS))
        duration = draw(st.sampled_from([0, 1, 30, 100]))
        card = draw(st.one_of(st.none(), st.sampled_from(sorted(world.cards) or [None])))
        owners: list[tuple[str, int]] = [("customer", c) for c in customers]
        owners += [("card", c) for c in world.cards]
        chosen = draw(st.lists(st.sampled_from(owners), unique=True, max_size=4)) if owners else []
        costs = []
        for kind, who in chosen:
            if unique_costs:
                serial += 1
                amount, tax, cur = Decimal(serial), Decimal(0), sorted(world.currencies)[0]
            else:
                amount, tax, cur = draw(AMOUNTS), draw(TAXES), draw(currency)
            costs.append(ref.Cost(amount=amount, tax=tax, currency=cur, **{kind: who}))
        result.append(
            ref.Leg(
                uniqueid=uid,
                callid=draw(st.sampled_from(["c1", "c2", "C1", uid])),
                start=start,
                end=start + duration,
                talktime=draw(st.integers(0, duration)),
                status=draw(st.sampled_from(STATUSES)),
                direction=draw(st.sampled_from(["in", "out", "internal"])),
                stype=draw(st.sampled_from(TYPES)),
                snumber=draw(number),
                ctype=draw(st.sampled_from(TYPES)),
                cnumber=draw(number),
                dtype=draw(st.sampled_from(TYPES)),
                dnumber=draw(number),
                callername=draw(st.text(NAME_ALPHABET, max_size=5)),
                scustomer=draw(st.sampled_from(customers)),
                dcustomer=draw(st.one_of(st.none(), st.sampled_from(customers))),
                peer=draw(st.sampled_from([None, *PEERS])),
                invoice=draw(st.sampled_from([None, *INVOICES])),
                card=card,
                archived=draw(st.booleans()),
                costs=tuple(costs),
            )
        )
    return result


# --- the contract's parameter tables (docs/api.md, sections 3 and 4) -----------------

# Section 3's table order (credentials aside): 400 entries come in this order.
TABLE_ORDER = [
    "start", "end", "archive", "callername_match", "callername_number", "callid",
    "cost_customer", "customer", "direction", "invoice", "limit", "offset", "peer", "phone",
    "recurse", "status", "talktime_maximum", "talktime_minimum", "stype", "smatch", "snumber",
    "ctype", "cmatch", "cnumber", "dtype", "dmatch", "dnumber", "sort", "descending",
]  # fmt: skip
INTEGER_PARAMS = [
    "start", "end", "archive", "invoice", "limit", "offset", "peer", "recurse",
    "talktime_maximum", "talktime_minimum", "descending",
]  # fmt: skip
FLAGS = ["archive", "recurse", "descending"]
MINIMUM = {
    "start": 0, "end": 0, "invoice": 0, "limit": 0, "offset": 0, "peer": 0,
    "talktime_minimum": 0, "talktime_maximum": -1,
}  # fmt: skip
STRING_PARAMS = [
    "callername_number", "callid", "phone", "status", "stype", "snumber", "ctype", "cnumber",
    "dtype", "dnumber",
]  # fmt: skip
ENUMERATIONS = {
    "callername_match": ["contains", "start", "end", "exact"],
    "smatch": ["contains", "start", "end", "exact"],
    "cmatch": ["contains", "start", "end", "exact"],
    "dmatch": ["contains", "start", "end", "exact"],
    "direction": ["in", "out", "internal"],
    "sort": [
        "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype",
        "end", "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime",
        "totaltime", "uniqueid",
    ],
    "customer": ["all", "external", "postpaid", "prepaid", "system"],
    "cost_customer": ["scustomer", "card"],
}  # fmt: skip
SORT_FIELDS = ENUMERATIONS["sort"]
# Not integers in the contract's sense (an optional `-` and ASCII digits only).
BAD_INTEGERS = [
    " 1", "1 ", "+1", "1_0", "\u0661", "\uff11", "\u00b2", "0x1", "1.0", "1e3", "-", "--1",
    "1-", "one", "\t1", "1\n", "1;", "\u0663\u0660",
]  # fmt: skip


def ask(client: Any, who: Actor, path: str = LIST, **params: Any) -> Answer:
    """`call` with `who`'s credentials."""
    return call(client, path, **who.creds, **params)


def ids_of(client: Any, who: Actor, **params: Any) -> list[str]:
    """The uniqueids of a successful cdrs/list answer to `who`, in order."""
    answer = ask(client, who, **params)
    assert_ok(answer)
    return answer.ids
