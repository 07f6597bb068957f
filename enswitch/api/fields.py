"""Form fields for Enswitch parameter types.

Every field turns the empty string into None ("use the default"), never trims, and
raises a ValidationError whose message is the sentence shown in the 400 entry.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from enswitch.fields import INT64_MAX, INT64_MIN, MAX_STRING

# ASCII digits only: Python's \d (and int()) would also accept other scripts' digits.
INTEGER = re.compile(r"-?[0-9]+")


def parse_int64(value: str) -> int:
    if not INTEGER.fullmatch(value):
        raise ValidationError("Must be a whole number written with the digits 0-9.")
    if len(value.lstrip("-").lstrip("0")) > 19:  # before int(): it refuses 4,300+ digits
        raise ValidationError("Is too large.")
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValidationError("Is too large.")
    return number


def is_integer_one(value: str) -> bool:
    """Whether `value` is the integer 1 as the contract writes integers (`1`, `001`)."""
    return bool(INTEGER.fullmatch(value)) and value.lstrip("0") == "1"


class EnswitchField(forms.Field):
    """Base: empty means default, no trimming."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if value in (None, ""):
            return None
        return self.parse(str(value))

    def parse(self, value: str) -> Any:
        return value

    def validate(self, value: Any) -> None:  # "required" is handled by the caller
        return None


class IntegerField(EnswitchField):
    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, **kw: Any):
        self.minimum, self.maximum = minimum, maximum
        super().__init__(**kw)

    def parse(self, value: str) -> int:
        number = parse_int64(value)
        if self.minimum is not None and number < self.minimum:
            raise ValidationError(f"Must be {self.minimum} or more.")
        if self.maximum is not None and number > self.maximum:
            raise ValidationError(f"Must be {self.maximum} or less.")
        return number


class FlagField(IntegerField):
    def __init__(self, **kw: Any) -> None:
        super().__init__(minimum=0, maximum=1, **kw)

    def parse(self, value: str) -> int:
        try:
            return super().parse(value)
        except ValidationError:
            raise ValidationError("Must be 0 or 1.") from None


class StringField(EnswitchField):
    def parse(self, value: str) -> str:
        if "\x00" in value:
            raise ValidationError("Must not contain a NUL character.")
        if len(value) > MAX_STRING:
            raise ValidationError(f"Must be at most {MAX_STRING} characters long.")
        return value


class WordField(EnswitchField):
    """One of a fixed list of words, case-sensitive."""

    def __init__(self, *, words: tuple[str, ...], **kw: Any) -> None:
        self.words = words
        super().__init__(**kw)

    def parse(self, value: str) -> str:
        if value not in self.words:
            raise ValidationError(f"Must be one of: {', '.join(self.words)}.")
        return value


class IdOrWordField(EnswitchField):
    """A customer ID (returned as int) or one of the listed words (returned as str)."""

    def __init__(self, *, words: tuple[str, ...], **kw: Any) -> None:
        self.words = words
        super().__init__(**kw)

    def parse(self, value: str) -> int | str:
        if value in self.words:
            return value
        if INTEGER.fullmatch(value):
            return parse_int64(value)
        if not self.words:
            raise ValidationError("Must be a customer ID.")
        raise ValidationError(f"Must be a customer ID or one of: {', '.join(self.words)}.")
