"""The cluster's own query shapes against one node's, on the same Citus cluster.

    .venv/bin/python bench/citus_pages.py --workers 2 --shards 8 --legs 1000000 --build

Two shapes of cdrs/queries.py are taken on a distributed store only; one node keeps the
other. This times both, through Django's connection to the coordinator of the cluster
(bench/work/citus-<N>w-<S>s, bench/run.py's; `--build` builds `bench_<legs>` there if
missing, as bench/run.py does, by default loaded on the coordinator and then distributed,
bench/run.py's `--cluster-load convert`):

- `archive=1` (Q2, Q3, Q5 with archive=1): one node's top-level UNION ALL, which Citus runs
  as two distributed subplans one after the other, against the UNION ALL in a subquery
  that Citus pushes down to each pair of co-located shards.
- Pages found by ids (Q3, Q5, Q6): one statement (`id IN (ordered ids LIMIT n)`, whose
  subquery Citus runs as a step of its own and ships to every worker) against the ids
  fetched first, then the rows by that list (pruned to the shards that hold them).

Median of --runs each, turn about; checks both answer the same rows; prints what the
product's plan does (bench/citus.py's classify_plan). Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.citus import CitusCluster, classify_plan  # noqa: E402
from bench.run import WORK, build_database, prepare_scenario, queries, setup_django  # noqa: E402


def one_node_shape() -> tuple[Callable[[], None], Callable[[], None]]:
    """(apply, restore): cdrs.queries as one node has it, no pushed-down union and no ids
    fetched first, and back."""
    from cdrs import queries as q

    saved = (q.citus, q.IDS_FIRST_AT_MOST)

    class OneNode:
        @staticmethod
        def is_distributed(using: str = "default") -> bool:
            return False

    def apply() -> None:
        q.citus, q.IDS_FIRST_AT_MOST = OneNode, 0

    def restore() -> None:
        q.citus, q.IDS_FIRST_AT_MOST = saved

    return apply, restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--build", action="store_true", help="build bench_<legs> if missing")
    parser.add_argument(
        "--load", default="convert", choices=["import", "convert"], help="as bench/run.py's"
    )
    parser.add_argument("--only", default="Q2a,Q3a,Q5a,Q3,Q5,Q6")
    args = parser.parse_args()
    cluster = CitusCluster(
        WORK / f"citus-{args.workers}w-{args.shards}s", args.workers, args.shards
    )
    cluster.start()
    try:
        db = f"bench_{args.legs}"
        if not cluster.database_exists(db):
            if not args.build:
                sys.exit(f"{db} is not on the cluster: run with --build")
            print(build_database(cluster, db, args.legs, args.customers, args.load), flush=True)
        setup_django(cluster.db_url(db))
        from django.db import connection

        from cdrs import queries as q
        from cdrs.parameters import parse_list
        from cdrs.rows import COLUMNS
        from customers.models import User
        from enswitch.api.params import Params

        qset = queries(prepare_scenario(300_000))
        for qid in ("Q2", "Q3", "Q5"):
            qset[f"{qid}a"] = {**qset[qid], "archive": "1"}
        apply, restore = one_node_shape()
        for qid in args.only.split(","):
            params = qset[qid]
            user = User.objects.for_api().get(username=params["auth_username"])
            request = parse_list(Params(values=dict(params)), user=user, now=int(time.time()))
            times: dict[str, list[float]] = {"one node": [], "cluster": []}
            answers = {}

            def page_rows(r: Any) -> list[tuple]:  # noqa: ANN401
                page = q.list_page(r, COLUMNS)
                with page.planned():
                    # The cluster's archive rows carry the leg's id after the sort key.
                    return [row[: len(COLUMNS) + 1] for row in page.rows]

            for _ in range(args.runs):
                for name in times:
                    if name == "one node":
                        apply()
                    try:
                        started = time.perf_counter()
                        answers[name] = page_rows(request)
                        times[name].append((time.perf_counter() - started) * 1000)
                    finally:
                        restore()
            same = answers["one node"] == answers["cluster"]
            m = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"{qid}: one node's shape {m['one node']:.1f} ms, the cluster's"
                f" {m['cluster']:.1f} ms (median of {args.runs});"
                f" {len(answers['cluster'])} rows, same rows: {same}",
                flush=True,
            )
            if not answers["cluster"]:
                continue  # no ids found: the rows' query is not sent at all
            sql, sql_params = q.list_page(request, COLUMNS).rows.query.sql_with_params()
            with connection.cursor() as cur:
                cur.execute(f"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) {sql}", sql_params)
                plan = "\n".join(row[0] for row in cur.fetchall())
            subplans = plan.count("Distributed Subplan")
            print(f"{qid} the cluster's plan: {classify_plan(plan)}; subplans: {subplans}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
