"""Load a dataset (docs/dataset-format.md) into the store: all of it, or nothing.

1. The main file is read whole (it holds the small objects; call volumes that do not
   fit in memory come as JSONL) and every object in it is checked: types, required
   fields, enumerations, lengths, references to objects in the file or already stored,
   the customer tree (exactly one system owner, no cycles).
2. One transaction then writes the objects and streams the legs: each batch is checked,
   then written while the next one is being checked. From the first error on, nothing
   more is written but checking goes on to the end, so that every error is reported
   (up to a limit); the transaction is then rolled back. A killed process leaves
   nothing behind for the same reason.
3. IDs, currency codes, usernames and leg uniqueids identify objects, so loading a file
   again updates what it names; a leg's cost records become exactly those of the last
   file that names it; `archived` decides which pair of tables a leg lives in, and a leg
   that changes sides is moved, keeping its id.

Writing legs, by database:
- SQLite: executemany in batches.
- PostgreSQL: COPY. Into an empty store, COPY goes straight into the leg and cost
  tables with their secondary indexes (and, without the privilege to skip foreign-key
  triggers, their foreign keys) dropped, and rebuilt at the end: building an index once
  is several times cheaper than updating it row by row. There, JSONL batches are
  parsed, checked and formatted for COPY by worker processes, one per core, so that
  all cores work. Otherwise each batch is copied into a temporary staging table and
  applied set-based (upsert legs, replace costs).
"""

# Every name spliced into SQL below comes from the models' _meta or is a constant of
# this module; every value is a bound parameter or goes through COPY.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import gc
import io
import json
import multiprocessing
import os
import re
import signal
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO

import orjson
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from cdrs.models import ArchivedLeg, ArchivedLegCost, Direction, Leg, LegCost, fold_case
from customers.models import (
    PATH_SEP,
    BillType,
    Card,
    Currency,
    Customer,
    Invoice,
    Peer,
    RatePlan,
    Role,
    User,
    path_for,
)
from enswitch.db import write_transaction

ERROR_LIMIT = 100
BATCH_SIZE = 10_000
# Below this many legs, an empty PostgreSQL store is loaded like a non-empty one: the
# index rebuild only pays for itself on large loads.
BULK_MIN_LEGS = 50_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# A leg's start and end: what a date can show (1970-01-01 to 9999-12-31 23:59:59 UTC),
# well inside the API's 64-bit integers.
TIME_MIN, TIME_MAX = 0, 253_402_300_799
MAX_STR = 255

MISSING: Any = object()


class DatasetError(Exception):
    """The dataset has errors; nothing was written."""

    def __init__(self, messages: list[str], total: int | None = None) -> None:
        self.messages = messages
        self.total = len(messages) if total is None else total
        super().__init__(f"{self.total} error(s) in the dataset; nothing was written")

    def lines(self) -> list[str]:
        more = self.total - len(self.messages)
        return self.messages + ([f"... and {more} more"] if more > 0 else [])


class _Errors:
    """Every error counted, the first `limit` kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.messages: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.messages) < self.limit:
            self.messages.append(message)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            raise DatasetError(self.messages, self.total)


@dataclass
class ImportResult:
    counts: dict[str, int] = field(default_factory=dict)
    legs: int = 0
    archived_legs: int = 0
    costs: int = 0
    seconds: float = 0.0
    legs_seconds: float = 0.0
    method: str = ""

    @property
    def legs_per_second(self) -> float:
        return self.legs / self.legs_seconds if self.legs_seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: what was loaded, how long it took, legs a second (over the legs'
        part, which excludes reading the main file and hashing passwords)."""
        objects = ", ".join(f"{n:,} {name}" for name, n in self.counts.items() if n)
        legs = "no legs"
        if self.legs:
            legs = (
                f"{self.legs:,} legs ({self.archived_legs:,} archived, {self.costs:,} cost "
                f"records) in {self.legs_seconds:.1f} s: {self.legs_per_second:,.0f} legs/s "
                f"[{self.method}]"
            )
        return f"Imported {objects or 'no objects'}; {legs}; {self.seconds:.1f} s in all"


@dataclass
class Progress:
    legs: int  # legs checked so far
    bytes_read: int  # of the JSONL file
    bytes_total: int | None  # None when unknown (a pipe)
    seconds: float


# --- checking values -----------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        shown = orjson.dumps(value[:40]).decode()
        return shown[:-1] + '..."' if len(value) > 40 else shown
    if value is MISSING:
        return "nothing"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if type(value) is float and value.is_integer() and abs(value) >= 2**53:
        # JSON integers beyond 64 bits are read as floating point.
        return f"a number too large for a 64-bit integer (about {value:.3g})"
    return orjson.dumps(value).decode() if value is None or isinstance(value, bool) else str(value)


def _kind(value: Any) -> str:
    """What a value is, without showing it (for secrets)."""
    if value is MISSING or value is None:
        return "nothing" if value is MISSING else "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a value")


def _string_problem(
    value: Any, *, nonempty: bool = False, max_len: int = MAX_STR, secret: bool = False
) -> str | None:
    if type(value) is not str:
        return f"must be a string, not {_kind(value) if secret else _show(value)}"
    if nonempty and not value:
        return "must not be empty"
    if len(value) > max_len:
        return f"is {len(value)} characters long; at most {max_len}"
    if "\x00" in value:
        return "must not contain a NUL character"
    return None


def _int_problem(value: Any, *, positive: bool = False) -> str | None:
    if type(value) is not int:
        return f"must be an integer, not {_show(value)}"
    if positive and value <= 0:
        return f"must be a positive integer, not {value}"
    if not INT64_MIN <= value <= INT64_MAX:
        return f"{value} does not fit in a signed 64-bit integer"
    return None


def _time_problem(value: Any) -> str | None:
    problem = _int_problem(value)
    if problem is None and not TIME_MIN <= value <= TIME_MAX:
        return (
            f"{value} is not a Unix time from {TIME_MIN} (1970-01-01) to {TIME_MAX} "
            "(9999-12-31 23:59:59 UTC)" + (": milliseconds?" if value > TIME_MAX else "")
        )
    return problem


# Up to 18 digits before the point (max_digits 24 - 6 places), up to 6 after it.
_AMOUNT = re.compile(r"-?0*\d{1,18}(?:\.\d{1,6})?")
# Currency values: 30 digits, 12 places.
_RATE = re.compile(r"0*\d{1,18}(?:\.\d{1,12})?")


def _amount_problem(value: Any) -> str | None:
    if type(value) is not str:
        return f'must be a decimal string such as "0.0120", not {_show(value)}'
    if not _AMOUNT.fullmatch(value):
        return (
            f"{_show(value)} is not a decimal string with at most 18 digits before the "
            "point and 6 after it"
        )
    return None


# --- the objects of the main file ------------------------------------------------------


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
        return value, _int_problem(value, positive=True)
    if kind == "ref":
        if value is None:
            return None, "must not be null"
        if f.target == "currencies":
            return value, _string_problem(value, nonempty=True, max_len=_CURRENCY_CODE_LEN)
        return value, _int_problem(value, positive=True)
    if kind == "str":
        return value, _string_problem(
            value, nonempty=f.nonempty, max_len=f.max_len, secret=f.secret
        )
    if kind == "bool":
        return value, None if type(value) is bool else f"must be true or false, not {_show(value)}"
    if kind == "words":
        if type(value) is not list:
            return value, f"must be a list of words, not {_show(value)}"
        for word in value:
            problem = _string_problem(word, nonempty=True)
            if problem:
                return value, f"each word {problem}"
        return list(value), None
    if kind == "enum":
        if value not in f.choices:
            return value, f"{_show(value)} is not one of: {', '.join(f.choices)}"
        return value, None
    if kind == "rate":
        if type(value) is not str or not _RATE.fullmatch(value):
            return value, (f'must be a positive decimal string such as "1.08", not {_show(value)}')
        if Decimal(value) <= 0:
            return value, "must be more than 0"
        return Decimal(value), None
    raise AssertionError(kind)


@dataclass
class _Item:
    place: str
    values: dict[str, Any]


@dataclass
class _Objects:
    items: dict[str, list[_Item]]
    known: dict[str, set[Any]]  # keys in the file or already stored, per section


