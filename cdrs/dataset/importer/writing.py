"""What every leg writer shares: the two sides (live and archive), counts, the database's
errors."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError

from cdrs import totals
from cdrs.archive import ARCHIVE, LIVE, Tables
from cdrs.dataset.importer.legs import LEG_FIELDS, Batch

# A leg's side: the live tables or the archive (its "archived" flag).
SIDES = (LIVE, ARCHIVE)


def side_of(archived: bool) -> Tables:
    return ARCHIVE if archived else LIVE


def other_side(side: Tables) -> Tables:
    return LIVE if side == ARCHIVE else ARCHIVE


def by_side(make: Any = list) -> dict[Tables, Any]:
    """One fresh value per side: {LIVE: make(), ARCHIVE: make()}."""
    return {side: make() for side in SIDES}


class StoredLegsNamed:
    """Ids of legs stored before this import that it has named: each may be named once
    (a uniqueid appears once in an import). A bit per id up to a bound, a set beyond."""

    BITS = 1 << 32

    def __init__(self) -> None:
        self.bits = bytearray()
        self.beyond: set[int] = set()

    def first_time(self, leg_id: int) -> bool:
        """Whether this is the first time; from now on it is not."""
        if leg_id >= self.BITS:
            if leg_id in self.beyond:
                return False
            self.beyond.add(leg_id)
            return True
        byte, bit = leg_id >> 3, 1 << (leg_id & 7)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1, 2 * len(self.bits)) - len(self.bits)))
        if self.bits[byte] & bit:
            return False
        self.bits[byte] |= bit
        return True


_TOTALS_FIELDS = [LEG_FIELDS.index(f) for f in ("scustomer", "dcustomer", "start", "direction")]


def batch_totals(batch: Batch) -> totals.Deltas:
    """What a batch's legs add to the call totals (cdrs/totals.py)."""
    s, d, start, direction = _TOTALS_FIELDS
    return totals.deltas_of((row[s], row[d], row[start], row[direction]) for row in batch.rows)


def forget_totals_sql(side: Tables, n: int, mark: str) -> str:
    """The statement that takes `n` stored legs (by id) of one side out of the totals."""
    table = side.leg._meta.db_table
    return totals.legs_sql(table, f"l.id IN ({', '.join([mark] * n)})", sign=-1)


class Counts:
    def __init__(self) -> None:
        self.legs = 0
        self.archived = 0
        self.costs = 0

    def add(self, batch: Batch) -> None:
        self.legs += len(batch.rows)
        self.archived += sum(batch.archived)
        self.costs += len(batch.costs)


def database_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    classes: list[type[BaseException]] = [DatabaseError, sqlite3.Error]
    try:
        import psycopg

        classes.append(psycopg.Error)
    except ImportError:  # pragma: no cover - SQLite-only installs
        pass
    return tuple(classes)
