"""Admin hardening: no lookups on secrets, a throttled login, no 500 on bad filter values."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from cdrs.models import ArchivedLeg, LegCost
from customers.models import Customer, User
from tests import api_helpers as h
from tests import factories as f
from tests.test_admin import build_world, url

pytestmark = pytest.mark.django_db

STAFF_PASSWORD = "Kettle-Orbit-7731"


def staff(*permissions: str, username: str = "clerk"):
    user = get_user_model().objects.create_user(username, password=STAFF_PASSWORD, is_staff=True)
    for codename in permissions:
        app_label, _, name = codename.partition(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=name)
        )
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "lookup",
    [
        "password__startswith=pbkdf2_sha256$",
        "password__regex=^md5",
        "password=x",
        "password__gt=a",
        "customer__user__password__startswith=p",
    ],
)
def test_lookups_on_password_hashes_are_refused(lookup):
    world = build_world()
    clerk = staff("customers.view_user")
    response = logged_in(clerk).get(url(User, "changelist") + "?" + lookup)
    assert response.status_code == 400
    assert world.api_user.password.encode() not in response.content


def test_lookups_on_staff_password_hashes_are_refused():
    boss = get_user_model().objects.create_superuser("boss", password=STAFF_PASSWORD)
    response = logged_in(boss).get(
        reverse("admin:auth_user_changelist") + "?password__startswith=pbkdf2"
    )
    assert response.status_code == 400


def test_ordinary_lookups_still_work():
    world = build_world()
    clerk = staff("customers.view_user")
    response = logged_in(clerk).get(url(User, "changelist") + "?enabled__exact=1")
    assert response.status_code == 200
    assert world.api_user.username.encode() in response.content


@pytest.mark.parametrize("value", ["²", "١", "1" * 30, "-1", "9" * 19, " 1"])
@pytest.mark.parametrize(
    ("model", "parameter"),
    [
        (Customer, "parent_id"),
        (Customer, "id"),
        (ArchivedLeg, "scustomer"),
        (ArchivedLeg, "id__exact"),
        (LegCost, "customer__id__exact"),
        (User, "customer"),
    ],
)
def test_bad_filter_values_are_never_a_500(admin_client, model, parameter, value):
    build_world()
    response = admin_client.get(url(model, "changelist") + "?" + h.query({parameter: value}))
    assert response.status_code in (200, 302, 400)
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")


# --- the admin login -------------------------------------------------------------------


@pytest.fixture
def limits(settings):
    settings.ENSWITCH_AUTH_THROTTLE = True
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = 3
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_USER = 6
    settings.ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = 9
    return settings


def admin_login(username: str, password: str, address: str = "10.0.0.1") -> bool:
    """True if the login succeeded (the admin index then answers)."""
    client = Client()
    client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": reverse("admin:index")},
        REMOTE_ADDR=address,
    )
    return client.get(reverse("admin:index")).status_code == 200


def admin_login_page(username: str, password: str, address: str = "10.0.0.1") -> str:
    response = Client().post(
        reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )
    return response.content.decode()


def test_the_admin_login_is_throttled(limits):
    staff(username="boss")
    for _ in range(3):
        assert not admin_login("boss", "wrong")
    assert "Too many failed logins" in admin_login_page("boss", STAFF_PASSWORD)
    assert not admin_login("boss", STAFF_PASSWORD)
    assert admin_login("boss", STAFF_PASSWORD, address="10.9.9.9")


def test_the_admin_and_the_api_count_apart(client, limits):
    staff(username="owner")
    f.user(f.customer(None, id=1), username="owner", password=h.PASSWORD)
    for _ in range(3):
        h.call(client, auth_username="owner", auth_password="wrong")  # REMOTE_ADDR 127.0.0.1
    assert h.call(client, auth_username="owner", auth_password=h.PASSWORD).keys == [
        "auth_throttled"
    ]
    assert admin_login("owner", STAFF_PASSWORD, address="127.0.0.1")
