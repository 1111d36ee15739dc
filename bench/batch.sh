#!/usr/bin/env bash
# Batch recovery benchmark: the same corruption of one key range repaired by
# `concord recovery batch` and by `pt-table-sync --execute` (percona-toolkit) comparing the
# two servers directly, in one run.
#
#   1. start a bench source and target; sysbench prepare ONE table of ROWS rows on the
#      source and load the same dump into the target;
#   2. start `concord replicate` (recovery writes only past what the replicator applied;
#      it is idle here);
#   3. corrupt the target inside the range [LO, HI]: CHANGED rows get another `c`, MISSING
#      rows are deleted (CHANGED + MISSING differing rows in all);
#   4. time `concord recovery batch --table sbtest.sbtest1 --pk-from LO --pk-to HI`, then
#      check the table with CHECKSUM TABLE on both servers (must be equal);
#   5. corrupt the target again the same way, time `pt-table-sync --execute --where
#      "id BETWEEN LO AND HI"` from the source to the target, check again;
#   6. report range rows/s of each and the ratio (target: concord >= 2x pt-table-sync).
#
# Usage: bench/batch.sh
# Environment: ROWS (1000000), LO (400001), HI (600000), CHANGED (8000), MISSING (2000),
# CONCORD_BIN, and the knobs in bench/lib.sh.

set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=1
ROWS="${ROWS:-1000000}"
LO="${LO:-400001}"
HI="${HI:-600000}"
CHANGED="${CHANGED:-8000}"
MISSING="${MISSING:-2000}"
SOURCE_PORT="${SOURCE_PORT:-3341}"
TARGET_PORT="${TARGET_PORT:-3342}"

COMMAND="ROWS=$ROWS LO=$LO HI=$HI CHANGED=$CHANGED MISSING=$MISSING CONCORD_BIN=$CONCORD_BIN bench/batch.sh"
SUMMARY="$BENCH_LOGS/batch-summary.txt"

command -v pt-table-sync >/dev/null 2>&1 || {
  log "installing percona-toolkit (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq percona-toolkit >/dev/null
}
bench_init
rm -f "$BENCH_LOGS"/batch-* "$BENCH_DATA"/concord-control.db*
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# corrupt: CHANGED rows with another `c` and MISSING rows deleted, spread over the range.
corrupt() {
  local span=$((HI - LO + 1))
  local step=$((span / (CHANGED + MISSING)))
  [ "$step" -ge 2 ] || die "the range is too small for $((CHANGED + MISSING)) differences"
  sql "$TARGET_PORT" "UPDATE sbtest.sbtest1 SET c = CONCAT('corrupt-', id) \
    WHERE id BETWEEN $LO AND $HI AND (id - $LO) % $step = 0 LIMIT $CHANGED"
  sql "$TARGET_PORT" "DELETE FROM sbtest.sbtest1 \
    WHERE id BETWEEN $LO AND $HI AND (id - $LO) % $step = 1 LIMIT $MISSING"
}

# same_tables: dies unless CHECKSUM TABLE agrees on both servers.
same_tables() {
  local a b
  a=$(table_checksums "$SOURCE_PORT" sbtest sbtest1 | awk '{ print $2 }')
  b=$(table_checksums "$TARGET_PORT" sbtest sbtest1 | awk '{ print $2 }')
  [ "$a" = "$b" ] || die "after $1: CHECKSUM TABLE differs (source $a, target $b)"
  echo "$a"
}

# --- 1, 2. instances, data, a replicator ---------------------------------------------------
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 41
CONFIG="$BENCH_DATA/concord-batch.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
printf '\n[recovery]\nauto_repair = false\n' >>"$CONFIG"
concord_start "$CONFIG" "$BENCH_LOGS/batch-replicate.log" replicate
concord_wait_ready 120
for _ in $(seq 1 100); do
  [ -n "$(concord_checkpoint "$TARGET_PORT")" ] && break
  sleep 0.1
done
[ -n "$(concord_checkpoint "$TARGET_PORT")" ] || die "the replicator saved no checkpoint"

# --- 3, 4. concord -------------------------------------------------------------------------
corrupt
log "timing concord recovery batch"
t0=$(now)
rc=0
"$CONCORD_BIN" recovery batch --config "$CONFIG" --table sbtest.sbtest1 \
  --pk-from "$LO" --pk-to "$HI" --user bench \
  >"$BENCH_LOGS/batch-concord.txt" 2>"$BENCH_LOGS/batch-concord.log" || rc=$?
t1=$(now)
CONCORD_S=$(elapsed "$t0" "$t1")
[ "$rc" = 0 ] || { cat "$BENCH_LOGS/batch-concord.txt" >&2; die "concord recovery batch exited $rc (log: $BENCH_LOGS/batch-concord.log)"; }
SUM1=$(same_tables "concord recovery batch")
CONCORD_LINE=$(grep '^batch ' "$BENCH_LOGS/batch-concord.txt" || true)

# --- 5. pt-table-sync ----------------------------------------------------------------------
corrupt
log "timing pt-table-sync --execute"
t0=$(now)
rc=0
pt-table-sync --execute --verbose --no-check-slave --where "id BETWEEN $LO AND $HI" \
  "h=$BENCH_HOST,P=$SOURCE_PORT,u=root,D=sbtest,t=sbtest1" "h=$BENCH_HOST,P=$TARGET_PORT,u=root" \
  >"$BENCH_LOGS/batch-pt.txt" 2>&1 || rc=$?
t1=$(now)
# pt-table-sync exits 2 when it found (and, with --execute, fixed) differences.
[ "$rc" = 0 ] || [ "$rc" = 2 ] || die "pt-table-sync exited $rc: $(tail -5 "$BENCH_LOGS/batch-pt.txt")"
PT_S=$(elapsed "$t0" "$t1")
SUM2=$(same_tables "pt-table-sync")
concord_stop

# --- 6. summary ----------------------------------------------------------------------------
SPAN=$((HI - LO + 1))
CONCORD_RPS=$(per_second "$SPAN" "$CONCORD_S")
PT_RPS=$(per_second "$SPAN" "$PT_S")
RATIO=$(ratio "$CONCORD_RPS" "$PT_RPS")
MET=$(at_least "$RATIO" 2)
{
  echo "==== batch recovery benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "pt:       $(pt-table-sync --version 2>/dev/null | head -1)"
  echo "command:  $COMMAND"
  echo "table:    sbtest.sbtest1, $ROWS rows (sysbench); range id $LO..$HI ($SPAN rows); $CHANGED changed + $MISSING missing on the target"
  echo "concord:  recovery batch: ${CONCORD_S}s  $CONCORD_RPS range rows/s, process start to exit; CHECKSUM TABLE equal after ($SUM1)"
  echo "          $CONCORD_LINE"
  echo "pt:       pt-table-sync --execute --where: ${PT_S}s  $PT_RPS range rows/s; CHECKSUM TABLE equal after ($SUM2)"
  echo "          $(grep -E '^# +[0-9]' "$BENCH_LOGS/batch-pt.txt" | tail -1)"
  echo "ratio:    concord / pt-table-sync = ${RATIO}x   (target >= 2x: $MET)"
  echo "=================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
