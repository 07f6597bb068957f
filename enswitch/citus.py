"""The store's layout on a Citus cluster: which table is distributed, which is a reference table.

`migrate` lays the store out (a post_migrate receiver, connected in enswitch/apps.py)
when the database has the `citus` extension and at least one worker registered; on
plain PostgreSQL and SQLite nothing changes. It is idempotent: tables already laid out
are left alone, so a later `migrate` lays out only the tables its migrations added.
Existing rows are moved to the workers by Citus (create_distributed_table), so the same
step converts a single-node store (`manage.py cluster_layout`). Reasons: docs/scaling.md.

To add a table: list its model below. A small table read with the legs (or joined to
them) goes to REFERENCE_TABLES, after the tables it points at; a table that grows with
the legs goes to DISTRIBUTED_TABLES with its distribution column, co-located with the
legs when it is joined to them by leg. Tables listed nowhere stay local to the
coordinator: keep those small (tests/test_citus_layout.py checks it).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connections, transaction


@dataclass(frozen=True)
class Distributed:
    model: str  # "app_label.Model"
    column: str  # the model's field whose value picks the shard
    colocate_with: str | None = None  # the model whose shards it shares


# Parents before children: a reference table may only point at reference tables.
REFERENCE_TABLES: tuple[str, ...] = (
    "customers.Currency",
    "customers.RatePlan",
    "customers.Role",
    "customers.Customer",
    "customers.User",
    "customers.Peer",
    "customers.Card",
    "customers.Invoice",
    "cdrs.CalledNumber",
)

# A leg, live or archived, and its cost records share a shard: ids are kept when legs
# move, so the join and the archive's moves never leave a worker.
DISTRIBUTED_TABLES: tuple[Distributed, ...] = (
    Distributed("cdrs.Leg", "id"),
    Distributed("cdrs.LegCost", "leg", colocate_with="cdrs.Leg"),
    Distributed("cdrs.ArchivedLeg", "id", colocate_with="cdrs.Leg"),
    Distributed("cdrs.ArchivedLegCost", "leg", colocate_with="cdrs.Leg"),
    # Per customer and hour: the API asks for some customers' hours, and the writers add
    # counts grouped by customer, so each customer's rows live on one worker.
    Distributed("cdrs.CallTotals", "customer"),
)

# Kept by a trigger on one node; Citus does not run such triggers on distributed tables,
# and on the cluster the called-number search reads the legs' own trigram index instead
# (cdrs.models.LegQuerySet.matching).
CLUSTER_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS leg_cnumber_trgm ON cdrs_leg USING gin (cnumber gin_trgm_ops)",
)


def _table(label: str) -> str:
    return apps.get_model(label)._meta.db_table


def _column(label: str, field: str) -> str:
    return apps.get_model(label)._meta.get_field(field).column


def has_workers(using: str = "default") -> bool:
    """The database has the citus extension and at least one worker registered."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_node WHERE groupid <> 0 "
            "AND noderole = 'primary' AND isactive)"
        )
        return cursor.fetchone()[0]


_distributed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_distributed(using: str = "default") -> bool:
    """The legs are distributed over a Citus cluster (asked once per connection)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    connection.ensure_connection()
    raw = connection.connection
    if raw not in _distributed:
        with connection.cursor() as cursor:
            # Two statements: without Citus the catalog table does not exist, and a
            # statement naming it would fail before it runs.
            cursor.execute("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")
            distributed = cursor.fetchone()[0]
            if distributed:
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_dist_partition "
                    "WHERE logicalrelid = to_regclass(%s) AND partmethod = 'h')",
                    [_table("cdrs.Leg")],
                )
                distributed = cursor.fetchone()[0]
            _distributed[raw] = distributed
    return _distributed[raw]


def _kinds(cursor: Any) -> dict[str, str]:
    """Each Citus table: 'distributed', 'reference' or 'local' (in the metadata only)."""
    cursor.execute("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return {}
    cursor.execute(
        "SELECT logicalrelid::regclass::text, CASE WHEN partmethod = 'h' THEN 'distributed' "
        "WHEN repmodel = 't' THEN 'reference' ELSE 'local' END FROM pg_dist_partition"
    )
    return dict(cursor.fetchall())


def table_kinds(using: str = "default") -> dict[str, str]:
    """Every listed table and how it is laid out now (for `cluster_layout` and tests)."""
    with connections[using].cursor() as cursor:
        kinds = _kinds(cursor)
    names = [_table(label) for label in REFERENCE_TABLES]
    names += [_table(d.model) for d in DISTRIBUTED_TABLES]
    return {name: kinds.get(name, "plain") for name in names}


def _foreign_keys(cursor: Any, table: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [table],
    )
    return cursor.fetchall()


def _prepare(cursor: Any, table: str, column: str, using: str) -> None:
    """Make `table` distributable by `column`: Citus only enforces a unique constraint
    that includes the distribution column. A primary key gets the column added; another
    unique constraint becomes a plain index (the writers keep the rule, docs/scaling.md).
    Triggers are dropped: Citus does not run them on the shards."""
    q = connections[using].ops.quote_name
    cursor.execute(
        "SELECT c.conname, c.contype, array_agg(a.attname ORDER BY k.n) "
        "FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') GROUP BY 1, 2",
        [table],
    )
    for name, kind, columns in cursor.fetchall():
        if column in columns:
            continue
        cursor.execute(f"ALTER TABLE {q(table)} DROP CONSTRAINT {q(name)}")
        cols = ", ".join(q(c) for c in columns)
        if kind == "p":
            cursor.execute(
                f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} PRIMARY KEY ({q(column)}, {cols})"
            )
        else:
            cursor.execute(f"CREATE INDEX {q(name)} ON {q(table)} ({cols})")
    cursor.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
        [table],
    )
    for (trigger,) in cursor.fetchall():
        cursor.execute(f"DROP TRIGGER {q(trigger)} ON {q(table)}")


def _sequences(cursor: Any, labels: list[str]) -> list[tuple[str, int]]:
    """The sequences that give these tables' ids, with their last value (if used)."""
    found = []
    for label in labels:
        model = apps.get_model(label)
        cursor.execute(
            "SELECT s, pg_sequence_last_value(s::regclass) FROM pg_get_serial_sequence(%s, %s) s "
            "WHERE s IS NOT NULL",
            [model._meta.db_table, model._meta.pk.column],
        )
        found += [(seq, value) for seq, value in cursor.fetchall() if value is not None]
    return found


