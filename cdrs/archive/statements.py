"""The SQL of a batch, built from the models: names quoted by the backend, values bound.
Each step is one statement, or two."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import (
    connections,
    models,
)

from cdrs.archive.moves import ARCHIVE, FastPathDeclined, IdClash, Move
from enswitch import citus


class _Sql:
    """Quoted names for one Move on one connection."""

    def __init__(self, move: Move, connection: Any, alias: str) -> None:
        _check_twins(move.src.leg, move.dst.leg)
        _check_twins(move.src.cost, move.dst.cost)
        _check_only_costs_refer(move.src.leg, move.src.cost)
        q = connection.ops.quote_name
        self.alias = alias
        self.vendor = connection.vendor
        self.distributed = citus.is_distributed(alias)
        self.move = move
        self.src, self.dst = q(move.src.leg._meta.db_table), q(move.dst.leg._meta.db_table)
        self.src_cost = q(move.src.cost._meta.db_table)
        self.dst_cost = q(move.dst.cost._meta.db_table)
        leg_meta = move.src.leg._meta
        self.id = q(leg_meta.pk.column)
        self.start = q(leg_meta.get_field("start").column)
        self.uniqueid = q(leg_meta.get_field("uniqueid").column)
        self.leg_cols = [q(c) for c in _columns(move.src.leg)]
        cost_meta = move.src.cost._meta
        self.cost_leg = q(cost_meta.get_field("leg").column)
        # Everything but the cost's own id (fresh in the destination) and its leg link.
        self.cost_cols = [
            q(f.column) for f in cost_meta.concrete_fields if not f.primary_key and f.name != "leg"
        ]
        self.names = {
            "src": self.src,
            "dst": self.dst,
            "src_cost": self.src_cost,
            "dst_cost": self.dst_cost,
            "id": self.id,
            "start": self.start,
            "uniqueid": self.uniqueid,
            "cost_leg": self.cost_leg,
            "leg_cols": ", ".join(self.leg_cols),
            "cost_cols": ", ".join(self.cost_cols),
        }

    def statement(self, template: str, **fragments: str) -> str:
        """`template` with this move's names, quoted by the backend ({src}, {id},
        {leg_cols}, ...), and `fragments` (SQL made of them) in place; values stay %s
        parameters. The one place where the archive's SQL text is put together."""
        return template.format(**self.names, **fragments)

    def where(self, alias: str = "") -> tuple[str, list[int]]:
        col = f"{alias}.{self.start}" if alias else self.start
        parts, params = [], []
        if self.move.starts_from is not None:
            parts.append(f"{col} >= %s")
            params.append(self.move.starts_from)
        if self.move.starts_before is not None:
            parts.append(f"{col} < %s")
            params.append(self.move.starts_before)
        return (" AND ".join(parts) or "1 = 1"), params

    def in_ids(self, column: str) -> str:
        # One parameter for the whole batch: no limit on the number of bound variables.
        if self.vendor == "postgresql":
            return self.statement("{column} = ANY(%s::bigint[])", column=column)
        return self.statement("{column} IN (SELECT value FROM json_each(%s))", column=column)

    def ids_param(self, ids: list[int]) -> str:
        # As array text, not a list: the driver adapts a list element by element in
        # Python, holding the GIL the --jobs threads share; joining ints is far cheaper.
        if self.vendor == "postgresql":
            return "{" + ",".join(map(str, ids)) + "}"
        return json.dumps(ids)


def _columns(model: type[models.Model]) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def _check_twins(a: type[models.Model], b: type[models.Model]) -> None:
    if sorted(_columns(a)) != sorted(_columns(b)):
        raise ImproperlyConfigured(
            f"{a.__name__} and {b.__name__} must have the same columns to move rows between "
            f"them: {sorted(set(_columns(a)) ^ set(_columns(b)))} differ"
        )


def _check_only_costs_refer(leg: type[models.Model], cost: type[models.Model]) -> None:
    # Rows of another table pointing at a leg would be left behind, pointing at nothing.
    others = [
        rel.related_model.__name__
        for rel in leg._meta.get_fields(include_hidden=True)
        if rel.auto_created and not rel.concrete and rel.related_model is not cost
    ]
    if others:
        raise ImproperlyConfigured(
            f"{', '.join(others)} refer to {leg.__name__}: archiving does not know how to "
            "move them with the legs"
        )


# --- the steps of a batch (each one statement, or two) --------------------------------


def _select_batch(
    cur: Any, sql: _Sql, limit: int, *, after: tuple[int, str] | None
) -> list[tuple[int, int, str]]:
    """The next `limit` legs in (start, uniqueid) order, after the key `after` if given.

    (start, uniqueid) is an index on both tables, so the pick is one index range scan,
    and starting after the previous batch's last key never rescans the index entries of
    the legs already moved (dead until VACUUM).
    """
    where, params = sql.where()
    if after is not None:
        where = sql.statement("{where} AND ({start}, {uniqueid}) > (%s, %s)", where=where)
        params = [*params, *after]
    cur.execute(
        sql.statement(
            "SELECT {id}, {start}, {uniqueid} FROM {src} WHERE {where} "
            "ORDER BY {start}, {uniqueid} LIMIT %s",
            where=where,
        ),
        [*params, limit],
    )
    return cur.fetchall()


