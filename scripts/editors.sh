#!/usr/bin/env bash
# Build and check the editor packages in editors/ (docs/editors.md):
#   - editors/vscode: installs its npm packages (`npm ci`, from the committed
#     package-lock.json), runs its tests (test/grammar.test.js tokenises every example, stdlib
#     file and orch block of docs/language.md and README.md with the TextMate grammar;
#     test/client.test.js checks the client that starts `orch lsp`), and packages the
#     extension with vsce into editors/vscode/orch.vsix (not committed);
#   - editors/tree-sitter-orch: installs the tree-sitter CLI, regenerates the parser from
#     grammar.js and fails when the committed src/ was out of date, runs `tree-sitter test`
#     (test/corpus: the parse trees of every example and stdlib file; test/highlight and
#     test/tags: assertions on the queries), and
#     parses every example, stdlib file and orch block of docs/language.md and README.md,
#     failing on any ERROR or MISSING node; compiles every query, and checks that Helix's
#     copies (editors/helix/queries, node editors/helix/gen-queries.js) are up to date.
# Quiet on success; on a failure it prints the failing step's output and exits non-zero.
# Idempotent: installs that are already there (same lock file, same CLI version) are reused.
#
#   scripts/editors.sh           # install what is missing, build and check everything
#   scripts/editors.sh corpus    # rewrite editors/tree-sitter-orch/test/corpus/examples.txt
#                                # from the current parses (then review the diff)
#
# The tree-sitter CLI is built from crates.io (`cargo install tree-sitter-cli`, without its
# QuickJS runtime: node evaluates grammar.js), as the npm package `tree-sitter-cli` downloads
# its binary from GitHub at install time. It goes to $ORCH_EDITORS_DIR (default
# ~/.cache/orch-editors, shared by every checkout on the machine). Needs node + npm, cargo and
# a C compiler.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

ts_version="0.26.8"
dir="${ORCH_EDITORS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-editors}"
ts_root="$dir/tree-sitter-cli-$ts_version"
ts="$ts_root/bin/tree-sitter"
vscode="$root/editors/vscode"
grammar="$root/editors/tree-sitter-orch"
mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Messages go to the caller's stderr (fd 3) even from inside a step, whose output is captured.
exec 3>&2
log() { printf 'editors: %s\n' "$*" >&3; }
# Runs a step with its output in a file, shown only when it fails.
step() {
  local name="$1"
  shift
  if ! "$@" >"$work/out" 2>&1; then
    log "$name failed:"
    cat "$work/out" >&2
    exit 1
  fi
}

for tool in node npm cargo cc; do
  command -v "$tool" >/dev/null || { log "$tool is not installed (docs/editors.md, \"Building\")"; exit 1; }
done

