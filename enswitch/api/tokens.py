"""Authentication tokens (`user/login` with `token=1`, then `auth_token` on every call).

A token is a JWT (HS256, PyJWT) signed with a key derived from SECRET_KEY. It names
the user by id and carries a digest of the user's stored password hash, so that a
password change (a new stored hash) ends every token issued before it; setting the
same password again keeps the stored hash (`User.set_password`). Checking a token is
one HMAC and one query: no password hash. Role, enabled flags and rate plan are read
from the database at each call, as with a password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

import jwt
from django.conf import settings
from django.db.models import Q

from customers.models import User

ALGORITHM = "HS256"
MAX_LENGTH = 1024
# The characters a token may hold: URL-safe without escaping (JWTs use a subset).
_TOKEN = re.compile(r"[A-Za-z0-9\-._~]+")


def _key() -> bytes:
    # A key of its own, so a token's signature is never a signature of anything else.
    return hmac.new(settings.SECRET_KEY.encode(), b"enswitch auth token", hashlib.sha256).digest()


def _password_mark(stored_hash: str) -> str:
    """A short keyed digest of the stored hash: changes when the password does."""
    mac = hmac.new(_key(), stored_hash.encode(), hashlib.sha256).hexdigest()
    return mac[:22]


@dataclass(frozen=True)
class Issued:
    token: str
    expiry: int  # seconds from now; 0: never expires
    expires: int | None  # Unix time, or None when it never expires


def issue(user: User, now: int | None = None) -> Issued:
    now = int(time.time()) if now is None else now
    lifetime = settings.ENSWITCH_AUTH_TOKEN_EXPIRY
    claims: dict[str, object] = {
        "sub": str(user.pk),
        "iat": now,
        "pwd": _password_mark(user.password),
    }
    if lifetime > 0:
        claims["exp"] = now + lifetime
    token = jwt.encode(claims, _key(), algorithm=ALGORITHM)
    return Issued(token, lifetime if lifetime > 0 else 0, now + lifetime if lifetime > 0 else None)


def user_for(token: str) -> User | None:
    """The enabled user (of an enabled customer) a valid token names, or None."""
    if len(token) > MAX_LENGTH or not _TOKEN.fullmatch(token):
        return None
    try:
        claims = jwt.decode(
            token, _key(), algorithms=[ALGORITHM], options={"require": ["sub", "iat", "pwd"]}
        )
        user_id = int(claims["sub"])
        issued_at = int(claims["iat"])
    except (jwt.PyJWTError, TypeError, ValueError):
        return None
    lifetime = settings.ENSWITCH_AUTH_TOKEN_EXPIRY
    # The setting as it is now bounds every token, also one issued under a longer one.
    if lifetime > 0 and ("exp" not in claims or time.time() >= issued_at + lifetime):
        return None
    user = (
        User.objects.for_api()
        .filter(Q(pk=user_id) & Q(enabled=True) & Q(customer__enabled=True))
        .first()
    )
    if user is None or not hmac.compare_digest(str(claims["pwd"]), _password_mark(user.password)):
        return None
    return user
