"""Response headers every API answer carries."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import add_never_cache_headers

API_PREFIX = "/api/json/"


class NoStoreMiddleware:
    """`Cache-Control: no-store` (and the rest of never_cache) on API answers: they carry
    billing data, and a shared or browser cache must not keep them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.path.startswith(API_PREFIX):
            add_never_cache_headers(response)
        return response
