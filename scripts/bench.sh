#!/usr/bin/env bash
# Throughput of walleti held against PostgreSQL's own TPC-B (pgbench: a bank transfer done the
# classic way, row locks and one commit per transfer) on the same machine, back to back, so
# the ratios mean something on a machine whose speed drifts. Prints one table.
#
#   scripts/bench.sh [seconds] [walleti binary]      (default 20 s, target/release/walleti)
#
# Runs, each against a fresh database:
#   pgbench TPC-B scale 10, 64 clients (uniform) and scale 1, 32 clients (every transfer hits
#   one branch row: hot);
#   walleti on PostgreSQL (synchronous commit), uniform P2P with 64 in flight and hot (every
#   payer pays one user) with 32 in flight; walleti on SQLite (the embedded default), uniform.
# walleti is driven over HTTP by `walleti loadgen` (BENCH_USERS users, default 200; bearer auth,
# an Idempotency-Key on every transfer), which also prints the server's CPU per transfer, its
# RSS, the database transactions per transfer, any errors by HTTP status, and checks
# conservation after each run. 200 users, not 100: each user may move money 50 times a second
# (burst 100; `Limits::money_quota`), and at ≈5,000 uniform transfers/s 100 users ran into it
# (429s). Where this script can read the local PostgreSQL's processes in /proc, it also prints
# PostgreSQL's CPU per transaction (pgbench) or per transfer (walleti), and the load
# generator's CPU per transfer, over the timed phase only: all three share the machine's cores.
# LOADGEN=path drives the load with another build's loadgen (e.g. against an older server).
# BENCH_RUNS picks runs (default: pgbench pg_uniform pg_hot sqlite_uniform), e.g.
# BENCH_RUNS=pg_uniform for an A/B of two builds; BENCH_SERVER_ENV="NAME=value …" is passed to
# the server's environment.
# Needs: PostgreSQL reachable as PGHOST/PGUSER (default 127.0.0.1 / postgres), pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
binary=${2:-target/release/walleti}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
# Both sides talk to the local server in plain text: walleti does by default on loopback
# (src/store/mod.rs, plain_on_loopback), and so does pgbench here.
export PGSSLMODE=${PGSSLMODE:-disable}
port=${BENCH_PORT:-18181}
token=bench-operator-token-0123456789
users=${BENCH_USERS:-200}
runs=" ${BENCH_RUNS:-pgbench pg_uniform pg_hot sqlite_uniform} "
selected() { [[ "$runs" == *" $1 "* ]]; }
pgbench=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)
[ -x "$binary" ] || { echo "no walleti binary at $binary (cargo build --release)"; exit 2; }
[ -x "$pgbench" ] || { echo "pgbench not found (Debian package postgresql-contrib)"; exit 2; }
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# CPU seconds spent so far by the local PostgreSQL (its live processes and those it reaped);
# nothing when they cannot be read.
postgres_seconds() {
  local postmaster
  postmaster=$(pgrep -o -x postgres 2>/dev/null) || return 0
  [ -r "/proc/$postmaster/stat" ] || return 0
  {
    for pid in $(pgrep -x postgres); do awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null; done
    awk '{ print $16 + $17 }' "/proc/$postmaster/stat"
  } | awk -v hz="$(getconf CLK_TCK)" '{ ticks += $1 } END { print ticks / hz }'
}

# CPU seconds a live process has spent so far (its threads included); nothing if unreadable.
process_seconds() { # pid
  [ -r "/proc/$1/stat" ] || return 0
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# Waits until the load generator's output has the line (it prints `load: started` and
# `load: finished` around the timed phase), or it has exited.
await_line() { # file line pid
  until grep -qx "$2" "$1" 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || return 0
    sleep 0.05
  done
}

per_unit() { # seconds_before seconds_after units -> µs of CPU per unit, or nothing
  [ -n "$1" ] && [ -n "$2" ] && [ -n "$3" ] || return 0
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.0f", (b - a) / n * 1e6 }'
}

baseline() { # database scale clients -> tps (and $work/<database>.pgcpu)
  local before after out
  psql -qtAc "DROP DATABASE IF EXISTS $1" postgres >/dev/null
  psql -qtAc "CREATE DATABASE $1" postgres >/dev/null
  "$pgbench" -q -i -s "$2" "$1" >/dev/null 2>&1
  before=$(postgres_seconds)
  out=$("$pgbench" -c "$3" -j 2 -T "$seconds" "$1" 2>/dev/null)
  after=$(postgres_seconds)
  per_unit "$before" "$after" \
    "$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")" \
    >"$work/$1.pgcpu"
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out"
}

