"""`manage.py import_dataset FILE [--cdrs FILE.jsonl]`: see cdrs.dataset.importer."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdrs.dataset.importer import (
    BATCH_SIZE,
    ERROR_LIMIT,
    DatasetError,
    Progress,
    cores,
    database_errors,
    import_dataset,
)
from cdrs.management.commands import _cli

MAX_BATCH = 1_000_000


class Command(BaseCommand):
    help = (
        "Load a dataset file (docs/dataset-format.md): all of it, or nothing. "
        "FILE is the main JSON file ('-': standard input); --cdrs adds legs from a JSONL "
        "file, one CDR object a line, read in batches so that it may be of any size. "
        "Every error is reported on standard error with its place: "
        "'cdrs[12].scustomer: no customer 99' or 'customers[3].parent: ...' in FILE "
        "(positions counted from 0), 'cdrs.jsonl line 12: scustomer: ...' in the JSONL "
        "file (lines counted from 1); then the command exits non-zero having written "
        "nothing. Loading the same data again updates it in place."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", nargs="?", help="the dataset JSON file, or - for standard input"
        )
        parser.add_argument(
            "--cdrs",
            metavar="FILE.jsonl",
            help="legs, one JSON object a line (the shape of the cdrs[] entries); - for "
            "standard input. Errors in it are reported as 'FILE.jsonl line N: ...'.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"legs checked and written at a time (default {BATCH_SIZE})",
        )
        parser.add_argument(
            "--max-errors",
            type=int,
            default=ERROR_LIMIT,
            help=f"errors listed before '... and N more' (default {ERROR_LIMIT})",
        )
        parser.add_argument(
            "--bulk",
            choices=("auto", "yes", "no"),
            default="auto",
            help="PostgreSQL: into an empty store, COPY straight into the tables and build "
            "their indexes at the end (auto: for large loads)",
        )

        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="PostgreSQL bulk loads: processes checking the JSONL legs (0: none; "
            "default: one per core when there are several, at most 4). Capped at this "
            "machine's cores; the workers open no database connection.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path, cdrs_path = options["file"], options["cdrs"]
        if path is None and cdrs_path is None:
            raise CommandError("give a dataset FILE, or --cdrs FILE.jsonl, or both")
        if path == "-" and cdrs_path == "-":
            raise CommandError("FILE and --cdrs cannot both be standard input")
        _cli.whole("--batch-size", options["batch_size"], 1, MAX_BATCH)
        _cli.whole("--max-errors", options["max_errors"], 1, MAX_BATCH)
        _cli.whole("--workers", options["workers"], 0, 1000)
        try:
            with _cli.interruptible():
                result = self._import(path, cdrs_path, options)
        except KeyboardInterrupt as exc:
            raise _cli.interrupted_error(exc, "nothing was written") from None
        except database_errors() as exc:
            what, _ = _cli.database_problem(exc)
            raise CommandError(f"{what}; nothing was written") from None
        except OSError as exc:  # reading a file
            raise CommandError(f"{exc.filename or path or cdrs_path}: {exc.strerror}") from None
        self.stdout.write(result.summary())

    def _import(self, path: str | None, cdrs_path: str | None, options: dict[str, Any]) -> Any:
        if options["workers"] is not None and options["workers"] > cores():
            self.stderr.write(f"--workers {options['workers']}: using {cores()} (the cores here)")
        with ExitStack() as stack:
            source = self._open(path, stack) if path else None
            cdrs = self._open(cdrs_path, stack) if cdrs_path else None
            show = _ProgressLine(sys.stderr) if cdrs is not None and sys.stderr.isatty() else None
            try:
                result = import_dataset(
                    source,
                    source_name=path or "-",
                    cdrs=cdrs,
                    cdrs_name=cdrs_path or "cdrs.jsonl",
                    batch_size=options["batch_size"],
                    error_limit=options["max_errors"],
                    progress=show,
                    bulk={"auto": None, "yes": True, "no": False}[options["bulk"]],
                    workers=options["workers"],
                )
            except DatasetError as exc:
                if show:
                    show.clear()
                for line in exc.lines():
                    self.stderr.write(line)
                raise CommandError(f"{exc.total} error(s) found; nothing was written") from None
            if show:
                show.clear()
        return result

    def _open(self, path: str, stack: ExitStack) -> BinaryIO:
        if path == "-":
            return sys.stdin.buffer
        try:
            return stack.enter_context(open(path, "rb"))  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None


class _ProgressLine:
    """One line on a terminal, rewritten at most a few times a second."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        rate = p.legs / p.seconds if p.seconds > 0 else 0
        share = f" {100 * p.bytes_read / p.bytes_total:5.1f}%" if p.bytes_total else ""
        self.stream.write(f"\r{p.legs:,} legs checked{share}, {rate:,.0f} legs/s ")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
