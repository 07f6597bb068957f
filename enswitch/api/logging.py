"""Keep credentials out of every log line, and keep every log line one line.

`ScrubSecretsFilter` is installed on the handlers of Django's logging (settings.LOGGING)
and, through `GunicornLogger`, on gunicorn's error and access logs. It replaces the
value of every parameter the API would read as `auth_password` or `auth_token` (in any spelling it
accepts: `auth%5Fpassword=`, `auth_p%61ssword=`...) with `***`, in the message and in
the traceback, and escapes control characters in the message, so a value sent by a
client cannot forge a log line.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn.glogging import Logger

# A token is a credential too: whoever holds it is the user until it expires.
SECRET_NAMES = {"auth_password", "auth_token"}

# name=value as the API splits a query string or form body: the value runs to the next
# `;` or `&` (or the end of the request target, at white space); the name back to the
# previous separator. Any name that decodes to a secret one has its value replaced.
_PARAM = re.compile(r"""(?P<name>[^?;&\s"'=<>()\[\]{},]*)=(?P<value>[^;&\s]*)""")
# "auth_password": "..." as in a JSON body or a Python dict.
_QUOTED = re.compile(
    r"""(?P<name>["'][^"'\\]*(?:\\.[^"'\\]*)*["']\s*:\s*)(?P<q>["'])(?:\\.|(?!(?P=q)).)*(?P=q)"""
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _decoded_name(raw: str) -> str:
    text = unquote_to_bytes(raw.replace("+", " ")).decode("utf-8", errors="replace")
    return text.lower()


def _json_name(raw: str) -> str:
    name = raw.rstrip().rstrip(":").rstrip()[1:-1]
    try:
        name = name.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        pass
    return name.lower()


def scrub(text: str) -> str:
    """The text with the value of every secret parameter replaced by `***`."""
    if "=" in text:
        text = _PARAM.sub(
            lambda m: f"{m['name']}=***" if _decoded_name(m["name"]) in SECRET_NAMES else m[0],
            text,
        )
    if ":" in text:
        text = _QUOTED.sub(
            lambda m: f'{m["name"]}"***"' if _json_name(m["name"]) in SECRET_NAMES else m[0],
            text,
        )
    return text


def printable(text: str) -> str:
    """Control characters (CR, LF, ESC...) as escapes: one value, one line."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


class ScrubSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to the formatter
            return True
        cleaned = printable(scrub(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatted here, once; formatters reuse exc_text as it is.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class GunicornLogger(Logger):
    """gunicorn's logger with the scrubbing filter on its own handlers (its error log
    names the request target, query string included, when a request fails or a worker
    times out)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, ScrubSecretsFilter) for f in handler.filters):
                    handler.addFilter(ScrubSecretsFilter())
