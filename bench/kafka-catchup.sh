#!/usr/bin/env bash
# Kafka-mode catch-up benchmark: how fast do concord replicators apply a topic that already
# holds a whole backlog, with one and with two replicators in the group, compared with direct
# mode applying the very same backlog in the same run?
#
#   1. start a bench source, a target and a broker (tansu); create the change topic with
#      PARTITIONS (4) partitions and its dead-letter topic;
#   2. sysbench prepare on the source, note the binlog position P, and load one dump of the
#      prepared data into the target, so source and target agree at P; check once that
#      direct concord, the capture and a kafka replicator start (nothing to do yet);
#   3. build the backlog with nothing replicating: sysbench oltp_write_only for DURATION
#      seconds; note the end position E; count the backlog's row changes exactly from the
#      binlog between P and E, and the envelopes the capture will publish for them (one per
#      row change, two for an update that changes a primary key);
#   4. time direct mode: `concord run` from process start until its checkpoint reaches E
#      (as bench/catchup.sh does); compare CHECKSUM TABLE with the source;
#   5. pre-fill the topic: run `concord capture` from P until concord_capture_published_total
#      equals the envelope count, then stop it (its publishing time is reported too);
#   6. reset the target (reload the dump, so it is at P again; no offsets of the group), and
#      time ONE replicator from process start until the sum of next_offset over the topic's
#      partitions in concord.kafka_offsets equals the number of messages in the topic;
#      compare checksums;
#   7. reset again, and time TWO replicators in a fresh group (the second started 3 s after
#      the first: tansu stalls when members join at the same moment); the clock starts with
#      the first; compare checksums;
#   8. print rows/s of each and the ratios to direct mode.
#
# Usage: bench/kafka-catchup.sh
# Environment: TABLES (4) ROWS (50000 per table) DURATION (30 s of load; SECONDS is accepted
# too) THREADS (4) PARTITIONS (4) SECOND_DELAY (3 s between the two replicators' starts)
# CONCORD_BIN, TANSU_BIN, BROKER_PORT, and the knobs in bench/lib.sh and bench/kafka-lib.sh.
# CAPTURE_ONLY=1 stops after step 5 and prints the capture's figures alone.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=bench/kafka-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka-lib.sh"

bench_load_knobs
SECOND_DELAY="${SECOND_DELAY:-3}"
SOURCE_PORT="${SOURCE_PORT:-3311}"
TARGET_PORT="${TARGET_PORT:-3312}"
CATCHUP_TIMEOUT="${CATCHUP_TIMEOUT:-3600}"
POLL="${POLL:-0.05}"
GROUP1="${GROUP1:-bench-replicator}"
GROUP2="${GROUP2:-bench-replicator-pair}"

CAPTURE_ONLY="${CAPTURE_ONLY:-0}"
COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS PARTITIONS=$PARTITIONS$(kafka_command_knobs)$([ "$CAPTURE_ONLY" != 1 ] || echo " CAPTURE_ONLY=1") CONCORD_BIN=$CONCORD_BIN bench/kafka-catchup.sh"
SUMMARY="$BENCH_LOGS/kafka-catchup-summary.txt"

kafka_bench_init
rm -f "$BENCH_LOGS"/kafka-catchup-* "$BENCH_LOGS"/sysbench-*.log "$BENCH_LOGS"/broker*.log
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
mapfile -t TABLE_NAMES < <(seq -f 'sbtest%g' 1 "$TABLES")

# --- 1. instances and topics ----------------------------------------------------------
mapfile -t SOURCE_OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 11 "${SOURCE_OPTS[@]}"
server_start target "$TARGET_PORT" 12
broker_start
BROKER_PID=$LAST_PID
topic_create "$KAFKA_TOPIC" "$PARTITIONS"
topic_create "$KAFKA_TOPIC.dlq" 1

# --- 2. the same starting data on both sides, and a dry start of every process ---------
sb_prepare "$SOURCE_PORT"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")
log "backlog starts at $START_FILE:$START_POS"
dump_databases "$SOURCE_PORT" "$BENCH_DATA/prepared.sql" sbtest
load_dump "$TARGET_PORT" "$BENCH_DATA/prepared.sql"