def _check_objects(doc: Mapping[str, Any], errors: _Errors) -> _Objects:
    items: dict[str, list[_Item]] = {s.name: [] for s in SECTIONS}
    file_keys: dict[str, set[Any]] = {s.name: set() for s in SECTIONS}
    for section in SECTIONS:
        raw = doc.get(section.name)
        if raw is None:
            continue
        if type(raw) is not list:
            errors.add(f"{section.name}: must be a list, not {_show(raw)}")
            continue
        first_at: dict[Any, int] = {}
        for i, obj in enumerate(raw):
            place = f"{section.name}[{i}]"
            if type(obj) is not dict:
                errors.add(f"{place}: must be an object, not {_show(obj)}")
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
                        f"{place}.{section.key}: {_show(key)} appears twice in {section.name} "
                        f"(also {section.name}[{first_at[key]}])"
                    )
                    continue
                first_at[key] = i
                file_keys[section.name].add(key)
            if not problems:
                items[section.name].append(_Item(place, values))

    known = {name: set(keys) for name, keys in file_keys.items()}
    for name, stored in _STORED_KEYS.items():
        known[name].update(stored())
    for section in SECTIONS:
        for item in items[section.name]:
            for f in section.fields:
                value = item.values.get(f.name)
                if f.kind == "ref" and value is not None and value not in known[f.target]:
                    errors.add(f"{item.place}.{f.name}: no {SINGULAR[f.target]} {_show(value)}")
    return _Objects(items, known)


# --- the customer tree -----------------------------------------------------------------


@dataclass
class _Tree:
    path: dict[int, str]
    depth: dict[int, int]
    moved: list[Customer]  # stored customers not in the file whose path changes


def _check_tree(customers: list[_Item], errors: _Errors) -> _Tree:
    """One system owner, no cycles; the materialized path of every customer.

    Bulk writes bypass Customer.save(), so paths are computed here for the whole tree
    (stored customers under one the file moves change too)."""
    stored = {
        cid: (parent, path, depth)
        for cid, parent, path, depth in Customer.objects.values_list(
            "id", "parent_id", "path", "depth"
        )
    }
    parent = {cid: p for cid, (p, _, _) in stored.items()}
    place: dict[int, str] = {}
    for item in customers:
        cid = item.values["id"]
        parent[cid] = item.values["parent"]
        place[cid] = item.place

    owners = [cid for cid, p in parent.items() if p is None]
    if parent and not owners:
        errors.add(
            'customers: no system owner: exactly one customer must have no parent ("parent": null)'
        )
    if len(owners) > 1:
        # Keep the stored owner, or the first in the file; blame the others.
        order = sorted(owners, key=lambda cid: (cid in place, _position(place.get(cid))))
        for cid in order[1:]:
            errors.add(
                f"{place[cid]}.parent: null, but customer {order[0]} is already the system "
                "owner (exactly one customer has no parent)"
            )

    path: dict[int, str] = {}
    depth: dict[int, int] = {}
    broken: set[int] = set()
    for start in parent:
        chain: list[int] = []
        on_chain: dict[int, int] = {}
        cur: int | None = start
        while cur is not None and cur not in path and cur not in broken:
            if cur in on_chain:
                cycle = chain[on_chain[cur] :]
                # A stored tree has no cycle: the file's customers made it; name the first.
                blamed = min(cycle, key=lambda c: (c not in place, _position(place.get(c))))
                at = cycle.index(blamed)
                shown = " → ".join(str(c) for c in [*cycle[at:], *cycle[:at], blamed])
                where = place.get(blamed) or f"customers: customer {blamed}"
                errors.add(f"{where}.parent: makes a cycle: {shown}")
                cur = None
                break
            if cur not in parent:  # a dangling reference, reported already
                cur = None
                break
            on_chain[cur] = len(chain)
            chain.append(cur)
            if parent[cur] is None:
                path[cur], depth[cur] = path_for(PATH_SEP, cur), 0
                chain.pop()
                break
            cur = parent[cur]
        if cur is None or cur in broken:
            broken.update(chain)
            continue
        for node in reversed(chain):
            p = parent[node]
            path[node], depth[node] = path_for(path[p], node), depth[p] + 1

    max_len = Customer._meta.get_field("path").max_length
    moved: list[Customer] = []
    for cid, p in path.items():
        if len(p) > max_len:
            where = place.get(cid) or f"customers: customer {cid} (already stored)"
            errors.add(f"{where}: nested too deep (its path is longer than {max_len} characters)")
        elif cid not in place and stored[cid][1:] != (p, depth[cid]):
            moved.append(Customer(id=cid, path=p, depth=depth[cid]))
    return _Tree(path, depth, moved)


def _position(place: str | None) -> int:
    return int(place.rsplit("[", 1)[1].rstrip("]")) if place else -1


# --- passwords -------------------------------------------------------------------------


def _hash_one(job: tuple[str, str | None]) -> str:
    password, stored = job
    # Keep a stored hash that already verifies: loading a file twice changes nothing.
    if stored and check_password(password, stored):
        return stored
    return make_password(password)


