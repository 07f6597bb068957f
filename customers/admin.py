"""Admin pages for customers (a tree), API users, roles, rate plans and the small tables."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.forms import SetPasswordMixin
from django.contrib.auth.hashers import identify_hasher
from django.db.models import QuerySet
from django.http import HttpRequest

from customers.models import (
    Card,
    Currency,
    Customer,
    Invoice,
    Peer,
    RatePlan,
    Role,
    User,
)
from enswitch.admin_tools.customer_tree import (
    AncestorFilter,
    breadcrumb,
    call_links,
    figures_html,
    indented_name,
    sub_customers,
    users,
)
from enswitch.admin_tools.index_search import IdSearchMixin
from enswitch.admin_tools.large_tables import BoundedDeleteMixin
from enswitch.admin_tools.leg_filters import AUTOCOMPLETE_CSS, AUTOCOMPLETE_JS
from enswitch.admin_tools.login import ThrottledAdminAuthenticationForm
from enswitch.admin_tools.url_lookups import SecretLookupGuard
from enswitch.admin_tools.word_lists import WordListField, words_display

# The admin login counts failures like the API's (enswitch/api/throttle.py).
admin.site.login_form = ThrottledAdminAuthenticationForm

# The words the API itself checks; any other word can still be typed in.
ROLE_PRIVILEGES = ("cdrs", "callshop", "archive")
RATE_PLAN_FEATURES = ("cdrs",)


def _readonly_pk_on_change(
    admin_obj: admin.ModelAdmin, request: HttpRequest, obj: Any, fields: tuple[str, ...]
) -> tuple[str, ...]:
    # IDs are chosen by the operator (the API shows them) but fixed once the object
    # exists: editing the primary key in a change form would save a copy instead.
    if obj is not None:
        return (obj._meta.pk.name, *fields)
    return fields


class BaseAdmin(SecretLookupGuard, BoundedDeleteMixin, IdSearchMixin, admin.ModelAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _readonly_pk_on_change(self, request, obj, tuple(self.readonly_fields))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Read-only fields come last by default; the ID still belongs first.
        fields = list(super().get_fields(request, obj))
        pk = self.model._meta.pk.name
        return [pk, *(f for f in fields if f != pk)] if pk in fields else fields


# --- Currency, peers, cards, invoices -----------------------------------------------


@admin.register(Currency)
class CurrencyAdmin(BaseAdmin):
    list_display = ("code", "value")
    search_fields = ("code__icontains",)
    search_help_text = "Currency code."


@admin.register(Peer)
class PeerAdmin(BaseAdmin):
    list_display = ("id", "name")
    search_fields = ("name__icontains",)
    search_id_fields = ("id",)
    search_help_text = "Peer name, or exact peer ID."


@admin.register(Card)
class CardAdmin(BaseAdmin):
    list_display = ("id", "name", "customer")
    list_select_related = ("customer",)
    raw_id_fields = ("customer",)
    search_fields = ("name__icontains",)
    search_id_fields = ("id", "customer_id")
    search_help_text = "Card name, or exact card or customer ID."


@admin.register(Invoice)
class InvoiceAdmin(BaseAdmin):
    list_display = ("id", "customer")
    list_select_related = ("customer",)
    raw_id_fields = ("customer",)
    search_id_fields = ("id", "customer_id")
    search_help_text = "Exact invoice or customer ID."


# --- Roles and rate plans ------------------------------------------------------------


class WordFilter(admin.SimpleListFilter):
    """Rows whose word list contains a word. The tables are small (tens of rows), so
    the test runs in Python: JSON containment is not portable to SQLite."""

    words: tuple[str, ...] = ()
    attribute = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(w, w) for w in self.words]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        word = self.value()
        if word is None:
            return queryset
        ids = [
            pk
            for pk, words in queryset.values_list("pk", self.attribute)
            if isinstance(words, list) and word in words
        ]
        return queryset.filter(pk__in=ids)


class WordListAdmin(BaseAdmin):
    """A small table of an id, a name and a list of words (a role's privileges, a rate
    plan's features): the words as one form field, one list filter and one column.
    A subclass names the column, the words the API checks and the help text."""

    words_field = ""  # the JSON column
    word = ""  # one of them: the filter's title and URL parameter
    known_words: tuple[str, ...] = ()
    words_help = ""
    list_display = ("id", "name", "word_list")
    search_fields = ("name__icontains",)
    search_id_fields = ("id",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        field = WordListField(
            cls.known_words,
            help_text=cls.words_help + " Other words may be typed in, separated by commas.",
        )
        cls.form = type(f"{cls.__name__}Form", (forms.ModelForm,), {cls.words_field: field})
        word_filter = {
            "title": cls.word,
            "parameter_name": cls.word,
            "words": cls.known_words,
            "attribute": cls.words_field,
        }
        cls.list_filter = (type(f"{cls.__name__}Filter", (WordFilter,), word_filter),)

        @admin.display(description=cls.words_field)
        def word_list(self: WordListAdmin, obj: Any) -> str:
            return words_display(getattr(obj, cls.words_field))

        cls.word_list = word_list


@admin.register(Role)
class RoleAdmin(WordListAdmin):
    words_field = "privileges"
    word = "privilege"
    known_words = ROLE_PRIVILEGES
    words_help = "cdrs or callshop: may list calls; archive: may include archived calls."
    search_help_text = "Role name, or exact role ID."


@admin.register(RatePlan)
class RatePlanAdmin(WordListAdmin):
    words_field = "features"
    word = "feature"
    known_words = RATE_PLAN_FEATURES
    words_help = "cdrs: the customer's users may list calls."
    search_help_text = "Rate plan name, or exact rate plan ID."


# --- Customers -----------------------------------------------------------------------


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = ("id", "name", "parent", "bill_type", "currency", "rate_plan", "enabled")


@admin.register(Customer)
class CustomerAdmin(BaseAdmin):
    """The tree in depth-first order (by `path`, which is indexed), names indented."""

    form = CustomerForm
    list_display = ("id", "tree_name", "bill_type", "currency", "rate_plan", "enabled")
    list_display_links = ("id", "tree_name")
    list_filter = (AncestorFilter, "bill_type", "enabled")
    list_select_related = ("currency", "rate_plan")
    ordering = ("path",)
    sortable_by = ()
    search_fields = ("name__icontains",)
    search_id_fields = ("id",)
    search_help_text = "Customer name, or exact customer ID."
    raw_id_fields = ("parent",)
    autocomplete_fields = ("currency", "rate_plan")
    readonly_fields = (
        "path",
        "depth",
        "ancestors",
        "sub_customers",
        "api_users",
        "calls",
        "last_30_days",
    )
    fieldsets = (
        (None, {"fields": ("id", "name", "bill_type", "currency", "rate_plan", "enabled")}),
        (
            "Place in the tree",
            {"fields": ("ancestors", "parent", "sub_customers", "depth", "path")},
        ),
        ("Users and calls", {"fields": ("api_users", "calls", "last_30_days")}),
    )

    class Media:
        js = AUTOCOMPLETE_JS
        css = {"screen": (*AUTOCOMPLETE_CSS, "admin_tools/admin.css")}

    @admin.display(description="name")
    def tree_name(self, obj: Customer) -> str:
        return indented_name(obj)

    @admin.display(description="ancestors")
    def ancestors(self, obj: Customer) -> str:
        return "-" if obj.pk is None else breadcrumb(obj)

    @admin.display(description="sub-customers")
    def sub_customers(self, obj: Customer) -> str:
        return "-" if obj.pk is None else sub_customers(obj)

    @admin.display(description="API users")
    def api_users(self, obj: Customer) -> str:
        return "-" if obj.pk is None else users(obj)

    @admin.display(description="calls")
    def calls(self, obj: Customer) -> str:
        return "-" if obj.pk is None else call_links(obj)

    @admin.display(description="with its sub-customers")
    def last_30_days(self, obj: Customer) -> str:
        return "-" if obj.pk is None else figures_html(obj)

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        # Customer.save() keeps `path` and `depth` right, for the customer and, after a
        # move, for everything under it.
        obj.save()


# --- API users -----------------------------------------------------------------------


class ApiUserForm(SetPasswordMixin, forms.ModelForm):
    """Takes a new password in plain text and keeps only its hash (Django's
    SetPasswordMixin: confirmation, the password validators, set_password).

    Required when adding; left empty on a change, the stored hash is kept.
    """

    new_password1, new_password2 = SetPasswordMixin.create_password_fields(
        label1="New password", label2="New password (again)"
    )

    class Meta:
        model = User
        fields = ("username", "customer", "role", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            for name in ("new_password1", "new_password2"):
                if name in self.fields:
                    self.fields[name].required = False
            if "new_password1" in self.fields:
                self.fields["new_password1"].help_text = (
                    "Leave empty to keep the current password. "
                    + str(self.fields["new_password1"].help_text)
                )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.validate_passwords("new_password1", "new_password2")
        # On a change both may be empty, but not only one of them.
        if bool(cleaned.get("new_password1")) != bool(cleaned.get("new_password2")):
            self.add_error("new_password2", self.error_messages["password_mismatch"])
        return cleaned

    def _post_clean(self) -> None:
        super()._post_clean()
        # After the model fields are on the instance, so the similarity check sees
        # the username being saved.
        if "new_password1" not in self.errors:
            self.validate_password_for_user(self.instance, "new_password1")

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        if self.cleaned_data.get("new_password1"):
            return self.set_password_and_save(user, "new_password1", commit=commit)
        if commit:
            user.save()
        return user


@admin.register(User)
class ApiUserAdmin(BaseAdmin):
    form = ApiUserForm
    list_display = ("username", "customer", "role", "enabled")
    list_filter = ("role", "enabled")
    list_select_related = ("customer", "role")
    search_fields = ("username__icontains",)
    search_id_fields = ("customer_id",)
    search_help_text = "Username, or exact customer ID."
    raw_id_fields = ("customer",)
    readonly_fields = ("password_status",)

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> list:
        account = ["username", "customer", "role", "enabled"]
        password = ["new_password1", "new_password2"]
        if obj is not None:
            password.insert(0, "password_status")
        return [(None, {"fields": account}), ("Password", {"fields": password})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Usernames are the API users' keys; unlike the numeric IDs they may be changed.
        return ("password_status",) if obj is not None else ()

    @admin.display(description="current password")
    def password_status(self, obj: User) -> str:
        # Only the algorithm: the hash itself is never shown, even read-only.
        if not obj.password:
            return "Not set"
        try:
            algorithm = identify_hasher(obj.password).algorithm
        except ValueError:
            return "Set, in an unknown format (it cannot be verified)"
        return f"Set (stored as a {algorithm} hash)"
