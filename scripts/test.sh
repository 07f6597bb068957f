#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL 15 cluster.
#   scripts/test.sh [pytest args...]        (both databases)
#   DB=sqlite scripts/test.sh ...            (one of them: sqlite | postgres)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
. scripts/pg.sh

# With DEBUG=0 nothing starts without a key (README, "Security"); the tests use one of their own.
export SECRET_KEY="${SECRET_KEY:-test-only-secret-key-not-for-production-0123456789}"
status=0
echo "=== ruff ==="
.venv/bin/ruff check . || status=1
if [ "${DB:-both}" != postgres ]; then
  echo "=== tests on SQLite ==="
  env -u DATABASE_URL .venv/bin/python -m pytest "$@" || status=1
fi
if [ "${DB:-both}" != sqlite ]; then
  echo "=== tests on PostgreSQL 15 ==="
  pgdir=$(mktemp -d /tmp/enswitch-test-pg.XXXXXX)
  trap 'pg_stop "$pgdir"; rm -rf "$pgdir"' EXIT
  pg_start "$pgdir" "$(pg_free_port)" || exit 1
  DATABASE_URL="$PG_URL" .venv/bin/python -m pytest "$@" || status=1
fi
exit $status
