"""Admin actions that archive the selected live legs, or restore the selected archived
ones, through `cdrs.archive` (the code, lock and batches of `archive_cdrs`), after a
confirmation page that says how many legs will move."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

# One admin request moves at most this many legs; more is a job for archive_cdrs.
MAX_LEGS = 10_000


def _move(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, archive: bool
) -> HttpResponse | None:
    # Imported here: every process loads the admin, few of them move legs.
    from cdrs.archive import ARCHIVE, LIVE, ArchiveError, ArchiveLocked, IdClash
    from cdrs.archive.selected import move_chosen

    verb, where = ("archive", "the archive") if archive else ("restore", "the live tables")
    picked = list(
        queryset.order_by("start", "uniqueid").values_list("id", "start", "uniqueid")[
            : MAX_LEGS + 1
        ]
    )
    if len(picked) > MAX_LEGS:
        modeladmin.message_user(
            request,
            f"Refusing to {verb} more than {MAX_LEGS:,} legs from the admin; narrow the "
            f"selection, or run archive_cdrs (see docs/archiving.md). Nothing moved.",
            messages.ERROR,
        )
        return None
    if request.POST.get("confirm") != "yes":
        opts = modeladmin.model._meta
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": f"{verb.capitalize()} {len(picked):,} call leg{'s' * (len(picked) != 1)}?",
            "opts": opts,
            "verb": verb,
            "where": where,
            "count": len(picked),
            "first": picked[:20],
            "more": max(0, len(picked) - 20),
            "selected": [row[0] for row in picked],
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
            "query": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin_tools/move_confirmation.html", context)
    try:
        result = move_chosen(LIVE if archive else ARCHIVE, picked, using=queryset.db)
    except ArchiveLocked:
        modeladmin.message_user(
            request,
            "An archive_cdrs run (or another move) is in progress; nothing moved. "
            "Try again when it has finished.",
            messages.ERROR,
        )
        return None
    except (IdClash, ArchiveError, DatabaseError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        modeladmin.message_user(
            request, f"Nothing moved: {first_line.rstrip('.')}.", messages.ERROR
        )
        return None
    gone = len(picked) - result.legs
    note = f" ({gone:,} had already moved or gone)" if gone else ""
    modeladmin.message_user(
        request,
        f"{'Archived' if archive else 'Restored'} {result.legs:,} call "
        f"leg{'s' * (result.legs != 1)} and {result.costs:,} cost records to {where}{note}.",
        messages.SUCCESS,
    )
    return None


@admin.action(description="Move the selected legs to the archive", permissions=["change"])
def archive_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _move(modeladmin, request, queryset, archive=True)


@admin.action(description="Restore the selected legs to the live tables", permissions=["change"])
def restore_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _move(modeladmin, request, queryset, archive=False)
