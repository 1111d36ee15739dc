#!/usr/bin/env bash
# Verification-rate benchmark: how fast `concord verify` re-checks a backlog of changes,
# against concord's own catch-up apply rate for the same backlog in the same run.
#
#   1. start a bench source and target; sysbench prepare on the source, note its binlog
#      position P, load one dump into the target so both agree at P;
#   2. with concord stopped, sysbench oltp_write_only for DURATION seconds; note the end E
#      and count the backlog's row changes from the binlog;
#   3. time `concord replicate` from process start until its checkpoint reaches E (the
#      apply rate);
#   4. set the verifier's saved position to P and time `concord verify` (delay 1 s, so the
#      whole backlog is due at once) from process start until its saved position reaches E;
#   5. report both rates, their ratio (target: verification >= 1.5x apply, issue 16), and the
#      verifier's results (every change must match; mismatches must be 0).
#
# Usage: bench/verify.sh
# Environment: TABLES (4) ROWS (50000) DURATION (30) THREADS (4), VERIFY_BATCH (5000,
# verifier.batch_rows), VERIFY_PARK_ROWS (verifier.park_rows; unset: concord's default;
# 0 turns parking off), CONCORD_BIN, and the knobs in bench/lib.sh.

set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_load_knobs
SOURCE_PORT="${SOURCE_PORT:-3321}"
TARGET_PORT="${TARGET_PORT:-3322}"
TIMEOUT="${TIMEOUT:-3600}"
POLL="${POLL:-0.05}"
VERIFY_BATCH="${VERIFY_BATCH:-5000}"
VERIFY_PARK_ROWS="${VERIFY_PARK_ROWS:-}"

COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS VERIFY_BATCH=$VERIFY_BATCH${VERIFY_PARK_ROWS:+ VERIFY_PARK_ROWS=$VERIFY_PARK_ROWS} CONCORD_BIN=$CONCORD_BIN bench/verify.sh"
SUMMARY="$BENCH_LOGS/verify-summary.txt"

bench_init
rm -f "$BENCH_LOGS"/verify-* "$BENCH_LOGS"/sysbench-*.log "$BENCH_DATA"/concord-control.db*
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# verifier_position -> "FILE POS" the verifier has saved (empty before its first save).
verifier_position() {
  python3 - "$BENCH_DATA/concord-control.db" <<'EOF'
import sqlite3, sys
try:
    row = sqlite3.connect(sys.argv[1]).execute(
        "SELECT binlog_file, position FROM verifier_positions WHERE name = 'verifier' AND stream = 'binlog'"
    ).fetchone()
except sqlite3.Error:
    row = None
print(*(row or ()))
EOF
}

# metric_sum NAME [LABEL_FILTER] -> sum of a concord metric's samples (matching the filter).
metric_sum() {
  { curl -fsS "http://$BENCH_HOST:$METRICS_PORT/metrics" 2>/dev/null || true; } |
    awk -v name="$1" -v want="${2:-}" '$1 ~ "^"name"[{ ]" || $1 == name { if (want == "" || index($1, want)) s += $NF } END { printf "%d\n", s }'
}

# wait_until NAME POSITION_COMMAND: seconds from now until POSITION_COMMAND reports >= E.
wait_until() {
  local what=$1 t0 t1 file pos deadline
  shift
  deadline=$(($(date +%s) + TIMEOUT))
  t0=$(now)
  while :; do
    concord_check_alive
    read -r file pos < <("$@"; echo)
    if [ -n "${file:-}" ] && pos_ge "$file" "$pos" "$END_FILE" "$END_POS"; then
      t1=$(now)
      break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$what did not reach $END_FILE:$END_POS within ${TIMEOUT}s (at ${file:-none}:${pos:-}); log: $CONCORD_LOG"
    sleep "$POLL"
  done
  elapsed "$t0" "$t1"
}

# --- 1. instances and starting data ------------------------------------------------------
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 21

