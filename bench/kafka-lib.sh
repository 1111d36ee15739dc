# shellcheck shell=bash
# Helpers for the kafka-mode benchmarks (bench/kafka-catchup.sh, bench/kafka-lag.sh). Sourced
# after bench/lib.sh, whose servers, sysbench and reporting helpers they share.
#
# Kafka mode runs several processes: a broker (tansu, SQLite storage by default, in its own directory under
# $BENCH_DATA), one `concord capture` and one or more `concord replicate`. Each concord process
# gets its own config file and metrics port. Everything started here is registered in
# KPROC_PIDS and stopped by kafka_cleanup (installed as the EXIT trap by kafka_bench_init),
# before bench_cleanup stops the MariaDB instances.
#
# Knobs (environment), in addition to bench/lib.sh's:
#   KAFKA_PROPS           extra librdkafka settings for every role, TOML lines of
#                         [kafka.properties] (e.g. '"fetch.wait.max.ms" = "500"')
#   KAFKA_SETTINGS        extra lines of concord's [kafka] section (e.g. 'max_unacked = 8000')
#   TANSU_BIN             broker binary (default /var/cache/concord-tools/bin/tansu)
#   BROKER_STORAGE        tansu's storage engine (default sqlite://tansu.db, a file in the
#                         broker's directory; memory://tansu/ keeps everything in memory)
#   BROKER_PORT           broker listener (default 19092; the test broker uses 9092)
#   CAPTURE_METRICS_PORT  /metrics of the capture (default METRICS_PORT + 1)
#   REPLICATOR_METRICS_PORT  /metrics of the first replicator (default METRICS_PORT + 2); the
#                         second one uses the port after it
#   KAFKA_TOPIC           change topic (default concord.changes); its dead-letter topic is
#                         KAFKA_TOPIC.dlq
#   PARTITIONS            partitions of the change topic (default 4)

KAFKA_PROPS="${KAFKA_PROPS:-}"
KAFKA_SETTINGS="${KAFKA_SETTINGS:-}"
TANSU_BIN="${TANSU_BIN:-/var/cache/concord-tools/bin/tansu}"
BROKER_STORAGE_DEFAULT=sqlite://tansu.db
BROKER_STORAGE="${BROKER_STORAGE:-$BROKER_STORAGE_DEFAULT}"
BROKER_PORT="${BROKER_PORT:-19092}"
CAPTURE_METRICS_PORT="${CAPTURE_METRICS_PORT:-$((METRICS_PORT + 1))}"
REPLICATOR_METRICS_PORT="${REPLICATOR_METRICS_PORT:-$((METRICS_PORT + 2))}"
KAFKA_TOPIC="${KAFKA_TOPIC:-concord.changes}"
PARTITIONS="${PARTITIONS:-4}"

# Processes started by this file: name, pid and log of each, in start order.
KPROC_NAMES=()
KPROC_PIDS=()
KPROC_LOGS=()
# pid of the process most recently started by kproc_start / broker_start.
LAST_PID=""

kafka_bench_init() {
  bench_init
  [ -x "$TANSU_BIN" ] || die "tansu broker not found at $TANSU_BIN (set TANSU_BIN)"
  "$CONCORD_BIN" --help 2>/dev/null | grep -qE '^ +capture ' ||
    die "$CONCORD_BIN has no 'capture' subcommand (kafka mode); build a newer release binary"
  trap kafka_cleanup EXIT
  # A control store left behind by an earlier run (BENCH_KEEP=1) would hold a capture position.
  rm -f "$BENCH_DATA"/concord-control.db*
}

