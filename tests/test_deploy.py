"""The documented deployment: deploy/nginx.conf in front of gunicorn.conf.py."""

from __future__ import annotations

import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx.conf"
sys.path.insert(0, str(ROOT / "bench"))

nginx_needed = pytest.mark.skipif(
    not Path("/usr/sbin/nginx").exists(), reason="nginx is not installed (.ci/run installs it)"
)


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def test_the_proxy_buffers_requests_and_answers_with_bounded_timeouts():
    found = directives(CONF.read_text())
    assert found["proxy_request_buffering"] == ["on"]
    assert found["proxy_buffering"] == ["on"]
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        (value,) = found[name]
        assert re.fullmatch(r"\d+s", value), (name, value)
        assert int(value[:-1]) <= 60, (name, value)
    (size,) = found["proxy_max_temp_file_size"]
    assert size != "0"  # 0 would pass an export through at the client's pace
    assert found["client_max_body_size"] == ["64k"]  # DATA_UPLOAD_MAX_MEMORY_SIZE
    # The client address and scheme are set by the proxy, never taken from the client.
    assert "X-Forwarded-For $remote_addr" in found["proxy_set_header"]
    assert "X-Forwarded-Proto $scheme" in found["proxy_set_header"]


def test_the_access_log_has_no_query_string():
    text = CONF.read_text()
    log_format = text[text.index("log_format") : text.index(";", text.index("log_format"))]
    for variable in (
        "$request ",
        '$request"',
        "$request_uri",
        "$args",
        "$query_string",
        "$request_body",
        "$arg_",
    ):
        assert variable not in log_format
    for access_log in directives(text)["access_log"]:
        assert access_log.endswith(" enswitch")  # nginx's default format logs $request


@nginx_needed
def test_the_shipped_config_is_accepted_by_nginx(tmp_path):
    from loopback import Nginx

    Nginx(tmp_path, upstream_port=9).stop()  # runs `nginx -t` on it first


@nginx_needed
def test_slow_clients_wait_in_nginx_not_in_gunicorn(tmp_path):
    """Slow (about 10 s: a store, gunicorn and nginx are started). Twice as many
    never-finished request bodies as gunicorn has workers: a normal request through
    nginx still answers within 1 s."""
    from loopback import Gunicorn, Nginx, Store, api_get

    store = Store(tmp_path, load=False)  # no users: the request is refused (401) at once
    server = Gunicorn(store, workers=2, ACCESS_LOG="/dev/null")
    proxy = Nginx(tmp_path, server.port)
    slow = []
    try:
        # Every worker's first request loads the application: not what is measured.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: api_get(proxy.port, "auth_username=x"), range(4)))
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", proxy.port))
            sock.sendall(
                b"POST /api/json/cdrs/list/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            )
            slow.append(sock)
        time.sleep(0.5)
        for _ in range(3):
            status, envelope, seconds = api_get(proxy.port, "auth_username=x", timeout=5)
            assert status == 200
            assert envelope["responses"][0]["code"] == "401"
            assert seconds < 1
    finally:
        for sock in slow:
            sock.close()
        proxy.stop()
        server.stop()
    log = next(tmp_path.glob("nginx/enswitch.access.log")).read_text()
    assert "/api/json/cdrs/list/" in log
    assert "auth_username" not in log
