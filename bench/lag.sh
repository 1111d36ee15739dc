#!/usr/bin/env bash
# Live lag and memory benchmark: while sysbench oltp_write_only runs against the source,
# how long does a committed change take to become visible on concord's target (p50/p99/max),
# against a native MariaDB replica of the same source in the same run (the anchor: its IO
# and SQL threads, one applier thread, the same heartbeat period), and how much memory does
# concord take at its peak (VmHWM)?
#
#   1. start a bench source, a bench target and a native replica (own ports and datadirs);
#   2. sysbench prepare and a heartbeat table (bench.heartbeat) on the source, loaded into the
#      target and the replica from one dump, so both start at the position right after it;
#   3. start concord (tables sbtest.* and bench.*) and wait until a first beat arrives;
#   4. for DURATION seconds, at the same time: sysbench with THREADS threads, and
#      bench/heartbeat.py writing a beat with the source's NOW(6) every HB_INTERVAL_MS and
#      polling the target and the replica every HB_POLL_MS for the first moment each beat is
#      visible on each;
#   5. read concord's VmHWM from /proc at the end, and print a summary.
#
# Usage: bench/lag.sh
# Environment: TABLES (4) ROWS (50000) DURATION (30; SECONDS is accepted too) THREADS (4)
# RATE (0 = unthrottled; otherwise sysbench --rate, transactions/s) HB_INTERVAL_MS (20)
# HB_POLL_MS (2) NATIVE (1: also the native replica; 0: concord alone) CONCORD_BIN, and the
# knobs in bench/lib.sh.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_load_knobs
RATE="${RATE:-0}"
HB_INTERVAL_MS="${HB_INTERVAL_MS:-20}"
HB_POLL_MS="${HB_POLL_MS:-2}"
SOURCE_PORT="${SOURCE_PORT:-3311}"
TARGET_PORT="${TARGET_PORT:-3312}"
REPLICA_PORT="${REPLICA_PORT:-3313}"
NATIVE="${NATIVE:-1}"
# concord's default source heartbeat, given to the replica too.
HEARTBEAT_SECONDS=1

COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS RATE=$RATE HB_INTERVAL_MS=$HB_INTERVAL_MS HB_POLL_MS=$HB_POLL_MS NATIVE=$NATIVE CONCORD_BIN=$CONCORD_BIN bench/lag.sh"
SUMMARY="$BENCH_LOGS/lag-summary.txt"

bench_init
bench_ensure_pymysql
rm -f "$BENCH_LOGS"/lag-* "$BENCH_LOGS"/sysbench-*.log "$BENCH_LOGS"/concord-lag.log
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# --- 1. instances ---------------------------------------------------------------------
mapfile -t SOURCE_OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 11 "${SOURCE_OPTS[@]}"
server_start target "$TARGET_PORT" 12
if [ "$NATIVE" = 1 ]; then
  server_start replica "$REPLICA_PORT" 13 --relay-log="$BENCH_DATA/replica/relay-bin" --skip-slave-start
fi

# --- 2. starting data -----------------------------------------------------------------
sb_prepare "$SOURCE_PORT"
# One row per beat, keyed by seq (concord needs a primary key). ts_us: the source's NOW(6)
# in microseconds since the epoch, so no time zone is involved in the comparison.
sql "$SOURCE_PORT" "CREATE DATABASE bench; CREATE TABLE bench.heartbeat (
  seq BIGINT UNSIGNED NOT NULL PRIMARY KEY, ts_us BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")
dump_databases "$SOURCE_PORT" "$BENCH_DATA/prepared.sql" sbtest bench
load_dump "$TARGET_PORT" "$BENCH_DATA/prepared.sql"
REPLICA_ARGS=()
if [ "$NATIVE" = 1 ]; then
  load_dump "$REPLICA_PORT" "$BENCH_DATA/prepared.sql"
  sql "$REPLICA_PORT" "CHANGE MASTER TO MASTER_HOST='$BENCH_HOST', MASTER_PORT=$SOURCE_PORT, \
    MASTER_USER='root', MASTER_PASSWORD='', MASTER_LOG_FILE='$START_FILE', \
    MASTER_LOG_POS=$START_POS, MASTER_USE_GTID=no, MASTER_HEARTBEAT_PERIOD=$HEARTBEAT_SECONDS; START SLAVE"
  REPLICA_ARGS=(--replica-port "$REPLICA_PORT")
fi

# --- 3. concord running and streaming -------------------------------------------------
CONFIG="$BENCH_DATA/concord-lag.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*' 'bench.*'
concord_start "$CONFIG" "$BENCH_LOGS/concord-lag.log"
concord_wait_ready 120
# Beat 0 proves the whole path works before the load starts (and is not counted).
sql "$SOURCE_PORT" "INSERT INTO bench.heartbeat VALUES (0, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED))"
# beat_zero_seen PORT: beat 0 is visible on that server.
beat_zero_seen() { [ "$(sql "$1" "SELECT COUNT(*) FROM bench.heartbeat WHERE seq = 0")" = 1 ]; }
for _ in $(seq 1 600); do
  beat_zero_seen "$TARGET_PORT" && break
  concord_check_alive
  sleep 0.1
done
beat_zero_seen "$TARGET_PORT" ||
  die "the first heartbeat did not reach the target within 60 s; concord log: $CONCORD_LOG"
