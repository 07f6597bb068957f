"""bench/run.py --cluster: the single node and Citus clusters side by side, in one run.

All the stores run at once, with the same dataset files, the same queries and the same
scenario (chosen from the data, which is the same). The machine is shared, and its load
changes from minute to minute, so the stores are measured in turns: each query's
requests go to each store in rounds, one store after the other, and each store's
percentiles come from all its rounds. Writes the table to bench/cluster-results.md and
each query's cluster plan, with what it says about distribution, to
bench/cluster-results-plans-<N>w.md (the names follow --cluster-out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

from bench.citus import CitusCluster, classify_plan
from bench.pgcluster import Cluster, free_port
from bench.run import (
    TARGETS,
    WORK,
    Server,
    build_database,
    check_ok,
    explain,
    get,
    machine,
    manage,
    measure_concurrency,
    measure_export,
    measure_latency,
    percentiles,
    prepare_scenario,
    psql_reference,
    queries,
    query_sql,
    setup_django,
    use_database,
)

P50_FACTOR = 3.0  # each query's p50 on the cluster, at most this times the single node's
Q4_SHARE = 0.5  # the cluster's export rows/s, at least this share of the single node's
Q4_RSS_MB = 150
IMPORT_LEGS_PER_S = 25_000
ROUNDS = 4  # turns per store and query


def _prepare(store: Cluster | CitusCluster, args: argparse.Namespace, only: list[str]) -> dict:
    """Build (or reuse) the store's database; its scenario, SQL, plans and psql times."""
    legs, db = args.legs, f"bench_{args.legs}"
    name = f"{store.dir.name}-" if isinstance(store, CitusCluster) else ""
    saved = WORK / f"load-{name}{db}.json"
    # A build cut short leaves a database but not its load figures: it is built again.
    if not (args.reuse and store.database_exists(db) and saved.exists()):
        print(f"[{name}{legs:,}] building {db}", flush=True)
        load = build_database(store, db, legs, args.customers, args.cluster_load)
    else:
        manage("migrate", "--verbosity", "0", db_url=store.db_url(db))
        load = json.loads(saved.read_text())
    print(f"[{name}{legs:,}] load: {json.dumps(load)}", flush=True)
    out: dict = {"legs": legs, "load": load, "results": {}, "plans": {}, "name": name}
    if isinstance(store, CitusCluster):
        out["workers"] = len(store.workers)
        out["layout"] = store.layout(db)
    if args.load_only:
        return out
    use_database(store.db_url(db))
    scenario = prepare_scenario(args.export_rows)
    out["scenario"] = scenario.__dict__
    out["params"] = queries(scenario)
    out["digits"] = scenario.digits
    for qid in only:
        if qid == "Q7":
            continue
        sql, copy_sql = query_sql(out["params"][qid])
        out["plans"][qid] = explain(store, db, sql)
        runs = 1 if qid == "Q4" else args.psql_runs
        out["results"][qid] = {"psql": psql_reference(store, db, copy_sql, runs)["p50"]}
        print(f"[{name}{legs:,}] {qid}: psql {out['results'][qid]['psql']:.1f} ms", flush=True)
    return out


