#!/usr/bin/env bash
# Catch-up benchmark: how fast concord applies a backlog, compared with a native MariaDB
# replica applying the very same backlog on an identically configured server.
#
#   1. start a bench source (binlog like the test source), concord's target, and a native
#      replica (plus, by default, a second replica with parallel apply as an extra anchor);
#   2. sysbench prepare on the source, note the binlog position P, and load one dump of the
#      prepared data into the target and the replicas, so all copies agree at P;
#   3. the replicas run only their IO thread (the relay log fills, nothing is applied) and
#      concord is not running, while sysbench oltp_write_only runs for DURATION seconds;
#   4. note the source's end position E and count the backlog's row changes exactly from
#      the binlog between P and E;
#   5. one at a time, so they never compete for the CPU: time each replica's SQL thread from
#      START SLAVE SQL_THREAD until Exec_Master_Log_Pos reaches E, then time concord from
#      process start until its checkpoint on the target reaches E;
#   6. compare CHECKSUM TABLE of every copy with the source, and print a summary.
#
# Usage: bench/catchup.sh
# Environment: TABLES (4) ROWS (50000 per table) DURATION (30 s of load; SECONDS is accepted
# too) THREADS (4) PARALLEL_ANCHOR (1: also time a replica with slave_parallel_threads=4)
# CONCORD_BIN, and the knobs in bench/lib.sh.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_load_knobs
PARALLEL_ANCHOR="${PARALLEL_ANCHOR:-1}"
SOURCE_PORT="${SOURCE_PORT:-3311}"
TARGET_PORT="${TARGET_PORT:-3312}"
REPLICA_PORT="${REPLICA_PORT:-3313}"
REPLICA_PAR_PORT="${REPLICA_PAR_PORT:-3314}"
CATCHUP_TIMEOUT="${CATCHUP_TIMEOUT:-3600}"
# How often completion is polled; it bounds the timing error of each side (both alike).
POLL="${POLL:-0.05}"

COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS PARALLEL_ANCHOR=$PARALLEL_ANCHOR CONCORD_BIN=$CONCORD_BIN bench/catchup.sh"
SUMMARY="$BENCH_LOGS/catchup-summary.txt"

bench_init
rm -f "$BENCH_LOGS"/catchup-* "$BENCH_LOGS"/sysbench-*.log "$BENCH_LOGS"/concord-catchup.log
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# --- replica helpers ------------------------------------------------------------------

# slave_fields PORT FIELD... -> the named SHOW SLAVE STATUS values, space separated, in order.
slave_fields() {
  local port=$1
  shift
  mariadb --no-defaults -uroot -h"$BENCH_HOST" -P"$port" -e 'SHOW SLAVE STATUS\G' |
    awk -v want="$*" '
      BEGIN { n = split(want, names, " ") }
      { line = $0; sub(/^ +/, "", line); i = index(line, ": ");
        if (i) val[substr(line, 1, i - 1)] = substr(line, i + 2) }
      END { for (k = 1; k <= n; k++) printf "%s%s", (val[names[k]] == "" ? "-" : val[names[k]]), (k < n ? " " : "\n") }'
}

replica_start() {
  local name=$1 port=$2 id=$3
  shift 3
  server_start "$name" "$port" "$id" --relay-log="$BENCH_DATA/$name/relay-bin" --skip-slave-start "$@"
}

# replica_attach PORT FILE POS: replicate from the bench source at FILE:POS, IO thread only.
replica_attach() {
  sql "$1" "CHANGE MASTER TO MASTER_HOST='$BENCH_HOST', MASTER_PORT=$SOURCE_PORT, MASTER_USER='root', \
    MASTER_PASSWORD='', MASTER_LOG_FILE='$2', MASTER_LOG_POS=$3, MASTER_USE_GTID=no; START SLAVE IO_THREAD"
}

# Waits until the replica's IO thread has copied the whole backlog into its relay log, so
# the timed part measures applying only (the same for concord: the source is idle by then).
replica_wait_fetched() {
  local name=$1 port=$2 file pos io _
  for _ in $(seq 1 1200); do
    read -r file pos io < <(slave_fields "$port" Master_Log_File Read_Master_Log_Pos Slave_IO_Running)
    if [ "$pos" != - ] && pos_ge "$file" "$pos" "$END_FILE" "$END_POS"; then return 0; fi
    [ "$io" = Yes ] || [ "$io" = Connecting ] || die "$name IO thread is not running: $(slave_fields "$port" Last_IO_Error)"
    sleep 0.1
  done
  die "$name did not fetch the backlog within 120 s"
}