if [ "$NATIVE" = 1 ]; then
  for _ in $(seq 1 600); do
    beat_zero_seen "$REPLICA_PORT" && break
    sleep 0.1
  done
  beat_zero_seen "$REPLICA_PORT" ||
    die "the first heartbeat did not reach the native replica within 60 s: $(sql "$REPLICA_PORT" 'SHOW SLAVE STATUS\G' | grep -E 'Running|Error' || true)"
fi
log "concord streams; heartbeat reached the target${REPLICA_ARGS[*]:+ and the native replica}"

# --- 4. load + heartbeat --------------------------------------------------------------
log "load: oltp_write_only, $THREADS threads, ${DURATION}s, rate ${RATE} (0 = unthrottled); heartbeat every ${HB_INTERVAL_MS} ms"
python3 "$BENCH_LIB_DIR/heartbeat.py" --source-port "$SOURCE_PORT" --target-port "$TARGET_PORT" \
  --duration "$DURATION" --interval-ms "$HB_INTERVAL_MS" --poll-ms "$HB_POLL_MS" \
  --csv "$BENCH_LOGS/lag-beats.csv" "${REPLICA_ARGS[@]}" >"$BENCH_LOGS/lag-heartbeat.json" 2>"$BENCH_LOGS/lag-heartbeat.err" &
HB_PID=$!
BENCH_BG_PIDS+=("$HB_PID")
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --rate="$RATE" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || { tail -20 "$BENCH_LOGS/sysbench-run.log" >&2; die "sysbench run failed"; }
LOAD_TPS=$(sb_tps "$BENCH_LOGS/sysbench-run.log")
log "load finished ($LOAD_TPS tps); waiting for the last beats to reach the target"
# Concord may still be behind when the load stops; heartbeat.py waits (up to its drain
# timeout) until the last beat is visible, so a backlog shows up in the figures.
HB_RC=0
wait "$HB_PID" || HB_RC=$?
concord_check_alive
[ "$HB_RC" = 0 ] || { cat "$BENCH_LOGS/lag-heartbeat.err" >&2; die "heartbeat.py failed"; }

# --- 5. memory and figures ------------------------------------------------------------
CONCORD_HWM=$(concord_mem VmHWM)
CONCORD_RSS=$(concord_mem VmRSS)
CONCORD_APPLIED=$(concord_applied_events)
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
concord_stop
CONCORD_ERRORS=$(grep -cE ' (ERROR|WARN) ' "$BENCH_LOGS/concord-lag.log" || true)

# hb FIELD [replica] -> one figure from heartbeat.py's JSON (the target's, or the
# replica's), in ms with one decimal.
hb() {
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
if len(sys.argv) > 3:
    v = v.get("replica") or {}
v = v.get(sys.argv[2])
print("n/a" if v is None else (f"{v:.1f}" if isinstance(v, float) else v))' "$BENCH_LOGS/lag-heartbeat.json" "$@"
}
P99=$(hb p99_ms)
# Issue 16's target: p99 <= 20 ms and <= 0.5x the native replica's p99 in the same run.
LAG_MET=$(at_most "$P99" 20)
if [ "$NATIVE" = 1 ]; then
  NATIVE_P99=$(hb p99_ms replica)
  LAG_RATIO=$(ratio "$P99" "$NATIVE_P99")
  RATIO_MET=$(at_most "$LAG_RATIO" 0.5)
fi
RSS_MET=$(at_most "$CONCORD_HWM" 150)
{
  echo "==== concord live lag and memory benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "servers:  source and target innodb_buffer_pool_size=$BUFFER_POOL innodb_flush_log_at_trx_commit=2; source sync_binlog=0"
  echo "load:     sysbench oltp_write_only, $TABLES tables x $ROWS rows, $THREADS threads, ${DURATION}s at $LOAD_TPS tps"
  echo "          (binlog $START_FILE:$START_POS .. $END_FILE:$END_POS; concord_applied_events_total=$CONCORD_APPLIED)"
  echo "lag:      source NOW(6) of a heartbeat insert -> first poll that sees it on the target"
  echo "          beats $(hb beats) (every ${HB_INTERVAL_MS} ms, target polled every ${HB_POLL_MS} ms), unseen $(hb unseen)"
  echo "concord:  p50 $(hb p50_ms) ms   p90 $(hb p90_ms) ms   p99 $P99 ms   max $(hb max_ms) ms   (target p99 <= 20 ms: $LAG_MET)"
  if [ "$NATIVE" = 1 ]; then
    echo "native:   p50 $(hb p50_ms r) ms   p90 $(hb p90_ms r) ms   p99 $NATIVE_P99 ms   max $(hb max_ms r) ms   unseen $(hb unseen r)"
    echo "          (a MariaDB replica of the source, one SQL thread, heartbeat period ${HEARTBEAT_SECONDS}s, on the same host)"
    echo "ratio:    concord p99 / native p99 = $LAG_RATIO   (target <= 0.5: $RATIO_MET)"
  fi
  echo "memory:   concord peak RSS (VmHWM) $CONCORD_HWM MiB, RSS at end $CONCORD_RSS MiB   (target <= 150 MiB: $RSS_MET)"
  echo "log:      concord WARN/ERROR lines: $CONCORD_ERRORS; every beat in $BENCH_LOGS/lag-beats.csv"
  echo "==============================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
