"""A throwaway store served on loopback, for the attack and slow-client scripts.

`Store(tmp)` makes an SQLite store in a temporary directory and loads a dataset into
it (the demo's, or a generated one of `legs` legs; none with `load=False`);
`Gunicorn(store)` serves it with gunicorn.conf.py (as docs/deployment.md runs it);
`Nginx(...)` puts deploy/nginx.conf in front, rewritten only where a test must differ
(loopback ports, no TLS, files in the temporary directory). Everything listens on
127.0.0.1 and is stopped and removed at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PASSWORD = "secret"  # noqa: S105 - every generated user's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


class Store:
    def __init__(self, tmp: Path, *, legs: int = 0, load: bool = True) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp / 'store.sqlite3'}",
            "SECRET_KEY": "loopback-bench-key-" + "x" * 40,
            "PYTHONWARNINGS": "ignore",
        }
        self.env.pop("DEBUG", None)
        self.manage("migrate", "--noinput", "-v", "0")
        self.users: list[str] = []
        if not load:
            return
        dataset = ROOT / "fixtures" / "demo.json"
        if legs:
            dataset = tmp / "dataset.json"
            self.manage(
                "generate_dataset", "--customers", "30", "--depth", "4", "--legs", str(legs),
                "--days", "60", "--seed", "1", "--out", str(dataset),
            )  # fmt: skip
        self.manage("import_dataset", str(dataset))
        self.users = [u["username"] for u in json.loads(dataset.read_text())["users"]]

    def manage(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [str(PYTHON), str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


class Gunicorn:
    def __init__(self, store: Store, *, workers: int = 4, **env: str) -> None:
        self.port = free_port()
        self.log = open(store.tmp / f"gunicorn-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - our own gunicorn and configuration
            [str(GUNICORN), "-c", "gunicorn.conf.py", "enswitch.wsgi"],
            cwd=ROOT,
            env={
                **store.env,
                "BIND": f"127.0.0.1:{self.port}",
                "WEB_CONCURRENCY": str(workers),
                # No control socket: it lives in $HOME, shared with any other gunicorn.
                "GUNICORN_CMD_ARGS": "--no-control-socket",
                **env,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def nginx_site(upstream_port: int, port: int, logs: Path) -> str:
    """deploy/nginx.conf for loopback: one plain-HTTP server on `port`, nothing else
    changed (every buffering and timeout setting is the shipped one)."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    # The plain-HTTP server (the first one) is not needed on loopback.
    first = text.index("server {", text.index("upstream"))
    second = text.index("server {", first + 1)
    text = text[:first] + text[second:]
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{port};", text)
    text = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", text)
    text = re.sub(r"\n\s*ssl_certificate(_key)? [^;]*;", "", text)
    text = text.replace("/var/log/nginx/", f"{logs}/")
    return text


class Nginx:
    def __init__(self, tmp: Path, upstream_port: int) -> None:
        self.port = free_port()
        self.dir = tmp / "nginx"
        self.dir.mkdir(exist_ok=True)
        site = self.dir / "enswitch.conf"
        site.write_text(nginx_site(upstream_port, self.port, self.dir))
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log crit;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    include {site};
}}
"""
        )
        if os.geteuid() == 0:
            os.chmod(tmp, 0o755)  # noqa: S103 - the worker (nobody) writes its temporary files
            shutil.chown(self.dir, "nobody", "nogroup")
        conf = str(self.dir / "nginx.conf")
        subprocess.run([NGINX, "-t", "-q", "-c", conf, "-p", str(self.dir)], check=True)  # noqa: S603
        self.proc = subprocess.Popen(  # noqa: S603 - the system's nginx, our configuration
            [NGINX, "-c", conf, "-p", str(self.dir), "-g", "daemon off;"]
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def api_get(
    port: int, query: str, *, source: str = "127.0.0.1", timeout: float = 30
) -> tuple[int, dict[str, Any] | None, float]:
    """GET cdrs/list with this query string: (HTTP status, envelope or None, seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )
    try:
        conn.request("GET", f"/api/json/cdrs/list/?{query}")
        response = conn.getresponse()
        body = response.read()
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = None
        return response.status, envelope, time.monotonic() - started
    finally:
        conn.close()


def envelope_key(envelope: dict[str, Any] | None) -> str:
    if not envelope:
        return "(no envelope)"
    first = envelope["responses"][0]
    return f"{first['code']} {first['key']}".strip()


if __name__ == "__main__":
    sys.exit("a helper module: run bench/throttle_attack.py or bench/slowclients.py")
