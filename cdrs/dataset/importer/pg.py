"""Writing legs to PostgreSQL: what the staged and the bulk writers share, and the session."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from cdrs.archive import ARCHIVE, LIVE
from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, LEG_FIELDS
from cdrs.dataset.importer.writing import SIDES, Counts, StoredLegsNamed, by_side
from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Card, Currency, Customer, Invoice, Peer
from enswitch import citus

INT_FIELDS = frozenset(
    {"start", "end", "talktime", "scustomer", "dcustomer", "peer", "invoice", "card"}
)
# Legs go through binary COPY: cheaper to format here and to parse there than text.
LEG_TYPES = ["int8" if f in INT_FIELDS else "text" for f in LEG_FIELDS]
LEG_COPY_TYPES = ["int8", *LEG_TYPES]  # with the id first


def identifiers(names: Any) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


class PgNames:
    """Table and column names for psycopg.sql, per side (LIVE, ARCHIVE)."""

    def __init__(self) -> None:
        self.leg = {side: sql.Identifier(side.leg._meta.db_table) for side in SIDES}
        self.cost = {side: sql.Identifier(side.cost._meta.db_table) for side in SIDES}
        self.leg_cols = identifiers(LEG_COLUMNS)
        self.cost_cols = identifiers(COST_COLUMNS)
        self.leg_updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in LEG_COLUMNS
        )


LEG_TABLES = (Leg, ArchivedLeg, LegCost, ArchivedLegCost)


class PgWriter:
    """What both PostgreSQL ways share: the raw psycopg connection (used from one worker
    thread while the main thread checks the next batch), ids, and the end of the load."""

    threaded = True

    def __init__(self, connection: Any, *, replica: bool) -> None:
        self.t = PgNames()
        self.raw = connection.connection
        self.replica = replica
        # On a Citus cluster uniqueid has no unique constraint (docs/scaling.md): the
        # writers look each batch's uniqueids up in both tables instead.
        self.distributed = citus.is_distributed(connection.alias)
        self.counts = Counts()
        self.named = StoredLegsNamed()
        self.written = by_side(bool)  # legs written to each side so far
        cur = self.raw.cursor()
        self.seq = cur.execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (Leg._meta.db_table,)
        ).fetchone()[0]
        # Every leg, live or archived, takes its id from the live table's sequence, so ids
        # stay unique across both tables (archiving keeps ids).
        highest = sql.SQL(
            "SELECT greatest(coalesce(pg_sequence_last_value(%s::regclass), 0), "
            "(SELECT coalesce(max(id), 0) FROM {live}), "
            "(SELECT coalesce(max(id), 0) FROM {archive}))"
        )
        cur.execute(highest.format(live=self.t.leg[LIVE], archive=self.t.leg[ARCHIVE]), (self.seq,))
        self.floor = cur.fetchone()[0]  # every id above this was written by this import
        cur.execute(
            "SELECT setval(%s::regclass, %s, %s)", (self.seq, max(self.floor, 1), self.floor > 0)
        )

    def _analyze(self) -> None:
        # Fresh statistics, so that the first queries after a large load are planned for
        # the table as it now is.
        if self.counts.legs >= 10_000:
            cur = self.raw.cursor()
            for side in SIDES:
                if self.written[side]:
                    cur.execute(
                        sql.SQL("ANALYZE {}, {}").format(self.t.leg[side], self.t.cost[side])
                    )


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
    # Again outside the savepoint: Citus passes on to the connections it opens later in
    # this transaction only what was SET at its top level.
    cur.execute("SET LOCAL session_replication_role = replica")
    for model in (Customer, Currency, Peer, Card, Invoice):
        lock = sql.SQL("WITH l AS (SELECT 1 FROM {} FOR KEY SHARE) SELECT count(*) FROM l")
        cur.execute(lock.format(sql.Identifier(model._meta.db_table)))
    return True


def cluster_session(connection: Any) -> None:
    """On a Citus cluster: the SET LOCALs of this transaction hold on the workers too
    (where the shards' triggers run), and one connection per worker is used, since the
    import writes reference tables in the same transaction."""
    if citus.is_distributed(connection.alias):
        cur = connection.connection.cursor()
        cur.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        cur.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")


def pg_empty(connection: Any) -> bool:
    cur = connection.connection.cursor()
    empty = sql.SQL(" AND ").join(
        sql.SQL("NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(m._meta.db_table))
        for m in LEG_TABLES
    )
    cur.execute(sql.SQL("SELECT {}").format(empty))
    return cur.fetchone()[0]


def lock_leg_tables(connection: Any) -> None:
    """Nobody else writes (or reads) legs until this import ends."""
    cur = connection.connection.cursor()
    cur.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            identifiers(m._meta.db_table for m in LEG_TABLES)
        )
    )
