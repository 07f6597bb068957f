# shellcheck shell=bash
# Throwaway PostgreSQL 15 cluster for tests and benchmarks. Source this file, then:
#   pg_start DIR PORT   -> exports PG_URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   pg_stop DIR
# The default collation is ICU en-US on purpose: the contract orders strings by code
# point whatever the locale, and tests must show that.
# The server refuses to run as root, so as root it runs as the `postgres` user.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

_pg_as() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

pg_start() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    _pg_as "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 ${PG_INITDB_LOCALE:---locale-provider=icu --icu-locale=en-US} >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log"; return 1; }
  fi
  _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c full_page_writes=off $*" \
    start >/dev/null || { cat "$dir/server.log"; return 1; }
  export PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  return 0
}
