#!/usr/bin/env bash
# Times the front end on a generated 10,000-step script (benches/check.rs, release build):
# parse, load, check, lint levels, plan, their total, and `orch check` end to end.
#
#   scripts/bench.sh                                   # 10,000 steps, 15 runs per figure
#   ORCH_BENCH_STEPS=50000 ORCH_BENCH_RUNS=5 scripts/bench.sh
#
# The target: `orch check` of 10,000 steps under 200 ms on the project's machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench --locked --bench check "$@"
