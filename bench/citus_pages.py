"""A page found by ids on Citus: the product's one statement against two round trips.

    .venv/bin/python bench/citus_pages.py --workers 2 --shards 8 --legs 1000000

On one node, a page found by ids (cdrs.queries._page_by_ids: deep offsets, sorts other
than by start, called-number searches) is one statement: `id IN (ordered ids LIMIT n)`.
On Citus that subquery becomes an intermediate result shipped to every worker, and the
workers plan the rows' join without knowing how few ids it holds: they may read a whole
cost shard to hash it. The prototype evaluates the ids first and sends the rows query
with them as a constant list, which Citus prunes to the shards that hold them and each
worker plans as index lookups. Times both (median of --runs, in this process, through
Django's connection to the coordinator of bench/run.py's cluster, which must be built)
and prints the prototype's rows plan. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.citus import CitusCluster, classify_plan  # noqa: E402
from bench.run import WORK, prepare_scenario, queries, setup_django  # noqa: E402


def two_step(request, columns):  # noqa: ANN001, ANN201 - mirrors cdrs.queries._page_by_ids
    from cdrs import queries as q
    from cdrs.costs import with_costs
    from cdrs.models import Leg

    shape, scope = request.shape, request.scope
    source = q._cost_source(scope, shape.cost_customer)
    legs = q._legs(request, Leg, q.selected_customers(request))
    if shape.sort == "cost":
        legs = with_costs(legs, viewer=scope.customer, source=source)
    ids = q._ordered(request, legs.annotate(sort_key=q._sort_expression(shape.sort)))
    # The change: the ids are fetched first, so the rows query carries them as constants.
    chosen = list(q._slice(ids.values_list("pk", flat=True), shape.offset, shape.limit))
    rows = q._with_columns(Leg.objects.filter(pk__in=chosen), Leg, scope, source)
    rows = rows.annotate(sort_key=q._sort_expression(shape.sort))
    return q._ordered(request, rows.values_list(*columns, "sort_key"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", default="Q3,Q5,Q6")
    args = parser.parse_args()
    cluster = CitusCluster(
        WORK / f"citus-{args.workers}w-{args.shards}s", args.workers, args.shards
    )
    cluster.start()
    try:
        db = f"bench_{args.legs}"
        setup_django(cluster.db_url(db))
        from django.db import connection

        from cdrs import queries as q
        from cdrs.parameters import parse_list
        from cdrs.rows import COLUMNS
        from customers.models import User
        from enswitch.api.params import Params
        from enswitch.db import custom_plans

        qset = queries(prepare_scenario(300_000))
        for qid in args.only.split(","):
            params = qset[qid]
            user = User.objects.for_api().get(username=params["auth_username"])
            request = parse_list(Params(values=dict(params)), user=user, now=int(time.time()))
            assert q.finds_page_by_ids(request), qid
            times: dict[str, list[float]] = {"one statement": [], "ids first": []}
            answers = {}

            def product(r):  # noqa: ANN001, ANN202
                page = q.list_page(r, COLUMNS)
                with page.planned():
                    return list(page.rows)

            def prototype(r):  # noqa: ANN001, ANN202
                with custom_plans():
                    return list(two_step(r, COLUMNS))

            for _ in range(args.runs):
                for name, build in (("one statement", product), ("ids first", prototype)):
                    started = time.perf_counter()
                    answers[name] = build(request)
                    times[name].append((time.perf_counter() - started) * 1000)
            same = answers["one statement"] == answers["ids first"]
            m = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"{qid}: one statement {m['one statement']:.1f} ms, ids first"
                f" {m['ids first']:.1f} ms (median of {args.runs}); same rows: {same}"
            )
            if not answers["ids first"]:
                continue  # no ids: the rows step is not sent at all
            sql, sql_params = two_step(request, COLUMNS).query.sql_with_params()
            with connection.cursor() as cur:
                cur.execute(f"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) {sql}", sql_params)
                plan = "\n".join(row[0] for row in cur.fetchall())
            print(f"{qid} ids first, rows step: {classify_plan(plan)}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
