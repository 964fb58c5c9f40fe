#!/usr/bin/env bash
# Runs the Socket.IO tests (*.sio.mjs) against sigyard's webRTWorkspaces and MewConnect v1
# dialects served by Node's socket.io 2.5 (bridge-server.mjs), i.e. without sigyard's own
# Socket.IO layer. Needs `npm install` in tests/npm. Extra arguments go to `node --test`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
(cd "$root" && cargo build --quiet --example sio_dialects_stdio)
export MAGICK_TOKEN="${MAGICK_TOKEN:-bridge-test-secret}" SALT_STRING="${SALT_STRING:-bridge-test-pepper}"
out="$(mktemp)"
node "$here/bridge-server.mjs" 0 >"$out" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do
  grep -q '^PORT=' "$out" && break
  sleep 0.1
done
port="$(sed -n 's/^PORT=//p' "$out")"
[ -n "$port" ] || { cat "$out"; echo "bridge did not start" >&2; exit 1; }
cd "$here/.."
SIGYARD_URL="ws://127.0.0.1:$port" node --test "$@" socketio/workspaces.sio.mjs socketio/mewv1.sio.mjs
