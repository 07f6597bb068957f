"""OpenAPI 3 for Enswitch endpoints: what every endpoint shares.

An app describes each of its endpoints with an `Endpoint` (its parameters' form fields
in table order, a sentence per parameter, its success envelope, its failure codes) and
hands it to drf-spectacular with an OpenApiViewExtension whose view_replacement() is
`described(view, endpoint)` (cdrs/schema.py does so for cdrs/list and cdrs/get). From
the form fields come each parameter's type, enumeration and bounds:

Every value travels as text in a query string or a form body. A JSON body also takes
an integer (its decimal text) and `null` (not set). So each parameter gets two schemas:

- text (query string, form bodies): a string; an integer parameter is a string whose
  pattern accepts exactly its range (an optional `-`, ASCII digits, leading zeros);
- JSON: the text schema, or an integer (with `minimum`/`maximum` where the parameter is
  an integer), or null.

An empty value means the parameter's default, so every text schema accepts `""`
(except a required parameter's).

The credentials are two API keys (`auth_username`, `auth_password`); the security
scheme puts them in the query string, which both methods read. The envelope, its
entries and the failure codes are the same for every endpoint.

The extensions are registered when their modules are imported (enswitch/urls.py
imports this one, cdrs/apps.py the cdrs one).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from enswitch.api.envelope import MESSAGES
from enswitch.api.fields import (
    INT64_MAX,
    INT64_MIN,
    MAX_STRING,
    IdOrWordField,
    IntegerField,
    StringField,
    WordField,
)

# --- integer ranges as regular expressions ---------------------------------------------


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"[{low}-{high}]"


def _fixed_width(low: str, high: str) -> list[str]:
    """Alternatives matching the digit strings of one width from `low` to `high`."""
    if low == high:
        return [low]
    if len(low) == 1:
        return [_span(int(low), int(high))]
    width = len(low) - 1
    if low[0] == high[0]:
        rest = _fixed_width(low[1:], high[1:])
        return [low[0] + (rest[0] if len(rest) == 1 else f"(?:{'|'.join(rest)})")]
    parts: list[str] = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * width:
        parts += [low[0] + alt for alt in _group(_fixed_width(low[1:], "9" * width))]
        first += 1
    tail: list[str] = []
    if high[1:] != "9" * width:
        tail = [high[0] + alt for alt in _group(_fixed_width("0" * width, high[1:]))]
        last -= 1
    if first <= last:
        parts.append(f"{_span(first, last)}[0-9]{{{width}}}" if width > 1 else _span(first, last))
        if width == 1:
            parts[-1] += "[0-9]"
    return parts + tail


def _group(alternatives: list[str]) -> list[str]:
    return alternatives if len(alternatives) == 1 else [f"(?:{'|'.join(alternatives)})"]


def _canonical(low: int, high: int) -> list[str]:
    """Alternatives for the decimal texts without leading zeros of low..high (0 <= low)."""
    parts: list[str] = []
    full: list[int] = []  # widths (> 1) whose every number is in the range
    for width in range(len(str(low)), len(str(high)) + 1):
        a = max(low, 10 ** (width - 1) if width > 1 else 0)
        b = min(high, 10**width - 1)
        if width > 1 and (a, b) == (10 ** (width - 1), 10**width - 1):
            full.append(width - 1)
        elif a <= b:
            parts += _fixed_width(str(a), str(b))
    if full:  # consecutive widths: one alternative
        repeat = (
            ""
            if full == [1]
            else f"{{{full[0]}}}"
            if len(full) == 1
            else f"{{{full[0]},{full[-1]}}}"
        )
        parts.insert(1 if parts and len(str(low)) == 1 else 0, f"[1-9][0-9]{repeat}")
    return parts


def integer_regex(minimum: int, maximum: int) -> str:
    """A regex (no anchors) for the integer texts (`-?[0-9]+`) of minimum..maximum."""
    parts: list[str] = []
    if maximum >= 0:
        parts.append(f"0*(?:{'|'.join(_canonical(max(minimum, 0), maximum))})")
        if minimum <= 0:
            parts.append("-0+")
    if minimum < 0:
        parts.append(f"-0*(?:{'|'.join(_canonical(max(-maximum, 1), -minimum))})")
    return "|".join(parts)


# --- one parameter -----------------------------------------------------------------------

NO_NUL = "^[^\\u0000]*$"
INTEGER_NOTE = "an optional `-` and the ASCII digits 0-9, leading zeros allowed"
NULL = {"type": "null"}


@dataclass(frozen=True)
class Doc:
    description: str
    default: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Param:
    name: str
    text: dict[str, Any]  # the schema of the value as text (query string, form body)
    json: dict[str, Any]  # the schema of the value in a JSON body
    doc: Doc


# The long integer patterns, shared by name (#/components/schemas/NAME).
SHARED: dict[str, dict[str, Any]] = {}


def _shared(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    SHARED[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _bound(n: int) -> str:
    return {INT64_MIN: "min", INT64_MAX: "max"}.get(n, f"m{-n}" if n < 0 else str(n))


def integer_text(low: int, high: int, *, empty: bool) -> dict[str, Any]:
    """An integer from low to high, as text (and "" if `empty`)."""
    name = f"IntegerText_{_bound(low)}_{_bound(high)}" + ("" if empty else "_NotEmpty")
    schema = {
        "type": "string",
        "pattern": f"^(?:{'|' if empty else ''}{integer_regex(low, high)})$",
        "description": f"An integer from {low} to {high} written as text: {INTEGER_NOTE}."
        + (" Empty: the default." if empty else ""),
    }
    return _shared(name, schema)


def integer_json(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "minimum": low, "maximum": high}


def field_schemas(field: Any, *, required: bool = False) -> tuple[dict, dict]:
    """(text schema, JSON schema) of an Enswitch form field, from its own attributes."""
    empty = [] if required else [""]
    if isinstance(field, IntegerField):  # also FlagField
        low = INT64_MIN if field.minimum is None else field.minimum
        high = INT64_MAX if field.maximum is None else field.maximum
        text = integer_text(low, high, empty=not required)
        return text, {"anyOf": [integer_json(low, high), text]}
    if isinstance(field, IdOrWordField):
        ident = integer_text(INT64_MIN, INT64_MAX, empty=False)
        words = {"type": "string", "enum": [*empty, *field.words]}
        text = {"anyOf": [words, ident]} if field.words or empty else ident
        return text, {"anyOf": [integer_json(INT64_MIN, INT64_MAX), *text.get("anyOf", [text])]}
    if isinstance(field, WordField):
        text = {"type": "string", "enum": [*empty, *field.words]}
        return text, text
    if isinstance(field, StringField):
        text = {"type": "string", "maxLength": MAX_STRING, "pattern": NO_NUL}
        if required:
            text["minLength"] = 1
        # An integer is taken as its decimal text.
        return text, {"anyOf": [text, {"type": "integer"}]}
    raise TypeError(f"no schema for {type(field).__name__}")


def params_of(fields: dict[str, Any], docs: dict[str, Doc]) -> list[Param]:
    """Every parameter of an endpoint (name -> form field, in contract order)."""
    found = []
    for name, field in fields.items():
        doc = docs[name]
        text, json = field_schemas(field, required=doc.required)
        text, json = copy.deepcopy(text), copy.deepcopy(json)
        if doc.default is not None:
            text["default"] = doc.default
        if not doc.required:
            json = {"anyOf": [*json.get("anyOf", [json]), NULL]}
        json["description"] = text["description"] = doc.description
        found.append(Param(name, text, json, doc))
    return found


# --- the envelope ------------------------------------------------------------------------


def json_schema_of(hint: Any) -> dict[str, Any]:
    """The JSON schema of a TypedDict field's type: str, int, float or a Literal of one."""
    if get_origin(hint) is Literal:
        values = list(get_args(hint))
        return {**json_schema_of(type(values[0])), "enum": values}
    return {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}}[hint]


