#!/usr/bin/env bash
# Validates this test suite against the ORIGINAL relay servers shipped on npm (see README.md):
# for each reference server it starts reference-server.mjs on an ephemeral 127.0.0.1 port, runs
# every test file with SIGYARD_URL pointed at it, stops it, then prints a pass/fail matrix and
# checks the tests that server is expected to pass (exit 1 if one of those fails).
#   bash tests/npm/run-reference.sh            # all of relay4, relay3, relay3-as-A
#   bash tests/npm/run-reference.sh relay4     # just one
# Logs (spec + TAP per server and file) go to $REFERENCE_LOG_DIR or a fresh temp dir.
set -uo pipefail
cd "$(dirname "$0")"

# `npm install`, not `npm ci`: see README ("Installing") for why.
[ -d node_modules ] || npm install --no-audit --no-fund

LOG_DIR=${REFERENCE_LOG_DIR:-$(mktemp -d -t sigyard-npm-ref.XXXXXX)}
mkdir -p "$LOG_DIR"
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=(relay4 relay3 relay3-as-A)
FILES=(relay4.test.mjs relay3.test.mjs cevitxe.test.mjs scenarios.test.mjs)

# Tests each reference is expected to pass: its own client, its own introduction dialect, and
# the pipe behaviour it gets right. Everything else is informative (see README for why).
PIPE_OK='^pipe: (two peers are piped|closing one end|frame type preserved while piped)'
declare -A EXPECT=(
  [relay4]="^relay 4\.x clients:|^dialect C:|$PIPE_OK"
  [relay3]="^relay-client 3\.x:|^dialect B:|$PIPE_OK"
  [relay3-as-A]="^cevitxe-signal-client|^dialect A:|$PIPE_OK"
)

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=
}
trap stop_server EXIT

SPECS=()
for server in "${SERVERS[@]}"; do
  [ -n "${EXPECT[$server]:-}" ] || { echo "unknown reference server: $server" >&2; exit 2; }
  out="$LOG_DIR/$server.server.log"
  NODE_NO_WARNINGS=1 node reference-server.mjs "$server" >"$out" 2>&1 &
  SERVER_PID=$!
  port=
  for _ in $(seq 1 100); do # up to 10 s
    port=$(sed -n 's/^PORT=//p' "$out")
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    echo "!! $server did not start; log:" >&2
    cat "$out" >&2
    stop_server
    exit 2
  fi
  echo "=== $server on ws://127.0.0.1:$port"
  for f in "${FILES[@]}"; do
    echo "--- $server: $f"
    SIGYARD_URL="ws://127.0.0.1:$port" NODE_NO_WARNINGS=1 timeout 300 node --test \
      --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter=tap --test-reporter-destination="$LOG_DIR/${server}__${f%.test.mjs}.tap" \
      "$f" 2>&1 | tee "$LOG_DIR/${server}__${f%.test.mjs}.spec.log" | grep -E '^\s*(✔|✖) ' | grep -v '^✖ failing tests' \
      | awk '{ k = $0; sub(/^[ \t]+/, "", k) } !seen[k]++'
  done
  stop_server
  SPECS+=("$server=${EXPECT[$server]}")
done

echo
echo "=== reference matrix (logs in $LOG_DIR)"
node lib/reference-summary.mjs "$LOG_DIR" "${SPECS[@]}"
