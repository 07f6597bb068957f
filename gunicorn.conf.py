"""Production server: `gunicorn -c gunicorn.conf.py enswitch.wsgi` (see docs/deployment.md).

Every setting can be overridden from the environment (GUNICORN_CMD_ARGS, or the
variables below). Run it behind the reverse proxy of deploy/nginx.conf: gunicorn's sync
workers must not talk to slow clients themselves.
"""

import multiprocessing
import os
import sys

bind = os.environ.get("BIND", "127.0.0.1:8000")
# The work is mostly waiting on PostgreSQL; a few processes per core keep the cores busy
# without thrashing. Each process keeps its own persistent database connection.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
# limit=0 exports of millions of rows stream for minutes; don't kill them. This also
# bounds any one request, a stalled one included.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 600))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so that no leak can grow forever.
max_requests = 20000
max_requests_jitter = 2000
accesslog = os.environ.get("ACCESS_LOG", "-")
# The query string carries the password: log the path only, never %(q)s or %(r)s.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
# Scrubs passwords from the error log too: it names the request target, query string
# included, when a request fails or a worker times out.
logger_class = "enswitch.api.logging.GunicornLogger"

# sysexits.h EX_CONFIG, as manage.py.
EXIT_CONFIG = 78


def on_starting(server):
    """Refuse to start, in one line, on settings that refuse to load (no SECRET_KEY)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enswitch.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
