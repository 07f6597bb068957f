"""`user/login` and authentication tokens (`auth_token`), as docs/api.md section 8 says."""

from __future__ import annotations

import re
import time

import jwt
import pytest

from customers.models import User
from tests import api_helpers as h

pytestmark = pytest.mark.django_db

LOGIN = "/api/json/user/login/"


@pytest.fixture
def actors():
    a = h.make_actors()
    h.make_leg("1700000000.1", a.customer.id, start=1_700_000_000)
    h.make_leg("1700000100.1", a.charlie.id, start=1_700_000_100)
    return a


def login(client, creds, **params):
    return h.call(client, LOGIN, **creds, **params)


def token_of(client, actor, **params) -> str:
    data = h.assert_ok(login(client, actor.creds, token=1, **params))
    return data["auth_token"]


def test_login_answers_who_the_user_is(client, actors):
    data = h.assert_ok(login(client, actors.reseller.creds))
    assert data == {
        "username": "reseller",
        "customer": actors.reseller.id,
        "role": actors.reseller.user.role_id,
    }


@pytest.mark.parametrize("path", [LOGIN, LOGIN.rstrip("/")])
def test_login_with_token_1_issues_a_token_that_expires_in_a_day(client, actors, path):
    before = int(time.time())
    data = h.assert_ok(h.call(client, path, **actors.owner.creds, token="01"))
    assert set(data) == {"username", "customer", "role", "auth_token", "auth_token_expiry",
                         "auth_token_expires"}  # fmt: skip
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{1,1024}", data["auth_token"])
    assert data["auth_token_expiry"] == 86_400
    assert before + 86_400 <= data["auth_token_expires"] <= int(time.time()) + 86_400


@pytest.mark.parametrize("value", ["0", "2", "-1", "", "00"])
def test_any_token_value_but_1_issues_none(client, actors, value):
    data = h.assert_ok(login(client, actors.owner.creds, token=value))
    assert "auth_token" not in data


@pytest.mark.parametrize("value", ["yes", "1.0", " 1", "99999999999999999999"])
def test_a_token_value_that_is_not_an_integer_is_a_400(client, actors, value):
    h.assert_invalid(login(client, actors.owner.creds, token=value), "token")


def test_a_json_true_token_is_a_400(client, actors):
    answer = h.post_json(client, LOGIN, {**actors.owner.creds, "token": True})
    h.assert_invalid(answer, "token")


def test_login_needs_no_privilege_nor_rate_plan(client, actors):
    from tests import factories as f

    nobody = h.actor(actors.customer.customer, "nobody", privileges=["callerid"])
    actors.customer.customer.rate_plan = f.rate_plan(["voicemail"])
    actors.customer.customer.save()
    data = h.assert_ok(login(client, nobody.creds, token=1))
    assert data["username"] == "nobody"
    # ... but the token does not lift the role's limits elsewhere.
    h.assert_error(h.call(client, h.LIST, auth_token=data["auth_token"]), 402)


def test_login_refuses_wrong_credentials(client, actors):
    h.assert_error(login(client, {"auth_username": "owner", "auth_password": "nope"}, token=1), 401)
    h.assert_error(login(client, {}, token=1), 401)


@pytest.mark.parametrize("path", [h.LIST, LOGIN])
def test_a_token_answers_as_the_password_does(client, actors, path):
    token = token_of(client, actors.reseller)
    with_password = h.call(client, path, **actors.reseller.creds, start=0)
    with_token = h.call(client, path, auth_token=token, start=0)
    assert with_token.body == with_password.body
    h.assert_ok(with_token)


def test_a_token_works_for_cdrs_get(client, actors):
    token = token_of(client, actors.customer)
    row = h.assert_ok(h.call(client, h.GET, auth_token=token, uniqueid="1700000000.1"))
    assert row["uniqueid"] == "1700000000.1"
    h.assert_error(
        h.call(client, h.GET, auth_token=token, uniqueid="1700000100.1"), 404, "uniqueid"
    )


def test_a_token_alone_decides_who_the_caller_is(client, actors):
    token = token_of(client, actors.charlie)
    answer = h.call(client, h.LIST, auth_token=token, **actors.owner.creds)
    assert answer.ids == ["1700000100.1"]  # charlie's, not the owner's
    wrong = {"auth_username": "owner", "auth_password": "wrong"}
    assert h.call(client, h.LIST, auth_token=token, **wrong).ids == ["1700000100.1"]


def test_an_empty_or_null_token_counts_as_absent(client, actors):
    assert h.call(client, h.LIST, auth_token="", **actors.owner.creds).code == "200"
    answer = h.post_json(client, h.LIST, {**actors.owner.creds, "auth_token": None})
    assert answer.code == "200"
    h.assert_error(h.call(client, h.LIST, auth_token=""), 401)


def forged(client, actors) -> list[str]:
    real = token_of(client, actors.owner)
    claims = jwt.decode(real, options={"verify_signature": False})
    head, body, sig = real.split(".")
    return [
        "x",
        "not.a.token",
        real[:-2],
        f"{head}.{body}.{sig[::-1]}",
        real + "%",
        jwt.encode(
            {**claims, "sub": str(actors.owner.user.pk)},
            "another key, long enough for HS256 ......",
            algorithm="HS256",
        ),
        jwt.encode(claims, "", algorithm="none"),
        "a" * 1025,
        "é",
    ]


