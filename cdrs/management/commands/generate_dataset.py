"""`manage.py generate_dataset`: see cdrs.dataset.generator."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdrs.dataset.generator import DEFAULT_END, Options, write_dataset


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

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            options = Options(
                customers=o["customers"],
                depth=o["depth"],
                reseller_size=o["reseller_size"],
                legs=o["legs"],
                days=o["days"],
                currencies=o["currencies"],
                users=o["users"],
                seed=o["seed"],
                password=o["password"],
                end=o["end"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if o["out"] == "-" and o["cdrs_out"] == "-":
            raise CommandError("--out and --cdrs-out cannot both be standard output")
        started = time.monotonic()
        with ExitStack() as stack:

            def open_out(path: str) -> Any:
                if path == "-":
                    return sys.stdout.buffer
                return stack.enter_context(open(path, "wb", buffering=1 << 20))  # noqa: SIM115

            out = open_out(o["out"])
            cdrs_out = open_out(o["cdrs_out"]) if o["cdrs_out"] else None
            gen = write_dataset(out, options, cdrs_out=cdrs_out)
            out.flush()
        seconds = time.monotonic() - started
        self.stderr.write(
            f"{len(gen.customers)} customers, {len(gen.users)} users, {options.legs} legs "
            f"in {seconds:.1f} s ({options.legs / max(seconds, 1e-9):,.0f} legs/s)"
        )
