"""Lookups from the admin's URL kept off secrets and within the columns' types."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

_ASCII_INT_RE = re.compile(r"\s*-?[0-9]+\s*")
_INT64 = range(-(2**63), 2**63)


def _integer_target(model: type[models.Model], parts: list[str]) -> tuple[Any, str]:
    """The integer field a lookup path ends on (an FK's target), and its lookup name."""
    field = None
    rest = list(parts)
    while rest:
        try:
            field = model._meta.get_field(rest[0])
        except FieldDoesNotExist:
            break
        rest.pop(0)
        if not field.concrete:
            return None, ""  # a reverse relation: Django checks those itself
        if field.is_relation:
            if not rest:
                field = field.target_field
                break
            model = field.related_model
    if isinstance(field, models.IntegerField):
        return field, rest[0] if rest else "exact"
    return None, ""


class SecretLookupGuard:
    """URL lookups on the changelist (`?field__lookup=value`) that may not run.

    - Lookups that touch a secret field (a password hash) at any depth: a user who
      may only view the list could otherwise read a hash character by character
      with `?password__startswith=...`. Refused with a 400, as Django's own
      UserAdmin does for its `password`.
    - Integers beyond 64 bits on integer fields (and foreign keys to them): the
      database would refuse them with an error, a 500. Refused with a 400; other
      bad values are left to Django, which ignores them (`?e=1`).
    """

    secret_fields: frozenset[str] = frozenset({"password"})

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest) -> bool:
        parts = lookup.split(LOOKUP_SEP)
        if self.secret_fields.intersection(parts):
            return False
        field, name = _integer_target(self.model, parts)  # type: ignore[attr-defined]
        if field is not None and name in {"exact", "iexact", "gt", "gte", "lt", "lte", "in"}:
            values = str(value).split(",") if name == "in" else [str(value)]
            for text in values:
                if _ASCII_INT_RE.fullmatch(text) and int(text) not in _INT64:
                    return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]
