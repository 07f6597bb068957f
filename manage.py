#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Exit status of a command refused for its configuration (sysexits.h EX_CONFIG).
EXIT_CONFIG = 78


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enswitch.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings, which check the environment
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
