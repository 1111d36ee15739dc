#!/usr/bin/env bash
# Snapshot benchmark: copying a source that already holds data into an empty target, three
# ways, in the same run, while a writer keeps changing the source:
#
#   1. `mariadb-dump --single-transaction | mariadb`                  (the anchor)
#   2. `mydumper --threads THREADS` then `myloader --threads THREADS` (dump, then load)
#   3. `concord snapshot` with snapshot.threads = THREADS             (no replicator runs: the
#      command streams the binlog itself until the copy is done)
#
# Each copy starts from an empty `sbtest` database on the target and is timed from its
# first command to its last one's exit. During each, bench/probe.py updates one random row
# of the source every 10 ms and reports the longest any statement waited: the source must
# stay writable (no statement waits more than 1 s). After concord's copy the target is
# compared with the source (CHECKSUM TABLE once the writer stopped and concord's stream
# applied its changes): the copy must be exact.
#
# Targets (issue 15): concord >= 3x mariadb-dump | mariadb, >= 1x mydumper/myloader.
#
# Usage: bench/snapshot.sh
# Environment: TABLES (4), ROWS (1000000), THREADS (4), CHUNK_ROWS (10000), CONCORD_BIN, and
# the knobs in bench/lib.sh.

set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TABLES="${TABLES:-4}"
ROWS="${ROWS:-1000000}"
THREADS="${THREADS:-4}"
CHUNK_ROWS="${CHUNK_ROWS:-10000}"
SOURCE_PORT="${SOURCE_PORT:-3341}"
TARGET_PORT="${TARGET_PORT:-3342}"

COMMAND="TABLES=$TABLES ROWS=$ROWS THREADS=$THREADS CHUNK_ROWS=$CHUNK_ROWS CONCORD_BIN=$CONCORD_BIN bench/snapshot.sh"
SUMMARY="$BENCH_LOGS/snapshot-summary.txt"

bench_init
bench_ensure_pymysql
command -v mydumper >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mydumper >/dev/null
rm -rf "$BENCH_LOGS"/snapshot-* "$BENCH_DATA"/concord-control.db* "$BENCH_DATA/mydumper"
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
TOTAL=$((TABLES * ROWS))

# --- instances and data ------------------------------------------------------------------
mapfile -t SOURCE_OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 41 "${SOURCE_OPTS[@]}"
server_start target "$TARGET_PORT" 42
sb_prepare "$SOURCE_PORT"
# The tables' definitions, for the copies that do not create them.
mariadb-dump --no-defaults -uroot -h"$BENCH_HOST" -P"$SOURCE_PORT" --no-data \
  --databases sbtest >"$BENCH_DATA/snapshot-schema.sql"

fresh_target() {
  sql "$TARGET_PORT" "DROP DATABASE IF EXISTS sbtest; DROP DATABASE IF EXISTS concord"
}

# probe_start NAME / probe_stop NAME -> the probe's JSON line (statements, max_ms, p99_ms).
probe_start() {
  python3 "$BENCH_LIB_DIR/probe.py" --port "$SOURCE_PORT" --tables "$TABLES" --rows "$ROWS" \
    >"$BENCH_LOGS/snapshot-probe-$1.json" 2>"$BENCH_LOGS/snapshot-probe-$1.err" &
  PROBE_PID=$!
  BENCH_BG_PIDS+=("$PROBE_PID")
}
probe_stop() {
  kill -TERM "$PROBE_PID"
  wait "$PROBE_PID" || true
}
probe_line() { cat "$BENCH_LOGS/snapshot-probe-$1.json"; }
probe_max() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_ms"])' "$BENCH_LOGS/snapshot-probe-$1.json"; }

# --- 1. mariadb-dump | mariadb -------------------------------------------------------------
fresh_target
log "copy 1: mariadb-dump --single-transaction | mariadb"
probe_start dump
t0=$(now)
mariadb-dump --no-defaults -uroot -h"$BENCH_HOST" -P"$SOURCE_PORT" --single-transaction \
  --databases sbtest 2>"$BENCH_LOGS/snapshot-dump.err" |
  mariadb --no-defaults -uroot -h"$BENCH_HOST" -P"$TARGET_PORT" 2>>"$BENCH_LOGS/snapshot-dump.err" ||
  die "mariadb-dump | mariadb failed (see $BENCH_LOGS/snapshot-dump.err)"
t1=$(now)
DUMP_S=$(elapsed "$t0" "$t1")
probe_stop dump
DUMP_PROBE=$(probe_line dump)
log "mariadb-dump | mariadb: ${DUMP_S}s  probe $DUMP_PROBE"

# --- 2. mydumper, then myloader ------------------------------------------------------------
fresh_target
log "copy 2: mydumper then myloader, $THREADS threads"
probe_start mydumper
t0=$(now)
mydumper --host "$BENCH_HOST" --port "$SOURCE_PORT" --user root --database sbtest \
  --threads "$THREADS" --outputdir "$BENCH_DATA/mydumper" --rows 100000 \
  >"$BENCH_LOGS/snapshot-mydumper.log" 2>&1 || die "mydumper failed (see $BENCH_LOGS/snapshot-mydumper.log)"
