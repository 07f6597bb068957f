"""Writing legs to PostgreSQL through staging tables: for a store that holds legs already."""

# Names spliced into SQL here come from the models' _meta or are constants; values are bound
# parameters or go through COPY.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

from cdrs.dataset.importer.errors import repeated_uniqueid
from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, LEG_FIELDS, Batch
from cdrs.dataset.importer.pg import INT_FIELDS, LEG_TYPES, PgWriter


class PgStagedWriter(PgWriter):
    """Each batch is copied into temporary tables, then applied set-based: legs that
    change sides are moved (keeping their id), legs are upserted, cost records of the
    legs named are replaced."""

    method = "postgresql (staged upsert)"

    def __init__(self, connection: Any, *, replica: bool) -> None:
        super().__init__(connection, replica=replica)
        cur = self.raw.cursor()
        t = self.t
        for side in (False, True):
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {t.leg[side]})")
            self.written[side] = cur.fetchone()[0]  # "may hold a uniqueid of this import"
        # "C" like the tables' columns, so that comparing the two can use their indexes.
        text = 'text COLLATE "C"'
        cols = ", ".join(
            f"{t.q(c)} {'bigint' if f in INT_FIELDS else text}"
            for f, c in zip(LEG_FIELDS, LEG_COLUMNS, strict=True)
        )
        cur.execute(
            "DROP TABLE IF EXISTS pg_temp.enswitch_import_leg, pg_temp.enswitch_import_cost"
        )
        cur.execute(
            "CREATE TEMP TABLE enswitch_import_leg "
            f"(line bigint, id bigint, archived boolean, {cols}) ON COMMIT DROP"
        )
        cur.execute(
            "CREATE TEMP TABLE enswitch_import_cost (leg_id bigint, archived boolean, "
            f"{t.q(COST_COLUMNS[0])} bigint, {t.q(COST_COLUMNS[1])} bigint, "
            f"{t.q(COST_COLUMNS[2])} numeric, {t.q(COST_COLUMNS[3])} numeric, "
            f"{t.q(COST_COLUMNS[4])} text) ON COMMIT DROP"
        )
        self.copy_leg = (
            f"COPY enswitch_import_leg (line, id, archived, {t.leg_cols}) "
            "FROM STDIN (FORMAT BINARY)"
        )
        self.copy_cost = f"COPY enswitch_import_cost (leg_id, archived, {t.cost_cols}) FROM STDIN"
        self.upsert = {
            side: f"INSERT INTO {t.leg[side]} (id, {t.leg_cols}) "
            f"SELECT id, {t.leg_cols} FROM enswitch_import_leg "
            f"WHERE archived = {str(side).lower()} ON CONFLICT (id) DO UPDATE SET {t.leg_updates}"
            for side in (False, True)
        }
        self.insert_costs = {
            side: f"INSERT INTO {t.cost[side]} (leg_id, {t.cost_cols}) "
            f"SELECT leg_id, {t.cost_cols} FROM enswitch_import_cost "
            f"WHERE archived = {str(side).lower()}"
            for side in (False, True)
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

        if self.written[False] or self.written[True]:
            problems = self._resolve_stored(cur, batch, ids)
            if problems:
                return problems
        for side in (False, True):
            if any(flag == side for flag in flags):
                cur.execute(self.upsert[side])
                self.written[side] = True
        for side in (False, True):
            if any(flags[k] == side for k, *_ in batch.costs):
                cur.execute(self.insert_costs[side])
        self.counts.add(batch)
        return []

    def _resolve_stored(self, cur: Any, batch: Batch, ids: list[int]) -> list[str]:
        """Legs of the batch already stored: updated in place, or moved to the other
        table with their id; a leg this import already wrote is a duplicate."""
        t = self.t
        looks = [
            f"LEFT JOIN LATERAL (SELECT id FROM {t.leg[side]} WHERE uniqueid = s.uniqueid) "
            f"{alias} ON true"
            if self.written[side]
            else f"LEFT JOIN LATERAL (SELECT NULL::bigint AS id) {alias} ON true"
            for side, alias in ((False, "h"), (True, "a"))
        ]
        # LATERAL lookups: one index probe per staged leg, whatever the planner thinks of
        # the (never analyzed) temporary table.
        cur.execute(
            f"SELECT s.id, s.archived, h.id, a.id FROM enswitch_import_leg s {' '.join(looks)} "
            "WHERE h.id IS NOT NULL OR a.id IS NOT NULL"
        )
        found = cur.fetchall()
        if not found:
            return []
        index = {leg_id: k for k, leg_id in enumerate(ids)}
        problems, old, new = [], [], []
        drop_costs: dict[bool, list[int]] = {False: [], True: []}
        drop_legs: dict[bool, list[int]] = {False: [], True: []}
        for staged, side, live_id, archived_id in found:
            same, other = (archived_id, live_id) if side else (live_id, archived_id)
            if max(same or 0, other or 0) > self.floor:
                problems.append(repeated_uniqueid(batch, index[staged]))
                continue
            if other is not None:
                drop_costs[not side].append(other)
                drop_legs[not side].append(other)
            if same is not None:
                drop_costs[side].append(same)
            old.append(staged)
            new.append(same if same is not None else other)
        if problems:
            return problems
        for side in (False, True):
            if drop_costs[side]:
                cur.execute(
                    f"DELETE FROM {t.cost[side]} WHERE leg_id = ANY(%s::bigint[])",
                    (drop_costs[side],),
                )
            if drop_legs[side]:
                cur.execute(
                    f"DELETE FROM {t.leg[side]} WHERE id = ANY(%s::bigint[])", (drop_legs[side],)
                )
        for table, column in (("enswitch_import_leg", "id"), ("enswitch_import_cost", "leg_id")):
            cur.execute(
                f"UPDATE {table} s SET {column} = m.new FROM unnest(%s::bigint[], %s::bigint[]) "
                f"AS m(old, new) WHERE s.{column} = m.old",
                (old, new),
            )
        return []

    def finish(self) -> list[str]:
        self._analyze()
        return []