COMPONENTS: dict[str, dict[str, Any]] = {
    "Entry": {
        "type": "object",
        "description": "One outcome: the code (as a string), the parameter concerned, a sentence.",
        "properties": {
            "code": {"type": "string", "pattern": "^[0-9]{3}$", "examples": ["200"]},
            "key": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["code", "key", "message"],
    },
}
_RESPONSES = {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}, "minItems": 1}


def envelope_schema(data: dict[str, Any] | None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"responses": _RESPONSES},
        "required": ["responses"],
    }
    if data is not None:
        # Present on success. With the default ENSWITCH_HTTP_STATUS=200 the failures
        # also come as HTTP 200, with `responses` only.
        schema["properties"]["data"] = data
    return schema


COMPONENTS["ErrorEnvelope"] = envelope_schema(None)
ERROR_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
ERROR_WHEN = {
    400: "Invalid parameters: one entry per invalid parameter, its name as `key`.",
    401: MESSAGES[401],
    402: MESSAGES[402],
    403: MESSAGES[403],
    404: MESSAGES[404],
    500: "An unexpected failure; `key` names its kind (`database`, `timeout`, `internal`).",
}
STATUS_NOTE = (
    "The outcome is the `code` of `responses`. HTTP status: 200 for every answer by "
    "default; with the setting ENSWITCH_HTTP_STATUS=code, the HTTP status is that code."
)


