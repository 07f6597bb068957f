"""Attack review: passwords with NUL, passwords in logs, oversized forms, a production start
without SECRET_KEY, caching headers and the proxy's HTTPS header."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from enswitch.api.logging import ScrubSecretsFilter, scrub
from tests import api_helpers as h

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "secret"


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1000  # the same algorithm, with its zero padding of the key


@pytest.fixture
def owner(settings):
    settings.PASSWORD_HASHERS = ["tests.test_security.FastPBKDF2PasswordHasher"]
    from tests import factories as f

    return f.user(f.customer(None, id=1, name="Owner"), username="owner", password=PASSWORD)


# --- 4. NUL in a password ----------------------------------------------------------------


@pytest.mark.parametrize("password", [PASSWORD + "\x00", PASSWORD + "\x00\x00", "sec\x00ret"])
def test_a_password_with_nul_is_refused_before_hashing(client, owner, password, monkeypatch):
    from customers.models import User

    hashed = []
    monkeypatch.setattr(User, "check_password", lambda user, raw: hashed.append(raw))
    answer = h.request(client, query_string=f"auth_username=owner;auth_password={h.enc(password)}")
    h.assert_error(answer, 401)
    assert hashed == []


def test_the_password_without_nul_still_works(client, owner):
    h.assert_ok(h.call(client, auth_username="owner", auth_password=PASSWORD))


# --- 5. Passwords and control characters in logs -------------------------------------------

SPELLINGS = [
    "auth_password=hunter2",
    "auth%5Fpassword=hunter2",
    "auth%5fpassword=hunter2",
    "%61uth_p%61ssword=hunter2",
    "auth_password=hun'ter2",
    'auth_password=hun"ter2',
    "auth_password=hunter2%27x",
    "AUTH_PASSWORD=hunter2",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("separator", ["?", ";", "&"])
def test_every_spelling_the_api_accepts_is_scrubbed(spelling, separator):
    line = f'"GET /api/json/cdrs/list/?auth_username=u{separator}{spelling};start=1 HTTP/1.1" 200'
    if separator == "?":
        line = f'"GET /api/json/cdrs/list/?{spelling};auth_username=u;start=1 HTTP/1.1" 200'
    cleaned = scrub(line)
    assert "hun" not in cleaned
    assert "ter2" not in cleaned  # not cut short at a quote
    assert "auth_username=u" in cleaned
    assert "start=1" in cleaned


def test_the_api_reads_those_spellings_as_the_password(client, owner):
    # What the scrubber must catch: the API decodes %xx in parameter names.
    for spelling in ("auth%5Fpassword", "%61uth_p%61ssword"):
        answer = h.request(client, query_string=f"auth_username=owner;{spelling}={PASSWORD}")
        h.assert_ok(answer)


def test_json_bodies_are_scrubbed():
    assert "hunter2" not in scrub('body {"auth_username": "u", "auth_password": "hunter2"}')
    assert "hunter2" not in scrub("""{'auth\\u005fpassword': 'hun\\'ter2'}""")


def test_the_log_filter_scrubs_messages_and_tracebacks_and_escapes_controls():
    try:
        raise ValueError("bad request /x?auth%5Fpassword=hunter2")
    except ValueError:
        args = ("/x?auth_password=hunter2\r\nFAKE",)
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Error handling %s", args, sys.exc_info()
        )
    assert ScrubSecretsFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "hunter2" not in text
    assert "\r\nFAKE" not in text
    assert "\\r\\nFAKE" in text


@pytest.mark.parametrize("name", ["django.server", "django.request", "enswitch.api", "x"])
def test_the_log_handlers_of_the_settings_scrub_passwords(name, monkeypatch):
    import io

    logger = logging.getLogger(name)
    # The handlers settings.LOGGING installs (pytest adds handlers of its own to the root).
    handlers = [
        handler
        for handler in logger.handlers or logging.getLogger().handlers
        if type(handler) is logging.StreamHandler
    ]
    assert handlers
    for handler in handlers:
        stream = io.StringIO()
        monkeypatch.setattr(handler, "stream", stream)
        record = logger.makeRecord(
            name, logging.ERROR, __file__, 1, '"%s" 200', ("GET /x?auth%5Fpassword=hunter2'x",),
            None,
        )  # fmt: skip
        handler.handle(record)
        assert "hunter2" not in stream.getvalue()
        assert "'x" not in stream.getvalue()