# Stops the kafka-side processes (newest first, so replicators and the capture go before the
# broker), then hands over to bench_cleanup with the script's exit status.
kafka_cleanup() {
  local rc=$?
  set +e
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    local i
    for ((i = ${#KPROC_PIDS[@]} - 1; i >= 0; i--)); do
      kproc_stop "${KPROC_PIDS[$i]}"
    done
  fi
  (exit "$rc")
  bench_cleanup
}

# kproc_index PID -> index of that process in the KPROC_* arrays.
kproc_index() {
  local i
  for i in "${!KPROC_PIDS[@]}"; do
    [ "${KPROC_PIDS[$i]}" = "$1" ] && { echo "$i"; return 0; }
  done
  return 1
}

kproc_register() {
  KPROC_NAMES+=("$1")
  KPROC_PIDS+=("$2")
  KPROC_LOGS+=("$3")
  LAST_PID=$2
}

# kproc_stop PID: SIGTERM, up to 20 s for a clean exit, then SIGKILL. Only our own children.
kproc_stop() {
  local pid=$1 _
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop within 20 s of SIGTERM; killing it"
      kill -9 "$pid" 2>/dev/null
    fi
  fi
  wait "$pid" 2>/dev/null
  return 0
}

# kproc_check_alive PID: fails the run with the process's last log lines when it has exited.
kproc_check_alive() {
  local pid=$1 i rc=0
  kill -0 "$pid" 2>/dev/null && return 0
  i=$(kproc_index "$pid") || die "unknown pid $pid"
  wait "$pid" 2>/dev/null || rc=$?
  log "${KPROC_NAMES[$i]} exited (status $rc); last lines of ${KPROC_LOGS[$i]}:"
  tail -30 "${KPROC_LOGS[$i]}" >&2
  die "${KPROC_NAMES[$i]} stopped unexpectedly"
}

# proc_mem PID FIELD -> VmHWM / VmRSS of a process in MiB.
proc_mem() {
  awk -v f="$2:" '$1 == f { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

# kafka_command_knobs -> the kafka knobs set away from their defaults, as they would be
# written on the command line (for the summaries' "command:" line).
kafka_command_knobs() {
  local s=""
  [ -z "$KAFKA_PROPS" ] || s+=" KAFKA_PROPS='$KAFKA_PROPS'"
  [ -z "$KAFKA_SETTINGS" ] || s+=" KAFKA_SETTINGS='$KAFKA_SETTINGS'"
  [ "$BROKER_STORAGE" = "$BROKER_STORAGE_DEFAULT" ] || s+=" BROKER_STORAGE=$BROKER_STORAGE"
  printf '%s' "$s"
}

# ---------------------------------------------------------------------------------------
# broker

# broker_start: a fresh tansu broker in $BENCH_DATA/broker, storing in BROKER_STORAGE.
broker_start() {
  local dir="$BENCH_DATA/broker" logfile="$BENCH_LOGS/broker.log" _
  if port_answers "$BROKER_PORT"; then
    die "port $BROKER_PORT (broker) is already in use; set BROKER_PORT"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  : >"$logfile"
  (cd "$dir" && exec "$TANSU_BIN" broker \
    --listener-url "tcp://$BENCH_HOST:$BROKER_PORT" \
    --advertised-listener-url "tcp://$BENCH_HOST:$BROKER_PORT" \
    --storage-engine "$BROKER_STORAGE") </dev/null >"$logfile" 2>&1 &
  kproc_register broker $! "$logfile"
  local pid=$LAST_PID
  for _ in $(seq 1 100); do
    if port_answers "$BROKER_PORT"; then
      log "broker (tansu) up on $BENCH_HOST:$BROKER_PORT (pid $pid)"
      return 0
    fi
    kproc_check_alive "$pid"
    sleep 0.2
  done
  tail -20 "$logfile" >&2
  die "the broker did not listen on $BROKER_PORT within 20 s"
}

# topic_create NAME PARTITIONS
topic_create() {
  "$TANSU_BIN" topic create "$1" --partitions "$2" --broker "tcp://$BENCH_HOST:$BROKER_PORT" \
    </dev/null >>"$BENCH_LOGS/broker-topics.log" 2>&1 ||
    { tail -10 "$BENCH_LOGS/broker-topics.log" >&2; die "creating topic $1 failed"; }
  log "topic $1 created ($2 partitions)"
}

# ---------------------------------------------------------------------------------------
# concord in kafka mode

# kafka_config FILE METRICS_PORT GROUP SOURCE_PORT TARGET_PORT START INCLUDE...
# The direct-mode config of lib.sh with its own metrics port, plus the kafka sections.
kafka_config() {
  local file=$1 mport=$2 group=$3
  shift 3
  METRICS_PORT=$mport concord_config "$file" "$@"
  cat >>"$file" <<EOF

[transport]
kind = "kafka"

[kafka]
brokers = "$BENCH_HOST:$BROKER_PORT"
topic = "$KAFKA_TOPIC"
group = "$group"
$KAFKA_SETTINGS

[kafka.properties]
$KAFKA_PROPS
EOF
}

# kproc_start NAME LOG SUBCOMMAND CONFIG: starts `concord SUBCOMMAND --config CONFIG` in the
# background; its pid is in LAST_PID. The metrics port (read from the config) must be free.
kproc_start() {
  local name=$1 logfile=$2 sub=$3 config=$4 mport
  mport=$(awk -F'[:"]' '/^listen = / { print $(NF - 1) }' "$config")
  if [ -n "$mport" ] && port_answers "$mport"; then
    die "port $mport ($name metrics) is already in use"
  fi
  "$CONCORD_BIN" "$sub" --config "$config" </dev/null >>"$logfile" 2>&1 &
  kproc_register "$name" $! "$logfile"
}

# kproc_wait_ready PID METRICS_PORT [TIMEOUT]: until /readyz answers 200.
kproc_wait_ready() {
  local pid=$1 mport=$2 timeout=${3:-120} start
  start=$(date +%s)
  until curl -fsS "http://$BENCH_HOST:$mport/readyz" >/dev/null 2>&1; do
    kproc_check_alive "$pid"
    [ $(($(date +%s) - start)) -lt "$timeout" ] || die "pid $pid not ready after ${timeout}s"
    sleep 0.2
  done
}

# metric_sum METRICS_PORT METRIC -> the sum of that metric over all its label sets (integer).
metric_sum() {
  # A process that is not listening yet counts as 0; under `set -e -o pipefail` a failed
  # curl would otherwise end the whole script without a word.
  { curl -fsS "http://$BENCH_HOST:$1/metrics" 2>/dev/null || true; } |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }'
}

# kafka_offsets_sum TARGET_PORT GROUP -> sum of next_offset over the group's partitions of the
# change topic in concord.kafka_offsets on the target (0 before the first batch).
kafka_offsets_sum() {
  sql "$1" "SELECT COALESCE(SUM(next_offset), 0) FROM concord.kafka_offsets
    WHERE consumer_group = '$2' AND topic = '$KAFKA_TOPIC'" 2>/dev/null || echo 0
}

# backlog_messages SOURCE_NAME PORT FROM_FILE FROM_POS TO_FILE TO_POS -> how many envelopes
# the capture publishes for that binlog range: one per row change, two for an UPDATE that
# changes its row's primary key (a delete of the old key and an insert of the new one). The
# primary-key columns of every table come from the source's information_schema; the row
# images from mariadb-binlog -v, where column N is printed as "@N=value".
backlog_messages() {
  local name=$1 port=$2 f1=$3 p1=$4 f2=$5 p2=$6
  local files=() f pkfile="$BENCH_DATA/pk-columns.txt"
  while read -r f; do files+=("$BENCH_DATA/$name/$f"); done < <(binlog_files_between "$port" "$f1" "$f2")
  [ ${#files[@]} -gt 0 ] || die "no binlog files between $f1 and $f2"
  sql "$port" "SELECT CONCAT('\`', TABLE_SCHEMA, '\`.\`', TABLE_NAME, '\`'), GROUP_CONCAT(ORDINAL_POSITION)
    FROM information_schema.COLUMNS WHERE COLUMN_KEY = 'PRI'
      AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
    GROUP BY TABLE_SCHEMA, TABLE_NAME" >"$pkfile"
  mariadb-binlog --no-defaults --base64-output=decode-rows -v \
    --start-position="$p1" --stop-position="$p2" "${files[@]}" 2>"$BENCH_LOGS/mariadb-binlog.err" |
    awk -v pkfile="$pkfile" '
      BEGIN {
        FS = "\t"
        while ((getline line < pkfile) > 0) { split(line, kv, "\t"); pk[kv[1]] = kv[2] }
        FS = " "
      }
      # Decide the UPDATE row that just ended: did any primary-key column change?
      function finish_update(   n, cols, k, c) {
        if (!in_update) return
        in_update = 0
        n = split(pk[table], cols, ",")
        for (k = 1; k <= n; k++) {
          c = cols[k]
          if (before[c] != after[c]) { key_changes++; break }
        }
      }
      /^### (INSERT INTO|DELETE FROM) / { finish_update(); rows++; next }
      /^### UPDATE / {
        finish_update(); rows++
        in_update = 1; side = ""; table = $3
        delete before; delete after
        next
      }
      /^### WHERE$/ { side = "before"; next }
      /^### SET$/ { side = "after"; next }
      /^###   @[0-9]+=/ {
        if (!in_update) next
        line = $0; sub(/^###   @/, "", line)
        i = index(line, "="); col = substr(line, 1, i - 1); val = substr(line, i + 1)
        if (side == "before") before[col] = val; else if (side == "after") after[col] = val
        next
      }
      { finish_update() }
      END { finish_update(); print rows + key_changes, rows + 0, key_changes + 0 }'
}
