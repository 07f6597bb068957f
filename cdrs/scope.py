"""What a user may see: their own customer and every customer under it.

Computed here only; the legs (`LegQuerySet.visible_to`), the cost records
(`cdrs.costs.with_costs`) and the customer IDs a request names all ask this.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from django.db import connections

from customers.models import Customer, CustomerQuerySet, User
from enswitch.replicas import NodeBehind, reads_alias


@dataclass(frozen=True)
class Scope:
    customer: Customer

    @property
    def is_everything(self) -> bool:
        """The system owner's users see the whole system: no need to test each row."""
        return self.customer.is_system_owner

    def customers(self) -> CustomerQuerySet:
        """The scope's customers, the user's own included."""
        return Customer.objects.subtree(self.customer)

    def includes(self, customer_id: int) -> bool:
        return self.customers().filter(pk=customer_id).exists()


@functools.cache
def _place_sql() -> str:
    """A customer's path and parent by id. Written once rather than built by the ORM on
    every request: building it would cost more than running it (bench/README.md)."""
    meta, quote = Customer._meta, connections["default"].ops.quote_name
    path, parent = (quote(meta.get_field(name).column) for name in ("path", "parent"))
    return (
        f"SELECT {path}, {parent} FROM {quote(meta.db_table)} "  # noqa: S608 - quoted names
        f"WHERE {quote(meta.pk.column)} = %s"
    )


def _place_on(alias: str, customer_id: int) -> tuple[str, int | None] | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(_place_sql(), [customer_id])
        return cursor.fetchone()


def as_the_reads_see_it(user: User) -> User:
    """The user (read with the credentials on the primary) with their customer's place in
    the tree as the node that serves this request's reads has it, so that the scope and
    the legs come from the same node. A node that does not know the customer yet is
    passed over (NodeBehind)."""
    alias = reads_alias()
    if alias == user._state.db:
        return user
    place = _place_on(alias, user.customer_id)
    if place is None:
        raise NodeBehind()
    seen, customer = copy.copy(user), copy.copy(user.customer)
    customer.path, customer.parent_id = place
    seen.customer = customer
    return seen
