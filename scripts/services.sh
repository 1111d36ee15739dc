#!/usr/bin/env bash
# Starts (or stops) the real servers concord's tests and quickstart talk to, on loopback:
#   source  MariaDB with binlog (ROW, FULL image, FULL metadata)  127.0.0.1:3307
#   target  MariaDB                                              127.0.0.1:3308
# Each has its own datadir under $CONCORD_SERVICES_DIR (default /tmp/concord-services).
# Usage: scripts/services.sh start|stop|status|reset
set -euo pipefail

DIR="${CONCORD_SERVICES_DIR:-/tmp/concord-services}"
SOURCE_PORT="${CONCORD_SOURCE_PORT:-3307}"
TARGET_PORT="${CONCORD_TARGET_PORT:-3308}"

log() { echo "services: $*" >&2; }

ensure_packages() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  fi
}

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

# start NAME PORT SERVER_ID EXTRA_ARGS...
start_one() {
  local name=$1 port=$2 server_id=$3
  shift 3
  local data="$DIR/$name"
  local sock="$DIR/$name.sock"
  if mariadb -uroot -h127.0.0.1 -P"$port" -e 'SELECT 1' >/dev/null 2>&1; then
    log "$name already answers on $port"
    return
  fi
  mkdir -p "$data"
  if [ ! -d "$data/mysql" ]; then
    log "initialising $name datadir $data"
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data" \
      --auth-root-authentication-method=normal --skip-test-db >"$DIR/$name-install.log" 2>&1
  fi
  log "starting $name on 127.0.0.1:$port"
  "$(mariadbd_bin)" --no-defaults --user="$(id -un)" --datadir="$data" \
    --port="$port" --bind-address=127.0.0.1 --socket="$sock" \
    --pid-file="$DIR/$name.pid" --log-error="$DIR/$name.err" \
    --server-id="$server_id" \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --sql-mode=STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION \
    "$@" >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    if mariadb -uroot -h127.0.0.1 -P"$port" -e 'SELECT 1' >/dev/null 2>&1; then
      # The tests connect as root over TCP without a password.
      mariadb -uroot -h127.0.0.1 -P"$port" -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" \
        >/dev/null 2>&1 || true
      return
    fi
    sleep 0.5
  done
  log "$name did not start; its log says:"
  tail -20 "$DIR/$name.err" >&2 || true
  exit 1
}

stop_one() {
  local name=$1
  if [ -f "$DIR/$name.pid" ]; then
    kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$(cat "$DIR/$name.pid" 2>/dev/null)" 2>/dev/null || break
      sleep 0.5
    done
    rm -f "$DIR/$name.pid"
  fi
}

case "${1:-start}" in
  start)
    ensure_packages
    mkdir -p "$DIR"
    start_one source "$SOURCE_PORT" 1 \
      --log-bin="$DIR/source/mysql-bin" --binlog-format=ROW \
      --binlog-row-image=FULL --binlog-row-metadata=FULL \
      --sync-binlog=0 --max-binlog-size=256M
    start_one target "$TARGET_PORT" 2
    log "source 127.0.0.1:$SOURCE_PORT, target 127.0.0.1:$TARGET_PORT ready"
    ;;
  stop)
    stop_one source
    stop_one target
    ;;
  reset)
    stop_one source
    stop_one target
    rm -rf "$DIR"
    ;;
  status)
    for p in "$SOURCE_PORT" "$TARGET_PORT"; do
      if mariadb -uroot -h127.0.0.1 -P"$p" -e 'SELECT 1' >/dev/null 2>&1; then echo "$p up"; else echo "$p down"; fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status|reset" >&2
    exit 2
    ;;
esac
