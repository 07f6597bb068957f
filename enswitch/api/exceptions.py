"""Every failure becomes an Enswitch envelope; nothing else ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, OperationalError
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from enswitch.api.envelope import (
    EnswitchError,
    InvalidParameters,
    RoleForbids,
    ServerFailure,
    envelope,
    http_status,
)
from enswitch.api.permissions import DENIALS

log = logging.getLogger("enswitch.api")


def _is_timeout(exc: BaseException) -> bool:
    cause = exc.__cause__
    return type(cause).__name__ == "QueryCanceled" or "statement timeout" in str(exc)


def as_enswitch_error(exc: BaseException) -> EnswitchError:
    if isinstance(exc, EnswitchError):
        return exc
    if isinstance(exc, drf.PermissionDenied):  # a permission class said no: 402 or 403
        return DENIALS.get(exc.get_codes(), RoleForbids)()
    if isinstance(exc, drf.MethodNotAllowed):
        return InvalidParameters([("method", "Use GET or POST.")])
    if isinstance(exc, DatabaseError):
        if _is_timeout(exc):
            log.warning("API query timed out")
            return ServerFailure("timeout", "The query took too long; narrow it down.")
        if isinstance(exc, OperationalError):
            # One line, not a traceback: during an outage every request lands here.
            log.error("API database unavailable: %s", str(exc).splitlines()[0][:200])
            return ServerFailure("database", "The database is unavailable.")
        log.error("API database failure", exc_info=exc)
        return ServerFailure("database", "The database could not answer.")
    log.exception("API internal error")
    return ServerFailure("internal", "An internal error occurred.")


def envelope_response(exc: EnswitchError) -> Response:
    return Response(envelope(exc.entries), status=http_status(exc.code))


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    set_rollback()
    return envelope_response(as_enswitch_error(exc))
