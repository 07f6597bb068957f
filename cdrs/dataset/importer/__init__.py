"""Load a dataset (docs/dataset-format.md) into the store: all of it, or nothing.

1. The main file is read whole (it holds the small objects; call volumes that do not
   fit in memory come as JSONL) and every object in it is checked: types, required
   fields, enumerations, lengths, references to objects in the file or already stored,
   the customer tree (exactly one system owner, no cycles).
2. One transaction then writes the objects and streams the legs: each batch is checked,
   then written while the next one is being checked. From the first error on, nothing
   more is written but checking goes on to the end, so that every error is reported
   (up to a limit); the transaction is then rolled back. A killed process leaves
   nothing behind for the same reason.
3. IDs, currency codes, usernames and leg uniqueids identify objects, so loading a file
   again updates what it names; a leg's cost records become exactly those of the last
   file that names it; `archived` decides which pair of tables a leg lives in, and a leg
   that changes sides is moved, keeping its id.

Writing legs, by database:
- SQLite: executemany in batches.
- PostgreSQL: COPY. Into an empty store, COPY goes straight into the leg and cost
  tables with their secondary indexes (and, without the privilege to skip foreign-key
  triggers, their foreign keys) dropped, and rebuilt at the end: building an index once
  is several times cheaper than updating it row by row. There, JSONL batches are
  parsed, checked and formatted for COPY by worker processes, one per core, so that
  all cores work. Otherwise each batch is copied into a temporary staging table and
  applied set-based (upsert legs, replace costs).

The package, stage by stage: `errors` (errors and their places), `values` (limits and
value checks), `reading` (the files), `sections` (the main file's sections: declared
once, checked, written), `tree` (the customer tree), `passwords`, `legs` (the leg checks:
fast and detailed side by side), the writers (`sqlite`, `pg_staged`, `pg_bulk`, sharing
`writing` and `pg`), and `loader` (worker processes and the writer thread).
"""

from __future__ import annotations

from cdrs.dataset.importer.errors import DatasetError
from cdrs.dataset.importer.loader import (
    BATCH_SIZE,
    BULK_MIN_LEGS,
    ERROR_LIMIT,
    ImportResult,
    Progress,
    import_dataset,
)
from cdrs.dataset.importer.processes import cores
from cdrs.dataset.importer.values import MAX_STR, TIME_MAX, TIME_MIN
from cdrs.dataset.importer.writing import database_errors

__all__ = [
    "BATCH_SIZE",
    "BULK_MIN_LEGS",
    "ERROR_LIMIT",
    "MAX_STR",
    "TIME_MAX",
    "TIME_MIN",
    "DatasetError",
    "ImportResult",
    "Progress",
    "cores",
    "database_errors",
    "import_dataset",
]