def _hash_passwords(users: list[_Item]) -> dict[str, str]:
    """Hashing is deliberately slow (PBKDF2: most of a second each); many users are
    hashed by a pool of processes (threads would share one core: hashing holds the GIL)."""
    names = [u.values["username"] for u in users]
    stored: dict[str, str] = {}
    for i in range(0, len(names), 500):
        chunk = names[i : i + 500]
        stored.update(User.objects.filter(username__in=chunk).values_list("username", "password"))
    jobs = [(u.values["password"], stored.get(u.values["username"])) for u in users]
    if not jobs:
        return {}
    started = time.monotonic()
    hashes = [_hash_one(jobs[0])]
    rest = jobs[1:]
    workers = min(os.cpu_count() or 1, len(rest))
    if workers > 1 and (time.monotonic() - started) * len(rest) > 1.0:
        # fork: the workers inherit the settings (PASSWORD_HASHERS) as they are now.
        # They leave through os._exit, so the database connection they also inherit is
        # never closed or used by them.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=quiet_worker
        ) as pool:
            hashes += pool.map(_hash_one, rest, chunksize=max(1, len(rest) // (workers * 4)))
    else:
        hashes += [_hash_one(job) for job in rest]
    return dict(zip(names, hashes, strict=True))


# --- writing the objects ---------------------------------------------------------------


def _write_objects(objects: _Objects, tree: _Tree, hashes: dict[str, str]) -> dict[str, int]:
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


# --- legs ------------------------------------------------------------------------------

# A checked leg, in the column order of LEG_COLUMNS (the leg tables' columns but `id`).
LEG_FIELDS = (
    "uniqueid",
    "callid",
    "start",
    "end",
    "talktime",
    "status",
    "direction",
    "stype",
    "snumber",
    "ctype",
    "cnumber",
    "dtype",
    "dnumber",
    "callername",
    "callername_folded",
    "scustomer",
    "dcustomer",
    "peer",
    "invoice",
    "card",
)
LEG_COLUMNS = tuple(Leg._meta.get_field(name).column for name in LEG_FIELDS)
COST_FIELDS = ("customer", "card", "cost", "tax", "currency")
COST_COLUMNS = tuple(LegCost._meta.get_field(name).column for name in COST_FIELDS)
if {f.column for f in Leg._meta.concrete_fields} != {"id", *LEG_COLUMNS} or {
    f.column for f in LegCost._meta.concrete_fields
} != {"id", "leg_id", *COST_COLUMNS}:  # pragma: no cover - a model changed: say so loudly
    raise ImportError("cdrs.dataset.importer: LEG_FIELDS/COST_FIELDS do not match the models")

_LEG_KEYS = frozenset(LEG_FIELDS) - {"callername_folded"} | {"archived", "costs"}
_OPTIONAL_STRINGS = ("stype", "snumber", "ctype", "cnumber", "dtype", "dnumber", "callername")
_OPTIONAL_REFS = (
    ("dcustomer", "customers"),
    ("peer", "peers"),
    ("invoice", "invoices"),
    ("card", "cards"),
)
_COST_KEYS = frozenset(COST_FIELDS)
_DIRECTIONS = frozenset(Direction.values)

# Places: "cdrs[12].scustomer" in the main file, "cdrs.jsonl line 12: scustomer" in JSONL.
Place = Callable[[int, str], str]


def _main_place(line: int, name: str) -> str:
    return f"cdrs[{line}].{name}" if name else f"cdrs[{line}]"


def _jsonl_place(filename: str) -> Place:
    def place(line: int, name: str) -> str:
        return f"{filename} line {line}: {name}" if name else f"{filename} line {line}"

    return place


@dataclass
class _Batch:
    place: Place
    lines: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # LEG_FIELDS order
    archived: list[bool] = field(default_factory=list)
    # (index of the leg in `rows`, customer, card, cost, tax, currency)
    costs: list[tuple[Any, ...]] = field(default_factory=list)


class _Slow(Exception):
    """The fast path saw something unusual: the detailed check decides."""


class _LegChecker:
    """Checks legs against what the file and the store hold.

    Two paths, for speed (at 50,000 legs a second every lookup counts): `check` runs a
    strict fast path that only accepts a leg when every rule plainly holds, and hands
    anything else to `_detailed`, which is the reference: it finds every problem of the
    leg and says where, or accepts the leg (with defaults filled in)."""

    def __init__(self, known: dict[str, set[Any]]) -> None:
        self.known = known
        # Caller names repeat (a company's name on every call it makes), and folding one
        # character at a time is slow: fold each distinct name once.
        self.folded: dict[str, str] = {}

    def check(self, items: Iterable[tuple[int, Any]], place: Place, errors: _Errors) -> _Batch:
        batch = _Batch(place)
        lines, rows, flags, costs = batch.lines, batch.rows, batch.archived, batch.costs
        customers = self.known["customers"]
        currencies = self.known["currencies"]
        cards = self.known["cards"]
        peers = self.known["peers"]
        invoices = self.known["invoices"]
        seen: dict[str, int] = {}
        leg_keys, cost_keys, directions = _LEG_KEYS, _COST_KEYS, _DIRECTIONS
        amount = _AMOUNT.fullmatch
        folded_names = self.folded
        STR, INT, DICT, LIST, MAXLEN = str, int, dict, list, MAX_STR  # noqa: N806
        LO, HI = TIME_MIN, TIME_MAX  # noqa: N806
        slow = (_Slow, KeyError, TypeError)

        for line, obj in items:
            try:
                if type(obj) is not DICT or not obj.keys() <= leg_keys:
                    raise _Slow
                get = obj.get
                uid = obj["uniqueid"]
                if uid in seen:
                    raise _Slow
                start, end, talk = obj["start"], obj["end"], obj["talktime"]
                scustomer, direction = obj["scustomer"], obj["direction"]
                callid, status = obj["callid"], obj["status"]
                stype, snumber = get("stype", ""), get("snumber", "")
                ctype, cnumber = get("ctype", ""), get("cnumber", "")
                dtype, dnumber = get("dtype", ""), get("dnumber", "")
                callername = get("callername", "")
                text = (uid, callid, status, direction, stype, snumber, ctype, cnumber)
                text += (dtype, dnumber, callername)
                # join() raises TypeError unless all are strings (None included).
                if not uid or "\x00" in "".join(text) or max(map(len, text)) > MAXLEN:
                    raise _Slow
                if type(start) is not INT or type(end) is not INT or type(talk) is not INT:
                    raise _Slow
                if not (LO <= start <= end <= HI and 0 <= talk <= end - start):
                    raise _Slow
                if direction not in directions:
                    raise _Slow
                if type(scustomer) is not INT or scustomer not in customers:
                    raise _Slow
                dcustomer, peer = get("dcustomer"), get("peer")
                invoice, card = get("invoice"), get("card")
                if dcustomer is not None and (
                    type(dcustomer) is not INT or dcustomer not in customers
                ):
                    raise _Slow
                if peer is not None and (type(peer) is not INT or peer not in peers):
                    raise _Slow
                if invoice is not None and (type(invoice) is not INT or invoice not in invoices):
                    raise _Slow
                if card is not None and (type(card) is not INT or card not in cards):
                    raise _Slow
                archived = get("archived", False)
                if archived is not True and archived is not False:
                    raise _Slow
                leg_costs = get("costs")
                k = len(rows)
                checked = []
                if leg_costs:
                    if type(leg_costs) is not LIST:
                        raise _Slow
                    for entry in leg_costs:
                        if type(entry) is not DICT or not entry.keys() <= cost_keys:
                            raise _Slow
                        e = entry.get
                        customer, card_charged = e("customer"), e("card")
                        if card_charged is None:
                            if type(customer) is not INT or customer not in customers:
                                raise _Slow
                        elif customer is None:
                            if type(card_charged) is not INT or card_charged not in cards:
                                raise _Slow
                        else:
                            raise _Slow
                        cost, tax, currency = entry["cost"], e("tax", "0"), entry["currency"]
                        if type(cost) is not STR or type(tax) is not STR or not amount(cost):
                            raise _Slow
                        if (
                            not amount(tax)
                            or currency not in currencies
                            or type(currency) is not STR
                        ):
                            raise _Slow
                        checked.append((k, customer, card_charged, cost, tax, currency))
                    if len(checked) > 1:
                        # One record per customer and one per card (a card's negated id
                        # cannot meet a customer's: ids are positive).
                        whos = [c[1] if c[2] is None else -c[2] for c in checked]
                        if len(set(whos)) < len(whos):
                            raise _Slow
                folded = folded_names.get(callername)
                if folded is None:
                    folded = fold_case(callername)
                    if len(folded_names) < 100_000:
                        folded_names[callername] = folded
                row = (
                    uid,
                    callid,
                    start,
                    end,
                    talk,
                    status,
                    direction,
                    stype,
                    snumber,
                    ctype,
                    cnumber,
                    dtype,
                    dnumber,
                    callername,
                    folded,
                    scustomer,
                    dcustomer,
                    peer,
                    invoice,
                    card,
                )
            except slow:
                found = self._detailed(obj)
                if isinstance(found, list):
                    for name, problem in found:
                        errors.add(f"{place(line, name)}: {problem}")
                    continue
                row, archived, checked = found
                uid = row[0]
                first = seen.get(uid)
                if first is not None:
                    errors.add(
                        f"{place(line, 'uniqueid')}: {_show(uid)} appears twice "
                        f"(also {place(first, '')})"
                    )
                    continue
                k = len(rows)
                checked = [(k, *c) for c in checked]
            seen[uid] = line
            lines.append(line)
            flags.append(archived)
            rows.append(row)
            if checked:
                costs += checked
        return batch

    def _detailed(self, obj: Any) -> list[tuple[str, str]] | tuple[tuple[Any, ...], bool, list]:
        """Every problem of one leg as (field, problem); or, if none, the checked leg."""
        if type(obj) is not dict:
            return [("", f"must be an object, not {_show(obj)}")]
        customers = self.known["customers"]
        cards = self.known["cards"]
        bad = [(k, "unknown field") for k in obj if k not in _LEG_KEYS]
        get = obj.get

        uid = get("uniqueid", MISSING)
        if (problem := _missing_or(uid, _string_problem, nonempty=True)) is not None:
            bad.append(("uniqueid", problem))
        bad += [
            (name, problem)
            for name in ("callid", "status")
            if (problem := _missing_or(get(name, MISSING), _string_problem)) is not None
        ]
        direction = get("direction", MISSING)
        if type(direction) is not str or direction not in _DIRECTIONS:
            bad.append(("direction", _missing_or(direction, _direction_problem)))

        start, end, talk = get("start", MISSING), get("end", MISSING), get("talktime", MISSING)
        time_problems = [
            (name, problem)
            for name, value, check in (
                ("start", start, _time_problem),
                ("end", end, _time_problem),
                ("talktime", talk, _int_problem),
            )
            if (problem := _missing_or(value, check)) is not None
        ]
        bad += time_problems
        if not time_problems:
            if end < start:
                bad.append(("end", f"{end} is before start ({start})"))
            elif not 0 <= talk <= end - start:
                bad.append(("talktime", f"{talk} is not between 0 and end - start ({end - start})"))

        strings = []
        for name in _OPTIONAL_STRINGS:
            value = get(name)
            if value is None:
                value = ""
            elif (problem := _string_problem(value)) is not None:
                bad.append((name, problem))
            strings.append(value)

        scustomer = get("scustomer", MISSING)
        if type(scustomer) is not int or scustomer not in customers:
            bad.append(("scustomer", _ref_problem(scustomer, "customer")))
        ids = []
        for name, target in _OPTIONAL_REFS:
            value = get(name)
            if value is not None and (type(value) is not int or value not in self.known[target]):
                bad.append((name, _ref_problem(value, SINGULAR[target])))
            ids.append(value)

        archived = get("archived")
        if archived is None:
            archived = False
        elif type(archived) is not bool:
            bad.append(("archived", f"must be true or false, not {_show(archived)}"))

        leg_costs = get("costs") or []
        if type(leg_costs) is not list:
            bad.append(("costs", f"must be a list, not {_show(leg_costs)}"))
            leg_costs = []
        charged: set[tuple[str, int]] = set()
        checked = []
        for j, entry in enumerate(leg_costs):
            at = f"costs[{j}]"
            if type(entry) is not dict:
                bad.append((at, f"must be an object, not {_show(entry)}"))
                continue
            bad += [(f"{at}.{k}", "unknown field") for k in entry if k not in _COST_KEYS]
            customer, card = entry.get("customer"), entry.get("card")
            if (customer is None) == (card is None):
                bad.append((at, "must name exactly one of customer and card"))
            else:
                who, value, known = (
                    ("customer", customer, customers) if card is None else ("card", card, cards)
                )
                if type(value) is not int or value not in known:
                    bad.append((f"{at}.{who}", _ref_problem(value, who)))
                elif (who, value) in charged:
                    bad.append((f"{at}.{who}", f"a second cost record for {who} {value}"))
                else:
                    charged.add((who, value))
            cost = entry.get("cost", MISSING)
            if (problem := _missing_or(cost, _amount_problem)) is not None:
                bad.append((f"{at}.cost", problem))
            tax = entry.get("tax")
            if tax is None:
                tax = "0"
            elif (problem := _amount_problem(tax)) is not None:
                bad.append((f"{at}.tax", problem))
            currency = entry.get("currency", MISSING)
            if type(currency) is not str or currency not in self.known["currencies"]:
                bad.append((f"{at}.currency", _ref_problem(currency, "currency")))
            checked.append((customer, card, cost, tax, currency))

        if bad:
            return bad
        callername = strings[-1]
        row = (
            uid,
            get("callid"),
            start,
            end,
            talk,
            get("status"),
            direction,
            *strings,
            fold_case(callername),
            scustomer,
            *ids,
        )
        return row, archived, checked


def _missing_or(value: Any, problem: Callable[..., str | None], **kwargs: Any) -> str | None:
    return "missing" if value is MISSING else problem(value, **kwargs)


def _direction_problem(value: Any) -> str:
    return f"{_show(value)} is not one of: {', '.join(Direction.values)}"


def _ref_problem(value: Any, what: str) -> str:
    if value is MISSING:
        return "missing"
    problem = _string_problem(value) if what == "currency" else _int_problem(value, positive=True)
    return problem or f"no {what} {_show(value)}"


# --- writing legs: SQLite --------------------------------------------------------------


class _Tables:
    """Quoted table and column names, per side (False: live, True: archive)."""

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        self.q = q
        self.leg = {False: q(Leg._meta.db_table), True: q(ArchivedLeg._meta.db_table)}
        self.cost = {False: q(LegCost._meta.db_table), True: q(ArchivedLegCost._meta.db_table)}
        self.leg_cols = ", ".join(q(c) for c in LEG_COLUMNS)
        self.cost_cols = ", ".join(q(c) for c in COST_COLUMNS)
        self.leg_updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in LEG_COLUMNS)


class _Counts:
    def __init__(self) -> None:
        self.legs = 0
        self.archived = 0
        self.costs = 0

    def add(self, batch: _Batch) -> None:
        self.legs += len(batch.rows)
        self.archived += sum(batch.archived)
        self.costs += len(batch.costs)


def _duplicate(batch: _Batch, k: int) -> str:
    place = batch.place(batch.lines[k], "uniqueid")
    return f"{place}: {_show(batch.rows[k][0])} appears more than once in this import"


class _SqliteWriter:
    """executemany, batch by batch. A new leg takes the next id after every id in use
    in either table, so that ids stay unique across them (archiving keeps ids)."""

    method = "sqlite"
    threaded = False

    def __init__(self, connection: Any) -> None:
        self.t = _Tables(connection)
        self.raw = connection.connection
        cur = self.raw.cursor()
        seq = cur.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (Leg._meta.db_table,)
        ).fetchone()
        highest = [seq[0] if seq else 0] + [
            cur.execute(f"SELECT max(id) FROM {self.t.leg[side]}").fetchone()[0] or 0
            for side in (False, True)
        ]
        self.floor = max(highest)  # every id above this was written by this import
        self.next_id = self.floor + 1
        self.counts = _Counts()
        placeholders = ", ".join(["?"] * (len(LEG_COLUMNS) + 1))
        self.insert_leg = {
            side: f"INSERT INTO {self.t.leg[side]} (id, {self.t.leg_cols}) VALUES ({placeholders}) "
            f"ON CONFLICT (id) DO UPDATE SET {self.t.leg_updates}"
            for side in (False, True)
        }
        self.insert_cost = {
            side: f"INSERT INTO {self.t.cost[side]} (leg_id, {self.t.cost_cols}) "
            f"VALUES ({', '.join(['?'] * (len(COST_COLUMNS) + 1))})"
            for side in (False, True)
        }

    def _stored_ids(self, side: bool, uids: list[str]) -> dict[str, int]:
        cur = self.raw.cursor()
        found: dict[str, int] = {}
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            marks = ", ".join(["?"] * len(chunk))
            found.update(
                cur.execute(
                    f"SELECT uniqueid, id FROM {self.t.leg[side]} WHERE uniqueid IN ({marks})",
                    chunk,
                )
            )
        return found

    def write(self, batch: _Batch) -> list[str]:
        uids = [row[0] for row in batch.rows]
        stored = {side: self._stored_ids(side, uids) for side in (False, True)}
        problems: list[str] = []
        ids: list[int] = []
        legs: dict[bool, list[tuple[Any, ...]]] = {False: [], True: []}
        drop_costs: dict[bool, list[tuple[int]]] = {False: [], True: []}
        drop_legs: dict[bool, list[tuple[int]]] = {False: [], True: []}
        for k, row in enumerate(batch.rows):
            side = batch.archived[k]
            same, other = stored[side].get(row[0]), stored[not side].get(row[0])
            if max(same or 0, other or 0) > self.floor:
                problems.append(_duplicate(batch, k))
                continue
            if other is not None:  # changes sides: leaves the other table, keeps its id
                drop_costs[not side].append((other,))
                drop_legs[not side].append((other,))
            if same is not None:
                leg_id = same
                drop_costs[side].append((same,))
            elif other is not None:
                leg_id = other
            else:
                leg_id = self.next_id
                self.next_id += 1
            ids.append(leg_id)
            legs[side].append((leg_id, *row))
        if problems:
            return problems
        cur = self.raw.cursor()
        for side in (False, True):
            cur.executemany(f"DELETE FROM {self.t.cost[side]} WHERE leg_id = ?", drop_costs[side])
            cur.executemany(f"DELETE FROM {self.t.leg[side]} WHERE id = ?", drop_legs[side])
        for side in (False, True):
            cur.executemany(self.insert_leg[side], legs[side])
        for side in (False, True):
            cur.executemany(
                self.insert_cost[side],
                [(ids[k], *rest) for k, *rest in batch.costs if batch.archived[k] == side],
            )
        self.counts.add(batch)
        return []

    def finish(self) -> list[str]:
        if self.next_id - 1 > self.floor:
            # Ids given to archived legs must not be handed out again to live ones.
            cur = self.raw.cursor()
            cur.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?",
                (self.next_id - 1, Leg._meta.db_table),
            )
            if not cur.rowcount:
                cur.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                    (Leg._meta.db_table, self.next_id - 1),
                )
        return []


