"""Fuzz: the parameter parser, the fields, and whole requests, with random and hostile input.

Without the database (many thousands of examples):
- `parse_urlencoded` on any bytes: never fails, always text that UTF-8 can encode; on
  ASCII it agrees with the standard library (with `;` as a second separator); encoded
  pairs come back exactly, whatever the separators; raw bytes are UTF-8 with U+FFFD.
- JSON bodies through `request_params`: strings as they are, integers as their decimal
  text, null as not set, anything else invalid on that key; any bytes at all are read
  or refused, never raise.
- Every form field of both FilterSets accepts exactly what the contract's model below
  accepts, for hostile text (other scripts' digits, signs, NUL, huge numbers...).

Whole requests through the Django test client (a few thousand): hostile values in
every parameter (SQL fragments, sort values naming other columns, huge numbers, NUL,
long strings, other scripts' digits) sent as GET query strings with odd separators and
escapes, form, multipart and JSON bodies (random JSON, repeated keys, invalid UTF-8,
junk segments). Each answer is exactly what the contract's model predicts: 401 for
broken credentials, 402 for `customer=system`, 400 naming exactly the invalid
parameters in contract order, else 200 (or 404 for a leg not visible in `cdrs/get`).
Never 500, and a 200 never shows a leg or a cost of Charlie's branch.

FUZZ_EXAMPLES (default 100) sets the number of requests per request-level property;
the parser properties run 15 times as many. FUZZ_EXAMPLES=2000 for a long local run.
"""

from __future__ import annotations

import json
import os
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cdrs.parameters import parameter_fields
from enswitch.api.fields import INT64_MIN
from enswitch.api.params import parse_urlencoded, request_params
from tests import api_helpers as h
from tests.api_helpers import GET, INT64_MAX, LIST, make_leg

FUZZ = int(os.environ.get("FUZZ_EXAMPLES", "100"))
PARSER = FUZZ * 15

