"""Worker processes: how many cores, and how a forked worker handles signals."""

from __future__ import annotations

import os
import signal


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def quiet_worker() -> None:
    """In forked workers: the parent handles SIGINT and SIGTERM and stops the workers
    (Pool.terminate sends them SIGTERM, which must end them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