def _lock_picked(cur: Any, sql: _Sql, ids: list[int]) -> list[tuple[int, int, str]]:
    """The picked legs that still qualify, locked on PostgreSQL (SQLite: our snapshot)."""
    where, params = sql.where()
    if sql.distributed:
        # Citus runs FOR UPDATE on one shard only; an UPDATE that changes nothing takes
        # the same row locks on every shard.
        cur.execute(
            sql.statement(
                "UPDATE {src} SET {start} = {start} WHERE {picked} AND {where} "
                "RETURNING {id}, {start}, {uniqueid}",
                picked=sql.in_ids(sql.id),
                where=where,
            ),
            [sql.ids_param(ids), *params],
        )
        return sorted(cur.fetchall(), key=lambda row: (row[1], row[2]))
    lock_clause = " FOR UPDATE" if sql.vendor == "postgresql" else ""
    cur.execute(
        sql.statement(
            "SELECT {id}, {start}, {uniqueid} FROM {src} WHERE {picked} AND {where} "
            "ORDER BY {start}, {uniqueid}{lock}",
            picked=sql.in_ids(sql.id),
            where=where,
            lock=lock_clause,
        ),
        [sql.ids_param(ids), *params],
    )
    return cur.fetchall()


def _parent_locks(sql: _Sql, model: type[models.Model]) -> tuple[list[str], list[str]]:
    """CTEs that lock, FOR KEY SHARE, each parent row the `moved` rows refer to, and
    conditions that hold if every one was found.

    This is the work of PostgreSQL's per-row foreign-key triggers (when they are
    bypassed), done once per distinct parent instead of once per row.
    """
    q = connections[sql.alias].ops.quote_name
    targets: dict[tuple[str, str], list[str]] = {}
    for f in model._meta.concrete_fields:
        if f.is_relation and f.name != "leg":
            target = (f.target_field.model._meta.db_table, f.target_field.column)
            targets.setdefault(target, []).append(q(f.column))
    ctes, checks = [], []
    for n, ((table, column), fks) in enumerate(sorted(targets.items())):
        # One pass over the moved rows per parent table, its distinct values kept for
        # both the lock and the count: the moved rows are many, their parents few.
        if len(fks) == 1:
            values = sql.statement(
                "SELECT DISTINCT {fk} AS v FROM moved WHERE {fk} IS NOT NULL", fk=fks[0]
            )
        else:
            values = sql.statement(
                "SELECT DISTINCT r.v FROM moved CROSS JOIN LATERAL (VALUES {refs}) r(v) "
                "WHERE r.v IS NOT NULL",
                refs=", ".join(f"({c})" for c in fks),
            )
        ctes.append(sql.statement("parents{n} AS MATERIALIZED ({values})", n=str(n), values=values))
        ctes.append(
            sql.statement(
                "lock{n} AS (SELECT 1 FROM {table} p WHERE p.{column} IN "
                "(SELECT v FROM parents{n}) FOR KEY SHARE OF p)",
                n=str(n),
                table=q(table),
                column=q(column),
            )
        )
        checks.append(
            sql.statement(
                "(SELECT count(*) FROM lock{n}) = (SELECT count(*) FROM parents{n})", n=str(n)
            )
        )
    return ctes, checks


def _move_rows(
    cur: Any, sql: _Sql, *, model: type[models.Model], statement: str, params: list, bypass: bool
) -> int:
    """Run a `moved AS (DELETE ... RETURNING), copied AS (INSERT ...)` statement; with
    `bypass`, lock the parents too. The number of rows moved, or FastPathDeclined."""
    ctes, checks = _parent_locks(sql, model) if bypass else ([], [])
    cur.execute(
        sql.statement(
            "WITH {ctes} SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM copied), "
            "{found}",
            ctes=", ".join([statement, *ctes]),
            found=" AND ".join(checks) or "true",
        ),
        params,
    )
    deleted, inserted, parents_found = cur.fetchone()
    if inserted != deleted or not parents_found:
        raise FastPathDeclined
    return deleted


def _move_legs(cur: Any, sql: _Sql, ids: list[int], *, bypass: bool) -> int:
    """PostgreSQL: delete the legs and insert exactly the rows deleted."""
    where, params = sql.where()
    moved = _move_rows(
        cur,
        sql,
        model=sql.move.src.leg,
        statement=sql.statement(
            "moved AS (DELETE FROM {src} WHERE {picked} AND {where} RETURNING {leg_cols}), "
            "copied AS (INSERT INTO {dst} ({leg_cols}) SELECT {leg_cols} FROM moved RETURNING 1)",
            picked=sql.in_ids(sql.id),
            where=where,
        ),
        params=[sql.ids_param(ids), *params],
        bypass=bypass,
    )
    if moved != len(ids):
        raise FastPathDeclined  # a picked leg changed or went meanwhile
    return moved


