"""generate_dataset: repeatable, realistic, and loadable as it comes."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import orjson
import pytest
from django.core.management import call_command

from cdrs.dataset.files import write_dataset
from cdrs.dataset.generator import Options, generate
from cdrs.dataset.importer import import_dataset
from cdrs.models import ArchivedLeg, Leg, LegCost
from customers.models import Customer, Role, User

pytestmark = pytest.mark.django_db

SMALL = Options(customers=40, depth=4, legs=1500, seed=7)


def written(options: Options, *, jsonl: bool = False) -> tuple[bytes, bytes]:
    out, cdrs = io.BytesIO(), io.BytesIO()
    write_dataset(out, options, cdrs_out=cdrs if jsonl else None)
    return out.getvalue(), cdrs.getvalue()


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return generate(SMALL)


def test_the_same_seed_gives_the_same_bytes():
    assert written(SMALL) == written(SMALL)
    assert written(SMALL, jsonl=True) == written(SMALL, jsonl=True)
    other = Options(customers=40, depth=4, legs=1500, seed=8)
    assert written(other)[0] != written(SMALL)[0]


def test_the_file_is_json_and_the_jsonl_holds_the_same_legs(data):
    whole, _ = written(SMALL)
    main, lines = written(SMALL, jsonl=True)

    assert orjson.loads(whole) == data
    assert "cdrs" not in orjson.loads(main)
    assert [orjson.loads(line) for line in lines.splitlines()] == data["cdrs"]


def test_legs_come_in_time_order_within_the_period(data):
    starts = [leg["start"] for leg in data["cdrs"]]
    assert starts == sorted(starts)
    assert SMALL.end - SMALL.days * 86_400 <= starts[0] <= starts[-1] < SMALL.end
    assert len(data["cdrs"]) == SMALL.legs
    assert len({leg["uniqueid"] for leg in data["cdrs"]}) == SMALL.legs


def test_it_loads_cleanly_and_users_log_in_with_the_password(data):
    result = import_dataset(data)

    assert result.legs == SMALL.legs
    assert Customer.objects.count() == SMALL.customers
    assert Leg.objects.count() + ArchivedLeg.objects.count() == SMALL.legs
    assert User.objects.get(username="owner").check_password("secret")
    assert all(u.check_password("secret") for u in User.objects.all())
    assert max(Customer.objects.values_list("depth", flat=True)) == SMALL.depth


def test_the_tree_has_resellers_every_billing_type_and_disabled_customers(data):
    customers = data["customers"]
    parents = Counter(c["parent"] for c in customers)

    assert [c["id"] for c in customers if c["parent"] is None] == [1]
    assert sum(1 for cid in parents if cid not in (None, 1)) >= 3  # resellers below the owner
    assert {c["bill_type"] for c in customers} == {
        "callshop", "external", "none", "postpaid", "prepaid", "prepaid_calls", "prepaid_invoices"
    }  # fmt: skip
    assert any(not c["enabled"] for c in customers)
    assert any(c["rate_plan"] is None for c in customers)
    plans = {p["id"]: p["features"] for p in data["rate_plans"]}
    assert any("cdrs" not in features for features in plans.values())
    assert any(c["rate_plan"] and "cdrs" not in plans[c["rate_plan"]] for c in customers)


def test_roles_and_users_of_every_kind(data):
    kinds = {r["id"]: frozenset(r["privileges"]) for r in data["roles"]}
    assert any({"cdrs", "archive"} <= k for k in kinds.values())
    assert any(k & {"cdrs", "callshop"} == {"callshop"} for k in kinds.values())
    assert any(k & {"cdrs", "callshop", "archive"} == {"cdrs"} for k in kinds.values())
    assert any(not k & {"cdrs", "callshop"} for k in kinds.values())

    users = {u["username"]: u for u in data["users"]}
    assert users["owner"]["customer"] == 1
    assert {"cdrs", "archive"} <= kinds[users["owner"]["role"]]
    assert {kinds[u["role"]] for u in users.values()} == set(kinds.values())
    depth = _depths(data)
    assert len({depth[u["customer"]] for u in users.values()}) >= 3
    assert {u["password"] for u in users.values()} == {"secret"}


def test_legs_show_the_variety_the_api_must_handle(data):
    legs = data["cdrs"]
    by_callid = Counter(leg["callid"] for leg in legs)

    assert max(by_callid.values()) >= 2  # calls of several legs
    assert {leg["status"] for leg in legs} == {
        "answer", "noanswer", "busy", "cancel", "congestion", "chanunavail"
    }  # fmt: skip
    assert {leg["direction"] for leg in legs} == {"in", "out", "internal"}
    assert {"phone", "external", "queue", "voicemail"} <= {leg["dtype"] for leg in legs}
    assert len({len(leg["cnumber"]) for leg in legs}) >= 4
    names = {leg["callername"] for leg in legs}
    assert {"É", "ñ", "Ø"} <= set("".join(names))
    assert any(n != n.lower() and n != n.upper() for n in names)
    assert any(leg["dcustomer"] not in (None, leg["scustomer"]) for leg in legs)
    assert any(leg["archived"] for leg in legs)
    assert any(not leg["archived"] for leg in legs)
    assert any(leg["card"] for leg in legs)
    assert any(leg["invoice"] for leg in legs)
    assert any(leg["peer"] for leg in legs)


def test_costs_along_the_reseller_chain_for_cards_in_several_currencies(data):
    parent = {c["id"]: c["parent"] for c in data["customers"]}
    costs = [(leg, c) for leg in data["cdrs"] for c in leg["costs"]]

    assert len({c["currency"] for _, c in costs}) >= 3
    assert len(data["currencies"]) >= 3
    assert any(c["cost"].startswith("-") for _, c in costs)  # credits
    assert any("card" in c for _, c in costs)
    chains = [leg for leg in data["cdrs"] if sum("customer" in c for c in leg["costs"]) >= 3]
    assert chains
    leg = chains[0]
    charged = [c["customer"] for c in leg["costs"] if "customer" in c]
    assert charged[0] == leg["scustomer"]
    assert all(parent[a] == b for a, b in zip(charged, charged[1:], strict=False))


def test_command_writes_the_files(tmp_path):
    main, legs = tmp_path / "main.json", tmp_path / "legs.jsonl"
    call_command(
        "generate_dataset",
        "--customers", "12", "--depth", "3", "--legs", "50", "--seed", "3",
        "--out", str(main), "--cdrs-out", str(legs),
    )  # fmt: skip

    assert len(orjson.loads(main.read_bytes())["customers"]) == 12
    assert len(legs.read_bytes().splitlines()) == 50
    call_command("import_dataset", str(main), "--cdrs", str(legs))
    assert Leg.objects.count() + ArchivedLeg.objects.count() == 50
    assert LegCost.objects.exists()
    assert Role.objects.count() == len(orjson.loads(main.read_bytes())["roles"])


def _depths(data: dict[str, Any]) -> dict[int, int]:
    parent = {c["id"]: c["parent"] for c in data["customers"]}

    def depth(cid: int) -> int:
        return 0 if parent[cid] is None else 1 + depth(parent[cid])

    return {cid: depth(cid) for cid in parent}