CONFIG="$BENCH_DATA/concord-verify.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
printf '\n[verifier]\ndelay = "1s"\nsave_every = "100ms"\nbatch_rows = %s\n' "$VERIFY_BATCH" >>"$CONFIG"
if [ -n "$VERIFY_PARK_ROWS" ]; then
  printf 'park_rows = %s\n' "$VERIFY_PARK_ROWS" >>"$CONFIG"
fi
# One start before the load: proves config and connections, creates the control store.
concord_start "$CONFIG" "$BENCH_LOGS/verify-replicate.log"
concord_wait_ready 120
concord_stop

# --- 2. the backlog -------------------------------------------------------------------------
log "load: oltp_write_only, $THREADS threads, ${DURATION}s (concord stopped)"
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || { tail -20 "$BENCH_LOGS/sysbench-run.log" >&2; die "sysbench run failed"; }
LOAD_TPS=$(sb_tps "$BENCH_LOGS/sysbench-run.log")
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
read -r BACKLOG_ROWS BACKLOG_TRX _ < <(backlog_stats source "$SOURCE_PORT" \
  "$START_FILE" "$START_POS" "$END_FILE" "$END_POS")
log "backlog: $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions"
sleep 3

# --- 3. apply ----------------------------------------------------------------------------
# The idle start above saved a checkpoint at P, so the replicator starts there.
log "timing concord replicate"
concord_start "$CONFIG" "$BENCH_LOGS/verify-replicate.log" replicate
APPLY_S=$(wait_until replicator concord_checkpoint "$TARGET_PORT")
APPLIED=$(concord_applied_events)
concord_stop
log "apply: ${APPLY_S}s"

# --- 4. verify ---------------------------------------------------------------------------
python3 - "$BENCH_DATA/concord-control.db" "$START_FILE" "$START_POS" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("DELETE FROM verifier_positions WHERE name = 'verifier'")
db.execute(
    "INSERT INTO verifier_positions (name, stream, part, binlog_file, position, updated_ms) "
    "VALUES ('verifier', 'binlog', 0, ?, ?, ?)",
    (sys.argv[2], int(sys.argv[3]), int(time.time() * 1000)),
)
db.commit()
EOF
log "timing concord verify from $START_FILE:$START_POS"
concord_start "$CONFIG" "$BENCH_LOGS/verify-verify.log" verify
VERIFY_S=$(wait_until verifier verifier_position)
VERIFIED=$(metric_sum concord_verified_total)
MATCHED=$(metric_sum concord_verified_total 'result="match"')
SUPERSEDED=$(metric_sum concord_verified_total 'result="superseded"')
MISMATCHES=$(metric_sum concord_mismatches_detected_total)
RECHECKS=$(metric_sum concord_source_rechecks_total)
VERIFY_HWM=$(concord_mem VmHWM)
concord_stop
log "verify: ${VERIFY_S}s"

# --- 5. summary --------------------------------------------------------------------------
APPLY_RPS=$(per_second "$BACKLOG_ROWS" "$APPLY_S")
VERIFY_RPS=$(per_second "$BACKLOG_ROWS" "$VERIFY_S")
RATIO=$(ratio "$VERIFY_RPS" "$APPLY_RPS")
MET=$(at_least "$RATIO" 1.5)
{
  echo "==== concord verification-rate benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "backlog:  $BACKLOG_ROWS row changes in $BACKLOG_TRX transactions ($START_FILE:$START_POS .. $END_FILE:$END_POS)"
  echo "          sysbench oltp_write_only, $TABLES tables x $ROWS rows, $THREADS threads, ${DURATION}s at $LOAD_TPS tps"
  echo "apply:    concord replicate ${APPLY_S}s  $APPLY_RPS rows/s  (applied_events_total=$APPLIED)"
  echo "verify:   concord verify    ${VERIFY_S}s  $VERIFY_RPS rows/s  (verified_total=$VERIFIED, match=$MATCHED, superseded=$SUPERSEDED, rechecks=$RECHECKS, mismatches=$MISMATCHES, peak RSS ${VERIFY_HWM} MiB)"
  echo "ratio:    verify / apply = ${RATIO}x   (target >= 1.5x: $MET)"
  echo "============================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