# replica_time NAME PORT -> seconds from START SLAVE SQL_THREAD until the backlog is applied.
replica_time() {
  local name=$1 port=$2 t0 t1 file pos running err deadline
  deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
  t0=$(now)
  sql "$port" "START SLAVE SQL_THREAD"
  while :; do
    read -r file pos running < <(slave_fields "$port" Relay_Master_Log_File Exec_Master_Log_Pos Slave_SQL_Running)
    if [ "$pos" != - ] && pos_ge "$file" "$pos" "$END_FILE" "$END_POS"; then
      t1=$(now)
      break
    fi
    if [ "$running" = No ]; then
      err=$(mariadb --no-defaults -uroot -h"$BENCH_HOST" -P"$port" -e 'SHOW SLAVE STATUS\G' | grep -m1 'Last_SQL_Error' || true)
      die "$name SQL thread stopped: $err"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$name did not catch up within ${CATCHUP_TIMEOUT}s"
    sleep "$POLL"
  done
  elapsed "$t0" "$t1"
}

# --- 1. instances ---------------------------------------------------------------------
mapfile -t SOURCE_OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 11 "${SOURCE_OPTS[@]}"
server_start target "$TARGET_PORT" 12
# MariaDB's default: slave_parallel_threads=0, i.e. one SQL thread applies in order.
replica_start replica "$REPLICA_PORT" 13
if [ "$PARALLEL_ANCHOR" = 1 ]; then
  replica_start replica-par "$REPLICA_PAR_PORT" 14 \
    --slave-parallel-threads=4 --slave-parallel-mode=optimistic
fi

# --- 2. the same starting data everywhere ---------------------------------------------
sb_prepare "$SOURCE_PORT"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")
log "backlog starts at $START_FILE:$START_POS"
dump_databases "$SOURCE_PORT" "$BENCH_DATA/prepared.sql" sbtest
load_dump "$TARGET_PORT" "$BENCH_DATA/prepared.sql"
load_dump "$REPLICA_PORT" "$BENCH_DATA/prepared.sql"
replica_attach "$REPLICA_PORT" "$START_FILE" "$START_POS"
if [ "$PARALLEL_ANCHOR" = 1 ]; then
  load_dump "$REPLICA_PAR_PORT" "$BENCH_DATA/prepared.sql"
  replica_attach "$REPLICA_PAR_PORT" "$START_FILE" "$START_POS"
fi

# Start concord once before the load: proves the config and connections work before we spend
# the load time, and creates its checkpoint table. With no change after P it commits no
# checkpoint, so the timed start below begins at P again (source.start).
CONFIG="$BENCH_DATA/concord-catchup.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
concord_start "$CONFIG" "$BENCH_LOGS/concord-catchup.log"
concord_wait_ready 120
concord_stop
log "concord starts and connects; stopped again until the backlog is built"

# --- 3. build the backlog -------------------------------------------------------------
log "load: oltp_write_only, $THREADS threads, ${DURATION}s (concord stopped, replicas' SQL threads stopped)"
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || { tail -20 "$BENCH_LOGS/sysbench-run.log" >&2; die "sysbench run failed"; }
LOAD_TPS=$(sb_tps "$BENCH_LOGS/sysbench-run.log")

# --- 4. the backlog, exactly ----------------------------------------------------------
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
log "backlog ends at $END_FILE:$END_POS"
read -r BACKLOG_ROWS BACKLOG_TRX BACKLOG_BYTES < <(backlog_stats source "$SOURCE_PORT" \
  "$START_FILE" "$START_POS" "$END_FILE" "$END_POS")
log "backlog: $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions, $BACKLOG_BYTES bytes of binlog"
[ "$BACKLOG_ROWS" -gt 0 ] || die "the backlog has no row changes; see $BENCH_LOGS/sysbench-run.log"
replica_wait_fetched replica "$REPLICA_PORT"
[ "$PARALLEL_ANCHOR" = 1 ] && replica_wait_fetched replica-par "$REPLICA_PAR_PORT"
# Let the source's background flushing after the load settle before timing anything.
sleep 3

# --- 5. timed catch-up, one contender at a time ---------------------------------------
log "timing native replica (slave_parallel_threads=0)"
REPLICA_S=$(replica_time replica "$REPLICA_PORT")
log "native replica: ${REPLICA_S}s"
if [ "$PARALLEL_ANCHOR" = 1 ]; then
  log "timing native replica (slave_parallel_threads=4, optimistic)"
  REPLICA_PAR_S=$(replica_time replica-par "$REPLICA_PAR_PORT")
  log "native parallel replica: ${REPLICA_PAR_S}s"
fi

