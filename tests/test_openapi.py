"""The OpenAPI description (/api/schema/): valid OpenAPI 3, the whole contract, and true.

- The schema is served (YAML and JSON), generated without a warning, and valid.
- Every parameter of the contract's tables (typed here from the contract, not read from
  the code) is there, in order, for GET (query) and POST (form and JSON bodies), on both
  path spellings, with its enumeration, bounds, default and the credentials.
- The integer patterns accept exactly what the fields accept (a hypothesis property).
- Real answers validate against the response schemas.
- Schemathesis, in-process against the WSGI app, with ENSWITCH_HTTP_STATUS=code, on all
  eight operations (GET and POST, both spellings), positive and negative cases: no
  server error, no invalid input accepted (`negative_data_rejection`), and statuses,
  content types and bodies as described. OPENAPI_EXAMPLES (default 50) per operation.
"""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from typing import Any

import jsonschema
import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from cdrs.parameters import parameter_fields
from tests import api_helpers as h
from tests.api_helpers import GET, INT64_MAX, LIST

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/"
JSON_URL = f"{SCHEMA_URL}?format=json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
MEDIA = (*FORMS, "application/json")

# --- the contract, typed from docs/api.md -----------------------------------------------

MATCH = ["contains", "start", "end", "exact"]
SORT = [
    "callid", "cnumber", "cost", "ctype", "dcustomer", "direction", "dnumber", "dtype", "end",
    "name", "peer", "scustomer", "snumber", "start", "status", "stype", "talktime", "totaltime",
    "uniqueid",
]  # fmt: skip
CUSTOMER_WORDS = ["all", "external", "postpaid", "prepaid", "system"]
COST_CUSTOMER_WORDS = ["scustomer", "card"]
DIRECTIONS = ["in", "out", "internal"]

# name -> (kind, enumeration or (minimum, maximum), default)
INT, FLAG, WORDS, ID_OR_WORDS, TEXT = "int", "flag", "words", "id-or-words", "text"
LIST_PARAMS: dict[str, tuple[str, Any, str | None]] = {
    "start": (INT, (0, INT64_MAX), "0"),
    "end": (INT, (0, INT64_MAX), None),
    "archive": (FLAG, (0, 1), "0"),
    "callername_match": (WORDS, MATCH, "contains"),
    "callername_number": (TEXT, None, ""),
    "callid": (TEXT, None, ""),
    "cost_customer": (ID_OR_WORDS, COST_CUSTOMER_WORDS, None),
    "customer": (ID_OR_WORDS, CUSTOMER_WORDS, None),
    "direction": (WORDS, DIRECTIONS, ""),
    "invoice": (INT, (0, INT64_MAX), "0"),
    "limit": (INT, (0, INT64_MAX), "0"),
    "offset": (INT, (0, INT64_MAX), "0"),
    "peer": (INT, (0, INT64_MAX), "0"),
    "phone": (TEXT, None, ""),
    "recurse": (FLAG, (0, 1), "0"),
    "status": (TEXT, None, ""),
    "talktime_maximum": (INT, (-1, INT64_MAX), "-1"),
    "talktime_minimum": (INT, (0, INT64_MAX), "0"),
    "stype": (TEXT, None, ""),
    "smatch": (WORDS, MATCH, "contains"),
    "snumber": (TEXT, None, ""),
    "ctype": (TEXT, None, ""),
    "cmatch": (WORDS, MATCH, "contains"),
    "cnumber": (TEXT, None, ""),
    "caller_number": (TEXT, None, ""),
    "called_number": (TEXT, None, ""),
    "dtype": (TEXT, None, ""),
    "dmatch": (WORDS, MATCH, "contains"),
    "dnumber": (TEXT, None, ""),
    "sort": (WORDS, SORT, "start"),
    "descending": (FLAG, (0, 1), "0"),
}
GET_PARAMS: dict[str, tuple[str, Any, str | None]] = {
    "uniqueid": (TEXT, None, None),
    "customer": (ID_OR_WORDS, [], None),
}
TOTALS_PARAMS: dict[str, tuple[str, Any, str | None]] = {
    "start": (INT, (0, INT64_MAX), "0"),
    "end": (INT, (0, INT64_MAX), None),
    "customer": (ID_OR_WORDS, CUSTOMER_WORDS, None),
    "recurse": (FLAG, (0, 1), "0"),
}
LOGIN_PARAMS: dict[str, tuple[str, Any, str | None]] = {
    "token": (INT, (-(2**63), INT64_MAX), "0"),
}
TOTALS = "/api/json/cdrs/totals/list/"
LOGIN = "/api/json/user/login/"
ENDPOINTS = {
    "list": (LIST, LIST_PARAMS),
    "get": (GET, GET_PARAMS),
    "totals": (TOTALS, TOTALS_PARAMS),
    "login": (LOGIN, LOGIN_PARAMS),
}
ERRORS = {
    "list": ["400", "401", "402", "403", "500"],
    "get": ["400", "401", "402", "403", "404", "500"],
    "totals": ["400", "401", "402", "403", "500"],
    "login": ["400", "401", "500"],
}


