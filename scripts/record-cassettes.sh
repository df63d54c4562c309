#!/usr/bin/env bash
# Records the real-model end-to-end runs (tests/it/e2e_llm.rs) to cassettes in tests/cassettes/:
# for each run, NAME.jsonl (every model exchange, tool call and command, redacted) and
# NAME.run.json (how to replay it and what it printed). `cargo test` replays them all with no
# server (tests/it/cassette.rs), so CI checks the recorded runs in seconds; scripts/test.sh
# still runs the live ones too. Run it again after a change that alters what a run sends
# (a prompt, a tool's description, the request format); commit the result.
#
#   scripts/record-cassettes.sh     # starts the local LLM server if it is not running
#
# Environment: ORCH_LLM_PORT (default 8089), as scripts/llm-server.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Stop the server afterwards only if this script started it, and only that one.
started="$(scripts/llm-server.sh ensure)"
if [ -n "$started" ]; then trap 'scripts/llm-server.sh stop "$started"' EXIT; fi
rm -f tests/cassettes/*.jsonl tests/cassettes/*.run.json tests/cassettes/*.orch
ORCH_E2E_ENDPOINT="$(scripts/llm-server.sh url)" \
ORCH_E2E_RECORD="$PWD/tests/cassettes" \
  cargo test --locked --test it e2e_llm:: -- --include-ignored --test-threads 1
ls -l tests/cassettes