# --- writing legs: PostgreSQL ----------------------------------------------------------

_INT_FIELDS = frozenset(
    {"start", "end", "talktime", "scustomer", "dcustomer", "peer", "invoice", "card"}
)
# Legs go through binary COPY: cheaper to format here and to parse there than text.
_LEG_TYPES = ["int8" if f in _INT_FIELDS else "text" for f in LEG_FIELDS]
_LEG_COPY_TYPES = ["int8", *_LEG_TYPES]  # with the id first


class _PgWriter:
    """What both PostgreSQL ways share: the raw psycopg connection (used from one worker
    thread while the main thread checks the next batch), ids, and the end of the load."""

    threaded = True

    def __init__(self, connection: Any, *, replica: bool) -> None:
        self.t = _Tables(connection)
        self.raw = connection.connection
        self.replica = replica
        self.counts = _Counts()
        self.written = {False: False, True: False}  # legs written to each side so far
        cur = self.raw.cursor()
        self.seq = cur.execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (Leg._meta.db_table,)
        ).fetchone()[0]
        # Every leg, live or archived, takes its id from the live table's sequence, so ids
        # stay unique across both tables (archiving keeps ids).
        cur.execute(
            f"SELECT greatest(coalesce(pg_sequence_last_value(%s::regclass), 0), "
            f"(SELECT coalesce(max(id), 0) FROM {self.t.leg[False]}), "
            f"(SELECT coalesce(max(id), 0) FROM {self.t.leg[True]}))",
            (self.seq,),
        )
        self.floor = cur.fetchone()[0]  # every id above this was written by this import
        cur.execute(
            "SELECT setval(%s::regclass, %s, %s)", (self.seq, max(self.floor, 1), self.floor > 0)
        )

    def _analyze(self) -> None:
        # Fresh statistics, so that the first queries after a large load are planned for
        # the table as it now is.
        if self.counts.legs >= 10_000:
            cur = self.raw.cursor()
            for side in (False, True):
                if self.written[side]:
                    cur.execute(f"ANALYZE {self.t.leg[side]}, {self.t.cost[side]}")


