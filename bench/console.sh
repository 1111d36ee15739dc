#!/usr/bin/env bash
# Console benchmark: page latency with a large control store, under 20 concurrent clients.
#
#   1. start a bench source and target with one sysbench table of ROWS rows on both;
#   2. fill the control store (SQLite file, or a MariaDB database with CONTROL=mariadb)
#      with RECORDS open mismatch records of that table (keys 1..RECORDS) and HISTORY
#      history rows;
#   3. start `concord run` with the console, log in with curl;
#   4. wrk (20 connections, 2 threads, DURATION) against: the first list page, a deep
#      keyset page, a filtered list (table + state + key text), and the detail page of
#      random records (which reads both rows now and builds the repair's SQL);
#   5. report p50/p95/p99 per page (targets: lists p95 <= 100 ms, detail p95 <= 50 ms).
#
# The server and wrk share the machine's CPUs, so the figures include the client's cost.
# Usage: bench/console.sh      Environment: CONTROL (sqlite|mariadb), ROWS (100000),
# RECORDS (100000), HISTORY (1000000), DURATION (15s), CONCORD_BIN, and bench/lib.sh's knobs.

set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES=1
ROWS="${ROWS:-100000}"
RECORDS="${RECORDS:-100000}"
HISTORY="${HISTORY:-1000000}"
DURATION="${DURATION:-15s}"
CONTROL="${CONTROL:-sqlite}"
SOURCE_PORT="${SOURCE_PORT:-3351}"
TARGET_PORT="${TARGET_PORT:-3352}"
CONSOLE_PORT="${CONSOLE_PORT:-8388}"
COMMAND="CONTROL=$CONTROL ROWS=$ROWS RECORDS=$RECORDS HISTORY=$HISTORY DURATION=$DURATION CONCORD_BIN=$CONCORD_BIN bench/console.sh"
SUMMARY="$BENCH_LOGS/console-$CONTROL-summary.txt"
command -v wrk >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null

bench_init
rm -f "$BENCH_DATA"/concord-control.db*
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# --- 1. servers and the table -----------------------------------------------------------
bench_pair "$SOURCE_PORT" "$TARGET_PORT" 51
CONFIG="$BENCH_DATA/concord-console.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" "$START_FILE:$START_POS" 'sbtest.*'
if [ "$CONTROL" = mariadb ]; then
  sql "$TARGET_PORT" "DROP DATABASE IF EXISTS concord_control; CREATE DATABASE concord_control"
  sed -i "s|^url = \"sqlite://.*|url = \"mysql://root@$BENCH_HOST:$TARGET_PORT/concord_control\"|" "$CONFIG"
fi
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
# The control store's tables come with its migrations.
"$CONCORD_BIN" mismatches list --config "$CONFIG" --limit 1 >/dev/null

# --- 2. records and history -------------------------------------------------------------
log "filling the control store ($CONTROL): $RECORDS records, $HISTORY history rows"
PER=$(( (HISTORY + RECORDS - 1) / RECORDS ))
now_ms=$(( $(date +%s) * 1000 ))
record_values="'sbtest', 'sbtest1', CONCAT('[[\"id\",{\"type\":\"int\",\"value\":', n, '}]]'), 'differs', \
  '[{\"column\":\"k\",\"source\":{\"type\":\"int\",\"value\":1},\"target\":{\"type\":\"int\",\"value\":2}}]', \
  'mysql-bin.000001', 4, IF(n % 2 = 0, 'verifier', 'checksum'), IF(n % 5 = 0, 'needs_manual', 'detected'), \
  $now_ms - n * 1000, $now_ms - n * 10, LPAD(n, 64, '0'), LPAD(n, 64, '0'), $now_ms - n * 10"
