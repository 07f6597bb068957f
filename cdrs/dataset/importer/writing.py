"""What every leg writer shares: quoted table names, counts, the database's errors."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError

from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, Batch
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost


class QuotedTables:
    """Quoted table and column names, per side (False: live, True: archive)."""

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        self.q = q
        self.leg = {False: q(Leg._meta.db_table), True: q(ArchivedLeg._meta.db_table)}
        self.cost = {False: q(LegCost._meta.db_table), True: q(ArchivedLegCost._meta.db_table)}
        self.leg_cols = ", ".join(q(c) for c in LEG_COLUMNS)
        self.cost_cols = ", ".join(q(c) for c in COST_COLUMNS)
        self.leg_updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in LEG_COLUMNS)


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
