#!/usr/bin/env bash
# Kafka-mode live lag and memory benchmark: while sysbench oltp_write_only runs against the
# source, how long does a committed change take to become visible on the target through
# capture -> broker -> one replicator (p50/p99/max), and how much memory do the capture and
# the replicator take at their peak (VmHWM)?
#
#   1. start a bench source, a bench target and a broker (tansu); create the change topic with
#      PARTITIONS (4) partitions and its dead-letter topic;
#   2. sysbench prepare and a heartbeat table (bench.heartbeat) on the source, loaded into the
#      target from one dump, so the capture starts at the position right after it;
#   3. start the capture (tables sbtest.* and bench.*), then one replicator, and wait until a
#      first beat arrives on the target;
#   4. for DURATION seconds, at the same time: sysbench with THREADS threads, and
#      bench/heartbeat.py (as in bench/lag.sh) writing a beat with the source's NOW(6) every
#      HB_INTERVAL_MS and polling the target every HB_POLL_MS for the first moment each beat
#      is visible;
#   5. read VmHWM of the capture and the replicator from /proc at the end, and print a summary.
#
# Usage: bench/kafka-lag.sh
# Environment: TABLES (4) ROWS (50000) DURATION (30; SECONDS is accepted too) THREADS (4)
# RATE (0 = unthrottled; otherwise sysbench --rate) HB_INTERVAL_MS (20) HB_POLL_MS (2)
# PARTITIONS (4) CONCORD_BIN, TANSU_BIN, BROKER_PORT, and the knobs in bench/lib.sh and
# bench/kafka-lib.sh.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/kafka-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka-lib.sh"

bench_load_knobs
RATE="${RATE:-0}"
HB_INTERVAL_MS="${HB_INTERVAL_MS:-20}"
HB_POLL_MS="${HB_POLL_MS:-2}"
SOURCE_PORT="${SOURCE_PORT:-3311}"
TARGET_PORT="${TARGET_PORT:-3312}"
GROUP="${GROUP:-bench-replicator}"
LAG_TARGET_MS=250

COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS RATE=$RATE HB_INTERVAL_MS=$HB_INTERVAL_MS HB_POLL_MS=$HB_POLL_MS PARTITIONS=$PARTITIONS$(kafka_command_knobs) CONCORD_BIN=$CONCORD_BIN bench/kafka-lag.sh"
SUMMARY="$BENCH_LOGS/kafka-lag-summary.txt"

kafka_bench_init
bench_ensure_pymysql
rm -f "$BENCH_LOGS"/kafka-lag-* "$BENCH_LOGS"/sysbench-*.log "$BENCH_LOGS"/broker*.log
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# --- 1. instances and topics ----------------------------------------------------------
mapfile -t SOURCE_OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 11 "${SOURCE_OPTS[@]}"
server_start target "$TARGET_PORT" 12
broker_start
BROKER_PID=$LAST_PID
topic_create "$KAFKA_TOPIC" "$PARTITIONS"
topic_create "$KAFKA_TOPIC.dlq" 1

# --- 2. starting data -----------------------------------------------------------------
sb_prepare "$SOURCE_PORT"
# The heartbeat table of lag.sh: one row per beat, ts_us = the source's NOW(6) in µs.
sql "$SOURCE_PORT" "CREATE DATABASE bench; CREATE TABLE bench.heartbeat (
  seq BIGINT UNSIGNED NOT NULL PRIMARY KEY, ts_us BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")
dump_databases "$SOURCE_PORT" "$BENCH_DATA/prepared.sql" sbtest bench
load_dump "$TARGET_PORT" "$BENCH_DATA/prepared.sql"

# --- 3. capture and replicator running ------------------------------------------------
CAPTURE_CONFIG="$BENCH_DATA/concord-capture.toml"
REPL_CONFIG="$BENCH_DATA/concord-replicator.toml"
kafka_config "$CAPTURE_CONFIG" "$CAPTURE_METRICS_PORT" "$GROUP" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*' 'bench.*'
kafka_config "$REPL_CONFIG" "$REPLICATOR_METRICS_PORT" "$GROUP" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*' 'bench.*'
CAPTURE_LOG="$BENCH_LOGS/kafka-lag-capture.log"
REPL_LOG="$BENCH_LOGS/kafka-lag-replicator.log"
kproc_start capture "$CAPTURE_LOG" capture "$CAPTURE_CONFIG"
CAPTURE_PID=$LAST_PID
kproc_wait_ready "$CAPTURE_PID" "$CAPTURE_METRICS_PORT" 120
kproc_start replicator "$REPL_LOG" replicate "$REPL_CONFIG"
REPL_PID=$LAST_PID
kproc_wait_ready "$REPL_PID" "$REPLICATOR_METRICS_PORT" 120
# Beat 0 proves the whole path works before the load starts (and is not counted). The
# replicator may still be joining its group; allow it time.
sql "$SOURCE_PORT" "INSERT INTO bench.heartbeat VALUES (0, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED))"
for _ in $(seq 1 900); do
  [ "$(sql "$TARGET_PORT" "SELECT COUNT(*) FROM bench.heartbeat WHERE seq = 0")" = 1 ] && break
  kproc_check_alive "$CAPTURE_PID"
  kproc_check_alive "$REPL_PID"
  sleep 0.1
done
[ "$(sql "$TARGET_PORT" "SELECT COUNT(*) FROM bench.heartbeat WHERE seq = 0")" = 1 ] ||
  die "the first heartbeat did not reach the target within 90 s; logs: $CAPTURE_LOG $REPL_LOG"
log "capture -> broker -> replicator streams; heartbeat reached the target"