# --- the operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """What an app says of one of its Enswitch endpoints; the operations follow from it."""

    operation: str  # the operationId's stem, e.g. "cdrs_list"
    tag: str
    summary: str
    fields: Callable[[], dict[str, Any]]  # parameter name -> form field, in table order
    docs: dict[str, Doc]
    envelope: dict[str, Any]  # of a success
    errors: tuple[int, ...]

    @property
    def params(self) -> list[Param]:
        return params_of(self.fields(), self.docs)


# Every endpoint described (`described()` registers it), for postprocess().
ENDPOINTS: list[Endpoint] = []
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class EnswitchAutoSchema(AutoSchema):
    """The operation of one Enswitch endpoint, for GET (query) or POST (bodies)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    def get_operation_id(self) -> str:
        return f"{self.endpoint.operation}_{self.method.lower()}"

    def get_summary(self) -> str:
        return self.endpoint.summary

    def get_description(self) -> str:
        where = (
            "Parameters in the query string, separated by `;` or `&`."
            if self.method == "GET"
            else "Parameters in a form or JSON body, and in the query string (a key in "
            "both takes the body's value). The credentials may also be sent in the body."
        )
        return f"{where} An empty value means the default. {STATUS_NOTE}"

    def get_tags(self) -> list[str]:
        return [self.endpoint.tag]

    def get_override_parameters(self) -> list[OpenApiParameter]:
        if self.method != "GET":
            return []
        return [
            OpenApiParameter(
                p.name,
                {k: v for k, v in p.text.items() if k != "description"},
                required=p.doc.required,
                description=p.doc.description,
            )
            for p in self.endpoint.params
        ]

    def get_request_serializer(self) -> Any:
        if self.method != "POST":
            return None
        params = self.endpoint.params
        required = [p.name for p in params if p.doc.required]

        def body(kind: str) -> dict[str, Any]:
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {p.name: getattr(p, kind) for p in params},
                "description": "Unknown keys are ignored.",
            }
            if required:
                schema["required"] = required
            return schema

        return {
            **{media: body("text") for media in FORM_TYPES},
            "application/json": body("json"),
        }

    def get_auth(self) -> list[dict[str, list]]:
        super().get_auth()  # registers the schemes
        # Either the username and password together, or a token.
        return [{name: [] for name in CREDENTIALS}, {TOKEN: []}]

    def get_response_serializers(self) -> Any:
        ok = self.endpoint.envelope
        responses = {200: OpenApiResponse(ok, description=f"OK. {STATUS_NOTE}")}
        for code in self.endpoint.errors:
            responses[code] = OpenApiResponse(ERROR_REF, description=ERROR_WHEN[code])
        return responses


def described(view: type, endpoint: Endpoint) -> type:
    """`view` with `endpoint`'s description: an OpenApiViewExtension's view_replacement()."""
    if endpoint not in ENDPOINTS:
        ENDPOINTS.append(endpoint)
    return type(view.__name__, (view,), {"schema": EnswitchAutoSchema(endpoint)})


CREDENTIALS = ("auth_username", "auth_password")
TOKEN = "auth_token"  # noqa: S105 - a parameter name
_CREDENTIAL_TEXT = {
    "auth_username": "The user's username: any length or content.",
    "auth_password": "The user's password: any length or content.",
    TOKEN: "An authentication token from user/login (token=1), instead of the username "
    "and password: when present and not empty, it alone decides who the caller is.",
}


class EnswitchAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "enswitch.api.authentication.EnswitchAuthentication"
    name = [*CREDENTIALS, TOKEN]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "apiKey", "in": "query", "name": name, "description": _CREDENTIAL_TEXT[name]}
            for name in self.name
        ]


# --- user/login ----------------------------------------------------------------------------


def _login_fields() -> dict[str, Any]:
    from enswitch.api.views import LOGIN_PARAMETERS, LoginForm

    return {name: LoginForm.base_fields[name] for name in LOGIN_PARAMETERS}


COMPONENTS["Login"] = {
    "type": "object",
    "description": "Who the credentials belong to; with token=1, an authentication token.",
    "properties": {
        "username": {"type": "string"},
        "customer": {"type": "integer"},
        "role": {"type": "integer"},
        "auth_token": {
            "type": "string",
            "maxLength": 1024,
            "pattern": "^[A-Za-z0-9._~-]+$",
            "description": "Only with token=1. Send it as `auth_token` on any call.",
        },
        "auth_token_expiry": {
            "type": "integer",
            "description": "Only with token=1: seconds until the token expires; 0: never.",
        },
        "auth_token_expires": {
            "type": "integer",
            "description": "Only with token=1 when tokens expire: the Unix time it expires.",
        },
    },
    "required": ["username", "customer", "role"],
    "additionalProperties": False,
}
COMPONENTS["LoginEnvelope"] = envelope_schema({"$ref": "#/components/schemas/Login"})
LOGIN = Endpoint(
    operation="user_login",
    tag="user",
    summary="Check credentials, optionally get an authentication token (user/login)",
    fields=_login_fields,
    docs={"token": Doc("1: also issue an authentication token; any other integer: don't.", "0")},
    envelope={"$ref": "#/components/schemas/LoginEnvelope"},
    errors=(400, 401, 500),
)


class UserLoginViewSchema(OpenApiViewExtension):
    target_class = "enswitch.api.views.UserLoginView"

    def view_replacement(self) -> type:
        return described(self.target, LOGIN)


# --- after generation -----------------------------------------------------------------------


def postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Shared components, and both spellings of each path (with and without the slash)."""
    for endpoint in ENDPOINTS:
        endpoint.params  # noqa: B018 - fills SHARED
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy({**COMPONENTS, **SHARED}))
    paths = result.get("paths", {})
    for path in list(paths):
        if not path.startswith("/api/json/"):
            continue
        other = path[:-1] if path.endswith("/") else f"{path}/"
        if other in paths:
            continue
        twin = copy.deepcopy(paths[path])
        for operation in twin.values():
            operation["operationId"] += "_slash" if other.endswith("/") else "_noslash"
        paths[other] = twin
    result["paths"] = dict(sorted(paths.items()))
    return result
