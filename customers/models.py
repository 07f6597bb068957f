"""Customers (a tree), their users and roles, rate plans, currencies, peers, cards, invoices."""

from __future__ import annotations

import re

from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Substr

from enswitch.fields import CodePointCharField


class Currency(models.Model):
    code = CodePointCharField(max_length=16, primary_key=True)
    # What one unit is worth in the system's base currency.
    value = models.DecimalField(max_digits=30, decimal_places=12)

    class Meta:
        verbose_name_plural = "currencies"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="currency_value_positive"),
        ]

    def __str__(self) -> str:
        return self.code


class RatePlan(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255)
    features = models.JSONField(default=list, blank=True, help_text='Words, e.g. ["cdrs"].')

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def allows(self, feature: str) -> bool:
        return feature in (self.features or [])


class Role(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255)
    privileges = models.JSONField(
        default=list, blank=True, help_text='Words, e.g. ["cdrs", "archive"].'
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def allows(self, privilege: str) -> bool:
        return privilege in (self.privileges or [])


class BillType(models.TextChoices):
    CALLSHOP = "callshop"
    EXTERNAL = "external"
    NONE = "none"
    POSTPAID = "postpaid"
    PREPAID = "prepaid"
    PREPAID_CALLS = "prepaid_calls"
    PREPAID_INVOICES = "prepaid_invoices"


PREPAID_BILL_TYPES = (BillType.PREPAID, BillType.PREPAID_CALLS, BillType.PREPAID_INVOICES)

PATH_SEP = "/"


def path_for(parent_path: str, customer_id: int) -> str:
    return f"{parent_path}{customer_id}{PATH_SEP}"


class CustomerQuerySet(models.QuerySet):
    def subtree(self, customer: Customer, *, include_self: bool = True) -> CustomerQuerySet:
        """The customer and everything under it, at any depth: one indexed prefix scan.

        A materialized path ("/1/5/23/") makes this a single `LIKE '/1/5/%'` on both
        databases, whatever the depth or the size of the tree.
        """
        qs = self.filter(path__startswith=customer.path)
        if not include_self:
            qs = qs.exclude(pk=customer.pk)
        return qs

    def children_of(self, customer: Customer) -> CustomerQuerySet:
        return self.filter(parent_id=customer.pk)

    def system_owner(self) -> Customer | None:
        return self.filter(parent__isnull=True).first()


class Customer(models.Model):
    id = models.BigIntegerField(primary_key=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    name = models.CharField(max_length=255)
    bill_type = models.CharField(max_length=32, choices=BillType.choices)
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT)
    rate_plan = models.ForeignKey(RatePlan, null=True, blank=True, on_delete=models.PROTECT)
    enabled = models.BooleanField(default=True)
    # Maintained by save(): "/<root id>/.../<own id>/". Indexed for prefix scans.
    path = CodePointCharField(max_length=2000, editable=False, default="")
    depth = models.PositiveIntegerField(default=0, editable=False)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        # "C" collation on PostgreSQL: this btree serves `path LIKE '/1/5/%'` directly.
        indexes = [models.Index(fields=["path"], name="customer_path")]
        constraints = [
            models.CheckConstraint(
                condition=Q(bill_type__in=BillType.values), name="customer_bill_type_known"
            ),
            models.CheckConstraint(
                condition=(Q(parent__isnull=True, depth=0) | Q(parent__isnull=False, depth__gt=0)),
                name="customer_depth_matches_parent",
            ),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="customer_not_own_parent"),
            # Exactly one system owner: at most one row may have depth 0.
            models.UniqueConstraint(
                fields=["depth"], condition=Q(depth=0), name="customer_single_system_owner"
            ),
        ]

    def __str__(self) -> str:
        # The ID once: not again after a name that already ends with it ("... (reseller 8)").
        if re.search(rf"\b{self.id}\)?$", self.name or ""):
            return self.name
        return f"{self.name} ({self.id})"

    def clean(self) -> None:
        if self.parent_id is not None and self.pk is not None:
            parent = Customer.objects.filter(pk=self.parent_id).only("path").first()
            if parent and f"{PATH_SEP}{self.pk}{PATH_SEP}" in parent.path:
                raise ValidationError({"parent": "A customer cannot be placed under itself."})
        if self.parent_id is None:
            owner = Customer.objects.system_owner()
            if owner is not None and owner.pk != self.pk:
                raise ValidationError({"parent": "The system already has an owner (no parent)."})

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            old_path = (
                Customer.objects.filter(pk=self.pk).values_list("path", flat=True).first()
                if self.pk is not None
                else None
            )
            if self.parent_id is None:
                self.path, self.depth = path_for(PATH_SEP, self.pk), 0
            else:
                parent = Customer.objects.only("path", "depth").get(pk=self.parent_id)
                if f"{PATH_SEP}{self.pk}{PATH_SEP}" in parent.path:
                    raise ValidationError("A customer cannot be placed under itself.")
                self.path, self.depth = path_for(parent.path, self.pk), parent.depth + 1
            super().save(*args, **kwargs)
            if old_path and old_path != self.path:
                self._move_descendants(old_path)

    @property
    def is_system_owner(self) -> bool:
        return self.parent_id is None

    def _move_descendants(self, old_path: str) -> None:
        depth_change = self.path.count(PATH_SEP) - old_path.count(PATH_SEP)
        Customer.objects.filter(path__startswith=old_path).exclude(pk=self.pk).update(
            path=Concat(Value(self.path), Substr("path", len(old_path) + 1)),
            depth=F("depth") + depth_change,
        )


class UserQuerySet(models.QuerySet):
    def for_api(self) -> UserQuerySet:
        return self.select_related("customer__currency", "customer__rate_plan", "role")


class User(models.Model):
    """A user of the Enswitch API (not a Django admin account)."""

    username = CodePointCharField(max_length=255, unique=True)
    password = models.CharField(max_length=255, help_text="A Django password hash.")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="users")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="users")
    enabled = models.BooleanField(default=True)

    objects = UserQuerySet.as_manager()

    class Meta:
        ordering = ["username"]
        verbose_name = "API user"

    def __str__(self) -> str:
        return self.username

    def set_password(self, raw_password: str) -> None:
        # The same password again keeps its stored hash: it is not a change (the
        # authentication tokens issued under it stay valid).
        if self.password and check_password(raw_password, self.password):
            return
        self.password = make_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        return check_password(raw_password, self.password)


class Peer(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or f"Peer {self.id}"


class Card(models.Model):
    id = models.BigIntegerField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="cards")
    name = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or f"Card {self.id}"


class Invoice(models.Model):
    id = models.BigIntegerField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Invoice {self.id}"