class _PgStagedWriter(_PgWriter):
    """Each batch is copied into temporary tables, then applied set-based: legs that
    change sides are moved (keeping their id), legs are upserted, cost records of the
    legs named are replaced."""

    method = "postgresql (staged upsert)"

    def __init__(self, connection: Any, *, replica: bool) -> None:
        super().__init__(connection, replica=replica)
        cur = self.raw.cursor()
        t = self.t
        for side in (False, True):
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {t.leg[side]})")
            self.written[side] = cur.fetchone()[0]  # "may hold a uniqueid of this import"
        # "C" like the tables' columns, so that comparing the two can use their indexes.
        text = 'text COLLATE "C"'
        cols = ", ".join(
            f"{t.q(c)} {'bigint' if f in _INT_FIELDS else text}"
            for f, c in zip(LEG_FIELDS, LEG_COLUMNS, strict=True)
        )
        cur.execute(
            "DROP TABLE IF EXISTS pg_temp.enswitch_import_leg, pg_temp.enswitch_import_cost"
        )
        cur.execute(
            "CREATE TEMP TABLE enswitch_import_leg "
            f"(line bigint, id bigint, archived boolean, {cols}) ON COMMIT DROP"
        )
        cur.execute(
            "CREATE TEMP TABLE enswitch_import_cost (leg_id bigint, archived boolean, "
            f"{t.q(COST_COLUMNS[0])} bigint, {t.q(COST_COLUMNS[1])} bigint, "
            f"{t.q(COST_COLUMNS[2])} numeric, {t.q(COST_COLUMNS[3])} numeric, "
            f"{t.q(COST_COLUMNS[4])} text) ON COMMIT DROP"
        )
        self.copy_leg = (
            f"COPY enswitch_import_leg (line, id, archived, {t.leg_cols}) "
            "FROM STDIN (FORMAT BINARY)"
        )
        self.copy_cost = f"COPY enswitch_import_cost (leg_id, archived, {t.cost_cols}) FROM STDIN"
        self.upsert = {
            side: f"INSERT INTO {t.leg[side]} (id, {t.leg_cols}) "
            f"SELECT id, {t.leg_cols} FROM enswitch_import_leg "
            f"WHERE archived = {str(side).lower()} ON CONFLICT (id) DO UPDATE SET {t.leg_updates}"
            for side in (False, True)
        }
        self.insert_costs = {
            side: f"INSERT INTO {t.cost[side]} (leg_id, {t.cost_cols}) "
            f"SELECT leg_id, {t.cost_cols} FROM enswitch_import_cost "
            f"WHERE archived = {str(side).lower()}"
            for side in (False, True)
        }

    def write(self, batch: _Batch) -> list[str]:
        cur = self.raw.cursor()
        n = len(batch.rows)
        cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (self.seq, n))
        ids = [i for (i,) in cur.fetchall()]
        cur.execute("TRUNCATE enswitch_import_leg, enswitch_import_cost")
        lines, flags = batch.lines, batch.archived
        with cur.copy(self.copy_leg) as copy:
            copy.set_types(["int8", "int8", "bool", *_LEG_TYPES])
            for k, row in enumerate(batch.rows):
                copy.write_row((lines[k], ids[k], flags[k], *row))
        with cur.copy(self.copy_cost) as copy:
            for k, *rest in batch.costs:
                copy.write_row((ids[k], flags[k], *rest))

        if self.written[False] or self.written[True]:
            problems = self._resolve_stored(cur, batch, ids)
            if problems:
                return problems
        for side in (False, True):
            if any(flag == side for flag in flags):
                cur.execute(self.upsert[side])
                self.written[side] = True
        for side in (False, True):
            if any(flags[k] == side for k, *_ in batch.costs):
                cur.execute(self.insert_costs[side])
        self.counts.add(batch)
        return []

    def _resolve_stored(self, cur: Any, batch: _Batch, ids: list[int]) -> list[str]:
        """Legs of the batch already stored: updated in place, or moved to the other
        table with their id; a leg this import already wrote is a duplicate."""
        t = self.t
        looks = [
            f"LEFT JOIN LATERAL (SELECT id FROM {t.leg[side]} WHERE uniqueid = s.uniqueid) "
            f"{alias} ON true"
            if self.written[side]
            else f"LEFT JOIN LATERAL (SELECT NULL::bigint AS id) {alias} ON true"
            for side, alias in ((False, "h"), (True, "a"))
        ]
        # LATERAL lookups: one index probe per staged leg, whatever the planner thinks of
        # the (never analyzed) temporary table.
        cur.execute(
            f"SELECT s.id, s.archived, h.id, a.id FROM enswitch_import_leg s {' '.join(looks)} "
            "WHERE h.id IS NOT NULL OR a.id IS NOT NULL"
        )
        found = cur.fetchall()
        if not found:
            return []
        index = {leg_id: k for k, leg_id in enumerate(ids)}
        problems, old, new = [], [], []
        drop_costs: dict[bool, list[int]] = {False: [], True: []}
        drop_legs: dict[bool, list[int]] = {False: [], True: []}
        for staged, side, live_id, archived_id in found:
            same, other = (archived_id, live_id) if side else (live_id, archived_id)
            if max(same or 0, other or 0) > self.floor:
                problems.append(_duplicate(batch, index[staged]))
                continue
            if other is not None:
                drop_costs[not side].append(other)
                drop_legs[not side].append(other)
            if same is not None:
                drop_costs[side].append(same)
            old.append(staged)
            new.append(same if same is not None else other)
        if problems:
            return problems
        for side in (False, True):
            if drop_costs[side]:
                cur.execute(
                    f"DELETE FROM {t.cost[side]} WHERE leg_id = ANY(%s::bigint[])",
                    (drop_costs[side],),
                )
            if drop_legs[side]:
                cur.execute(
                    f"DELETE FROM {t.leg[side]} WHERE id = ANY(%s::bigint[])", (drop_legs[side],)
                )
        for table, column in (("enswitch_import_leg", "id"), ("enswitch_import_cost", "leg_id")):
            cur.execute(
                f"UPDATE {table} s SET {column} = m.new FROM unnest(%s::bigint[], %s::bigint[]) "
                f"AS m(old, new) WHERE s.{column} = m.old",
                (old, new),
            )
        return []

    def finish(self) -> list[str]:
        self._analyze()
        return []


@dataclass(frozen=True)
class _Ddl:
    drop: str
    create: str


