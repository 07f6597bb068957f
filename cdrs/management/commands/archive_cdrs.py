"""archive_cdrs: move old call legs into the archive tables, or bring some back.

    manage.py archive_cdrs --older-than 90
    manage.py archive_cdrs --before 1704067200 --dry-run
    manage.py archive_cdrs --restore --between 1704067200 1706745600

The work is in cdrs.archive; this file reads the options and reports.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from cdrs import archive
from cdrs.archive import ArchiveError, ArchiveLocked, Move, Plan, RunResult

# EX_TEMPFAIL: "try again later", so a scheduler can tell a skipped run from a failure.
EXIT_LOCKED = 75


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return f"{ts} ({datetime.fromtimestamp(ts, tz=UTC):%Y-%m-%d %H:%M:%S} UTC)"


class Command(BaseCommand):
    help = (
        "Move call legs that started before a cut-off, with their cost records, from the "
        "live tables to the archive (or, with --restore, back), in batches of one "
        "transaction each. Safe to kill and run again at any moment; one run at a time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cut = parser.add_mutually_exclusive_group()
        cut.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            help="Archive legs that started more than DAYS x 86400 seconds before now.",
        )
        cut.add_argument(
            "--before",
            type=int,
            metavar="UNIXTIME",
            help="Archive legs whose start is before UNIXTIME (strictly).",
        )
        cut.add_argument(
            "--restore",
            action="store_true",
            help="Bring archived legs back to the live tables (needs --between).",
        )
        parser.add_argument(
            "--between",
            type=int,
            nargs=2,
            metavar=("START", "END"),
            help="With --restore: legs whose start is >= START and < END (Unix times).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="Legs per transaction (default 50000 on PostgreSQL, 10000 on SQLite).",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help="PostgreSQL: move N batches at a time, on N connections (default 1). More "
            "throughput, at the price of CPU the API may want.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what would move (legs, cost records, time range); write nothing.",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="If another run holds the lock, wait up to this long (default: give up).",
        )
        parser.add_argument(
            "--vacuum",
            action="store_true",
            help="Afterwards VACUUM ANALYZE the tables legs left and ANALYZE the others.",
        )
        parser.add_argument(
            "--no-trigger-bypass",
            action="store_true",
            help="PostgreSQL: always let the per-row foreign-key triggers run, even when the "
            "role may skip them (about half the speed; see docs/archiving.md).",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        move = self._move(options)
        using = options["database"]
        vendor = connections[using].vendor
        batch_size = options["batch_size"]
        if batch_size is None:
            batch_size = archive.DEFAULT_BATCH_SIZE.get(vendor, 10_000)
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        self.verbosity = options["verbosity"]
        try:
            with archive.exclusive_lock(using=using, wait=options["wait"]):
                if options["dry_run"]:
                    self._report_plan(move, archive.plan_move(move, using=using))
                    return
                bypass = False if options["no_trigger_bypass"] else None
                result = self._run(move, batch_size, using, bypass, options["jobs"])
                if options["vacuum"]:
                    archive.vacuum(move, using=using)
        except ArchiveLocked as exc:
            raise CommandError(str(exc), returncode=EXIT_LOCKED) from exc
        except KeyboardInterrupt:
            raise CommandError(
                "interrupted: the batch in progress was rolled back; run again to continue",
                returncode=130,
            ) from None
        except Exception as exc:  # noqa: BLE001 - every failure gets the same clear ending
            what = str(exc) if isinstance(exc, ArchiveError | DatabaseError) else repr(exc)
            raise CommandError(
                f"{what}\nEach batch is all or nothing, so the store is consistent: every leg "
                "is in exactly one place, with its cost records. Run the command again to "
                "continue."
            ) from exc
        self._report_run(move, result)

    def _move(self, options: dict[str, Any]) -> Move:
        if options["restore"]:
            if options["between"] is None:
                raise CommandError("--restore needs --between START END")
            start, end = options["between"]
            if start > end:
                raise CommandError("--between: START must not be after END")
            return archive.restore_move(start=start, end=end)
        if options["between"] is not None:
            raise CommandError("--between goes with --restore")
        if options["before"] is not None:
            return archive.archive_move(before=options["before"])
        if options["older_than"] is not None:
            if options["older_than"] < 0:
                raise CommandError("--older-than must be 0 or more days")
            return archive.archive_move(before=int(time.time()) - options["older_than"] * 86400)
        raise CommandError("say which legs: --older-than DAYS, --before UNIXTIME or --restore")

    def _describe(self, move: Move) -> str:
        if move.lo is None:
            return f"legs that started before {when(move.hi)}"
        return f"archived legs that started from {when(move.lo)} to before {when(move.hi)}"

    def _report_plan(self, move: Move, p: Plan) -> None:
        dest = "the archive" if move.verb == "archived" else "the live tables"
        self.stdout.write(
            f"dry run: would move {p.legs:,} {self._describe(move)} and {p.costs:,} cost "
            f"records to {dest}; starts from {when(p.first_start)} to {when(p.last_start)}"
        )
        if p.already_there:
            self.stdout.write(
                f"  {p.already_there:,} of them are already in {dest} (same uniqueid): the "
                "duplicate copies would be dropped"
            )
        if p.id_clashes:
            self.stdout.write(
                f"  {p.id_clashes:,} of them have an id that {dest} uses for another call: "
                "the run would stop at the first batch holding one"
            )

    def _run(
        self, move: Move, batch_size: int, using: str, bypass: bool | None, jobs: int
    ) -> RunResult:
        tty = sys.stderr.isatty() and self.verbosity > 0
        total = archive.count_legs(move, using=using) if tty else 0

        def progress(r: RunResult) -> None:
            pct = f" of {total:,} ({100 * r.legs / total:.0f}%)" if total else ""
            sys.stderr.write(
                f"\r{move.verb} {r.legs:,}{pct} legs, {r.batches} batches, "
                f"{r.legs_per_second:,.0f} legs/s, up to {when(r.last_start)}\x1b[K"
            )
            sys.stderr.flush()

        try:
            return archive.run(
                move,
                batch_size=batch_size,
                using=using,
                progress=progress if tty else None,
                bypass_triggers=bypass,
                jobs=jobs,
            )
        finally:
            if tty:
                sys.stderr.write("\n")

    def _report_run(self, move: Move, r: RunResult) -> None:
        if self.verbosity == 0:
            return
        line = (
            f"{move.verb} {r.legs:,} legs and {r.costs:,} cost records in {r.batches} batches, "
            f"{r.seconds:.1f} s, {r.legs_per_second:,.0f} legs/s ({self._describe(move)})"
        )
        if r.duplicates:
            line += f"; {r.duplicates:,} were already there, their duplicate copies dropped"
        if self.verbosity >= 2:
            line += f"; {r.jobs} job{'s' if r.jobs > 1 else ''}"
            line += (
                "; per-row foreign-key triggers skipped, parent rows locked instead"
                if r.trigger_bypass
                else "; per-row foreign-key triggers ran"
            )
        self.stdout.write(line)
