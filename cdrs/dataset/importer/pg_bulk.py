"""Writing legs to an empty PostgreSQL store: COPY straight into the tables."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from cdrs import totals
from cdrs.archive import Tables
from cdrs.dataset.importer.errors import repeated_uniqueid
from cdrs.dataset.importer.legs import Batch
from cdrs.dataset.importer.pg import LEG_COPY_TYPES, LEG_TABLES, PgWriter, identifiers
from cdrs.dataset.importer.writing import SIDES, batch_totals, by_side, other_side, side_of


@dataclass(frozen=True)
class _Ddl:
    drop: sql.Composed
    create: str  # as PostgreSQL describes the index or constraint


class PgBulkWriter(PgWriter):
    """Into an empty store: COPY straight into the leg and cost tables, with their
    secondary indexes dropped and built again at the end (several times cheaper than
    maintaining them row by row). Taking the tables' ACCESS EXCLUSIVE lock is what
    allows it; they were empty, so readers only wait, they lose nothing.

    The unique constraints on uniqueid stay: a uniqueid given twice is refused as it
    arrives, and each batch is looked up in the other table's index. For legs in time
    order (uniqueids growing) they cost little, and the database has time to spare
    while this process reads and checks the next batch. On a Citus cluster (no unique
    constraint on uniqueid) this process keeps a hash of every uniqueid written, and
    only a batch with a hash met before is looked up in the tables.

    The call totals are counted here from the legs written (cdrs/totals.py `deltas_of`)
    and copied in at the end, or whenever TOTALS_HELD customer-hours are held.

    Without the privilege to skip foreign-key triggers, the tables' foreign keys are
    dropped too and added again at the end (one validating join each, instead of a
    trigger per row)."""

    method = "postgresql (bulk COPY, indexes rebuilt)"

    def __init__(self, connection: Any, *, replica: bool) -> None:
        super().__init__(connection, replica=replica)
        self.next_id = self.floor + 1
        self.span: dict[Tables, _Span] = by_side(lambda: None)  # uniqueids written
        self.deltas: totals.Deltas = {}  # call totals of legs written, not yet flushed
        self.totals_upto: int | None = None  # the latest hour of the totals written
        self.seen: set[int] = set()  # cluster: uid_hash() of each uniqueid written
        cur = self.raw.cursor()
        t = self.t
        names = [m._meta.db_table for m in LEG_TABLES]
        cur.execute(
            "SELECT n.nspname, x.relname, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = x.relnamespace "
            "WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
            "AND c.conrelid = i.indrelid) ORDER BY 2",
            (names,),
        )
        self.ddl = [
            _Ddl(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, index)), indexdef)
            for schema, index, indexdef in cur.fetchall()
            # On the cluster, with the workers' foreign-key checks pending (no replica
            # mode), no index may be built in this transaction.
            if not (self.distributed and not replica)
        ]
        # (On a Citus cluster the foreign keys stay: the workers' deferred checks would
        # hold up the ALTER TABLEs.)
        if not replica and not self.distributed:
            cur.execute(
                "SELECT c.conname, pg_get_constraintdef(c.oid), n.nspname, r.relname "
                "FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
                "JOIN pg_namespace n ON n.oid = r.relnamespace "
                "WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype = 'f' ORDER BY 1",
                (names,),
            )
            for conname, condef, schema, table in cur.fetchall():
                where = (sql.Identifier(schema, table), sql.Identifier(conname))
                add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(*where)
                self.ddl.append(
                    _Ddl(
                        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(*where),
                        add.as_string(self.raw) + condef,
                    )
                )
            # A table with deferred foreign-key checks pending (the objects this import
            # just wrote) cannot be altered: run those checks now.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for ddl in self.ddl:
            cur.execute(ddl.drop)
        self.copy_leg = {
            side: sql.SQL("COPY {} (id, {}) FROM STDIN (FORMAT BINARY)").format(
                t.leg[side], t.leg_cols
            )
            for side in SIDES
        }
        self.copy_cost = {
            side: sql.SQL("COPY {} (leg_id, {}) FROM STDIN").format(t.cost[side], t.cost_cols)
            for side in SIDES
        }
        # The batch's legs, found by their id range, looked up in the other table.
        self.across = {
            side: sql.SQL(
                "SELECT l.uniqueid FROM {} l JOIN {} o "
                "ON o.uniqueid = l.uniqueid WHERE l.id BETWEEN %s AND %s"
            ).format(t.leg[side], t.leg[other_side(side)])
            for side in SIDES
        }

        self.batch_uids = sql.SQL(
            "SELECT uniqueid FROM {} WHERE id BETWEEN %s AND %s "
            "UNION ALL SELECT uniqueid FROM {} WHERE id BETWEEN %s AND %s"
        ).format(*(t.leg[side] for side in SIDES))
        self.earlier = {
            side: sql.SQL(
                "SELECT uniqueid FROM {} WHERE uniqueid = ANY(%s::text[]) "
                "AND id NOT BETWEEN %s AND %s"
            ).format(t.leg[side])
            for side in SIDES
        }

    def reserve(self, n: int) -> int:
        """The first of `n` ids for a batch: new legs are numbered here, not by the
        sequence (set once at the end), so that checked batches arrive formatted."""
        first = self.next_id
        self.next_id += n
        return first

    def write(self, batch: Batch) -> list[str]:
        first = self.reserve(len(batch.rows))
        found = self.write_payloads(
            bulk_payloads(batch, first, self.raw), first, self.next_id - 1, uid_hashes(batch)
        )
        if found is not None:
            return repeated_legs(batch, found)
        self.counts.add(batch)
        self.add_totals(batch_totals(batch))
        return []

    def add_totals(self, deltas: totals.Deltas) -> None:
        """Count a written batch's legs in the call totals; held here up to a bound."""
        add_deltas(self.deltas, deltas)
        if len(self.deltas) >= TOTALS_HELD:
            self._flush_totals()

    def _flush_totals(self) -> None:
        """The counts held so far into the table. The store was empty, so a customer's
        hour after every hour written before is new: copied straight in; the others
        (few, for legs in time order) are added through a temporary table."""
        cur = self.raw.cursor()
        table = sql.Identifier(totals.TABLE)
        if self.totals_upto is None:
            cur.execute(sql.SQL("DELETE FROM {}").format(table))
        upto = self.totals_upto
        new = [(c, h, *n) for (c, h), n in self.deltas.items() if upto is None or h > upto]
        again = [(c, h, *n) for (c, h), n in self.deltas.items() if upto is not None and h <= upto]
        self.totals_upto = max([upto or 0, *(row[1] for row in new)])
        self.deltas = {}
        if again:
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (customer_id bigint, hour bigint, "
                    "inbound bigint, outbound bigint, internal bigint) ON COMMIT DROP"
                ).format(_STAGED_TOTALS)
            )
            cur.execute(sql.SQL("TRUNCATE {}").format(_STAGED_TOTALS))
        for target, rows in ((table, new), (_STAGED_TOTALS, again)):
            if rows:
                copy_rows = sql.SQL("COPY {} (customer_id, hour, {}) FROM STDIN").format(
                    target, identifiers(totals.COUNTS)
                )
                with cur.copy(copy_rows) as copy:
                    for row in rows:
                        copy.write_row(row)
        if again:
            select = sql.SQL("SELECT customer_id, hour, {} FROM {}").format(
                identifiers(totals.COUNTS), _STAGED_TOTALS
            )
            cur.execute(totals.upsert_sql(select.as_string(self.raw)))

    def write_payloads(
        self, payloads: Payloads, first: int, last: int, hashes: list[int]
    ) -> set[str] | None:
        """COPY a batch's legs (ids first..last) and costs; `hashes`: hash() of their
        uniqueids. Returns None, or the uniqueids this import had already given (nothing
        more must be written then)."""
        import psycopg

        cur = self.raw.cursor()
        for side in SIDES:
            legs, costs, span = payloads[side]
            if legs:
                try:
                    with cur.copy(self.copy_leg[side]) as copy:
                        copy.write(legs)
                except psycopg.errors.UniqueViolation as exc:
                    found = re.search(r"\)=\((.*)\) already exists", exc.diag.message_detail or "")
                    return {found.group(1)} if found else set()
                self.written[side] = True
                self.span[side] = _widen(self.span[side], span)
            if costs:
                with cur.copy(self.copy_cost[side]) as copy:
                    copy.write(costs)
        if self.distributed:
            return self._repeated(cur, first, last, hashes)
        # A uniqueid of the batch may already be in the other table only if the batch's
        # uniqueids and the other table's overlap: rarely so for legs in time order.
        looks = [side for side in SIDES if _overlap(payloads[side][2], self.span[other_side(side)])]
        if looks:
            # Plans fixed by hand: the statistics still describe empty tables, and a
            # sequential scan here would read the whole table for every batch.
            for setting in _PLAN_BY_HAND:
                cur.execute(sql.SQL("SET LOCAL {} = off").format(sql.Identifier(setting)))
            twice: set[str] = set()
            for side in looks:
                cur.execute(self.across[side], (first, last))
                twice.update(uid for (uid,) in cur.fetchall())
            for setting in _PLAN_BY_HAND:
                cur.execute(sql.SQL("SET LOCAL {} = DEFAULT").format(sql.Identifier(setting)))
            if twice:
                return twice
        return None

    def _repeated(self, cur: Any, first: int, last: int, hashes: list[int]) -> set[str] | None:
        """Cluster: the uniqueids of legs first..last that an earlier batch gave, in
        either table (a batch's own repeats are refused before it is written). Only the
        legs whose hash an earlier batch had are looked up (rare but for true repeats)."""
        mine = set(hashes)
        met = mine & self.seen
        self.seen |= mine
        if not met:
            return None
        cur.execute(self.batch_uids, (first, last, first, last))
        uids = [uid for (uid,) in cur.fetchall() if uid_hash(uid) in met]
        twice: set[str] = set()
        for side in SIDES:
            if self.written[side]:
                cur.execute(self.earlier[side], (uids, first, last))
                twice.update(uid for (uid,) in cur.fetchall())
        return twice or None

    def finish(self) -> list[str]:
        cur = self.raw.cursor()
        if self.next_id - 1 > self.floor:
            cur.execute("SELECT setval(%s::regclass, %s)", (self.seq, self.next_id - 1))
        # Sorting is most of an index build: give it memory (this transaction only).
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        for ddl in self.ddl:
            cur.execute(ddl.create)
        # The store was empty: the call totals are those of this import's legs.
        self._flush_totals()
        self._analyze()
        return []


