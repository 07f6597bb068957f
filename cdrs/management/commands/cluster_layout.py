"""cluster_layout: lay an existing store out on a Citus cluster, or show its layout."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from enswitch import citus


class Command(BaseCommand):
    help = (
        "Convert the store to the Citus layout (docs/scaling.md): distribute the leg and cost "
        "tables over the workers, moving their rows, and make the small tables reference "
        "tables; what `migrate` does on a cluster. Run it on the coordinator once the workers "
        "are registered. Exit status 0: done or nothing to do; 1: not a Citus coordinator "
        "with workers, or the database refused (nothing was changed). --check only shows "
        "how each table is laid out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="Show the layout; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not citus.has_workers():
            raise CommandError(
                "this database is not a Citus coordinator with workers registered "
                "(CREATE EXTENSION citus, then citus_add_node: see docs/scaling.md)"
            )
        if not options["check"]:
            try:
                done = citus.lay_out()
            except DatabaseError as exc:
                raise CommandError(f"the database refused: {exc}; nothing was changed") from None
            for line in done:
                self.stdout.write(f"laid out: {line}")
            if not done:
                self.stdout.write("nothing to do: every listed table is laid out")
        for table, kind in citus.table_kinds().items():
            self.stdout.write(f"{table}: {kind}")
