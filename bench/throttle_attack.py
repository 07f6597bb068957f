"""The login-throttle attacks of issue 11 (points 1-3), against a real gunicorn on loopback.

    .venv/bin/python bench/throttle_attack.py

Makes a throwaway SQLite store with the demo data (users `owner`, `owner-viewer`...,
password `secret`), serves it with gunicorn.conf.py and default settings (4 workers,
real PBKDF2 hashes), and runs, each from its own 127.0.0.x source addresses:

1. Flood: 5 wrong passwords for `owner`, then 2,000 cheap failed logins (junk
   usernames, empty passwords) from 20 other addresses, then 5 more wrong passwords:
   the count must have survived (the 10th failure locks the pair), and the lock must
   survive a second flood.
2. Burst: 40 simultaneous wrong passwords for `owner-viewer` from one address: at most
   10 password checks, the rest refused at once with `auth_throttled`.
3. Lock-out: the locked pairs do not lock the users out from other addresses; 100
   failures for one username spread over 10 addresses reach the per-username ceiling.

Every request goes to 127.0.0.1..127.0.0.255 (Linux routes all of 127/8 to loopback);
the counts are fixed, so the run is bounded (about a minute). Exit status 0 when every
expectation holds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback import PASSWORD, Gunicorn, Store, api_get, envelope_key  # noqa: E402

failures: list[str] = []


def login(port: int, username: str, password: str, source: str) -> str:
    query = f"auth_username={quote(username)};auth_password={quote(password)};limit=1"
    _, envelope, _ = api_get(port, query, source=source)
    return envelope_key(envelope)


def expect(what: str, got: object, wanted: object) -> None:
    ok = got == wanted
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: {got}" + ("" if ok else f" (wanted {wanted})"))
    if not ok:
        failures.append(what)


def flood(port: int, count: int, tag: str) -> float:
    started = time.monotonic()
    jobs = [(f"junk-{tag}-{i}", f"127.0.1.{i % 20 + 1}") for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        answers = Counter(pool.map(lambda job: login(port, job[0], "", job[1]), jobs))
    seconds = time.monotonic() - started
    print(f"  flood: {count} junk logins from 20 addresses in {seconds:.1f} s: {dict(answers)}")
    return seconds


def point1(port: int) -> None:
    print("1. A flood of other logins erases no count and no lock")
    attacker = "127.0.0.10"
    wrong = [login(port, "owner", "wrong", attacker) for _ in range(5)]
    expect("5 wrong passwords for owner", Counter(wrong), Counter({"401": 5}))
    flood(port, 2000, "a")
    wrong = [login(port, "owner", "wrong", attacker) for _ in range(5)]
    expect("5 more wrong passwords (10 in all)", Counter(wrong), Counter({"401": 5}))
    expect(
        "right password from the same address",
        login(port, "owner", PASSWORD, attacker),
        "401 auth_throttled",
    )
    flood(port, 2000, "b")
    expect(
        "right password after a second flood",
        login(port, "owner", PASSWORD, attacker),
        "401 auth_throttled",
    )


def point2(port: int) -> None:
    print("2. A burst of 40 simultaneous wrong passwords gets at most 10 password checks")
    attacker = "127.0.0.20"
    started = time.monotonic()
    with ThreadPoolExecutor(40) as pool:
        answers = Counter(
            pool.map(lambda _: login(port, "owner-viewer", "wrong", attacker), range(40))
        )
    seconds = time.monotonic() - started
    print(f"  40 requests at once in {seconds:.1f} s: {dict(answers)}")
    expect("password checks (plain 401)", answers["401"] <= 10, True)
    expect(
        "every answer a 401", sum(answers.values()), answers["401"] + answers["401 auth_throttled"]
    )
    expect(
        "right password from that address",
        login(port, "owner-viewer", PASSWORD, attacker),
        "401 auth_throttled",
    )


def point3(port: int) -> None:
    print("3. Nobody can lock a known user out from everywhere")
    expect(
        "owner from an address that has not failed",
        login(port, "owner", PASSWORD, "127.0.0.30"),
        "200",
    )
    expect(
        "owner-viewer from another address",
        login(port, "owner-viewer", PASSWORD, "127.0.0.31"),
        "200",
    )
    # The per-username ceiling (100) against guessing from many addresses: 10 addresses
    # with 10 failures each (each pair reaches its own limit too).
    sources = [f"127.0.2.{i + 1}" for i in range(10)]
    jobs = [(source, n) for source in sources for n in range(10)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = Counter(pool.map(lambda job: login(port, "owner", "wrong", job[0]), jobs))
    print(
        f"  100 wrong passwords for owner from 10 addresses in {time.monotonic() - started:.1f} s:"
        f" {dict(answers)}"
    )
    expect(
        "owner from a fresh address after the ceiling",
        login(port, "owner", PASSWORD, "127.0.0.32"),
        "401 auth_throttled",
    )
    expect(
        "another user from that address", login(port, "owner-viewer", PASSWORD, "127.0.0.32"), "200"
    )


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="enswitch-attack-") as tmp:
        print(
            "store: SQLite with fixtures/demo.json; gunicorn.conf.py, 4 workers, default settings"
        )
        store = Store(Path(tmp))
        server = Gunicorn(store, workers=4)
        try:
            started = time.monotonic()
            point1(server.port)
            point2(server.port)
            point3(server.port)
            print(f"done in {time.monotonic() - started:.0f} s")
        finally:
            server.stop()
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("every expectation held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
