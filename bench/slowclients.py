"""Slow clients against gunicorn alone, then against deploy/nginx.conf in front of it.

    .venv/bin/python bench/slowclients.py [--legs 40000] [--seconds 20]

Makes a throwaway SQLite store (generated data, `--legs` legs), serves it with
gunicorn.conf.py and 4 sync workers, and opens 50 slow clients on loopback:

- 46 that send the headers of a POST with a 1,000-byte form body, and then no body
  (half of them) or one byte of it every 5 seconds (the other half);
- 4 exports (`limit=0`, two users, two each: the per-user maximum) read one byte a
  second.

Meanwhile a normal `cdrs/list` request (`limit=5`) is sent once a second, each waiting at
most 3 seconds, and its time is printed. First straight to gunicorn (where the slow
clients take every worker), then through nginx with the shipped configuration (where
they wait in nginx and every normal request must answer within 1 s). All traffic stays
on 127.0.0.1; every client is closed at the end of its phase. Exit status 0 when every
request through nginx answered within 1 s.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback import PASSWORD, Gunicorn, Nginx, Store, api_get, envelope_key  # noqa: E402

SLOW_BODIES = 46
EXPORTERS = ("owner", "owner-viewer")  # two users, two exports each
PROBE = f"auth_username=owner;auth_password={PASSWORD};limit=5"
PROBE_TIMEOUT = 3.0


class SlowClients:
    def __init__(self, port: int) -> None:
        self.socks: list[tuple[str, socket.socket]] = []
        self.stop = threading.Event()
        self.exported = 0
        # The exports first: on gunicorn alone they take workers before the bodies do.
        for user in EXPORTERS:
            for _ in range(2):
                sock = socket.socket()
                # A small receive window, so that the reader's pace is what the server sees.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                query = f"auth_username={user};auth_password={PASSWORD};customer=all;recurse=1"
                sock.sendall(
                    f"GET /api/json/cdrs/list/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
                )
                self.socks.append(("export", sock))
        for i in range(SLOW_BODIES):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                b"POST /api/json/cdrs/list/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            self.socks.append(("trickle" if i % 2 else "silent", sock))
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        tick = 0
        while not self.stop.wait(1.0):
            tick += 1
            for kind, sock in self.socks:
                try:
                    if kind == "export":
                        sock.settimeout(0.01)
                        self.exported += len(sock.recv(1))
                    elif kind == "trickle" and tick % 5 == 0:
                        sock.sendall(b"x")
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for _, sock in self.socks:
            sock.close()


def probe(port: int, seconds: int) -> list[float | None]:
    """One normal request a second: its time, or None without an answer in time."""
    times: list[float | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status, envelope, took = api_get(port, PROBE, timeout=PROBE_TIMEOUT)
            ok = status == 200 and envelope_key(envelope) == "200"
            times.append(took if ok else None)
            shown = f"{took * 1000:.0f} ms" if ok else f"HTTP {status} {envelope_key(envelope)}"
        except OSError as exc:
            times.append(None)
            shown = f"no answer ({type(exc).__name__})"
        print(f"    cdrs/list limit=5: {shown}", flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return times


def phase(name: str, port: int, seconds: int) -> list[float | None]:
    print(
        f"{name}: 50 slow clients ({SLOW_BODIES} bodies never finished, 4 exports read "
        "at 1 byte/s), one normal request a second",
        flush=True,
    )
    baseline = api_get(port, PROBE)[2]
    print(f"    before: {baseline * 1000:.0f} ms")
    clients = SlowClients(port)
    time.sleep(2)  # the slow clients are in
    try:
        times = probe(port, seconds)
    finally:
        clients.close()
    answered = [t for t in times if t is not None]
    summary = f"{len(answered)}/{len(times)} answered"
    if answered:
        summary += (
            f", median {statistics.median(answered) * 1000:.0f} ms,"
            f" max {max(answered) * 1000:.0f} ms"
        )
    print(f"  {name}: {summary}; export bytes read by the slow readers: {clients.exported}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--legs", type=int, default=40_000)
    parser.add_argument("--seconds", type=int, default=20, help="probing time per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enswitch-slow-") as tmp:
        print(f"store: SQLite, {args.legs:,} generated legs; gunicorn.conf.py, 4 sync workers")
        store = Store(Path(tmp), legs=args.legs)
        server = Gunicorn(store, workers=4, ACCESS_LOG="/dev/null")
        try:
            phase("gunicorn alone", server.port, min(args.seconds, 10))
            # Workers held by the closed clients finish their requests and are free again.
            time.sleep(3)
            proxy = Nginx(Path(tmp), server.port)
            try:
                times = phase("nginx (deploy/nginx.conf) in front", proxy.port, args.seconds)
            finally:
                proxy.stop()
        finally:
            server.stop()
    slow = [t for t in times if t is None or t >= 1.0]
    if slow:
        print(f"FAILED: {len(slow)} of {len(times)} requests through nginx took 1 s or more")
        return 1
    print("every request through nginx answered within 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
