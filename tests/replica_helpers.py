"""The tests' side of read replicas (scripts/replica.sh starts a primary and a standby).

With `DATABASE_REPLICA_URLS` set (the `DB=replica` part of scripts/test.sh), pytest-django's
rolled-back test transactions would never reach the standby: every database test then
commits (transactional mode, tables flushed after each test), and the test client waits,
before each request, until every standby has replayed what the primary has flushed, so
the API's reads on the standby see the test's data. Tests that build their data inside
their own `transaction.atomic()` (the hypothesis tests) read on the primary, as any
request inside a transaction on the primary does.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from enswitch import replicas

REPLICA_MODE = bool(os.environ.get("DATABASE_REPLICA_URLS"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


class ReplayWaits:
    """How many requests waited for the standby's replay, and how long in all; how many
    read legs on a standby."""

    count = 0
    seconds = 0.0
    on_standby = 0


def wait_for_replay(timeout: float = 30.0) -> None:
    """Until every standby has replayed what the primary has flushed so far."""
    if connections["default"].in_atomic_block:
        return  # the request reads on the primary
    started = time.monotonic()
    position = replicas.primary_position()
    for alias in replicas.replica_aliases():
        while not replicas.has_replayed(alias, position):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{alias} has not replayed {position} in {timeout} s")
            time.sleep(0.002)
    ReplayWaits.count += 1
    ReplayWaits.seconds += time.monotonic() - started


class ReplayedClient(Client):
    """Django's test client that lets the standbys catch up before each request."""

    def request(self, **request: Any) -> Any:
        wait_for_replay()
        with CaptureQueriesContext(connections[replicas.replica_aliases()[0]]) as standby:
            response = super().request(**request)
            if response.streaming:  # the rows are read as the answer is
                response.streaming_content = [b"".join(response.streaming_content)]
        if any("cdrs_leg" in q["sql"] for q in standby.captured_queries):
            ReplayWaits.on_standby += 1
        return response


def standby_ctl(*args: str) -> None:
    """pg_ctl on the standby of scripts/replica.sh (as `postgres` when run as root)."""
    data = os.environ["PG_REPLICA_DATA"]
    command = [f"{PG_BIN}/pg_ctl", "-D", data, *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)  # noqa: S603
