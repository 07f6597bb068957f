"""Per-customer, per-hour call counts (`CallTotals`), kept as legs are written.

A leg adds 1 to (its scustomer, its hour, its direction) and, when it has another
dcustomer, to (dcustomer, hour, direction). Every way legs are written keeps them:
- the importer: its writers call `upsert_sql` with the legs they add (and subtract the
  legs a dataset replaces); the bulk load into an empty store rebuilds them at the end;
- the admin and any ORM save or delete of a leg: the signal receivers below;
- archiving and restoring move legs between the tables and change nothing here.
`rebuild()` (the `rebuild_totals` command) recomputes them all from both leg tables.

The statements are plain SQL that PostgreSQL (Citus included) and SQLite both run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save, pre_save

from cdrs.models import ArchivedLeg, CallTotals, Leg, LegBase

HOUR = 3600
DIRECTIONS = ("in", "out", "internal")
TABLE = CallTotals._meta.db_table
COUNTS = ("inbound", "outbound", "internal")

# (customer, hour) -> [inbound, outbound, internal]
Deltas = dict[tuple[int, int], list[int]]


def contributions_sql(source: str, where: str = "TRUE") -> str:
    """(customer_id, hour, inbound, outbound, internal) of the legs of `source` (a table
    or a parenthesised query with the leg columns) that `where` selects."""
    counts = ", ".join(
        f"SUM(CASE WHEN direction = '{d}' THEN 1 ELSE 0 END) AS {c}"
        for d, c in zip(DIRECTIONS, COUNTS, strict=True)
    )
    # Integer division on both databases; start >= 0, so it is the floor. (No `%`: it
    # would clash with the drivers' placeholders.)
    hour = f"(start / {HOUR}) * {HOUR}"
    return (
        f"SELECT customer_id, hour, {counts} FROM ("  # noqa: S608 - names, not values
        f"SELECT scustomer_id AS customer_id, {hour} AS hour, direction FROM {source} l "
        f"WHERE {where} "
        f"UNION ALL SELECT dcustomer_id, {hour}, direction FROM {source} l "
        f"WHERE ({where}) AND dcustomer_id IS NOT NULL AND dcustomer_id <> scustomer_id"
        f") legs GROUP BY customer_id, hour"
    )


def upsert_sql(select: str, sign: int = 1) -> str:
    """Add (sign 1) or subtract (sign -1) the counts `select` gives to the kept ones."""
    if sign not in (1, -1):
        raise ValueError(sign)
    cols = ", ".join(COUNTS)
    updates = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in COUNTS)
    first = "" if sign > 0 else "-"
    signed = ", ".join(f"{first}s.{c}" for c in COUNTS)
    return (
        f"INSERT INTO {TABLE} (customer_id, hour, {cols}) "  # noqa: S608
        f"SELECT s.customer_id, s.hour, {signed} FROM ({select}) s "
        f"WHERE TRUE ON CONFLICT (customer_id, hour) DO UPDATE SET {updates}"
    )


def legs_sql(source: str, where: str = "TRUE", sign: int = 1) -> str:
    """The statement that adds (or subtracts) the legs `where` selects in `source`."""
    return upsert_sql(contributions_sql(source, where), sign)


def deltas_of(legs: Iterable[tuple[int, int | None, int, str]], sign: int = 1) -> Deltas:
    """The counts of (scustomer, dcustomer, start, direction) tuples."""
    found: Counter[tuple[int, int, int]] = Counter()
    for scustomer, dcustomer, start, direction in legs:
        column = DIRECTIONS.index(direction)
        hour = start - start % HOUR
        found[(scustomer, hour, column)] += sign
        if dcustomer is not None and dcustomer != scustomer:
            found[(dcustomer, hour, column)] += sign
    deltas: Deltas = {}
    for (customer, hour, column), n in found.items():
        deltas.setdefault((customer, hour), [0, 0, 0])[column] += n
    return deltas


def values_sql(n: int, mark: str = "%s") -> str:
    """The statement that adds `n` rows of (customer, hour, inbound, outbound, internal)."""
    row = f"({', '.join([mark] * 5)})"
    names = ", ".join(
        f"column{i} AS {name}" for i, name in enumerate(("customer_id", "hour", *COUNTS), start=1)
    )
    select = f"SELECT {names} FROM (VALUES {', '.join([row] * n)}) v"  # noqa: S608
    return upsert_sql(select)


def apply(deltas: Deltas, cursor: Any, mark: str = "%s", chunk: int = 150) -> None:
    """Add `deltas` through a DB-API cursor (`mark`: its placeholder)."""
    rows = [(c, h, *counts) for (c, h), counts in deltas.items() if any(counts)]
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        cursor.execute(values_sql(len(part), mark), [v for row in part for v in row])


def rebuild_sql() -> list[str]:
    """The statements that recompute every count from both leg tables."""
    both = " UNION ALL ".join(
        f"SELECT scustomer_id, dcustomer_id, start, direction FROM {m._meta.db_table}"  # noqa: S608
        for m in (Leg, ArchivedLeg)
    )
    cols = ", ".join(COUNTS)
    return [
        f"DELETE FROM {TABLE}",  # noqa: S608
        f"INSERT INTO {TABLE} (customer_id, hour, {cols}) "  # noqa: S608
        + contributions_sql(f"({both})"),
    ]


def rebuild(using: str = "default") -> int:
    """Recompute every count from both leg tables, in one transaction; the rows kept."""
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # No leg written meanwhile (reads go on): the counts are of one state.
            tables = ", ".join(m._meta.db_table for m in (Leg, ArchivedLeg))
            cursor.execute(f"LOCK TABLE {tables} IN SHARE MODE")
        for statement in rebuild_sql():
            cursor.execute(statement)
        cursor.execute(f"SELECT count(*) FROM {TABLE}")  # noqa: S608
        return cursor.fetchone()[0]


# --- the ORM (the admin, tests, shell): one leg at a time ----------------------------


def _key(leg: LegBase) -> tuple[int, int | None, int, str]:
    return (leg.scustomer_id, leg.dcustomer_id, leg.start, leg.direction)


def _before_save(sender: type[LegBase], instance: LegBase, raw: bool = False, **kw: Any) -> None:
    old = None
    if instance.pk is not None and not raw:
        old = (
            sender.objects.using(kw.get("using") or "default")
            .filter(pk=instance.pk)
            .values_list("scustomer_id", "dcustomer_id", "start", "direction")
            .first()
        )
    instance._totals_before = old


def _after_save(sender: type[LegBase], instance: LegBase, raw: bool = False, **kw: Any) -> None:
    if raw:
        return
    old = getattr(instance, "_totals_before", None)
    deltas = deltas_of([_key(instance)])
    if old is not None:
        for key, counts in deltas_of([old], sign=-1).items():
            mine = deltas.setdefault(key, [0, 0, 0])
            deltas[key] = [a + b for a, b in zip(mine, counts, strict=True)]
    with connections[kw.get("using") or "default"].cursor() as cursor:
        apply(deltas, cursor)


def _after_delete(sender: type[LegBase], instance: LegBase, **kw: Any) -> None:
    with connections[kw.get("using") or "default"].cursor() as cursor:
        apply(deltas_of([_key(instance)], sign=-1), cursor)


for _model in (Leg, ArchivedLeg):
    pre_save.connect(_before_save, sender=_model, dispatch_uid=f"totals-pre-{_model.__name__}")
    post_save.connect(_after_save, sender=_model, dispatch_uid=f"totals-post-{_model.__name__}")
    post_delete.connect(_after_delete, sender=_model, dispatch_uid=f"totals-del-{_model.__name__}")
