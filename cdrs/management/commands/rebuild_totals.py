"""rebuild_totals: recompute the call totals (`cdrs/totals/list`) from the legs.

    manage.py rebuild_totals

The totals are kept as legs are written; this recomputes them from both leg tables in
one transaction (writers of legs wait meanwhile; readers do not), e.g. after legs were
changed by hand in the database. Exit status 0: rebuilt; 1: failed, nothing changed.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from cdrs import totals
from cdrs.management.commands import _cli


class Command(BaseCommand):
    help = "Recompute the per-customer, per-hour call totals from the call legs."

    def handle(self, *args: Any, **options: Any) -> None:
        began = time.monotonic()
        try:
            with _cli.interruptible():
                rows = totals.rebuild()
        except KeyboardInterrupt as exc:
            raise _cli.interrupted_error(exc, "nothing was changed") from None
        except DatabaseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"rebuild failed, nothing was changed: {first}") from None
        took = time.monotonic() - began
        self.stdout.write(f"rebuilt the call totals: {rows:,} customer-hours in {took:.1f} s")
