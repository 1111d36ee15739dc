#!/usr/bin/env bash
# The test command: starts the test servers if they are not running, builds the binary the
# end-to-end tests drive, and runs every test of the workspace against the real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/concord-target}"

# What only the tests use, from Debian: pt-online-schema-change for the online schema
# change tests, Chromium and chromedriver for the console's browser test (its WebDriver
# client builds against OpenSSL).
need=()
command -v pt-online-schema-change >/dev/null 2>&1 || need+=(percona-toolkit)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
# deploy/check.sh tests the alert rules with promtool.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "test: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

deploy/check.sh
scripts/services.sh start
cargo build -p concord
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
