#!/usr/bin/env bash
# Console bulk repair benchmark: the same corruption of one key range repaired once by the
# console's bulk repair of the mismatch records a checksum found, and once by
# `concord recovery batch`, in one run.
#
#   1. start a bench source and target; sysbench prepare ONE table of ROWS rows on the
#      source and load the same dump into the target;
#   2. start `concord run` with the console (auto-repair off, a grace of a day: the worker
#      leaves the records alone);
#   3. corrupt the target inside [LO, HI]: CHANGED rows get another `c`, MISSING rows are
#      deleted; `concord checksum --table sbtest.sbtest1` records them (not timed);
#   4. log in with curl, POST the bulk repair of "everything matching table + detected"
#      (what the list page's "Repair all matching" button sends after its confirmation),
#      time it from the job's own start to its last saved progress (console_bulk_jobs),
#      check CHECKSUM TABLE on both servers;
#   5. corrupt the target again the same way, time `concord recovery batch --pk-from LO
#      --pk-to HI` (from its job's start to its end in batch_jobs, and process start to
#      exit), check again;
#   6. report repaired rows/s of each and the ratio (target: bulk >= 0.5x batch).
#
# Usage: bench/bulk-repair.sh
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
SOURCE_PORT="${SOURCE_PORT:-3361}"
TARGET_PORT="${TARGET_PORT:-3362}"
CONSOLE_PORT="${CONSOLE_PORT:-8389}"
DIFFERING=$((CHANGED + MISSING))

COMMAND="ROWS=$ROWS LO=$LO HI=$HI CHANGED=$CHANGED MISSING=$MISSING CONCORD_BIN=$CONCORD_BIN bench/bulk-repair.sh"
SUMMARY="$BENCH_LOGS/bulk-repair-summary.txt"
command -v sqlite3 >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null

bench_init
rm -f "$BENCH_LOGS"/bulk-repair-* "$BENCH_DATA"/concord-control.db*
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
DB="$BENCH_DATA/concord-control.db"
control() { sqlite3 "$DB" "$1"; }

