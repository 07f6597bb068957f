"""Small builders for hand-made scenarios; larger data comes from the dataset generator."""

from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

from cdrs.models import ArchivedLeg, ArchivedLegCost, Leg, LegCost
from customers.models import Currency, Customer, RatePlan, Role, User

_ids = count(1000)


def currency(code: str = "USD", value: str = "1") -> Currency:
    obj, _ = Currency.objects.update_or_create(code=code, defaults={"value": Decimal(value)})
    return obj


def role(privileges: list[str] | None = None, name: str = "Role") -> Role:
    return Role.objects.create(id=next(_ids), name=name, privileges=privileges or ["cdrs"])


def rate_plan(features: list[str] | None = None) -> RatePlan:
    return RatePlan.objects.create(id=next(_ids), name="Plan", features=features or ["cdrs"])


def customer(
    parent: Customer | None = None,
    *,
    name: str = "",
    bill_type: str = "postpaid",
    cur: Currency | None = None,
    **kw: Any,
) -> Customer:
    cid = kw.pop("id", None) or next(_ids)
    return Customer.objects.create(
        id=cid,
        parent=parent,
        name=name or f"Customer {cid}",
        bill_type=bill_type,
        currency=cur or currency(),
        **kw,
    )


def user(
    cust: Customer, *, username: str = "", password: str = "pw", privileges=None, **kw: Any
) -> User:
    u = User(
        username=username or f"user{next(_ids)}",
        customer=cust,
        role=kw.pop("role", None) or role(privileges),
        **kw,
    )
    u.set_password(password)
    u.save()
    return u


def leg(
    scustomer: Customer, *, archived: bool = False, costs: list[dict] | None = None, **kw: Any
) -> Leg | ArchivedLeg:
    n = next(_ids)
    start = kw.pop("start", 1_700_000_000 + n)
    fields = {
        "uniqueid": f"{start}.{n}",
        "callid": f"call{n}",
        "start": start,
        "end": start + 60,
        "talktime": 30,
        "status": "answer",
        "direction": "out",
    }
    fields.update(kw)
    model, cost_model = (ArchivedLeg, ArchivedLegCost) if archived else (Leg, LegCost)
    obj = model.objects.create(scustomer=scustomer, **fields)
    for c in costs or []:
        cost_model.objects.create(leg=obj, **c)
    return obj
