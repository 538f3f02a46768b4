#!/usr/bin/env bash
# Fuzzes walleti's published OpenAPI document with schemathesis, as a user, as a merchant
# session and as a merchant API key: no answer may be a server error, and every status the
# server gives must be documented. Usage: scripts/schemathesis.sh [path/to/walleti]
set -euo pipefail
cd "$(dirname "$0")/.."

walleti="${1:-${CARGO_TARGET_DIR:-target}/debug/walleti}"
if ! command -v st >/dev/null 2>&1; then
  echo "schemathesis: installing it (pip install schemathesis)"
  pip3 install -q schemathesis
fi

workdir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin="schemathesis-operator-token-0123456789"
DATABASE_URL="sqlite://$workdir/walleti.db?mode=rwc" WALLETI_BIND="127.0.0.1:$port" \
  WALLETI_ADMIN_TOKEN="$admin" RUST_LOG=error "$walleti" serve >"$workdir/walleti.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  sleep 0.1
done

token() { # url, body, field
  curl -fsS -XPOST "$1" -H 'Content-Type: application/json' -d "$2" |
    python3 -c "import json, sys; print(json.load(sys.stdin)['$3'])"
}
curl -fsS -XPOST "$base/v1/users" -H 'Content-Type: application/json' \
  -d '{"email":"ada@example.com","phone":"+14155550101","name":"Ada","password":"correct horse 1"}' >/dev/null
user=$(token "$base/v1/sessions" '{"login":"ada@example.com","password":"correct horse 1"}' token)
curl -fsS -XPOST "$base/v1/merchants" -H 'Content-Type: application/json' \
  -d '{"name":"Corner Shop","email":"shop@example.com","password":"merchant pass 1"}' >/dev/null
merchant=$(token "$base/v1/merchants/sessions" '{"email":"shop@example.com","password":"merchant pass 1"}' token)
key=$(curl -fsS -XPOST "$base/v1/merchants/api_keys" -H "Authorization: Bearer $merchant" \
  -H 'Content-Type: application/json' -d '{"name":"schemathesis"}' |
  python3 -c "import json, sys; print(json.load(sys.stdin)['secret'])")

status=0
for caller in user merchant key; do
  echo "schemathesis: as the $caller"
  st run "$base/openapi.json" -H "Authorization: Bearer ${!caller}" \
    --checks not_a_server_error,status_code_conformance \
    --phases examples,coverage,fuzzing --max-examples 20 --warnings off || status=1
done
exit $status
