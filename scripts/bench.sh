#!/usr/bin/env bash
# Benchmarks, each printing its figures and failing when it misses its goals.
#
#   scripts/bench.sh              # every benchmark
#   scripts/bench.sh scheduler    # one of them (benches/NAME.rs)
#
# scheduler: DAGs of 10,000 steps on the simulator (paused clock): makespan against the lower
#            bound, CPU overhead and heap per step (benches/scheduler.rs).
# check:     the front end on a generated 10,000-step script (release build): parse, load,
#            check, lint levels, plan, their total, and `orch check` end to end (wall and CPU
#            time); rendering its warnings (human and JSON, wall and CPU time); `orch plan`
#            (text) at 5,000-40,000 steps with peak RSS (benches/check.rs; ORCH_BENCH_STEPS and
#            ORCH_BENCH_RUNS change the size).
# runtime:   on a real clock (benches/runtime.rs): a 20,000-item `parallel for` on the
#            simulator with and without the journal (ratio, syncs per step), a 100,000-item
#            one with the journal (wall, CPU time user + system, peak RSS per item;
#            ORCH_BENCH_ITEMS changes its size), and the simulator's latency against its
#            exact value.
# lsp:       `orch lsp` on a generated 500-line script: time from a change to its
#            diagnostics (wall, and the server's CPU time per change, the judged figure)
#            (benches/lsp.rs; ORCH_BENCH_LINES and ORCH_BENCH_RUNS change the size).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
  for f in benches/*.rs; do benches+=("$(basename "$f" .rs)"); done
fi
# Every benchmark runs and prints its figures even when an earlier one missed a goal; the exit
# status says whether all of them held.
missed=()
for b in "${benches[@]}"; do
  echo "== cargo bench --bench $b"
  cargo bench --locked --bench "$b" || missed+=("$b")
done
if [ ${#missed[@]} -gt 0 ]; then
  echo "== goals missed in: ${missed[*]}"
  exit 1
fi
echo "== every goal held"
