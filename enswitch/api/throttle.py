"""Brute-force protection and per-user stream slots, shared by every server process.

Login attempts are counted in a table of their own (`enswitch.models.LoginFailures`),
one row per key, changed only by single atomic statements; nothing evicts a row before
it expires, so no flood of other usernames or addresses can erase a count or a lock.
Keys are digests, so no username or address is stored in clear.

Three limits apply to each login, each with its own key:
- username and address together (`ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS`): the
  lock an attacker can provoke applies to that pair only, not to the user elsewhere;
- username over all addresses (`..._PER_USER`): a ceiling against distributed guessing;
- address over all usernames (`..._PER_ADDRESS`): high, because of NAT.
An attempt is counted before its password is checked, so a burst of any size gets at
most the limit of password checks; attempts over a limit are refused at once and do
not count. A success gives its count back. When a count reaches its limit with a
failure, the key is refused for `ENSWITCH_AUTH_COOLDOWN` seconds; otherwise counts
last `ENSWITCH_AUTH_FAILURE_WINDOW` seconds from the first. 0 turns a limit off;
`ENSWITCH_AUTH_THROTTLE=0` turns them all off. The API and the admin count apart.

At most `ENSWITCH_MAX_STREAMS_PER_USER` streamed answers run at once for one user
(slots in the `shared` cache).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connections

from enswitch.api.envelope import EnswitchError, ServerFailure
from enswitch.api.logging import printable
from enswitch.models import LoginFailures

log = logging.getLogger("enswitch.auth")

# The counters are written on the default database, whatever routers say about reads.
_DB = "default"

THROTTLED_MESSAGE = "Too many failed logins: try again in a few minutes."


class LoginThrottled(Exception):
    """A login refused without checking its password."""


class AuthThrottled(EnswitchError):
    code = 401

    def __init__(self) -> None:
        super().__init__([("auth_throttled", THROTTLED_MESSAGE)])


def client_address(request: Any) -> str:
    header = settings.ENSWITCH_CLIENT_ADDRESS_HEADER
    if header:
        forwarded = request.META.get(header, "")
        # The proxy appends the address it saw last; earlier entries are the client's word.
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


@dataclass(frozen=True)
class _Limit:
    key: str
    limit: int
    what: str  # for the log line: which username and/or address


def _key(*parts: str) -> str:
    text = "\x00".join(parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _limits(scope: str, username: str, address: str) -> list[_Limit]:
    if not settings.ENSWITCH_AUTH_THROTTLE:
        return []
    user, addr = f"username {printable(username[:64])}", f"address {printable(address)}"
    wanted = [
        (settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS, username and address,
         ("pair", username, address), f"{user} from {addr}"),
        (settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER, username, ("user", username), user),
        (settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS, address, ("addr", address), addr),
    ]  # fmt: skip
    return [
        _Limit(_key(scope, *parts), limit, f"{scope} {what}")
        for limit, present, parts, what in wanted
        if limit and present
    ]


def _table() -> tuple[Any, str]:
    connection = connections[_DB]
    return connection, connection.ops.quote_name(LoginFailures._meta.db_table)


class LoginAttempt:
    """One login's passage through the limits of its username and address.

    `check_not_locked()` is enough for credentials already verified (no password is
    checked); otherwise `count()` before the password check, then `succeeded()` or
    `failed()` after it (or `release()` if the check could not be made).
    """

    def __init__(self, scope: str, username: str, address: str) -> None:
        self.limits = _limits(scope, username, address)
        self.counts: dict[str, int] = {}

    def check_not_locked(self) -> None:
        if not self.limits:
            return
        connection, table = _table()
        keys = [limit.key for limit in self.limits]
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT "key", "count" FROM {table} '  # noqa: S608 - names, not values
                f'WHERE "key" IN ({", ".join(["%s"] * len(keys))}) AND "expires" > %s',
                [*keys, time.time()],
            )
            counts = dict(cursor.fetchall())
        if any(counts.get(limit.key, 0) >= limit.limit for limit in self.limits):
            raise LoginThrottled()

    def count(self) -> None:
        """Count this attempt on every key at once; LoginThrottled if one is over its limit."""
        if not self.limits:
            return
        connection, table = _table()
        now = time.time()
        expires = now + settings.ENSWITCH_AUTH_FAILURE_WINDOW
        values = ", ".join(["(%s, 1, %s)"] * len(self.limits))
        # One statement: atomic on PostgreSQL (ON CONFLICT takes the row lock) and on
        # SQLite (a statement is one write transaction). An expired row starts over.
        sql = (
            f'INSERT INTO {table} ("key", "count", "expires") VALUES {values} '  # noqa: S608
            f'ON CONFLICT ("key") DO UPDATE SET '
            f'"count" = CASE WHEN {table}."expires" <= %s THEN 1 '
            f'ELSE {table}."count" + 1 END, '
            f'"expires" = CASE WHEN {table}."expires" <= %s THEN excluded."expires" '
            f'ELSE {table}."expires" END '
            f'RETURNING "key", "count"'
        )
        params: list[Any] = []
        for limit in self.limits:
            params += [limit.key, expires]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, now, now])
            self.counts = dict(cursor.fetchall())
        if any(self.counts[limit.key] > limit.limit for limit in self.limits):
            # Refused attempts do not count: the failures alone keep the lock.
            self.release()
            raise LoginThrottled()

    def release(self) -> None:
        """Give the count back: the password was right, or was not checked."""
        if not self.counts:
            return
        connection, table = _table()
        keys = list(self.counts)
        self.counts = {}
        with connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE {table} SET "count" = "count" - 1 '  # noqa: S608
                f'WHERE "key" IN ({", ".join(["%s"] * len(keys))}) AND "count" > 0',
                keys,
            )

    succeeded = release

    def failed(self) -> None:
        """Keep the count; a key whose failures reached its limit is locked."""
        if not self.counts:
            return
        connection, table = _table()
        now = time.time()
        cooldown = settings.ENSWITCH_AUTH_COOLDOWN
        with connection.cursor() as cursor:
            for limit in self.limits:
                count = self.counts.get(limit.key, 0)
                if count < limit.limit:
                    continue
                # The guard re-reads the count: a concurrent success may have given
                # one back since this attempt was counted.
                cursor.execute(
                    f'UPDATE {table} SET "expires" = %s '  # noqa: S608
                    f'WHERE "key" = %s AND "count" >= %s',
                    [now + cooldown, limit.key, limit.limit],
                )
                if cursor.rowcount:
                    log.warning(
                        "login locked for %ss after %s failures: %s", cooldown, count, limit.what
                    )
            # Expired rows go by the index on "expires", never by a full scan.
            cursor.execute(f'DELETE FROM {table} WHERE "expires" < %s', [now])  # noqa: S608
        self.counts = {}


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
    cache = caches["shared"]
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
