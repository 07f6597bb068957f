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

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from cdrs import archive
from cdrs.archive import ArchiveError, ArchiveLocked, IdClash, Move, Plan, RunResult
from cdrs.management.commands import _cli

# EX_TEMPFAIL: "try again later", so a scheduler can tell a skipped run from a failure.
EXIT_LOCKED = 75
DAY = 86_400
MAX_BATCH = 1_000_000
MAX_WAIT = 7 * DAY


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    try:
        return f"{ts:.0f} ({datetime.fromtimestamp(ts, tz=UTC):%Y-%m-%d %H:%M:%S} UTC)"
    except (OverflowError, OSError, ValueError):  # beyond what a date can show
        return f"{ts:.0f}"


def _failed(what: str, *, again: bool) -> str:
    """One line: what went wrong, and whether running again helps."""
    end = (
        "Run the command again to continue."
        if again
        else "Running it again will not help until that is resolved."
    )
    return f"{what}. Each batch is all or nothing, so the store is consistent. {end}"


def unix_time(name: str, value: int, now: int) -> int:
    """A cut-off in seconds from 1970-01-01 to a day from now; anything else is a
    mistake (most often milliseconds), refused before anything moves."""
    if 0 <= value <= now + DAY:
        return value
    hint = ""
    if 0 <= value // 1000 <= now + DAY:
        hint = f": milliseconds? In seconds that is {when(value // 1000)}"
    elif value < 0:
        hint = ": before 1970-01-01"
    raise CommandError(
        f"{name} {value} is not a Unix time in seconds from 0 (1970-01-01) to a day from "
        f"now ({now + DAY}){hint}"
    )


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
            "throughput, at the price of CPU the API may want. Capped at this machine's "
            "CPUs and at the server's free connections (max_connections less the reserved "
            "ones and those in use) less ENSWITCH_SPARE_CONNECTIONS kept for the API.",
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
            help="If another run holds the lock, wait up to this long (default: give up; at "
            f"most {MAX_WAIT}). A lock held for longer than ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS "
            "(a day) is a failure (status 1), not a skipped run (75).",
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
            "role may skip them (about half the speed; see 'Speed (PostgreSQL)' in "
            "docs/archiving.md).",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        move = self._move(options)
        using = options["database"]
        vendor = connections[using].vendor
        batch_size = _cli.whole("--batch-size", options["batch_size"], 1, MAX_BATCH)
        if batch_size is None:
            batch_size = archive.DEFAULT_BATCH_SIZE.get(vendor, 10_000)
        _cli.whole("--jobs", options["jobs"], 1, 1000)
        wait = _cli.seconds("--wait", options["wait"], MAX_WAIT)
        self.verbosity = options["verbosity"]
        try:
            with _cli.interruptible():
                jobs = self._jobs(options["jobs"], using) if not options["dry_run"] else 1
                with archive.exclusive_lock(using=using, wait=wait):
                    if options["dry_run"]:
                        self._report_plan(move, archive.plan_move(move, using=using))
                        return
                    bypass = False if options["no_trigger_bypass"] else None
                    result = self._run(move, batch_size, using, bypass, jobs)
                    if options["vacuum"]:
                        archive.vacuum(move, using=using)
        except ArchiveLocked as exc:
            raise self._locked(exc) from None
        except KeyboardInterrupt as exc:
            raise _cli.interrupted_error(
                exc, "the batch in progress was rolled back; run again to continue"
            ) from None
        except IdClash as exc:
            raise CommandError(_failed(str(exc), again=False)) from None
        except (ArchiveError, DatabaseError) as exc:
            what, again = _cli.database_problem(exc)
            if isinstance(exc, ArchiveError) and not isinstance(exc, DatabaseError):
                what = _cli.first_line(exc)
            raise CommandError(_failed(what, again=again)) from None
        except OSError as exc:  # the lock file: a read-only directory, say
            raise CommandError(f"{exc.filename or 'lock file'}: {exc.strerror}") from None
        except Exception as exc:  # noqa: BLE001 - never a traceback
            raise CommandError(_failed(f"unexpected failure: {exc!r}", again=True)) from exc
        self._report_run(move, result)

    def _locked(self, exc: ArchiveLocked) -> CommandError:
        """75 for an ordinary overlap; 1 once the lock has been held for longer than any
        run should take, so that a scheduler shows a failure instead of a skipped run."""
        stale = settings.ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS
        if exc.since is not None and time.time() - exc.since > stale:
            hours = (time.time() - exc.since) / 3600
            return CommandError(
                f"the archive lock has been held for {hours:,.1f} hours (since "
                f"{when(exc.since)}; {exc.detail}), longer than "
                f"ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS ({stale}): a stuck run or another "
                "program holds it, and nothing is being archived"
            )
        return CommandError(str(exc), returncode=EXIT_LOCKED)

    def _jobs(self, asked: int, using: str) -> int:
        """--jobs, capped by the CPUs here and the connections the server can spare."""
        if asked == 1 or connections[using].vendor != "postgresql":
            return 1
        free = _cli.free_connections(using) - settings.ENSWITCH_SPARE_CONNECTIONS
        cap = max(1, min(_cli.cpus(), free))
        if asked > cap:
            if self.verbosity > 0:
                self.stderr.write(
                    f"--jobs {asked}: using {cap} ({_cli.cpus()} CPUs; the server has "
                    f"{free} connections free beyond the {settings.ENSWITCH_SPARE_CONNECTIONS} "
                    "kept for the API)"
                )
            return cap
        return asked

    def _move(self, options: dict[str, Any]) -> Move:
        now = int(time.time())
        if options["restore"]:
            if options["between"] is None:
                raise CommandError("--restore needs --between START END")
            start, end = (unix_time("--between", t, now) for t in options["between"])
            if start > end:
                raise CommandError("--between: START must not be after END")
            return archive.restore_move(start=start, end=end)
        if options["between"] is not None:
            raise CommandError("--between goes with --restore")
        if options["before"] is not None:
            return archive.archive_move(before=unix_time("--before", options["before"], now))
        if options["older_than"] is not None:
            days = options["older_than"]
            if days < 0:
                raise CommandError("--older-than must be 0 or more days")
            if days > now // DAY:
                raise CommandError(
                    f"--older-than {days} days reaches before 1970-01-01 (at most {now // DAY} "
                    "today); for a Unix time, use --before"
                )
            return archive.archive_move(before=now - days * DAY)
        raise CommandError("say which legs: --older-than DAYS, --before UNIXTIME or --restore")

    def _describe(self, move: Move) -> str:
        if move.starts_from is None:
            return f"legs that started before {when(move.starts_before)}"
        return (
            f"archived legs that started from {when(move.starts_from)} "
            f"to before {when(move.starts_before)}"
        )

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
