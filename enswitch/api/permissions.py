"""Denials as Enswitch answers them: 402 (the user's role) and 403 (the rate plan).

A permission class is a predicate, as DRF's are: `has_permission` returns False and
the class's `code` says which denial it is; DRF raises PermissionDenied with that code
and message, and enswitch/api/exceptions.py turns it into the envelope of `DENIALS`.
Authentication (401) has run before any of them; they run in their listed order.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from enswitch.api.envelope import MESSAGES, EnswitchError, RatePlanForbids, RoleForbids


class RoleDenial(BasePermission):
    """Base of the checks of the user's role: a False is a 402."""

    code = "role"
    message = MESSAGES[RoleForbids.code]


class RatePlanDenial(BasePermission):
    """Base of the checks of the rate plan of the user's customer: a False is a 403."""

    code = "rate_plan"
    message = MESSAGES[RatePlanForbids.code]


DENIALS: dict[str, type[EnswitchError]] = {
    RoleDenial.code: RoleForbids,
    RatePlanDenial.code: RatePlanForbids,
}
