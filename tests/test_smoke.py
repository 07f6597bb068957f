import pytest
from django.db import connection

from cdrs.models import Leg
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_code_point_order_whatever_the_locale():
    owner = f.customer()
    for uid in ["b", "B", "a", "10", "9", "é", "z"]:
        f.leg(owner, uniqueid=uid)
    got = list(Leg.objects.order_by("uniqueid").values_list("uniqueid", flat=True))
    assert got == sorted(got, key=lambda s: [ord(c) for c in s]), connection.vendor
