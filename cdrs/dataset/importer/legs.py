"""The legs' columns and their checks: a fast path and the detailed reference side by side."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cdrs.dataset.importer.errors import Errors, Place
from cdrs.dataset.importer.sections import SINGULAR
from cdrs.dataset.importer.values import (
    AMOUNT,
    MAX_STR,
    MISSING,
    TIME_MAX,
    TIME_MIN,
    amount_problem,
    int_problem,
    show,
    string_problem,
    time_problem,
)
from cdrs.models import Direction, Leg, LegCost, fold_case

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


@dataclass
class Batch:
    place: Place
    lines: list[int] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # LEG_FIELDS order
    archived: list[bool] = field(default_factory=list)
    # (index of the leg in `rows`, customer, card, cost, tax, currency)
    costs: list[tuple[Any, ...]] = field(default_factory=list)


class NeedsDetailedCheck(Exception):
    """The fast path saw something unusual: the detailed check decides."""


class LegChecker:
    """Checks legs against what the file and the store hold.

    Two paths, for speed (every lookup counts on this hot path): `check` runs a
    strict fast path that only accepts a leg when every rule plainly holds, and hands
    anything else to `_detailed`, which is the reference: it finds every problem of the
    leg and says where, or accepts the leg (with defaults filled in)."""

    def __init__(self, known: dict[str, set[Any]]) -> None:
        self.known = known
        # Caller names repeat (a company's name on every call it makes), and folding one
        # character at a time is slow: fold each distinct name once.
        self.folded: dict[str, str] = {}

    def check(self, items: Iterable[tuple[int, Any]], place: Place, errors: Errors) -> Batch:
        batch = Batch(place)
        lines, rows, flags, costs = batch.lines, batch.rows, batch.archived, batch.costs
        customers = self.known["customers"]
        currencies = self.known["currencies"]
        cards = self.known["cards"]
        peers = self.known["peers"]
        invoices = self.known["invoices"]
        seen: dict[str, int] = {}
        leg_keys, cost_keys, directions = _LEG_KEYS, _COST_KEYS, _DIRECTIONS
        amount = AMOUNT.fullmatch
        folded_names = self.folded
        slow = (NeedsDetailedCheck, KeyError, TypeError)

        for line, obj in items:
            try:
                if type(obj) is not dict or not obj.keys() <= leg_keys:
                    raise NeedsDetailedCheck
                get = obj.get
                uid = obj["uniqueid"]
                if uid in seen:
                    raise NeedsDetailedCheck
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
                if not uid or "\x00" in "".join(text) or max(map(len, text)) > MAX_STR:
                    raise NeedsDetailedCheck
                if type(start) is not int or type(end) is not int or type(talk) is not int:
                    raise NeedsDetailedCheck
                if not (TIME_MIN <= start <= end <= TIME_MAX and 0 <= talk <= end - start):
                    raise NeedsDetailedCheck
                if direction not in directions:
                    raise NeedsDetailedCheck
                if type(scustomer) is not int or scustomer not in customers:
                    raise NeedsDetailedCheck
                dcustomer, peer = get("dcustomer"), get("peer")
                invoice, card = get("invoice"), get("card")
                if dcustomer is not None and (
                    type(dcustomer) is not int or dcustomer not in customers
                ):
                    raise NeedsDetailedCheck
                if peer is not None and (type(peer) is not int or peer not in peers):
                    raise NeedsDetailedCheck
                if invoice is not None and (type(invoice) is not int or invoice not in invoices):
                    raise NeedsDetailedCheck
                if card is not None and (type(card) is not int or card not in cards):
                    raise NeedsDetailedCheck
                archived = get("archived", False)
                if archived is not True and archived is not False:
                    raise NeedsDetailedCheck
                leg_costs = get("costs")
                k = len(rows)
                checked = []
                if leg_costs:
                    if type(leg_costs) is not list:
                        raise NeedsDetailedCheck
                    for entry in leg_costs:
                        if type(entry) is not dict or not entry.keys() <= cost_keys:
                            raise NeedsDetailedCheck
                        e = entry.get
                        customer, card_charged = e("customer"), e("card")
                        if card_charged is None:
                            if type(customer) is not int or customer not in customers:
                                raise NeedsDetailedCheck
                        elif customer is None:
                            if type(card_charged) is not int or card_charged not in cards:
                                raise NeedsDetailedCheck
                        else:
                            raise NeedsDetailedCheck
                        cost, tax, currency = entry["cost"], e("tax", "0"), entry["currency"]
                        if type(cost) is not str or type(tax) is not str or not amount(cost):
                            raise NeedsDetailedCheck
                        if (
                            not amount(tax)
                            or currency not in currencies
                            or type(currency) is not str
                        ):
                            raise NeedsDetailedCheck
                        checked.append((k, customer, card_charged, cost, tax, currency))
                    if len(checked) > 1:
                        # One record per customer and one per card (a card's negated id
                        # cannot meet a customer's: ids are positive).
                        whos = [c[1] if c[2] is None else -c[2] for c in checked]
                        if len(set(whos)) < len(whos):
                            raise NeedsDetailedCheck
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
                        f"{place(line, 'uniqueid')}: {show(uid)} appears twice "
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
            return [("", f"must be an object, not {show(obj)}")]
        customers = self.known["customers"]
        cards = self.known["cards"]
        bad = [(k, "unknown field") for k in obj if k not in _LEG_KEYS]
        get = obj.get

        uid = get("uniqueid", MISSING)
        if (problem := _missing_or(uid, string_problem, nonempty=True)) is not None:
            bad.append(("uniqueid", problem))
        bad += [
            (name, problem)
            for name in ("callid", "status")
            if (problem := _missing_or(get(name, MISSING), string_problem)) is not None
        ]
        direction = get("direction", MISSING)
        if type(direction) is not str or direction not in _DIRECTIONS:
            bad.append(("direction", _missing_or(direction, _direction_problem)))

        start, end, talk = get("start", MISSING), get("end", MISSING), get("talktime", MISSING)
        time_problems = [
            (name, problem)
            for name, value, check in (
                ("start", start, time_problem),
                ("end", end, time_problem),
                ("talktime", talk, int_problem),
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
            elif (problem := string_problem(value)) is not None:
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
            bad.append(("archived", f"must be true or false, not {show(archived)}"))

        leg_costs = get("costs") or []
        if type(leg_costs) is not list:
            bad.append(("costs", f"must be a list, not {show(leg_costs)}"))
            leg_costs = []
        charged: set[tuple[str, int]] = set()
        checked = []
        for j, entry in enumerate(leg_costs):
            at = f"costs[{j}]"
            if type(entry) is not dict:
                bad.append((at, f"must be an object, not {show(entry)}"))
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
            if (problem := _missing_or(cost, amount_problem)) is not None:
                bad.append((f"{at}.cost", problem))
            tax = entry.get("tax")
            if tax is None:
                tax = "0"
            elif (problem := amount_problem(tax)) is not None:
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
    return f"{show(value)} is not one of: {', '.join(Direction.values)}"


def _ref_problem(value: Any, what: str) -> str:
    if value is MISSING:
        return "missing"
    problem = string_problem(value) if what == "currency" else int_problem(value, positive=True)
    return problem or f"no {what} {show(value)}"
