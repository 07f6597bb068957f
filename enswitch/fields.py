"""Model fields shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import models

# The limits of the contract, for the API's parameters and the dataset's values alike:
# integers are signed 64-bit, strings at most 255 code points (the text columns' size).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_STRING = 255


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
