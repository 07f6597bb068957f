"""Admin lists that stay fast on tables with millions of rows: no COUNT(*) over the whole
table, no facet counts, and deletes that do not load every related row first.

The call-leg and cost tables are far too large for the admin's defaults: a plain
changelist runs `SELECT COUNT(*)` over the whole table on every page, facet counts run
one more per filter choice, and deleting a customer would first load every leg that
refers to it just to list them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db import connections, models
from django.http import HttpRequest, HttpResponse
from django.utils.functional import cached_property

from enswitch import citus


def table_row_estimate(model: type[models.Model], using: str = "default") -> int | None:
    """The planner's row estimate for the model's table (PostgreSQL), read in O(1).

    None on other databases, and when the table was never analysed (reltuples = -1).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    if citus.is_distributed(using):  # the coordinator's table is empty: ask the shards
        return citus.distributed_row_estimate(model._meta.db_table, using)
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
