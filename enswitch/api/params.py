"""Request parameters as Enswitch clients send them.

Clients build URLs by hand with `;` between parameters, send POSTs with the parameters
in the query string and an empty body, or send form or JSON bodies. Django's own
QueryDict only splits on `&`, so the raw query string and urlencoded bodies are parsed
here; the result is a flat `dict[str, str]` where the last repeated key wins and a key
present in the body overrides the query string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

_SEPARATORS = re.compile(rb"[;&]")

# Parameters whose JSON value was not a string, an integer or null: reported as a 400
# on that parameter once authentication and authorisation have passed.
INVALID_JSON_TYPE = "Must be a string or an integer."
TOO_MANY_FIELDS = "The request body has too many fields."


@dataclass
class Params:
    values: dict[str, str] = field(default_factory=dict)
    # Parameter name -> message, for values that could not even be read as text.
    invalid: dict[str, str] = field(default_factory=dict)
    # A body that could not be read at all (malformed JSON, too large).
    body_error: str = ""

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


def _decode(raw: bytes) -> str:
    # `+` is a space; an invalid %-escape is kept as it is; invalid UTF-8 becomes U+FFFD.
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", errors="replace")


def parse_urlencoded(raw: bytes) -> dict[str, str]:
    """`a=1;b=2&c` -> {"a": "1", "b": "2", "c": ""}; the last repeated key wins."""
    values: dict[str, str] = {}
    for pair in _SEPARATORS.split(raw):
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        values[_decode(key)] = _decode(value)
    return values


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    # A JSON string may hold a lone surrogate ("\\ud800"), which no encoder accepts.
    return _SURROGATE.sub("\ufffd", value)


def _from_json(body: bytes, params: Params) -> None:
    try:
        # Integers stay text: they are wanted as their decimal text anyway, and int()
        # would refuse more than 4,300 digits.
        data = json.loads(body.decode("utf-8", errors="replace") or "{}", parse_int=str)
    except ValueError:
        params.body_error = "The request body is not valid JSON."
        return
    except RecursionError:
        params.body_error = "The request body is nested too deeply."
        return
    if not isinstance(data, dict):
        params.body_error = "The request body must be a JSON object."
        return
    for raw_key, value in data.items():
        key = _text(raw_key)
        params.invalid.pop(key, None)
        if value is None:
            params.values.pop(key, None)
        elif isinstance(value, str):  # a JSON string, or an integer's text (parse_int)
            params.values[key] = _text(value)
        else:
            params.values.pop(key, None)
            params.invalid[key] = INVALID_JSON_TYPE


def request_params(request: HttpRequest) -> Params:
    """The parameters of a request, parsed once and kept on the request."""
    cached = getattr(request, "_enswitch_params", None)
    if cached is not None:
        return cached
    query = request.META.get("QUERY_STRING", "")
    # WSGI hands the query string over as latin-1-decoded bytes (PEP 3333).
    params = Params(values=parse_urlencoded(query.encode("latin-1", errors="replace")))
    if request.method == "POST":
        _merge_body(request, params)
    request._enswitch_params = params  # type: ignore[attr-defined]
    return params


def _merge_body(request: HttpRequest, params: Params) -> None:
    content_type = (request.content_type or "").lower()
    try:
        if content_type == "multipart/form-data":
            for key in request.POST:
                params.values[key] = request.POST[key]  # QueryDict[key] is the last value
            return
        body = request.body
    except RequestDataTooBig:
        params.body_error = "The request body is too large."
        return
    except (TooManyFieldsSent, TooManyFilesSent):
        params.body_error = TOO_MANY_FIELDS
        return
    except MultiPartParserError:
        params.body_error = "The request body is not valid multipart form data."
        return
    if content_type == "application/json" or content_type.endswith("+json"):
        _from_json(body, params)
    elif content_type == "application/x-www-form-urlencoded" or (not content_type and body):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        # The limit Django's own parser applies to multipart bodies, for forms too.
        if limit is not None and len(_SEPARATORS.findall(body)) >= limit:
            params.body_error = TOO_MANY_FIELDS
            return
        params.values.update(parse_urlencoded(body))
