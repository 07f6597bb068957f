"""Keep credentials out of every log line."""

from __future__ import annotations

import logging
import re

# auth_password=... in a query string or form body, up to the next separator.
_SECRET_PARAM = re.compile(r"((?:^|[?&;\s\"'])auth_password=)[^&;\s\"']*", re.IGNORECASE)


def scrub(text: str) -> str:
    return _SECRET_PARAM.sub(r"\1***", text)


class ScrubSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
