"""A row is read from the query's columns by name, in the order COLUMNS declares."""

from __future__ import annotations

from decimal import Decimal

from cdrs.rows import COLUMN_OF, COLUMNS, COMPUTED, ROW_FIELDS, row_to_dict


def test_each_row_field_comes_from_its_own_column():
    values: dict[str, object] = {column: f"<{column}>" for column in COLUMNS}
    values.update(start=100, end=160, row_cost=Decimal("1.5"), row_cost_tax=Decimal("2.25"))
    row = row_to_dict((*[values[c] for c in COLUMNS], "the sort key"), "EUR")
    assert list(row) == list(ROW_FIELDS)
    for name in ROW_FIELDS:
        if name not in COMPUTED and name not in ("cost", "cost_including_tax"):
            assert row[name] == values[COLUMN_OF.get(name, name)], name
    assert (row["cost"], row["cost_excluding_tax"], row["cost_including_tax"]) == (1.5, 1.5, 2.25)
    assert (row["totaltime"], row["currency"]) == (60, "EUR")