DIRECT_CONFIG="$BENCH_DATA/concord-direct.toml"
CAPTURE_CONFIG="$BENCH_DATA/concord-capture.toml"
REPL1_CONFIG="$BENCH_DATA/concord-replicator-a.toml" # group GROUP1, first metrics port
PAIR_A_CONFIG="$BENCH_DATA/concord-pair-a.toml"      # group GROUP2, first metrics port
PAIR_B_CONFIG="$BENCH_DATA/concord-pair-b.toml"      # group GROUP2, second metrics port
PREFLIGHT_CONFIG="$BENCH_DATA/concord-preflight.toml"
REPL_PORT_A=$REPLICATOR_METRICS_PORT
REPL_PORT_B=$((REPLICATOR_METRICS_PORT + 1))
concord_config "$DIRECT_CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
kafka_config "$CAPTURE_CONFIG" "$CAPTURE_METRICS_PORT" "$GROUP1" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
kafka_config "$REPL1_CONFIG" "$REPL_PORT_A" "$GROUP1" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
kafka_config "$PAIR_A_CONFIG" "$REPL_PORT_A" "$GROUP2" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
kafka_config "$PAIR_B_CONFIG" "$REPL_PORT_B" "$GROUP2" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
kafka_config "$PREFLIGHT_CONFIG" "$REPL_PORT_A" bench-preflight "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'

# Direct concord once, as in catchup.sh: with nothing after P it commits no checkpoint.
concord_start "$DIRECT_CONFIG" "$BENCH_LOGS/kafka-catchup-direct.log"
concord_wait_ready 120
concord_stop
# The capture once: with nothing after P it publishes nothing (any position it saves is P).
kproc_start capture "$BENCH_LOGS/kafka-catchup-capture.log" capture "$CAPTURE_CONFIG"
pid=$LAST_PID
kproc_wait_ready "$pid" "$CAPTURE_METRICS_PORT" 120
kproc_stop "$pid"
# A replicator once, in a group of its own that is never used again: creates
# concord.kafka_offsets on the target and proves the broker answers.
kproc_start replicator-preflight "$BENCH_LOGS/kafka-catchup-preflight.log" replicate "$PREFLIGHT_CONFIG"
pid=$LAST_PID
kproc_wait_ready "$pid" "$REPL_PORT_A" 120
kproc_stop "$pid"
log "direct concord, the capture and a kafka replicator start and connect; stopped until the backlog is built"

# --- 3. build the backlog -------------------------------------------------------------
log "load: oltp_write_only, $THREADS threads, ${DURATION}s (nothing replicating)"
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || { tail -20 "$BENCH_LOGS/sysbench-run.log" >&2; die "sysbench run failed"; }
LOAD_TPS=$(sb_tps "$BENCH_LOGS/sysbench-run.log")
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
log "backlog ends at $END_FILE:$END_POS"
read -r BACKLOG_ROWS BACKLOG_TRX BACKLOG_BYTES < <(backlog_stats source "$SOURCE_PORT" \
  "$START_FILE" "$START_POS" "$END_FILE" "$END_POS")
read -r EXPECTED_MSGS _ KEY_CHANGES < <(backlog_messages source "$SOURCE_PORT" \
  "$START_FILE" "$START_POS" "$END_FILE" "$END_POS")
log "backlog: $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions, $BACKLOG_BYTES bytes of binlog; $EXPECTED_MSGS envelopes expected ($KEY_CHANGES primary-key changes)"
[ "$BACKLOG_ROWS" -gt 0 ] || die "the backlog has no row changes; see $BENCH_LOGS/sysbench-run.log"
table_checksums "$SOURCE_PORT" sbtest "${TABLE_NAMES[@]}" >"$BENCH_LOGS/kafka-catchup-checksum-source.txt"
sleep 3

# check_target LABEL -> "LABEL: target = source" or "... DIFFERS".
check_target() {
  table_checksums "$TARGET_PORT" sbtest "${TABLE_NAMES[@]}" >"$BENCH_LOGS/kafka-catchup-checksum-$1.txt"
  if cmp -s "$BENCH_LOGS/kafka-catchup-checksum-source.txt" "$BENCH_LOGS/kafka-catchup-checksum-$1.txt"; then
    echo "$1: target = source"
  else
    echo "$1: target DIFFERS from source (see $BENCH_LOGS/kafka-catchup-checksum-$1.txt)"
  fi
}

