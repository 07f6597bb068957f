"""Unix times in the admin: typed and shown as UTC dates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from django import forms

_INT_RE = re.compile(r"-?\d{1,18}")


def parse_unix_time(text: str) -> int:
    """A Unix time from `1700000000`, `2024-01-31`, `2024-01-31 12:00[:00]` or an ISO
    date-time with an offset. Dates and naive times are UTC. ValueError if neither."""
    text = text.strip()
    if _INT_RE.fullmatch(text):
        return int(text)
    if len(text) == 10:
        day = date.fromisoformat(text)
        return int(datetime.combine(day, time(), tzinfo=UTC).timestamp())
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def format_unix_utc(value: int | None) -> str:
    """`2024-01-31 12:00:00` (UTC) for a Unix time; the number itself if out of range."""
    if value is None:
        return ""
    try:
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(value)


class UnixTimeFormField(forms.CharField):
    """An integer model field typed as a Unix time or as a UTC date/time."""

    default_help_text = "Unix time, or a UTC date/time such as 2024-01-31 12:00:00."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("max_value", None)
        kwargs.pop("min_value", None)
        kwargs.pop("step_size", None)
        kwargs.setdefault("help_text", self.default_help_text)
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> int | None:
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_unix_time(value)
        except ValueError:
            raise forms.ValidationError(
                "Enter a Unix time or a date/time such as 2024-01-31 12:00:00.", code="invalid"
            ) from None
