#!/usr/bin/env bash
# The whole test suite: on SQLite, on a throwaway PostgreSQL 15 server, on a throwaway
# Citus cluster (a coordinator and two workers; skipped, with a message, without Citus),
# and the API tests with their reads on a hot standby of a throwaway primary.
#   scripts/test.sh [pytest args...]        (all of them)
#   DB=sqlite scripts/test.sh ...            (one part: sqlite | postgres | citus | replica)
# The replica part runs tests/test_api_*.py and tests/test_replicas.py, unless the
# arguments name files in tests/.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
. scripts/citus.sh
. scripts/replica.sh

# With DEBUG=0 nothing starts without a key (README, "Security"); the tests use one of their own.
export SECRET_KEY="${SECRET_KEY:-test-only-secret-key-not-for-production-0123456789}"
pgdir="" citusdir="" repdir=""
cleanup() {
  [ -n "$pgdir" ] && { pg_stop "$pgdir"; rm -rf "$pgdir"; }
  [ -n "$citusdir" ] && { citus_stop "$citusdir"; rm -rf "$citusdir"; }
  [ -n "$repdir" ] && { replica_stop "$repdir"; rm -rf "$repdir"; }
  return 0
}
trap cleanup EXIT
part() { [ "$DB" = all ] || [ "$DB" = "$1" ]; }

status=0
echo "=== ruff ==="
.venv/bin/ruff check . || status=1
DB=${DB:-all}
if part sqlite; then
  echo "=== tests on SQLite ==="
  SECONDS=0
  env -u DATABASE_URL .venv/bin/python -m pytest "$@" || status=1
  echo "SQLite: ${SECONDS}s"
fi
if part postgres; then
  echo "=== tests on PostgreSQL 15 ==="
  pgdir=$(mktemp -d /tmp/enswitch-test-pg.XXXXXX)
  pg_start "$pgdir" "$(pg_free_port)" || exit 1
  SECONDS=0
  DATABASE_URL="$PG_URL" .venv/bin/python -m pytest "$@" || status=1
  echo "PostgreSQL 15: ${SECONDS}s"
  pg_stop "$pgdir"; rm -rf "$pgdir"; pgdir=""
fi
if part citus; then
  echo "=== tests on Citus (a coordinator and two workers) ==="
  if ! citus_available; then
    echo "SKIPPED: the citus extension is not installed for PostgreSQL 15 (docs/scaling.md says how)"
    [ "$DB" = citus ] && status=1
  else
    citusdir=$(mktemp -d /tmp/enswitch-test-citus.XXXXXX)
    # pytest-django's test database (test_<name>) is made here, on every node with the
    # extension and the workers registered in it, and reused; its migrate lays it out.
    citus_start "$citusdir" 2 enswitch test_enswitch || exit 1
    # Each test is one transaction that may read legs (on all shards) and then write a
    # reference table: Citus allows that only over one connection per worker.
    "$PG_BIN/psql" -X -q "$CITUS_URL" \
      -c "ALTER DATABASE test_enswitch SET citus.multi_shard_modify_mode TO 'sequential'" || exit 1
    SECONDS=0
    DATABASE_URL="$CITUS_URL" .venv/bin/python -m pytest --reuse-db "$@" || status=1
    echo "Citus: ${SECONDS}s"
    citus_stop "$citusdir"; rm -rf "$citusdir"; citusdir=""
  fi
fi
if part replica; then
  echo "=== API tests with reads on a PostgreSQL 15 hot standby ==="
  repdir=$(mktemp -d /tmp/enswitch-test-replica.XXXXXX)
  replica_start "$repdir" || exit 1
  case " $* " in *" tests/"*) ;; *) set -- tests/test_api_*.py tests/test_replicas.py "$@" ;; esac
  SECONDS=0
  DATABASE_URL="$PG_URL" DATABASE_REPLICA_URLS="$PG_REPLICA_URL" \
    .venv/bin/python -m pytest "$@" || status=1
  echo "Hot standby: ${SECONDS}s"
fi
exit $status
