from django.contrib import admin
from django.urls import path, re_path

from cdrs import views

urlpatterns = [
    # Both spellings are served directly: a redirect would drop a POST body.
    re_path(r"^api/json/cdrs/list/?$", views.CdrListView.as_view(), name="cdrs-list"),
    re_path(r"^api/json/cdrs/get/?$", views.CdrGetView.as_view(), name="cdrs-get"),
    path("admin/", admin.site.urls),
]
