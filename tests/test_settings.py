"""Settings read from the environment: DATABASE_URL's forms and yes/no variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from enswitch.settings import BASE_DIR, database_from_url, envbool

ROOT = Path(__file__).resolve().parent.parent


def test_a_pooler_url_keeps_the_psycopg_options():
    entry = database_from_url(
        "postgres://app:p%40ss@db.example.net:6432/cdrs"
        "?server_side_binding=0&prepare_threshold=none&application_name=api"
    )

    assert (entry["ENGINE"], entry["NAME"], entry["USER"], entry["PASSWORD"]) == (
        "django.db.backends.postgresql",
        "cdrs",
        "app",
        "p@ss",
    )
    assert (entry["HOST"], int(entry["PORT"])) == ("db.example.net", 6432)
    assert entry["OPTIONS"] == {
        "server_side_binding": False,
        "prepare_threshold": None,
        "application_name": "api",
    }
    assert entry["CONN_HEALTH_CHECKS"] is True


def test_a_plain_postgresql_url_binds_on_the_server_and_prepares():
    entry = database_from_url("postgresql://postgres@127.0.0.1:5432/postgres")

    assert entry["OPTIONS"] == {"server_side_binding": True, "prepare_threshold": 2}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:///var/db.sqlite3", "var/db.sqlite3"),
        ("sqlite:////srv/a store/db.sqlite3", "/srv/a store/db.sqlite3"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls(url, name):
    entry = database_from_url(url)

    assert (entry["ENGINE"], entry["NAME"]) == ("django.db.backends.sqlite3", name)
    assert entry["OPTIONS"] == {"timeout": 20}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_an_sqlite_url_without_a_path_is_the_default_store(url):
    assert database_from_url(url)["NAME"] == str(BASE_DIR / "var" / "db.sqlite3")


def test_an_unsupported_scheme_is_named():
    with pytest.raises(ValueError, match="unsupported scheme 'mysql'"):
        database_from_url("mysql://u@h/db")


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("On", True), ("no", False)])
def test_yes_no_values(monkeypatch, value, expected):
    monkeypatch.setenv("ENSWITCH_TEST_FLAG", value)

    assert envbool("ENSWITCH_TEST_FLAG", not expected) is expected


def test_a_typo_in_a_yes_no_variable_stops_the_start_with_one_line():
    env = {**os.environ, "DEBUG": "ye", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(  # noqa: S603 - this checkout's manage.py
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 78, done.stderr
    assert done.stderr.strip() == (
        "error: DEBUG='ye' is neither yes nor no: use 1 or 0 (or true/false, yes/no, on/off)"
    )
