"""The call totals' primary key carries the counts (PostgreSQL's INCLUDE), so
`cdrs/totals/list` reads a customer's hours from the index alone, without visiting the
table's pages one by one. SQLite keeps the plain key (it has no INCLUDE)."""

from django.db import migrations

TABLE = "cdrs_calltotals"
KEY = "cdrs_calltotals_pkey"


def covering(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE {TABLE} DROP CONSTRAINT {KEY}, ADD CONSTRAINT {KEY} "
            "PRIMARY KEY (customer_id, hour) INCLUDE (inbound, outbound, internal)"
        )


def plain(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE {TABLE} DROP CONSTRAINT {KEY}, ADD CONSTRAINT {KEY} "
            "PRIMARY KEY (customer_id, hour)"
        )


class Migration(migrations.Migration):
    dependencies = [("cdrs", "0008_call_totals")]

    operations = [migrations.RunPython(covering, plain)]