t_mid=$(now)
myloader --host "$BENCH_HOST" --port "$TARGET_PORT" --user root --directory "$BENCH_DATA/mydumper" \
  --threads "$THREADS" --overwrite-tables >"$BENCH_LOGS/snapshot-myloader.log" 2>&1 ||
  die "myloader failed (see $BENCH_LOGS/snapshot-myloader.log)"
t1=$(now)
MYDUMPER_S=$(elapsed "$t0" "$t1")
MYDUMPER_DUMP_S=$(elapsed "$t0" "$t_mid")
probe_stop mydumper
MYDUMPER_PROBE=$(probe_line mydumper)
log "mydumper + myloader: ${MYDUMPER_S}s (dump ${MYDUMPER_DUMP_S}s)  probe $MYDUMPER_PROBE"

# --- 3. concord snapshot -------------------------------------------------------------------
fresh_target
load_dump "$TARGET_PORT" "$BENCH_DATA/snapshot-schema.sql"
CONFIG="$BENCH_DATA/concord-snapshot.toml"
concord_config "$CONFIG" "$SOURCE_PORT" "$TARGET_PORT" current "sbtest.*"
cat >>"$CONFIG" <<EOF

[snapshot]
mode = "never"
threads = $THREADS
chunk_rows = $CHUNK_ROWS
EOF
log "copy 3: concord snapshot, $THREADS threads, chunks of $CHUNK_ROWS rows"
probe_start concord
t0=$(now)
"$CONCORD_BIN" snapshot --config "$CONFIG" >"$BENCH_LOGS/snapshot-concord.txt" \
  2>"$BENCH_LOGS/snapshot-concord.log" || die "concord snapshot failed (see $BENCH_LOGS/snapshot-concord.log)"
t1=$(now)
CONCORD_S=$(elapsed "$t0" "$t1")
probe_stop concord
CONCORD_PROBE=$(probe_line concord)
log "concord snapshot: ${CONCORD_S}s  probe $CONCORD_PROBE"
# The writer's changes during the copy reach the target through the stream: let a
# replicator catch up, then compare.
concord_start "$CONFIG" "$BENCH_LOGS/snapshot-concord-catchup.log" replicate
concord_wait_ready
read -r GOAL_FILE GOAL_POS < <(master_pos "$SOURCE_PORT")
until cp=$(concord_checkpoint "$TARGET_PORT") && [ -n "$cp" ] && pos_ge ${cp} "$GOAL_FILE" "$GOAL_POS"; do
  concord_check_alive
  sleep 0.2
done
concord_stop
names=()
for i in $(seq 1 "$TABLES"); do names+=("sbtest$i"); done
table_checksums "$SOURCE_PORT" sbtest "${names[@]}" >"$BENCH_LOGS/snapshot-source.sum"
table_checksums "$TARGET_PORT" sbtest "${names[@]}" >"$BENCH_LOGS/snapshot-target.sum"
if cmp -s "$BENCH_LOGS/snapshot-source.sum" "$BENCH_LOGS/snapshot-target.sum"; then
  EXACT="equal (CHECKSUM TABLE of every table)"
else
  EXACT="DIFFERENT: see $BENCH_LOGS/snapshot-*.sum"
fi

# --- summary -------------------------------------------------------------------------------
DUMP_RPS=$(per_second "$TOTAL" "$DUMP_S")
MYDUMPER_RPS=$(per_second "$TOTAL" "$MYDUMPER_S")
CONCORD_RPS=$(per_second "$TOTAL" "$CONCORD_S")
R_DUMP=$(ratio "$CONCORD_RPS" "$DUMP_RPS")
R_MYDUMPER=$(ratio "$CONCORD_RPS" "$MYDUMPER_RPS")
WRITABLE=$(awk -v a="$(probe_max dump)" -v b="$(probe_max mydumper)" -v c="$(probe_max concord)" \
  'BEGIN { m = a; if (b > m) m = b; if (c > m) m = c; print (m <= 1000 ? "yes" : "NO"), m }')
{
  echo "==== concord snapshot benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "data:     $TABLES sysbench tables x $ROWS rows = $TOTAL rows, into an empty target"
  echo "anchor:   mariadb-dump --single-transaction | mariadb: ${DUMP_S}s  $DUMP_RPS rows/s  writer $DUMP_PROBE"
  echo "peer:     mydumper + myloader, $THREADS threads: ${MYDUMPER_S}s (dump ${MYDUMPER_DUMP_S}s)  $MYDUMPER_RPS rows/s  writer $MYDUMPER_PROBE"
  echo "concord:  concord snapshot, $THREADS threads: ${CONCORD_S}s  $CONCORD_RPS rows/s  writer $CONCORD_PROBE"
  echo "          the target after the stream caught up: $EXACT"
  echo "ratios:   concord / mariadb-dump = ${R_DUMP}x (target >= 3x: $(at_least "$R_DUMP" 3))"
  echo "          concord / mydumper     = ${R_MYDUMPER}x (target >= 1x: $(at_least "$R_MYDUMPER" 1))"
  echo "writable: no writer statement waited more than 1 s: $WRITABLE ms at most"
  echo "===================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
