"""Helpers for the admin pages: lists that stay fast on tables with millions of rows,
searches that can use indexes, Unix times typed as dates, word-list fields, URL
lookups kept off secrets, and a throttled login.

The call-leg and cost tables are far too large for the admin's defaults: a plain
changelist runs `SELECT COUNT(*)` over the whole table on every page, facet counts run
one more per filter choice, and deleting a customer would first load every leg that
refers to it just to list them. Each helper here removes one of those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import Q
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Lower
from django.db.models.lookups import Contains, Exact, StartsWith
from django.http import HttpRequest, HttpResponse
from django.utils.functional import cached_property
from django.utils.text import smart_split, unescape_string_literal

# --- Unix times ---------------------------------------------------------------------

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


# --- Counting without COUNT(*) ------------------------------------------------------


def table_row_estimate(model: type[models.Model], using: str = "default") -> int | None:
    """The planner's row estimate for the model's table (PostgreSQL), read in O(1).

    None on other databases, and when the table was never analysed (reltuples = -1).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class LargeTablePaginator(Paginator):
    """A paginator whose `count` never runs COUNT(*) over a large table.

    - Unfiltered list on PostgreSQL with a table bigger than the cap: the planner's
      estimate (pg_class.reltuples), marked inexact; pages past it are empty.
    - Otherwise the primary keys of at most `cap + 1` matching rows are read, unordered,
      so the scan stops early. More than `cap` rows: the count is `cap + 1`, marked
      inexact, and the cap slides forward with the requested page (`page_hint`), so the
      next pages are always reachable.
    """

    default_cap = 10_000

    def __init__(
        self,
        object_list: Any,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
        *,
        page_hint: int = 1,
        cap: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(object_list, per_page, orphans, allow_empty_first_page, **kwargs)
        self.base_cap = self.default_cap if cap is None else cap
        # Ten pages beyond the one asked for stay reachable whatever the cap.
        self.cap = max(self.base_cap, (max(page_hint, 1) + 10) * int(per_page))
        self.count_is_exact = True
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, models.QuerySet):
            return len(queryset)
        if not queryset.query.where:
            estimate = table_row_estimate(queryset.model, queryset.db)
            # Against the base cap, not the sliding one: on the last pages of a huge
            # table the sliding cap passes the estimate, and reading that many keys
            # would cost more than the COUNT(*) this avoids.
            if estimate is not None and estimate > self.base_cap:
                self.count_is_exact = False
                self.count_is_estimate = True
                return estimate
        found = len(queryset.order_by().values_list("pk", flat=True)[: self.cap + 1])
        if found > self.cap:
            self.count_is_exact = False
        return found


def count_note(paginator: Any, noun: str) -> str:
    """A sentence that says how far the shown count can be trusted ("" if exact)."""
    if getattr(paginator, "count_is_estimate", False):
        return f"About {paginator.count:,} {noun} (a database estimate, not an exact count)."
    if getattr(paginator, "count_is_exact", True):
        return ""
    return f"More than {paginator.cap:,} {noun} match; the count shown is a lower bound."


def bounded_delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: models.QuerySet
) -> HttpResponse | None:
    """`delete_selected`, refused when the selection is too large for one admin request."""
    limit = getattr(modeladmin, "max_bulk_delete", 1000)
    if len(queryset.order_by().values_list("pk", flat=True)[: limit + 1]) > limit:
        modeladmin.message_user(
            request,
            f"Refusing to delete more than {limit:,} rows at once from the admin; "
            "narrow the selection with filters first.",
            messages.ERROR,
        )
        return None
    return delete_selected(modeladmin, request, queryset)


bounded_delete_selected.allowed_permissions = ("delete",)  # type: ignore[attr-defined]
bounded_delete_selected.short_description = delete_selected.short_description  # type: ignore[attr-defined]


