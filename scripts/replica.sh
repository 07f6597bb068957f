# shellcheck shell=bash
# A throwaway PostgreSQL 15 primary and a hot standby streaming from it (pg_basebackup -R),
# both on loopback, for the tests of API reads on replicas. Source scripts/pg.sh, then this:
#   replica_start DIR   -> exports PG_URL (the primary), PG_REPLICA_URL (the standby) and
#                          PG_REPLICA_DATA (the standby's data directory, which the tests
#                          stop and start with pg_ctl: its settings are in its config files)
#   replica_stop DIR
# The standby cancels a query that holds back its replay after 1 s
# (max_standby_streaming_delay), so that the tests see recovery conflicts quickly.

replica_start() {
  local dir=$1 primary_port standby_port primary_url
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  primary_port=$(pg_free_port)
  pg_start "$dir/primary" "$primary_port" -c wal_level=replica -c max_wal_senders=4 || return 1
  primary_url=$PG_URL
  standby_port=$(pg_free_port)
  mkdir -p "$dir/standby"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/standby"
  _pg_as "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$dir/standby/data" -R -X stream -c fast >"$dir/standby/basebackup.log" 2>&1 \
    || { cat "$dir/standby/basebackup.log"; return 1; }
  _pg_as tee -a "$dir/standby/data/postgresql.auto.conf" >/dev/null <<CONF
port = $standby_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/standby'
fsync = off
full_page_writes = off
hot_standby = on
max_standby_streaming_delay = 1s
wal_receiver_status_interval = 1s
CONF
  pg_start "$dir/standby" "$standby_port" || return 1
  export PG_URL=$primary_url
  export PG_REPLICA_URL="postgres://postgres@127.0.0.1:$standby_port/postgres"
  export PG_REPLICA_DATA="$dir/standby/data"
}

replica_stop() {
  local dir=$1
  pg_stop "$dir/standby"
  pg_stop "$dir/primary"
  return 0
}
