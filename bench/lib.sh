# shellcheck shell=bash
# Shared helpers for the benchmark scripts in bench/. Sourced, not run.
#
# The benchmarks start their OWN MariaDB instances (fresh datadirs under $BENCH_DIR, their
# own ports) so that they never touch the servers the tests use (3307/3308, see
# scripts/services.sh) and every run starts from the same empty state. Everything a script
# starts is registered here and stopped by bench_cleanup, which the scripts run from an EXIT
# trap, so an interrupted or failed run does not leave servers behind.
#
# Knobs (environment):
#   CONCORD_BIN      concord binary (default: the release build)
#   BENCH_DIR        work directory (default /tmp/concord-bench)
#   BENCH_KEEP=1     leave servers running and datadirs in place at exit (for debugging)
#   BUFFER_POOL      innodb_buffer_pool_size of every instance (default 1G)
#   REDO_LOG_SIZE    innodb_log_file_size of every instance (default 512M)
#   METRICS_PORT     port of concord's /metrics during the bench (default 9287)

# SECONDS is special in bash: imported from the environment it keeps counting up, so it is
# read first thing, for scripts whose caller passed SECONDS=N instead of DURATION=N (see
# bench_load_knobs).
_BENCH_ENV_SECONDS=$SECONDS

BENCH_DIR="${BENCH_DIR:-/tmp/concord-bench}"
CONCORD_BIN="${CONCORD_BIN:-/var/cache/concord-target/release/concord}"
BUFFER_POOL="${BUFFER_POOL:-1G}"
REDO_LOG_SIZE="${REDO_LOG_SIZE:-512M}"
METRICS_PORT="${METRICS_PORT:-9287}"
BENCH_HOST=127.0.0.1

BENCH_LOGS="$BENCH_DIR/logs"
BENCH_DATA="$BENCH_DIR/data"
BENCH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Processes this run started, stopped in reverse order at exit.
BENCH_SERVER_NAMES=()
BENCH_SERVER_PIDS=()
BENCH_BG_PIDS=()
CONCORD_PID=""

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Seconds since the epoch with nanoseconds, for timing phases.
now() { date +%s.%N; }
# elapsed START END -> seconds with 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------------------------------
# setup and teardown

# bench_init: prerequisites, work directory, a lock (two runs at once would share ports and
# measure each other), and the cleanup trap.
bench_init() {
  bench_ensure_tools
  [ -x "$CONCORD_BIN" ] || die "concord binary not found at $CONCORD_BIN (set CONCORD_BIN)"
  mkdir -p "$BENCH_DIR" "$BENCH_LOGS" "$BENCH_DATA"
  exec 9>"$BENCH_DIR/lock"
  flock -n 9 || die "another benchmark run holds $BENCH_DIR/lock"
  trap bench_cleanup EXIT
  # Turn Ctrl-C / kill into a normal exit so the EXIT trap stops what we started.
  trap 'exit 130' INT TERM
}

bench_ensure_tools() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing mariadb-server (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  fi
  if ! command -v sysbench >/dev/null 2>&1; then
    log "installing sysbench (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null; }
  fi
  command -v curl >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  command -v python3 >/dev/null 2>&1 || die "python3 is needed"
}

# The heartbeat in lag.sh needs a MySQL client library for python.
bench_ensure_pymysql() {
  if ! python3 -c 'import pymysql' >/dev/null 2>&1; then
    log "installing PyMySQL (pip)"
    python3 -m pip install -q PyMySQL >/dev/null 2>&1 || die "pip install PyMySQL failed"
  fi
}

