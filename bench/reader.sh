#!/usr/bin/env bash
# Reader benchmark: how fast concord's binlog reader gets through a backlog — decoding every
# row and assembling transactions, applying nothing — against the rate at which
# `mariadb-binlog --read-from-remote-server --raw` fetches the same backlog (the server's
# sending and the network, with no decoding at all), in the same run.
#
#   1. start a bench source; sysbench prepare; note the binlog position P;
#   2. sysbench oltp_write_only for DURATION seconds; note the end E; count the backlog's
#      rows and bytes exactly (mariadb-binlog -v);
#   3. with the source idle, RUNS times each: mariadb-binlog --raw from P to the end of the
#      backlog, then the reader alone (`read_backlog`, a cargo example of crates/binlog, built
#      in release) from P to E; the medians are compared.
#
# Target (issue 16): the reader >= 0.6x mariadb-binlog --raw (bytes/s of binlog).
#
# Usage: bench/reader.sh
# Environment: TABLES (4) ROWS (50000) DURATION (30) THREADS (4) RUNS (3) READER_BIN, and the
# knobs in bench/lib.sh.

set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_load_knobs
RUNS="${RUNS:-3}"
SOURCE_PORT="${SOURCE_PORT:-3351}"
READER_BIN="${READER_BIN:-${CARGO_TARGET_DIR:-/var/cache/concord-target}/release/examples/read_backlog}"
COMMAND="TABLES=$TABLES ROWS=$ROWS DURATION=$DURATION THREADS=$THREADS RUNS=$RUNS bench/reader.sh"
SUMMARY="$BENCH_LOGS/reader-summary.txt"

if [ ! -x "$READER_BIN" ]; then
  log "building the reader example (release)"
  (cd "$BENCH_LIB_DIR/.." && cargo build --release -p concord-binlog --example read_backlog) >&2
fi
bench_init
rm -f "$BENCH_LOGS"/reader-* "$BENCH_LOGS"/sysbench-*.log
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

mapfile -t OPTS < <(bench_source_opts source)
server_start source "$SOURCE_PORT" 51 "${OPTS[@]}"
sb_prepare "$SOURCE_PORT"
read -r START_FILE START_POS < <(master_pos "$SOURCE_PORT")
log "load: oltp_write_only, $THREADS threads, ${DURATION}s"
sb "$SOURCE_PORT" run --threads="$THREADS" --time="$DURATION" --report-interval=0 \
  >"$BENCH_LOGS/sysbench-run.log" 2>&1 || die "sysbench run failed"
read -r END_FILE END_POS < <(master_pos "$SOURCE_PORT")
read -r ROWS_CHANGED TRANSACTIONS BYTES < <(backlog_stats source "$SOURCE_PORT" "$START_FILE" "$START_POS" "$END_FILE" "$END_POS")
log "backlog: $ROWS_CHANGED rows, $TRANSACTIONS transactions, $BYTES bytes ($START_FILE:$START_POS .. $END_FILE:$END_POS)"

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

RAW_TIMES=()
READER_TIMES=()
READER_CPUS=()
files=()
while read -r f; do files+=("$f"); done < <(binlog_files_between "$SOURCE_PORT" "$START_FILE" "$END_FILE")
for run in $(seq 1 "$RUNS"); do
  out="$BENCH_DATA/raw-$run"
  rm -rf "$out" && mkdir -p "$out"
  t0=$(now)
  mariadb-binlog --no-defaults --read-from-remote-server --raw --host="$BENCH_HOST" \
    --port="$SOURCE_PORT" --user=root --start-position="$START_POS" \
    --result-file="$out/" "${files[@]}" 2>"$BENCH_LOGS/reader-raw.err" ||
    die "mariadb-binlog --raw failed (see $BENCH_LOGS/reader-raw.err)"
  t1=$(now)
  RAW_TIMES+=("$(elapsed "$t0" "$t1")")
  rm -rf "$out"
  line=$("$READER_BIN" "mysql://root@$BENCH_HOST:$SOURCE_PORT" "$START_FILE:$START_POS" "$END_FILE:$END_POS" \
    2>"$BENCH_LOGS/reader-concord.err") || die "read_backlog failed (see $BENCH_LOGS/reader-concord.err)"
  echo "$line" >>"$BENCH_LOGS/reader-concord.jsonl"
  READER_TIMES+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["wall_s"])' "$line")")
  READER_CPUS+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cpu_s"])' "$line")")
  log "run $run: mariadb-binlog --raw ${RAW_TIMES[-1]}s, reader ${READER_TIMES[-1]}s (cpu ${READER_CPUS[-1]}s): $line"
done
RAW_S=$(median "${RAW_TIMES[@]}")
READER_S=$(median "${READER_TIMES[@]}")
READER_CPU=$(median "${READER_CPUS[@]}")
RAW_BPS=$(per_second "$BYTES" "$RAW_S")
READER_BPS=$(per_second "$BYTES" "$READER_S")
RATIO=$(ratio "$READER_BPS" "$RAW_BPS")
MET=$(at_least "$RATIO" 0.6)
{
  echo "==== concord binlog reader benchmark ===="
  echo "date:     $STARTED_AT"
  machine_summary
  versions_summary
  echo "command:  $COMMAND"
  echo "backlog:  $ROWS_CHANGED row changes, $TRANSACTIONS transactions, $BYTES bytes of binlog"
  echo "anchor:   mariadb-binlog --read-from-remote-server --raw: ${RAW_TIMES[*]} s, median ${RAW_S}s  $RAW_BPS bytes/s"
  echo "reader:   read_backlog (decode + assemble, no apply): ${READER_TIMES[*]} s, median ${READER_S}s  $READER_BPS bytes/s, $(per_second "$ROWS_CHANGED" "$READER_S") rows/s, cpu ${READER_CPU}s"
  echo "ratio:    reader / mariadb-binlog --raw = ${RATIO}x   (target >= 0.6x: $MET)"
  echo "=========================================="
} | tee "$SUMMARY"
log "summary saved to $SUMMARY"
