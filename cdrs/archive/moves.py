"""What moves where (the live tables, the archive), what a batch or a run did, and the
errors that stop a run."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import (
    models,
)

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost


class ArchiveError(Exception):
    """A run could not go on; nothing of the batch in progress was written."""


class ArchiveLocked(ArchiveError):
    """`since`: Unix time the lock has been held from, when known (its holder says)."""

    def __init__(self, detail: str = "", since: float | None = None) -> None:
        self.detail, self.since = detail, since
        super().__init__(
            "another archive_cdrs is running (archive or restore) on this database"
            + (f" ({detail})" if detail else "")
            + "; try again when it has finished"
        )


class IdClash(ArchiveError):
    """The same id names two different calls in the source and the destination."""


class FastPathDeclined(Exception):
    """The fast path saw something unusual: roll the batch back, do it carefully."""


# --- what moves where ---------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    leg: type[models.Model]
    cost: type[models.Model]


LIVE = Tables(Leg, LegCost)
ARCHIVE = Tables(ArchivedLeg, ArchivedLegCost)


@dataclass(frozen=True)
class Move:
    """Legs whose start is in [starts_from, starts_before) go from `src` to `dst` (None:
    unbounded)."""

    src: Tables
    dst: Tables
    starts_from: int | None
    starts_before: int | None

    @property
    def verb(self) -> str:
        return "archived" if self.dst is ARCHIVE else "restored"


def archive_move(*, before: int) -> Move:
    return Move(LIVE, ARCHIVE, None, before)


def restore_move(*, start: int, end: int) -> Move:
    return Move(ARCHIVE, LIVE, start, end)


@dataclass(frozen=True)
class BatchResult:
    selected: int  # legs picked for the batch; 0 means there is nothing left to move
    legs: int = 0  # legs that left the source tables
    costs: int = 0  # cost records that left the source tables
    duplicates: int = 0  # legs the destination already had (source copy dropped)
    first_start: int | None = None
    last_start: int | None = None
    last_key: tuple[int, str] | None = None  # (start, uniqueid) of the last leg picked


@dataclass
class RunResult:
    legs: int = 0
    costs: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    first_start: int | None = None
    last_start: int | None = None
    trigger_bypass: bool = False  # per-row triggers skipped, parents locked explicitly
    jobs: int = 1

    @property
    def legs_per_second(self) -> float:
        return self.legs / self.seconds if self.seconds > 0 else 0.0

    def add(self, batch: BatchResult) -> None:
        self.legs += batch.legs
        self.costs += batch.costs
        self.duplicates += batch.duplicates
        self.batches += 1
        if batch.first_start is not None:
            self.first_start = _min(self.first_start, batch.first_start)
            self.last_start = _max(self.last_start, batch.last_start)


@dataclass(frozen=True)
class Plan:
    legs: int
    costs: int
    first_start: int | None
    last_start: int | None
    already_there: int  # legs whose uniqueid the destination already has
    id_clashes: int  # legs whose id the destination uses for another call


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
