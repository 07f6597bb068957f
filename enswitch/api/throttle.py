"""Brute-force protection and per-user stream slots, shared by every server process.

Counters live in the `shared` cache (a database table by default, so all gunicorn
workers see the same numbers without another service to run). Keys are digests, so a
username of any content is a valid key and no username is stored in clear.

- After `ENSWITCH_AUTH_MAX_FAILURES_PER_USER` failed logins for one username, or
  `..._PER_ADDRESS` from one client address, within `ENSWITCH_AUTH_FAILURE_WINDOW`
  seconds, that username (or address) is refused for `ENSWITCH_AUTH_COOLDOWN` seconds
  without its password being checked, right or wrong. Many customers share one
  address behind NAT, so the address limit is much higher. 0 turns a limit off.
- At most `ENSWITCH_MAX_STREAMS_PER_USER` streamed answers run at once for one user.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.cache import caches

from enswitch.api.envelope import EnswitchError, ServerFailure

log = logging.getLogger("enswitch.auth")


class AuthThrottled(EnswitchError):
    code = 401

    def __init__(self) -> None:
        super().__init__(
            [("auth_throttled", "Too many failed logins: try again in a few minutes.")]
        )


def _cache() -> Any:
    return caches["shared"]


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{kind}:{digest}"


def client_address(request: Any) -> str:
    header = settings.ENSWITCH_CLIENT_ADDRESS_HEADER
    if header:
        forwarded = request.META.get(header, "")
        # The proxy appends the address it saw last; earlier entries are the client's word.
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _limits(username: str, address: str) -> list[tuple[str, int]]:
    limits = []
    if settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER and username:
        limits.append((_key("user", username), settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER))
    if settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS and address:
        limits.append((_key("addr", address), settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS))
    return limits


def check_not_locked(username: str, address: str) -> None:
    keys = [f"lock:{key}" for key, _ in _limits(username, address)]
    if keys and _cache().get_many(keys):
        raise AuthThrottled()


def record_failure(username: str, address: str) -> None:
    cache = _cache()
    window = settings.ENSWITCH_AUTH_FAILURE_WINDOW
    for key, limit in _limits(username, address):
        failures = f"fail:{key}"
        # get + set rather than incr(): Django's incr() rewrites the entry with the
        # cache's default timeout, not the window. Two failures at the same instant may
        # count once; the limit is a brake on guessing, not an exact count.
        count = (cache.get(failures) or 0) + 1
        if count < limit:
            cache.set(failures, count, window)
            continue
        cache.set(f"lock:{key}", 1, settings.ENSWITCH_AUTH_COOLDOWN)
        cache.delete(failures)
        log.warning(
            "login locked for %ss after %s failures (%s)",
            settings.ENSWITCH_AUTH_COOLDOWN,
            count,
            "username " + username[:64] if key.startswith("user:") else "address " + address,
        )


class TooManyStreams(ServerFailure):
    def __init__(self) -> None:
        super().__init__(
            "busy", "Too many exports are running for this user: try again when one ends."
        )


@contextmanager
def stream_slot(user_id: int) -> Iterator[None]:
    """Hold one of the user's stream slots for the duration of a streamed answer.

    Each slot is a key of its own, taken with add() (which fails if the key exists)
    and deleted when the stream ends. A process killed mid-stream leaves its key
    behind; it expires after the export timeout, whatever else the user does meanwhile.
    """
    limit = settings.ENSWITCH_MAX_STREAMS_PER_USER
    if not limit:
        yield
        return
    cache = _cache()
    timeout = settings.ENSWITCH_EXPORT_TIMEOUT_MS // 1000 + 60
    for slot in range(limit):
        key = f"stream:{user_id}:{slot}"
        if cache.add(key, 1, timeout):
            break
    else:
        raise TooManyStreams()
    try:
        yield
    finally:
        cache.delete(key)
