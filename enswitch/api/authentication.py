"""Credentials in the request (`auth_username`, `auth_password`), as Enswitch takes them.

A password hash costs hundreds of milliseconds by design, and a client sends its
password with every request. After one successful check, a keyed digest of
(username, password, stored hash) is cached for a short time: a later request with the
same credentials skips the hasher. The cache never holds the password, and changing
the password changes the stored hash, so the digest no longer matches. Role, enabled
flags and rate plan are read fresh from the database on every request.

Every login that needs a password check is counted by the throttle before the check
(enswitch/api/throttle.py); one that the cache answers only has to be unlocked.

`auth_token` (enswitch/api/tokens.py), when present and not empty, alone decides who
the caller is; a rejected token counts as a failed login of its address.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from rest_framework.authentication import BaseAuthentication

from customers.models import User
from enswitch.api import throttle, tokens
from enswitch.api.envelope import AuthenticationInvalid
from enswitch.api.params import request_params

_MAX_USERNAME = User._meta.get_field("username").max_length


def _digest(username: str, password: str, stored_hash: str) -> str:
    message = "\x00".join((username, password, stored_hash)).encode("utf-8", "surrogatepass")
    mac = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return f"enswitch-auth:{mac}"


def _plausible(username: str, password: str) -> bool:
    # No stored user can have such a name, and a NUL would be ignored by the hash
    # (PBKDF2 pads its key with zero bytes): refused without a hash or a query.
    return bool(
        username
        and password
        and len(username) <= _MAX_USERNAME
        and "\x00" not in username
        and "\x00" not in password
    )


def verify_credentials(
    username: str, password: str, attempt: throttle.LoginAttempt | None = None
) -> User | None:
    """The enabled user these credentials belong to, or None.

    With an `attempt`, a password check is counted first (LoginThrottled if a limit is
    reached); credentials verified a moment ago only have to be unlocked.
    """
    attempt = attempt or throttle.LoginAttempt("api", "", "")
    if not _plausible(username, password):
        attempt.count()
        return None
    user = (
        User.objects.for_api()
        .filter(Q(username=username) & Q(enabled=True) & Q(customer__enabled=True))
        .first()
    )
    key = _digest(username, password, user.password) if user is not None else ""
    if key and cache.get(key) is not None:
        attempt.check_not_locked()
        return user
    attempt.count()
    if user is None:
        # Spend the same time as a real check, so response times don't reveal usernames.
        User().set_password(password)
        return None
    if not user.check_password(password):
        return None
    cache.set(key, 1, settings.ENSWITCH_AUTH_CACHE_SECONDS)
    return user


def verify_token(token: str, attempt: throttle.LoginAttempt) -> User | None:
    """The user a token names, or None (counted as a failure of the attempt's address)."""
    attempt.check_not_locked()
    user = tokens.user_for(token)
    if user is None:
        attempt.count()
        attempt.failed()
    return user


class EnswitchAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[User, None]:
        params = request_params(request._request)
        # A JSON value that is not text is a malformed token, not an absent one.
        if params.get("auth_token") or "auth_token" in params.invalid:
            return self.authenticate_token(request, params.get("auth_token"))
        username, password = params.get("auth_username"), params.get("auth_password")
        attempt = throttle.LoginAttempt("api", username, throttle.client_address(request._request))
        try:
            user = verify_credentials(username, password, attempt)
        except throttle.LoginThrottled:
            raise throttle.AuthThrottled() from None
        except BaseException:
            attempt.release()
            raise
        if user is None:
            attempt.failed()
            raise AuthenticationInvalid()
        attempt.succeeded()
        return user, None

    def authenticate_token(self, request: Any, token: str) -> tuple[User, None]:
        attempt = throttle.LoginAttempt("api", "", throttle.client_address(request._request))
        try:
            user = verify_token(token, attempt)
        except throttle.LoginThrottled:
            raise throttle.AuthThrottled() from None
        if user is None:
            raise AuthenticationInvalid()
        return user, None
