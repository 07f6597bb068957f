"""Realistic, repeatable datasets in the format `import_dataset` loads.

The same options give the same bytes: every random choice comes from `random.Random`
instances seeded from `seed`, nothing depends on the clock, the locale or hash order.

What a dataset holds:

- a customer tree: the system owner (id 1, depth 0), resellers of about
  `reseller_size` customers each, their sub-resellers and customers down to `depth`,
  a few direct customers of the owner; every billing type; some customers disabled;
- rate plans with and without the `cdrs` feature, and customers without a rate plan;
- roles of every kind (cdrs+archive, cdrs, callshop, callshop+archive, and one with
  neither cdrs nor callshop) and users of every kind at several depths. The owner's
  user is `owner`; the others are named `c<customer id>-<kind>` (`c12-admin`,
  `c40-viewer`, `c7-callshop`, `c7-callshop-archive`, `c33-phone`). Every user has the
  same password, `password` ("secret" unless told otherwise);
- peers, calling cards (callshop booths, some prepaid customers), monthly invoices;
- calls over `days` days ending at `end`, busier in office hours and on weekdays: one
  to three legs a call sharing a `callid`; every status, direction and many types;
  numbers of many lengths; caller names with accents and mixed case; legs whose
  `dcustomer` is another customer; cost records for each customer along the reseller
  chain and for cards, in each customer's currency, with some credits (negative
  amounts); the oldest quarter of the legs archived.

Legs are produced one at a time in time order, so `cdrs.dataset.files.write_dataset`
streams any number of them in constant memory.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from cdrs.dataset.options import DAY, Options
from cdrs.dataset.vocabulary import (
    CALLER_NAMES,
    COUNTRIES,
    CURRENCIES,
    HOUR_WEIGHT,
    LEAF_BILL_TYPES,
    NAME_SUFFIXES,
    NAME_WORDS_A,
    NAME_WORDS_B,
    PEERS,
    PLAN_NO_CDRS,
    RATE_PLANS,
    ROLE_BY_KIND,
    ROLES,
    SHORT_NUMBERS,
    STATUSES,
    TARGET_TYPES,
)


@dataclass
class _Customer:
    id: int
    parent: int | None
    depth: int
    reseller: bool = False
    bill_type: str = "postpaid"
    currency: str = "USD"
    rate_plan: int | None = None
    enabled: bool = True
    name: str = ""
    # (customer id, currency, multiplier on the base amount, tax per mille) for each
    # customer charged for this customer's calls: itself and its resellers, up to the
    # top-level reseller (the owner only pays for its own calls).
    charges: list[tuple[int, str, float, int]] = field(default_factory=list)
    cards: list[int] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    dids: list[str] = field(default_factory=list)
    country: tuple[str, int] = ("44", 10)
    invoices: dict[int, int] = field(default_factory=dict)  # invoice block -> invoice id


def _weighted(rnd: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    values, weights = zip(*pairs, strict=True)
    return rnd.choices(values, weights)[0]


def _cumulative(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    """Values and cumulative weights, for random.choices(values, cum_weights=...)."""
    values, weights = zip(*pairs, strict=True)
    return list(values), list(itertools.accumulate(weights))


def _money(micro: int) -> str:
    """Micro-units as a decimal string with 6 places: -12345 -> "-0.012345"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def _digits(rnd: random.Random, n: int) -> str:
    return str(rnd.randrange(10**n)).zfill(n)