def test_malformed_and_forged_tokens_are_refused_even_beside_valid_credentials(client, actors):
    for token in forged(client, actors):
        h.assert_error(h.call(client, h.LIST, auth_token=token, **actors.owner.creds), 401)
        h.assert_error(h.call(client, LOGIN, auth_token=token, token=1), 401)
    answer = h.post_json(client, h.LIST, {**actors.owner.creds, "auth_token": True})
    h.assert_error(answer, 401)


def test_an_expired_token_is_refused_and_cannot_be_renewed(client, actors, settings):
    from enswitch.api import tokens

    old = tokens.issue(actors.owner.user, now=int(time.time()) - 86_401).token
    h.assert_error(h.call(client, h.LIST, auth_token=old), 401)
    h.assert_error(h.call(client, LOGIN, auth_token=old, token=1), 401)
    # A shorter expiry set later bounds tokens issued before it.
    fresh = token_of(client, actors.owner)
    settings.ENSWITCH_AUTH_TOKEN_EXPIRY = 1
    time.sleep(1.1)
    h.assert_error(h.call(client, h.LIST, auth_token=fresh), 401)


def test_expiry_0_tokens_never_expire(client, actors, settings):
    settings.ENSWITCH_AUTH_TOKEN_EXPIRY = 0
    data = h.assert_ok(login(client, actors.owner.creds, token=1))
    assert data["auth_token_expiry"] == 0
    assert "auth_token_expires" not in data
    from enswitch.api import tokens

    ancient = tokens.issue(actors.owner.user, now=1).token
    h.assert_ok(h.call(client, h.LIST, auth_token=ancient))


def test_a_valid_token_renews(client, actors):
    token = token_of(client, actors.owner)
    data = h.assert_ok(h.call(client, LOGIN, auth_token=token, token=1))
    assert data["username"] == "owner"
    h.assert_ok(h.call(client, h.LIST, auth_token=data["auth_token"]))


@pytest.mark.parametrize("what", ["user", "customer"])
def test_a_token_of_a_user_since_disabled_is_refused(client, actors, what):
    token = token_of(client, actors.reseller)
    target = actors.reseller.user if what == "user" else actors.reseller.customer
    target.enabled = False
    target.save()
    h.assert_error(h.call(client, h.LIST, auth_token=token), 401)


def test_a_password_change_ends_the_users_tokens(client, actors):
    token = token_of(client, actors.reseller)
    other = token_of(client, actors.customer)
    user = User.objects.get(pk=actors.reseller.user.pk)
    user.set_password(h.PASSWORD)  # the same password again: not a change
    user.save()
    h.assert_ok(h.call(client, h.LIST, auth_token=token))
    user.set_password("a new one")
    user.save()
    h.assert_error(h.call(client, h.LIST, auth_token=token), 401)
    h.assert_ok(h.call(client, h.LIST, auth_token=other))  # other users' tokens live on


def test_role_and_rate_plan_are_read_at_each_call(client, actors):
    from tests import factories as f

    token = token_of(client, actors.reseller)
    role = actors.reseller.user.role
    role.privileges = []
    role.save()
    h.assert_error(h.call(client, h.LIST, auth_token=token), 402)
    role.privileges = ["cdrs"]
    role.save()
    cust = actors.reseller.customer
    cust.rate_plan = f.rate_plan(["voicemail"])
    cust.save()
    h.assert_error(h.call(client, h.LIST, auth_token=token), 403)


def test_the_token_path_costs_no_password_hash(client, actors, monkeypatch):
    token = token_of(client, actors.owner)

    def no_hash(*args, **kwargs):
        raise AssertionError("a password hash on the token path")

    monkeypatch.setattr("customers.models.check_password", no_hash)
    monkeypatch.setattr("customers.models.make_password", no_hash)
    h.assert_ok(h.call(client, h.LIST, auth_token=token))
    h.assert_ok(h.call(client, LOGIN, auth_token=token, token=1))
    h.assert_error(h.call(client, h.LIST, auth_token=token[:-3]), 401)


def test_tokens_are_kept_out_of_logs():
    from enswitch.api.logging import scrub

    line = "GET /api/json/cdrs/list/?auth_t%6Fken=eyJ.x.y;limit=1 HTTP/1.1"
    assert scrub(line) == "GET /api/json/cdrs/list/?auth_t%6Fken=***;limit=1 HTTP/1.1"
    assert scrub('{"auth_token": "eyJ.x.y", "limit": 1}') == '{"auth_token": "***", "limit": 1}'


def test_rejected_tokens_count_as_failed_logins_of_their_address(client, actors, settings):
    settings.ENSWITCH_AUTH_THROTTLE = True
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = 4
    token = token_of(client, actors.owner)

    def get(address, **params):
        return h.decode(client.get(h.LIST + "?" + h.query(params), REMOTE_ADDR=address))

    for _ in range(4):
        h.assert_error(get("10.0.0.7", auth_token="forged"), 401)
    # The address is locked: a valid token, or the right password, from it is refused.
    assert get("10.0.0.7", auth_token=token).keys == ["auth_throttled"]
    assert get("10.0.0.7", **actors.owner.creds).keys == ["auth_throttled"]
    # Other addresses are not.
    h.assert_ok(get("10.0.0.8", auth_token=token))
