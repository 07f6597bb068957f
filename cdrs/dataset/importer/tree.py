"""The customer tree: one system owner, no cycles, the materialized path of each customer."""

from __future__ import annotations

from dataclasses import dataclass

from cdrs.dataset.importer.errors import Errors
from cdrs.dataset.importer.sections import Item
from customers.models import (
    PATH_SEP,
    Customer,
    path_for,
)


@dataclass
class Tree:
    path: dict[int, str]
    depth: dict[int, int]
    moved: list[Customer]  # stored customers not in the file whose path changes


def check_tree(customers: list[Item], errors: Errors) -> Tree:
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
    return Tree(path, depth, moved)


def _position(place: str | None) -> int:
    return int(place.rsplit("[", 1)[1].rstrip("]")) if place else -1