PURE = hypothesis_settings(max_examples=PARSER, deadline=None)
REQUESTS = hypothesis_settings(
    max_examples=FUZZ,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# --- the contract's parameters, as a model --------------------------------------------------

MATCH = ("contains", "start", "end", "exact")
SORT = (
    "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype", "end",
    "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime", "totaltime",
    "uniqueid",
)  # fmt: skip
NONNEG = ("int", 0, INT64_MAX)
FLAG = ("int", 0, 1)
TEXT = ("text",)
LIST_MODEL: dict[str, tuple] = {
    "start": NONNEG,
    "end": NONNEG,
    "archive": FLAG,
    "callername_match": ("words", MATCH),
    "callername_number": TEXT,
    "callid": TEXT,
    "cost_customer": ("id", ("scustomer", "card")),
    "customer": ("id", ("all", "external", "postpaid", "prepaid", "system")),
    "direction": ("words", ("in", "out", "internal")),
    "invoice": NONNEG,
    "limit": NONNEG,
    "offset": NONNEG,
    "peer": NONNEG,
    "phone": TEXT,
    "recurse": FLAG,
    "status": TEXT,
    "talktime_maximum": ("int", -1, INT64_MAX),
    "talktime_minimum": NONNEG,
    "stype": TEXT,
    "smatch": ("words", MATCH),
    "snumber": TEXT,
    "ctype": TEXT,
    "cmatch": ("words", MATCH),
    "cnumber": TEXT,
    "caller_number": TEXT,
    "called_number": TEXT,
    "dtype": TEXT,
    "dmatch": ("words", MATCH),
    "dnumber": TEXT,
    "sort": ("words", SORT),
    "descending": FLAG,
}
GET_MODEL: dict[str, tuple] = {"uniqueid": TEXT, "customer": ("id", ())}
MODELS = {LIST: LIST_MODEL, GET: GET_MODEL}

# The user of the request-level tests: the reseller (customer 10), whose subtree is
# {10, 11}. Charlie's branch is {20, 21}.
SCOPE = {10, 11}
ASCII_INTEGER = re.compile(r"-?[0-9]+")


def integer_value(text: str) -> int | None:
    """The contract's integer: `-?[0-9]+` in ASCII, within 64 bits; else None."""
    if not ASCII_INTEGER.fullmatch(text):
        return None
    if len(text.lstrip("-").lstrip("0")) > 19:
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def syntax_ok(spec: tuple, text: str) -> bool:
    """Whether a non-empty text is well-formed for the parameter (scope aside)."""
    kind = spec[0]
    if kind == "int":
        value = integer_value(text)
        return value is not None and spec[1] <= value <= spec[2]
    if kind == "words":
        return text in spec[1]
    if kind == "text":
        return len(text) <= 255 and "\x00" not in text
    if kind == "id":
        return text in spec[1] or integer_value(text) is not None
    raise AssertionError(kind)


def value_ok(spec: tuple, text: str) -> bool:
    """Whether a value is valid for the reseller (customer IDs must be in its subtree)."""
    if text == "":
        return True
    if not syntax_ok(spec, text):
        return False
    if spec[0] == "id" and text not in spec[1]:
        return integer_value(text) in SCOPE
    return True


def predict(path: str, final: dict[str, str], bad_types: set[str], body_error: bool):
    """(code, keys) the contract gives for these parameters, as the reseller sees them."""
    model = MODELS[path]
    if path == LIST and final.get("customer") == "system":
        return 402, []  # not the system owner; role checks come before parameters
    invalid = [
        name
        for name, spec in model.items()
        if name in bad_types or (name in final and not value_ok(spec, final[name]))
    ]
    if path == GET and "uniqueid" not in invalid and not final.get("uniqueid"):
        invalid.insert(0, "uniqueid")  # required
    if body_error:
        invalid.append("body")
    if invalid:
        return 400, invalid
    if path == GET:
        return (200 if final["uniqueid"] in VISIBLE else 404), []
    return 200, []


# --- hostile values -------------------------------------------------------------------------

SQL = [
    "' OR 1=1 --",
    "' OR '1'='1",
    "); DROP TABLE cdrs_leg; --",
    "'; DROP TABLE cdrs_leg; --",
    "1; DELETE FROM cdrs_leg",
    "1 OR 1=1",
    '" OR ""="',
    "%' OR '%'='",
    "1) OR (1=1",
    "' UNION SELECT username, password FROM customers_user --",
    "1 UNION SELECT 1",
    "(SELECT 1)",
    "1; SELECT pg_sleep(5)",
    "randomblob(1000000000)",
    "\\",
    "\\'",
    "'",
    '"',
    "`",
    "%",
    "_",
    "%_%",
    "*",
]
SORT_ATTACKS = [
    "id",
    "callername_folded",
    "start desc",
    "start DESC",
    "-start",
    "start,id",
    "start;",
    "uniqueid;",
    "1",
    "0",
    "sort_key",
    "row_cost",
    "scustomer_id",
    "random()",
    "start ASC NULLS FIRST",
    "?",
    "Start",
    "name ",
    " name",
]
NUMBERS = [
    "0",
    "-0",
    "007",
    "1",
    "-1",
    "-2",
    "2",
    "10",
    "11",
    "011",
    "20",
    "21",
    "1700000000",
    "+1",
    " 1",
    "1 ",
    "\t1",
    "1\n",
    "1.0",
    "1e3",
    "0x10",
    "1_000",
    "--1",
    "-",
    "\u0661\u0662",
    "\uff11\uff12",
    "\u00b2",
    "\u216b",
    "\u0967",
    str(INT64_MAX),
    str(INT64_MAX + 1),
    str(INT64_MIN),
    str(INT64_MIN - 1),
    "0" * 40 + "1",
    "9" * 30,
    "1" * 5000,
    "-" + "9" * 5000,
]
TEXTS = [
    "",
    "\x00",
    "a\x00b",
    "\ufffd",
    "\U0001f600",
    "e\u0301",
    "\u0130",
    "\u00df",
    "x" * 255,
    "x" * 256,
    "\u00e9" * 255,
    "\u00e9" * 256,
    "\U0001f600" * 256,
    "a;b&c=d",
    "a+b",
    "%41",
    "%zz",
    "\r\n",
    " ",
    "null",
    "None",
    "[]",
    "{}",
    "true",
    "1.1",
    "system",
    "all",
    "prepaid",
    "scustomer",
    "card",
    "contains",
    "exact",
    "in",
    "IN",
    "r.1",
    "c.1",
    "s.1",
    "r.arch",
    "c.arch",
]
HOSTILE = SQL + SORT_ATTACKS + NUMBERS + TEXTS

# Keys: every parameter, near misses, unknown ones. The credentials are never drawn.
NEAR_MISSES = ["Start", "SORT", "start ", " start", "sort[]", "customer[]", "", "_", "x"]
LIST_KEYS = list(LIST_MODEL) + ["uniqueid"] + NEAR_MISSES
GET_KEYS = list(GET_MODEL) + ["start", "sort", "archive"] + NEAR_MISSES

SEPARATORS = [b";", b"&", b";;", b"&&", b";&", b"&;", b";;&&"]
# Segments that add only unknown keys (or none), however they decode.
JUNK = [
    b"",
    b"=",
    b"==",
    b"%",
    b"%zz",
    b"%ff%fe=%c3%28",
    b"\xff\xfe=\xc3(",
    b"a%00b=c",
    b"+=+",
    b"%2",
    b"=start",
    b"%3D=1",
    b"x=%ff",
    b"unknown=%00",
]


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.integers(-(2**80), 2**80).map(str),
        st.from_regex(r"\A-?0{0,3}[0-9]{1,22}\Z"),
        st.text(max_size=20),
        st.text(alphabet="-+0123456789 \u0661\uff10_.;&=%\x00", max_size=25),
        st.text(min_size=250, max_size=260, alphabet="ab\u00e9\U0001f600"),
    )


