#!/usr/bin/env bash
# Big-transaction memory benchmark: the peak RSS of `concord run` (replicator + verifier)
# while it applies and verifies single source transactions of many rows.
#
#   1. a bench source and target; sysbench prepare of one table of ROWS rows on the source,
#      loaded into the target from one dump;
#   2. `concord run` started at that position and ready;
#   3. on the source, one transaction: UPDATE sbtest1 SET k = k + 1 over every row; then a
#      second: INSERT INTO a copy of the table SELECT the first INSERT_ROWS rows (the copy
#      is created on both sides first);
#   4. wait until concord's checkpoint reaches the source's end and both tables agree
#      (CHECKSUM TABLE), sampling concord's VmHWM; print the figures with the binlog bytes
#      of the two transactions, for the ratio memory / transaction size.
#
# Usage: bench/bigtxn.sh
# Environment: ROWS (5000000), INSERT_ROWS (2000000), CONCORD_BIN, and the knobs in
# bench/lib.sh.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=1
ROWS="${ROWS:-5000000}"
INSERT_ROWS="${INSERT_ROWS:-2000000}"
SOURCE_PORT="${SOURCE_PORT:-3311}"
TARGET_PORT="${TARGET_PORT:-3312}"
APPLY_TIMEOUT="${APPLY_TIMEOUT:-3600}"
COMMAND="ROWS=$ROWS INSERT_ROWS=$INSERT_ROWS CONCORD_BIN=$CONCORD_BIN bench/bigtxn.sh"
SUMMARY="$BENCH_LOGS/bigtxn-summary.txt"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)

bench_init
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 11
sql "$SOURCE_PORT" "CREATE TABLE sbtest.copy LIKE sbtest.sbtest1"
sql "$TARGET_PORT" "CREATE TABLE sbtest.copy LIKE sbtest.sbtest1"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")

CONFIG="$BENCH_DATA/concord-bigtxn.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
printf '\n[verifier]\ndelay = "5s"\n' >>"$CONFIG"
concord_start "$CONFIG" "$BENCH_LOGS/concord-bigtxn.log" run
concord_wait_ready 120
BASE_RSS=$(concord_mem VmRSS)

log "one transaction: UPDATE of $ROWS rows; then one INSERT ... SELECT of $INSERT_ROWS rows"
T0=$(now)
sql "$SOURCE_PORT" "UPDATE sbtest.sbtest1 SET k = k + 1"
read -r MID_FILE MID_POS < <(master_pos "$SOURCE_PORT")
sql "$SOURCE_PORT" "INSERT INTO sbtest.copy SELECT * FROM sbtest.sbtest1 WHERE id <= $INSERT_ROWS"
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
UPDATE_BYTES=$(binlog_bytes "$SOURCE_PORT" "$START_FILE" "$START_POS" "$MID_FILE" "$MID_POS")
INSERT_BYTES=$(binlog_bytes "$SOURCE_PORT" "$MID_FILE" "$MID_POS" "$END_FILE" "$END_POS")

HWM=0
deadline=$(($(date +%s) + APPLY_TIMEOUT))
while :; do
  concord_check_alive
  HWM=$(concord_mem VmHWM)
  read -r f p < <(concord_checkpoint "$TARGET_PORT" || true) || true
  if [ -n "${f:-}" ] && pos_ge "$f" "$p" "$END_FILE" "$END_POS"; then break; fi
  [ "$(date +%s)" -lt "$deadline" ] || die "concord did not reach $END_FILE:$END_POS in ${APPLY_TIMEOUT}s"
  sleep 0.2
done
APPLIED_AT=$(now)
# The verifier checks both transactions after its delay: memory is sampled until it has
# verified every change.
verified() {
  { curl -fsS "http://$BENCH_HOST:$METRICS_PORT/metrics" 2>/dev/null || true; } |
    awk '/^concord_verified_total[{ ]/ { s += $NF } END { printf "%d\n", s }'
}
until [ "$(verified)" -ge $((ROWS + INSERT_ROWS)) ]; do
  concord_check_alive
  HWM=$(concord_mem VmHWM)
  [ "$(date +%s)" -lt "$deadline" ] || die "the verifier did not verify $((ROWS + INSERT_ROWS)) changes in time"
  sleep 0.2
done
VERIFIED_AT=$(now)
HWM=$(concord_mem VmHWM)
SAME=$( [ "$(table_checksums "$SOURCE_PORT" sbtest sbtest1 copy)" = \
          "$(table_checksums "$TARGET_PORT" sbtest sbtest1 copy)" ] && echo yes || echo NO)
concord_stop
MET=$(at_most "$HWM" 150)
{
  echo "==== concord big-transaction memory benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "load:     one UPDATE of $ROWS rows ($UPDATE_BYTES binlog bytes), one INSERT ... SELECT of $INSERT_ROWS rows ($INSERT_BYTES bytes)"
  echo "apply:    both applied $(elapsed "$T0" "$APPLIED_AT") s after the UPDATE began, verified after $(elapsed "$T0" "$VERIFIED_AT") s; target equals source: $SAME"
  echo "memory:   concord run peak RSS (VmHWM) $HWM MiB (idle before: $BASE_RSS MiB; target <= 150 MiB: $MET)"
  echo "=================================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
