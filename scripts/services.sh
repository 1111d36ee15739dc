#!/usr/bin/env bash
# Starts (or stops) the real servers concord's tests and quickstart talk to, on loopback:
#   source  MariaDB with binlog (ROW, FULL image, FULL metadata)  127.0.0.1:3307
#   target  MariaDB                                              127.0.0.1:3308
#   broker  tansu (Kafka protocol, SQLite storage)                127.0.0.1:9092
#           (the Kafka-mode tests also start brokers of their own on free ports: tansu,
#           or nisshi where a test SIGKILLs consumer-group members)
# Each has its own datadir under $CONCORD_SERVICES_DIR (default /tmp/concord-services).
# Usage: scripts/services.sh start|databases|stop|status|reset
#   start      the source, the target and the broker (installing the brokers once)
#   databases  the source and the target only (direct mode: the quickstart)
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

TOOLS="${CONCORD_TOOLS_DIR:-/var/cache/concord-tools}"
BROKER_PORT="${CONCORD_BROKER_PORT:-9092}"

# The brokers are installed from crates.io into a cache outside the clone, once per
# machine: tansu 0.6.0, and nisshi 0.6.0 (tansu renamed), which evicts group members whose
# session expired — tansu 0.6.0 does not; the tests that SIGKILL consumer-group members run
# against nisshi, the rest against tansu, whose fetches answer promptly (docs/NOTES.md).
# nisshi 0.6.0 is the last release that builds with rustc 1.95 (later ones need rama 0.4).
# ensure_tool NAME VERSION
ensure_tool() {
  local name=$1 version=$2
  if [ -x "$TOOLS/bin/$name" ]; then return; fi
  log "installing $name $version (Kafka-protocol broker) into $TOOLS; this compiles for several minutes once"
  cargo install "$name" --version "$version" --features libsql --locked --root "$TOOLS" \
    --target-dir "${CARGO_TARGET_DIR:-/var/cache/concord-target}/$name" >"$DIR/$name-install.log" 2>&1 ||
    { tail -30 "$DIR/$name-install.log" >&2; exit 1; }
}

start_broker() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
    log "broker already answers on $BROKER_PORT"
    return
  fi
  mkdir -p "$DIR/broker"
  log "starting broker on 127.0.0.1:$BROKER_PORT"
  # Redirect the whole background job, so no caller's pipe stays open behind it.
  (cd "$DIR/broker" && exec "$TOOLS/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --storage-engine sqlite://tansu.db) </dev/null >"$DIR/broker.log" 2>&1 &
  echo $! >"$DIR/broker.pid"
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then return; fi
    sleep 0.2
  done
  log "broker did not start:"; tail -20 "$DIR/broker.log" >&2; exit 1
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

start_databases() {
  ensure_packages
  mkdir -p "$DIR"
  start_one source "$SOURCE_PORT" 1 \
    --log-bin="$DIR/source/mysql-bin" --binlog-format=ROW \
    --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --sync-binlog=0 --max-binlog-size=256M
  start_one target "$TARGET_PORT" 2
}

case "${1:-start}" in
  databases)
    # Direct mode needs no broker: the quickstart starts only these.
    start_databases
    log "source 127.0.0.1:$SOURCE_PORT, target 127.0.0.1:$TARGET_PORT ready"
    ;;
  start)
    start_databases
    ensure_tool tansu 0.6.0
    ensure_tool nisshi 0.6.0
    start_broker
    log "source 127.0.0.1:$SOURCE_PORT, target 127.0.0.1:$TARGET_PORT, broker 127.0.0.1:$BROKER_PORT ready"
    ;;
  stop)
    stop_one source
    stop_one target
    stop_one broker
    ;;
  reset)
    stop_one source
    stop_one target
    stop_one broker
    rm -rf "$DIR"
    ;;
  status)
    for p in "$SOURCE_PORT" "$TARGET_PORT"; do
      if mariadb -uroot -h127.0.0.1 -P"$p" -e 'SELECT 1' >/dev/null 2>&1; then echo "$p up"; else echo "$p down"; fi
    done
    ;;
  *)
    echo "usage: $0 start|databases|stop|status|reset" >&2
    exit 2
    ;;
esac
