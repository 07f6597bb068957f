"""Call legs and their per-customer (or per-card) costs, live and archived.

The store keeps two pairs of tables with the same columns: `Leg`/`LegCost` (hot) and
`ArchivedLeg`/`ArchivedLegCost` (archive). A query with archive=0 only ever touches the
hot tables, so it does not slow down as the archive grows; archive=1 runs the same
filters on both and merges them in one ordered UNION ALL. A leg keeps its `id` when it
moves, so a leg is identified the same way wherever it lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections, models
from django.db.models import F, Q

from cdrs.scope import Scope
from customers.models import Card, Currency, Customer, Invoice, Peer
from enswitch import citus
from enswitch.fields import MAX_STRING, CodePointCharField

if TYPE_CHECKING:
    from customers.models import User


def fold_case(text: str) -> str:
    """Lower-case character by character with Unicode's mapping (no full case folding).

    Stored beside the caller name so the case-insensitive match is a plain comparison
    that behaves the same on PostgreSQL and SQLite (whose LIKE only folds ASCII).
    """
    return "".join(ch.lower() for ch in text)


class Direction(models.TextChoices):
    IN = "in"
    OUT = "out"
    INTERNAL = "internal"


class LegQuerySet(models.QuerySet):
    def visible_to(
        self, user: User, *, within: models.QuerySet | list[int] | None = None
    ) -> LegQuerySet:
        """The one scoping rule: legs whose scustomer or dcustomer is the user's customer
        or under it. Every API endpoint starts from here.

        `within` narrows that to the legs of some customers (their ids, or a queryset of
        them), which the API has checked are in the scope; whatever it holds, no leg
        outside the scope is returned. A queryset is cut down to the scope on the
        customer table, so each leg is tested against one set of customers only.
        """
        scope = Scope(user.customer)
        everything, customers = scope.is_everything, scope.customers()
        if within is None:
            return self.all() if everything else self.for_customers(customers.values("pk"))
        if isinstance(within, list):
            legs = self.for_customers(within)
            return legs if everything else legs.for_customers(customers.values("pk"))
        return self.for_customers((within if everything else within & customers).values("pk"))

    def for_customers(self, customer_ids: models.QuerySet | list[int]) -> LegQuerySet:
        """Legs that belong to a set of customers (as scustomer or dcustomer)."""
        if isinstance(customer_ids, list) and len(customer_ids) == 1:
            (cid,) = customer_ids
            return self.filter(Q(scustomer_id=cid) | Q(dcustomer_id=cid))
        return self.filter(Q(scustomer_id__in=customer_ids) | Q(dcustomer_id__in=customer_ids))

    def bulk_create(self, objs, *args, **kwargs):  # noqa: ANN001, ANN201 - Django's signature
        """On a Citus cluster, legs without an id take theirs from the sequence first:
        Citus returns the rows of a multi-row INSERT shard by shard, not in the order
        given, so ids read back would land on the wrong objects."""
        objs = list(objs)
        missing = [obj for obj in objs if obj.pk is None]
        if missing and citus.is_distributed(self.db):
            with connections[self.db].cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) "
                    "FROM generate_series(1, %s)",
                    [Leg._meta.db_table, len(missing)],
                )
                for obj, (pk,) in zip(missing, cursor.fetchall(), strict=True):
                    obj.pk = pk
        return super().bulk_create(objs, *args, **kwargs)

    def matching(self, field: str, lookup: str, needle: str) -> LegQuerySet:
        """Legs whose `field` matches `needle` by `lookup` (exact, startswith, endswith,
        contains).

        A called number searched for inside or at its end on the live table of
        PostgreSQL is looked up among the distinct called numbers (`CalledNumber`)
        first: the legs are then found by equality on their (cnumber, start) index,
        which also carries what the user's scope and the time range need, so only
        the legs that pass them are read. A LIKE '%digits%' on the legs themselves
        would read every leg, of any customer and any time, whose number has them.
        On a Citus cluster the table is not kept (no trigger there): the LIKE runs on
        every shard at once, served by a trigram index on the shards (enswitch/citus.py).
        """
        if (
            field == "cnumber"
            and lookup in ("contains", "endswith")
            and self.model is Leg
            and connections[self.db].vendor == "postgresql"
            and not citus.is_distributed(self.db)
        ):
            numbers = CalledNumber.objects.filter(**{f"value__{lookup}": needle})
            return self.filter(cnumber__in=numbers.values("value"))
        return self.filter(**{f"{field}__{lookup}": needle})


class LegBase(models.Model):
    uniqueid = CodePointCharField(max_length=MAX_STRING)
    callid = CodePointCharField(max_length=MAX_STRING)
    start = models.BigIntegerField(help_text="Unix time.")
    end = models.BigIntegerField(help_text="Unix time.")
    talktime = models.BigIntegerField(default=0)
    status = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    direction = CodePointCharField(max_length=16, choices=Direction.choices)
    stype = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    snumber = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    ctype = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    cnumber = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    dtype = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    dnumber = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    callername = CodePointCharField(max_length=MAX_STRING, blank=True, default="")
    callername_folded = CodePointCharField(max_length=1024, blank=True, default="", editable=False)
    scustomer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    dcustomer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # No index of their own on invoice and card: every index is paid again by each
    # imported and each archived leg, and these IDs are only ever filtered on together
    # with a time range (served by the indexes below). Peer has the admin's (peer, start).
    peer = models.ForeignKey(
        Peer, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    objects = LegQuerySet.as_manager()

    # Set on the concrete classes; rows carry it as `archived`.
    ARCHIVED: int = 0

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.uniqueid

    def save(self, *args, **kwargs) -> None:
        self.callername_folded = fold_case(self.callername)
        super().save(*args, **kwargs)

    @property
    def totaltime(self) -> int:
        return self.end - self.start


def leg_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(condition=Q(end__gte=F("start")), name=f"{prefix}_end_after_start"),
        models.CheckConstraint(
            condition=Q(talktime__gte=0) & Q(talktime__lte=F("end") - F("start")),
            name=f"{prefix}_talktime_within_leg",
        ),
        models.CheckConstraint(
            condition=Q(direction__in=Direction.values), name=f"{prefix}_direction_known"
        ),
        # A constraint rather than unique=True: on PostgreSQL the column's "C" collation
        # already serves prefix searches, so Django's extra pattern-ops index is not wanted.
        models.UniqueConstraint(fields=["uniqueid"], name=f"{prefix}_uniqueid_unique"),
    ]


def leg_indexes(prefix: str, *, covering: bool) -> list[models.Index]:
    # Why these: every query is a time range ordered by start (then uniqueid), narrowed
    # by the customers on either side of the leg.
    indexes = [
        # The live table's also carries the customers and the id, so a deep page (a large
        # offset) is counted off from the index alone (see cdrs/queries.py); the
        # archive's does not, since each archived leg writes every byte of it again.
        models.Index(
            fields=["start", "uniqueid"],
            include=["scustomer", "dcustomer", "id"] if covering else (),
            name=f"{prefix}_start_uid",
        ),
        models.Index(fields=["scustomer", "start"], name=f"{prefix}_scust_start"),
        models.Index(fields=["dcustomer", "start"], name=f"{prefix}_dcust_start"),
        models.Index(fields=["callid"], name=f"{prefix}_callid"),
    ]
    # The admin's search (cdrs/admin.py): a number by its start, with LIKE 'x%' on these
    # "C"-collated columns; without them one search reads the table. (Caller names are
    # searched anywhere in the name: a trigram index, migration 0007, PostgreSQL only.)
    # Its filters by status, direction and peer likewise find a rare value's legs (and
    # count them) without walking every leg.
    indexes += [
        models.Index(fields=["snumber"], name=f"{prefix}_snumber"),
        models.Index(fields=["dnumber"], name=f"{prefix}_dnumber"),
        models.Index(fields=["status", "start"], name=f"{prefix}_status_start"),
        models.Index(fields=["direction", "start"], name=f"{prefix}_direction_start"),
        models.Index(fields=["peer", "start"], name=f"{prefix}_peer_start"),
    ]
    if not covering:
        indexes.append(models.Index(fields=["cnumber"], name=f"{prefix}_cnumber"))
    if covering:
        # The called-number search (LegQuerySet.matching): a number's legs in a time
        # range, with what the scope and the page's order need, from the index alone.
        indexes.append(
            models.Index(
                fields=["cnumber", "start"],
                include=["uniqueid", "scustomer", "dcustomer", "id"],
                name=f"{prefix}_cnumber_start",
            )
        )
    return indexes


class Leg(LegBase):
    ARCHIVED = 0

    class Meta:
        verbose_name = "call leg"
        constraints = leg_constraints("leg")
        indexes = leg_indexes("leg", covering=True)


class ArchivedLeg(LegBase):
    ARCHIVED = 1

    class Meta:
        verbose_name = "archived call leg"
        constraints = leg_constraints("archleg")
        indexes = leg_indexes("archleg", covering=False)


class CalledNumber(models.Model):
    """Every called number of the live legs, once: the index of `cmatch=contains`.

    Legs are many more than their distinct called numbers. A search for digits inside a
    number finds the numbers here (a trigram index on PostgreSQL), then their legs by
    equality (LegQuerySet.matching).

    Kept by the database, not by the code that writes legs: on PostgreSQL a trigger
    on the leg table adds the numbers of every inserted or updated leg, whatever
    wrote it (import, admin, restore from the archive), even in replica mode.
    Numbers are never removed, so the table is always a superset of the legs'
    numbers: a number no leg has any more only costs an empty lookup. SQLite does
    not use it (its LIKE reads the legs).
    """

    value = CodePointCharField(max_length=MAX_STRING, primary_key=True)

    def __str__(self) -> str:
        return self.value


class CostBase(models.Model):
    """What one customer (or one calling card) is charged for a leg.

    Only two indexes, both unique and led by the leg: (leg, customer), which also serves
    every lookup by leg, and (leg, card). Cost rows are looked up by leg, never by
    customer or currency alone, and each index is paid again by every import and every
    archived leg.
    """

    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    cost = models.DecimalField(max_digits=24, decimal_places=6, help_text="Excluding tax.")
    tax = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        # On a Citus cluster the leg is the record's distribution column, which no UPDATE
        # may set, even to the value it has: a stored record is updated without it.
        if (
            not self._state.adding
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
            and citus.is_distributed(kwargs.get("using") or self._state.db or "default")
        ):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "leg"
            ]
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        who = f"customer {self.customer_id}" if self.customer_id else f"card {self.card_id}"
        return f"{self.cost} {self.currency_id} for {who}"


def cost_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            condition=(
                Q(customer__isnull=False, card__isnull=True)
                | Q(customer__isnull=True, card__isnull=False)
            ),
            name=f"{prefix}_customer_xor_card",
        ),
        # Not partial: NULLs are distinct in a unique index on both databases, so card
        # records (customer NULL) never collide, and the index serves lookups by leg too.
        models.UniqueConstraint(fields=["leg", "customer"], name=f"{prefix}_one_per_customer"),
        models.UniqueConstraint(
            fields=["leg", "card"], condition=Q(card__isnull=False), name=f"{prefix}_one_per_card"
        ),
    ]


class LegCost(CostBase):
    leg = models.ForeignKey(Leg, on_delete=models.CASCADE, related_name="costs", db_index=False)

    class Meta:
        verbose_name = "leg cost"
        constraints = cost_constraints("legcost")


class ArchivedLegCost(CostBase):
    leg = models.ForeignKey(
        ArchivedLeg, on_delete=models.CASCADE, related_name="costs", db_index=False
    )

    class Meta:
        verbose_name = "archived leg cost"
        constraints = cost_constraints("archlegcost")


class CallTotals(models.Model):
    """A customer's legs in one hour [hour, hour + 3600), by direction (`cdrs/totals/list`).

    A leg counts for its `scustomer` and for its `dcustomer` (once when both are the same
    customer), live or archived: archiving moves legs, it does not change these. Kept
    where legs are written (cdrs/totals.py: the importer, the admin and the ORM), and
    rebuilt from the legs by `rebuild_totals`. The key leads with the customer, which
    serves the API's "these customers, these hours" and is the column to distribute by.
    """

    pk = models.CompositePrimaryKey("customer_id", "hour")
    # No database constraint: totals outlive nothing, and a customer without legs may go.
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    hour = models.BigIntegerField(help_text="Unix time, a multiple of 3600.")
    inbound = models.BigIntegerField(default=0)
    outbound = models.BigIntegerField(default=0)
    internal = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "call totals"

    def __str__(self) -> str:
        return f"customer {self.customer_id} at {self.hour}"
