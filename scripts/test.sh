#!/usr/bin/env bash
# The whole test suite, on SQLite, on a throwaway PostgreSQL 15 server and on a throwaway
# Citus cluster (a coordinator and two workers; skipped, with a message, without Citus).
#   scripts/test.sh [pytest args...]        (all three)
#   DB=sqlite scripts/test.sh ...            (one of them: sqlite | postgres | citus)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
. scripts/citus.sh

# With DEBUG=0 nothing starts without a key (README, "Security"); the tests use one of their own.
export SECRET_KEY="${SECRET_KEY:-test-only-secret-key-not-for-production-0123456789}"
status=0
echo "=== ruff ==="
.venv/bin/ruff check . || status=1
DB=${DB:-all}
if [ "$DB" = all ] || [ "$DB" = sqlite ]; then
  echo "=== tests on SQLite ==="
  env -u DATABASE_URL .venv/bin/python -m pytest "$@" || status=1
fi
if [ "$DB" = all ] || [ "$DB" = postgres ]; then
  echo "=== tests on PostgreSQL 15 ==="
  pgdir=$(mktemp -d /tmp/enswitch-test-pg.XXXXXX)
  trap 'pg_stop "$pgdir"; rm -rf "$pgdir"' EXIT
  pg_start "$pgdir" "$(pg_free_port)" || exit 1
  SECONDS=0
  DATABASE_URL="$PG_URL" .venv/bin/python -m pytest "$@" || status=1
  echo "PostgreSQL 15: ${SECONDS}s"
  pg_stop "$pgdir"
fi
if [ "$DB" = all ] || [ "$DB" = citus ]; then
  echo "=== tests on Citus (a coordinator and two workers) ==="
  if ! citus_available; then
    echo "SKIPPED: the citus extension is not installed for PostgreSQL 15 (docs/scaling.md says how)"
    [ "$DB" = citus ] && status=1
  else
    citusdir=$(mktemp -d /tmp/enswitch-test-citus.XXXXXX)
    trap 'pg_stop "${pgdir:-/nonexistent}"; citus_stop "$citusdir"; rm -rf "${pgdir:-}" "$citusdir"' EXIT
    # pytest-django's test database (test_<name>) is made here, on every node with the
    # extension and the workers registered in it, and reused; its migrate lays it out.
    citus_start "$citusdir" 2 enswitch test_enswitch || exit 1
    SECONDS=0
    DATABASE_URL="$CITUS_URL" .venv/bin/python -m pytest --reuse-db "$@" || status=1
    echo "Citus: ${SECONDS}s"
  fi
fi
exit $status
