"""The table behind the `shared` cache (stream slots; login failures have their own table, 0002)."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