log "timing concord (from process start until its checkpoint reaches $END_FILE:$END_POS)"
deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
SOURCE_CPU0=$(cpu_seconds "$(server_pid source)")
TARGET_CPU0=$(cpu_seconds "$(server_pid target)")
t0=$(now)
concord_start "$CONFIG" "$BENCH_LOGS/concord-catchup.log"
while :; do
  concord_check_alive
  read -r cp_file cp_pos < <(concord_checkpoint "$TARGET_PORT"; echo)
  if [ -n "${cp_file:-}" ] && pos_ge "$cp_file" "$cp_pos" "$END_FILE" "$END_POS"; then
    t1=$(now)
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "concord did not catch up within ${CATCHUP_TIMEOUT}s (checkpoint ${cp_file:-none}:${cp_pos:-}); log: $CONCORD_LOG"
  fi
  sleep "$POLL"
done
CONCORD_S=$(elapsed "$t0" "$t1")
CONCORD_CPU=$(cpu_seconds "$CONCORD_PID")
SOURCE_CPU=$(awk -v a="$SOURCE_CPU0" -v b="$(cpu_seconds "$(server_pid source)")" 'BEGIN { printf "%.2f", b - a }')
TARGET_CPU=$(awk -v a="$TARGET_CPU0" -v b="$(cpu_seconds "$(server_pid target)")" 'BEGIN { printf "%.2f", b - a }')
CONCORD_APPLIED=$(concord_applied_events)
CONCORD_HWM=$(concord_mem VmHWM)
log "concord: ${CONCORD_S}s"
concord_stop
CONCORD_ERRORS=$(grep -cE ' (ERROR|WARN) ' "$BENCH_LOGS/concord-catchup.log" || true)

# --- 6. did everyone end with the same data? ------------------------------------------
mapfile -t TABLE_NAMES < <(seq -f 'sbtest%g' 1 "$TABLES")
table_checksums "$SOURCE_PORT" sbtest "${TABLE_NAMES[@]}" >"$BENCH_LOGS/catchup-checksum-source.txt"
check_copy() {
  table_checksums "$2" sbtest "${TABLE_NAMES[@]}" >"$BENCH_LOGS/catchup-checksum-$1.txt"
  if cmp -s "$BENCH_LOGS/catchup-checksum-source.txt" "$BENCH_LOGS/catchup-checksum-$1.txt"; then
    echo "$1 = source"
  else
    echo "$1 DIFFERS from source (see $BENCH_LOGS/catchup-checksum-*.txt)"
  fi
}
DATA_CHECK="$(check_copy concord-target "$TARGET_PORT"); $(check_copy replica "$REPLICA_PORT")"
[ "$PARALLEL_ANCHOR" = 1 ] && DATA_CHECK="$DATA_CHECK; $(check_copy replica-par "$REPLICA_PAR_PORT")"

# --- summary --------------------------------------------------------------------------
REPLICA_RPS=$(per_second "$BACKLOG_ROWS" "$REPLICA_S")
CONCORD_RPS=$(per_second "$BACKLOG_ROWS" "$CONCORD_S")
RATIO=$(ratio "$CONCORD_RPS" "$REPLICA_RPS")
MET=$(at_least "$RATIO" 1.5)
{
  echo "==== concord catch-up benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "servers:  every instance innodb_buffer_pool_size=$BUFFER_POOL innodb_log_file_size=$REDO_LOG_SIZE innodb_flush_log_at_trx_commit=2; source sync_binlog=0"
  echo "backlog:  $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions ($(awk -v b="$BACKLOG_BYTES" 'BEGIN { printf "%.1f MiB", b / 1048576 }') of binlog, $START_FILE:$START_POS .. $END_FILE:$END_POS)"
  echo "          built by sysbench oltp_write_only, $TABLES tables x $ROWS rows, $THREADS threads, ${DURATION}s at $LOAD_TPS tps"
  echo "native replica, slave_parallel_threads=0 (MariaDB default): ${REPLICA_S}s  $REPLICA_RPS rows/s"
  if [ "$PARALLEL_ANCHOR" = 1 ]; then
    echo "native replica, slave_parallel_threads=4 optimistic:        ${REPLICA_PAR_S}s  $(per_second "$BACKLOG_ROWS" "$REPLICA_PAR_S") rows/s"
  fi
  echo "concord (from process start, reading the source over TCP):   ${CONCORD_S}s  $CONCORD_RPS rows/s"
  echo "          cpu during concord's run: concord ${CONCORD_CPU}s, target ${TARGET_CPU}s, source ${SOURCE_CPU}s"
  echo "          concord_applied_events_total=$CONCORD_APPLIED, peak RSS (VmHWM) ${CONCORD_HWM} MiB, WARN/ERROR log lines: $CONCORD_ERRORS"
  echo "ratio:    concord / native replica (parallel_threads=0) = ${RATIO}x   (target >= 1.5x: $MET)"
  echo "data:     $DATA_CHECK"
  echo "notes:    the replicas apply from a relay log fetched beforehand; concord streams the"
  echo "          binlog from the source during its timed run. Completion polled every ${POLL}s."
  echo "===================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