class _PgBulkWriter(_PgWriter):
    """Into an empty store: COPY straight into the leg and cost tables, with their
    secondary indexes dropped and built again at the end (several times cheaper than
    maintaining them row by row). Taking the tables' ACCESS EXCLUSIVE lock is what
    allows it; they were empty, so readers only wait, they lose nothing.

    The unique constraints on uniqueid stay: a uniqueid given twice is refused as it
    arrives, and each batch is looked up in the other table's index. For legs in time
    order (uniqueids growing) they cost little, and the database has time to spare
    while this process reads and checks the next batch.

    Without the privilege to skip foreign-key triggers, the tables' foreign keys are
    dropped too and added again at the end (one validating join each, instead of a
    trigger per row)."""

    method = "postgresql (bulk COPY, indexes rebuilt)"

    def __init__(self, connection: Any, *, replica: bool) -> None:
        super().__init__(connection, replica=replica)
        self.next_id = self.floor + 1
        self.span: dict[bool, _Span] = {False: None, True: None}  # uniqueids written
        cur = self.raw.cursor()
        t = self.t
        names = [m._meta.db_table for m in (Leg, ArchivedLeg, LegCost, ArchivedLegCost)]
        cur.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index i WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
            "AND c.conrelid = i.indrelid) ORDER BY 1",
            (names,),
        )
        self.ddl = [_Ddl(f"DROP INDEX {index}", indexdef) for index, indexdef in cur.fetchall()]
        if not replica:
            cur.execute(
                "SELECT conname, pg_get_constraintdef(oid), conrelid::regclass::text "
                "FROM pg_constraint WHERE conrelid = ANY(%s::regclass[]) AND contype = 'f' "
                "ORDER BY 1",
                (names,),
            )
            self.ddl += [
                _Ddl(
                    f"ALTER TABLE {table} DROP CONSTRAINT {t.q(conname)}",
                    f"ALTER TABLE {table} ADD CONSTRAINT {t.q(conname)} {condef}",
                )
                for conname, condef, table in cur.fetchall()
            ]
        for ddl in self.ddl:
            cur.execute(ddl.drop)
        self.copy_leg = {
            side: f"COPY {t.leg[side]} (id, {t.leg_cols}) FROM STDIN (FORMAT BINARY)"
            for side in (False, True)
        }
        self.copy_cost = {
            side: f"COPY {t.cost[side]} (leg_id, {t.cost_cols}) FROM STDIN"
            for side in (False, True)
        }
        # The batch's legs, found by their id range, looked up in the other table.
        self.across = {
            side: f"SELECT l.uniqueid FROM {t.leg[side]} l JOIN {t.leg[not side]} o "
            "ON o.uniqueid = l.uniqueid WHERE l.id BETWEEN %s AND %s"
            for side in (False, True)
        }

    def reserve(self, n: int) -> int:
        """The first of `n` ids for a batch: new legs are numbered here, not by the
        sequence (set once at the end), so that checked batches arrive formatted."""
        first = self.next_id
        self.next_id += n
        return first

    def write(self, batch: _Batch) -> list[str]:
        first = self.reserve(len(batch.rows))
        found = self.write_payloads(_bulk_payloads(batch, first), first, self.next_id - 1)
        if found is not None:
            return _repeated(batch, found)
        self.counts.add(batch)
        return []

    def write_payloads(self, payloads: _Payloads, first: int, last: int) -> set[str] | None:
        """COPY a batch's legs (ids first..last) and costs. Returns None, or the
        uniqueids this import had already given (nothing more must be written then)."""
        import psycopg

        cur = self.raw.cursor()
        for side in (False, True):
            legs, costs, span = payloads[side]
            if legs:
                try:
                    with cur.copy(self.copy_leg[side]) as copy:
                        copy.write(legs)
                except psycopg.errors.UniqueViolation as exc:
                    found = re.search(r"\)=\((.*)\) already exists", exc.diag.message_detail or "")
                    return {found.group(1)} if found else set()
                self.written[side] = True
                self.span[side] = _widen(self.span[side], span)
            if costs:
                with cur.copy(self.copy_cost[side]) as copy:
                    copy.write(costs)
        # A uniqueid of the batch may already be in the other table only if the batch's
        # uniqueids and the other table's overlap: rarely so for legs in time order.
        looks = [side for side in (False, True) if _overlap(payloads[side][2], self.span[not side])]
        if looks:
            # Plans fixed by hand: the statistics still describe empty tables, and a
            # sequential scan here would read the whole table for every batch.
            for setting in _PLAN_BY_HAND:
                cur.execute(f"SET LOCAL {setting} = off")
            twice: set[str] = set()
            for side in looks:
                cur.execute(self.across[side], (first, last))
                twice.update(uid for (uid,) in cur.fetchall())
            for setting in _PLAN_BY_HAND:
                cur.execute(f"SET LOCAL {setting} = DEFAULT")
            if twice:
                return twice
        return None

    def finish(self) -> list[str]:
        cur = self.raw.cursor()
        if self.next_id - 1 > self.floor:
            cur.execute("SELECT setval(%s::regclass, %s)", (self.seq, self.next_id - 1))
        # Sorting is most of an index build: give it memory (this transaction only).
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        for ddl in self.ddl:
            cur.execute(ddl.create)
        self._analyze()
        return []


_PLAN_BY_HAND = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")

# Per side (False: live, True: archive): the legs' COPY data (binary), the costs' (text),
# and the smallest and largest uniqueid of the legs.
_Span = tuple[str, str] | None
_Payloads = dict[bool, tuple[bytes | None, bytes | None, _Span]]


def _bulk_payloads(batch: _Batch, first: int) -> _Payloads:
    """A checked batch as COPY data for the tables themselves, legs numbered from
    `first`. Made by psycopg's own formatters, so that it can be done in a worker
    process and sent as bytes."""
    from psycopg import adapters, pq
    from psycopg._copy_base import BinaryFormatter, TextFormatter  # psycopg is pinned
    from psycopg.adapt import Transformer

    flags = batch.archived
    payloads: _Payloads = {}
    for side in (False, True):
        legs = costs = span = None
        rows = [(first + k, *row) for k, row in enumerate(batch.rows) if flags[k] == side]
        if rows:
            uids = [row[1] for row in rows]
            span = (min(uids), max(uids))
            tx = Transformer()
            tx.set_dumper_types(
                [adapters.types.get_oid(t) for t in _LEG_COPY_TYPES], pq.Format.BINARY
            )
            formatter = BinaryFormatter(tx)
            data = bytearray()
            for row in rows:
                data += formatter.write_row(row)
            data += formatter.end()
            legs = bytes(data)
        cost_rows = [(first + k, *rest) for k, *rest in batch.costs if flags[k] == side]
        if cost_rows:
            formatter = TextFormatter(Transformer())
            data = bytearray()
            for row in cost_rows:
                data += formatter.write_row(row)
            data += formatter.end()
            costs = bytes(data)
        payloads[side] = (legs, costs, span)
    return payloads


def _widen(span: _Span, more: _Span) -> _Span:
    if span is None or more is None:
        return span or more
    return (min(span[0], more[0]), max(span[1], more[1]))


def _overlap(a: _Span, b: _Span) -> bool:
    # Python orders strings by code point, as the "C" collation of the columns does.
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _repeated(batch: _Batch, uids: set[str]) -> list[str]:
    """Messages for legs of the batch whose uniqueid this import already gave."""
    found = [_duplicate(batch, k) for k, row in enumerate(batch.rows) if row[0] in uids]
    return found or ["cdrs: a uniqueid appears more than once in this import"]


def _pg_session(connection: Any) -> bool:
    """Statement timeouts off for this transaction; foreign-key triggers skipped when
    allowed (superuser, or SET granted on session_replication_role), which is safe
    because every reference was checked already and the referenced rows are locked
    here against deletion (what each trigger would have done, once per row)."""
    cur = connection.connection.cursor()
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL lock_timeout = 0")
    cur.execute("SAVEPOINT enswitch_replica")
    try:
        cur.execute("SET LOCAL session_replication_role = replica")
    except Exception:  # noqa: BLE001 - insufficient privilege: keep the triggers
        cur.execute("ROLLBACK TO SAVEPOINT enswitch_replica")
        return False
    cur.execute("RELEASE SAVEPOINT enswitch_replica")
    for model in (Customer, Currency, Peer, Card, Invoice):
        cur.execute(
            f"WITH l AS (SELECT 1 FROM {model._meta.db_table} FOR KEY SHARE) SELECT count(*) FROM l"
        )
    return True


def _pg_empty(connection: Any) -> bool:
    cur = connection.connection.cursor()
    tables = [m._meta.db_table for m in (Leg, ArchivedLeg, LegCost, ArchivedLegCost)]
    cur.execute(
        " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t})" for t in tables).join(("SELECT ", ""))
    )
    return cur.fetchone()[0]


def _make_writer(connection: Any, *, bulk: bool | None, expected_legs: int) -> Any:
    if connection.vendor == "sqlite":
        return _SqliteWriter(connection)
    if connection.vendor != "postgresql":
        raise DatasetError([f"import_dataset does not support the {connection.vendor} database"])
    replica = _pg_session(connection)
    if bulk is None:
        bulk = expected_legs >= BULK_MIN_LEGS
    if bulk and _pg_empty(connection):
        cur = connection.connection.cursor()
        tables = ", ".join(m._meta.db_table for m in (Leg, ArchivedLeg, LegCost, ArchivedLegCost))
        cur.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        if _pg_empty(connection):  # still, now that nobody else can write
            return _PgBulkWriter(connection, replica=replica)
    return _PgStagedWriter(connection, replica=replica)


def _database_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    classes: list[type[BaseException]] = [DatabaseError, sqlite3.Error]
    try:
        import psycopg

        classes.append(psycopg.Error)
    except ImportError:  # pragma: no cover - SQLite-only installs
        pass
    return tuple(classes)


# --- reading ---------------------------------------------------------------------------