# --- reading the schema ---------------------------------------------------------------------


@pytest.fixture
def openapi(client) -> dict[str, Any]:
    response = client.get(JSON_URL)
    assert response.status_code == 200
    return json.loads(response.content)


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` (if any) merged in, and its anyOf branches resolved."""
    schema = dict(schema)
    ref = schema.pop("$ref", None)
    if ref:
        target = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        schema = {**resolve(spec, target), **schema}
    if "anyOf" in schema:
        schema["anyOf"] = [resolve(spec, s) for s in schema["anyOf"]]
    return schema


def branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return schema.get("anyOf", [schema])


def accepts(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` is valid against `schema` (JSON Schema 2020-12, refs resolved)."""
    return jsonschema.Draft202012Validator(resolve(spec, schema)).is_valid(value)


def operation_params(spec: dict, path: str, method: str) -> dict[str, tuple[dict, bool, str]]:
    """name -> (value schema, required, description) of one operation."""
    op = spec["paths"][path][method]
    if method == "get":
        return {
            p["name"]: (p["schema"], p.get("required", False), p.get("description", ""))
            for p in op["parameters"]
            if p["in"] == "query"
        }
    raise AssertionError(method)


def body_params(spec: dict, path: str, media: str) -> dict[str, tuple[dict, bool, str]]:
    body = spec["paths"][path]["post"]["requestBody"]["content"][media]["schema"]
    required = set(body.get("required", []))
    return {
        name: (schema, name in required, schema.get("description", ""))
        for name, schema in body["properties"].items()
    }


def every_place(spec: dict[str, Any], endpoint: str):
    """(label, params, is_json) for every way to send the parameters of an endpoint."""
    base = ENDPOINTS[endpoint][0]
    for path in (base, base.rstrip("/")):
        yield f"GET {path}", operation_params(spec, path, "get"), False
        for media in MEDIA:
            yield f"POST {path} {media}", body_params(spec, path, media), media.endswith("json")


# --- served, generated cleanly, valid -------------------------------------------------------


def test_schema_is_served_as_yaml_and_json(client, openapi):
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi;")  # YAML
    assert yaml.safe_load(response.content) == openapi
    assert openapi["openapi"].startswith("3.")


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert yaml.safe_load(out.read_text())["paths"]


def test_schema_is_valid_openapi_3(openapi):
    validate_openapi(openapi)


def test_schema_view_fetches_nothing_from_outside(client):
    # No UI page pulling scripts from a CDN: only the schema itself is served.
    body = client.get(SCHEMA_URL).content
    assert b"<script" not in body
    assert b"cdn." not in body


# --- every parameter of the contract -------------------------------------------------------


def test_both_endpoints_both_spellings_both_methods(openapi):
    for base, _ in ENDPOINTS.values():
        for path in (base, base.rstrip("/")):
            assert set(openapi["paths"][path]) == {"get", "post"}, path
            assert set(openapi["paths"][path]["post"]["requestBody"]["content"]) == set(MEDIA)
    ids = [op["operationId"] for ops in openapi["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == 16


def test_credentials_are_required_on_every_operation(openapi):
    schemes = openapi["components"]["securitySchemes"]
    for name in ("auth_username", "auth_password", "auth_token"):
        assert schemes[name] == {
            "type": "apiKey",
            "in": "query",
            "name": name,
            "description": schemes[name]["description"],
        }
    for ops in openapi["paths"].values():
        for op in ops.values():
            assert op["security"] == [
                {"auth_username": [], "auth_password": []},
                {"auth_token": []},
            ]


@pytest.mark.parametrize("endpoint", ["list", "get", "totals", "login"])
def test_every_contract_parameter_is_described(openapi, endpoint):
    _, contract = ENDPOINTS[endpoint]
    for label, params, is_json in every_place(openapi, endpoint):
        assert list(params) == list(contract), label  # the contract's order, nothing else
        for name, (kind, spec, default) in contract.items():
            schema, required, description = params[name]
            where = (label, name)
            assert description.strip(), where
            assert required == (name == "uniqueid"), where
            resolved = resolve(openapi, schema)
            if default is not None and not is_json:
                assert resolved.get("default") == default, where
            ok = lambda value, s=schema: accepts(openapi, s, value)  # noqa: E731
            # Every parameter but the required one takes "" for its default; JSON null too.
            assert ok("") == (name != "uniqueid"), where
            if is_json:
                assert ok(None) == (name != "uniqueid"), where
                for value in (True, 1.5, [], {}):
                    assert not ok(value), (where, value)
            if kind in (WORDS, ID_OR_WORDS):
                words = [w for b in branches(resolved) for w in b.get("enum", [])]
                assert sorted(w for w in words if w) == sorted(spec), where
                for word in spec:
                    assert ok(word), where
                    assert not ok(word.upper()), where  # case-sensitive
                assert not ok(" " + (spec or ["x"])[0]), where
            if kind == WORDS:
                assert not ok("1"), where
            if kind == ID_OR_WORDS:
                for value in ("1", "007", "-0", str(INT64_MAX)):
                    assert ok(value), where
                for value in ("+1", "1.0", " 1", "\u0661", str(INT64_MAX + 1), "x"):
                    assert not ok(value), where
                if is_json:
                    assert ok(12), where
                    assert not ok(INT64_MAX + 1), where
            if kind in (INT, FLAG):
                low, high = spec
                if is_json:
                    number = next(b for b in branches(resolved) if b.get("type") == "integer")
                    assert (number["minimum"], number["maximum"]) == (low, high), where
                    for value in (low, high):
                        assert ok(value), (where, value)
                    for value in (low - 1, high + 1):
                        assert not ok(value), (where, value)
                for value in (low, high, *(v for v in (0, 1, 7) if low <= v <= high)):
                    assert ok(str(value)), (where, value)
                    assert ok(("-00" if value < 0 else "00") + str(abs(value))), (where, value)
                for value in (low - 1, high + 1, 2**64):
                    assert not ok(str(value)), (where, value)
                for value in ("+1", "1.0", " 0", "0 ", "\u0661", "1e3", "0x1", "-", "1_0"):
                    assert not ok(value), (where, value)
                assert ok("-0"), where
            if kind == TEXT:
                text = next(b for b in branches(resolved) if b.get("type") == "string")
                assert text["maxLength"] == 255, where
                assert ok("x" * 255), where
                assert not ok("x" * 256), where
                assert ok("\u00e9" * 255), where  # code points, not bytes
                assert not ok("a\x00b"), where
                assert ok("' OR 1=1 --"), where
                if is_json:
                    assert ok(12345), where  # an integer is taken as its decimal text


def test_parameters_are_read_from_the_filtersets(openapi):
    # The schema names exactly the validated parameters (declared once, in cdrs/parameters.py).
    assert list(parameter_fields("list")) == list(LIST_PARAMS)
    assert list(parameter_fields("get")) == list(GET_PARAMS)
    assert list(parameter_fields("totals")) == list(TOTALS_PARAMS)
    from cdrs import schema

    assert set(schema.LIST_DOCS) == set(parameter_fields("list"))
    assert set(schema.GET_DOCS) == set(parameter_fields("get"))


INTEGER_TEXT = st.one_of(
    st.from_regex(r"\A-?0{0,3}[0-9]{1,21}\Z"),
    st.integers(-(2**65), 2**65).map(str),
    st.text(alphabet="-+0123456789 \u0661\uff11_.e", max_size=22),
)


def _integer_texts() -> list[tuple[str, Any, list[str], list[str]]]:
    """(name, form field, patterns, words) of every parameter that takes an integer text."""
    from cdrs import schema as cdrs_schema
    from enswitch.api import schema

    found = []
    for endpoint, docs in (
        ("list", cdrs_schema.LIST_DOCS),
        ("get", cdrs_schema.GET_DOCS),
        ("totals", cdrs_schema.TOTALS_DOCS),
    ):
        fields = parameter_fields(endpoint)
        for param in schema.params_of(fields, docs):
            refs = [b["$ref"].rsplit("/", 1)[1] for b in branches(param.text) if "$ref" in b]
            if refs:
                patterns = [schema.SHARED[ref]["pattern"] for ref in refs]
                words = [w for b in branches(param.text) for w in b.get("enum", [])]
                field = fields[param.name]
                found.append((param.name, field, patterns, words))
    return found


@hypothesis_settings(max_examples=2000, deadline=None)
@given(value=INTEGER_TEXT)
def test_integer_patterns_accept_exactly_what_the_fields_accept(value):
    """The schema's text patterns and the form fields agree on every integer text."""
    from django.core.exceptions import ValidationError

    for name, field, patterns, words in INTEGER_TEXTS:
        try:
            field.clean(value)
            valid = True
        except ValidationError:
            valid = False
        matched = value in words or any(re.fullmatch(p.strip("^$"), value) for p in patterns)
        assert matched == valid, (name, value)


