"""The Enswitch response envelope and the failures that produce it.

    {"responses": [{"code": "200", "key": "", "message": "OK"}], "data": ...}

`code` is always a JSON string. HTTP status is 200 unless ENSWITCH_HTTP_STATUS=code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings

MESSAGES = {
    200: "OK",
    401: "The authentication details provided are invalid.",
    402: "Your role does not allow this.",
    403: "Your rate plan does not allow this.",
    404: "The call does not exist, or you do not have permission to view it.",
    500: "An internal error occurred.",
}


def entry(code: int, key: str = "", message: str | None = None) -> dict[str, str]:
    return {"code": str(code), "key": key, "message": message or MESSAGES[code]}


def envelope(responses: list[dict[str, str]], data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"responses": responses}
    if data is not None:
        body["data"] = data
    return body


def http_status(code: int) -> int:
    return code if settings.ENSWITCH_HTTP_STATUS == "code" else 200


class EnswitchError(Exception):
    """A failed call: its envelope entries, all with the class's code."""

    code = 500

    def __init__(self, entries: Iterable[tuple[str, str]] = (("", ""),)) -> None:
        self.entries = [entry(self.code, key, message or None) for key, message in entries]
        super().__init__(self.entries[0]["message"])


class AuthenticationInvalid(EnswitchError):
    code = 401


class RoleForbids(EnswitchError):
    code = 402


class RatePlanForbids(EnswitchError):
    code = 403


class InvalidParameters(EnswitchError):
    code = 400


class NotFound(EnswitchError):
    code = 404

    def __init__(self) -> None:
        super().__init__([("uniqueid", "")])


class ServerFailure(EnswitchError):
    """A 500 whose key names the kind of failure, never its details."""

    code = 500

    def __init__(self, key: str, message: str) -> None:
        super().__init__([(key, message)])