def lay_out(using: str = "default") -> list[str]:
    """Distribute and replicate the listed tables that are not yet; what was done, in words.

    One transaction: a failure leaves the store as it was. Order matters to Citus: the
    big tables' foreign keys are dropped, the big tables distributed, the small ones made
    reference tables (parents first), then the foreign keys added back.
    """
    if not has_workers(using):
        return []
    q = connections[using].ops.quote_name
    done: list[str] = []
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        # One connection per worker: Citus cannot convert tables in a transaction that
        # used several connections to a worker.
        cursor.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        kinds = _kinds(cursor)
        pending = [d for d in DISTRIBUTED_TABLES if kinds.get(_table(d.model)) != "distributed"]
        # Citus starts the id sequence of a table it makes a reference table again at 1:
        # each converted table's is set back to where it was.
        converted = [d.model for d in pending]
        converted += [t for t in REFERENCE_TABLES if kinds.get(_table(t)) != "reference"]
        sequences = _sequences(cursor, converted)
        keys: list[tuple[str, str, str]] = []
        for d in pending:
            table = _table(d.model)
            for name, definition in _foreign_keys(cursor, table):
                cursor.execute(f"ALTER TABLE {q(table)} DROP CONSTRAINT {q(name)}")
                keys.append((table, name, definition))
            _prepare(cursor, table, _column(d.model, d.column), using)
        for d in pending:
            table = _table(d.model)
            colocate = _table(d.colocate_with) if d.colocate_with else "default"
            cursor.execute(
                "SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                [table, _column(d.model, d.column), colocate],
            )
            done.append(f"{table}: distributed by {_column(d.model, d.column)}")
        if pending:
            if any(d.model == "cdrs.Leg" for d in pending):
                # Kept by the trigger dropped above: not used on the cluster.
                cursor.execute(f"TRUNCATE {q(_table('cdrs.CalledNumber'))}")
            for statement in CLUSTER_INDEXES:
                cursor.execute(statement)
        kinds = _kinds(cursor)
        for label in REFERENCE_TABLES:
            table = _table(label)
            if kinds.get(table) != "reference":
                cursor.execute("SELECT create_reference_table(%s)", [table])
                done.append(f"{table}: reference table")
        for table, name, definition in keys:
            cursor.execute(f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} {definition}")
        for sequence, value in sequences:
            cursor.execute("SELECT setval(%s::regclass, %s)", [sequence, value])
    return done


def lay_out_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver (sent once per app; connected for this app only)."""
    for line in lay_out(using):
        if kwargs.get("verbosity", 1) >= 1:
            print(f"  Citus: {line}")


def distributed_row_estimate(table: str, using: str = "default") -> int | None:
    """The planner's row estimate of a distributed table: the sum of its shards' (each
    on its worker). None when the table is not distributed or no shard was analysed."""
    if not is_distributed(using):
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT sum(greatest(result::float8, 0)), bool_or(result::float8 >= 0) "
            "FROM run_command_on_shards(%s, "
            "$$SELECT reltuples FROM pg_class WHERE oid = '%%s'::regclass$$) WHERE success",
            [table],
        )
        total, analysed = cursor.fetchone()
    return int(total) if analysed else None
