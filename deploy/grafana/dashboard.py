#!/usr/bin/env python3
"""concord's Grafana dashboard, defined here once and written as
deploy/grafana/concord.json (import it in Grafana) and as the ConfigMap the Grafana sidecar
picks up (deploy/kubernetes/base/grafana-dashboard.yaml, label grafana_dashboard: "1").

  deploy/grafana/dashboard.py            write both files
  deploy/grafana/dashboard.py --check    fail if either differs from what this file gives
  deploy/grafana/dashboard.py --exprs    print every panel query, one per line (deploy/check.sh
                                         parses them with promtool)
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
JSON_OUT = HERE / "concord.json"
CONFIGMAP_OUT = HERE.parent / "kubernetes" / "base" / "grafana-dashboard.yaml"

# (title, unit, [(query, legend)]) per row of panels.
ROWS = [
    ("Replication", [
        ("Replication lag", "s", [
            ("max by (pod) (concord_replication_lag_seconds)", "{{pod}}")]),
        ("Changes applied per second, by table", "ops", [
            ("sum by (table) (rate(concord_applied_events_total[5m]))", "{{table}}")]),
        ("Verifier behind its delay", "s", [
            ("max by (pod) (concord_verifier_lag_seconds)", "{{pod}}")]),
        ("Changes verified per second, by table", "ops", [
            ("sum by (table) (rate(concord_verified_total[5m]))", "{{table}}")]),
    ]),
    ("Differences", [
        ("Open mismatches by state", "short", [
            ("sum by (state) (max by (table, state) (concord_open_mismatches))", "{{state}}")]),
        ("Open mismatches by table", "short", [
            ("sum by (table) (max by (table, state) (concord_open_mismatches))", "{{table}}")]),
        ("Mismatches detected (per 5 minutes)", "short", [
            ("sum by (table, kind) (increase(concord_mismatches_detected_total[5m]))",
             "{{table}} {{kind}}")]),
        ("Repairs by mode and outcome (per 5 minutes)", "short", [
            ("sum by (mode, outcome) (increase(concord_repairs_total[5m]))",
             "{{mode}} {{outcome}}")]),
        ("Auto-repair circuit open", "short", [
            ("max(concord_recovery_circuit_open)", "open")]),
    ]),
    ("Refused and skipped", [
        ("Open failed events by table", "short", [
            ("max by (table) (concord_failed_events_open)", "{{table}}")]),
        ("Skipped column values (per 15 minutes)", "short", [
            ("sum by (table, column) (increase(concord_skipped_columns_total[15m]))",
             "{{table}}.{{column}}")]),
        ("Target retries (per 5 minutes)", "short", [
            ("sum by (pod, cause) (increase(concord_apply_retries_total[5m]))",
             "{{pod}} {{cause}}")]),
    ]),
    ("Kafka mode", [
        ("Capture lag and time without publishing", "s", [
            ("max by (pod) (concord_capture_lag_seconds)", "lag {{pod}}"),
            ("max by (pod) (concord_capture_unpublished_seconds)", "unpublished {{pod}}")]),
        ("Published per second, by topic", "ops", [
            ("sum by (topic) (rate(concord_capture_published_total[5m]))", "{{topic}}")]),
        ("Consumer lag by partition", "short", [
            ("sum by (topic, partition) (concord_kafka_consumer_lag)",
             "{{topic}}[{{partition}}]")]),
    ]),
    ("Processes", [
        ("Resident memory", "bytes", [
            ("max by (pod) (process_resident_memory_bytes{job=~\".*concord.*\"})", "{{pod}}")]),
        ("CPU", "percentunit", [
            ("sum by (pod) (rate(process_cpu_seconds_total{job=~\".*concord.*\"}[5m]))",
             "{{pod}}")]),
        ("Roles ready (1) and standby (1)", "short", [
            ("max by (pod, role) (concord_role_ready)", "ready {{pod}} {{role}}"),
            ("max by (pod, role) (concord_role_standby)", "standby {{pod}} {{role}}")]),
        ("Role restarts (per 15 minutes)", "short", [
            ("sum by (pod, role) (increase(concord_role_restarts_total[15m]))",
             "{{pod}} {{role}}")]),
    ]),
]


def dashboard():
    panels = []
    y = 0
    pid = 1
    for row, charts in ROWS:
        panels.append({"type": "row", "title": row, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        for i, (title, unit, queries) in enumerate(charts):
            panels.append({
                "type": "timeseries",
                "title": title,
                "id": pid,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {"refId": chr(ord("A") + n), "expr": q, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for n, (q, legend) in enumerate(queries)
                ],
            })
            pid += 1
        y += 8 * ((len(charts) + 1) // 2)
    return {
        "title": "concord",
        "uid": "concord",
        "tags": ["concord", "replication"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    }


def exprs():
    return [q for _, charts in ROWS for _, _, queries in charts for q, _ in queries]


def rendered():
    text = json.dumps(dashboard(), indent=2) + "\n"
    body = "\n".join("    " + line if line else "" for line in text.rstrip("\n").split("\n"))
    configmap = (
        "# Generated by deploy/grafana/dashboard.py: edit that file, then run it.\n"
        "# The Grafana sidecar (grafana_dashboard label) loads it into Grafana.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: concord-dashboard\n"
        "  labels:\n"
        "    grafana_dashboard: \"1\"\n"
        "data:\n"
        "  concord.json: |\n"
        f"{body}\n"
    )
    return {JSON_OUT: text, CONFIGMAP_OUT: configmap}


def main():
    if sys.argv[1:] == ["--exprs"]:
        print("\n".join(exprs()))
        return
    files = rendered()
    if sys.argv[1:] == ["--check"]:
        stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.exit(f"dashboard.py: {', '.join(stale)} differ from deploy/grafana/dashboard.py; run it")
        return
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
