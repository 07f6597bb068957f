"""Writing legs to PostgreSQL: what the staged and the bulk writers share, and the session."""

# Names spliced into SQL here come from the models' _meta or are constants; values are bound
# parameters or go through COPY.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

from cdrs.dataset.importer.legs import LEG_FIELDS
from cdrs.dataset.importer.writing import Counts, QuotedTables
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import (
    Card,
    Currency,
    Customer,
    Invoice,
    Peer,
)

INT_FIELDS = frozenset(
    {"start", "end", "talktime", "scustomer", "dcustomer", "peer", "invoice", "card"}
)
# Legs go through binary COPY: cheaper to format here and to parse there than text.
LEG_TYPES = ["int8" if f in INT_FIELDS else "text" for f in LEG_FIELDS]
LEG_COPY_TYPES = ["int8", *LEG_TYPES]  # with the id first


class PgWriter:
    """What both PostgreSQL ways share: the raw psycopg connection (used from one worker
    thread while the main thread checks the next batch), ids, and the end of the load."""

    threaded = True

    def __init__(self, connection: Any, *, replica: bool) -> None:
        self.t = QuotedTables(connection)
        self.raw = connection.connection
        self.replica = replica
        self.counts = Counts()
        self.written = {False: False, True: False}  # legs written to each side so far
        cur = self.raw.cursor()
        self.seq = cur.execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (Leg._meta.db_table,)
        ).fetchone()[0]
        # Every leg, live or archived, takes its id from the live table's sequence, so ids
        # stay unique across both tables (archiving keeps ids).
        cur.execute(
            f"SELECT greatest(coalesce(pg_sequence_last_value(%s::regclass), 0), "
            f"(SELECT coalesce(max(id), 0) FROM {self.t.leg[False]}), "
            f"(SELECT coalesce(max(id), 0) FROM {self.t.leg[True]}))",
            (self.seq,),
        )
        self.floor = cur.fetchone()[0]  # every id above this was written by this import
        cur.execute(
            "SELECT setval(%s::regclass, %s, %s)", (self.seq, max(self.floor, 1), self.floor > 0)
        )

    def _analyze(self) -> None:
        # Fresh statistics, so that the first queries after a large load are planned for
        # the table as it now is.
        if self.counts.legs >= 10_000:
            cur = self.raw.cursor()
            for side in (False, True):
                if self.written[side]:
                    cur.execute(f"ANALYZE {self.t.leg[side]}, {self.t.cost[side]}")


def pg_session(connection: Any) -> bool:
    """Statement timeouts off for this transaction; foreign-key triggers skipped when
    allowed (superuser, or SET granted on session_replication_role), which is safe
    because every reference was checked already and the referenced rows are locked
    here against deletion (what each trigger would have done, once per row)."""
    cur = connection.connection.cursor()
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL lock_timeout = 0")
    cur.execute("SAVEPOINT enswitch_replica")
    try:
        cur.execute("SET LOCAL session_replication_role = replica")
    except Exception:  # noqa: BLE001 - insufficient privilege: keep the triggers
        cur.execute("ROLLBACK TO SAVEPOINT enswitch_replica")
        return False
    cur.execute("RELEASE SAVEPOINT enswitch_replica")
    for model in (Customer, Currency, Peer, Card, Invoice):
        cur.execute(
            f"WITH l AS (SELECT 1 FROM {model._meta.db_table} FOR KEY SHARE) SELECT count(*) FROM l"
        )
    return True


def pg_empty(connection: Any) -> bool:
    cur = connection.connection.cursor()
    tables = [m._meta.db_table for m in (Leg, ArchivedLeg, LegCost, ArchivedLegCost)]
    cur.execute(
        " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t})" for t in tables).join(("SELECT ", ""))
    )
    return cur.fetchone()[0]
