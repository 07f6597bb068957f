"""The distinct called numbers of the live legs, kept by a trigger (PostgreSQL).

`cmatch=contains` (and `end`) used a trigram index on the legs' numbers (0002): it
found every leg with the digits, of any customer and any time, and each had to be
read to be rejected. Now the digits find the numbers (a trigram index on
`CalledNumber`, tens of thousands of rows), and the numbers their legs by equality
on (cnumber, start), an index that also carries the scope's columns, so only the
legs that pass are read. See LegQuerySet.matching.

The trigger is a statement-level one with a transition table (one INSERT of the
statement's distinct numbers, in order so that two writers cannot deadlock), and it
is ENABLE ALWAYS: the importer and the archive run in replica mode when they may,
which skips ordinary triggers. SQLite gets the table and the index, not the trigger:
it does not use them for contains.
"""

import enswitch.fields
from django.db import migrations, models


PG_FORWARDS = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX called_number_trgm ON cdrs_callednumber USING gin (value gin_trgm_ops)",
    """
    CREATE FUNCTION cdrs_note_called_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO cdrs_callednumber (value)
        SELECT DISTINCT cnumber FROM new_legs ORDER BY 1
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER leg_called_numbers_insert AFTER INSERT ON cdrs_leg "
    "REFERENCING NEW TABLE AS new_legs FOR EACH STATEMENT "
    "EXECUTE FUNCTION cdrs_note_called_numbers()",
    "CREATE TRIGGER leg_called_numbers_update AFTER UPDATE ON cdrs_leg "
    "REFERENCING NEW TABLE AS new_legs FOR EACH STATEMENT "
    "EXECUTE FUNCTION cdrs_note_called_numbers()",
    "ALTER TABLE cdrs_leg ENABLE ALWAYS TRIGGER leg_called_numbers_insert",
    "ALTER TABLE cdrs_leg ENABLE ALWAYS TRIGGER leg_called_numbers_update",
    "INSERT INTO cdrs_callednumber (value) SELECT DISTINCT cnumber FROM cdrs_leg ORDER BY 1",
    "DROP INDEX IF EXISTS leg_cnumber_trgm",
    # Django adds a varchar_pattern_ops twin to a text primary key for LIKE 'prefix%';
    # the column's "C" collation lets the key's own index do that.
    """
    DO $$
    DECLARE twin text;
    BEGIN
        FOR twin IN SELECT indexname FROM pg_indexes WHERE tablename = 'cdrs_callednumber'
                    AND indexdef ~ 'varchar_pattern_ops'
        LOOP
            EXECUTE 'DROP INDEX ' || quote_ident(twin);
        END LOOP;
    END
    $$
    """,
]
PG_BACKWARDS = [
    "CREATE INDEX IF NOT EXISTS leg_cnumber_trgm ON cdrs_leg USING gin (cnumber gin_trgm_ops)",
    "DROP TRIGGER IF EXISTS leg_called_numbers_update ON cdrs_leg",
    "DROP TRIGGER IF EXISTS leg_called_numbers_insert ON cdrs_leg",
    "DROP FUNCTION IF EXISTS cdrs_note_called_numbers()",
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in PG_FORWARDS:
            schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in PG_BACKWARDS:
            schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('cdrs', '0005_archive_start_index_plain'),
        ('customers', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='CalledNumber',
            fields=[
                ('value', enswitch.fields.CodePointCharField(max_length=255, primary_key=True, serialize=False)),
            ],
        ),
        migrations.AddIndex(
            model_name='leg',
            index=models.Index(fields=['cnumber', 'start'], include=('uniqueid', 'scustomer', 'dcustomer', 'id'), name='leg_cnumber_start'),
        ),
        migrations.RunPython(forwards, backwards),
    ]
