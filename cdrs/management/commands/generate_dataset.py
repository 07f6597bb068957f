"""`manage.py generate_dataset`: see cdrs.dataset.generator."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdrs.dataset.files import write_dataset
from cdrs.dataset.generator import DatasetGenerator
from cdrs.dataset.options import DEFAULT_END, Options
from cdrs.management.commands import _cli


@contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    """A file written whole or not at all: a temporary file beside it (owner-only, like
    everything this product creates: a dataset holds passwords), renamed when complete."""
    if path == "-":
        yield sys.stdout.buffer
        return
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "Is a directory", path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:  # named by the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            yield out
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


class _Counted:
    """A binary stream that counts the bytes written through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.written = out, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class Command(BaseCommand):
    help = (
        "Write a realistic dataset in the format import_dataset loads. The same options "
        "and --seed give the same bytes. Every user's password is --password ('secret' "
        "by default); the owner's user is 'owner', the others 'c<customer id>-<kind>' "
        "(kinds: admin, viewer, callshop, callshop-archive, phone). Example, for a "
        "benchmark: generate_dataset --customers 10000 --depth 5 --reseller-size 1000 "
        "--legs 10000000 --days 60 --out main.json --cdrs-out legs.jsonl"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        d = Options()
        parser.add_argument(
            "--customers",
            type=int,
            default=d.customers,
            help=f"customers, the system owner included (default {d.customers})",
        )
        parser.add_argument(
            "--depth",
            type=int,
            default=d.depth,
            help=f"depth of the deepest customers; the owner is 0 (default {d.depth})",
        )
        parser.add_argument(
            "--reseller-size",
            type=int,
            default=None,
            help="customers under each top-level reseller (default: a quarter of the customers)",
        )
        parser.add_argument("--legs", type=int, default=d.legs, help=f"legs (default {d.legs})")
        parser.add_argument(
            "--days",
            type=int,
            default=d.days,
            help=f"the legs are spread over this many days (default {d.days})",
        )
        parser.add_argument(
            "--end",
            "--start",
            dest="end",
            type=int,
            default=DEFAULT_END,
            metavar="UNIXTIME",
            help=f"Unix time at which the period ends (default {DEFAULT_END}, "
            "2026-11-01 00:00 UTC, so that output does not depend on the day)",
        )
        parser.add_argument(
            "--currencies",
            type=int,
            default=d.currencies,
            help=f"currencies (default {d.currencies})",
        )
        parser.add_argument(
            "--users",
            type=int,
            default=None,
            help="API users (default: 12 to 30, with the number of customers; "
            "each costs most of a second to hash on import)",
        )
        parser.add_argument(
            "--password", default=d.password, help=f"every user's password (default {d.password!r})"
        )
        parser.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
        parser.add_argument(
            "--out",
            default="-",
            metavar="FILE",
            help="the dataset JSON file (default: standard output)",
        )
        parser.add_argument(
            "--cdrs-out",
            default=None,
            metavar="FILE.jsonl",
            help="write the legs here, one a line, instead of into --out",
        )

    def handle(self, *args: Any, **given: Any) -> None:
        try:
            # Each of the generator's options has a command option of the same name.
            options = Options(**{f.name: given[f.name] for f in fields(Options)})
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if given["out"] == "-" and given["cdrs_out"] == "-":
            raise CommandError("--out and --cdrs-out cannot both be standard output")
        started = time.monotonic()
        try:
            with _cli.interruptible():
                gen = self._write(given, options)
        except ValueError as exc:  # found while building the objects
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"{exc.filename or given['out']}: {exc.strerror}") from None
        except KeyboardInterrupt as exc:
            raise _cli.interrupted_error(exc, "no file was written") from None
        seconds = time.monotonic() - started
        self.stderr.write(
            f"{len(gen.customers)} customers, {len(gen.users)} users, {options.legs} legs "
            f"in {seconds:.1f} s ({options.legs / max(seconds, 1e-9):,.0f} legs/s)"
        )

    def _write(self, given: dict[str, Any], options: Options) -> DatasetGenerator:
        limit = settings.ENSWITCH_IMPORT_MAX_FILE_BYTES
        with ExitStack() as stack:
            out = _Counted(stack.enter_context(_output(given["out"])))
            cdrs_out = (
                stack.enter_context(_output(given["cdrs_out"])) if given["cdrs_out"] else None
            )
            gen = write_dataset(out, options, cdrs_out=cdrs_out)  # type: ignore[arg-type]
            out.flush()
            if out.written > limit:
                # Raised inside the block: a file is then not left behind.
                raise CommandError(
                    f"the main file would be {out.written:,} bytes, more than import_dataset "
                    f"reads (ENSWITCH_IMPORT_MAX_FILE_BYTES, {limit:,}): put the legs in "
                    "--cdrs-out FILE.jsonl"
                )
        return gen
