#!/usr/bin/env bash
# Fuzzes the front end (parse, check, plan, fmt) with cargo-fuzz: fuzz/fuzz_targets/parse_check_fmt.rs.
#
#   scripts/fuzz.sh            # 60 seconds
#   scripts/fuzz.sh 600        # ten minutes
#   scripts/fuzz.sh 600 -jobs=2 -workers=2   # extra arguments go to libFuzzer
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz when it is
# missing. The seed corpus is every .orch file of examples/, stdlib/, tests/ui/,
# tests/fuzz_regressions/ and fuzz/seeds/ (call-heavy scripts), copied into
# fuzz/corpus/parse_check_fmt/ (kept between runs, not committed); the dictionary is
# fuzz/orch.dict. Crashes land in fuzz/artifacts/parse_check_fmt/: minimise one with
#   cargo +nightly fuzz tmin parse_check_fmt fuzz/artifacts/parse_check_fmt/crash-...
# (run from the repository root), fix it, and add it to tests/fuzz_regressions/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

corpus=fuzz/corpus/parse_check_fmt
mkdir -p "$corpus"
# Seeds are named after their content, so re-running adds nothing twice.
while IFS= read -r -d '' f; do
  sum="$(sha1sum "$f" | cut -c1-40)"
  cp "$f" "$corpus/seed-$sum"
done < <(find examples stdlib tests/ui tests/fuzz_regressions fuzz/seeds -name '*.orch' -print0 2>/dev/null)

exec cargo +nightly fuzz run parse_check_fmt "$corpus" -- \
  -dict=fuzz/orch.dict -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@"
