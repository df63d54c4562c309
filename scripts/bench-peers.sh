#!/usr/bin/env bash
# The side-by-side benchmark (issue 17): orch, LangGraph and a plain asyncio + aiohttp floor
# run the same workloads against one small fake OpenAI-compatible server on loopback, with the
# same concurrency cap and the same latency per call, and a table compares them.
#
#   scripts/bench-peers.sh                          # every workload, every runner
#   scripts/bench-peers.sh --workloads dag-10k      # one workload (dag-1k, dag-10k, fanout-100)
#   scripts/bench-peers.sh --runners orch,floor     # some runners (orch, langgraph,
#                                                   # langgraph-aiohttp, floor)
#   scripts/bench-peers.sh --cap 16 --delay-ms 10   # the defaults
#   scripts/bench-peers.sh --no-stream              # whole answers instead of streamed ones
#   scripts/bench-peers.sh install                  # only create the virtualenv
#
# Workloads (scripts/bench-peers/workloads.py, which also writes the .orch scripts):
#   dag-1k, dag-10k   layered DAGs of 10 and 100 layers of 100 steps; each layer waits for the one
#                     before (a `parallel` block each), each step quotes the step it follows
#   fanout-100        a `parallel for` over 100 items, then a `gather` step quoting all 100
# Runners:
#   orch       `orch run --endpoint URL --max-concurrency CAP` (release build), journal on
#   langgraph  a LangGraph StateGraph, a node per step, `max_concurrency` CAP, no checkpointer,
#              each node calling the model through LangChain's ChatOpenAI (langchain-openai), as
#              LangGraph's own examples do; the runner the goals judge
#   langgraph-aiohttp  the same graph with the floor's bare aiohttp call: the framework's own
#              cost apart from its chat-model client (printed, judged by nothing)
#   floor      asyncio + aiohttp: a semaphore of CAP, `asyncio.gather` per layer
# The fake server (scripts/bench-peers/fake_server.py) waits a fixed delay per call, answers
# with `usage` (streamed or whole), and counts requests and peak calls in flight.
#
# Printed for each workload and runner: steps, requests seen by the server, calls and tokens
# counted by the runner, peak in flight, makespan (at the server: first request to last answer),
# the lower bound and the ratio to it, overhead per step, wall time, CPU time (user + system),
# CPU per step and peak RSS. Exits 0 only when the goals hold: orch's makespan at or below the
# floor's on every workload; on dag-10k orch at least 5x faster than LangGraph with at least
# 30x less CPU. A benchmark, not a test: nothing here runs in `cargo test` or CI.
#
# Python packages (aiohttp, langgraph, langchain-openai, pinned below) go into a virtualenv under
# ${ORCH_BENCH_PEERS_DIR:-~/.cache/orch-bench-peers}, created once and reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir="${ORCH_BENCH_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-bench-peers}"
venv="$dir/venv"
py="$venv/bin/python"
versions="aiohttp==3.14.5 langgraph==1.2.22 langchain-openai==1.8.1"
stamp="$dir/installed.stamp"

log() { printf 'bench-peers: %s\n' "$*" >&2; }

install() {
  mkdir -p "$dir"
  if [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$versions" ] \
    && "$py" -c 'import aiohttp, langgraph, langchain_openai' 2>/dev/null; then
    return 0
  fi
  [ -x "$py" ] || { log "creating virtualenv $venv"; python3 -m venv "$venv"; }
  log "installing $versions (log: $dir/install.log)"
  # shellcheck disable=SC2086
  if ! "$py" -m pip install $versions >"$dir/install.log" 2>&1; then
    log "pip failed; last lines of $dir/install.log:"; tail -n 20 "$dir/install.log" >&2
    return 1
  fi
  echo "$versions" >"$stamp"
}

install
if [ "${1:-}" = install ]; then exit 0; fi

log "building orch (release)"
cargo build --locked --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/orch"
PYTHONDONTWRITEBYTECODE=1 exec "$py" scripts/bench-peers/bench.py --orch "$bin" "$@"
