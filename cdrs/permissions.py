"""Who may call cdrs/list, cdrs/get and cdrs/totals/list: 402 (role) and 403 (rate plan),
in that order."""

from __future__ import annotations

from typing import Any

from enswitch.api.fields import is_integer_one
from enswitch.api.params import request_params
from enswitch.api.permissions import RatePlanDenial, RoleDenial


class RoleAllowsCdrs(RoleDenial):
    def has_permission(self, request: Any, view: Any) -> bool:
        role = request.user.role
        return role.allows("cdrs") or role.allows("callshop")


class RoleAllowsListOptions(RoleDenial):
    """`archive=1` needs the archive privilege; `customer=system` the system owner."""

    def has_permission(self, request: Any, view: Any) -> bool:
        params = request_params(request._request)
        if is_integer_one(params.get("archive")) and not request.user.role.allows("archive"):
            return False
        return params.get("customer") != "system" or request.user.customer.is_system_owner


class RoleAllowsTotals(RoleDenial):
    """cdrs/totals/list: the `cdrs` privilege (`callshop` is not enough); `customer=system`
    only for the system owner's users."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user.role.allows("cdrs"):
            return False
        params = request_params(request._request)
        return params.get("customer") != "system" or request.user.customer.is_system_owner


class RatePlanAllowsCdrs(RatePlanDenial):
    def has_permission(self, request: Any, view: Any) -> bool:
        plan = request.user.customer.rate_plan
        return plan is None or plan.allows("cdrs")