# Customer-hours of call totals held in memory before they are written (some 300 bytes
# each); a large import flushes them several times.
TOTALS_HELD = 250_000
_STAGED_TOTALS = sql.Identifier("enswitch_import_totals")

_PLAN_BY_HAND = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")

# Per side (LIVE, ARCHIVE): the legs' COPY data (binary), the costs' (text), and the
# smallest and largest uniqueid of the legs.
_Span = tuple[str, str] | None
Payloads = dict[Tables, tuple[bytes | None, bytes | None, _Span]]


def bulk_payloads(batch: Batch, first: int, raw: Any) -> Payloads:
    """A checked batch as COPY data for the tables themselves, legs numbered from
    `first`. Made by psycopg's Copy writing into memory (a FileWriter), so that it can be
    done in a worker process and sent as bytes: nothing goes to the server, `raw` (the
    psycopg connection) only lends its adaptation context."""
    from psycopg.copy import Copy, FileWriter

    cur = raw.cursor()
    flags = batch.archived
    payloads: Payloads = {}
    for side in SIDES:
        legs = costs = span = None
        rows = [(first + k, *row) for k, row in enumerate(batch.rows) if side_of(flags[k]) == side]
        if rows:
            uids = [row[1] for row in rows]
            span = (min(uids), max(uids))
            data = io.BytesIO()
            with Copy(cur, binary=True, writer=FileWriter(data)) as copy:
                copy.set_types(LEG_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            legs = data.getvalue()
        cost_rows = [(first + k, *rest) for k, *rest in batch.costs if side_of(flags[k]) == side]
        if cost_rows:
            data = io.BytesIO()
            with Copy(cur, binary=False, writer=FileWriter(data)) as copy:
                for row in cost_rows:
                    copy.write_row(row)
            costs = data.getvalue()
        payloads[side] = (legs, costs, span)
    return payloads


def _widen(span: _Span, more: _Span) -> _Span:
    if span is None or more is None:
        return span or more
    return (min(span[0], more[0]), max(span[1], more[1]))


def _overlap(a: _Span, b: _Span) -> bool:
    # Python orders strings by code point, as the "C" collation of the columns does.
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def uid_hash(uid: str) -> int:
    """64 bits of a uniqueid: the same in the worker processes (forked, so they share
    this process's hash seed). Two uniqueids may share one: a hash met before is only a
    reason to look the uniqueid up."""
    return hash(uid)


def uid_hashes(batch: Batch) -> list[int]:
    return [uid_hash(row[0]) for row in batch.rows]


def add_deltas(into: totals.Deltas, more: totals.Deltas) -> None:
    for key, counts in more.items():
        mine = into.get(key)
        if mine is None:
            into[key] = list(counts)
        else:
            mine[0] += counts[0]
            mine[1] += counts[1]
            mine[2] += counts[2]


def repeated_legs(batch: Batch, uids: set[str]) -> list[str]:
    """Messages for legs of the batch whose uniqueid this import already gave."""
    found = [repeated_uniqueid(batch, k) for k, row in enumerate(batch.rows) if row[0] in uids]
    return found or ["cdrs: a uniqueid appears more than once in this import"]
