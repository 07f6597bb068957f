# shellcheck shell=bash
# Throwaway Citus cluster (a coordinator and N workers on loopback) for tests and
# benchmarks. Needs the citus extension installed into PostgreSQL 15 (docs/scaling.md).
# Source this file (it sources scripts/pg.sh), then:
#   citus_start DIR N DB...  -> starts the coordinator and N workers under DIR, creates
#                               each DB on every node with the citus extension, registers
#                               the workers in it; exports CITUS_URL (the first DB on the
#                               coordinator) and CITUS_WORKER_URLS (its URL on each worker)
#   citus_stop DIR
#   citus_available          -> status 0 when the extension is installed
# CITUS_SHARD_COUNT (default 4: few shards keep the tests fast) is the cluster's
# citus.shard_count.
. "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

citus_available() {
  [ -f "$(_citus_sharedir)/extension/citus.control" ]
}

_citus_sharedir() {
  "$PG_BIN/pg_config" --sharedir
}

_citus_psql() {
  local url=$1
  shift
  "$PG_BIN/psql" "$url" -X -q -v ON_ERROR_STOP=1 "$@"
}

citus_start() {
  local dir=$1 workers=$2
  shift 2
  local dbs=("$@") ports=() port n db
  [ ${#dbs[@]} -gt 0 ] || dbs=(enswitch)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  local opts="-c shared_preload_libraries=citus -c citus.shard_count=${CITUS_SHARD_COUNT:-4}"
  opts="$opts -c max_connections=200 -c citus.recover_2pc_interval=1s"
  for n in $(seq 0 "$workers"); do
    port=$(pg_free_port)
    pg_start "$dir/node$n" "$port" "$opts" || return 1
    ports+=("$port")
  done
  for db in "${dbs[@]}"; do
    for port in "${ports[@]}"; do
      _citus_psql "postgres://postgres@127.0.0.1:$port/postgres" -c "CREATE DATABASE \"$db\"" \
        && _citus_psql "postgres://postgres@127.0.0.1:$port/$db" -c "CREATE EXTENSION citus" \
        || return 1
    done
    {
      echo "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]});"
      for port in "${ports[@]:1}"; do echo "SELECT citus_add_node('127.0.0.1', $port);"; done
    } | _citus_psql "postgres://postgres@127.0.0.1:${ports[0]}/$db" >/dev/null || return 1
  done
  export CITUS_URL="postgres://postgres@127.0.0.1:${ports[0]}/${dbs[0]}"
  CITUS_WORKER_URLS=""
  for port in "${ports[@]:1}"; do
    CITUS_WORKER_URLS="$CITUS_WORKER_URLS postgres://postgres@127.0.0.1:$port/${dbs[0]}"
  done
  export CITUS_WORKER_URLS="${CITUS_WORKER_URLS# }"
}

citus_stop() {
  local dir=$1 node
  for node in "$dir"/node*; do
    [ -d "$node" ] && pg_stop "$node"
  done
  return 0
}
