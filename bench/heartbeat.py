#!/usr/bin/env python3
"""Source-commit-to-target-visible lag, measured with a heartbeat table.

A writer inserts one row per beat into the heartbeat table on the source:
(seq, ts_us) with ts_us = the source's NOW(6) as microseconds since the epoch. A reader
polls the target for the highest seq it can see and notes, for every seq, the first poll
that saw it (or a later one: when concord applies several beats in one target transaction
they all become visible at once, and all of them are stamped with that moment). The lag
of a beat is (first time seen on the target) - (its source NOW(6)).

One row per beat (not one updated row) is what makes this exact: the source keeps every
beat's timestamp, so a beat the reader never saw on its own still gets its true lag.

Both servers and this process share one host and one clock, so the two timestamps are
comparable. The time of a poll is taken just before the query is sent: the snapshot the
query reads is taken after that, so a beat in the result was visible by then at the latest.
The poll interval bounds how much the figure can be over-stated.

Prints one JSON object with the statistics on stdout (the target's; a watched replica's under
"replica"); writes every beat to --csv (the replica's to the same name with -replica).
"""

import argparse
import json
import os
import sys
import threading
import time

import pymysql


def connect(host, port):
    return pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def lag_stats(beats, seen_at, args, csv):
    """The lag figures of one observed server; every beat written to `csv` if given."""
    lags = []
    unseen = 0
    out = open(csv, "w") if csv else None
    if out:
        out.write("seq,source_ts_us,seen_us,lag_ms\n")
    for seq, ts_us in beats:
        seen = seen_at.get(seq)
        if seen is None:
            unseen += 1
            if out:
                out.write(f"{seq},{ts_us},,\n")
            continue
        lag_ms = (seen * 1e6 - int(ts_us)) / 1000.0
        lags.append(lag_ms)
        if out:
            out.write(f"{seq},{ts_us},{int(seen * 1e6)},{lag_ms:.3f}\n")
    if out:
        out.close()
    lags.sort()
    return {
        "beats": len(beats),
        "seen": len(lags),
        "unseen": unseen,
        "p50_ms": percentile(lags, 50),
        "p90_ms": percentile(lags, 90),
        "p99_ms": percentile(lags, 99),
        "max_ms": lags[-1] if lags else None,
        "mean_ms": sum(lags) / len(lags) if lags else None,
        "min_ms": lags[0] if lags else None,
        "interval_ms": args.interval_ms,
        "poll_ms": args.poll_ms,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--source-port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--replica-port", type=int,
                    help="also watch this server (a native replica of the source) the same way")
    ap.add_argument("--table", default="bench.heartbeat")
    ap.add_argument("--duration", type=float, required=True, help="seconds of beats")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="time between beats")
    ap.add_argument("--poll-ms", type=float, default=2.0, help="time between target polls")
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="seconds to wait after the last beat for it to appear on the target")
    ap.add_argument("--first-seq", type=int, default=1)
    ap.add_argument("--csv", help="write seq,source_ts_us,seen_us,lag_ms per beat here")
    args = ap.parse_args()

    last_written = args.first_seq - 1
    writer_done = threading.Event()
    writer_error = []

    def writer():
        nonlocal last_written
        try:
            conn = connect(args.host, args.source_port)
            cur = conn.cursor()
            interval = args.interval_ms / 1000.0
            stop_at = time.monotonic() + args.duration
            next_beat = time.monotonic()
            seq = args.first_seq
            while time.monotonic() < stop_at:
                cur.execute(
                    f"INSERT INTO {args.table} (seq, ts_us) "
                    "VALUES (%s, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS UNSIGNED))",
                    (seq,),
                )
                last_written = seq
                seq += 1
                # Keep a steady rate: sleep to the next tick, not a fixed time after the
                # insert (a slow insert under load must not thin out the beats).
                next_beat += interval
                delay = next_beat - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_beat = time.monotonic()
            conn.close()
        except Exception as e:  # reported by main
            writer_error.append(repr(e))
        finally:
            writer_done.set()

    # One watcher per server observed: each polls on its own connection and thread, so a
    # slow server never delays the other's figures.
    watched = {"target": args.target_port}
    if args.replica_port:
        watched["replica"] = args.replica_port
    seen = {name: {} for name in watched}

    def watch(name, port):
        seen_at = seen[name]  # seq -> epoch seconds of the first poll that saw it
        highest_seen = args.first_seq - 1
        conn = connect(args.host, port)
        cur = conn.cursor()
        poll = args.poll_ms / 1000.0
        drain_deadline = None
        while True:
            polled_at = time.time()
            cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {args.table}")
            top = int(cur.fetchone()[0])
            if top > highest_seen:
                for s in range(highest_seen + 1, top + 1):
                    seen_at[s] = polled_at
                highest_seen = top
            if writer_done.is_set():
                if highest_seen >= last_written:
                    break
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + args.drain_timeout
                elif time.monotonic() > drain_deadline:
                    break
            time.sleep(poll)
        conn.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    watchers = [threading.Thread(target=watch, args=(n, p)) for n, p in watched.items()]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join()
    t.join()
    if writer_error:
        print(f"heartbeat writer failed: {writer_error[0]}", file=sys.stderr)
        sys.exit(1)

    # Every beat's source timestamp, read back from the source.
    src = connect(args.host, args.source_port)
    scur = src.cursor()
    scur.execute(
        f"SELECT seq, ts_us FROM {args.table} WHERE seq BETWEEN %s AND %s ORDER BY seq",
        (args.first_seq, last_written),
    )
    beats = scur.fetchall()
    src.close()

    stats = lag_stats(beats, seen["target"], args, args.csv)
    if args.replica_port:
        csv = None
        if args.csv:
            stem, ext = os.path.splitext(args.csv)
            csv = f"{stem}-replica{ext}"
        stats["replica"] = lag_stats(beats, seen["replica"], args, csv)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
