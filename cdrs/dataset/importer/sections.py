"""The main file's sections: declared once (fields, kinds, keys), checked, written."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cdrs.dataset.importer.errors import Errors
from cdrs.dataset.importer.values import MAX_STR, MISSING, RATE, int_problem, show, string_problem
from customers.models import (
    BillType,
    Card,
    Currency,
    Customer,
    Invoice,
    Peer,
    RatePlan,
    Role,
    User,
)

if TYPE_CHECKING:
    from cdrs.dataset.importer.tree import Tree


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # id | ref | str | bool | words | enum | rate
    required: bool = False
    default: Any = None
    target: str = ""  # ref: the section referred to
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    max_len: int = MAX_STR
    secret: bool = False  # never shown in a message


@dataclass(frozen=True)
class _Section:
    name: str
    singular: str
    key: str
    fields: tuple[_Field, ...]

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


_CURRENCY_CODE_LEN = Currency._meta.get_field("code").max_length

SECTIONS: tuple[_Section, ...] = (
    _Section(
        "currencies",
        "currency",
        "code",
        (
            _Field("code", "str", required=True, nonempty=True, max_len=_CURRENCY_CODE_LEN),
            _Field("value", "rate", required=True),
        ),
    ),
    _Section(
        "rate_plans",
        "rate plan",
        "id",
        (
            _Field("id", "id", required=True),
            _Field("name", "str", required=True),
            _Field("features", "words", default=()),
        ),
    ),
    _Section(
        "roles",
        "role",
        "id",
        (
            _Field("id", "id", required=True),
            _Field("name", "str", required=True),
            _Field("privileges", "words", default=()),
        ),
    ),
    _Section(
        "customers",
        "customer",
        "id",
        (
            _Field("id", "id", required=True),
            _Field("parent", "ref", target="customers"),
            _Field("name", "str", required=True),
            _Field("bill_type", "enum", required=True, choices=tuple(BillType.values)),
            _Field("currency", "ref", required=True, target="currencies"),
            _Field("rate_plan", "ref", target="rate_plans"),
            _Field("enabled", "bool", default=True),
        ),
    ),
    _Section(
        "users",
        "user",
        "username",
        (
            _Field("username", "str", required=True, nonempty=True),
            # An empty password can never log in.
            _Field("password", "str", required=True, nonempty=True, secret=True),
            _Field("customer", "ref", required=True, target="customers"),
            _Field("role", "ref", required=True, target="roles"),
            _Field("enabled", "bool", default=True),
        ),
    ),
    _Section(
        "peers",
        "peer",
        "id",
        (_Field("id", "id", required=True), _Field("name", "str", default="")),
    ),
    _Section(
        "cards",
        "card",
        "id",
        (
            _Field("id", "id", required=True),
            _Field("customer", "ref", required=True, target="customers"),
            _Field("name", "str", default=""),
        ),
    ),
    _Section(
        "invoices",
        "invoice",
        "id",
        (
            _Field("id", "id", required=True),
            _Field("customer", "ref", required=True, target="customers"),
        ),
    ),
)
SECTION_BY_NAME = {s.name: s for s in SECTIONS}
SINGULAR = {s.name: s.singular for s in SECTIONS}
TOP_LEVEL_KEYS = frozenset(SECTION_BY_NAME) | {"cdrs"}

# Where each section's keys already stored come from.
_STORED_KEYS: dict[str, Callable[[], Iterable[Any]]] = {
    "currencies": lambda: Currency.objects.values_list("code", flat=True),
    "rate_plans": lambda: RatePlan.objects.values_list("id", flat=True),
    "roles": lambda: Role.objects.values_list("id", flat=True),
    "customers": lambda: Customer.objects.values_list("id", flat=True),
    "peers": lambda: Peer.objects.values_list("id", flat=True),
    "cards": lambda: Card.objects.values_list("id", flat=True),
    "invoices": lambda: Invoice.objects.values_list("id", flat=True),
}


def _check_value(f: _Field, value: Any) -> tuple[Any, str | None]:
    """The value to store, or a problem. Left out or null, an optional field takes its
    default (a reference: none)."""
    if value is None and not f.required:
        return (list(f.default) if f.kind == "words" else f.default), None
    kind = f.kind
    if kind == "id":
        return value, int_problem(value, positive=True)
    if kind == "ref":
        if value is None:
            return None, "must not be null"
        if f.target == "currencies":
            return value, string_problem(value, nonempty=True, max_len=_CURRENCY_CODE_LEN)
        return value, int_problem(value, positive=True)
    if kind == "str":
        return value, string_problem(value, nonempty=f.nonempty, max_len=f.max_len, secret=f.secret)
    if kind == "bool":
        return value, None if type(value) is bool else f"must be true or false, not {show(value)}"
    if kind == "words":
        if type(value) is not list:
            return value, f"must be a list of words, not {show(value)}"
        for word in value:
            problem = string_problem(word, nonempty=True)
            if problem:
                return value, f"each word {problem}"
        return list(value), None
    if kind == "enum":
        if value not in f.choices:
            return value, f"{show(value)} is not one of: {', '.join(f.choices)}"
        return value, None
    if kind == "rate":
        if type(value) is not str or not RATE.fullmatch(value):
            return value, (f'must be a positive decimal string such as "1.08", not {show(value)}')
        if Decimal(value) <= 0:
            return value, "must be more than 0"
        return Decimal(value), None
    raise AssertionError(kind)


@dataclass
class Item:
    place: str
    values: dict[str, Any]


@dataclass
class Objects:
    items: dict[str, list[Item]]
    known: dict[str, set[Any]]  # keys in the file or already stored, per section


def check_objects(doc: Mapping[str, Any], errors: Errors) -> Objects:
    items: dict[str, list[Item]] = {s.name: [] for s in SECTIONS}
    file_keys: dict[str, set[Any]] = {s.name: set() for s in SECTIONS}
    for section in SECTIONS:
        raw = doc.get(section.name)
        if raw is None:
            continue
        if type(raw) is not list:
            errors.add(f"{section.name}: must be a list, not {show(raw)}")
            continue
        first_at: dict[Any, int] = {}
        for i, obj in enumerate(raw):
            place = f"{section.name}[{i}]"
            if type(obj) is not dict:
                errors.add(f"{place}: must be an object, not {show(obj)}")
                continue
            for key in obj:
                if key not in section.field_names:
                    errors.add(f"{place}.{key}: unknown field")
            values: dict[str, Any] = {}
            problems: set[str] = set()
            for f in section.fields:
                value = obj.get(f.name, MISSING)
                if value is MISSING and f.required:
                    errors.add(f"{place}.{f.name}: missing")
                    problems.add(f.name)
                    continue
                clean, problem = _check_value(f, None if value is MISSING else value)
                if problem:
                    errors.add(f"{place}.{f.name}: {problem}")
                    problems.add(f.name)
                values[f.name] = clean
            key = values.get(section.key)
            if section.key not in problems:
                if key in first_at:
                    errors.add(
                        f"{place}.{section.key}: {show(key)} appears twice in {section.name} "
                        f"(also {section.name}[{first_at[key]}])"
                    )
                    continue
                first_at[key] = i
                file_keys[section.name].add(key)
            if not problems:
                items[section.name].append(Item(place, values))

    known = {name: set(keys) for name, keys in file_keys.items()}
    for name, stored in _STORED_KEYS.items():
        known[name].update(stored())
    for section in SECTIONS:
        for item in items[section.name]:
            for f in section.fields:
                value = item.values.get(f.name)
                if f.kind == "ref" and value is not None and value not in known[f.target]:
                    errors.add(f"{item.place}.{f.name}: no {SINGULAR[f.target]} {show(value)}")
    return Objects(items, known)


def write_objects(objects: Objects, tree: Tree, hashes: dict[str, str]) -> dict[str, int]:
    items = objects.items

    def upsert(model: type, rows: list[Any], unique: list[str], update: list[str]) -> None:
        if rows:
            model.objects.bulk_create(
                rows,
                batch_size=1000,
                update_conflicts=True,
                unique_fields=unique,
                update_fields=update,
            )

    upsert(
        Currency,
        [Currency(code=i.values["code"], value=i.values["value"]) for i in items["currencies"]],
        ["code"],
        ["value"],
    )
    upsert(
        RatePlan,
        [
            RatePlan(id=i.values["id"], name=i.values["name"], features=i.values["features"])
            for i in items["rate_plans"]
        ],
        ["id"],
        ["name", "features"],
    )
    upsert(
        Role,
        [
            Role(id=i.values["id"], name=i.values["name"], privileges=i.values["privileges"])
            for i in items["roles"]
        ],
        ["id"],
        ["name", "privileges"],
    )
    upsert(
        Peer,
        [Peer(id=i.values["id"], name=i.values["name"]) for i in items["peers"]],
        ["id"],
        ["name"],
    )
    customers = [
        Customer(
            id=v["id"],
            parent_id=v["parent"],
            name=v["name"],
            bill_type=v["bill_type"],
            currency_id=v["currency"],
            rate_plan_id=v["rate_plan"],
            enabled=v["enabled"],
            path=tree.path[v["id"]],
            depth=tree.depth[v["id"]],
        )
        for v in (i.values for i in items["customers"])
    ]
    # At most one row may have depth 0 at any moment (a unique index, checked row by
    # row): a former owner must stop being one before the new owner is written.
    customers.sort(key=lambda c: -c.depth)
    upsert(
        Customer,
        customers,
        ["id"],
        ["parent", "name", "bill_type", "currency", "rate_plan", "enabled", "path", "depth"],
    )
    if tree.moved:
        Customer.objects.bulk_update(tree.moved, ["path", "depth"], batch_size=1000)
    upsert(
        Card,
        [
            Card(id=v["id"], customer_id=v["customer"], name=v["name"])
            for v in (i.values for i in items["cards"])
        ],
        ["id"],
        ["customer", "name"],
    )
    upsert(
        Invoice,
        [
            Invoice(id=v["id"], customer_id=v["customer"])
            for v in (i.values for i in items["invoices"])
        ],
        ["id"],
        ["customer"],
    )
    upsert(
        User,
        [
            User(
                username=v["username"],
                password=hashes[v["username"]],
                customer_id=v["customer"],
                role_id=v["role"],
                enabled=v["enabled"],
            )
            for v in (i.values for i in items["users"])
        ],
        ["username"],
        ["password", "customer", "role", "enabled"],
    )
    return {name: len(section) for name, section in items.items()}
