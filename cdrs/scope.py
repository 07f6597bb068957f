"""What a user may see: their own customer and every customer under it.

Computed here only; the legs (`LegQuerySet.visible_to`), the cost records
(`cdrs.costs.with_costs`) and the customer IDs a request names all ask this.
"""

from __future__ import annotations

from dataclasses import dataclass

from customers.models import Customer, CustomerQuerySet


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
