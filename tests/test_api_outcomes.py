"""Section 2 of docs/api.md: outcome codes. Every invalid parameter gets its 400 entry, in
table order; 401, 402 and 403 come first, in that order; failures are a 500 envelope.

Actors (tests/api_helpers.py, the `actors` fixture of tests/conftest.py): the system
owner (customer 1), a reseller (10, EUR) with a customer under it (11), and Charlie (21,
under 20) in another branch.
"""

from __future__ import annotations

import importlib.util

import pytest
from django.db import DatabaseError, OperationalError

from customers.models import Customer, RatePlan, Role
from tests import api_helpers as h
from tests.api_helpers import (
    ENUMERATIONS,
    GET,
    INTEGER_PARAMS,
    LIST,
    STRING_PARAMS,
    TABLE_ORDER,
    ask,
    ids_of,
    make_leg,
)

pytestmark = pytest.mark.django_db


# --- section 2: many 400s, and the order of the stages -------------------------------

BAD_VALUE = {
    **{p: "x" for p in INTEGER_PARAMS},
    **{p: "a\x00" for p in STRING_PARAMS},
    **{p: "nope" for p in ENUMERATIONS},
}


def test_every_invalid_parameter_is_listed_in_table_order(client, actors):
    # Sent in reverse order: the answer still follows the table.
    params = [*actors.owner.creds.items(), *((p, BAD_VALUE[p]) for p in reversed(TABLE_ORDER))]
    answer = h.request(client, LIST, query_string=h.query(params))
    h.assert_invalid(answer, *TABLE_ORDER)


def test_some_invalid_parameters_in_table_order(client, actors):
    answer = ask(
        client, actors.owner, descending="5", sort="x", status="\x00", customer="x", start="-1"
    )
    h.assert_invalid(answer, "start", "customer", "status", "sort", "descending")


def test_out_of_scope_ids_are_listed_with_the_other_400s(client, actors):
    answer = ask(client, actors.reseller, customer=21, cost_customer=1, dnumber="a" * 256)
    h.assert_invalid(answer, "cost_customer", "customer", "dnumber")


def _role(privileges: list[str]) -> Role:
    return Role.objects.create(id=Role.objects.count() + 900, name="r", privileges=privileges)


def _plan(features: list[str]) -> RatePlan:
    return RatePlan.objects.create(id=RatePlan.objects.count() + 900, name="p", features=features)


def test_wrong_password_beats_bad_parameters(client, actors):
    creds = {**actors.owner.creds, "auth_password": "wrong"}
    h.assert_error(h.call(client, LIST, **creds, start="x", archive="5", customer="x"), 401)
    h.assert_error(h.call(client, GET, **creds, customer="x"), 401)


def test_unknown_user_beats_bad_parameters(client, actors):
    answer = h.call(client, LIST, auth_username="nobody", auth_password="x", start="x")
    h.assert_error(answer, 401)


@pytest.mark.parametrize(
    "creds",
    [
        {},
        {"auth_username": "owner"},
        {"auth_password": h.PASSWORD},
        {"auth_username": "owner", "auth_password": ""},
        {"auth_username": "", "auth_password": h.PASSWORD},
        {"auth_username": "Owner", "auth_password": h.PASSWORD},
        {"auth_username": "owner ", "auth_password": h.PASSWORD},
        {"auth_username": "owner", "auth_password": h.PASSWORD + " "},
        {"auth_username": "owner", "auth_password": h.PASSWORD.upper()},
        {"auth_username": "x" * 300, "auth_password": h.PASSWORD},
        {"auth_username": "owner\x00", "auth_password": h.PASSWORD},
        {"auth_username": "owner", "auth_password": "x" * 300},
        {"auth_username": "owner", "auth_password": "x\x00"},
    ],
)
def test_bad_credentials_are_401(client, actors, creds):
    h.assert_error(h.call(client, LIST, **creds), 401)
    h.assert_error(h.call(client, GET, **creds, uniqueid="x"), 401)