walleti() { # name database_url mode concurrency [pg database url for statistics]
  local name=$1 url=$2 mode=$3 concurrency=$4 statistics=${5:-}
  env ${BENCH_SERVER_ENV:-} DATABASE_URL=$url WALLETI_BIND=127.0.0.1:$port WALLETI_ADMIN_TOKEN=$token WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR=1000000 \
    WALLETI_RECONCILE_INTERVAL_SECONDS=0 RUST_LOG=warn "$binary" >"$work/$name.server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local before after transfers loadgen loadgen_before loadgen_after
  "${LOADGEN:-$binary}" loadgen --url "http://127.0.0.1:$port" --admin-token "$token" --users "$users" \
    --concurrency "$concurrency" --duration-seconds "$seconds" --mode "$mode" \
    ${statistics:+--database-url "$statistics"} >"$work/$name.out" &
  loadgen=$!
  # PostgreSQL's and the load generator's CPU over the timed phase only (not the users' set-up).
  await_line "$work/$name.out" "load: started" "$loadgen"
  before=$(postgres_seconds)
  loadgen_before=$(process_seconds "$loadgen")
  await_line "$work/$name.out" "load: finished" "$loadgen"
  after=$(postgres_seconds)
  loadgen_after=$(process_seconds "$loadgen")
  wait "$loadgen"
  tee <"$work/$name.out" >&2
  # Transfers, as the load generator counts them for the server's CPU per transfer.
  transfers=$(sed -n 's/^server cpu: \([0-9.]*\) s = \([0-9]*\) µs per transfer.*/\1 \2/p' "$work/$name.out" |
    awk '$2 > 0 { printf "%.0f", $1 / $2 * 1e6 }')
  if [ -n "$statistics" ]; then per_unit "$before" "$after" "$transfers" >"$work/$name.pgcpu"; fi
  per_unit "$loadgen_before" "$loadgen_after" "$transfers" >"$work/$name.lgcpu"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
}

field() { # file pattern -> first number after it
  sed -n "s/.*$2\([0-9.]*\).*/\1/p" "$1" | head -1
}

uniform_tps= hot_tps=
if selected pgbench; then
  echo "pgbench baseline, $seconds s each ..." >&2
  uniform_tps=$(baseline walleti_baseline_s10 10 64)
  hot_tps=$(baseline walleti_baseline_s1 1 32)
fi

stamp=$(date +%s)
for run in pg_uniform:uniform:64 pg_hot:hot:32; do
  IFS=: read -r name mode concurrency <<<"$run"
  selected "$name" || continue
  database=walleti_bench_${name}_$stamp
  psql -qtAc "CREATE DATABASE $database" postgres >/dev/null
  url="postgres://$PGUSER@$PGHOST:5432/$database"
  echo "walleti $name ..." >&2
  walleti "$name" "$url" "$mode" "$concurrency" "$url"
  psql -qtAc "DROP DATABASE IF EXISTS $database WITH (FORCE)" postgres >/dev/null || true
done
if selected sqlite_uniform; then
  echo "walleti sqlite_uniform ..." >&2
  walleti sqlite_uniform "sqlite://$work/bench.db?mode=rwc" uniform 64
fi

row() { # label file baseline
  [ -f "$2" ] || return 0
  local tps p50 p99 cpu xact rss postgres loadgen
  tps=$(field "$2" "throughput: ")
  p50=$(field "$2" "p50=")
  p99=$(field "$2" "p99=")
  cpu=$(sed -n 's/.*s = \([0-9]*\) µs per transfer.*/\1/p' "$2")
  xact=$(sed -n 's/.*transactions = \([0-9.]*\) per transfer.*/\1/p' "$2")
  rss=$(field "$2" "server rss: ")
  postgres=$(cat "${2%.out}.pgcpu" 2>/dev/null || true)
  loadgen=$(cat "${2%.out}.lgcpu" 2>/dev/null || true)
  ratio=$(awk -v a="$tps" -v b="${3:-0}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$tps" "$ratio" "$p50" "$p99" \
    "${cpu:--}" "${postgres:--}" "${loadgen:--}" "${xact:--}" "${rss:--}"
}

echo
echo "| run | transfers/s | vs pgbench | p50 ms | p99 ms | server µs CPU/transfer | PostgreSQL µs CPU/transfer | load generator µs CPU/transfer | db xacts/transfer | server RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
if selected pgbench; then
  printf '| pgbench TPC-B scale 10, 64 clients (uniform) | %s | 1.00× | | | | %s | | 1 | |\n' "$uniform_tps" \
    "$(cat "$work/walleti_baseline_s10.pgcpu" 2>/dev/null || true)"
  printf '| pgbench TPC-B scale 1, 32 clients (hot row) | %s | 1.00× | | | | %s | | 1 | |\n' "$hot_tps" \
    "$(cat "$work/walleti_baseline_s1.pgcpu" 2>/dev/null || true)"
fi
row "walleti PostgreSQL uniform, 64 in flight" "$work/pg_uniform.out" "$uniform_tps"
row "walleti PostgreSQL hot, 32 in flight" "$work/pg_hot.out" "$hot_tps"
row "walleti SQLite uniform, 64 in flight" "$work/sqlite_uniform.out" "$uniform_tps"
grep -h "conservation" "$work"/*.out >&2
