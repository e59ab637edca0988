#!/usr/bin/env bash
# A private PostgreSQL server configured as docs/operations.md recommends for months of ten
# million charges, for the benchmarks (not for the tests, not for production):
#
#   bash bench/pg_tuned_server.sh start [DIR] [PORT]   # default /tmp/oc-pg-tuned, 5433
#   BENCH_PG_SERVER=postgres://postgres@127.0.0.1:5433 python bench/import_bench.py ...
#   bash bench/pg_tuned_server.sh stop [DIR]
#
# What differs from a stock server (shared_buffers 128 MB, max_wal_size 1 GB): room in shared
# buffers for the charge table's unique fingerprint index of the largest months, and checkpoints
# far enough apart that a month's import is not written twice (once as pages, once as full-page
# images in the WAL). Durability is unchanged: fsync, full_page_writes and synchronous_commit
# stay on. Override any size with PG_SHARED_BUFFERS, PG_MAX_WAL_SIZE.
set -euo pipefail
action=${1:-start}
dir=${2:-/tmp/oc-pg-tuned}
port=${3:-5433}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
as_owner() {  # the server refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$action" in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres: "$dir"
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = ${PG_SHARED_BUFFERS:-4GB}
max_wal_size = ${PG_MAX_WAL_SIZE:-16GB}
checkpoint_timeout = 30min
wal_compression = on
wal_buffers = 64MB
maintenance_work_mem = 1GB
effective_cache_size = 12GB
CONF
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
    echo "started: postgres://postgres@127.0.0.1:$port (data in $dir)"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null && echo "stopped"
    ;;
  *)
    echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2
    ;;
esac
