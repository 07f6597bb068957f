from __future__ import annotations

from typing import Any

import orjson
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer


class EnvelopeRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return orjson.dumps(data)


class AlwaysEnvelope(BaseContentNegotiation):
    """Enswitch clients send all sorts of Accept headers; the answer is always JSON."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None):
        return renderers[0], renderers[0].media_type
