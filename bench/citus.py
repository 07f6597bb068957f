"""A Citus cluster of the benchmark's own: a coordinator and N workers on loopback.

Each node is a bench.pgcluster.Cluster in bench/work/citus-<N>/ (kept between runs),
started with `shared_preload_libraries=citus`. The single node's production-like
settings are shared out so that the cluster uses the same machine as the single node:
the coordinator holds only the small reference tables and plans and merges, so it gets a
small share of the memory; the workers split the rest, since they hold the legs.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.pgcluster import SERVER_SETTINGS, Cluster, free_port

COORDINATOR_SHARE = 8  # the coordinator gets 1/8 of the single node's memory


def _mb(setting: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MG]B)", setting).groups()
    return int(number) * (1024 if unit == "GB" else 1)


def node_settings(role: str, workers: int, shards: int = 32) -> dict[str, str]:
    """The single node's settings, with memory split between the nodes.

    Citus runs a multi-shard query's shard queries in parallel, one connection each, so
    the workers need no parallel helpers of their own: on this 2-core machine more
    processes than cores only take turns.
    """
    share = (
        1 / COORDINATOR_SHARE if role == "coordinator" else (1 - 1 / COORDINATOR_SHARE) / workers
    )
    settings = dict(SERVER_SETTINGS)
    for name in ("shared_buffers", "effective_cache_size", "max_wal_size"):
        settings[name] = f"{max(128, int(_mb(SERVER_SETTINGS[name]) * share))}MB"
    settings["maintenance_work_mem"] = f"{max(256, int(_mb('1GB') / max(1, workers)))}MB"
    settings["shared_preload_libraries"] = "citus"
    settings["citus.shard_count"] = str(shards)
    if role == "coordinator":
        # A multi-shard query opens up to this many connections to each worker, and a
        # backend keeps this many open between queries: a new connection costs a worker
        # process start, more than a shard's part of a short query. Two per worker keep
        # both cores busy without paying connection starts on every query.
        settings["citus.max_adaptive_executor_pool_size"] = "2"
        settings["citus.max_cached_conns_per_worker"] = "2"
    if role == "worker":
        settings["max_parallel_workers_per_gather"] = "0"
        # Every coordinator connection (the executor's pool) lands here.
        settings["max_connections"] = "300"
    return settings


class CitusCluster:
    """A coordinator (what the application connects to) and `workers` workers."""

    def __init__(self, directory: Path, workers: int = 2, shards: int = 32) -> None:
        self.dir = directory
        # The workers are registered by port in each database: the ports stay the same
        # from run to run, kept in a file beside the nodes.
        ports_file = directory / "ports"
        if ports_file.exists():
            ports = [int(p) for p in ports_file.read_text().split()]
        else:
            ports = [free_port() for _ in range(workers + 1)]
            directory.mkdir(parents=True, exist_ok=True)
            ports_file.write_text(" ".join(map(str, ports)) + "\n")
        self.coordinator = Cluster(
            directory / "coordinator", ports[0], node_settings("coordinator", workers, shards)
        )
        self.workers = [
            Cluster(directory / f"worker{i}", ports[i], node_settings("worker", workers, shards))
            for i in range(1, workers + 1)
        ]
        self.nodes = [self.coordinator, *self.workers]

    # The coordinator stands for the cluster wherever run.py uses a Cluster.
    @property
    def port(self) -> int:
        return self.coordinator.port

    @property
    def url(self) -> str:
        return self.coordinator.url

    def db_url(self, name: str) -> str:
        return self.coordinator.db_url(name)

    def psql(self, db: str, sql: str, *, capture: bool = True) -> str:
        return self.coordinator.psql(db, sql, capture=capture)

    def timed_psql(self, db: str, sql: str, runs: int) -> list[float]:
        return self.coordinator.timed_psql(db, sql, runs)

    def database_exists(self, name: str) -> bool:
        return self.coordinator.database_exists(name)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
            # Nodes talk over loopback: TLS between them would only cost CPU here.
            node.psql("postgres", "ALTER SYSTEM SET citus.node_conninfo = 'sslmode=disable'")
            node.psql("postgres", "SELECT pg_reload_conf()")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def create_database(self, name: str, *, register: bool = True) -> None:
        """A database with the extension on every node, the workers registered in it
        (unless not `register`: then it is a single-node store until `register_workers`)."""
        for node in self.nodes:
            node.create_database(name)
            node.psql(name, "CREATE EXTENSION citus")
        if register:
            self.register_workers(name)

    def register_workers(self, name: str) -> None:
        self.psql(name, f"SELECT citus_set_coordinator_host('127.0.0.1', {self.port})")
        for worker in self.workers:
            self.psql(name, f"SELECT citus_add_node('127.0.0.1', {worker.port})")

    def vacuum_analyze(self, name: str) -> None:
        # A VACUUM without table names on the coordinator does not reach the shards.
        for node in self.nodes:
            node.psql(name, "VACUUM ANALYZE")

    def layout(self, db: str) -> str:
        """Which tables are distributed (by what), reference, or local; rows per worker."""
        tables = self.psql(
            db,
            "SELECT c.relname || ': ' || CASE p.partmethod WHEN 'h' THEN 'distributed by '"
            " || column_to_column_name(p.logicalrelid, p.partkey) || ', colocation '"
            " || p.colocationid WHEN 'n' THEN 'reference' ELSE 'local' END"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_dist_partition p ON p.logicalrelid = c.oid"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' ORDER BY 1",
        )
        sizes = self.psql(
            db,
            "SELECT nodename || ':' || nodeport || ' ' || count(*) || ' shards, '"
            " || pg_size_pretty(sum(shard_size)) FROM citus_shards"
            " WHERE citus_table_type = 'distributed' GROUP BY nodename, nodeport ORDER BY 1",
        )
        return tables + sizes

    def check_layout(self, db: str) -> None:
        """`migrate` lays the store out on the cluster (enswitch/citus.py): make sure it did."""
        kind = self.psql(
            db, "SELECT partmethod FROM pg_dist_partition WHERE logicalrelid = 'cdrs_leg'::regclass"
        )
        if kind.strip() != "h":
            raise RuntimeError(f"{db}: migrate did not distribute the legs")


def _bytes(text: str) -> int:
    number, unit = text.split()
    return int(float(number) * {"bytes": 1, "kB": 1024, "MB": 1 << 20, "GB": 1 << 30}[unit])


def classify_plan(plan: str) -> dict[str, object]:
    """What a Citus EXPLAIN (ANALYZE, VERBOSE) says about a query's distribution.

    Router: one task, on one shard; fan-out: a task per shard. `ORDER BY ... LIMIT`
    pushed down: every shard query that orders legs carries the LIMIT (each shard returns
    only its first rows); None when no shard query orders (an export). Pulls a leg table
    whole: a shard query reads a leg or cost table without a WHERE (all of it goes to the
    coordinator). Shard scans: a leg or cost shard read whole on its worker (a Seq Scan
    of it), with its rows. Repartitions: a MapMerge job (rows reshuffled between workers
    for a join). Received: the bytes the coordinator read from the workers, all scans.
    """
    tasks = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
    router = "Citus Router" in plan or (bool(tasks) and max(tasks) == 1)
    shard_queries = [q for q in re.findall(r"Query: (.*)", plan) if re.search(LEG_SHARD, q)]
    ordered = [q for q in shard_queries if " ORDER BY " in q]
    received = sum(
        _bytes(m) for m in re.findall(r"Tuple data received from nodes: ([\d.]+ \w+)", plan)
    )
    scans = re.findall(rf"Seq Scan on public\.({LEG_SHARD}) .*?rows=(\d+) loops", plan)
    return {
        "tasks": max(tasks, default=0),
        "kind": "router (one shard)" if router else f"fan-out ({max(tasks, default=0)} shards)",
        "limit_pushed_down": all(" LIMIT " in q for q in ordered) if ordered else None,
        "subplans": len(re.findall(r"->  Distributed Subplan", plan)),
        "pulls_leg_table": [q[:200] for q in shard_queries if " WHERE " not in q],
        "shard_scans": [f"{name} ({rows} rows)" for name, *_, rows in scans],
        "repartitions": "MapMergeJob" in plan or "Map Task Count" in plan,
        "received_bytes": received,
    }


LEG_SHARD = r"cdrs_(?:archived)?leg(?:cost)?_\d+"
