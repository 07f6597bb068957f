"""Writing legs to SQLite."""

# Names spliced into SQL here come from the models' _meta or are constants; values are bound
# parameters or go through COPY.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

from cdrs.dataset.importer.errors import repeated_uniqueid
from cdrs.dataset.importer.legs import COST_COLUMNS, LEG_COLUMNS, Batch
from cdrs.dataset.importer.writing import Counts, QuotedTables
from cdrs.models import Leg


class SqliteWriter:
    """executemany, batch by batch. A new leg takes the next id after every id in use
    in either table, so that ids stay unique across them (archiving keeps ids)."""

    method = "sqlite"
    threaded = False

    def __init__(self, connection: Any) -> None:
        self.t = QuotedTables(connection)
        self.raw = connection.connection
        cur = self.raw.cursor()
        seq = cur.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (Leg._meta.db_table,)
        ).fetchone()
        highest = [seq[0] if seq else 0] + [
            cur.execute(f"SELECT max(id) FROM {self.t.leg[side]}").fetchone()[0] or 0
            for side in (False, True)
        ]
        self.floor = max(highest)  # every id above this was written by this import
        self.next_id = self.floor + 1
        self.counts = Counts()
        placeholders = ", ".join(["?"] * (len(LEG_COLUMNS) + 1))
        self.insert_leg = {
            side: f"INSERT INTO {self.t.leg[side]} (id, {self.t.leg_cols}) VALUES ({placeholders}) "
            f"ON CONFLICT (id) DO UPDATE SET {self.t.leg_updates}"
            for side in (False, True)
        }
        self.insert_cost = {
            side: f"INSERT INTO {self.t.cost[side]} (leg_id, {self.t.cost_cols}) "
            f"VALUES ({', '.join(['?'] * (len(COST_COLUMNS) + 1))})"
            for side in (False, True)
        }

    def _stored_ids(self, side: bool, uids: list[str]) -> dict[str, int]:
        cur = self.raw.cursor()
        found: dict[str, int] = {}
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            marks = ", ".join(["?"] * len(chunk))
            found.update(
                cur.execute(
                    f"SELECT uniqueid, id FROM {self.t.leg[side]} WHERE uniqueid IN ({marks})",
                    chunk,
                )
            )
        return found

    def write(self, batch: Batch) -> list[str]:
        uids = [row[0] for row in batch.rows]
        stored = {side: self._stored_ids(side, uids) for side in (False, True)}
        problems: list[str] = []
        ids: list[int] = []
        legs: dict[bool, list[tuple[Any, ...]]] = {False: [], True: []}
        drop_costs: dict[bool, list[tuple[int]]] = {False: [], True: []}
        drop_legs: dict[bool, list[tuple[int]]] = {False: [], True: []}
        for k, row in enumerate(batch.rows):
            side = batch.archived[k]
            same, other = stored[side].get(row[0]), stored[not side].get(row[0])
            if max(same or 0, other or 0) > self.floor:
                problems.append(repeated_uniqueid(batch, k))
                continue
            if other is not None:  # changes sides: leaves the other table, keeps its id
                drop_costs[not side].append((other,))
                drop_legs[not side].append((other,))
            if same is not None:
                leg_id = same
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
        for side in (False, True):
            cur.executemany(f"DELETE FROM {self.t.cost[side]} WHERE leg_id = ?", drop_costs[side])
            cur.executemany(f"DELETE FROM {self.t.leg[side]} WHERE id = ?", drop_legs[side])
        for side in (False, True):
            cur.executemany(self.insert_leg[side], legs[side])
        for side in (False, True):
            cur.executemany(
                self.insert_cost[side],
                [(ids[k], *rest) for k, *rest in batch.costs if batch.archived[k] == side],
            )
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
