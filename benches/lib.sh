# benches/lib.sh: what the whole-server benchmark drivers (benches/compare, benches/syscalls)
# share. Sourced, not run. Expects WORK (a scratch directory) to be set by the caller.

SERVER_PID=

log() { echo "== $*" >&2; }

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=
}

# cleanup: the EXIT trap of a driver: the server, any other child still running (a timed-out
# load run, a build, perf), and the scratch directory.
cleanup() {
  stop_server
  local p
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  rm -rf "$WORK"
}

cpu_ticks() { # utime + stime of PID (all threads), from /proc/PID/stat
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  awk '{ print $12 + $13 }' <<<"$rest"
}

sys_ticks() { # stime of PID (all threads): its time in the kernel, softirq work it ran included
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  awk '{ print $13 }' <<<"$rest"
}

# start_server NAME LOGFILE CMD...: run CMD pinned to core 0, wait for its port (PORT=<n> on
# stdout, or sigyard's "listening on 127.0.0.1:<n>" log line); sets SERVER_PID and PORT.
start_server() {
  local name=$1 out=$2
  shift 2
  taskset -c 0 "$@" >"$out" 2>&1 &
  SERVER_PID=$!
  PORT=
  for _ in $(seq 1 150); do # up to 15 s
    PORT=$(sed -n -e 's/^PORT=\([0-9]*\).*/\1/p' -e 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$PORT" ]; then
    echo "$(basename "$0"): $name did not start; its output:" >&2
    cat "$out" >&2
    stop_server
    return 1
  fi
  sleep 0.5 # let a runtime finish warming up (JIT, lazy init) before the RSS baseline
  log "$name on ws://127.0.0.1:$PORT (pid $SERVER_PID, core 0)"
}
