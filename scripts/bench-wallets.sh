#!/usr/bin/env bash
# Memory with many live wallets, and their passivation. Seeds N accounts straight into a
# fresh PostgreSQL database (signing up N users through the API would mostly measure argon2),
# credits each once through the API (`walleti loadgen --mode credit`: one live wallet per
# account), prints the server's RSS and live wallets, then waits for the idle wallets to
# stop and prints both again.
#
#   scripts/bench-wallets.sh [accounts] [walleti binary]     (default 100000, target/release/walleti)
#
# IDLE_SECONDS (default 20) is the wallets' idle timeout; with IDLE_SECONDS=3600 every wallet
# stays alive through the run (the "100,000 at once" figure) and the script does not wait for
# passivation.
#
# Needs PostgreSQL reachable as PGHOST/PGUSER (default 127.0.0.1 / postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
accounts=${1:-100000}
binary=${2:-target/release/walleti}
idle_seconds=${IDLE_SECONDS:-20}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
port=${BENCH_PORT:-18183}
token=bench-operator-token-0123456789
database=walleti_bench_wallets_$(date +%s)
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  psql -qtAc "DROP DATABASE IF EXISTS $database WITH (FORCE)" postgres >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -qtAc "CREATE DATABASE $database" postgres >/dev/null
url="postgres://$PGUSER@$PGHOST:5432/$database"
DATABASE_URL=$url WALLETI_BIND=127.0.0.1:$port WALLETI_ADMIN_TOKEN=$token \
  WALLETI_RECONCILE_INTERVAL_SECONDS=0 WALLETI_WALLET_IDLE_SECONDS=$idle_seconds RUST_LOG=${RUST_LOG:-warn} \
  "$binary" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
# Accounts owned by (nonexistent) users: what the wallets need is the account row.
psql -qtAc "INSERT INTO accounts (id, owner_type, owner_id, currency, available, locked, version, created_at)
  SELECT gen_random_uuid()::text, 'user', gen_random_uuid()::text, 'usd', 0, 0, 0, now()
  FROM generate_series(1, $accounts)" "$database" >/dev/null
psql -qtAc "SELECT id FROM accounts WHERE owner_type = 'user'" "$database" >"$work/accounts"
metric() { curl -fsS "http://127.0.0.1:$port/metrics" | grep -E "^$1" | awk '{print $2}'; }
echo "server rss before: $(( $(metric process_resident_memory_bytes) / 1048576 )) MiB"
"$binary" loadgen --url "http://127.0.0.1:$port" --admin-token "$token" --mode credit \
  --accounts-file "$work/accounts" --concurrency 64
echo "server rss with $(metric 'walleti_actors_live\{kind="wallet"\}') live wallets: $(( $(metric process_resident_memory_bytes) / 1048576 )) MiB"
[ "$idle_seconds" -gt 300 ] && exit 0
sleep $(( idle_seconds * 2 + 5 ))
echo "after ${idle_seconds}s idle: $(metric 'walleti_actors_live\{kind="wallet"\}') live wallets, rss $(( $(metric process_resident_memory_bytes) / 1048576 )) MiB"
