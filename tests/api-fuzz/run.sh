#!/usr/bin/env bash
# Property-based API fuzzing of the gateway's HTTP API with schemathesis: starts the whole suite
# with the demo chain (private PostgreSQL, free ports, a throw-away data folder), then lets
# schemathesis generate requests from /openapi.json, once with a quality manager's token and once
# with a demo guest's, and fails on any server error or any response that breaks the document
# (status code, content type, body schema).
#
#   bash tests/api-fuzz/run.sh            # uses target/debug/guestloop (built if missing)
#   API_FUZZ_EXAMPLES=200 bash tests/api-fuzz/run.sh
#
# schemathesis goes into a virtual environment (API_FUZZ_VENV, default /tmp/guestloop-fuzz-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${API_FUZZ_VENV:-/tmp/guestloop-fuzz-venv}"
examples="${API_FUZZ_EXAMPLES:-60}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"

cargo build --quiet -p guestloop
binary="target/debug/guestloop"

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
data_dir="$(mktemp -d)"
chmod 755 "$data_dir"
export GUESTLOOP_DATA_DIR="$data_dir"
export GUESTLOOP_EMBEDDED_POSTGRES_PORT="$(free_port)"
export GUESTLOOP_PORTS__GATEWAY="$(free_port)"
export GUESTLOOP_PORTS__GATEWAY_HTTP="$(free_port)"
export GUESTLOOP_PORTS__COMPLAINTS="$(free_port)"
export GUESTLOOP_PORTS__CRM="$(free_port)"
export GUESTLOOP_PORTS__FACILITIES="$(free_port)"
export GUESTLOOP_PORTS__AUDIT="$(free_port)"
unset DATABASE_URL GUESTLOOP_DATABASE_URL
base="http://127.0.0.1:${GUESTLOOP_PORTS__GATEWAY_HTTP}"

"$binary" up --demo >"$data_dir/suite.log" 2>&1 &
suite=$!
cleanup() {
  kill -TERM "$suite" 2>/dev/null || true
  wait "$suite" 2>/dev/null || true
  rm -rf "$data_dir"
}
trap cleanup EXIT

for _ in $(seq 1 240); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$suite" 2>/dev/null; then cat "$data_dir/suite.log"; exit 1; fi
  sleep 0.5
done
curl -fsS "$base/openapi.json" >"$data_dir/openapi.json"
echo "api-fuzz: the suite answers on $base"

manager="$("$binary" token --role chain_quality_manager)"
guest="$("$binary" token --role guest --guest demo-guest-0001)"

status=0
for who in manager guest; do
  token="${!who}"
  echo "api-fuzz: schemathesis as $who ($examples examples per operation)"
  "$venv/bin/schemathesis" run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --seed 20261201 \
    --no-color || status=1
done
exit "$status"
