#!/usr/bin/env bash
# Event delivery throughput: how fast the outbox drains while and after transfers are made.
# Starts walleti (embedded SQLite, in-process bus, or the Redis bus with REDIS_URL set) on a free
# port, runs `walleti loadgen` for DURATION seconds, then waits until every outbox event is
# published, and prints transfers, events, and events per second (load start to drained).
# Usage: scripts/bench-events.sh [path/to/walleti] (default: target/release/walleti)
set -euo pipefail
WALLETI=${1:-target/release/walleti}
DURATION=${DURATION:-10}
USERS=${USERS:-50}
CONCURRENCY=${CONCURRENCY:-32}
MODE=${MODE:-uniform}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
export WALLETI_ADMIN_TOKEN=bench-events-admin-token WALLETI_BIND=127.0.0.1:$PORT RUST_LOG=warn
# loadgen signs its users up from one address.
export WALLETI_SIGNUPS_PER_ADDRESS_PER_HOUR=1000000
export DATABASE_URL=${BENCH_DATABASE_URL:-sqlite://$WORK/walleti.db?mode=rwc}
"$WALLETI" > "$WORK/walleti.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
backlog() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^walleti_outbox_backlog /{print $2}'; }
start=$(date +%s.%N)
"$WALLETI" loadgen --url "http://127.0.0.1:$PORT" --users "$USERS" --concurrency "$CONCURRENCY" \
  --duration-seconds "$DURATION" --mode "$MODE" | tail -4
loaded=$(date +%s.%N)
echo "backlog when the load stopped: $(backlog)"
while [ "$(backlog)" != "0" ]; do sleep 0.2; done
drained=$(date +%s.%N)
events=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^walleti_event_delivery_seconds_count/{n+=$2} END{print n+0}')
python3 - "$start" "$loaded" "$drained" "$events" <<'PY'
import sys
start, loaded, drained, events = map(float, sys.argv[1:])
print(f"events delivered: {int(events)} in {drained-start:.1f} s (load {loaded-start:.1f} s, "
      f"drain after load {drained-loaded:.1f} s): {events/(drained-start):.0f} events/s")
PY