def encode(rng: Any, text: str) -> bytes:
    """A text as query-string bytes, each character escaped or not at random (always
    when it would be read as syntax); a space as `+` or `%20`."""
    out = bytearray()
    for ch in text:
        raw = ch.encode("utf-8")
        if ch == " ":
            out += rng.choice([b"+", b"%20"])
        elif ch in ";&=%+#" or not ch.isprintable() or rng.random() < 0.3:
            hexes = "".join(f"%{b:02X}" if rng.random() < 0.5 else f"%{b:02x}" for b in raw)
            out += hexes.encode("ascii")
        else:
            out += raw
    return bytes(out)


def query_bytes(rng: Any, pairs: list[tuple[str, str]]) -> bytes:
    parts = []
    for key, value in pairs:
        if rng.random() < 0.2:
            parts.append(rng.choice(JUNK))
        if value == "" and rng.random() < 0.3:
            parts.append(encode(rng, key))  # a key without `=` has the empty value
        else:
            parts.append(encode(rng, key) + b"=" + encode(rng, value))
    out = b""
    for part in parts:
        out += (rng.choice(SEPARATORS) if out else b"") + part
    return out


def creds_bytes(who: h.Actor) -> bytes:
    return ";".join(f"{k}={quote(v, safe='')}" for k, v in who.creds.items()).encode()


# --- without the database: the parser -------------------------------------------------------


@PURE
@given(raw=st.binary(max_size=300))
def test_parser_takes_any_bytes(raw):
    values = parse_urlencoded(raw)
    for key, value in values.items():
        assert isinstance(key, str)
        assert isinstance(value, str)
        (key + value).encode("utf-8")  # no lone surrogate: always encodable


ASCII_QUERY = st.binary(max_size=80).map(
    lambda b: bytes(c for c in b if c < 128) or b"",
) | st.text(alphabet="ab=;&%+0fFzZ\x00 -", max_size=40).map(str.encode)