# --- 4. direct mode -------------------------------------------------------------------
log "timing direct mode (from process start until its checkpoint reaches $END_FILE:$END_POS)"
deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
t0=$(now)
concord_start "$DIRECT_CONFIG" "$BENCH_LOGS/kafka-catchup-direct.log"
while :; do
  concord_check_alive
  read -r cp_file cp_pos < <(concord_checkpoint "$TARGET_PORT"; echo)
  if [ -n "${cp_file:-}" ] && pos_ge "$cp_file" "$cp_pos" "$END_FILE" "$END_POS"; then
    t1=$(now)
    break
  fi
  [ "$(date +%s)" -lt "$deadline" ] || die "direct concord did not catch up within ${CATCHUP_TIMEOUT}s; log: $CONCORD_LOG"
  sleep "$POLL"
done
DIRECT_S=$(elapsed "$t0" "$t1")
DIRECT_APPLIED=$(concord_applied_events)
DIRECT_HWM=$(concord_mem VmHWM)
DIRECT_CPU=$(cpu_seconds "$CONCORD_PID")
concord_stop
log "direct: ${DIRECT_S}s"
CHECK_DIRECT=$(check_target direct)

# --- 5. pre-fill the topic ------------------------------------------------------------
log "capture: publishing the backlog ($EXPECTED_MSGS envelopes expected)"
deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
t0=$(now)
BROKER_CPU0=$(cpu_seconds "$BROKER_PID")
kproc_start capture "$BENCH_LOGS/kafka-catchup-capture.log" capture "$CAPTURE_CONFIG"
CAPTURE_PID=$LAST_PID
while :; do
  kproc_check_alive "$CAPTURE_PID"
  published=$(metric_sum "$CAPTURE_METRICS_PORT" concord_capture_published_total)
  if [ "$published" -ge "$EXPECTED_MSGS" ]; then
    t1=$(now)
    break
  fi
  [ "$(date +%s)" -lt "$deadline" ] || die "the capture published only $published of $EXPECTED_MSGS envelopes in ${CATCHUP_TIMEOUT}s"
  sleep "$POLL"
done
CAPTURE_S=$(elapsed "$t0" "$t1")
# Anything beyond the backlog (there should be nothing) shows up within a second.
sleep 1
TOPIC_MSGS=$(metric_sum "$CAPTURE_METRICS_PORT" concord_capture_published_total)
CAPTURE_HWM=$(proc_mem "$CAPTURE_PID" VmHWM)
# CPU while publishing (the second of idling above is negligible for both).
CAPTURE_CPU=$(cpu_seconds "$CAPTURE_PID")
BROKER_CPU=$(awk -v a="$BROKER_CPU0" -v b="$(cpu_seconds "$BROKER_PID")" 'BEGIN { printf "%.1f", b - a }')
kproc_stop "$CAPTURE_PID"
log "capture: $TOPIC_MSGS envelopes published in ${CAPTURE_S}s"
if [ "$TOPIC_MSGS" != "$EXPECTED_MSGS" ]; then
  log "WARNING: the capture published $TOPIC_MSGS envelopes, $EXPECTED_MSGS were expected"
fi
CAPTURE_RPS=$(per_second "$BACKLOG_ROWS" "$CAPTURE_S")
CAPTURE_LINE="published by the capture in ${CAPTURE_S}s ($CAPTURE_RPS rows/s, peak RSS ${CAPTURE_HWM} MiB, CPU: capture ${CAPTURE_CPU} s, broker ${BROKER_CPU} s)"
if [ "$CAPTURE_ONLY" = 1 ]; then
  {
    echo "==== concord kafka-mode capture benchmark ===="
    echo "date:     $STARTED_AT"
    machine_summary
    versions_summary
    echo "command:  $COMMAND"
    echo "broker:   tansu ($TANSU_BIN, storage $BROKER_STORAGE) on $BENCH_HOST:$BROKER_PORT; topic $KAFKA_TOPIC, $PARTITIONS partitions"
    echo "backlog:  $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions"
    echo "topic:    $TOPIC_MSGS messages (expected $EXPECTED_MSGS), $CAPTURE_LINE"
    echo "=============================================="
  } | tee "$BENCH_LOGS/kafka-capture-summary.txt"
  exit 0
fi

# reset_target GROUP: back to the state at P, and no stored offsets for GROUP.
reset_target() {
  load_dump "$TARGET_PORT" "$BENCH_DATA/prepared.sql"
  sql "$TARGET_PORT" "DELETE FROM concord.kafka_offsets WHERE consumer_group = '$1'"
  sleep 3
}

