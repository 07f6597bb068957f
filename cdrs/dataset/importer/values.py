"""Values of the dataset checked one at a time: the limits, and what is wrong with a value
(messages that show it, or only what it is when it is a secret)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from enswitch.fields import INT64_MAX, INT64_MIN
from enswitch.fields import MAX_STRING as MAX_STR

# A leg's start and end: what a date can show (1970-01-01 to 9999-12-31 23:59:59 UTC),
# well inside the API's 64-bit integers.
TIME_MIN, TIME_MAX = 0, 253_402_300_799

MISSING: Any = object()


def show(value: Any) -> str:
    if isinstance(value, str):
        shown = orjson.dumps(value[:40]).decode()
        return shown[:-1] + '..."' if len(value) > 40 else shown
    if value is MISSING:
        return "nothing"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if type(value) is float and value.is_integer() and abs(value) >= 2**53:
        # JSON integers beyond 64 bits are read as floating point.
        return f"a number too large for a 64-bit integer (about {value:.3g})"
    return orjson.dumps(value).decode() if value is None or isinstance(value, bool) else str(value)


def kind(value: Any) -> str:
    """What a value is, without showing it (for secrets)."""
    if value is MISSING or value is None:
        return "nothing" if value is MISSING else "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a value")


def string_problem(
    value: Any, *, nonempty: bool = False, max_len: int = MAX_STR, secret: bool = False
) -> str | None:
    if type(value) is not str:
        return f"must be a string, not {kind(value) if secret else show(value)}"
    if nonempty and not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"is {len(value)} characters long; at most {max_len}"
    if "\x00" in value:
        return "must not contain a NUL character"
    return None


def int_problem(value: Any, *, positive: bool = False) -> str | None:
    if type(value) is not int:
        return f"must be an integer, not {show(value)}"
    if positive and value <= 0:
        return f"must be a positive integer, not {value}"
    if not INT64_MIN <= value <= INT64_MAX:
        return f"{value} does not fit in a signed 64-bit integer"
    return None


def time_problem(value: Any) -> str | None:
    problem = int_problem(value)
    if problem is None and not TIME_MIN <= value <= TIME_MAX:
        return (
            f"{value} is not a Unix time from {TIME_MIN} (1970-01-01) to {TIME_MAX} "
            "(9999-12-31 23:59:59 UTC)" + (": milliseconds?" if value > TIME_MAX else "")
        )
    return problem


# Up to 18 digits before the point (max_digits 24 - 6 places), up to 6 after it.
AMOUNT = re.compile(r"-?0*\d{1,18}(?:\.\d{1,6})?")
# Currency values: 30 digits, 12 places.
RATE = re.compile(r"0*\d{1,18}(?:\.\d{1,12})?")


def amount_problem(value: Any) -> str | None:
    if type(value) is not str:
        return f'must be a decimal string such as "0.0120", not {show(value)}'
    if not AMOUNT.fullmatch(value):
        return (
            f"{show(value)} is not a decimal string with at most 18 digits before the "
            "point and 6 after it"
        )
    return None