def test_string_rules_do_not_apply_to_credentials(client, actors):
    long_pw = "p\u00e9" * 200  # 400 code points
    make_leg("a", 11)
    who = h.actor(actors.customer.customer, "u" + "\u00e9" * 254, password=long_pw)
    assert ids_of(client, who) == ["a"]
    # Except NUL: PBKDF2 ignores a trailing one, so a password holding it is refused.
    nul = h.actor(actors.customer.customer, "nul", password="a\x00b")
    h.assert_error(ask(client, nul), 401)


def test_disabled_user_or_own_customer_is_401(client, actors):
    make_leg("a", 11)
    who = actors.customer
    assert ids_of(client, who) == ["a"]
    who.user.enabled = False
    who.user.save()
    h.assert_error(ask(client, who), 401)
    h.assert_error(ask(client, who, GET, uniqueid="a"), 401)
    who.user.enabled = True
    who.user.save()
    Customer.objects.filter(pk=11).update(enabled=False)
    h.assert_error(ask(client, who), 401)
    h.assert_error(ask(client, who, GET, uniqueid="a"), 401)


def test_disabled_parent_customer_does_not_lock_out_the_user(client, actors):
    # Only the user's *own* customer is checked (section 2).
    make_leg("a", 11)
    Customer.objects.filter(pk=10).update(enabled=False)
    assert ids_of(client, actors.customer) == ["a"]


def test_role_without_cdrs_or_callshop_is_402(client, actors):
    who = h.actor(actors.customer.customer, "noprivs", role=_role(["archive", "cdr"]))
    h.assert_error(ask(client, who), 402)
    h.assert_error(ask(client, who, start="x", archive="1", customer="system"), 402)
    h.assert_error(ask(client, who, GET, uniqueid="a"), 402)
    h.assert_error(ask(client, who, GET, customer="x"), 402)
    empty = h.actor(actors.customer.customer, "empty", role=_role([]))
    h.assert_error(ask(client, empty), 402)


def test_role_with_only_callshop_passes(client, actors):
    make_leg("a", 11)
    who = h.actor(actors.customer.customer, "shop", role=_role(["callshop"]))
    assert ids_of(client, who) == ["a"]
    h.assert_ok(ask(client, who, GET, uniqueid="a"))


def test_archive_without_privilege_is_402_before_bad_parameters(client, actors):
    who = h.actor(actors.reseller.customer, "noarch", ["cdrs"])
    for value in ["1", "01", "0001"]:
        h.assert_error(ask(client, who, archive=value), 402)
    h.assert_error(ask(client, who, archive="1", start="x", sort="nope"), 402)
    h.assert_ok(ask(client, who, archive="0"))
    h.assert_ok(ask(client, who, archive=""))
    h.assert_invalid(ask(client, who, archive="2"), "archive")
    h.assert_invalid(ask(client, who, archive="+1"), "archive")
    h.assert_invalid(ask(client, who, archive=" 1"), "archive")
    h.assert_invalid(ask(client, who, archive="-1"), "archive")


def test_archive_in_a_json_body_without_privilege_is_402(client, actors):
    who = h.actor(actors.reseller.customer, "noarch", ["cdrs"])
    h.assert_error(h.post_json(client, LIST, {**who.creds, "archive": 1}), 402)
    h.assert_error(h.post_json(client, LIST, {**who.creds, "archive": "01"}), 402)


def test_customer_system_by_a_non_owner_is_402(client, actors):
    for who in (actors.reseller, actors.customer, actors.charlie):
        h.assert_error(ask(client, who, customer="system"), 402)
        h.assert_error(ask(client, who, customer="system", recurse=1, start="x"), 402)
    h.assert_ok(ask(client, actors.owner, customer="system"))


def test_rate_plan_without_cdrs_is_403(client, actors):
    cust = actors.customer.customer
    cust.rate_plan = _plan(["voicemail"])
    cust.save()
    h.assert_error(ask(client, actors.customer), 403)
    h.assert_error(ask(client, actors.customer, start="x", sort="x"), 403)
    h.assert_error(ask(client, actors.customer, GET, uniqueid="a"), 403)
    h.assert_error(ask(client, actors.customer, GET), 403)
    cust.rate_plan = _plan([])
    cust.save()
    h.assert_error(ask(client, actors.customer), 403)