# corrupt: CHANGED rows with another `c` and MISSING rows deleted, spread over the range
# (the same corruption as bench/batch.sh).
corrupt() {
  local span=$((HI - LO + 1))
  local step=$((span / DIFFERING))
  [ "$step" -ge 2 ] || die "the range is too small for $DIFFERING differences"
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

# --- 1, 2. instances, data, concord run with the console ---------------------------------
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 61
CONFIG="$BENCH_DATA/concord-bulk-repair.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
HASH=$(echo "bench-password" | "$CONCORD_BIN" console hash-password)
cat >>"$CONFIG" <<TOML

[recovery]
grace = "24h"
auto_repair = false

[console]
listen = "$BENCH_HOST:$CONSOLE_PORT"

[[console.users]]
name = "bench"
password_hash = "$HASH"
role = "operator"
TOML
concord_start "$CONFIG" "$BENCH_LOGS/bulk-repair-run.log" run
concord_wait_ready 120

# --- 3. corruption, found by a checksum ---------------------------------------------------
corrupt
log "recording the differences with concord checksum (not timed)"
"$CONCORD_BIN" checksum --config "$CONFIG" --table sbtest.sbtest1 \
  >"$BENCH_LOGS/bulk-repair-checksum.txt" 2>"$BENCH_LOGS/bulk-repair-checksum.log" || true
OPEN=$(control "SELECT COUNT(*) FROM mismatches WHERE state = 'detected'")
[ "$OPEN" = "$DIFFERING" ] || die "the checksum recorded $OPEN detected records, expected $DIFFERING (log: $BENCH_LOGS/bulk-repair-checksum.log)"

# --- 4. the console's bulk repair ---------------------------------------------------------
BASE="http://$BENCH_HOST:$CONSOLE_PORT"
COOKIE=$(curl -fsS -o /dev/null -D - -H "Origin: $BASE" \
  --data-urlencode name=bench --data-urlencode password=bench-password "$BASE/login" |
  awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2 }')
[ -n "$COOKIE" ] || die "the console did not log the bench user in"
CSRF=$(curl -fsS -H "Cookie: $COOKIE" "$BASE/mismatches" |
  sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
[ -n "$CSRF" ] || die "no CSRF token on the list page"
log "console bulk repair of $OPEN records"
t0=$(now)
LOCATION=$(curl -fsS -o /dev/null -D - -H "Cookie: $COOKIE" -H "Origin: $BASE" \
  --data-urlencode "csrf=$CSRF" --data-urlencode action=repair --data-urlencode scope=filter \
  --data-urlencode confirm=yes --data-urlencode table=sbtest.sbtest1 --data-urlencode state=detected \
  --data-urlencode "reason=bench/bulk-repair.sh" "$BASE/mismatches/bulk" |
  awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
JOB=${LOCATION#/bulk/}
[ -n "$JOB" ] && [ "$JOB" != "$LOCATION" ] || die "the bulk repair did not start (Location: $LOCATION)"
until [ "$(control "SELECT state FROM console_bulk_jobs WHERE id = $JOB")" != running ]; do
  concord_check_alive
  sleep 0.2
done
t1=$(now)
read -r BULK_STATE BULK_DONE BULK_OK BULK_FAILED BULK_MS < <(control \
  "SELECT state, done, succeeded, failed, updated_ms - started_ms FROM console_bulk_jobs WHERE id = $JOB" | tr '|' ' ')
[ "$BULK_STATE" = finished ] || die "bulk job $JOB ended $BULK_STATE: $(control "SELECT error FROM console_bulk_jobs WHERE id = $JOB")"
BULK_S=$(awk -v ms="$BULK_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
BULK_WALL=$(elapsed "$t0" "$t1")
REPAIRED=$(control "SELECT COUNT(*) FROM mismatches WHERE state = 'repaired'")
SUM1=$(same_tables "the console's bulk repair")

# --- 5. batch recovery --------------------------------------------------------------------
corrupt
log "timing concord recovery batch"
t0=$(now)
rc=0
"$CONCORD_BIN" recovery batch --config "$CONFIG" --table sbtest.sbtest1 \
  --pk-from "$LO" --pk-to "$HI" --user bench \
  >"$BENCH_LOGS/bulk-repair-batch.txt" 2>"$BENCH_LOGS/bulk-repair-batch.log" || rc=$?
t1=$(now)
BATCH_WALL=$(elapsed "$t0" "$t1")
[ "$rc" = 0 ] || { cat "$BENCH_LOGS/bulk-repair-batch.txt" >&2; die "concord recovery batch exited $rc"; }
read -r BATCH_REPAIRED BATCH_MS < <(control \
  "SELECT repaired, updated_ms - started_ms FROM batch_jobs ORDER BY id DESC LIMIT 1" | tr '|' ' ')
BATCH_S=$(awk -v ms="$BATCH_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
SUM2=$(same_tables "concord recovery batch")
concord_stop

# --- 6. summary ---------------------------------------------------------------------------
BULK_RPS=$(per_second "$DIFFERING" "$BULK_S")
BATCH_RPS=$(per_second "$DIFFERING" "$BATCH_S")
BATCH_WALL_RPS=$(per_second "$DIFFERING" "$BATCH_WALL")
RATIO=$(ratio "$BULK_RPS" "$BATCH_RPS")
MET=$(at_least "$RATIO" 0.5)
{
  echo "==== console bulk repair benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "table:    sbtest.sbtest1, $ROWS rows (sysbench); range id $LO..$HI; $CHANGED changed + $MISSING missing on the target"
  echo "bulk:     console job $JOB over $OPEN checksum records: ${BULK_S}s (job start to end; ${BULK_WALL}s POST to seen finished)"
  echo "          $BULK_RPS repaired rows/s; done $BULK_DONE, succeeded $BULK_OK, failed $BULK_FAILED; $REPAIRED records repaired; CHECKSUM TABLE equal after ($SUM1)"
  echo "batch:    recovery batch --pk-from $LO --pk-to $HI: ${BATCH_S}s (job start to end; ${BATCH_WALL}s process start to exit)"
  echo "          $BATCH_RPS repaired rows/s ($BATCH_WALL_RPS by process time); $BATCH_REPAIRED repaired; CHECKSUM TABLE equal after ($SUM2)"
  echo "ratio:    bulk / batch = ${RATIO}x   (target >= 0.5x: $MET)"
  echo "======================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