# ---------------------------------------------------------------- tools
install_npm() {
  local marker="$vscode/node_modules/.orch-lock-$(sha256sum "$vscode/package-lock.json" | cut -c1-16)"
  [ -f "$marker" ] && return 0
  log "installing the VS Code extension's npm packages (npm ci)"
  (cd "$vscode" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  touch "$marker"
}
install_tree_sitter() {
  [ -x "$ts" ] && "$ts" --version 2>/dev/null | grep -q " $ts_version\b" && return 0
  log "building tree-sitter-cli $ts_version (cargo install, once; log: $dir/install.log)"
  # A debug build without debug info: half the CPU time of a release build (150 s against
  # 330 s, measured), and the grammar is small enough that the CLI's speed does not matter.
  CARGO_TARGET_DIR="$dir/target" CARGO_PROFILE_DEV_DEBUG=0 cargo install --locked --quiet \
    --debug --no-default-features --root "$ts_root" "tree-sitter-cli@$ts_version" \
    >>"$dir/install.log" 2>&1 || return 1
  rm -rf "$dir/target"
  [ -x "$ts" ]
}
step "npm ci (editors/vscode)" install_npm
step "cargo install tree-sitter-cli@$ts_version (see $dir/install.log)" install_tree_sitter

# The files every check reads: the examples, the standard library, and the orch blocks of
# docs/language.md and README.md (each written to its own file, named after its line).
mkdir -p "$work/docs"
node - "$work/docs" "$root/docs/language.md" "$root/README.md" <<'JS'
const fs = require('fs');
const path = require('path');
const [out, ...docs] = process.argv.slice(2);
for (const doc of docs) {
  const text = fs.readFileSync(doc, 'utf8');
  for (const m of text.matchAll(/^```orch\n([\s\S]*?)^```/gm)) {
    const line = text.slice(0, m.index).split('\n').length + 1;
    fs.writeFileSync(`${out}/${path.basename(doc)}-line-${line}.orch`, m[1]);
  }
}
JS
sources=("$root"/examples/*.orch "$root"/stdlib/*.orch)

# The corpus: one test per example and stdlib file, its expected tree the current parse.
write_corpus() {
  local out="$grammar/test/corpus/examples.txt" f rel
  {
    for f in "${sources[@]}"; do
      rel="${f#"$root"/}"
      printf '================================================================================\n%s\n================================================================================\n\n' "$rel"
      cat "$f"
      printf '\n--------------------------------------------------------------------------------\n\n'
      (cd "$grammar" && "$ts" parse --no-ranges "$f" 2>/dev/null || true) | sed -e '/^$/d'
      printf '\n'
    done
  } >"$work/corpus"
  mv "$work/corpus" "$out"
}

# ---------------------------------------------------------------- tree-sitter
generate() {
  local before after
  before="$(cd "$grammar" && cat src/parser.c src/grammar.json src/node-types.json 2>/dev/null | sha256sum)"
  (cd "$grammar" && "$ts" generate) || return 1
  after="$(cd "$grammar" && cat src/parser.c src/grammar.json src/node-types.json | sha256sum)"
  if [ "$before" != "$after" ]; then
    echo "editors/tree-sitter-orch/src was out of date with grammar.js: regenerated it; commit the new src/"
    return 1
  fi
}
ts_test() { (cd "$grammar" && "$ts" test); }
corpus_covers_sources() {
  local f rel missing=0
  for f in "${sources[@]}"; do
    rel="${f#"$root"/}"
    grep -qxF "$rel" "$grammar/test/corpus/examples.txt" || { echo "test/corpus/examples.txt has no test for $rel"; missing=1; }
  done
  [ "$missing" = 0 ] || echo "rewrite it with: scripts/editors.sh corpus"
  [ "$missing" = 0 ]
}
parse_all() {
  # `parse` prints the files with an ERROR or MISSING node and exits non-zero.
  (cd "$grammar" && "$ts" parse --quiet "${sources[@]}" "$work"/docs/*.orch)
}

# The grammar's reserved words are the keyword rule of grammar/orch.pest.
keywords() {
  node - "$root/grammar/orch.pest" "$grammar/grammar.js" <<'JS'
const fs = require('fs');
const [pest, js] = process.argv.slice(2).map((f) => fs.readFileSync(f, 'utf8'));
const rule = /^keyword\s*=\s*@\{([\s\S]*?)\}\s*$/m.exec(pest);
const list = /const RESERVED = \[([\s\S]*?)\];/.exec(js);
if (!rule || !list) throw new Error('no keyword rule in grammar/orch.pest or no RESERVED in grammar.js');
const want = [...rule[1].matchAll(/"([a-z_]+)"/g)].map((m) => m[1]).sort();
const have = [...list[1].matchAll(/'([a-z_]+)'/g)].map((m) => m[1]).sort();
if (want.join() !== have.join()) {
  console.error(`grammar.js RESERVED is [${have}], grammar/orch.pest's keywords are [${want}]`);
  process.exit(1);
}
JS
}

# Every query compiles against the grammar (node names, fields, predicates), the Helix copies
# included, and those are up to date.
queries() {
  local q
  for q in "$grammar"/queries/*.scm "$root"/editors/helix/queries/orch/*.scm; do
    (cd "$grammar" && "$ts" query "$q" "$root/examples/fan_out.orch" >/dev/null) || { echo "in $q"; return 1; }
  done
  node "$root/editors/helix/gen-queries.js" --check
}

if [ "${1:-}" = "corpus" ]; then
  step "tree-sitter generate" generate
  write_corpus
  log "wrote editors/tree-sitter-orch/test/corpus/examples.txt"
  exit 0
fi

step "the reserved words of grammar.js against grammar/orch.pest" keywords
step "tree-sitter generate (editors/tree-sitter-orch)" generate
step "the corpus covers every example" corpus_covers_sources
step "tree-sitter test (editors/tree-sitter-orch)" ts_test
step "tree-sitter parse of every example, stdlib file and orch block of the docs" parse_all
step "the tree-sitter queries (editors/tree-sitter-orch/queries, editors/helix)" queries

# ---------------------------------------------------------------- VS Code
step "the TextMate grammar test (editors/vscode/test/grammar.test.js)" node "$vscode/test/grammar.test.js"
step "the client test (editors/vscode/test/client.test.js)" node "$vscode/test/client.test.js"
package() {
  (cd "$vscode" && npx --no-install vsce package --skip-license --allow-missing-repository --out orch.vsix) || return 1
  [ -s "$vscode/orch.vsix" ]
}
step "vsce package (editors/vscode)" package