def test_role_402_is_checked_before_rate_plan_403(client, actors):
    cust = actors.customer.customer
    cust.rate_plan = _plan(["voicemail"])
    cust.save()
    noarch = h.actor(cust, "noarch", ["cdrs"])
    h.assert_error(ask(client, noarch, archive=1), 402)
    noprivs = h.actor(cust, "noprivs", role=_role(["archive"]))
    h.assert_error(ask(client, noprivs), 402)
    h.assert_error(ask(client, actors.reseller, customer="system"), 402)


def test_rate_plan_with_cdrs_or_no_rate_plan_is_unrestricted(client, actors):
    make_leg("a", 11)
    cust = actors.customer.customer
    assert cust.rate_plan is None
    assert ids_of(client, actors.customer) == ["a"]
    cust.rate_plan = _plan(["cdrs", "voicemail"])
    cust.save()
    assert ids_of(client, actors.customer) == ["a"]


def test_rate_plan_of_a_parent_does_not_matter(client, actors):
    make_leg("a", 11)
    reseller = actors.reseller.customer
    reseller.rate_plan = _plan([])
    reseller.save()
    assert ids_of(client, actors.customer) == ["a"]


# --- section 2: 500 ------------------------------------------------------------------

SECRET_SQL = 'SELECT "cdrs_leg"."uniqueid" FROM "cdrs_leg" -- password=hunter2'


def _fail_with(monkeypatch, exc: Exception) -> None:
    """Make the list and get queries fail as a broken database would."""

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr("cdrs.queries.list_page", boom)
    monkeypatch.setattr("cdrs.queries.get_row", boom)


@pytest.mark.parametrize(
    ("exc", "key"),
    [
        (OperationalError(f"could not connect to server: {SECRET_SQL}"), "database"),
        (DatabaseError(f"syntax error at or near {SECRET_SQL}"), "database"),
        (OperationalError("canceling statement due to statement timeout"), "timeout"),
    ],
)
@pytest.mark.parametrize("path", [LIST, GET])
def test_database_failures_are_a_500_envelope_without_details(
    client, actors, monkeypatch, settings, exc, key, path
):
    _fail_with(monkeypatch, exc)
    for status_setting, http in [("200", 200), ("code", 500)]:
        settings.ENSWITCH_HTTP_STATUS = status_setting
        answer = ask(client, actors.customer, path, uniqueid="a")
        assert answer.status == http
        assert answer.http["Content-Type"] == "application/json; charset=utf-8"
        assert set(answer.body) == {"responses"}
        (entry,) = answer.responses
        assert entry["code"] == "500"
        assert entry["key"] == key
        assert entry["message"]
        for leak in ("hunter2", "SELECT", "cdrs_leg", "Traceback", "password", "canceling"):
            assert leak not in answer.raw.decode(), leak


def test_unexpected_failures_are_a_500_envelope(client, actors, monkeypatch):
    _fail_with(monkeypatch, RuntimeError(f"internal detail {SECRET_SQL}"))
    answer = ask(client, actors.customer, limit=0)
    (entry,) = answer.responses
    assert entry["code"] == "500"
    assert entry["key"]
    assert " " not in entry["key"]
    assert "hunter2" not in answer.raw.decode()
    assert "internal detail" not in answer.raw.decode()


def test_a_stream_that_fails_before_its_first_row_is_a_500_envelope(client, actors, monkeypatch):
    def failing_stream(*args, **kwargs):
        raise OperationalError(f"server closed the connection: {SECRET_SQL}")
        yield b""  # pragma: no cover - a generator that fails when first read

    monkeypatch.setattr("cdrs.views.stream_rows", failing_stream)
    answer = ask(client, actors.customer, limit=0)
    (entry,) = answer.responses
    assert (entry["code"], entry["key"]) == ("500", "database")
    assert "hunter2" not in answer.raw.decode()


def test_http_status_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ENSWITCH_HTTP_STATUS", "code")
    spec = importlib.util.spec_from_file_location("settings_copy", settings_module_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ENSWITCH_HTTP_STATUS == "code"
    monkeypatch.delenv("ENSWITCH_HTTP_STATUS")
    spec.loader.exec_module(module)
    assert module.ENSWITCH_HTTP_STATUS == "200"


def settings_module_path() -> str:
    import enswitch.settings

    return enswitch.settings.__file__
