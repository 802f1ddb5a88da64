#!/usr/bin/env bash
# Fuzz `paligemma serve` from its own OpenAPI document with schemathesis (PyPI): every operation
# gets generated valid and invalid requests; the check is that none is answered with a 5xx
# (503 from a full queue or a shutdown is the only deliberate one, and does not occur here).
#
#   scripts/fuzz_server.sh [MAX_EXAMPLES] [MODEL_DIR]
#
# Needs schemathesis (python3 -m venv /tmp/st && /tmp/st/bin/pip install schemathesis==4.32.5);
# set ST to its `st` command. Builds the debug binary if needed; uses the bundled model by default.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-30}"
model="${2:-Models/shapes-tiny}"
st="${ST:-st}"
swift build --product paligemma >/dev/null
log="$(mktemp)"
.build/debug/paligemma serve --port 0 --model "$model" --max-tokens-limit 64 --default-max-tokens 16 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)"
for _ in $(seq 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
"$st" run "$url/openapi.json" --url "$url" --checks not_a_server_error --max-examples "$examples" --seed 1 \
    --request-timeout 60
