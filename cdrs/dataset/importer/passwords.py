"""Password hashing for the users of the main file."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from django.contrib.auth.hashers import check_password, make_password

from cdrs.dataset.importer.processes import quiet_worker
from cdrs.dataset.importer.sections import Item
from customers.models import (
    User,
)


def _hash_one(job: tuple[str, str | None]) -> str:
    password, stored = job
    # Keep a stored hash that already verifies: loading a file twice changes nothing.
    if stored and check_password(password, stored):
        return stored
    return make_password(password)


def hash_passwords(users: list[Item]) -> dict[str, str]:
    """Hashing is deliberately slow (PBKDF2); many users are
    hashed by a pool of processes (threads would share one core: hashing holds the GIL)."""
    names = [u.values["username"] for u in users]
    stored: dict[str, str] = {}
    for i in range(0, len(names), 500):
        chunk = names[i : i + 500]
        stored.update(User.objects.filter(username__in=chunk).values_list("username", "password"))
    jobs = [(u.values["password"], stored.get(u.values["username"])) for u in users]
    if not jobs:
        return {}
    started = time.monotonic()
    hashes = [_hash_one(jobs[0])]
    rest = jobs[1:]
    workers = min(os.cpu_count() or 1, len(rest))
    if workers > 1 and (time.monotonic() - started) * len(rest) > 1.0:
        # fork: the workers inherit the settings (PASSWORD_HASHERS) as they are now.
        # They leave through os._exit, so the database connection they also inherit is
        # never closed or used by them.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=quiet_worker
        ) as pool:
            hashes += pool.map(_hash_one, rest, chunksize=max(1, len(rest) // (workers * 4)))
    else:
        hashes += [_hash_one(job) for job in rest]
    return dict(zip(names, hashes, strict=True))
