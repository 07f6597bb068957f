#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL 15 cluster.
#   scripts/test.sh [pytest args...]        (both databases)
#   DB=sqlite scripts/test.sh ...            (one of them: sqlite | postgres | replica)
# The default run ends with the `replica` part: the API tests (tests/test_api_*.py and
# tests/test_replicas.py, unless the arguments name files in tests/) with their reads on
# a hot standby of a throwaway primary (scripts/replica.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
. scripts/pg.sh
. scripts/replica.sh

# With DEBUG=0 nothing starts without a key (README, "Security"); the tests use one of their own.
export SECRET_KEY="${SECRET_KEY:-test-only-secret-key-not-for-production-0123456789}"
status=0
echo "=== ruff ==="
.venv/bin/ruff check . || status=1
if [ "${DB:-both}" = both ] || [ "${DB:-both}" = sqlite ]; then
  echo "=== tests on SQLite ==="
  env -u DATABASE_URL .venv/bin/python -m pytest "$@" || status=1
fi
if [ "${DB:-both}" = both ] || [ "${DB:-both}" = postgres ]; then
  echo "=== tests on PostgreSQL 15 ==="
  pgdir=$(mktemp -d /tmp/enswitch-test-pg.XXXXXX)
  trap 'pg_stop "$pgdir"; rm -rf "$pgdir"' EXIT
  pg_start "$pgdir" "$(pg_free_port)" || exit 1
  DATABASE_URL="$PG_URL" .venv/bin/python -m pytest "$@" || status=1
fi
if [ "${DB:-both}" = both ] || [ "${DB:-both}" = replica ]; then
  echo "=== API tests with reads on a PostgreSQL 15 hot standby ==="
  repdir=$(mktemp -d /tmp/enswitch-test-replica.XXXXXX)
  trap '[ -n "${pgdir:-}" ] && { pg_stop "$pgdir"; rm -rf "$pgdir"; }; replica_stop "$repdir"; rm -rf "$repdir"' EXIT
  replica_start "$repdir" || exit 1
  case " $* " in *" tests/"*) ;; *) set -- tests/test_api_*.py tests/test_replicas.py "$@" ;; esac
  DATABASE_URL="$PG_URL" DATABASE_REPLICA_URLS="$PG_REPLICA_URL" \
    .venv/bin/python -m pytest "$@" || status=1
fi
exit $status
