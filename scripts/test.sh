#!/usr/bin/env bash
# The test command: starts the test servers if they are not running, builds the binary the
# end-to-end tests drive, and runs every test of the workspace against the real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/concord-target}"

scripts/services.sh start
cargo build -p concord
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