def _silent_server() -> socket.socket:
    """A 'database' that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="gunicorn's worker timeout")
def test_a_worker_timeout_does_not_log_the_password(tmp_path):
    """Slow (about 5 s): a real gunicorn whose worker times out in the middle of a request."""
    import urllib.error
    import urllib.request

    silent, port = _silent_server(), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://u:p@127.0.0.1:{silent.getsockname()[1]}/db",
        "SECRET_KEY": "x" * 50,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_TIMEOUT": "1",
        "GUNICORN_CMD_ARGS": "--no-control-socket",
    }
    server = subprocess.Popen(  # noqa: S603 - our own gunicorn and configuration
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "enswitch.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        query = "auth_username=owner;auth_password=Hunter-2-Guess"
        # The worker is killed: no answer but gunicorn's own 500.
        with pytest.raises(urllib.error.HTTPError, match="500"):
            urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/json/cdrs/list/?{query}", timeout=10
            )  # noqa: S310 - loopback
    finally:
        time.sleep(0.5)
        server.terminate()
        _, err = server.communicate(timeout=30)
        silent.close()
    assert "WORKER TIMEOUT" in err
    assert "Error handling request" in err
    assert "Hunter-2-Guess" not in err


# --- 8. Too many fields ---------------------------------------------------------------------


@pytest.mark.parametrize("post", [h.post_form, h.post_multipart])
def test_a_body_with_too_many_fields_is_a_400(client, owner, post):
    fields = {f"f{i}": "1" for i in range(1001)}
    answer = post(client, h.LIST, fields, qs=f"auth_username=owner;auth_password={PASSWORD}")
    h.assert_invalid(answer, "body")


def test_a_body_with_a_thousand_fields_is_read(client, owner):
    fields = {f"f{i}": "1" for i in range(998)}
    answer = h.post_form(
        client, h.LIST, {**fields, "auth_username": "owner", "auth_password": PASSWORD}
    )
    h.assert_ok(answer)


# --- 9. No production start without SECRET_KEY --------------------------------------------


def _run(
    *args: str, debug: str | None = None, key: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env["PYTHONWARNINGS"] = "ignore"
    if debug is not None:
        env["DEBUG"] = debug
    if key is not None:
        env["SECRET_KEY"] = key
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["migrate", "check", "runserver", "shell"])
def test_manage_py_refuses_to_run_without_a_key_in_production(command):
    done = _run("manage.py", command)
    assert done.returncode == 78
    assert done.stderr.startswith("error: SECRET_KEY is not set")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "SECRET_KEY=" in done.stderr  # how to set it


def test_gunicorn_refuses_to_start_without_a_key_in_production():
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    done = _run(gunicorn, "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "enswitch.wsgi")
    assert done.returncode == 78
    assert "error: SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr
    # Any other WSGI server importing the application is refused too.
    done = _run("-c", "import enswitch.wsgi")
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr


def test_commands_that_need_no_key_still_run():
    assert _run("manage.py", "help").returncode == 0
    assert _run("manage.py", "migrate", "--help").returncode == 0
    assert _run("manage.py", "makemigrations", "--check", "--dry-run").returncode == 0


def test_development_and_a_real_key_still_start():
    assert _run("manage.py", "check", debug="1").returncode == 0
    assert _run("manage.py", "check", key="k" * 50).returncode == 0


# --- 10. Caching and the proxy's HTTPS header ---------------------------------------------


def test_api_answers_are_not_stored_by_caches(client, owner):
    ok = h.call(client, auth_username="owner", auth_password=PASSWORD, limit=5)
    refused = h.call(client, auth_username="owner", auth_password="wrong")
    streamed = h.call(client, auth_username="owner", auth_password=PASSWORD)
    for answer in (ok, refused, streamed):
        assert "no-store" in answer.http["Cache-Control"]


def test_the_forwarded_proto_header_is_trusted_only_when_the_operator_says_so():
    code = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'enswitch.settings');"
        f" django.setup(); {code}"
    )
    assert _run("-c", script, key="k" * 50).stdout.strip() == "None"
    env_on = {**os.environ, "SECRET_KEY": "k" * 50, "PROXY_SETS_X_FORWARDED_PROTO": "1"}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], cwd=ROOT, env=env_on, capture_output=True, text=True
    )
    assert done.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_a_direct_client_cannot_claim_https(client, settings):
    from django.http import HttpRequest

    request = HttpRequest()
    request.META = {"HTTP_X_FORWARDED_PROTO": "https", "SERVER_NAME": "x", "SERVER_PORT": "80"}
    assert not request.is_secure()
