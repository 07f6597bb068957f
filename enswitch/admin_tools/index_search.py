"""Admin searches that can use indexes: ids exactly, text by prefix or by case."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import Contains, Exact, StartsWith
from django.http import HttpRequest
from django.utils.text import smart_split, unescape_string_literal

_ID_RE = re.compile(r"\d{1,18}")
_CASELESS = {"iexact": Exact, "istartswith": StartsWith, "icontains": Contains}


def _split_entry(entry: str) -> tuple[str, str]:
    """A search_fields entry as (field path, lookup), with Django's ^ and = prefixes."""
    if entry.startswith("^"):
        return entry[1:], "istartswith"
    if entry.startswith("="):
        return entry[1:], "iexact"
    path, _, lookup = entry.rpartition("__")
    if path and lookup in {"exact", "startswith", "contains", *_CASELESS}:
        return path, lookup
    return entry, "icontains"


def _text_condition(entry: str, term: str) -> Q:
    path, lookup = _split_entry(entry)
    if lookup in _CASELESS:
        # LOWER() on both sides rather than Django's i-lookups: the SQLite connections
        # run with case_sensitive_like (see enswitch/db.py), which makes Django's
        # icontains case-sensitive there.
        return Q(_CASELESS[lookup](Lower(path), term.lower()))
    return Q(**{f"{path}__{lookup}": term})


class IdSearchMixin:
    """Search where integer IDs match exactly (`id = 42`, which uses the primary key
    index) rather than as text (Django casts the column to text for `=id`).

    `search_fields` are text lookups, written as in Django (`name`, `^name`,
    `name__exact`...); the case-insensitive ones ignore case on both databases.
    `search_id_fields` are integer fields, tried only for terms that are integers.
    Terms are ANDed, fields ORed.
    """

    search_fields: Sequence[str] = ()
    search_id_fields: Sequence[str] = ()

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # The search box shows when this is not empty, so ID-only searches count too.
        return (*self.search_fields, *self.search_id_fields)

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet, search_term: str
    ) -> tuple[models.QuerySet, bool]:
        if not search_term:
            return queryset, False
        term_queries = []
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            term_queries.append(self.search_term_condition(bit))
        return queryset.filter(*term_queries), False

    def search_term_condition(self, term: str) -> Q:
        """What one search term matches; subclasses may OR in more."""
        condition = Q(pk__in=[])  # matches nothing: a text term with only ID fields
        for entry in self.search_fields:
            condition |= _text_condition(entry, term)
        if _ID_RE.fullmatch(term):
            for field in self.search_id_fields:
                condition |= Q(**{field: int(term)})
        return condition
