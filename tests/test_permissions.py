"""Permission classes are predicates (DRF style): False, with the denial's code and message.

The 402/403 answers themselves are checked through the API (tests/test_api_outcomes.py).
"""

from __future__ import annotations

from types import SimpleNamespace

from rest_framework.exceptions import PermissionDenied

from cdrs.permissions import RatePlanAllowsCdrs, RoleAllowsCdrs
from customers.models import RatePlan, Role
from enswitch.api.envelope import MESSAGES
from enswitch.api.exceptions import as_enswitch_error


def _request(privileges: list[str], features: list[str]) -> SimpleNamespace:
    customer = SimpleNamespace(rate_plan=RatePlan(features=features), is_system_owner=False)
    return SimpleNamespace(
        user=SimpleNamespace(role=Role(privileges=privileges), customer=customer)
    )


def test_a_denial_is_false_with_its_code_and_message_not_an_exception():
    for permission, allowed, denied, code, status in [
        (RoleAllowsCdrs(), _request(["cdrs"], []), _request(["archive"], []), "role", 402),
        (RatePlanAllowsCdrs(), _request([], ["cdrs"]), _request([], ["sms"]), "rate_plan", 403),
    ]:
        assert permission.has_permission(allowed, None) is True
        assert permission.has_permission(denied, None) is False
        assert (permission.code, permission.message) == (code, MESSAGES[status])
        # What DRF raises for it, and what the envelope makes of that.
        error = as_enswitch_error(PermissionDenied(permission.message, permission.code))
        assert error.code == status
        assert error.entries == [{"code": str(status), "key": "", "message": MESSAGES[status]}]