# wait_offsets GROUP T0 PID... : polls until the group's offsets on the target add up to
# TOPIC_MSGS; sets WAITED_S to the seconds since T0. (Not run in a subshell, so that a
# replicator's exit is reported with its status.)
wait_offsets() {
  local group=$1 t0=$2 t1 sum p deadline
  shift 2
  deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
  while :; do
    for p in "$@"; do kproc_check_alive "$p"; done
    sum=$(kafka_offsets_sum "$TARGET_PORT" "$group")
    if [ "$sum" -ge "$TOPIC_MSGS" ]; then
      t1=$(now)
      break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "group $group reached only $sum of $TOPIC_MSGS offsets in ${CATCHUP_TIMEOUT}s"
    sleep "$POLL"
  done
  WAITED_S=$(elapsed "$t0" "$t1")
}

# --- 6. one replicator ----------------------------------------------------------------
reset_target "$GROUP1"
log "timing 1 replicator (group $GROUP1, $PARTITIONS partitions, $TOPIC_MSGS messages)"
t0=$(now)
kproc_start replicator-1 "$BENCH_LOGS/kafka-catchup-replicator-1.log" replicate "$REPL1_CONFIG"
R1_PID=$LAST_PID
wait_offsets "$GROUP1" "$t0" "$R1_PID"
KAFKA1_S=$WAITED_S
KAFKA1_APPLIED=$(metric_sum "$REPL_PORT_A" concord_applied_events_total)
KAFKA1_HWM=$(proc_mem "$R1_PID" VmHWM)
KAFKA1_CPU=$(cpu_seconds "$R1_PID")
KAFKA1_OFFSETS=$(kafka_offsets_sum "$TARGET_PORT" "$GROUP1")
kproc_stop "$R1_PID"
log "kafka, 1 replicator: ${KAFKA1_S}s"
CHECK_KAFKA1=$(check_target kafka-1-replicator)

