"""Q1 authenticated by a token against the same Q1 authenticated by a password.

    .venv/bin/python bench/token_overhead.py                       # SQLite, in a temp dir
    DATABASE_URL=postgres://... .venv/bin/python bench/token_overhead.py   # an empty database

Builds bench/request_overhead.py's store (40 customers, 20,000 legs) with Django's
production password hasher (PBKDF2), then sends Q1 (one customer's day, limit 100)
through Django's test client `--requests` times in each of three ways, interleaved
(one of each in turn, so a busy machine disturbs all three alike):

- `password, cached`: the password with every request, its digest cached (a client
  that calls more often than ENSWITCH_AUTH_CACHE_SECONDS, in one process);
- `password, hashed`: the password, its digest not cached (the first request of each
  server process, or after ENSWITCH_AUTH_CACHE_SECONDS, pays the hash);
- `token`: `auth_token` from user/login (token=1) instead of the credentials.

It prints, per way, the median and mean wall time and the mean CPU time of this
process, in milliseconds per request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="enswitch-token-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'db.sqlite3'}")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    os.environ["DJANGO_SETTINGS_MODULE"] = "enswitch.settings"
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["ENSWITCH_AUTH_THROTTLE"] = "1"
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import caches
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from bench.request_overhead import build_store, scenario

    setup_test_environment()
    build_store(work)
    q1 = scenario()["Q1"]
    client = Client()

    def ask(path: str, params: dict[str, str]) -> bytes:
        response = client.get(path, params)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.startswith(b'{"responses":[{"code":"200"'), body[:300]
        return body

    login = {k: q1[k] for k in ("auth_username", "auth_password")}
    token = client.get("/api/json/user/login/", {**login, "token": "1"}).json()["data"][
        "auth_token"
    ]
    by_token = {k: v for k, v in q1.items() if k not in login} | {"auth_token": token}
    ways = {
        "password, cached": (q1, False),
        "password, hashed": (q1, True),
        "token": (by_token, False),
    }
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for params, _ in ways.values():
        ask("/api/json/cdrs/list/", params)
    for _ in range(args.requests):
        for name, (params, forget) in ways.items():
            if forget:  # the verified credentials' digests (this process's cache)
                caches["default"].clear()
            started, started_cpu = time.perf_counter(), time.process_time()
            ask("/api/json/cdrs/list/", params)
            wall[name].append((time.perf_counter() - started) * 1000)
            cpu[name].append((time.process_time() - started_cpu) * 1000)
    hasher = settings.PASSWORD_HASHERS[0].rsplit(".", 1)[1]
    print(f"{connection.vendor}, {hasher}, Q1, {args.requests} requests each, ms per request:")
    for name in ways:
        median, mean = statistics.median(wall[name]), statistics.fmean(wall[name])
        cpu_mean = statistics.fmean(cpu[name])
        print(f"  {name:17} wall median {median:8.3f} mean {mean:8.3f}  CPU mean {cpu_mean:8.3f}")


if __name__ == "__main__":
    main()
