"""Writing legs to PostgreSQL through staging tables: for a store that holds legs already."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from cdrs import totals
from cdrs.archive import ARCHIVE, LIVE
from cdrs.dataset.importer.errors import repeated_uniqueid
from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, LEG_FIELDS, Batch
from cdrs.dataset.importer.pg import INT_FIELDS, LEG_TYPES, PgWriter
from cdrs.dataset.importer.writing import SIDES, by_side, other_side, side_of

_STAGED_LEG = sql.Identifier("enswitch_import_leg")
_STAGED_COST = sql.Identifier("enswitch_import_cost")


class PgStagedWriter(PgWriter):
    """Each batch is copied into temporary tables, then applied set-based: legs that
    change sides are moved (keeping their id), legs are upserted, cost records of the
    legs named are replaced."""

    method = "postgresql (staged upsert)"

    def __init__(self, connection: Any, *, replica: bool) -> None:
        super().__init__(connection, replica=replica)
        cur = self.raw.cursor()
        t = self.t
        for side in SIDES:
            cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(t.leg[side]))
            self.written[side] = cur.fetchone()[0]  # "may hold a uniqueid of this import"
        # "C" like the tables' columns, so that comparing the two can use their indexes.
        text = sql.SQL('text COLLATE "C"')
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                sql.Identifier(c), sql.SQL("bigint") if f in INT_FIELDS else text
            )
            for f, c in zip(LEG_FIELDS, LEG_COLUMNS, strict=True)
        )
        cost_types = ("bigint", "bigint", "numeric", "numeric", "text")
        cost_cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind))
            for c, kind in zip(COST_COLUMNS, cost_types, strict=True)
        )
        cur.execute(
            "DROP TABLE IF EXISTS pg_temp.enswitch_import_leg, pg_temp.enswitch_import_cost"
        )
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (line bigint, id bigint, archived boolean, {}) ON COMMIT DROP"
            ).format(_STAGED_LEG, cols)
        )
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (leg_id bigint, archived boolean, {}) ON COMMIT DROP"
            ).format(_STAGED_COST, cost_cols)
        )
        self.copy_leg = sql.SQL(
            "COPY {} (line, id, archived, {}) FROM STDIN (FORMAT BINARY)"
        ).format(_STAGED_LEG, t.leg_cols)
        self.copy_cost = sql.SQL("COPY {} (leg_id, archived, {}) FROM STDIN").format(
            _STAGED_COST, t.cost_cols
        )
        self.upsert = {
            side: sql.SQL(
                "INSERT INTO {leg} (id, {cols}) SELECT id, {cols} FROM {staged} "
                "WHERE archived = {archived} ON CONFLICT (id) DO UPDATE SET {updates}"
            ).format(
                leg=t.leg[side],
                cols=t.leg_cols,
                staged=_STAGED_LEG,
                archived=sql.Literal(side == ARCHIVE),
                updates=t.leg_updates,
            )
            for side in SIDES
        }
        self.insert_costs = {
            side: sql.SQL(
                "INSERT INTO {cost} (leg_id, {cols}) SELECT leg_id, {cols} FROM {staged} "
                "WHERE archived = {archived}"
            ).format(
                cost=t.cost[side],
                cols=t.cost_cols,
                staged=_STAGED_COST,
                archived=sql.Literal(side == ARCHIVE),
            )
            for side in SIDES
        }

    def write(self, batch: Batch) -> list[str]:
        cur = self.raw.cursor()
        n = len(batch.rows)
        cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (self.seq, n))
        ids = [i for (i,) in cur.fetchall()]
        cur.execute("TRUNCATE enswitch_import_leg, enswitch_import_cost")
        lines, flags = batch.lines, batch.archived
        with cur.copy(self.copy_leg) as copy:
            copy.set_types(["int8", "int8", "bool", *LEG_TYPES])
            for k, row in enumerate(batch.rows):
                copy.write_row((lines[k], ids[k], flags[k], *row))
        with cur.copy(self.copy_cost) as copy:
            for k, *rest in batch.costs:
                copy.write_row((ids[k], flags[k], *rest))

        if self.written[LIVE] or self.written[ARCHIVE]:
            problems = self._resolve_stored(cur, batch, ids)
            if problems:
                return problems
        for side in SIDES:
            if any(side_of(flag) == side for flag in flags):
                cur.execute(self.upsert[side])
                self.written[side] = True
        for side in SIDES:
            if any(side_of(flags[k]) == side for k, *_ in batch.costs):
                cur.execute(self.insert_costs[side])
        cur.execute(totals.legs_sql(_STAGED_LEG.as_string(self.raw)))
        self.counts.add(batch)
        return []

    def _resolve_stored(self, cur: Any, batch: Batch, ids: list[int]) -> list[str]:
        """Legs of the batch already stored: updated in place, or moved to the other
        table with their id; a leg this import already wrote is a duplicate."""
        if self.distributed:
            found = self._stored_on_cluster(cur, batch, ids)
        else:
            found = self._stored(cur)
        if not found:
            return []
        return self._resolve(cur, batch, ids, found)

    def _stored_on_cluster(self, cur: Any, batch: Batch, ids: list[int]) -> list[tuple]:
        """As _stored, by uniqueid lookups on the shards (the staged table is local to
        the coordinator, and Citus does not join it LATERAL with distributed tables)."""
        uids = [row[0] for row in batch.rows]
        stored = by_side(dict)
        for side in SIDES:
            if self.written[side]:
                cur.execute(
                    sql.SQL("SELECT uniqueid, id FROM {} WHERE uniqueid = ANY(%s::text[])").format(
                        self.t.leg[side]
                    ),
                    (uids,),
                )
                stored[side] = dict(cur.fetchall())
        return [
            (ids[k], batch.archived[k], stored[LIVE].get(uid), stored[ARCHIVE].get(uid))
            for k, uid in enumerate(uids)
            if uid in stored[LIVE] or uid in stored[ARCHIVE]
        ]

    def _stored(self, cur: Any) -> list[tuple]:
        """Staged legs already stored: (staged id, archived, live id, archived id)."""
        t = self.t
        looks = [
            sql.SQL(
                "LEFT JOIN LATERAL (SELECT id FROM {} WHERE uniqueid = s.uniqueid) {} ON true"
            ).format(t.leg[side], sql.Identifier(alias))
            if self.written[side]
            else sql.SQL("LEFT JOIN LATERAL (SELECT NULL::bigint AS id) {} ON true").format(
                sql.Identifier(alias)
            )
            for side, alias in ((LIVE, "h"), (ARCHIVE, "a"))
        ]
        # LATERAL lookups: one index probe per staged leg, whatever the planner thinks of
        # the (never analyzed) temporary table.
        cur.execute(
            sql.SQL(
                "SELECT s.id, s.archived, h.id, a.id FROM {} s {} "
                "WHERE h.id IS NOT NULL OR a.id IS NOT NULL"
            ).format(_STAGED_LEG, sql.SQL(" ").join(looks))
        )
        return cur.fetchall()

    def _resolve(self, cur: Any, batch: Batch, ids: list[int], found: list[tuple]) -> list[str]:
        t = self.t
        index = {leg_id: k for k, leg_id in enumerate(ids)}
        problems, old, new = [], [], []
        drop_costs = by_side()
        drop_legs = by_side()
        for staged, archived, live_id, archived_id in found:
            side = side_of(archived)
            same, other = (archived_id, live_id) if archived else (live_id, archived_id)
            stored_id = same if same is not None else other
            if max(same or 0, other or 0) > self.floor or not self.named.first_time(stored_id):
                problems.append(repeated_uniqueid(batch, index[staged]))
                continue
            if other is not None:
                drop_costs[other_side(side)].append(other)
                drop_legs[other_side(side)].append(other)
            if same is not None:
                drop_costs[side].append(same)
            old.append(staged)
            new.append(same if same is not None else other)
        if problems:
            return problems
        for side in SIDES:  # the call totals: the legs replaced count no more
            if self.written[side]:
                table = side.leg._meta.db_table
                where = "l.id = ANY(%s::bigint[])"
                cur.execute(totals.legs_sql(table, where, sign=-1), (new, new))
        for side in SIDES:
            if drop_costs[side]:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE leg_id = ANY(%s::bigint[])").format(t.cost[side]),
                    (drop_costs[side],),
                )
            if drop_legs[side]:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(t.leg[side]),
                    (drop_legs[side],),
                )
        for table, column in ((_STAGED_LEG, "id"), (_STAGED_COST, "leg_id")):
            cur.execute(
                sql.SQL(
                    "UPDATE {table} s SET {column} = m.new "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS m(old, new) "
                    "WHERE s.{column} = m.old"
                ).format(table=table, column=sql.Identifier(column)),
                (old, new),
            )
        return []

    def finish(self) -> list[str]:
        self._analyze()
        return []
