from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from cdrs import views
from enswitch.api import schema  # noqa: F401 - registers the schema extensions
from enswitch.api.views import UserLoginView

urlpatterns = [
    # Both spellings are served directly: a redirect would drop a POST body.
    re_path(r"^api/json/cdrs/list/?$", views.CdrListView.as_view(), name="cdrs-list"),
    re_path(r"^api/json/cdrs/get/?$", views.CdrGetView.as_view(), name="cdrs-get"),
    re_path(
        r"^api/json/cdrs/totals/list/?$", views.CdrTotalsListView.as_view(), name="cdrs-totals"
    ),
    re_path(r"^api/json/user/login/?$", UserLoginView.as_view(), name="user-login"),
    # OpenAPI description: YAML, or JSON with ?format=json.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("admin/", admin.site.urls),
]