def _read_main(source: BinaryIO | Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """The main file, parsed. It is read whole, so its size is bounded (a pipe or a
    device is read no further than the limit) and its first bytes are looked at before
    the rest is read."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return source
    limit = settings.ENSWITCH_IMPORT_MAX_FILE_BYTES
    too_big = (
        f"{name}: larger than ENSWITCH_IMPORT_MAX_FILE_BYTES ({limit:,} bytes); "
        "put the legs in a JSONL file (--cdrs), which may be of any size"
    )
    size = _size(source)
    if size is not None and size > limit:
        raise DatasetError([too_big])
    head = source.read(min(limit + 1, 65536))
    problem = _encoding_problem(head)
    if problem:
        raise DatasetError([f"{name}: {problem}"])
    data = head + source.read(limit + 1 - len(head)) if len(head) <= limit else head
    if len(data) > limit:
        raise DatasetError([too_big])
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DatasetError([f"{name}: {_json_problem(data, exc)}"]) from None
    if type(doc) is not dict:
        raise DatasetError([f"{name}: must be a JSON object, not {_show(doc)}"])
    repeated = _repeated_keys(data, doc)
    if repeated:
        raise DatasetError([f"{place}: {_REPEATED}" for place in repeated])
    return doc


def _encoding_problem(head: bytes) -> str | None:
    """Files that are not UTF-8 text, told apart by their first bytes."""
    start = head[:4]
    if start == b"\x00" * len(start) and start:
        return "is not text: it starts with NUL bytes"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start:
        return "is UTF-16 text (a byte-order mark or NUL bytes at the start); save it as UTF-8"
    if head.startswith(b"\xef\xbb\xbf"):
        return "starts with a byte-order mark (EF BB BF); save it as UTF-8 without one"
    return None


def _json_problem(data: bytes, exc: orjson.JSONDecodeError) -> str:
    """orjson's complaint, with the place as a person looks for it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        column = bad.start - (data.rfind(b"\n", 0, bad.start) + 1) + 1
        return (
            f"not valid UTF-8 at byte {bad.start + 1:,} (line {line}, byte {column} of "
            f"the line): 0x{data[bad.start]:02X}"
        )
    return f"not valid JSON at line {exc.lineno} column {exc.colno}: {_json_message(exc)}"


def _json_message(exc: orjson.JSONDecodeError) -> str:
    if "infinity" in exc.msg or "out of range" in exc.msg:
        return "a number too large (more digits than a 64-bit integer holds)"
    return exc.msg


# Repeated keys in one object: orjson, like most parsers, would keep the last silently.
_REPEATED = "this key appears more than once in its object"


def _entries(value: Any) -> int:
    """Members of all the objects in a parsed value."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            n += len(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return n


class _Found:
    """Where repeated keys are, below one object or list: the slow reader keeps only this
    (every object without one becomes None), so it costs little memory."""

    def __init__(self, repeated: list[str], inside: list[tuple[str, _Found]]) -> None:
        self.repeated, self.inside = repeated, inside  # inside: (".key" or "[i]", found)


def _found_in(value: Any) -> _Found | None:
    if type(value) is list:
        inside = [(f"[{i}]", f) for i, v in enumerate(value) if (f := _found_in(v)) is not None]
        return _Found([], inside) if inside else None
    return value if type(value) is _Found else None


def _members(pairs: list[tuple[str, Any]]) -> _Found | None:
    seen: set[str] = set()
    repeated, inside = [], []
    for key, value in pairs:
        if key in seen:
            repeated.append(key)
        seen.add(key)
        if (found := _found_in(value)) is not None:
            inside.append((f".{key}", found))
    return _Found(repeated, inside) if repeated or inside else None


def _repeated_keys(data: bytes, parsed: Any) -> list[str]:
    """Places ("customers[0].id") of keys repeated in an object; usually none.

    Cheap test first: outside strings a colon follows a key and nothing else, so the
    colons in the text are at least the keys; if they are as many as the members parsed,
    no key was repeated. Otherwise (a repeated key, or a colon inside a string) the text
    is read again, slowly, keeping only where keys repeat."""
    if data.count(b":") == _entries(parsed):
        return []
    try:
        top = _found_in(json.loads(data, object_pairs_hook=_members))
    except (ValueError, RecursionError):
        return []  # orjson read it; a limit of the slow reader is no error of the file
    found: list[str] = []
    stack: list[tuple[_Found | None, str]] = [(top, "")]
    while stack:
        f, at = stack.pop()
        if f is not None:
            found += [f"{at}.{key}" for key in f.repeated]
            stack += [(child, at + step) for step, child in f.inside]
    return sorted({place.removeprefix(".") for place in found})


def _size(stream: BinaryIO | None) -> int | None:
    """Bytes left to read, when the stream is a regular file (a pipe's size is unknown)."""
    try:
        info = os.fstat(stream.fileno())  # type: ignore[union-attr]
        return info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else None  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


class _LineTooLong(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The stream's lines, none read into memory beyond `limit` bytes."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            raise _LineTooLong(0)
        yield line


def _chunks(stream: BinaryIO, size: int, read: list[int]) -> Iterator[list[tuple[int, bytes]]]:
    """The JSONL file's lines, numbered from 1, `size` at a time (blank lines skipped).
    read[0] counts the bytes read so far. A line longer than the limit ends the reading
    (_LineTooLong): where the next line starts is not known without reading it all."""
    chunk: list[tuple[int, bytes]] = []
    n = 0
    try:
        for n, line in enumerate(_lines(stream, settings.ENSWITCH_IMPORT_MAX_LINE_BYTES), 1):  # noqa: B007
            read[0] += len(line)
            if len(line) < 4 and not line.strip():
                continue
            chunk.append((n, line))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except _LineTooLong:
        if chunk:
            yield chunk
        raise _LineTooLong(n + 1) from None
    if chunk:
        yield chunk


def _parse(chunk: list[tuple[int, bytes]], place: Place, errors: _Errors) -> list[tuple[int, Any]]:
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    repeated_keys, count = _repeated_keys, bytes.count
    items = []
    for n, line in chunk:
        try:
            obj = loads(line)
        except decode_error as exc:
            errors.add(f"{place(n, '')}: {_jsonl_problem(line, exc)}")
            continue
        # _repeated_keys' cheap test, inline for the common case: a leg, no nested object
        # but its cost records.
        members = len(obj) if type(obj) is dict else -1
        costs = obj.get("costs") if members >= 0 else None
        if type(costs) is list:
            for c in costs:
                if type(c) is dict:
                    members += len(c)
        if members < 0 or count(line, b":") != members:
            repeated = repeated_keys(line, obj)
            if repeated:
                for at in repeated:
                    errors.add(f"{place(n, at)}: {_REPEATED}")
                continue
        items.append((n, obj))
    return items


def _jsonl_problem(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start + 1:,} of the line: 0x{line[bad.start]:02X}"
    # A line is one line: orjson's "line 2" is its end (the newline was read).
    at = f"column {exc.colno}" if exc.lineno == 1 else "the end of the line"
    return f"not valid JSON at {at}: {_json_message(exc)}"


# --- checking in worker processes --------------------------------------------------------

# What the worker processes need, set before they are forked (so inherited, not sent).
_WORKER: dict[str, Any] = {}


@dataclass
class _Checked:
    messages: list[str]
    errors: int
    payloads: _Payloads | None
    legs: int = 0
    archived: int = 0
    costs: int = 0


def _check_in_worker(job: tuple[list[tuple[int, bytes]], int]) -> _Checked:
    """Parse, check and format one chunk of JSONL lines, legs numbered from `first`."""
    chunk, first = job
    checker: _LegChecker = _WORKER["checker"]
    place: Place = _WORKER["place"]
    errors = _Errors(_WORKER["limit"])
    batch = checker.check(_parse(chunk, place, errors), place, errors)
    if errors:
        return _Checked(errors.messages, errors.total, None)
    payloads = _bulk_payloads(batch, first)
    return _Checked([], 0, payloads, len(batch.rows), sum(batch.archived), len(batch.costs))


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _workers_for(writer: Any, asked: int | None) -> int:
    """Worker processes for the JSONL file: only for the bulk writer (it takes data ready
    for COPY). By default one per core (at most 4) when there are several: the workers
    share the cores with the database's server process, and this process only reads
    lines and passes bytes on. Never more than the cores: more would only take turns."""
    if not isinstance(writer, _PgBulkWriter):
        return 0
    if asked is not None:
        return min(asked, cores())
    return min(cores(), 4) if cores() > 1 else 0


def quiet_worker() -> None:
    """In forked workers: the parent handles SIGINT and SIGTERM and stops the workers
    (Pool.terminate sends them SIGTERM, which must end them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _Loader:
    """The legs' part of an import: batches checked (here or in worker processes) and
    handed to the writer, which runs in a thread so that the database works on one batch
    while the next is checked. After the first error nothing more is written, but the
    rest is still checked, to report every error."""

    def __init__(
        self,
        writer: Any,
        checker: _LegChecker,
        errors: _Errors,
        progress: Callable[[Progress], None] | None,
        started: float,
    ) -> None:
        self.writer, self.checker, self.errors = writer, checker, errors
        self.progress, self.started = progress, started
        self.checked = 0
        self.read = [0]
        self.size: int | None = None
        threaded = writer is not None and writer.threaded
        self.thread = (
            ThreadPoolExecutor(1, thread_name_prefix="import-writer") if threaded else None
        )
        self.pending: Future[list[str]] | None = None
        self.db_errors = _database_errors()

    # Writing, one batch at a time in the writer thread.

    def _collect(self) -> None:
        if self.pending is None:
            return
        try:
            for message in self.pending.result():
                self.errors.add(message)
        except self.db_errors as exc:
            self.errors.add(f"cdrs: the database refused a batch of legs: {exc}".strip())
            self.writer = None  # the transaction is lost: check on, write no more
        self.pending = None

    def _submit(self, write: Callable[..., list[str]], *args: Any) -> None:
        self._collect()
        if self.writer is None or self.errors:
            return
        if self.thread is None:
            for message in write(*args):
                self.errors.add(message)
        else:
            self.pending = self.thread.submit(write, *args)

    def _report(self) -> None:
        if self.progress is not None:
            seconds = time.monotonic() - self.started
            self.progress(Progress(self.checked, self.read[0], self.size, seconds))

    # Reading and checking.

    def load(
        self,
        doc_legs: list[Any],
        cdrs: BinaryIO | None,
        name: str,
        size: int,
        workers: int | None,
    ) -> None:
        # Nothing in a batch forms a reference cycle; the collector would only walk the
        # batch's objects over and over (a third of the time spent reading them).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(0, len(doc_legs), size):
                items = list(enumerate(doc_legs[i : i + size], start=i))
                self._check_here(items, _main_place)
            if cdrs is not None:
                self.size = _size(cdrs)
                chunks = _chunks(cdrs, size, self.read)
                self._collect()  # no write in flight when the workers are forked
                workers = _workers_for(self.writer, workers)
                place = _jsonl_place(name)
                try:
                    if workers:
                        self._load_in_workers(chunks, name, workers)
                    else:
                        for chunk in chunks:
                            self._check_here(_parse(chunk, place, self.errors), place)
                except _LineTooLong as exc:
                    limit = settings.ENSWITCH_IMPORT_MAX_LINE_BYTES
                    self.errors.add(
                        f"{place(exc.line, '')}: longer than ENSWITCH_IMPORT_MAX_LINE_BYTES "
                        f"({limit:,} bytes); reading stopped there"
                    )
            self._collect()
        except BaseException:
            self._cancel()
            raise
        finally:
            if collecting:
                gc.enable()
            if self.thread is not None:
                self.thread.shutdown(wait=True)

    def _cancel(self) -> None:
        """Interrupted or failing: stop the statement the writer thread may be waiting on
        (a lock, say), so that the transaction can be rolled back at once."""
        if self.pending is None or self.writer is None:
            return
        raw = self.writer.raw
        with contextlib.suppress(Exception):
            if hasattr(raw, "cancel_safe"):
                raw.cancel_safe(timeout=5)
            else:
                raw.interrupt()

    def _check_here(self, items: list[tuple[int, Any]], place: Place) -> None:
        batch = self.checker.check(items, place, self.errors)
        self.checked += len(items)
        if batch.rows and self.writer is not None:
            self._submit(self.writer.write, batch)
        self._report()

    def _load_in_workers(
        self, chunks: Iterator[list[tuple[int, bytes]]], name: str, workers: int
    ) -> None:
        place = _jsonl_place(name)
        _WORKER.update(checker=self.checker, place=place, limit=self.errors.limit)
        # Forked before any thread of this import starts; the workers leave through
        # os._exit, so the database connection they inherit is never touched by them.
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=quiet_worker)
        try:
            inflight: deque[tuple[list[tuple[int, bytes]], int, Any]] = deque()
            for chunk in chunks:
                first = self.writer.reserve(len(chunk)) if self.writer is not None else 0
                inflight.append(
                    (chunk, first, pool.apply_async(_check_in_worker, ((chunk, first),)))
                )
                while len(inflight) > 2 * workers:
                    self._write_checked(*inflight.popleft(), place)
            while inflight:
                self._write_checked(*inflight.popleft(), place)
        finally:
            pool.terminate()
            pool.join()
            _WORKER.clear()

    def _write_checked(
        self, chunk: list[tuple[int, bytes]], first: int, result: Any, place: Place
    ) -> None:
        checked: _Checked = result.get()
        self.checked += len(chunk)
        for message in checked.messages:
            self.errors.add(message)
        self.errors.total += checked.errors - len(checked.messages)
        if checked.payloads is not None and self.writer is not None:
            self._submit(self._write_payloads, checked, chunk, first, place)
        self._report()

    def _write_payloads(
        self, checked: _Checked, chunk: list[tuple[int, bytes]], first: int, place: Place
    ) -> list[str]:
        writer: _PgBulkWriter = self.writer
        found = writer.write_payloads(checked.payloads, first, first + len(chunk) - 1)
        if found is not None:
            # Rare: read the chunk again to say where.
            batch = self.checker.check(_parse(chunk, place, _Errors(0)), place, _Errors(0))
            return _repeated(batch, found)
        writer.counts.legs += checked.legs
        writer.counts.archived += checked.archived
        writer.counts.costs += checked.costs
        return []


# --- the whole load --------------------------------------------------------------------


def import_dataset(
    source: BinaryIO | Mapping[str, Any] | None = None,
    *,
    source_name: str = "-",
    cdrs: BinaryIO | None = None,
    cdrs_name: str = "cdrs.jsonl",
    batch_size: int = BATCH_SIZE,
    error_limit: int = ERROR_LIMIT,
    progress: Callable[[Progress], None] | None = None,
    bulk: bool | None = None,
    workers: int | None = None,
) -> ImportResult:
    """Check and load a dataset: `source` (the main file, as a binary stream or an
    already parsed dict) and/or `cdrs` (a binary stream of JSONL legs).

    Raises DatasetError, having written nothing, when anything is wrong. `bulk`: on
    PostgreSQL, force (True) or forbid (False) the bulk way into an empty store; by
    default it is used for loads of BULK_MIN_LEGS legs or more. `workers`: processes
    that check the JSONL legs in the bulk way (0: this process; default: one per core
    when there are several)."""
    started = time.monotonic()
    errors = _Errors(error_limit)
    doc = _read_main(source, source_name)
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            errors.add(f"{key}: unknown section (expected: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    doc_legs = doc.get("cdrs")
    if doc_legs is None:
        doc_legs = []
    elif type(doc_legs) is not list:
        errors.add(f"cdrs: must be a list, not {_show(doc_legs)}")
        doc_legs = []
    result = ImportResult()
    connection = connections[DEFAULT_DB_ALIAS]

    with write_transaction():
        objects = _check_objects(doc, errors)
        tree = _check_tree(objects.items["customers"], errors)
        if not errors:
            hashes = _hash_passwords(objects.items["users"])
            result.counts = _write_objects(objects, tree, hashes)

        legs_started = time.monotonic()
        writer = None
        if not errors and (doc_legs or cdrs is not None):
            expected = len(doc_legs)
            if cdrs is not None:  # a pipe may bring any number: count it as large
                size = _size(cdrs)
                expected += BULK_MIN_LEGS if size is None else size // 400
            writer = _make_writer(connection, bulk=bulk, expected_legs=expected)
        loader = _Loader(writer, _LegChecker(objects.known), errors, progress, started)
        loader.load(doc_legs, cdrs, cdrs_name, batch_size, workers)
        if loader.writer is not None and not errors:
            try:
                for message in writer.finish():
                    errors.add(message)
            except loader.db_errors as exc:
                errors.add(f"cdrs: the database refused the legs: {exc}")
        errors.raise_if_any()
        if writer is not None:
            result.legs = writer.counts.legs
            result.archived_legs = writer.counts.archived
            result.costs = writer.counts.costs
            result.method = writer.method
    result.seconds = time.monotonic() - started
    result.legs_seconds = time.monotonic() - legs_started
    return result