class LargeTableAdminMixin:
    """For ModelAdmins over tables with millions of rows: no full COUNT, no facets,
    bounded bulk deletes, and a note on the list page when the count is inexact."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = LargeTablePaginator
    max_bulk_delete = 1000
    # Shown under the title of every page of this admin (e.g. to mark the archive).
    page_note = ""

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: models.QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        try:
            page_hint = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_hint = 1
        return self.paginator(
            queryset, per_page, orphans, allow_empty_first_page, page_hint=page_hint
        )

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (bounded_delete_selected, name, description)
        return actions

    def _with_note(self, extra_context: dict | None, *notes: str) -> dict:
        context = dict(extra_context or {})
        text = " ".join(n for n in (self.page_note, *notes) if n)
        if text:
            context["subtitle"] = text
        return context

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, self._with_note(extra_context))  # type: ignore[misc]
        context = getattr(response, "context_data", None)
        changelist = context.get("cl") if context else None
        if changelist is not None:
            # The response is not rendered yet: the note can still use the paginator.
            note = count_note(changelist.paginator, str(self.model._meta.verbose_name_plural))
            context.update(self._with_note(None, note))
        return response

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        # The change form's subtitle is the object's name: keep it, add the note.
        if self.page_note:
            parts = (context.get("subtitle"), self.page_note)
            context["subtitle"] = " \u2014 ".join(str(p) for p in parts if p)
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]


class BoundedDeleteMixin:
    """Deleting an object that rows of a large table refer to (PROTECT): say so after
    one indexed EXISTS, instead of loading every referring row to list it."""

    def _large_model_admins(self) -> dict[type[models.Model], Any]:
        registry = self.admin_site._registry  # type: ignore[attr-defined]
        return {m: a for m, a in registry.items() if isinstance(a, LargeTableAdminMixin)}

    def get_deleted_objects(self, objs: Iterable[models.Model], request: HttpRequest) -> tuple:
        objs = list(objs) if not isinstance(objs, models.QuerySet) else objs
        large = self._large_model_admins()
        protected = []
        opts = self.model._meta  # type: ignore[attr-defined]
        for rel in opts.get_fields(include_hidden=True):
            if not (rel.auto_created and not rel.concrete and rel.one_to_many):
                continue
            if rel.related_model not in large or rel.on_delete not in (
                models.PROTECT,
                models.RESTRICT,
            ):
                continue
            manager = rel.related_model._base_manager
            if manager.filter(**{f"{rel.field.name}__in": objs}).exists():
                protected.append(
                    f"{rel.related_model._meta.verbose_name_plural} "
                    f"(through {rel.field.name}; at least one, not listed)"
                )
        if protected:
            return [], {}, set(), protected
        return super().get_deleted_objects(objs, request)  # type: ignore[misc]


# --- Search that can use indexes ----------------------------------------------------

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


# --- Lists of words in a JSON column ------------------------------------------------

_WORD_RE = re.compile(r"[\w.:-]+")
_SPLIT_RE = re.compile(r"[\s,]+")


class WordListWidget(forms.MultiWidget):
    """Checkboxes for the known words plus a text box for any other words."""

    def __init__(self, known: Sequence[str], attrs: dict | None = None) -> None:
        self.known = tuple(known)
        widgets = (
            forms.CheckboxSelectMultiple(choices=[(w, w) for w in self.known]),
            forms.TextInput(attrs={"size": 40, "placeholder": "other words, comma-separated"}),
        )
        super().__init__(widgets, attrs)

    def decompress(self, value: Any) -> list:
        return split_words(value, self.known)


def split_words(value: Any, known: Sequence[str]) -> list:
    """[known words present, "the other words, comma-separated"] for a stored list."""
    words = [str(w) for w in value] if isinstance(value, (list, tuple)) else []
    return [
        [w for w in known if w in words],
        ", ".join(w for w in words if w not in known),
    ]


class WordListField(forms.MultiValueField):
    """A JSON list of words, edited as checkboxes (known words) plus free words.

    Stored order: the known words in their listed order, then the others as typed,
    without duplicates.
    """

    def __init__(self, known: Sequence[str], **kwargs: Any) -> None:
        self.known = tuple(known)
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs.pop("max_length", None)
        fields = (
            forms.MultipleChoiceField(choices=[(w, w) for w in self.known], required=False),
            forms.CharField(required=False),
        )
        kwargs.setdefault("required", False)
        super().__init__(
            fields, widget=WordListWidget(self.known), require_all_fields=False, **kwargs
        )

    def prepare_value(self, value: Any) -> Any:
        # Initial data is the stored list of words; bound data is already
        # [checked words, text] (its first item is a list).
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return split_words(value, self.known)
        return value

    def compress(self, data_list: list) -> list[str]:
        checked = list(data_list[0] or []) if data_list else []
        text = (data_list[1] if len(data_list) > 1 else "") or ""
        others = [w for w in _SPLIT_RE.split(text.strip()) if w]
        bad = [w for w in others if not _WORD_RE.fullmatch(w)]
        if bad:
            raise forms.ValidationError(
                "Not a word: %(words)s. Use letters, digits, '_', '.', ':' or '-'.",
                code="invalid",
                params={"words": ", ".join(bad)},
            )
        words = [w for w in self.known if w in checked]
        for w in others:
            if w not in words:
                words.append(w)
        return words

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            new = self.clean(data)
        except forms.ValidationError:
            return True
        old = [str(w) for w in initial] if isinstance(initial, (list, tuple)) else []
        return new != old


def words_display(words: Any) -> str:
    return ", ".join(str(w) for w in words) if isinstance(words, (list, tuple)) else ""


# --- Lookups from the URL -------------------------------------------------------------

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


# --- The admin login ------------------------------------------------------------------


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