class DatasetGenerator:
    """Builds the objects once; `legs()` yields the legs in time order."""

    def __init__(self, options: Options) -> None:
        self.options = options
        # Not for secrets: repeatable test data.
        rnd = random.Random(f"enswitch-dataset:{options.seed}:objects")  # noqa: S311
        self.currencies = [
            {"code": code, "value": value} for code, value in CURRENCIES[: options.currencies]
        ]
        self._currency_value = {c["code"]: float(c["value"]) for c in self.currencies}
        self.customers = self._tree(rnd)
        self._by_id = {c.id: c for c in self.customers}
        self._check_paths()
        self._fill_customers(rnd)
        self.cards: list[dict[str, Any]] = []
        self.invoices: list[dict[str, Any]] = []
        self._cards_and_invoices(rnd)
        self._charges()
        self.users = self._users(rnd)

    # --- objects ------------------------------------------------------------------

    def _tree(self, rnd: random.Random) -> list[_Customer]:
        """Breadth first, so ids grow level by level and a parent's children are
        numbered together (shuffled between resellers and plain customers)."""
        opts = self.options
        owner = _Customer(id=1, parent=None, depth=0)
        out = [owner]
        queue: deque[tuple[_Customer, int]] = deque([(owner, opts.customers - 1)])
        next_id = 2
        while queue:
            parent, budget = queue.popleft()
            if budget <= 0:
                continue
            child_depth = parent.depth + 1
            shares: list[int] = []  # one per sub-reseller: itself plus its customers
            if child_depth < opts.depth and budget >= 2:
                # A sub-reseller gets enough customers to reach the depth asked for
                # (one more level each), whenever the budget allows.
                chain = 1 + opts.depth - child_depth
                if parent.parent is None:
                    leaves = budget // 50
                    resold = budget - leaves
                    k = round(resold / opts.top_reseller_size)
                else:
                    resold = max(min(budget, chain), budget // 2)
                    leaves = budget - resold
                    k = min(8, budget // 40)
                k = max(1, min(k, resold // chain))
                shares = [resold // k + (1 if i < resold % k else 0) for i in range(k)]
            else:
                leaves = budget
            kinds = shares + [0] * leaves
            rnd.shuffle(kinds)
            parent.reseller = True
            for share in kinds:
                child = _Customer(id=next_id, parent=parent.id, depth=child_depth)
                next_id += 1
                out.append(child)
                if share > 1:
                    queue.append((child, share - 1))
        return out

    def _check_paths(self) -> None:
        """The importer refuses a customer whose materialized path ("/1/61/250/") is
        longer than the store's column: so does the generator, before writing anything."""
        from customers.models import Customer

        limit = Customer._meta.get_field("path").max_length
        length: dict[int, int] = {}
        for c in self.customers:  # parents come before their children
            length[c.id] = (length[c.parent] if c.parent else 1) + len(str(c.id)) + 1
            if length[c.id] > limit:
                raise ValueError(
                    f"depth: customer {c.id} at depth {c.depth} would have a path of more "
                    f"than {limit} characters, which import_dataset refuses; ask for less "
                    "--depth or fewer --customers"
                )

    def _fill_customers(self, rnd: random.Random) -> None:
        codes = [c["code"] for c in self.currencies]
        for c in self.customers:
            parent = self._by_id.get(c.parent) if c.parent else None
            c.country = COUNTRIES[rnd.randrange(len(COUNTRIES))]
            if parent is None:
                c.name, c.bill_type, c.currency, c.rate_plan = (
                    "Owner Telecom",
                    "postpaid",
                    "USD",
                    None,
                )
            elif c.reseller:
                c.name = f"{rnd.choice(NAME_WORDS_A)} {rnd.choice(NAME_WORDS_B)} (reseller {c.id})"
                c.bill_type = "postpaid" if rnd.random() < 0.7 else "prepaid"
                c.currency = parent.currency if rnd.random() < 0.6 else rnd.choice(codes)
                c.rate_plan = 4 if rnd.random() < 0.7 else None
                c.enabled = rnd.random() >= 0.02
            else:
                suffix = rnd.choice(NAME_SUFFIXES)
                c.name = f"{rnd.choice(NAME_WORDS_A)} {rnd.choice(NAME_WORDS_B)} {c.id}"
                c.name += f" {suffix}" if suffix else ""
                c.bill_type = _weighted(rnd, LEAF_BILL_TYPES)
                c.currency = parent.currency if rnd.random() < 0.6 else rnd.choice(codes)
                x = rnd.random()
                c.rate_plan = (
                    None if x < 0.15 else PLAN_NO_CDRS if x < 0.25 else 1 if x < 0.75 else 2
                )
                c.enabled = rnd.random() >= 0.05
            base = rnd.choice((100, 200, 300, 1000, 2000))
            c.extensions = [str(base + i) for i in range(1, 2 + rnd.randrange(20))]
            cc, n = c.country
            c.dids = [cc + _digits(rnd, n) for _ in range(1 + rnd.randrange(3))]
        # Every case at least once, however small the system: each billing type, a
        # disabled customer, one without a rate plan, one whose plan hides call records.
        leaves = [c for c in self.customers if not c.reseller and c.parent is not None]
        rnd.shuffle(leaves)
        for c, (bill_type, _) in zip(leaves, LEAF_BILL_TYPES, strict=False):
            c.bill_type = bill_type
        if len(leaves) > len(LEAF_BILL_TYPES) + 2:
            leaves[-1].enabled = False
            leaves[-2].rate_plan = None
            leaves[-3].rate_plan = PLAN_NO_CDRS

    def _cards_and_invoices(self, rnd: random.Random) -> None:
        opts = self.options
        # Invoices close every 30 days counting back from the end; the last 30 days are
        # not invoiced yet.
        blocks = max(0, math.ceil(opts.days / 30) - 1)
        for c in self.customers:
            if c.bill_type == "callshop":
                count = 2 + rnd.randrange(3)
            elif c.bill_type.startswith("prepaid") and rnd.random() < 0.2:
                count = 1
            else:
                count = 0
            for i in range(count):
                card_id = len(self.cards) + 1
                name = f"Booth {i + 1}" if c.bill_type == "callshop" else f"Card {card_id:05d}"
                self.cards.append({"id": card_id, "customer": c.id, "name": name})
                c.cards.append(card_id)
            if c.bill_type in ("postpaid", "prepaid_invoices"):
                for block in range(1, blocks + 1):
                    invoice_id = len(self.invoices) + 1
                    self.invoices.append({"id": invoice_id, "customer": c.id})
                    c.invoices[block] = invoice_id

    def _charges(self) -> None:
        # Each level down the chain pays its reseller's price plus a margin.
        for c in self.customers:
            chain = []
            node: _Customer | None = c
            while node is not None and (node.parent is not None or node is c):
                chain.append(node)
                node = self._by_id.get(node.parent) if node.parent else None
            for cust in chain:
                markup = 1.0 + 0.15 * cust.depth
                tax = (0, 200, 100, 0, 250)[cust.id % 5]
                value = self._currency_value[cust.currency]
                c.charges.append((cust.id, cust.currency, markup / value, tax))

    def _users(self, rnd: random.Random) -> list[dict[str, Any]]:
        opts = self.options
        users: list[dict[str, Any]] = []
        taken: set[str] = set()

        def add(c: _Customer, kind: str, *, enabled: bool = True, name: str = "") -> None:
            username = name or f"c{c.id}-{kind}"
            if username in taken or len(users) >= opts.user_count:
                return
            taken.add(username)
            users.append(
                {
                    "username": username,
                    "password": opts.password,
                    "customer": c.id,
                    "role": ROLE_BY_KIND[kind],
                    "enabled": enabled,
                }
            )

        owner = self.customers[0]
        add(owner, "admin", name="owner")
        add(owner, "viewer", name="owner-viewer")
        add(owner, "phone", name="owner-phone")
        others = self.customers[1:]
        # One of each case the API must answer differently, when the tree has one.
        picks = [
            (lambda c: c.reseller and c.depth == 1 and c.enabled, "admin"),
            (lambda c: not c.reseller and c.enabled and c.rate_plan != PLAN_NO_CDRS, "viewer"),
            (lambda c: c.bill_type == "callshop" and c.enabled, "callshop"),
            (lambda c: c.bill_type == "callshop" and c.enabled, "callshop-archive"),
            (lambda c: c.enabled, "phone"),
            (lambda c: c.rate_plan == PLAN_NO_CDRS and c.enabled, "viewer"),
            (lambda c: not c.enabled, "viewer"),
        ]
        for test, kind in picks:
            found = [c for c in others if test(c)]
            if found:
                add(found[rnd.randrange(len(found))], kind)
        # Then customers at every depth in turn, with the kinds that suit them.
        levels = [[c for c in others if c.depth == d] for d in range(1, opts.depth + 1)]
        levels = [lv for lv in levels if lv]
        attempts = 0
        while len(users) < opts.user_count and levels and attempts < 50 * opts.user_count:
            attempts += 1
            level = levels[attempts % len(levels)]
            c = level[rnd.randrange(len(level))]
            if c.reseller:
                kind = "admin" if rnd.random() < 0.7 else "viewer"
            elif c.bill_type == "callshop":
                kind = "callshop" if rnd.random() < 0.6 else "callshop-archive"
            else:
                kind = "viewer" if rnd.random() < 0.85 else "phone"
            add(c, kind, enabled=rnd.random() >= 0.05)
        return users

    def objects(self) -> dict[str, list[dict[str, Any]]]:
        """Everything but the legs, in the file's shape."""
        return {
            "currencies": self.currencies,
            "rate_plans": [dict(p) for p in RATE_PLANS],
            "roles": [dict(r) for r in ROLES],
            "customers": [
                {
                    "id": c.id,
                    "parent": c.parent,
                    "name": c.name,
                    "bill_type": c.bill_type,
                    "currency": c.currency,
                    "rate_plan": c.rate_plan,
                    "enabled": c.enabled,
                }
                for c in self.customers
            ],
            "users": self.users,
            "peers": [{"id": i, "name": name} for i, name in enumerate(PEERS, start=1)],
            "cards": self.cards,
            "invoices": self.invoices,
        }

    # --- legs -----------------------------------------------------------------------

    def legs(self) -> Iterator[dict[str, Any]]:
        """`options.legs` legs in order of start time (ties in order of uniqueid)."""
        opts = self.options
        rnd = self._rnd = random.Random(f"enswitch-dataset:{opts.seed}:legs")  # noqa: S311
        r = rnd.random
        period_start = opts.end - opts.days * DAY
        archive_before = period_start + (opts.days * DAY) // 4

        # Busier in office hours and on weekdays (1970-01-01 was a Thursday).
        weights = []
        for h in range(opts.days * 24):
            t = period_start + h * 3600
            weekend = (t // DAY + 3) % 7 >= 5
            weights.append(HOUR_WEIGHT[(t % DAY) // 3600] * (0.35 if weekend else 1.0))
        total_weight = sum(weights)

        # Some customers are much busier than others; disabled ones less so.
        ranks = list(range(1, len(self.customers) + 1))
        rnd.shuffle(ranks)
        self._cum: list[float] = []
        acc = 0.0
        for c, rank in zip(self.customers, ranks, strict=True):
            acc += rank**-0.7 * (1.0 if c.enabled else 0.2) * (0.3 if c.parent is None else 1)
            self._cum.append(acc)

        self._external = [cc + _digits(rnd, n) for cc, n in COUNTRIES for _ in range(300)]
        self._external += ["00" + e for e in self._external[:200]] + list(SHORT_NUMBERS)
        self._statuses = _cumulative(STATUSES)
        self._targets = _cumulative(TARGET_TYPES)
        self._counter = 0

        emitted = 0
        acc_weight = 0.0
        for h, weight in enumerate(weights):
            acc_weight += weight
            want = round(opts.legs * acc_weight / total_weight) - emitted
            if want <= 0:
                continue
            hour_start = period_start + h * 3600
            batch: list[dict[str, Any]] = []
            while len(batch) < want:
                batch += self._call(hour_start + int(r() * 3600))
            del batch[want:]
            # Stable: legs that start together stay in the order made, the uniqueid order.
            batch.sort(key=itemgetter("start"))
            for leg in batch:
                leg["archived"] = leg["start"] < archive_before
                if leg["costs"]:
                    block = (opts.end - leg["start"] - 1) // (30 * DAY)
                    leg["invoice"] = self._by_id[leg["scustomer"]].invoices.get(block)
                yield leg
            emitted += want

    def _pick_customer(self) -> _Customer:
        return self._rnd.choices(self.customers, cum_weights=self._cum)[0]

    def _call(self, start: int) -> list[dict[str, Any]]:
        """The legs of one call (one to three, sharing the first leg's uniqueid as callid).

        A route is (direction, stype, snumber, ctype, cnumber, dtype, dnumber)."""
        rnd = self._rnd
        r = rnd.random
        choices = rnd.choices
        c = choices(self.customers, cum_weights=self._cum)[0]
        values, cum = self._statuses
        status = choices(values, cum_weights=cum)[0]
        answered = status == "answer"
        # expovariate(1 / 150), without its call overhead: mean 2.5 minutes.
        talk = min(int(-math.log(1.0 - r()) * 150) + 1, 7200) if answered else 0
        ring = 0 if status in ("congestion", "chanunavail") else int(r() * 25)
        ext = c.extensions[int(r() * len(c.extensions))]
        external = self._external
        outside = external[int(r() * len(external))]
        peer = 1 + int(r() * len(PEERS))
        leg = self._leg
        out = ("out", "phone", ext, "external", outside, "external", outside)
        x = r()
        if c.bill_type == "callshop" and c.cards and x < 0.8:  # a booth calling out
            card = c.cards[int(r() * len(c.cards))]
            return [
                leg(None, start, ring, talk, status, c, out, peer=peer, card=card, charged=True)
            ]
        if x < 0.45:  # out to the world
            return [leg(None, start, ring, talk, status, c, out, peer=peer, charged=True)]
        if x < 0.82:  # in from the world, to one of the customer's numbers
            values, cum = self._targets
            dtype = choices(values, cum_weights=cum)[0]
            did = c.dids[int(r() * len(c.dids))]
            route = ("in", "external", outside, "did", did, dtype, ext)
            first = leg(None, start, ring, talk, status, c, route, peer=peer, charged=r() < 0.1)
            callid, later = first["callid"], start + ring
            legs = [first]
            if dtype in ("queue", "huntgroup"):  # on to an agent's phone
                agent = c.extensions[int(r() * len(c.extensions))]
                route = ("internal", dtype, ext, "phone", agent, "phone", agent)
                legs.append(leg(callid, later, int(r() * 10), talk, status, c, route))
            elif answered and r() < 0.1:  # forwarded to a mobile
                mobile = external[int(r() * len(external))]
                route = ("out", "phone", ext, "external", mobile, "external", mobile)
                legs.append(
                    leg(
                        callid,
                        later,
                        int(r() * 10),
                        talk,
                        status,
                        c,
                        route,
                        peer=peer,
                        charged=True,
                    )
                )
            if not answered and r() < 0.5:  # the caller leaves a message
                route = ("internal", "phone", ext, "voicemail", ext, "voicemail", ext)
                legs.append(leg(callid, later, 0, 1 + int(r() * 40), "answer", c, route))
            return legs
        # Phone to phone: within the customer, or to another customer on the system.
        other = self._pick_customer() if r() < 0.3 else None
        if other is not None and other.id != c.id:
            to = other.extensions[int(r() * len(other.extensions))]
            route = ("internal", "phone", ext, "phone", to, "phone", to)
            return [leg(None, start, ring, talk, status, c, route, dcustomer=other, charged=True)]
        to = c.extensions[int(r() * len(c.extensions))]
        return [
            leg(
                None,
                start,
                ring,
                talk,
                status,
                c,
                ("internal", "phone", ext, "phone", to, "phone", to),
            )
        ]

    def _leg(
        self,
        callid: str | None,
        start: int,
        ring: int,
        talk: int,
        status: str,
        c: _Customer,
        route: tuple[str, str, str, str, str, str, str],
        *,
        peer: int | None = None,
        card: int | None = None,
        dcustomer: _Customer | None = None,
        charged: bool = False,
    ) -> dict[str, Any]:
        r = self._rnd.random
        self._counter += 1
        uid = f"{start}.{self._counter}"
        costs: list[dict[str, Any]] = []
        if talk and charged:
            rate = 4_000 + int(r() * 60_000)  # micro-units of the base currency a minute
            base = (talk + 59) // 60 * rate
            sign = -1 if r() < 0.02 else 1  # a credit now and then
            for cust_id, currency, mult, tax in c.charges:
                amount = sign * int(base * mult)
                costs.append(
                    {
                        "customer": cust_id,
                        "cost": _money(amount),
                        "tax": _money(amount * tax // 1000),
                        "currency": currency,
                    }
                )
            if card is not None:
                amount = sign * int(base * 1.5 / self._currency_value[c.currency])
                costs.append(
                    {
                        "card": card,
                        "cost": _money(amount),
                        "tax": "0.000000",
                        "currency": c.currency,
                    }
                )
            if dcustomer is not None and all(e.get("customer") != dcustomer.id for e in costs):
                costs.append(
                    {
                        "customer": dcustomer.id,
                        "cost": "0.000000",
                        "tax": "0.000000",
                        "currency": dcustomer.currency,
                    }
                )
        direction, stype, snumber, ctype, cnumber, dtype, dnumber = route
        return {
            "uniqueid": uid,
            "callid": callid or uid,
            "start": start,
            "end": start + ring + talk,
            "talktime": talk,
            "status": status,
            "direction": direction,
            "stype": stype,
            "snumber": snumber,
            "ctype": ctype,
            "cnumber": cnumber,
            "dtype": dtype,
            "dnumber": dnumber,
            "callername": CALLER_NAMES[int(r() * len(CALLER_NAMES))],
            "scustomer": c.id,
            "dcustomer": dcustomer.id if dcustomer is not None else None,
            "peer": peer,
            "invoice": None,
            "card": card,
            "archived": False,
            "costs": costs,
        }


# --- output -------------------------------------------------------------------------


def generate(options: Options | None = None, **kwargs: Any) -> dict[str, Any]:
    """A whole dataset as a dict, legs included: for small sizes (tests, fixtures)."""
    gen = DatasetGenerator(options or Options(**kwargs))
    data: dict[str, Any] = gen.objects()
    data["cdrs"] = list(gen.legs())
    return data
