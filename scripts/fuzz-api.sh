#!/usr/bin/env bash
# Fuzzes the control plane's HTTP API against its own OpenAPI document with schemathesis
# (property-based: it generates valid and invalid requests from the schema and checks
# that no answer is a 5xx, that every answer matches the document, that bad input is
# refused, and that auth is enforced).
#
#   scripts/fuzz-api.sh [MAX_SECONDS]      (default 120)
#
# Starts `gigawatt serve` on a fresh SQLite log on a free loopback port, fuzzes it as the
# admin (the most powerful token reaches the most code), and stops it. Needs python3; it
# installs schemathesis from PyPI into target/fuzz-venv on first use. Set GIGAWATT_BIN to
# fuzz a prebuilt binary.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_SECONDS="${1:-120}"

if [[ -z "${GIGAWATT_BIN:-}" ]]; then
  cargo build --quiet --bin gigawatt
  GIGAWATT_BIN=target/debug/gigawatt
fi

VENV=target/fuzz-venv
if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$GIGAWATT_BIN" serve --fleet fleets/france.toml --db "sqlite://$WORK/fuzz.db" --listen "127.0.0.1:$PORT" \
  2>"$WORK/server.log" &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  grep -q '^admin token:' "$WORK/server.log" 2>/dev/null && break
  sleep 0.1
done
TOKEN="$(sed -n 's/^admin token: //p' "$WORK/server.log")"
[[ -n "$TOKEN" ]] || { echo "the server did not start:"; cat "$WORK/server.log"; exit 1; }
BASE="http://127.0.0.1:$PORT"

# A tenant, so that submissions can succeed and the stateful phase can chain calls.
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"id":"fuzz","name":"Fuzz tenant"}' "$BASE/v1/tenants"

# /v1/events is an endless stream (tested in the Rust suites instead). The
# positive_data_acceptance check is left out: some rules span several fields or the
# caller's role (a tenant token's `tenant`, an admin's required `tenant`, a share of a GPU
# needing `gpus = 1`) and no JSON Schema can say them; such requests get a 422 naming the
# field, which every other check still verifies.
# One worker: with two, hypothesis describes strategies from two threads at once, and
# CPython 3.11's shared AST builder state (python/cpython#106905) then fails with
# "SystemError: AST constructor recursion depth mismatch", a "Runtime Error" in the report
# that failed CI twice in a row on GET /v1/log; it is no failure of the API.
# schemathesis itself sometimes fails inside hypothesis while generating cases ("Runtime
# Error" with no failing request): such a run is retried once with a new seed; a run that
# reports failures of the API is never retried.
fuzz() {
  "$VENV/bin/schemathesis" run "$BASE/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --exclude-path /v1/events \
    --max-time "$MAX_SECONDS" \
    --request-timeout 10 \
    --workers 1 \
    --suppress-health-check too_slow,filter_too_much 2>&1 | tee "$WORK/fuzz.out"
  return "${PIPESTATUS[0]}"
}
status=0
fuzz || status=$?
if [[ $status -ne 0 ]] && ! grep -q '^Failures:' "$WORK/fuzz.out" && grep -q 'Runtime Error' "$WORK/fuzz.out"; then
  echo "== schemathesis failed inside its own generator (no API failure); running it once more"
  status=0
  fuzz || status=$?
fi

# Whatever schemathesis found, the server must still be alive and never have panicked.
curl -fsS -o /dev/null "$BASE/healthz" || { echo "the server died during fuzzing"; status=1; }
if grep -qi 'panicked' "$WORK/server.log"; then
  echo "the server panicked during fuzzing:"; grep -i -A3 'panicked' "$WORK/server.log"; status=1
fi
exit $status
