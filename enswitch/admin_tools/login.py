"""The admin login, counted by the login throttle."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login, with the API's brute-force limits on keys of its own: each
    attempt is counted before its password is checked."""

    def clean(self) -> dict[str, Any]:
        from enswitch.api import throttle

        username = self.cleaned_data.get("username") or ""
        address = throttle.client_address(self.request) if self.request else ""
        attempt = throttle.LoginAttempt("admin", username, address)
        try:
            attempt.count()
        except throttle.LoginThrottled:
            raise forms.ValidationError(throttle.THROTTLED_MESSAGE, code="throttled") from None
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            attempt.failed()
            raise
        except BaseException:
            attempt.release()
            raise
        attempt.succeeded()
        return cleaned
