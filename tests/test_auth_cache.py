"""A verified credential skips the hasher for a while, and nothing else about it is cached."""

from __future__ import annotations

import pickle

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.cache import caches

from tests import api_helpers as h

pytestmark = pytest.mark.django_db


class CountingHasher(MD5PasswordHasher):
    algorithm = "counting_md5"
    verified = 0

    def verify(self, password: str, encoded: str) -> bool:
        CountingHasher.verified += 1
        return super().verify(password, encoded)


@pytest.fixture
def actors(settings):
    settings.PASSWORD_HASHERS = ["tests.test_auth_cache.CountingHasher"]
    CountingHasher.verified = 0
    return h.make_actors()


def ask(client, actor, password=None):
    creds = {**actor.creds, **({"auth_password": password} if password else {})}
    return h.call(client, h.LIST, **creds)


def test_a_verified_password_is_not_hashed_again(client, actors):
    for _ in range(5):
        h.assert_ok(ask(client, actors.reseller))
    assert CountingHasher.verified == 1


def test_wrong_passwords_are_always_checked(client, actors):
    for _ in range(3):
        h.assert_error(ask(client, actors.reseller, "wrong"), 401)
    assert CountingHasher.verified == 3


def test_the_cache_expires(client, actors, settings):
    settings.ENSWITCH_AUTH_CACHE_SECONDS = 0  # locmem: 0 means "don't keep"
    for _ in range(3):
        h.assert_ok(ask(client, actors.reseller))
    assert CountingHasher.verified == 3


def test_a_new_password_drops_the_old_one_at_once(client, actors):
    h.assert_ok(ask(client, actors.reseller))
    user = actors.reseller.user
    user.set_password("brand-new")
    user.save()
    h.assert_error(ask(client, actors.reseller), 401)
    h.assert_ok(ask(client, actors.reseller, "brand-new"))


def test_role_and_enabled_flags_are_read_fresh(client, actors):
    who = actors.reseller
    h.assert_ok(ask(client, who))
    role = who.user.role
    role.privileges = ["archive"]
    role.save()
    h.assert_error(ask(client, who), 402)
    role.privileges = ["cdrs"]
    role.save()
    h.assert_ok(ask(client, who))
    who.user.enabled = False
    who.user.save()
    h.assert_error(ask(client, who), 401)
    who.user.enabled = True
    who.user.save()
    who.customer.enabled = False
    who.customer.save()
    h.assert_error(ask(client, who), 401)


def test_the_cache_never_holds_the_password(client, actors):
    h.assert_ok(ask(client, actors.reseller))
    cache = caches["default"]
    stored = pickle.dumps(dict(cache._cache)) + pickle.dumps(list(cache._cache))
    assert h.PASSWORD.encode() not in stored
    assert actors.reseller.user.password.encode() not in stored  # nor the hash
