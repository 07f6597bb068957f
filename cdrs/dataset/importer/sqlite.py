"""Writing legs to SQLite."""

from __future__ import annotations

from typing import Any

from cdrs import totals
from cdrs.archive import Tables
from cdrs.dataset.importer.errors import repeated_uniqueid
from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, Batch
from cdrs.dataset.importer.writing import (
    SIDES,
    Counts,
    StoredLegsNamed,
    batch_totals,
    by_side,
    forget_totals_sql,
    other_side,
    side_of,
)
from cdrs.models import Leg


def _statement(template: str, **names: str) -> str:
    """A statement with names (quoted by Django's quote_name) put in place of {name}: the
    SQLite counterpart of psycopg.sql, for the raw sqlite3 cursor; values stay `?`."""
    return template.format(**names)


class SqliteWriter:
    """executemany, batch by batch. A new leg takes the next id after every id in use
    in either table, so that ids stay unique across them (archiving keeps ids)."""

    method = "sqlite"
    threaded = False

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        self.raw = connection.connection
        self.leg = {side: q(side.leg._meta.db_table) for side in SIDES}
        self.cost = {side: q(side.cost._meta.db_table) for side in SIDES}
        leg_cols = ", ".join(q(c) for c in LEG_COLUMNS)
        cost_cols = ", ".join(q(c) for c in COST_COLUMNS)
        updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in LEG_COLUMNS)
        cur = self.raw.cursor()
        seq = cur.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (Leg._meta.db_table,)
        ).fetchone()
        highest = [seq[0] if seq else 0] + [
            cur.execute(_statement("SELECT max(id) FROM {leg}", leg=self.leg[side])).fetchone()[0]
            or 0
            for side in SIDES
        ]
        self.floor = max(highest)  # every id above this was written by this import
        self.next_id = self.floor + 1
        self.counts = Counts()
        self.named = StoredLegsNamed()
        self.insert_leg = {
            side: _statement(
                "INSERT INTO {leg} (id, {cols}) VALUES ({marks}) "
                "ON CONFLICT (id) DO UPDATE SET {updates}",
                leg=self.leg[side],
                cols=leg_cols,
                marks=", ".join(["?"] * (len(LEG_COLUMNS) + 1)),
                updates=updates,
            )
            for side in SIDES
        }
        self.insert_cost = {
            side: _statement(
                "INSERT INTO {cost} (leg_id, {cols}) VALUES ({marks})",
                cost=self.cost[side],
                cols=cost_cols,
                marks=", ".join(["?"] * (len(COST_COLUMNS) + 1)),
            )
            for side in SIDES
        }
        self.delete_costs = {
            side: _statement("DELETE FROM {cost} WHERE leg_id = ?", cost=self.cost[side])
            for side in SIDES
        }
        self.delete_legs = {
            side: _statement("DELETE FROM {leg} WHERE id = ?", leg=self.leg[side]) for side in SIDES
        }

    def _stored_ids(self, side: Tables, uids: list[str]) -> dict[str, int]:
        cur = self.raw.cursor()
        found: dict[str, int] = {}
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            select = _statement(
                "SELECT uniqueid, id FROM {leg} WHERE uniqueid IN ({marks})",
                leg=self.leg[side],
                marks=", ".join(["?"] * len(chunk)),
            )
            found.update(cur.execute(select, chunk))
        return found

    def write(self, batch: Batch) -> list[str]:
        uids = [row[0] for row in batch.rows]
        stored = {side: self._stored_ids(side, uids) for side in SIDES}
        problems: list[str] = []
        ids: list[int] = []
        legs = by_side()
        drop_costs = by_side()
        drop_legs = by_side()
        replaced = by_side()  # stored legs the batch names, by the side they are on now
        for k, row in enumerate(batch.rows):
            side = side_of(batch.archived[k])
            other_table = other_side(side)
            same, other = stored[side].get(row[0]), stored[other_table].get(row[0])
            stored_id = same if same is not None else other
            if stored_id is not None and (
                max(same or 0, other or 0) > self.floor or not self.named.first_time(stored_id)
            ):
                problems.append(repeated_uniqueid(batch, k))
                continue
            if other is not None:  # changes sides: leaves the other table, keeps its id
                replaced[other_table].append(other)
                drop_costs[other_table].append((other,))
                drop_legs[other_table].append((other,))
            if same is not None:
                leg_id = same
                replaced[side].append(same)
                drop_costs[side].append((same,))
            elif other is not None:
                leg_id = other
            else:
                leg_id = self.next_id
                self.next_id += 1
            ids.append(leg_id)
            legs[side].append((leg_id, *row))
        if problems:
            return problems
        cur = self.raw.cursor()
        for side in SIDES:  # the call totals: out with the legs replaced, in with the batch
            for i in range(0, len(replaced[side]), 400):
                chunk = replaced[side][i : i + 400]
                cur.execute(forget_totals_sql(side, len(chunk), "?"), chunk * 2)
        totals.apply(batch_totals(batch), cur, mark="?")
        for side in SIDES:
            cur.executemany(self.delete_costs[side], drop_costs[side])
            cur.executemany(self.delete_legs[side], drop_legs[side])
        for side in SIDES:
            cur.executemany(self.insert_leg[side], legs[side])
        costs = by_side()
        for k, *rest in batch.costs:
            costs[side_of(batch.archived[k])].append((ids[k], *rest))
        for side in SIDES:
            cur.executemany(self.insert_cost[side], costs[side])
        self.counts.add(batch)
        return []

    def finish(self) -> list[str]:
        if self.next_id - 1 > self.floor:
            # Ids given to archived legs must not be handed out again to live ones.
            cur = self.raw.cursor()
            cur.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?",
                (self.next_id - 1, Leg._meta.db_table),
            )
            if not cur.rowcount:
                cur.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                    (Leg._meta.db_table, self.next_id - 1),
                )
        return []
