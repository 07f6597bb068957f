"""Brute-force protection, stream slots and credentials kept out of logs."""

from __future__ import annotations

import logging
import time

import pytest

from enswitch.api.logging import scrub
from tests import api_helpers as h

pytestmark = pytest.mark.django_db


@pytest.fixture
def actors():
    return h.make_actors()


@pytest.fixture
def limits(settings):
    settings.ENSWITCH_AUTH_THROTTLE = True
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = 3
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER = 6
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = 9
    return settings


def login(client, username, password, address="10.0.0.1"):
    return h.decode(
        client.get(
            h.LIST + "?" + h.query({"auth_username": username, "auth_password": password}),
            REMOTE_ADDR=address,
        )
    )


def test_a_username_and_address_pair_is_locked_after_repeated_failures(client, actors, limits):
    owner = actors.owner
    for _ in range(3):
        h.assert_error(login(client, owner.user.username, "wrong"), 401)
    locked = login(client, owner.user.username, h.PASSWORD)
    assert locked.code == "401"
    assert locked.keys == ["auth_throttled"]
    # The attacker's address is locked for this user; the user elsewhere is not.
    h.assert_ok(login(client, owner.user.username, h.PASSWORD, address="10.9.9.9"))
    # Other users are not affected either, even from the attacker's address.
    h.assert_ok(login(client, actors.reseller.user.username, h.PASSWORD))


def test_the_per_username_ceiling_locks_it_from_every_address(client, actors, limits):
    owner = actors.owner.user.username
    for i in range(6):  # two per address: no pair reaches its limit of 3
        h.assert_error(login(client, owner, "wrong", address=f"10.0.1.{i // 2}"), 401)
    assert login(client, owner, h.PASSWORD, address="10.9.9.9").keys == ["auth_throttled"]


def test_an_address_is_locked_after_many_failures_across_usernames(client, actors, limits):
    for i in range(9):
        h.assert_error(login(client, f"nobody{i}", "wrong"), 401)
    assert login(client, actors.owner.user.username, h.PASSWORD).keys == ["auth_throttled"]
    h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD, address="10.0.0.2"))


def test_failures_below_the_limit_do_not_lock(client, actors, limits):
    for _ in range(2):
        h.assert_error(login(client, actors.owner.user.username, "wrong"), 401)
    h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD))
    # A success gives its count back: the user's own logins never add up to a lock.
    for _ in range(5):
        h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD))


def test_zero_turns_a_limit_off(client, actors, limits):
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = 0
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER = 0
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = 0
    for _ in range(12):
        h.assert_error(login(client, actors.owner.user.username, "wrong"), 401)
    h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD))


def test_the_throttle_switch_turns_every_limit_off(client, actors, limits):
    limits.ENSWITCH_AUTH_THROTTLE = False
    for _ in range(12):
        h.assert_error(login(client, actors.owner.user.username, "wrong"), 401)
    h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD))


def test_the_lock_expires(client, actors, limits):
    limits.ENSWITCH_AUTH_COOLDOWN = 1
    for _ in range(3):
        login(client, actors.owner.user.username, "wrong")
    assert login(client, actors.owner.user.username, h.PASSWORD).keys == ["auth_throttled"]
    time.sleep(2.1)
    h.assert_ok(login(client, actors.owner.user.username, h.PASSWORD))


