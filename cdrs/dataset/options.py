"""What to generate: the generator's options, checked as import_dataset would check the
result."""

from __future__ import annotations

from dataclasses import dataclass

from cdrs.dataset.vocabulary import CURRENCIES

# 2026-11-01 00:00:00 UTC: a fixed end, so that output does not depend on the day it is made.
DEFAULT_END = 1_793_491_200
DAY = 86_400


@dataclass(frozen=True)
class Options:
    """What to generate. `end` is the Unix time at which the period of calls ends."""

    customers: int = 50
    depth: int = 4
    # Customers under each top-level reseller (None: about a quarter of the system).
    reseller_size: int | None = None
    legs: int = 2000
    days: int = 60
    currencies: int = 3
    # None: scaled with the number of customers (12 to 30).
    users: int | None = None
    seed: int = 1
    password: str = "secret"  # noqa: S105 - the documented demo password
    end: int = DEFAULT_END

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers: at least 1 (the system owner)")
        if self.customers > 1 and self.depth < 1:
            raise ValueError("depth: at least 1 when there is more than one customer")
        if self.reseller_size is not None and self.reseller_size < 1:
            raise ValueError("reseller_size: at least 1")
        if self.legs < 0:
            raise ValueError("legs: 0 or more")
        if self.days < 1:
            raise ValueError("days: at least 1")
        if not 1 <= self.currencies <= len(CURRENCIES):
            raise ValueError(f"currencies: from 1 to {len(CURRENCIES)}")
        if self.users is not None and self.users < 1:
            raise ValueError("users: at least 1 (the owner's)")
        if self.end < self.days * DAY:
            raise ValueError("end: the period must not start before 1970")
        # What import_dataset would refuse is refused here.
        from cdrs.dataset.importer import MAX_STR, TIME_MAX

        if self.end > TIME_MAX:
            raise ValueError(f"end: at most {TIME_MAX} (9999-12-31 23:59:59 UTC)")
        if not self.password or len(self.password) > MAX_STR or "\x00" in self.password:
            raise ValueError(f"password: 1 to {MAX_STR} characters, no NUL")

    @property
    def user_count(self) -> int:
        # Hashing a password takes a good fraction of a second, so a large system still
        # gets a few dozen users rather than one each.
        return self.users if self.users is not None else min(30, max(12, self.customers // 10))

    @property
    def top_reseller_size(self) -> int:
        return self.reseller_size or max(5, (self.customers - 1) // 4)
