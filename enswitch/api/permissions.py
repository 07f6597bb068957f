"""402 (role) and 403 (rate plan), checked in that order after authentication."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from enswitch.api.envelope import RatePlanForbids, RoleForbids
from enswitch.api.fields import is_integer_one
from enswitch.api.params import request_params


class RoleAllowsCdrs(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        role = request.user.role
        if not (role.allows("cdrs") or role.allows("callshop")):
            raise RoleForbids()
        return True


class RoleAllowsListOptions(BasePermission):
    """`archive=1` needs the archive privilege; `customer=system` the system owner."""

    def has_permission(self, request: Any, view: Any) -> bool:
        params = request_params(request._request)
        if is_integer_one(params.get("archive")) and not request.user.role.allows("archive"):
            raise RoleForbids()
        if params.get("customer") == "system" and not request.user.customer.is_system_owner:
            raise RoleForbids()
        return True


class RatePlanAllowsCdrs(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        plan = request.user.customer.rate_plan
        if plan is not None and not plan.allows("cdrs"):
            raise RatePlanForbids()
        return True