def test_failures_are_logged_without_the_password(client, actors, limits, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(4):
        login(client, actors.owner.user.username, "Secret-Guess-123")
    assert any("locked" in r.getMessage() for r in caplog.records)
    assert not any("Secret-Guess-123" in r.getMessage() for r in caplog.records)


def test_a_username_cannot_forge_log_lines(client, limits, caplog):
    caplog.set_level(logging.INFO)
    forged = "x\r\n2026-01-01 00:00:00 INFO login ok for owner\x1b[2J"
    for _ in range(3):
        login(client, forged, "wrong")
    (message,) = [r.getMessage() for r in caplog.records if "locked" in r.getMessage()]
    assert "login ok for owner" in message
    assert not any(c in message for c in "\r\n\x1b")


def test_query_strings_are_scrubbed_in_log_lines():
    line = '"GET /api/json/cdrs/list/?auth_username=u;auth_password=p%3Bw&start=1 HTTP/1.1" 200'
    assert "p%3Bw" not in scrub(line)
    assert "auth_username=u" in scrub(line)
    assert "start=1" in scrub(line)
    assert "hunter2" not in scrub("POST body auth_password=hunter2")


@pytest.mark.skipif(
    h.vendor() == "postgresql",
    reason="two overlapping requests would share the test's one PostgreSQL connection; "
    "the slot logic itself is database-neutral (see the unit test below)",
)
def test_streams_per_user_are_capped(client, actors, settings):
    settings.ENSWITCH_MAX_STREAMS_PER_USER = 1
    h.make_leg("a", actors.customer.id)
    url = h.LIST + "?" + h.query({**actors.owner.creds, "customer": "all", "recurse": 1})
    first = client.get(url)  # streamed (limit=0), not read yet: its slot is held
    busy = h.decode(client.get(url))
    assert busy.code == "500"
    assert busy.keys == ["busy"]
    b"".join(first.streaming_content)
    first.close()
    assert h.decode(client.get(url)).ids == ["a"]


def test_stream_slots_are_counted_per_user_and_released(settings):
    from enswitch.api.throttle import TooManyStreams, stream_slot

    settings.ENSWITCH_MAX_STREAMS_PER_USER = 2
    with stream_slot(1), stream_slot(1):
        with pytest.raises(TooManyStreams), stream_slot(1):
            pass
        with stream_slot(2):  # another user has slots of its own
            pass
    with stream_slot(1), stream_slot(1):  # all released again
        pass


def _expiry(key_part: str):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT expires FROM enswitch_cache WHERE cache_key LIKE %s", [f"%{key_part}%"]
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_leaked_stream_slot_expires_however_often_the_user_retries(settings):
    from enswitch.api.throttle import TooManyStreams, stream_slot

    settings.ENSWITCH_MAX_STREAMS_PER_USER = 1
    leaked = stream_slot(7)
    leaked.__enter__()  # a worker killed mid-stream never leaves its slot
    before = _expiry("stream:7:")
    for _ in range(3):
        with pytest.raises(TooManyStreams), stream_slot(7):
            pass
    assert _expiry("stream:7:") == before  # refused retries don't push the expiry back


def test_failures_are_counted_over_the_configured_window(client, actors, limits):
    from enswitch.models import LoginFailures

    limits.ENSWITCH_AUTH_FAILURE_WINDOW = 3600
    login(client, actors.owner.user.username, "wrong")
    rows = list(LoginFailures.objects.values_list("count", "expires"))
    assert len(rows) == 3  # the pair, the username, the address
    for count, expires in rows:
        assert count == 1
        assert 3500 < expires - time.time() <= 3600


def test_a_flood_of_other_logins_erases_no_count_and_no_lock(client, actors, limits, settings):
    # A small shared cache: a throttle kept in a cache would see its entries culled.
    settings.CACHES = {
        **settings.CACHES,
        "shared": {**settings.CACHES["shared"], "OPTIONS": {"MAX_ENTRIES": 30}},
    }
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = 0
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER = 3
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = 0
    owner, reseller = actors.owner.user.username, actors.reseller.user.username
    for _ in range(2):
        login(client, owner, "wrong")
    for _ in range(3):
        login(client, reseller, "wrong")
    # Cheap failures (empty passwords: nothing to hash) for 100 other usernames, three
    # each, from 20 other addresses.
    for i in range(300):
        login(client, f"junk{i % 100}", "", address=f"10.1.0.{i % 20}")
    login(client, owner, "wrong")  # the third failure: the count survived the flood
    assert login(client, owner, h.PASSWORD).keys == ["auth_throttled"]
    assert login(client, reseller, h.PASSWORD).keys == ["auth_throttled"]


def test_a_burst_of_guesses_gets_at_most_the_limit_of_password_checks(
    client, actors, limits, monkeypatch
):
    import sys

    from django.test import Client

    from customers.models import User

    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = 3
    limits.ENSWITCH_AUTH_MAX_FAILURES_PER_USER = 3  # the same, for a per-username throttle
    owner = actors.owner.user.username
    burst, checked, answers, sent = 12, [], [], [1]
    check_password = User.check_password

    def arrives_while_hashing(user, raw):
        # Every guess still being hashed when the next ones arrive: 12 at once.
        checked.append(raw)
        while sent[0] < burst:
            sent[0] += 1
            answers.append(login(Client(), owner, "wrong"))
        return check_password(user, raw)

    monkeypatch.setattr(User, "check_password", arrives_while_hashing)
    depth = sys.getrecursionlimit()
    sys.setrecursionlimit(max(depth, 20_000))  # twelve requests nested in each other
    try:
        answers.append(login(client, owner, "wrong"))
    finally:
        sys.setrecursionlimit(depth)
    assert len(checked) <= 3
    assert len(answers) == burst
    assert sorted(a.keys[0] for a in answers) == [""] * len(checked) + ["auth_throttled"] * (
        burst - len(checked)
    )
    assert login(client, owner, h.PASSWORD).keys == ["auth_throttled"]


def test_expired_counters_are_pruned(client, actors, limits):
    from enswitch.models import LoginFailures

    limits.ENSWITCH_AUTH_FAILURE_WINDOW = 1
    for i in range(3):
        login(client, f"gone{i}", "wrong", address="10.2.0.1")
    assert LoginFailures.objects.count() == 7  # 3 pairs, 3 usernames, 1 address
    time.sleep(1.2)
    limits.ENSWITCH_AUTH_FAILURE_WINDOW = 900
    login(client, "another", "wrong", address="10.2.0.2")
    assert LoginFailures.objects.count() == 3  # only the new failure's rows are left


def test_expired_counters_are_found_by_an_index():
    from django.db import connection

    from enswitch.models import LoginFailures

    table = LoginFailures._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    assert any(c["index"] and c["columns"] == ["expires"] for c in constraints.values())