def _measure(stores: list[dict], servers: list[Server], args: argparse.Namespace, only: list[str]):
    for qid in only:
        if qid == "Q7":
            for s, server in zip(stores, servers, strict=True):
                r = measure_concurrency(server.port, s["params"]["Q1"], 8, args.concurrency_seconds)
                s["results"]["Q7"] = {**r, "loadavg": os.getloadavg()[0]}
            continue
        if qid == "Q4":
            for s, server in zip(stores, servers, strict=True):
                r = measure_export(server.port, s["params"]["Q4"])
                r["peak_rss_mb"] = server.worker_peak_rss_mb()
                r["psql_rows_per_s"] = r["rows"] / (s["results"]["Q4"]["psql"] / 1000)
                s["results"]["Q4"].update(r, loadavg=os.getloadavg()[0])
            continue
        variants = []
        for s, server in zip(stores, servers, strict=True):
            params = s["params"][qid]
            vary = [{**params, "cnumber": d} for d in s["digits"]] if qid == "Q3" else [params]
            variants.append(vary)
            measure_latency(server.port, params, 10, vary)  # warm-up, thrown away
        samples: list[list[float]] = [[] for _ in stores]
        rows = [0] * len(stores)
        per_round = max(1, args.requests // ROUNDS)
        for _ in range(ROUNDS):
            for k, server in enumerate(servers):
                conn = server.connection()
                for i in range(per_round):
                    seconds, body = get(conn, variants[k][i % len(variants[k])])
                    check_ok(body)
                    samples[k].append(seconds)
                rows[k] = body.count(b'"uniqueid"')
        for k, s in enumerate(stores):
            r = s["results"][qid]
            r.update(percentiles(samples[k]), rows=rows[k], loadavg=os.getloadavg()[0])
            r["ratio"] = r["p50"] / r["psql"]
            print(f"[{s['name']}{args.legs:,}] {qid}: {json.dumps(r)}", flush=True)


def run_cluster_mode(args: argparse.Namespace, argv: list[str]) -> None:
    only = args.only.split(",")
    shards = args.shard_count
    stores: list[Cluster | CitusCluster] = [Cluster(WORK / "pg")]
    stores += [
        CitusCluster(WORK / f"citus-{n}w-{shards}s", n, shards)
        for n in [int(w) for w in args.cluster_workers.split(",")]
    ]
    with ExitStack() as stack:
        for store in stores:
            store.start()
            stack.callback(store.stop)
        setup_django(stores[0].url)
        info = {
            **machine(),
            "postgresql": stores[0].psql("postgres", "SHOW server_version").strip(),
            "citus": stores[1]
            .psql(
                "postgres",
                "SELECT default_version FROM pg_available_extensions WHERE name = 'citus'",
            )
            .strip(),
            "shards": str(args.shard_count),
        }
        prepared = [_prepare(store, args, only) for store in stores]
        if args.load_only:
            return
        db = f"bench_{args.legs}"
        servers = [
            stack.enter_context(Server(store.db_url(db), free_port(), args.workers))
            for store in stores
        ]
        _measure(prepared, servers, args, only)
    # The figures are kept, for `python -m bench.citus_report FIGURES OUT` to write again.
    command = "bench/run.py " + " ".join(argv)
    base, runs = prepared[0], prepared[1:]
    figures = {"base": base, "runs": runs, "info": info, "command": command}
    out = Path(args.cluster_out)
    (WORK / f"{out.stem}.json").write_text(json.dumps(figures))
    write_report(out, base, runs, info, command)
    print(f"wrote {args.cluster_out}")


def _p(r: dict) -> str:
    return f"{r['p50']:.1f} / {r['p95']:.1f}"


def write_report(path: Path, base: dict, runs: list[dict], info: dict, command: str) -> None:
    legs = base["legs"]
    names = [f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}" for r in runs]
    lines = [
        "# Benchmark results: one node and a Citus cluster",
        "",
        f"Command: `{command}`",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {legs:,} legs on each store;"
        " all the stores running at once on this machine (the clusters' coordinators and"
        " workers share its cores) and measured in turns: each query's requests went to"
        f" each store in {ROUNDS} rounds, one store after the other.",
        "",
        "## Machine and versions",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "",
        f"## {legs:,} legs: p50 / p95 in ms (API over HTTP, gunicorn 4 workers)",
        "",
        "Targets for the cluster: every p50 at most 3x the single node's; Q4 at least 50% of"
        " the single node's rows/s with the serving worker under 150 MB; import at least"
        " 25,000 legs/s; no plan that pulls a leg table whole or repartitions it.",
        "",
        "| id | request | one node | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(runs),
    ]

    def load_cell(run: dict) -> str:
        rate = run["load"].get("import_legs_per_s")
        if not rate:
            return "(reused)"
        if "convert_s" in run["load"]:
            return (
                f"{rate:,.0f} legs/s into the coordinator alone, then"
                f" {run['load']['convert_s']:.0f} s to distribute (migrate)"
            )
        ok = rate >= IMPORT_LEGS_PER_S or "workers" not in run
        return f"{rate:,.0f} legs/s" + ("" if ok else " **missed**")

    lines.append(
        "| import | `import_dataset --cdrs` | "
        + " | ".join(load_cell(r) for r in [base, *runs])
        + " |"
    )
    for qid in base["results"]:
        b = base["results"][qid]
        cells = []
        for run in runs:
            r = run["results"].get(qid)
            if r is None:
                cells.append("")
            elif qid == "Q4":
                share = r["rows_per_s"] / b["rows_per_s"]
                ok = share >= Q4_SHARE and r["peak_rss_mb"] < Q4_RSS_MB
                cells.append(
                    f"{r['rows_per_s']:,.0f} rows/s ({share:.0%}), first byte"
                    f" {r['first_byte_s'] * 1000:.0f} ms, worker {r['peak_rss_mb']:.0f} MB"
                    + ("" if ok else " **missed**")
                )
            elif qid == "Q7":
                share = r["requests_per_s"] / b["requests_per_s"]
                cells.append(f"{r['requests_per_s']:.0f} req/s ({share:.0%}), {r['errors']} errors")
            else:
                factor = r["p50"] / b["p50"]
                cells.append(
                    f"{_p(r)} ({factor:.2f}x)" + ("" if factor <= P50_FACTOR else " **missed**")
                )
        if qid == "Q4":
            first = (
                f"{b['rows_per_s']:,.0f} rows/s, first byte {b['first_byte_s'] * 1000:.0f} ms,"
                f" worker {b['peak_rss_mb']:.0f} MB"
            )
        elif qid == "Q7":
            first = f"{b['requests_per_s']:.0f} req/s, {b['errors']} errors"
        else:
            first = _p(b)
        lines.append(f"| {qid} | {TARGETS[qid][0]} | {first} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The machine's 1-minute load average after each measurement (2 cores, shared):",
        "",
        "| id | one node | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    for qid in base["results"]:
        vals = [run["results"].get(qid, {}).get("loadavg") for run in [base, *runs]]
        lines.append(
            f"| {qid} | " + " | ".join("" if v is None else f"{v:.1f}" for v in vals) + " |"
        )
    lines += [
        "",
        "psql's time for the same SQL (p50 ms; Q4: rows/s):",
        "",
        "| id | one node | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    for qid in base["results"]:
        if qid == "Q7":
            continue
        key = "psql_rows_per_s" if qid == "Q4" else "psql"
        vals = [run["results"].get(qid, {}).get(key) for run in [base, *runs]]
        lines.append(
            f"| {qid} | " + " | ".join("" if v is None else f"{v:,.1f}" for v in vals) + " |"
        )
    lines += [
        "",
        "## What each cluster plan does",
        "",
        f"From `EXPLAIN (ANALYZE, VERBOSE)` on the coordinator ({path.stem}-plans-<N>w.md).",
        "",
        "| id | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for qid in base["plans"]:
        cells = []
        for run in runs:
            if qid not in run["plans"]:
                cells.append("")
                continue
            c = classify_plan(run["plans"][qid])
            pushed = {True: "pushed down", False: "**not pushed down**", None: "none (export)"}
            cell = f"{c['kind']}, ORDER BY ... LIMIT {pushed[c['limit_pushed_down']]}"
            cell += f", {c['received_bytes'] / 1024:,.0f} kB from the workers"
            if c["subplans"]:
                cell += f", {c['subplans']} distributed subplan(s)"
            if c["pulls_leg_table"]:
                cell += ", **pulls a leg table whole**"
            if c["shard_scans"]:
                cell += f", **reads whole shards**: {', '.join(c['shard_scans'][:2])}"
            if c["repartitions"]:
                cell += ", **repartitions**"
            cells.append(cell)
        lines.append(f"| {qid} | " + " | ".join(cells) + " |")
    for run, name in zip(runs, names, strict=True):
        lines += ["", f"## Layout on {name}", "", "```", run.get("layout", "").rstrip(), "```"]
        plans = [f"# Cluster plans: {legs:,} legs, {name}", "", f"Command: `{command}`", ""]
        for qid, plan in run["plans"].items():
            plans += [
                f"## {qid}: {TARGETS[qid][0]}",
                "",
                f"`{json.dumps(classify_plan(plan))}`",
                "",
                "```",
                plan.rstrip(),
                "```",
                "",
            ]
        path.with_name(f"{path.stem}-plans-{run['workers']}w.md").write_text("\n".join(plans))
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    import sys

    saved = json.loads(Path(sys.argv[1]).read_text())
    write_report(Path(sys.argv[2]), saved["base"], saved["runs"], saved["info"], saved["command"])