# --- 7. two replicators ---------------------------------------------------------------
reset_target "$GROUP2"
log "timing 2 replicators (group $GROUP2; the second starts ${SECOND_DELAY}s after the first)"
t0=$(now)
kproc_start replicator-2a "$BENCH_LOGS/kafka-catchup-replicator-2a.log" replicate "$PAIR_A_CONFIG"
R2A_PID=$LAST_PID
sleep "$SECOND_DELAY"
kproc_check_alive "$R2A_PID"
kproc_start replicator-2b "$BENCH_LOGS/kafka-catchup-replicator-2b.log" replicate "$PAIR_B_CONFIG"
R2B_PID=$LAST_PID
wait_offsets "$GROUP2" "$t0" "$R2A_PID" "$R2B_PID"
KAFKA2_S=$WAITED_S
KAFKA2_APPLIED_A=$(metric_sum "$REPL_PORT_A" concord_applied_events_total)
KAFKA2_APPLIED_B=$(metric_sum "$REPL_PORT_B" concord_applied_events_total)
KAFKA2_HWM_A=$(proc_mem "$R2A_PID" VmHWM)
KAFKA2_HWM_B=$(proc_mem "$R2B_PID" VmHWM)
KAFKA2_OFFSETS=$(kafka_offsets_sum "$TARGET_PORT" "$GROUP2")
KAFKA2_PARTS=$(sql "$TARGET_PORT" "SELECT GROUP_CONCAT(CONCAT(part, ':', next_offset) ORDER BY part SEPARATOR ' ')
  FROM concord.kafka_offsets WHERE consumer_group = '$GROUP2' AND topic = '$KAFKA_TOPIC'")
kproc_stop "$R2B_PID"
kproc_stop "$R2A_PID"
log "kafka, 2 replicators: ${KAFKA2_S}s"
CHECK_KAFKA2=$(check_target kafka-2-replicators)

# --- 8. summary -----------------------------------------------------------------------
warn_lines() { cat "$@" 2>/dev/null | grep -cE ' (ERROR|WARN) ' || true; }
DIRECT_RPS=$(per_second "$BACKLOG_ROWS" "$DIRECT_S")
KAFKA1_RPS=$(per_second "$BACKLOG_ROWS" "$KAFKA1_S")
KAFKA2_RPS=$(per_second "$BACKLOG_ROWS" "$KAFKA2_S")
# CPU per row change (direct) and per message (kafka), in microseconds, over the whole
# backlog — independent of how fast the test broker serves (issue 16: each role <= 2x direct).
us_per() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print "n/a" }'; }
DIRECT_US=$(us_per "$DIRECT_CPU" "$BACKLOG_ROWS")
CAPTURE_US=$(us_per "$CAPTURE_CPU" "$TOPIC_MSGS")
KAFKA1_US=$(us_per "$KAFKA1_CPU" "$TOPIC_MSGS")
CAPTURE_CPU_RATIO=$(ratio "$CAPTURE_US" "$DIRECT_US")
KAFKA1_CPU_RATIO=$(ratio "$KAFKA1_US" "$DIRECT_US")
{
  echo "==== concord kafka-mode catch-up benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "servers:  source and target innodb_buffer_pool_size=$BUFFER_POOL innodb_log_file_size=$REDO_LOG_SIZE innodb_flush_log_at_trx_commit=2; source sync_binlog=0"
  echo "broker:   tansu ($TANSU_BIN, storage $BROKER_STORAGE) on $BENCH_HOST:$BROKER_PORT; topic $KAFKA_TOPIC, $PARTITIONS partitions"
  echo "backlog:  $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions ($(awk -v b="$BACKLOG_BYTES" 'BEGIN { printf "%.1f MiB", b / 1048576 }') of binlog, $START_FILE:$START_POS .. $END_FILE:$END_POS)"
  echo "          built by sysbench oltp_write_only, $TABLES tables x $ROWS rows, $THREADS threads, ${DURATION}s at $LOAD_TPS tps"
  echo "topic:    $TOPIC_MSGS messages (expected $EXPECTED_MSGS: one per row change + $KEY_CHANGES primary-key changes),"
  echo "          $CAPTURE_LINE before any replicator ran"
  echo "direct mode (concord replicate, from process start):        ${DIRECT_S}s  $DIRECT_RPS rows/s"
  echo "          applied_events=$DIRECT_APPLIED, peak RSS ${DIRECT_HWM} MiB"
  echo "kafka, 1 replicator (from process start):             ${KAFKA1_S}s  $KAFKA1_RPS rows/s   ($(ratio "$KAFKA1_RPS" "$DIRECT_RPS")x direct)"
  echo "          applied_events=$KAFKA1_APPLIED, offsets sum $KAFKA1_OFFSETS, peak RSS ${KAFKA1_HWM} MiB"
  echo "kafka, 2 replicators (from the first one's start):    ${KAFKA2_S}s  $KAFKA2_RPS rows/s   ($(ratio "$KAFKA2_RPS" "$DIRECT_RPS")x direct)"
  echo "          applied_events=$KAFKA2_APPLIED_A + $KAFKA2_APPLIED_B, offsets sum $KAFKA2_OFFSETS (part:next $KAFKA2_PARTS), peak RSS ${KAFKA2_HWM_A} / ${KAFKA2_HWM_B} MiB"
  echo "          second replicator started ${SECOND_DELAY}s after the first"
  echo "CPU:      direct ${DIRECT_CPU} s = ${DIRECT_US} us/row; capture ${CAPTURE_CPU} s = ${CAPTURE_US} us/message (${CAPTURE_CPU_RATIO}x direct: $(at_most "$CAPTURE_CPU_RATIO" 2));"
  echo "          1 replicator ${KAFKA1_CPU} s = ${KAFKA1_US} us/message (${KAFKA1_CPU_RATIO}x direct: $(at_most "$KAFKA1_CPU_RATIO" 2)); target each <= 2x (issue 16)"
  echo "ratios:   kafka 1 replicator / direct = $(ratio "$KAFKA1_RPS" "$DIRECT_RPS")x;  kafka 2 replicators / direct = $(ratio "$KAFKA2_RPS" "$DIRECT_RPS")x;  2 / 1 = $(ratio "$KAFKA2_RPS" "$KAFKA1_RPS")x"
  echo "data:     $CHECK_DIRECT; $CHECK_KAFKA1; $CHECK_KAFKA2"
  echo "log:      WARN/ERROR lines: direct $(warn_lines "$BENCH_LOGS/kafka-catchup-direct.log"), capture $(warn_lines "$BENCH_LOGS/kafka-catchup-capture.log"), replicators $(warn_lines "$BENCH_LOGS"/kafka-catchup-replicator-*.log)"
  echo "notes:    the target is reset to the backlog's start (same dump) before each kafka run;"
  echo "          completion polled every ${POLL}s; rows/s = backlog row changes / seconds."
  echo "==============================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
