from __future__ import annotations

import pytest
from django.core.cache import caches

from tests.replica_helpers import REPLICA_MODE, ReplayedClient, ReplayWaits


def pytest_collection_modifyitems(config, items):
    # Read replicas: the standby sees only committed data (tests/replica_helpers.py).
    if not REPLICA_MODE:
        return
    committed = pytest.mark.django_db(transaction=True, databases="__all__")
    for item in items:
        if item.get_closest_marker("django_db") or "db" in getattr(item, "fixturenames", ()):
            item.add_marker(committed, append=False)


def pytest_terminal_summary(terminalreporter):
    if REPLICA_MODE:
        terminalreporter.write_line(
            f"read replicas: {ReplayWaits.count} requests waited for the standby's replay, "
            f"{ReplayWaits.seconds:.1f} s in all; {ReplayWaits.on_standby} read legs there"
        )


@pytest.fixture
def client():
    """Django's test client; with read replicas, one that waits for their replay."""
    from django.test import Client

    return ReplayedClient() if REPLICA_MODE else Client()


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # Real hashers cost ~0.3 s a password; tests that need them override this.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_login_throttling(settings):
    # Many tests fail logins on purpose; tests/test_throttle.py turns the limits back on.
    settings.ENSWITCH_AUTH_THROTTLE = False


def _clear_caches() -> None:
    for alias in ("default", "shared"):
        try:
            caches[alias].clear()
        except Exception:  # noqa: BLE001, S110 - no database access in this test: nothing cached
            pass


@pytest.fixture(autouse=True)
def _clear_cache():
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture
def actors():
    """The named actors of tests/api_helpers.py (make_actors); some files define their own."""
    from tests import api_helpers

    return api_helpers.make_actors()



@pytest.fixture
def single_node(django_db_blocker):
    """Skips a test of how one PostgreSQL server does something that a Citus cluster does
    another way (each such test says why; docs/scaling.md has the design)."""
    from enswitch import citus

    with django_db_blocker.unblock():
        distributed = citus.is_distributed()
    if distributed:
        pytest.skip("one PostgreSQL server only: the Citus cluster does this another way")
