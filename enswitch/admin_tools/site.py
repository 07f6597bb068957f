"""The admin site: no "View site" link (the store has no public site), and plain names
for the two kinds of login, so an operator knows which is which."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest

# (app label, object name) -> the name shown on the index and in the sidebar.
PLAIN_NAMES = {
    ("auth", "User"): "Staff logins (this admin site)",
    ("auth", "Group"): "Staff groups (this admin site)",
    ("customers", "User"): "API users (logins of the Enswitch API)",
}


class EnswitchAdminSite(admin.AdminSite):
    site_header = "Enswitch CDR store"
    site_title = "Enswitch CDR store"
    index_title = "Administration"
    # The store serves only the API and this admin: "/" is a 404.
    site_url = None
    # The leg lists need the width; the index page lists every table anyway.
    enable_nav_sidebar = False

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        for app in apps:
            for model in app["models"]:
                name = PLAIN_NAMES.get((app["app_label"], model["object_name"]))
                if name:
                    model["name"] = name
        return apps


class EnswitchAdminConfig(AdminConfig):
    default_site = "enswitch.admin_tools.site.EnswitchAdminSite"