@PURE
@given(raw=ASCII_QUERY)
def test_parser_agrees_with_the_standard_library_on_ascii(raw):
    # The standard library, with `;` as a second separator and the last key winning.
    expected = dict(
        parse_qsl(
            raw.replace(b";", b"&").decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="replace",
        )
    )
    assert parse_urlencoded(raw) == expected


@PURE
@given(
    pairs=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=8),
    rng=st.randoms(use_true_random=False),
    plus=st.booleans(),
)
def test_encoded_pairs_come_back_exactly(pairs, rng, plus):
    quoting = (lambda t: quote_plus(t, safe="")) if plus else (lambda t: quote(t, safe=""))
    raw = b""
    for key, value in pairs:
        part = f"{quoting(key)}={quoting(value)}".encode()
        raw += (rng.choice(SEPARATORS) if raw else rng.choice([b"", b";", b"&"])) + part
    raw += rng.choice([b"", b";", b"&&"])
    assert parse_urlencoded(raw) == dict(pairs)


@PURE
@given(text=st.text(max_size=30), rng=st.randoms(use_true_random=False))
def test_randomly_escaped_text_comes_back_exactly(text, rng):
    assert parse_urlencoded(b"k=" + encode(rng, text) + b";" + encode(rng, text) + b"=v") == {
        "k": text,
        text: "v",
    }


@PURE
@given(raw=st.binary(max_size=60))
def test_raw_bytes_are_utf8_with_replacement(raw):
    raw = bytes(b for b in raw if b not in b";&=%+")
    assert parse_urlencoded(b"k=" + raw) == {"k": raw.decode("utf-8", errors="replace")}


# --- without the database: JSON bodies ------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
JSON_TEXT = st.text(alphabet=st.characters(codec=None) | SURROGATES, max_size=10)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**40), 10**40)
    | st.floats()
    | JSON_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_TEXT, inner, max_size=3),
    max_leaves=6,
)


UNKNOWN_JSON_KEYS = JSON_TEXT.filter(lambda k: not k.startswith("auth_"))


def no_surrogates(text: str) -> str:
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def json_model(data: Any, final: dict[str, str], bad: set[str]) -> None:
    """A JSON object's parameters over those of the query string (contract, section 1)."""
    for raw_key, value in data.items():
        key = no_surrogates(raw_key)
        bad.discard(key)
        if value is None:
            final.pop(key, None)
        elif isinstance(value, str):
            final[key] = no_surrogates(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            final[key] = str(value)
        else:
            final.pop(key, None)
            bad.add(key)


def json_body(pairs: list[tuple[str, Any]]) -> bytes:
    """An object with these members in order, repeated keys kept (the last one wins)."""
    members = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs)
    return ("{" + members + "}").encode()


def factory_params(qs: bytes, body: bytes, content_type: str):
    request = RequestFactory().generic(
        "POST", "/api/json/cdrs/list/", data=body, content_type=content_type
    )
    request.META["QUERY_STRING"] = qs.decode("latin-1")
    return request_params(request)


@PURE
@given(
    query=st.dictionaries(st.sampled_from(["a", "start", "\ufffd"]), st.text(max_size=3)),
    pairs=st.lists(st.tuples(JSON_TEXT | st.sampled_from(["a", "start"]), JSON_VALUES)),
)
def test_json_bodies_follow_the_contract(query, pairs):
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items()).encode()
    params = factory_params(qs, json_body(pairs), "application/json")
    final, bad = dict(query), set()
    json_model(dict(pairs), final, bad)
    assert params.body_error == ""
    assert params.values == final
    assert set(params.invalid) == bad


