"""Moving chosen legs (the admin's actions), the way `archive_cdrs` moves a time range:
under the same lock, in the same one-transaction batches (`move_picked`), with the
destination's id sequence kept above the moved ids afterwards."""

from __future__ import annotations

from django.db import connections

from cdrs.archive import DEFAULT_BATCH_SIZE, move_picked, sync_id_sequence
from cdrs.archive.locking import exclusive_lock
from cdrs.archive.moves import ARCHIVE, LIVE, Move, RunResult, Tables


def move_chosen(
    src: Tables, picked: list[tuple[int, int, str]], *, using: str = "default"
) -> RunResult:
    """Move the legs `picked` ((id, start, uniqueid), as `pick` gives them) out of `src`
    (LIVE or ARCHIVE) into the other pair of tables, with their cost records.

    Raises ArchiveLocked at once if an `archive_cdrs` run (or another move) holds the
    lock. Legs gone from `src` since they were picked are skipped.
    """
    result = RunResult()
    if not picked:
        return result
    starts = [row[1] for row in picked]
    # The move's range only has to hold the chosen legs: the ids pick them.
    low, high = min(starts), max(starts) + 1
    move = Move(src, ARCHIVE if src is LIVE else LIVE, low if src is ARCHIVE else None, high)
    batch = DEFAULT_BATCH_SIZE.get(connections[using].vendor, 10_000)
    ordered = sorted(picked, key=lambda row: (row[1], row[2]))
    with exclusive_lock(using=using):
        for at in range(0, len(ordered), batch):
            result.add(move_picked(move, ordered[at : at + batch], using=using))
        sync_id_sequence(move, using=using)
    return result