# --- 4. load + heartbeat --------------------------------------------------------------
log "load: oltp_write_only, $THREADS threads, ${DURATION}s, rate ${RATE} (0 = unthrottled); heartbeat every ${HB_INTERVAL_MS} ms"
python3 "$BENCH_LIB_DIR/heartbeat.py" --source-port "$SOURCE_PORT" --target-port "$TARGET_PORT" \
  --duration "$DURATION" --interval-ms "$HB_INTERVAL_MS" --poll-ms "$HB_POLL_MS" \
  --csv "$BENCH_LOGS/kafka-lag-beats.csv" >"$BENCH_LOGS/kafka-lag-heartbeat.json" 2>"$BENCH_LOGS/kafka-lag-heartbeat.err" &
HB_PID=$!
BENCH_BG_PIDS+=("$HB_PID")
# CPU used during the load, per process, to show where the machine's two cores went.
CPU_ROLES=(source target broker capture replicator)
CPU_PIDS=("$(server_pid source)" "$(server_pid target)" "$BROKER_PID" "$CAPTURE_PID" "$REPL_PID")
CPU_START=()
for pid in "${CPU_PIDS[@]}"; do CPU_START+=("$(cpu_seconds "$pid")"); done
read -r BUSY0 TOTAL0 < <(machine_busy)
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --rate="$RATE" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || { tail -20 "$BENCH_LOGS/sysbench-run.log" >&2; die "sysbench run failed"; }
read -r BUSY1 TOTAL1 < <(machine_busy)
CPU_USED=""
for i in "${!CPU_ROLES[@]}"; do
  CPU_USED+="${CPU_ROLES[$i]} $(awk -v a="${CPU_START[$i]}" -v b="$(cpu_seconds "${CPU_PIDS[$i]}")" 'BEGIN { printf "%.1f", b - a }') s, "
done
MACHINE_BUSY=$(awk -v b="$((BUSY1 - BUSY0))" -v t="$((TOTAL1 - TOTAL0))" 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
LOAD_TPS=$(sb_tps "$BENCH_LOGS/sysbench-run.log")
log "load finished ($LOAD_TPS tps); waiting for the last beats to reach the target"
HB_RC=0
wait "$HB_PID" || HB_RC=$?
kproc_check_alive "$CAPTURE_PID"
kproc_check_alive "$REPL_PID"
[ "$HB_RC" = 0 ] || { cat "$BENCH_LOGS/kafka-lag-heartbeat.err" >&2; die "heartbeat.py failed"; }

# --- 5. memory and figures ------------------------------------------------------------
CAPTURE_HWM=$(proc_mem "$CAPTURE_PID" VmHWM)
CAPTURE_RSS=$(proc_mem "$CAPTURE_PID" VmRSS)
REPL_HWM=$(proc_mem "$REPL_PID" VmHWM)
REPL_RSS=$(proc_mem "$REPL_PID" VmRSS)
PUBLISHED=$(metric_sum "$CAPTURE_METRICS_PORT" concord_capture_published_total)
APPLIED=$(metric_sum "$REPLICATOR_METRICS_PORT" concord_applied_events_total)
OFFSETS=$(kafka_offsets_sum "$TARGET_PORT" "$GROUP")
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
kproc_stop "$REPL_PID"
kproc_stop "$CAPTURE_PID"
warn_lines() { grep -cE ' (ERROR|WARN) ' "$1" 2>/dev/null || true; }

hb() {
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print("n/a" if v is None else (f"{v:.1f}" if isinstance(v, float) else v))' "$BENCH_LOGS/kafka-lag-heartbeat.json" "$1"
}
P99=$(hb p99_ms)
LAG_MET=$(at_most "$P99" "$LAG_TARGET_MS")
{
  echo "==== concord kafka-mode live lag and memory benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "servers:  source and target innodb_buffer_pool_size=$BUFFER_POOL innodb_flush_log_at_trx_commit=2; source sync_binlog=0"
  echo "path:     source binlog -> concord capture -> tansu ($BENCH_HOST:$BROKER_PORT, storage $BROKER_STORAGE; topic $KAFKA_TOPIC, $PARTITIONS partitions) -> 1 concord replicate -> target"
  echo "load:     sysbench oltp_write_only, $TABLES tables x $ROWS rows, $THREADS threads, ${DURATION}s at $LOAD_TPS tps"
  echo "          (binlog $START_FILE:$START_POS .. $END_FILE:$END_POS; published=$PUBLISHED, applied_events=$APPLIED, offsets sum $OFFSETS)"
  echo "lag:      source NOW(6) of a heartbeat insert -> first poll that sees it on the target"
  echo "          beats $(hb beats) (every ${HB_INTERVAL_MS} ms, target polled every ${HB_POLL_MS} ms), unseen $(hb unseen)"
  echo "          p50 $(hb p50_ms) ms   p90 $(hb p90_ms) ms   p99 $P99 ms   max $(hb max_ms) ms   (target p99 <= $LAG_TARGET_MS ms: $LAG_MET)"
  echo "cpu:      during the ${DURATION}s load: ${CPU_USED}machine ${MACHINE_BUSY}% busy (both CPUs; the rest is sysbench and the heartbeat)"
  echo "memory:   capture peak RSS (VmHWM) $CAPTURE_HWM MiB (at end $CAPTURE_RSS MiB); replicator peak RSS (VmHWM) $REPL_HWM MiB (at end $REPL_RSS MiB)"
  echo "log:      WARN/ERROR lines: capture $(warn_lines "$CAPTURE_LOG"), replicator $(warn_lines "$REPL_LOG"); every beat in $BENCH_LOGS/kafka-lag-beats.csv"
  echo "=========================================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