@PURE
@given(body=st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_any_json_body_is_read_or_refused(body):
    params = factory_params(b"", body, "application/json")
    try:
        data = json.loads(body.decode("utf-8", errors="replace") or "{}", parse_int=str)
    except ValueError:
        assert params.body_error
        return
    if not isinstance(data, dict):
        assert params.body_error
    else:
        assert not params.body_error


@pytest.mark.parametrize(
    "body",
    [b"[" * 10_000, b'{"start": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["unclosed", "nested-value"],
)
def test_deeply_nested_json_is_refused_not_raised(body):
    params = factory_params(b"", body, "application/json")
    assert params.body_error or "start" in params.invalid


@pytest.mark.django_db
@pytest.mark.parametrize("creds", ["valid", "none"])
def test_deeply_nested_json_body_is_a_400_not_a_500(client, world, creds):
    qs = creds_bytes(world.reseller).decode() if creds == "valid" else ""
    answer = h.post_json(client, LIST, b"[" * 1000, qs=qs)
    assert answer.code == ("400" if creds == "valid" else "401"), answer


# --- without the database: the fields -------------------------------------------------------

FIELDS = [
    (model[name], name, parameter_fields(endpoint)[name])
    for endpoint, model in (("list", LIST_MODEL), ("get", GET_MODEL))
    for name in model
]


def test_the_model_names_every_filter():
    assert list(parameter_fields("list")) == list(LIST_MODEL)
    assert list(parameter_fields("get")) == list(GET_MODEL)


@PURE
@given(value=hostile_text())
def test_fields_accept_exactly_what_the_contract_accepts(value):
    for spec, name, field in FIELDS:
        messages: list[str] = []
        try:
            field.clean(value)
        except ValidationError as exc:
            messages = exc.messages or [""]
        accepted = not messages
        assert all(m.strip() for m in messages), (name, value)  # a sentence for the 400
        assert accepted == (value == "" or syntax_ok(spec, value)), (name, value)


# --- whole requests -------------------------------------------------------------------------

# The reseller's legs (what it may see), Charlie's, and one shared leg where Charlie's
# cost record must never show.
VISIBLE = {"r.1", "r.2", "r.arch", "s.1"}
CHARLIES = {"c.1", "c.2", "c.arch"}
# Charlie's cost record on the shared leg (777 + 1 tax, USD) seen in the reseller's EUR.
FORBIDDEN_AMOUNTS = {
    (Decimal(a) / Decimal("1.1")).quantize(Decimal("0.000001"), ROUND_HALF_UP) for a in (777, 778)
}


@pytest.fixture
def world(db):
    actors = h.make_actors()
    make_leg("r.1", 10, 11, costs=[{"customer": 10, "cost": "2", "currency": "EUR"}])
    make_leg("r.2", 11, None, status="busy", callername="\u00c9ric", snumber="0123")
    make_leg("r.arch", 11, 10, archived=True, start=1_600_000_000)
    make_leg(
        "s.1",
        21,
        11,
        direction="in",
        costs=[
            {"customer": 21, "cost": "777", "tax": "1"},
            {"customer": 10, "cost": "5", "currency": "EUR"},
        ],
    )
    make_leg("c.1", 21, None, costs=[{"customer": 21, "cost": "777", "tax": "1"}])
    make_leg("c.2", 20, 21, stype="phone", snumber="' OR 1=1 --")
    make_leg("c.arch", 21, 20, archived=True, start=1_600_000_000)
    return actors


def check(answer: h.Answer, path: str, expected: tuple[int, list[str]], context: Any) -> None:
    code, keys = expected
    assert answer.code == str(code), (context, answer)
    assert answer.code != "500", (context, answer)
    if code == 400:
        h.assert_invalid(answer, *keys)
        return
    if code in (401, 402, 404):
        assert len(answer.responses) == 1, (context, answer)
        assert "data" not in answer.body, (context, answer)
        return
    h.assert_ok(answer)
    rows = answer.data if path == LIST else [answer.data]
    for row in rows:
        h.assert_row_shape(row)
        assert row["uniqueid"] not in CHARLIES, (context, row)
        assert row["scustomer"] in SCOPE or row["dcustomer"] in SCOPE, (context, row)
        for key in ("cost", "cost_including_tax"):
            assert abs(h.money(row[key])) not in FORBIDDEN_AMOUNTS, (context, row)


def pairs_strategy(path: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    keys = LIST_KEYS if path == LIST else GET_KEYS
    return st.lists(st.tuples(st.sampled_from(keys), hostile_text()), max_size=6)


PATHS = st.sampled_from([LIST, GET, LIST.rstrip("/"), GET.rstrip("/")])


def base(path: str) -> str:
    return path if path.endswith("/") else f"{path}/"


def hostile_get(client: Any, who: h.Actor, path: str, final: dict[str, str]) -> h.Answer:
    qs = creds_bytes(who)
    for name, value in final.items():
        qs += b";" + quote(name, safe="").encode() + b"=" + quote(value, safe="").encode()
    return h.request(client, path, query_string=qs)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [LIST, GET])
def test_sql_in_every_parameter(client, world, path):
    """Each SQL fragment alone in each parameter: the model's answer (mostly a 200 that
    matches nothing, or a 400), never a 500, never a row of Charlie's."""
    for name in MODELS[path]:
        for value in SQL:
            final = {name: value}
            if path == GET and name != "uniqueid":
                final["uniqueid"] = "r.1"
            answer = hostile_get(client, world.reseller, path, final)
            check(answer, path, predict(path, final, set(), False), final)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [LIST, GET])
def test_every_hostile_value_in_every_parameter(client, world, path):
    """Every parameter at once, each with a hostile value; rotating, so that every value
    goes into every parameter: 400s naming exactly the invalid ones, in contract order."""
    names = list(MODELS[path])
    for i in range(len(HOSTILE)):
        final = {name: HOSTILE[(i + 7 * j) % len(HOSTILE)] for j, name in enumerate(names)}
        if final.get("customer") == "system":
            final.pop("customer")  # a 402 would hide the rest; `system` is tested alone
        answer = hostile_get(client, world.reseller, path, final)
        check(answer, path, predict(path, final, set(), False), final)


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS, rng=st.randoms(use_true_random=False))
def test_random_query_strings(client, world, data, path, rng):
    pairs = data.draw(pairs_strategy(base(path)))
    qs = query_bytes(rng, pairs)
    creds = creds_bytes(world.reseller)
    qs = creds + rng.choice(SEPARATORS) + qs if rng.random() < 0.5 else qs + b";" + creds
    final = dict(pairs)
    method = rng.choice(["GET", "POST"])  # a POST with an empty body reads the query string
    answer = h.request(client, path, method=method, query_string=qs)
    check(answer, base(path), predict(base(path), final, set(), False), (method, qs))


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS, rng=st.randoms(use_true_random=False))
def test_random_form_bodies(client, world, data, path, rng):
    query = data.draw(pairs_strategy(base(path)))
    body = data.draw(pairs_strategy(base(path)))
    qs = creds_bytes(world.reseller) + b";" + query_bytes(rng, query)
    content_type = rng.choice(
        ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"]
    )
    answer = h.request(
        client,
        path,
        method="POST",
        query_string=qs,
        body=query_bytes(rng, body),
        content_type=content_type,
    )
    final = {**dict(query), **dict(body)}
    check(answer, base(path), predict(base(path), final, set(), False), (qs, body))


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS)
def test_random_multipart_bodies(client, world, data, path):
    # Not the near misses with spaces: the multipart parser trims field names (see
    # test_multipart_field_names_are_not_trimmed).
    keys = [k for k in (LIST_KEYS if base(path) == LIST else GET_KEYS) if k.strip() == k and k]
    body = data.draw(
        st.dictionaries(st.sampled_from(keys), st.lists(hostile_text(), min_size=1, max_size=2))
    )
    answer = h.post_multipart(client, path, body, qs=creds_bytes(world.reseller).decode())
    final = {k: vs[-1] for k, vs in body.items()}  # the last part of a repeated key wins
    check(answer, base(path), predict(base(path), final, set(), False), body)


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS, rng=st.randoms(use_true_random=False))
def test_random_json_bodies(client, world, data, path, rng):
    keys = LIST_KEYS if base(path) == LIST else GET_KEYS
    query = data.draw(pairs_strategy(base(path)))
    value = hostile_text() | JSON_VALUES | st.integers(-(2**70), 2**70)
    members = data.draw(
        st.lists(st.tuples(st.sampled_from(keys) | UNKNOWN_JSON_KEYS, value), max_size=6)
    )
    qs = creds_bytes(world.reseller) + b";" + query_bytes(rng, query)
    final, bad = dict(query), set()
    json_model(dict(members), final, bad)
    answer = h.post_json(client, path, json_body(members), qs=qs.decode("latin-1"))
    check(answer, base(path), predict(base(path), final, bad, False), (qs, members))


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS)
def test_random_json_documents_and_bytes(client, world, data, path):
    body = data.draw(
        st.binary(max_size=100)
        | JSON_VALUES.map(lambda v: json.dumps(v).encode())
        | st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"1", b"\xff\xfe{}", b"{}{}"])
    )
    try:
        document = json.loads(body.decode("utf-8", errors="replace") or "{}", parse_int=str)
    except ValueError:
        document = None
    final: dict[str, str] = {}
    bad: set[str] = set()
    body_error = not isinstance(document, dict)
    if not body_error:
        json_model(document, final, bad)
    qs = creds_bytes(world.reseller).decode()
    answer = h.post_json(client, path, body, qs=qs)
    check(answer, base(path), predict(base(path), final, bad, body_error), body)


