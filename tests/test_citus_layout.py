"""The store's layout: on a Citus cluster `migrate` distributes the legs and replicates the
small tables (enswitch/citus.py); on one PostgreSQL server and on SQLite it changes
nothing. The cluster tests run when the suite runs against a coordinator (DB=citus)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from cdrs.dataset.importer.errors import DatasetError
from cdrs.models import ArchivedLeg, Leg
from enswitch import citus
from tests import api_helpers as api
from tests.test_import import a_leg, example, load

pytestmark = pytest.mark.django_db

LOCAL_ROWS_LIMIT = 1000


@pytest.fixture
def cluster():
    if not citus.is_distributed():
        pytest.skip("a Citus cluster only (DB=citus)")


@pytest.fixture
def one_node():
    if citus.is_distributed():
        pytest.skip("one server only")


# --- one server: nothing changes ------------------------------------------------------


@pytest.mark.usefixtures("one_node")
def test_migrate_changes_nothing_on_one_server():
    assert not citus.has_workers()
    assert citus.lay_out() == []
    if connection.vendor == "postgresql":
        assert set(citus.table_kinds().values()) == {"plain"}


@pytest.mark.usefixtures("one_node")
def test_one_server_keeps_uniqueid_unique_in_the_database(actors):
    api.make_leg("same", actors.customer.id)
    with pytest.raises(IntegrityError), transaction.atomic():
        api.make_leg("same", actors.customer.id)


# --- the cluster ----------------------------------------------------------------------


def _kinds() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name::text, citus_table_type, distribution_column, colocation_id "
            "FROM citus_tables"
        )
        return {name: (kind, column, coloc) for name, kind, column, coloc in cursor.fetchall()}


@pytest.mark.usefixtures("cluster")
def test_migrate_lays_out_every_listed_table():
    kinds = _kinds()
    legs = {d.model for d in citus.DISTRIBUTED_TABLES}
    colocations = set()
    for d in citus.DISTRIBUTED_TABLES:
        table = citus._table(d.model)
        kind, column, colocation = kinds[table]
        assert (kind, column) == ("distributed", citus._column(d.model, d.column))
        colocations.add(colocation)
    assert len(colocations) == 1, "a leg and its costs, live or archived, share a shard"
    for label in citus.REFERENCE_TABLES:
        assert kinds[citus._table(label)][0] == "reference", label
    assert "cdrs.Leg" in legs
    # Idempotent: a second migrate has nothing left to do.
    assert citus.lay_out() == []


@pytest.mark.usefixtures("cluster")
def test_shards_keep_the_code_point_collation():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT result FROM run_command_on_shards('cdrs_leg', "
            "$$SELECT collation_name FROM information_schema.columns "
            "WHERE table_name = '%s' AND column_name = 'uniqueid'$$)"
        )
        assert [row[0] for row in cursor.fetchall()] == ["C"]


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "staged"])
def test_a_uniqueid_given_again_in_a_later_batch_is_refused(bulk):
    # On the cluster the database has no unique constraint on uniqueid: the importer
    # looks each batch up. Here the repeat is three batches after the first.
    legs = [a_leg(f"u{i}", archived=i % 3 == 0) for i in range(12)] + [a_leg("u1")]
    with pytest.raises(DatasetError) as caught:
        load(example(cdrs=[]), legs, bulk=bulk, batch_size=4)
    assert "u1" in "\n".join(caught.value.lines())
    assert not Leg.objects.exists()
    assert not ArchivedLeg.objects.exists()


@pytest.mark.usefixtures("cluster")
@pytest.mark.django_db(transaction=True)
def test_an_imported_store_is_spread_over_the_workers_and_nothing_big_stays_local(tmp_path):
    main, legs = tmp_path / "main.json", tmp_path / "legs.jsonl"
    call_command(
        "generate_dataset", "--customers", "30", "--depth", "3", "--legs", "3000", "--seed", "7",
        "--out", str(main), "--cdrs-out", str(legs),
    )  # fmt: skip
    call_command("import_dataset", str(main), "--cdrs", str(legs))
    with connection.cursor() as cursor:
        cursor.execute("SELECT nodeport FROM pg_dist_node WHERE groupid <> 0")
        workers = {port for (port,) in cursor.fetchall()}
        for table in ("cdrs_leg", "cdrs_legcost", "cdrs_archivedleg"):
            cursor.execute(
                "SELECT s.nodeport, sum(r.result::bigint) FROM run_command_on_shards(%s, "
                "$$SELECT count(*) FROM %%s$$) r JOIN citus_shards s USING (shardid) "
                "GROUP BY 1",
                [table],
            )
            rows = dict(cursor.fetchall())
            assert set(rows) == workers, f"{table}: shards on {set(rows)}"
            assert all(n > 0 for n in rows.values()), f"{table}: {rows}"
        # Every table local to the coordinator (in no Citus metadata) stays small.
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT EXISTS "
            "(SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)"
        )
        local = [name for (name,) in cursor.fetchall()]
        assert "cdrs_leg" not in local
        for name in local:
            cursor.execute(f'SELECT count(*) FROM "{name}"')  # noqa: S608 - catalog names
            assert cursor.fetchone()[0] <= LOCAL_ROWS_LIMIT, name


def test_cluster_layout_refuses_a_store_that_is_not_a_cluster(one_node):
    with pytest.raises(CommandError, match="not a Citus coordinator"):
        call_command("cluster_layout")


@pytest.mark.usefixtures("cluster")
def test_cluster_layout_shows_the_layout():
    out = io.StringIO()
    call_command("cluster_layout", stdout=out)
    assert "nothing to do" in out.getvalue()
    assert "cdrs_leg: distributed" in out.getvalue()
    assert "customers_customer: reference" in out.getvalue()


CREATE_USER_AND_LEG = """
from cdrs.models import Leg, LegCost
from customers.models import Customer, Role, User
customer = Customer.objects.order_by("id").last()
user = User(username="new-user", customer=customer, role=Role.objects.first(), password="x")
user.save()
leg = Leg.objects.create(uniqueid="new-leg", callid="c", start=1, end=2, direction="in",
                         scustomer=customer)