bench_cleanup() {
  local rc=$?
  set +e
  trap - INT TERM
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "BENCH_KEEP=1: leaving servers and concord running, data in $BENCH_DATA"
    return $rc
  fi
  concord_stop
  local pid
  for pid in "${BENCH_BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  local i
  for ((i = ${#BENCH_SERVER_PIDS[@]} - 1; i >= 0; i--)); do
    server_stop_pid "${BENCH_SERVER_NAMES[$i]}" "${BENCH_SERVER_PIDS[$i]}"
  done
  rm -rf "$BENCH_DATA"
  log "cleaned up (logs kept in $BENCH_LOGS)"
  return $rc
}

# ---------------------------------------------------------------------------------------
# MariaDB instances

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

# sql PORT STATEMENT... : runs statements, prints tab-separated rows without headers.
sql() {
  local port=$1
  shift
  mariadb --no-defaults -uroot -h"$BENCH_HOST" -P"$port" -N -B -e "$*"
}

port_answers() { (echo >"/dev/tcp/$BENCH_HOST/$1") >/dev/null 2>&1; }

# Settings every instance gets, so the native replica and concord's target are configured
# alike: same buffer pool, same redo log, same (relaxed) durability. flush_log_at_trx_commit=2
# takes fsync latency out of the comparison; both sides get it.
bench_server_common_opts() {
  printf '%s\n' \
    --innodb-buffer-pool-size="$BUFFER_POOL" \
    --innodb-log-file-size="$REDO_LOG_SIZE" \
    --innodb-flush-log-at-trx-commit=2 \
    --max-connections=300 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --sql-mode=STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION
}

# The binlog settings concord requires, as on the test source (scripts/services.sh). A large
# max_binlog_size keeps a whole backlog in one file, which keeps the position arithmetic and
# the row count simple (several files are still handled).
bench_source_opts() {
  printf '%s\n' \
    --log-bin="$BENCH_DATA/$1/mysql-bin" --binlog-format=ROW \
    --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --sync-binlog=0 --max-binlog-size=1G
}

# server_start NAME PORT SERVER_ID [EXTRA mariadbd ARGS...]
# Always a fresh datadir: results must not depend on what a previous run left behind.
server_start() {
  local name=$1 port=$2 server_id=$3
  shift 3
  local data="$BENCH_DATA/$name" sock="$BENCH_DATA/$name.sock"
  if port_answers "$port"; then
    die "port $port is already in use; the benchmark uses its own instances and will not touch that one (change the *_PORT variables)"
  fi
  rm -rf "$data"
  mkdir -p "$data"
  : >"$BENCH_LOGS/$name.err" # mariadbd appends; keep only this run's log
  mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data" \
    --auth-root-authentication-method=normal --skip-test-db >"$BENCH_LOGS/$name-install.log" 2>&1 ||
    die "mariadb-install-db for $name failed, see $BENCH_LOGS/$name-install.log"
  local opts
  mapfile -t opts < <(bench_server_common_opts)
  "$(mariadbd_bin)" --no-defaults --user="$(id -un)" --datadir="$data" \
    --port="$port" --bind-address="$BENCH_HOST" --socket="$sock" \
    --pid-file="$BENCH_DATA/$name.pid" --log-error="$BENCH_LOGS/$name.err" \
    --server-id="$server_id" "${opts[@]}" "$@" >/dev/null 2>&1 &
  local pid=$!
  BENCH_SERVER_NAMES+=("$name")
  BENCH_SERVER_PIDS+=("$pid")
  local _
  for _ in $(seq 1 240); do
    if mariadb --no-defaults -uroot --socket="$sock" -e 'SELECT 1' >/dev/null 2>&1; then
      # Everything connects as root over TCP without a password, like the test services.
      mariadb --no-defaults -uroot --socket="$sock" -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
      log "$name up on $BENCH_HOST:$port (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$BENCH_LOGS/$name.err" >&2 || true
  die "$name did not start on port $port"
}

server_stop_pid() {
  local name=$1 pid=$2 _
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { log "$name stopped"; return 0; }
    sleep 0.5
  done
  log "$name (pid $pid) did not stop in 60 s; killing it"
  kill -9 "$pid" 2>/dev/null
}

# master_pos PORT -> "FILE POS" of the next write on that source.
master_pos() {
  sql "$1" "SHOW MASTER STATUS" | awk '{ print $1, $2 }'
}

# pos_ge FILE1 POS1 FILE2 POS2: true when position 1 is at or after position 2. Binlog file
# names differ only in their numeric suffix.
pos_ge() {
  local n1=${1##*.} n2=${3##*.}
  n1=$((10#$n1))
  n2=$((10#$n2))
  [ "$n1" -gt "$n2" ] || { [ "$n1" -eq "$n2" ] && [ "$2" -ge "$4" ]; }
}

# binlog_bytes PORT FROM_FILE FROM_POS TO_FILE TO_POS -> bytes of binlog between the two
# positions, across rotations (the sizes of the files in between, from SHOW BINARY LOGS).
binlog_bytes() {
  local from=$((10#${2##*.})) to=$((10#${4##*.}))
  sql "$1" "SHOW BINARY LOGS" | awk -v from="$from" -v to="$to" -v p1="$3" -v p2="$5" '
    { n = $1; sub(/.*\./, "", n); n += 0; if (n >= from && n < to) sum += $2 }
    END { printf "%d\n", sum - p1 + p2 }'
}

# binlog_files_between PORT FROM_FILE TO_FILE -> the binlog files in that range, one a line.
binlog_files_between() {
  local from=$((10#${2##*.})) to=$((10#${3##*.}))
  sql "$1" "SHOW BINARY LOGS" | awk -v from="$from" -v to="$to" '{
    n = $1; sub(/.*\./, "", n); n += 0
    if (n >= from && n <= to) print $1
  }'
}

# backlog_stats SOURCE_NAME PORT FROM_FILE FROM_POS TO_FILE TO_POS
#   -> "ROWS TRANSACTIONS BYTES" for the binlog between the two positions.
# Rows are counted exactly: every row image of an INSERT/UPDATE/DELETE row event, as
# mariadb-binlog prints one "### INSERT INTO / ### UPDATE / ### DELETE FROM" line per row.
backlog_stats() {
  local name=$1 port=$2 f1=$3 p1=$4 f2=$5 p2=$6
  local files=() f
  while read -r f; do files+=("$BENCH_DATA/$name/$f"); done < <(binlog_files_between "$port" "$f1" "$f2")
  [ ${#files[@]} -gt 0 ] || die "no binlog files between $f1 and $f2"
  # Bytes: the part of each file inside the range.
  local bytes=0 size
  for f in "${files[@]}"; do
    size=$(stat -c %s "$f")
    local from=4 to=$size
    [ "$(basename "$f")" = "$f1" ] && from=$p1
    [ "$(basename "$f")" = "$f2" ] && to=$p2
    bytes=$((bytes + to - from))
  done
  local counts
  # --start-position applies to the first file, --stop-position to the last one.
  counts=$(mariadb-binlog --no-defaults --base64-output=decode-rows -v \
    --start-position="$p1" --stop-position="$p2" "${files[@]}" 2>"$BENCH_LOGS/mariadb-binlog.err" |
    awk '/^### (INSERT INTO|UPDATE|DELETE FROM) / { rows++ } /Xid = [0-9]+$/ { trx++ } END { print rows + 0, trx + 0 }')
  echo "$counts $bytes"
}

# table_checksums PORT DB TABLES... -> one "table checksum" line per table, for comparing copies.
table_checksums() {
  local port=$1 db=$2
  shift 2
  local list
  list=$(printf "\`$db\`.\`%s\`," "$@")
  sql "$port" "CHECKSUM TABLE ${list%,}"
}

# ---------------------------------------------------------------------------------------
# sysbench (oltp_write_only: per transaction 1 index update, 1 non-index update, 1 delete,
# 1 insert)

# sb PORT COMMAND [EXTRA sysbench ARGS...]
sb() {
  local port=$1 cmd=$2
  shift 2
  sysbench oltp_write_only --db-driver=mysql --mysql-host="$BENCH_HOST" --mysql-port="$port" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest \
    --tables="$TABLES" --table-size="$ROWS" "$@" "$cmd"
}

sb_prepare() {
  local port=$1
  sql "$port" "CREATE DATABASE IF NOT EXISTS sbtest"
  log "sysbench prepare: $TABLES tables x $ROWS rows"
  sb "$port" prepare --threads="$(nproc)" >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -20 "$BENCH_LOGS/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
}

# sb_tps LOGFILE -> transactions per second sysbench reported.
sb_tps() { awk '/transactions:/ { gsub(/[()]/, "", $3); print $3 }' "$1"; }

# dump_databases PORT FILE DB... / load_dump PORT FILE: the same starting data everywhere,
# loaded from one dump (concord applies row changes only, so the target needs the tables and their rows
# before the measured range begins; the native replica gets exactly the same).
dump_databases() {
  local port=$1 out=$2
  shift 2
  mariadb-dump --no-defaults -uroot -h"$BENCH_HOST" -P"$port" --single-transaction \
    --databases "$@" >"$out" || die "mariadb-dump failed"
}
load_dump() {
  mariadb --no-defaults -uroot -h"$BENCH_HOST" -P"$1" <"$2" || die "loading $2 into port $1 failed"
}

# bench_pair SOURCE_PORT TARGET_PORT SERVER_ID: a bench source (binlog) and a target,
# sysbench prepare on the source, and one dump of it loaded into the target, so both agree
# at the source position it sets in START_FILE / START_POS. The target gets SERVER_ID + 1.
bench_pair() {
  local sport=$1 tport=$2 id=$3
  local opts
  mapfile -t opts < <(bench_source_opts source)
  server_start source "$sport" "$id" "${opts[@]}"
  server_start target "$tport" $((id + 1))
  sb_prepare "$sport"
  read -r START_FILE START_POS < <(master_pos "$sport")
  dump_databases "$sport" "$BENCH_DATA/prepared.sql" sbtest
  load_dump "$tport" "$BENCH_DATA/prepared.sql"
}

# ---------------------------------------------------------------------------------------
# concord

# concord_config FILE SOURCE_PORT TARGET_PORT START INCLUDE... : writes a config for the
# bench instances. The control store is a SQLite file under the bench directory.
concord_config() {
  local file=$1 sport=$2 tport=$3 start=$4
  shift 4
  local include
  include=$(printf '"%s", ' "$@")
  cat >"$file" <<EOF
# Written by bench/lib.sh for a benchmark run.
[source]
url = "mysql://root@$BENCH_HOST:$sport"
server_id = 4242
start = "$start"

[target]
url = "mysql://root@$BENCH_HOST:$tport"
checkpoint_schema = "concord"

[tables]
include = [${include%, }]

[replicator]
name = "bench"

[control]
url = "sqlite://$BENCH_DATA/concord-control.db"

[metrics]
listen = "$BENCH_HOST:$METRICS_PORT"
EOF
}

# concord_start CONFIG LOG [ROLE]: starts `concord ROLE` (default `replicate`: the applier
# alone, without the verifier `concord run` adds) in the background; pid in CONCORD_PID.
concord_start() {
  local config=$1 logfile=$2 role=${3:-replicate}
  if port_answers "$METRICS_PORT"; then
    die "port $METRICS_PORT (concord metrics) is already in use; set METRICS_PORT"
  fi
  "$CONCORD_BIN" "$role" --config "$config" >>"$logfile" 2>&1 &
  CONCORD_PID=$!
  CONCORD_LOG=$logfile
}

concord_alive() { [ -n "$CONCORD_PID" ] && kill -0 "$CONCORD_PID" 2>/dev/null; }

# Fails the run with concord's own last words when it has exited.
concord_check_alive() {
  if ! concord_alive; then
    local rc=0
    wait "$CONCORD_PID" 2>/dev/null || rc=$?
    log "concord exited (status $rc); last lines of $CONCORD_LOG:"
    tail -30 "$CONCORD_LOG" >&2
    CONCORD_PID=""
    die "concord stopped unexpectedly"
  fi
}

# Waits until /readyz answers 200: concord has read the source up to its end once.
concord_wait_ready() {
  local timeout=${1:-120} start
  start=$(date +%s)
  until curl -fsS "http://$BENCH_HOST:$METRICS_PORT/readyz" >/dev/null 2>&1; do
    concord_check_alive
    [ $(($(date +%s) - start)) -lt "$timeout" ] || die "concord not ready after ${timeout}s (log: $CONCORD_LOG)"
    sleep 0.2
  done
}

concord_stop() {
  [ -n "$CONCORD_PID" ] || return 0
  local _
  if kill -0 "$CONCORD_PID" 2>/dev/null; then
    kill -TERM "$CONCORD_PID" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$CONCORD_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$CONCORD_PID" 2>/dev/null && kill -9 "$CONCORD_PID" 2>/dev/null
  fi
  wait "$CONCORD_PID" 2>/dev/null
  CONCORD_PID=""
  return 0
}

# concord_checkpoint TARGET_PORT -> "FILE POS" concord has committed on the target (empty
# before its first batch).
concord_checkpoint() {
  sql "$1" "SELECT binlog_file, binlog_pos FROM concord.checkpoints WHERE replicator = 'bench'" 2>/dev/null |
    awk '{ print $1, $2 }'
}

# Sum of concord_applied_events_total over all tables and ops.
concord_applied_events() {
  { curl -fsS "http://$BENCH_HOST:$METRICS_PORT/metrics" 2>/dev/null || true; } |
    awk '/^concord_applied_events_total[{ ]/ { s += $NF } END { printf "%d\n", s }'
}

# concord_mem FIELD -> VmHWM / VmRSS of the concord process in MiB.
concord_mem() {
  awk -v f="$1:" '$1 == f { printf "%.1f\n", $2 / 1024 }' "/proc/$CONCORD_PID/status"
}

# bench_load_knobs: the sysbench load of the backlog and lag scripts — TABLES (4), ROWS
# (50000 per table), DURATION (30 s; SECONDS=N is taken as DURATION=N), THREADS (4).
bench_load_knobs() {
  if [ -z "${DURATION:-}" ] && [ "$_BENCH_ENV_SECONDS" -gt 0 ]; then DURATION=$_BENCH_ENV_SECONDS; fi
  TABLES="${TABLES:-4}"
  ROWS="${ROWS:-50000}"
  DURATION="${DURATION:-30}"
  THREADS="${THREADS:-4}"
}

# cpu_seconds PID -> user + system CPU seconds the process has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}

# machine_busy -> "busy total" jiffies of all CPUs so far (from /proc/stat), for the share of
# the machine in use between two readings.
machine_busy() {
  awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# server_pid NAME -> pid of a server started by server_start.
server_pid() {
  local i
  for i in "${!BENCH_SERVER_NAMES[@]}"; do
    [ "${BENCH_SERVER_NAMES[$i]}" = "$1" ] && { echo "${BENCH_SERVER_PIDS[$i]}"; return; }
  done
}

# ---------------------------------------------------------------------------------------
# reporting

machine_summary() {
  local model ram kernel
  model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  kernel=$(uname -r)
  echo "machine:  $(nproc) CPUs, ${model:-unknown CPU}, $ram RAM, Linux $kernel"
}

versions_summary() {
  local mariadb_version concord_version
  mariadb_version=$("$(mariadbd_bin)" --version 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /MariaDB/) { print $i; exit } }')
  concord_version=$("$CONCORD_BIN" --version 2>/dev/null || echo '?')
  echo "software: MariaDB ${mariadb_version:-?}, $(sysbench --version), $concord_version ($CONCORD_BIN)"
}

# ratio A B -> A / B with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "n/a" }'; }

# at_least VALUE LIMIT / at_most VALUE LIMIT -> "met" or "NOT met" (a figure that could not
# be computed, "n/a", is never met).
at_least() { awk -v v="$1" -v t="$2" 'BEGIN { print (v != "n/a" && v + 0 >= t ? "met" : "NOT met") }'; }
at_most() { awk -v v="$1" -v t="$2" 'BEGIN { print (v != "n/a" && v + 0 <= t ? "met" : "NOT met") }'; }