INTEGER_TEXTS = _integer_texts()


# --- answers match the response schemas -----------------------------------------------------


@pytest.fixture
def world():
    """The named actors and a few legs on both sides, Charlie's included."""
    actors = h.make_actors()
    h.make_leg("1.1", 10, 11, costs=[{"customer": 10, "cost": "1.5", "tax": "0.1"}])
    h.make_leg("1.2", 11, None, status="busy", callername="\u00c9ric", snumber="0123")
    h.make_leg("1.3", 21, None, direction="in")
    h.make_leg("1.4", 11, 10, archived=True, start=1_600_000_000)
    return actors


def _validator(openapi: dict[str, Any], ref: str) -> jsonschema.Validator:
    schema = {**openapi["components"]["schemas"][ref], "components": openapi["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_answers_match_the_response_schemas(client, openapi, world, settings):
    creds = world.owner.creds
    envelope = _validator(openapi, "ListEnvelope")
    answer = h.call(client, LIST, **creds, archive=1, customer="system")
    rows = h.assert_ok(answer)
    assert len(rows) == 4
    envelope.validate(answer.body)
    get = _validator(openapi, "GetEnvelope")
    answer = h.call(client, GET, **creds, uniqueid="1.1", customer=10)
    h.assert_ok(answer)
    get.validate(answer.body)
    row = openapi["components"]["schemas"]["Row"]
    assert set(row["properties"]) == set(h.ROW_TYPES) == set(row["required"])
    types = {str: "string", int: "integer"}
    for key, kind in h.ROW_TYPES.items():
        assert row["properties"][key]["type"] == types.get(kind, "number"), key
    totals = _validator(openapi, "TotalsEnvelope")
    answer = h.call(client, TOTALS, **creds, customer="system", start=0, end=2_000_000_000)
    assert len(h.assert_ok(answer)) == 5  # two customers in one hour, three in another
    totals.validate(answer.body)
    login = _validator(openapi, "LoginEnvelope")
    for token in (0, 1):
        answer = h.call(client, LOGIN, **creds, token=token)
        h.assert_ok(answer)
        login.validate(answer.body)
    answer = h.call(client, LIST, auth_token=h.assert_ok(answer)["auth_token"])
    envelope.validate(answer.body)
    error = _validator(openapi, "ErrorEnvelope")
    settings.ENSWITCH_HTTP_STATUS = "code"
    for params, status in (
        ({"auth_username": "nobody", "auth_password": "x"}, 401),
        ({**creds, "start": "x", "sort": "id"}, 400),
    ):
        answer = h.call(client, LIST, **params)
        assert answer.status == status
        error.validate(answer.body)
        assert str(status) in openapi["paths"][LIST]["get"]["responses"]
    for name, codes in ERRORS.items():
        path = ENDPOINTS[name][0]
        for method in ("get", "post"):
            assert list(openapi["paths"][path][method]["responses"]) == ["200", *codes]


# --- schemathesis, in-process --------------------------------------------------------------


def escape_semicolons(app: Any) -> Any:
    """Werkzeug's test client leaves `;` unescaped in query and form values (RFC 3986
    lets it), but in an Enswitch query string `;` separates parameters: escape it, as a
    client of this API must, so the server sees the value that was generated."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        environ["QUERY_STRING"] = environ.get("QUERY_STRING", "").replace(";", "%3B")
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length).replace(b";", b"%3B")
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return app(environ, start_response)

    return wrapped


def _load_schema() -> Any:
    # Loaded at collection (the lazy `from_fixture` loader does not run on pytest 9): this
    # needs no database, only the app's URLconf and the schema generator.
    app = escape_semicolons(get_wsgi_application())
    loaded = schemathesis.openapi.from_wsgi(JSON_URL, app)
    loaded.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    )
    # 402 (role) is a refusal too; the user below is allowed everything, though.
    loaded.config.checks.negative_data_rejection.expected_statuses = [
        *loaded.config.checks.negative_data_rejection.expected_statuses,
        "402",
    ]
    return loaded


api = _load_schema()
EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", "50"))


@pytest.fixture
def statuses():
    """The HTTP statuses one operation answered: it must have said both yes and no."""
    seen: set[tuple[str, int]] = set()
    yield seen
    for path in {path for path, _ in seen}:
        wanted = {404, 400} if "/get" in path else {200, 400}
        assert wanted <= {status for p, status in seen if p == path}, seen


@pytest.fixture
def wsgi_connection(settings):
    # HTTP status = envelope code (set once: each assignment to the `settings` fixture
    # stacks one more override, which every later settings lookup walks through).
    settings.ENSWITCH_HTTP_STATUS = "code"
    # The in-process calls run in this thread, on the test's own connection and inside
    # its transaction: the app must not close that connection after each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@api.parametrize()
def test_schemathesis(case, world, wsgi_connection, statuses):
    # The system owner with the archive privilege: no parameter value is a 402. One case
    # in ten goes with a wrong password instead (a 401, whatever else it holds).
    creds = world.owner.creds
    if zlib.crc32(repr((case.query, case.body)).encode()) % 10 == 0:
        creds = {**creds, "auth_password": "wrong"}
    case.query = {**(case.query or {}), **creds}
    checks = [
        not_a_server_error,
        negative_data_rejection,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    if case.media_type in FORMS and not isinstance(case.body, dict):
        # A form body that is "not an object" reaches the server as fields with no name
        # (a multipart part without headers...), which it ignores like unknown keys.
        checks.remove(negative_data_rejection)
    response = case.call_and_validate(checks=checks)
    body = json.loads(response.content)
    assert str(response.status_code) == body["responses"][0]["code"], body
    statuses.add((case.operation.path, response.status_code))
