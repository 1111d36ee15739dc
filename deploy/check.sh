#!/usr/bin/env bash
# Offline checks of what deploy/ holds (run by scripts/test.sh):
#   - the alert rules parse (promtool check rules) and pass their unit tests (promtool test
#     rules: for each alert a series that fires it and one that must not);
#   - the PrometheusRule is exactly what deploy/prometheus/generate.sh makes of the rules;
#   - the Grafana dashboard and its ConfigMap are what deploy/grafana/dashboard.py makes, and
#     every panel's query parses (promtool);
#   - every alert has a severity, a summary, a description and a runbook_url whose section
#     exists in docs/OPERATIONS.md;
#   - the Kubernetes manifests (deploy/kubernetes/check.py: kustomizations resolve, every
#     manifest validates against the Kubernetes schemas or the CRD schemas kept there).
# kubernetes-validate (PyPI) is installed once into a venv under $CONCORD_TOOLS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "deploy/check.sh: $*" >&2; exit 1; }
command -v promtool >/dev/null 2>&1 || fail "promtool is missing (apt-get install prometheus)"

promtool check rules deploy/prometheus/concord-rules.yaml >/dev/null ||
  fail "deploy/prometheus/concord-rules.yaml does not parse (promtool check rules)"
(cd deploy/prometheus && promtool test rules concord-rules.test.yaml) ||
  fail "the alert rules' unit tests failed"
deploy/prometheus/generate.sh --check

# The dashboard: its two files are what dashboard.py gives, and every panel's query parses
# (as a recording rule, which promtool checks like any expression).
python3 deploy/grafana/dashboard.py --check
panels=$(mktemp)
trap 'rm -f "$panels"' EXIT
python3 deploy/grafana/dashboard.py --exprs | awk '
  BEGIN { print "groups:\n  - name: panels\n    rules:" }
  { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "      - record: panel_%d\n        expr: \"%s\"\n", NR, $0 }' >"$panels"
promtool check rules "$panels" >/dev/null || fail "a dashboard panel's query does not parse: promtool check rules $panels"

rules=$(grep -v '^ *#' deploy/prometheus/concord-rules.yaml)
alerts=$(grep -c -- '- alert:' <<<"$rules")
for field in 'severity:' 'summary:' 'description:' 'runbook_url:'; do
  n=$(grep -c -- "$field" <<<"$rules")
  [ "$n" = "$alerts" ] || fail "$alerts alerts but $n with $field"
done
grep -o 'runbook_url: "[^"]*"' deploy/prometheus/concord-rules.yaml | sed 's/.*#\([^"]*\)"/\1/' |
  while read -r anchor; do
    grep -qi "^### ${anchor}\$" docs/OPERATIONS.md ||
      fail "runbook_url #$anchor has no section '### …' in docs/OPERATIONS.md"
  done
echo "deploy/check.sh: alert rules, their tests, the PrometheusRule and the runbook agree"

tools="${CONCORD_TOOLS_DIR:-/var/cache/concord-tools}"
python=python3
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python="$tools/venv/bin/python"
  if ! "$python" -c 'import kubernetes_validate' 2>/dev/null; then
    echo "deploy/check.sh: installing kubernetes-validate into $tools/venv"
    python3 -m venv "$tools/venv" 2>/dev/null || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$tools/venv"
    }
    "$tools/venv/bin/pip" install -q kubernetes-validate
  fi
  export PATH="$tools/venv/bin:$PATH"
fi
"$python" deploy/kubernetes/check.py