history_values="'mismatch', 1 + (n % $RECORDS), $now_ms - n, 'system', 'detected', 'rechecking', 'auto look'"
t0=$(now)
if [ "$CONTROL" = mariadb ]; then
  sql "$TARGET_PORT" "USE concord_control;
    INSERT INTO mismatches (db, tbl, pk, kind, columns, source_file, source_pos, detected_by, state,
      first_seen_ms, last_seen_ms, open_key, row_key, state_ms)
    SELECT $record_values FROM (SELECT seq AS n FROM seq_1_to_$RECORDS) s;
    INSERT INTO recovery_history (subject, subject_id, at_ms, actor, from_state, to_state, reason)
    SELECT $history_values FROM (SELECT seq AS n FROM seq_1_to_$HISTORY) s;"
else
  DB="$BENCH_DATA/concord-control.db"
  sqlite_values="'sbtest', 'sbtest1', '[[\"id\",{\"type\":\"int\",\"value\":' || n || '}]]', 'differs', \
    '[{\"column\":\"k\",\"source\":{\"type\":\"int\",\"value\":1},\"target\":{\"type\":\"int\",\"value\":2}}]', \
    'mysql-bin.000001', 4, iif(n % 2 = 0, 'verifier', 'checksum'), iif(n % 5 = 0, 'needs_manual', 'detected'), \
    $now_ms - n * 1000, $now_ms - n * 10, printf('%064d', n), printf('%064d', n), $now_ms - n * 10"
  sqlite3 "$DB" "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $RECORDS)
    INSERT INTO mismatches (db, tbl, pk, kind, columns, source_file, source_pos, detected_by, state,
      first_seen_ms, last_seen_ms, open_key, row_key, state_ms)
    SELECT $sqlite_values FROM s;
    WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $HISTORY)
    INSERT INTO recovery_history (subject, subject_id, at_ms, actor, from_state, to_state, reason)
    SELECT $history_values FROM s;
    ANALYZE;"
fi
log "filled in $(elapsed "$t0" "$(now)") s ($PER history rows per record)"

# --- 3. concord run with the console -----------------------------------------------------
concord_start "$CONFIG" "$BENCH_LOGS/console-run.log" run
concord_wait_ready 120
BASE="http://$BENCH_HOST:$CONSOLE_PORT"
COOKIE=$(curl -fsS -o /dev/null -D - -H "Origin: $BASE" \
  --data-urlencode name=bench --data-urlencode password=bench-password "$BASE/login" |
  awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2 }')
[ -n "$COOKIE" ] || die "the console did not log the bench user in"
curl -fsS -H "Cookie: $COOKIE" "$BASE/mismatches" | grep -q 'id="records"' || die "the list page did not render"

# --- 4. wrk ------------------------------------------------------------------------------
LUA="$BENCH_LIB_DIR/console-latency.lua"
run_wrk() { # NAME PATH [IDS]
  local name=$1 path=$2 ids=${3:-0} out
  out=$(COOKIE="$COOKIE" PATH_BASE="$path" IDS="$ids" wrk -t2 -c20 -d"$DURATION" -s "$LUA" "$BASE" 2>&1)
  echo "$out" >"$BENCH_LOGS/console-$CONTROL-$name.txt"
  echo "$out" | grep '^p50_ms=' | sed "s/^/$name: /"
}
{
  run_wrk list "/mismatches"
  run_wrk deep_page "/mismatches?before=$((RECORDS / 2))"
  run_wrk filtered "/mismatches?table=sbtest.sbtest1&state=needs_manual&key=99"
  run_wrk last_seen "/mismatches?sort=last_seen&state=detected"
  run_wrk detail "/mismatches/" "$RECORDS"
} | tee "$BENCH_LOGS/console-$CONTROL-results.txt"
concord_stop

# --- 5. summary --------------------------------------------------------------------------
{
  echo "==== console benchmark ($CONTROL control store) ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "store:    $RECORDS open records of sbtest.sbtest1 ($ROWS rows on both servers), $HISTORY history rows"
  echo "load:     wrk -t2 -c20 -d$DURATION, logged in; server and wrk on the same machine"
  sed 's/^/          /' "$BENCH_LOGS/console-$CONTROL-results.txt"
  echo "targets:  list pages p95 <= 100 ms; detail p95 <= 50 ms"
  echo "==================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