@pytest.mark.django_db
@pytest.mark.xfail(
    strict=True,
    reason="known limit (docs/api.md, section 7): in a multipart body a field named "
    "'start ' (or ' sort') is taken as 'start' (Django's multipart parser strips field "
    "names), where the query string and form bodies ignore it as an unknown key",
)
def test_multipart_field_names_are_not_trimmed(client, world):
    qs = creds_bytes(world.reseller).decode()
    for name in ("start ", " sort", "customer\t"):
        answer = h.post_multipart(client, LIST, {name: "' OR 1=1 --"}, qs=qs)
        assert answer.code == "200", (name, answer)  # an unknown key, ignored


BROKEN_CREDENTIALS = [
    {},
    {"auth_username": "reseller"},
    {"auth_password": h.PASSWORD},
    {"auth_username": "reseller", "auth_password": ""},
    {"auth_username": "reseller", "auth_password": "wrong"},
    {"auth_username": "reseller", "auth_password": h.PASSWORD + " "},
    {"auth_username": "Reseller", "auth_password": h.PASSWORD},
    {"auth_username": "charlie", "auth_password": "wrong"},
    {"auth_username": "' OR 1=1 --", "auth_password": "' OR 1=1 --"},
    {"auth_username": "reseller' --", "auth_password": "x"},
    {"auth_username": "reseller\x00", "auth_password": h.PASSWORD},
    {"auth_username": "x" * 5000, "auth_password": "x" * 5000},
    {"auth_username": "\ufffd", "auth_password": "\U0001f600"},
]


@pytest.mark.django_db
@REQUESTS
@given(data=st.data(), path=PATHS, rng=st.randoms(use_true_random=False))
def test_broken_credentials_are_401_whatever_else_is_sent(client, world, data, path, rng):
    creds = data.draw(st.sampled_from(BROKEN_CREDENTIALS))
    pairs = data.draw(pairs_strategy(base(path)))
    qs = query_bytes(rng, pairs + list(creds.items()))
    answer = h.request(client, path, method=rng.choice(["GET", "POST"]), query_string=qs)
    assert answer.code == "401", (qs, answer)
    h.assert_error(answer, 401)
