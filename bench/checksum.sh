#!/usr/bin/env bash
# Checksum benchmark: `concord checksum` of one large table that is equal on both servers,
# against the servers' own `CHECKSUM TABLE` of that table on both sides, in the same run.
#
#   1. start a bench source and target; sysbench prepare ONE table of ROWS rows on the
#      source and load the same dump into the target;
#   2. start `concord replicate` (the checksum compares against what the replicator has
#      applied, so one must be running; it is idle here);
#   3. warm both buffer pools with one untimed CHECKSUM TABLE per side;
#   4. time CHECKSUM TABLE on both servers at once (wall clock until both answered), then
#      `concord checksum --restart` (which hashes on both servers at once too), then
#      CHECKSUM TABLE again; the anchor is the mean of the two CHECKSUM TABLE timings;
#   5. report rows/s of each and the ratio (target: concord >= 0.5x CHECKSUM TABLE).
#
# CHECKSUM TABLE is not online in the same sense: it reads the whole table in one
# statement. concord works in chunks of about checksum.chunk_time (default 500 ms) each,
# pausing when the source is busy.
#
# Usage: bench/checksum.sh
# Environment: ROWS (1000000), CHUNK_TIME (500ms), CONCORD_BIN, and the knobs in
# bench/lib.sh.

set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=1
ROWS="${ROWS:-1000000}"
CHUNK_TIME="${CHUNK_TIME:-500ms}"
SOURCE_PORT="${SOURCE_PORT:-3331}"
TARGET_PORT="${TARGET_PORT:-3332}"

COMMAND="ROWS=$ROWS CHUNK_TIME=$CHUNK_TIME CONCORD_BIN=$CONCORD_BIN bench/checksum.sh"
SUMMARY="$BENCH_LOGS/checksum-summary.txt"

bench_init
rm -f "$BENCH_LOGS"/checksum-* "$BENCH_DATA"/concord-control.db*
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# checksum_both -> seconds until CHECKSUM TABLE answered on both servers (run at once);
# dies if the two checksums differ.
checksum_both() {
  local t0 t1
  t0=$(now)
  sql "$SOURCE_PORT" "CHECKSUM TABLE sbtest.sbtest1" >"$BENCH_LOGS/checksum-native-source.txt" &
  local a=$!
  sql "$TARGET_PORT" "CHECKSUM TABLE sbtest.sbtest1" >"$BENCH_LOGS/checksum-native-target.txt" &
  local b=$!
  wait "$a" "$b"
  t1=$(now)
  cmp -s "$BENCH_LOGS/checksum-native-source.txt" "$BENCH_LOGS/checksum-native-target.txt" ||
    die "CHECKSUM TABLE differs between source and target"
  elapsed "$t0" "$t1"
}

# --- 1. instances and data -----------------------------------------------------------------
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 31

# --- 2. a replicator -----------------------------------------------------------------------
CONFIG="$BENCH_DATA/concord-checksum.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
printf '\n[checksum]\nchunk_time = "%s"\n' "$CHUNK_TIME" >>"$CONFIG"
concord_start "$CONFIG" "$BENCH_LOGS/checksum-replicate.log" replicate
concord_wait_ready 120
# The checkpoint is saved at the first heartbeat of the idle replicator.
for _ in $(seq 1 100); do
  [ -n "$(concord_checkpoint "$TARGET_PORT")" ] && break
  sleep 0.1
done
[ -n "$(concord_checkpoint "$TARGET_PORT")" ] || die "the replicator saved no checkpoint"

# --- 3, 4. timings -------------------------------------------------------------------------
log "warming both buffer pools"
checksum_both >/dev/null
log "timing CHECKSUM TABLE on both servers"
NATIVE1_S=$(checksum_both)
log "timing concord checksum"
t0=$(now)
rc=0
"$CONCORD_BIN" checksum --config "$CONFIG" --table sbtest.sbtest1 --restart \
  >"$BENCH_LOGS/checksum-concord.txt" 2>"$BENCH_LOGS/checksum-concord.log" || rc=$?
t1=$(now)
CONCORD_S=$(elapsed "$t0" "$t1")
[ "$rc" = 0 ] || { cat "$BENCH_LOGS/checksum-concord.txt" >&2; die "concord checksum exited $rc (log: $BENCH_LOGS/checksum-concord.log)"; }
log "timing CHECKSUM TABLE on both servers again"
NATIVE2_S=$(checksum_both)
concord_stop

# --- 5. summary ----------------------------------------------------------------------------
NATIVE_S=$(awk -v a="$NATIVE1_S" -v b="$NATIVE2_S" 'BEGIN { printf "%.3f", (a + b) / 2 }')
NATIVE_RPS=$(per_second "$ROWS" "$NATIVE_S")
CONCORD_RPS=$(per_second "$ROWS" "$CONCORD_S")
RATIO=$(ratio "$CONCORD_RPS" "$NATIVE_RPS")
MET=$(at_least "$RATIO" 0.5)
LINE=$(grep '^sbtest.sbtest1 ' "$BENCH_LOGS/checksum-concord.txt" || true)
{
  echo "==== concord checksum benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "table:    sbtest.sbtest1, $ROWS rows (sysbench), equal on both servers, buffer pools warm"
  echo "native:   CHECKSUM TABLE on both servers at once: ${NATIVE1_S}s and ${NATIVE2_S}s, mean ${NATIVE_S}s  $NATIVE_RPS rows/s"
  echo "concord:  concord checksum (chunk_time $CHUNK_TIME): ${CONCORD_S}s  $CONCORD_RPS rows/s, process start to exit"
  echo "          $LINE"
  echo "ratio:    concord / CHECKSUM TABLE = ${RATIO}x   (target >= 0.5x: $MET)"
  echo "===================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
