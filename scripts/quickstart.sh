#!/usr/bin/env bash
# One command to see concord work: starts a local MariaDB source and target
# (`scripts/services.sh databases`: direct mode needs no Kafka broker), creates the demo
# schema `shop` on both, builds concord and runs it in direct mode with
# examples/concord.toml. Ctrl-C stops concord; the servers stay up (`scripts/services.sh
# stop` stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/concord-target}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "quickstart: cargo is needed (https://rustup.rs)" >&2
  exit 1
fi
scripts/services.sh databases

schema="CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS shop.orders (
  id BIGINT PRIMARY KEY,
  customer VARCHAR(100) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  status ENUM('new','paid','shipped') NOT NULL DEFAULT 'new',
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
);"
mariadb -uroot -h127.0.0.1 -P3307 -e "$schema"
# The target also gets concord's audit columns, so you can see which rows it wrote.
mariadb -uroot -h127.0.0.1 -P3308 -e "$schema
ALTER TABLE shop.orders
  ADD COLUMN IF NOT EXISTS concord_replicated TINYINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS concord_source_ts DATETIME NULL;"

cargo build --release -p concord
cat <<'MSG'

concord is starting. In another terminal, write to the source:
  mariadb -uroot -h127.0.0.1 -P3307 -e "INSERT INTO shop.orders (id, customer, amount) VALUES (1, 'ada', 12.50)"
and read the target:
  mariadb -uroot -h127.0.0.1 -P3308 -e "SELECT * FROM shop.orders"
Metrics: curl -s 127.0.0.1:9187/metrics | grep ^concord_
Console: http://127.0.0.1:8080/ (user admin, password concord-demo)

MSG
exec "$CARGO_TARGET_DIR/release/concord" run --config examples/concord.toml
