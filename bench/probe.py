#!/usr/bin/env python3
"""A writer that shows whether the source stays writable: it updates one random row of
the sysbench tables every --pause seconds, each statement on its own (autocommit), and
times every statement. On SIGTERM it prints one JSON object: statements, the longest wait
and the 99th percentile, in milliseconds.
"""

import argparse
import json
import random
import signal
import sys
import time

import pymysql


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tables", type=int, default=4)
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--pause", type=float, default=0.01)
    a = p.parse_args()
    conn = pymysql.connect(host="127.0.0.1", port=a.port, user="root", password="",
                           database="sbtest", autocommit=True)
    waits = []
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with conn.cursor() as c:
        while not stop:
            table = random.randint(1, a.tables)
            row = random.randint(1, a.rows)
            t0 = time.monotonic()
            c.execute(f"UPDATE sbtest{table} SET k = k + 1 WHERE id = %s", (row,))
            waits.append(time.monotonic() - t0)
            time.sleep(a.pause)
    waits.sort()
    p99 = waits[int(len(waits) * 0.99)] if waits else 0.0
    json.dump({"statements": len(waits), "max_ms": round(max(waits, default=0) * 1000, 1),
               "p99_ms": round(p99 * 1000, 1)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