LegCost.objects.create(leg=leg, customer=customer, cost=1, currency=customer.currency)
print(user.id, leg.id)
"""


@pytest.mark.usefixtures("cluster")
def test_a_converted_store_takes_new_users_and_legs(tmp_path):
    """A populated one-server store on the coordinator, then workers registered and
    `cluster_layout`: the ids the database gives (users', legs') go on from where they
    were (no sequence starts again at 1, so no duplicate key on the next insert)."""
    import psycopg

    params = connection.get_connection_params()
    user = params.get("user") or "postgres"
    with connection.cursor() as cursor:
        cursor.execute("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0")
        workers = cursor.fetchall()
    host, port = params.get("host") or "127.0.0.1", int(params.get("port") or 5432)
    nodes = [(host, port), *workers]
    name = "test_enswitch_convert"

    def on_each_node(sql: str, dbname: str) -> None:
        for node_host, node_port in nodes:
            with psycopg.connect(
                host=node_host, port=node_port, user=user, dbname=dbname, autocommit=True
            ) as node:
                node.execute(sql)

    on_each_node(f'DROP DATABASE IF EXISTS "{name}"', "postgres")
    on_each_node(f'CREATE DATABASE "{name}"', "postgres")
    try:
        on_each_node("CREATE EXTENSION citus", name)
        url = f"postgres://{user}@{host}:{port}/{name}"
        env = {**os.environ, "DATABASE_URL": url}

        def manage(*args: str) -> str:
            done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "manage.py", *args], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        main, legs = tmp_path / "main.json", tmp_path / "legs.jsonl"
        manage("migrate", "--verbosity", "0")  # no worker registered: one server's store
        manage(
            "generate_dataset", "--customers", "20", "--depth", "3", "--legs", "300",
            "--seed", "7", "--out", str(main), "--cdrs-out", str(legs),
        )  # fmt: skip
        manage("import_dataset", str(main), "--cdrs", str(legs))
        with psycopg.connect(url, autocommit=True) as coordinator:
            before = coordinator.execute(
                "SELECT (SELECT max(id) FROM customers_user), (SELECT max(id) FROM "
                "(SELECT id FROM cdrs_leg UNION ALL SELECT id FROM cdrs_archivedleg) l)"
            ).fetchone()
            coordinator.execute(f"SELECT citus_set_coordinator_host('{host}', {port})")
            for worker_host, worker_port in workers:
                coordinator.execute(f"SELECT citus_add_node('{worker_host}', {worker_port})")
        assert "cdrs_leg: distributed" in manage("cluster_layout")
        last_line = manage("shell", "-c", CREATE_USER_AND_LEG).splitlines()[-1]
        user_id, leg_id = map(int, last_line.split())
        assert user_id > before[0] > 0
        assert leg_id > before[1] > 0
    finally:
        on_each_node(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")
