"""Model fields shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import models


class CodePointCharField(models.CharField):
    """A CharField that compares and sorts by Unicode code point on every database.

    The contract orders strings by code point ("10" < "9", "B" < "a") whatever the
    database's locale. SQLite's default BINARY collation already does (UTF-8 byte order
    is code point order); on PostgreSQL the column gets the "C" collation, so ORDER BY
    and LIKE 'prefix%' use plain btree indexes and never depend on how `initdb` was run.
    The collation is chosen per connection, so migrations stay database-neutral.
    """

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            params["collation"] = "C"
        return params