def _move_costs(cur: Any, sql: _Sql, ids: list[int], *, bypass: bool) -> int:
    """PostgreSQL: delete the legs' cost records and insert exactly the rows deleted."""
    moved = _move_rows(
        cur,
        sql,
        model=sql.move.src.cost,
        statement=sql.statement(
            "moved AS (DELETE FROM {src_cost} WHERE {picked} RETURNING {cols}), "
            "copied AS (INSERT INTO {dst_cost} ({cols}) SELECT {cols} FROM moved RETURNING 1)",
            picked=sql.in_ids(sql.cost_leg),
            cols=", ".join([sql.cost_leg, *sql.cost_cols]),
        ),
        params=[sql.ids_param(ids)],
        bypass=bypass,
    )
    if bypass:
        # Without the triggers, nothing else would notice a cost record committed for one
        # of these legs after the DELETE above took its snapshot.
        cur.execute(
            sql.statement(
                "SELECT EXISTS (SELECT 1 FROM {src_cost} WHERE {picked})",
                picked=sql.in_ids(sql.cost_leg),
            ),
            [sql.ids_param(ids)],
        )
        if cur.fetchone()[0]:
            raise FastPathDeclined
    return moved


def _lock_costs(cur: Any, sql: _Sql, ids: list[int]) -> None:
    # PostgreSQL's careful path runs several statements under READ COMMITTED: locking the
    # cost records keeps them from changing between the copy and the delete.
    if sql.distributed:  # as in _lock_picked
        cur.execute(
            sql.statement(
                "UPDATE {src_cost} SET {amount} = {amount} WHERE {picked}",
                amount=connections[sql.alias].ops.quote_name("cost"),
                picked=sql.in_ids(sql.cost_leg),
            ),
            [sql.ids_param(ids)],
        )
    elif sql.vendor == "postgresql":
        cur.execute(
            sql.statement(
                "SELECT count(*) FROM (SELECT 1 FROM {src_cost} WHERE {picked} FOR UPDATE) locked",
                picked=sql.in_ids(sql.cost_leg),
            ),
            [sql.ids_param(ids)],
        )


def _check_id_clashes(cur: Any, sql: _Sql, ids: list[int]) -> None:
    cur.execute(
        sql.statement(
            "SELECT s.{id}, s.{uniqueid}, d.{uniqueid} FROM {src} s "
            "JOIN {dst} d ON d.{id} = s.{id} "
            "WHERE {picked} AND d.{uniqueid} <> s.{uniqueid} LIMIT 5",
            picked=sql.in_ids("s." + sql.id),
        ),
        [sql.ids_param(ids)],
    )
    clashes = cur.fetchall()
    if clashes:
        where = "archive" if sql.move.dst is ARCHIVE else "live tables"
        listed = "; ".join(f"id {i}: {a!r} here, {b!r} in the {where}" for i, a, b in clashes)
        raise IdClash(
            f"leg ids already used by other calls in the {where} ({listed}). A leg keeps its "
            "id when it moves, so these cannot be moved; nothing of this batch was changed. "
            "Give one of each pair a new id by hand, then run again."
        )


def _copy_legs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cur.execute(
        sql.statement(
            "INSERT INTO {dst} ({leg_cols}) SELECT {leg_cols} FROM {src} "
            "WHERE {picked} ON CONFLICT DO NOTHING",
            picked=sql.in_ids(sql.id),
        ),
        [sql.ids_param(ids)],
    )
    return cur.rowcount


def _copy_costs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    # Joined on uniqueid, so the costs of a leg the destination already had (under the
    # same id, or another one) land on that copy; a customer's or card's record the copy
    # already has wins (ON CONFLICT DO NOTHING). On a Citus cluster a leg's copy is found
    # by id as well, so the join stays on the leg's shard: ids are kept when legs move,
    # and the importer keeps a uniqueid to one id there.
    same = "d.{id} = s.{id} AND d.{uniqueid} = s.{uniqueid}" if sql.distributed else ""
    cur.execute(
        sql.statement(
            "INSERT INTO {dst_cost} ({cost_leg}, {cost_cols}) "
            "SELECT d.{id}, {src_cols} FROM {src_cost} c "
            "JOIN {src} s ON s.{id} = c.{cost_leg} "
            "JOIN {dst} d ON {same} "
            "WHERE {picked} ON CONFLICT DO NOTHING",
            same=sql.statement(same or "d.{uniqueid} = s.{uniqueid}"),
            src_cols=", ".join(f"c.{c}" for c in sql.cost_cols),
            picked=sql.in_ids("c." + sql.cost_leg),
        ),
        [sql.ids_param(ids)],
    )
    return cur.rowcount


def _delete_costs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cur.execute(
        sql.statement("DELETE FROM {src_cost} WHERE {picked}", picked=sql.in_ids(sql.cost_leg)),
        [sql.ids_param(ids)],
    )
    return cur.rowcount


def _delete_legs(cur: Any, sql: _Sql, ids: list[int]) -> int:
    cur.execute(
        sql.statement("DELETE FROM {src} WHERE {picked}", picked=sql.in_ids(sql.id)),
        [sql.ids_param(ids)],
    )
    return cur.rowcount
