"""Trigram index on the called number of live legs (PostgreSQL only).

`cmatch=contains` (and `end`) is a LIKE '%digits%': no btree can serve it, so without
this index a subtree search over a month walks every leg of the month. With pg_trgm
the digits find their legs directly. SQLite has no such index type and does without.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS leg_cnumber_trgm ON cdrs_leg USING gin (cnumber gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS leg_cnumber_trgm")


class Migration(migrations.Migration):
    dependencies = [("cdrs", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
