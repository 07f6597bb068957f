"""What every leg writer shares: the two sides (live and archive), counts, the database's
errors."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError

from cdrs.archive import ARCHIVE, LIVE, Tables
from cdrs.dataset.importer.legs import Batch

# A leg's side: the live tables or the archive (its "archived" flag).
SIDES = (LIVE, ARCHIVE)


def side_of(archived: bool) -> Tables:
    return ARCHIVE if archived else LIVE


def other_side(side: Tables) -> Tables:
    return LIVE if side == ARCHIVE else ARCHIVE


def by_side(make: Any = list) -> dict[Tables, Any]:
    """One fresh value per side: {LIVE: make(), ARCHIVE: make()}."""
    return {side: make() for side in SIDES}


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
