"""The base of every Enswitch endpoint, and `user/login` (which needs no privilege).

An endpoint is parse -> authenticate (EnswitchAuthentication: 401) -> authorise (its
permission classes: 402, 403) -> `respond()`: validate (400), then the answer.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpResponseBase
from rest_framework.response import Response
from rest_framework.views import APIView

from enswitch.api import tokens
from enswitch.api.authentication import EnswitchAuthentication
from enswitch.api.envelope import InvalidParameters, entry, envelope
from enswitch.api.fields import IntegerField
from enswitch.api.params import Params, request_params
from enswitch.api.renderers import AlwaysEnvelope, EnvelopeRenderer
from enswitch.db import use_statement_timeout


class EnswitchAPIView(APIView):
    authentication_classes = [EnswitchAuthentication]
    permission_classes: list = []
    renderer_classes = [EnvelopeRenderer]
    parser_classes: list = []
    content_negotiation_class = AlwaysEnvelope
    throttle_classes: list = []
    http_method_names = ["get", "post", "head"]

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        use_statement_timeout(settings.ENSWITCH_STATEMENT_TIMEOUT_MS)
        super().initial(request, *args, **kwargs)

    def get(self, request: Any) -> HttpResponseBase:
        return self.respond(request, request_params(request._request))

    post = get

    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        raise NotImplementedError


class LoginForm(forms.Form):
    token = IntegerField()


LOGIN_PARAMETERS = ("token",)


def invalid_parameters(params: Params, form: forms.Form, order: tuple[str, ...]) -> None:
    """A 400 listing every invalid parameter of `form` in `order` (then `body`), if any."""
    form.is_valid()
    errors = {name: str(errs[0]) for name, errs in form.errors.items()}
    errors.update((k, msg) for k, msg in params.invalid.items() if k in order)
    if params.body_error:
        errors["body"] = params.body_error
    if errors:
        rank = {name: i for i, name in enumerate((*order, "body"))}
        raise InvalidParameters(sorted(errors.items(), key=lambda e: rank[e[0]]))


class UserLoginView(EnswitchAPIView):
    """Who the credentials (or token) belong to; with `token=1`, a fresh token."""

    def respond(self, request: Any, params: Params) -> HttpResponseBase:
        form = LoginForm(params.values)
        invalid_parameters(params, form, LOGIN_PARAMETERS)  # or a 400
        user = request.user
        data: dict[str, Any] = {
            "username": user.username,
            "customer": user.customer_id,
            "role": user.role_id,
        }
        if form.cleaned_data["token"] == 1:
            issued = tokens.issue(user)
            data["auth_token"] = issued.token
            data["auth_token_expiry"] = issued.expiry
            if issued.expires is not None:
                data["auth_token_expires"] = issued.expires
        return Response(envelope([entry(200)], data))
