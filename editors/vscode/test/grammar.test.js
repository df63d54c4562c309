// Tokenises every `.orch` file of the repository's examples/ and stdlib/, the ```orch blocks
// of docs/language.md and README.md and the snippets below with the TextMate grammar
// (syntaxes/orch.tmLanguage.json), through vscode-textmate and vscode-oniguruma (the engine
// VS Code itself uses), and checks the scopes against an independent scan of the text:
//
// - every character of a comment is a comment (`///` lines a documentation comment), every
//   character of a string is a string, escapes are escapes and `{name.field}` is an
//   interpolation;
// - no non-blank character outside them is left with no scope but `source.orch`, and none is
//   `invalid.illegal`;
// - every reserved word of grammar/orch.pest (its `keyword` rule, read from the file) gets a
//   keyword scope (`keyword.*`, `storage.*`, `constant.language.*`), unless it is a field key
//   (`model: haiku`), which gets the property scope;
// - option words in `< >`, `gather` policies, durations, money, numbers, model tiers,
//   declared names, step names and calls get their scopes.
//
// Run: `node test/grammar.test.js` (scripts/editors.sh runs it). Exits non-zero, listing the
// failures (file:line:column, the text and its scopes), when a check fails.
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const root = path.resolve(__dirname, '..', '..', '..');
const grammarPath = path.join(__dirname, '..', 'syntaxes', 'orch.tmLanguage.json');

// The reserved words, from the grammar itself, so a keyword added there is checked here.
const pest = fs.readFileSync(path.join(root, 'grammar', 'orch.pest'), 'utf8');
const keywordRule = /^keyword\s*=\s*@\{([\s\S]*?)\}\s*$/m.exec(pest);
if (!keywordRule) throw new Error('grammar/orch.pest has no `keyword = @{ ... }` rule');
const RESERVED = [...keywordRule[1].matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
if (RESERVED.length < 20) throw new Error(`read only ${RESERVED.length} keywords from grammar/orch.pest`);
// The option words (`kw_max` ... of the `option` rules) and the `gather` policies.
const OPTION_WORDS = ['max_turns', 'max', 'retry', 'timeout', 'deadline', 'fallback', 'budget'];
for (const w of [...OPTION_WORDS, 'batch']) {
  if (!pest.includes(`"${w}" ~ !ident_char`)) throw new Error(`grammar/orch.pest has no option word ${w}`);
}

// Snippets for what the examples do not show (each a valid program fragment).
const SNIPPETS = `
/* a block comment /* nested */ still a comment */
include "lib/review.orch" as rv
provider local { kind: openai, base_url: "http://127.0.0.1:8080/v1" }
model tiny { provider: local, tier: deep, price: { input: 0, output: 0 } }
mcp fs { command: ["npx", "server"], env: { TOKEN: "x" } }
agent deploy(version: text, approved: bool) { run: ["./deploy.sh", "{version}"], on_truncated: fail }
agent helper { model: tiny, complexity: high, tools: [read, exec("cargo test"), fs.*, agent(deploy)], deadline: 1h }
workflow pattern(lead: agent, team: list<agent>, n: number = 3) -> { ok: bool, notes: list<text> } {
  x = lead("go")
  return x
}
workflow main(items: list<text>, flag: bool = false) -> text <budget $0.50, max_turns 4, retry 1, timeout 500ms, deadline 2m, fallback tiny> {
  a = helper<tiny, max 2>("Do {items} with {{braces}} and \\"quotes\\"\\n")
  b = rv.reviewer(task: """
    Multi-line {a.notes}
    """, n: 2)
  per = parallel <batch, max 3> for item in items {
    one = helper("{item}") after a, b
  }
  gather <first 2> c = helper("c")
  gather <all> d = helper("d")
  then { e = helper("e") }
  repeat <
    max 3
  > {
    r = helper("again") -> { approved: bool, score: number }
  } until r.approved and not (r.score < 2 or r.score >= 9.5) else fail
  if a == "yes" { f = approve<timeout 30m>("ok?") } else if flag != true { g = helper("g") } else { h = helper("h"); i = helper("i") }
  return per
}
`;

function sourcesToCheck() {
  const files = [];
  for (const dir of ['examples', 'stdlib']) {
    for (const name of fs.readdirSync(path.join(root, dir)).sort()) {
      if (name.endsWith('.orch')) {
        const rel = `${dir}/${name}`;
        files.push({ name: rel, text: fs.readFileSync(path.join(root, rel), 'utf8') });
      }
    }
  }
  const examples = files.length;
  let n = 0;
  for (const docName of ['docs/language.md', 'README.md']) {
    const doc = fs.readFileSync(path.join(root, docName), 'utf8');
    for (const m of doc.matchAll(/^```orch\n([\s\S]*?)^```/gm)) {
      n += 1;
      const line = doc.slice(0, m.index).split('\n').length + 1;
      files.push({ name: `${docName} block at line ${line}`, text: m[1], lineOffset: line - 1 });
    }
  }
  files.push({ name: 'snippets', text: SNIPPETS });
  return { files, examples, docBlocks: n };
}

// An independent scan of the text: the class of every character (code, comment, doc, string,
// escape, interp), following docs/language.md §1 (nested block comments, one-line strings,
// triple-quoted strings, escapes, `{{`/`}}`, `{path}`).
function classify(text) {
  const cls = new Array(text.length).fill('code');
  let i = 0;
  const set = (from, to, c) => { for (let k = from; k < to; k++) cls[k] = c; };
  const stringBody = (start, triple) => {
    // Returns the index after the closing quote(s); marks escapes and interpolations.
    let k = start;
    while (k < text.length) {
      if (triple ? text.startsWith('"""', k) : text[k] === '"') return k + (triple ? 3 : 1);
      if (!triple && text[k] === '\n') return k;
      if (text[k] === '\\') { set(k, k + 2, 'escape'); k += 2; continue; }
      if (text.startsWith('{{', k) || text.startsWith('}}', k)) { set(k, k + 2, 'escape'); k += 2; continue; }
      if (text[k] === '{') {
        const end = text.indexOf('}', k);
        set(k, end + 1, 'interp');
        k = end + 1;
        continue;
      }
      k += 1;
    }
    return k;
  };
  while (i < text.length) {
    if (text.startsWith('//', i)) {
      const end = text.indexOf('\n', i) === -1 ? text.length : text.indexOf('\n', i);
      const doc = text.startsWith('///', i) && text[i + 3] !== '/';
      set(i, end, doc ? 'doc' : 'comment');
      i = end;
    } else if (text.startsWith('/*', i)) {
      let depth = 0;
      let k = i;
      while (k < text.length) {
        if (text.startsWith('/*', k)) { depth += 1; k += 2; } else if (text.startsWith('*/', k)) {
          depth -= 1; k += 2; if (depth === 0) break;
        } else k += 1;
      }
      set(i, k, 'comment');
      i = k;
    } else if (text.startsWith('"""', i)) {
      const end = stringBody(i + 3, true);
      for (let k = i; k < end; k++) if (cls[k] === 'code') cls[k] = 'string';
      i = end;
    } else if (text[i] === '"') {
      const end = stringBody(i + 1, false);
      for (let k = i; k < end; k++) if (cls[k] === 'code') cls[k] = 'string';
      i = end;
    } else i += 1;
  }
  return cls;
}

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.orch') return null;
      return vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath);
    },
  });
  return registry.loadGrammar('source.orch');
}

// Scopes of every character of `text` (an array of scope arrays, '\n' gets []).
function scopesOf(grammar, text) {
  const out = [];
  let state = vsctm.INITIAL;
  for (const line of text.split('\n')) {
    const r = grammar.tokenizeLine(line, state);
    const chars = new Array(line.length);
    for (const t of r.tokens) for (let k = t.startIndex; k < Math.min(t.endIndex, line.length); k++) chars[k] = t.scopes;
    out.push(...chars, []);
    state = r.ruleStack;
  }
  out.pop();
  return out;
}

function main(grammar) {
  const failures = [];
  const counts = { files: 0, chars: 0, keywords: 0, options: 0, literals: 0, comments: 0, strings: 0, interps: 0, calls: 0 };
  const seenKeywords = new Set();
  const { files, examples, docBlocks } = sourcesToCheck();
  if (examples < 10) failures.push(`found only ${examples} files in examples/ and stdlib/`);
  if (docBlocks < 10) failures.push(`found only ${docBlocks} orch blocks in docs/language.md`);
  for (const file of files) {
    counts.files += 1;
    const { text } = file;
    const cls = classify(text);
    const scopes = scopesOf(grammar, text);
    const lineStarts = [0];
    for (let k = 0; k < text.length; k++) if (text[k] === '\n') lineStarts.push(k + 1);
    const where = (k) => {
      let l = lineStarts.length - 1;
      while (lineStarts[l] > k) l -= 1;
      return `${file.name}:${l + 1 + (file.lineOffset || 0)}:${k - lineStarts[l] + 1}`;
    };
    const fail = (k, len, why) => {
      if (failures.length < 60) failures.push(`${where(k)}: ${JSON.stringify(text.slice(k, k + len))} ${why}; scopes: ${(scopes[k] || []).slice(1).join(' ') || '(none)'}`);
      else if (failures.length === 60) failures.push('... (more)');
    };
    const has = (k, prefix) => (scopes[k] || []).some((s) => s.startsWith(prefix));

    // Characters.
    for (let k = 0; k < text.length; k++) {
      const c = text[k];
      if (/\s/.test(c) || c === '\uFEFF') continue;
      counts.chars += 1;
      if (has(k, 'invalid')) { fail(k, 1, 'is scoped invalid'); continue; }
      switch (cls[k]) {
        case 'comment': counts.comments += 1; if (!has(k, 'comment.')) fail(k, 1, 'is in a comment but not scoped comment'); break;
        case 'doc': counts.comments += 1; if (!has(k, 'comment.line.documentation')) fail(k, 1, 'is in a /// doc comment but not scoped comment.line.documentation'); break;
        case 'string': counts.strings += 1; if (!has(k, 'string.')) fail(k, 1, 'is in a string but not scoped string'); break;
        case 'escape': if (!has(k, 'string.') || !has(k, 'constant.character.escape')) fail(k, 1, 'is an escape but not scoped constant.character.escape in a string'); break;
        case 'interp':
          counts.interps += 1;
          if (!has(k, 'string.') || !has(k, 'meta.interpolation')) fail(k, 1, 'is an interpolation but not scoped meta.interpolation in a string');
          else if (/[A-Za-z0-9_]/.test(c) && !has(k, 'variable.other')) fail(k, 1, 'is a name in an interpolation but not scoped variable.other');
          break;
        default:
          if ((scopes[k] || []).length < 2) fail(k, 1, 'is code with no scope');
          else if (has(k, 'comment.') || has(k, 'string.')) fail(k, 1, 'is code but scoped as a comment or string');
      }
    }

    // Words and literals in code.
    const codeAt = (k) => cls[k] === 'code';
    for (const m of text.matchAll(/\$[0-9]+(?:\.[0-9]+)?|[0-9]+(?:ms|s|m|h)?(?:\.[0-9]+)?|[A-Za-z_][A-Za-z0-9_]*/g)) {
      const k = m.index;
      const w = m[0];
      if (!codeAt(k)) continue;
      const after = text.slice(k + w.length);
      const before = text.slice(0, k);
      if (/^[$0-9]/.test(w)) {
        if (/[A-Za-z0-9_]$/.test(before)) continue; // part of a name
        counts.literals += 1;
        const kind = w.startsWith('$') ? 'money' : /[a-z]$/.test(w) ? 'duration' : w.includes('.') ? 'decimal' : 'integer';
        if (!has(k, `constant.numeric.${kind}`)) fail(k, w.length, `is a ${kind} literal but not scoped constant.numeric.${kind}`);
        continue;
      }
      if (/[.$]$/.test(before) && !/\.\.$/.test(before)) {
        // A field of a path (`a.approved`), a namespaced callee, or a tool of an MCP server.
        if ((scopes[k] || []).length < 2) fail(k, w.length, 'is a field or member name with no scope');
        continue;
      }
      const isKey = /^\s*:/.test(after);
      if (RESERVED.includes(w)) {
        seenKeywords.add(w);
        counts.keywords += 1;
        if (isKey) {
          if (!has(k, 'support.type.property-name')) fail(k, w.length, 'is a field key but not scoped support.type.property-name');
        } else if (!has(k, 'keyword.') && !has(k, 'storage.') && !has(k, 'constant.language.')) {
          fail(k, w.length, 'is a reserved word but has no keyword scope');
        }
        continue;
      }
      if (w === 'batch' && !isKey && /<[^<>]*$/.test(before) && /^\s*[,>]/.test(after)) {
        counts.options += 1;
        if (!has(k, 'keyword.other.option')) fail(k, w.length, 'is the option `batch` but not scoped keyword.other.option');
        continue;
      }
      if (OPTION_WORDS.includes(w) && !isKey && /^[ \t]+[$0-9A-Za-z_]/.test(after)) {
        counts.options += 1;
        if (!has(k, 'keyword.other.option')) fail(k, w.length, 'is an option word but not scoped keyword.other.option');
        continue;
      }
      if (/gather\s*<\s*$/.test(before) && ['all', 'any', 'first', 'min'].includes(w)) {
        counts.options += 1;
        if (!has(k, 'keyword.other.policy')) fail(k, w.length, 'is a gather policy but not scoped keyword.other.policy');
        continue;
      }
      if (/\btier\s*:\s*$/.test(before) && !has(k, 'constant.language.tier')) fail(k, w.length, 'is a model tier but not scoped constant.language.tier');
      if (/\bcomplexity\s*:\s*$/.test(before) && !has(k, 'constant.language.complexity')) fail(k, w.length, 'is a complexity but not scoped constant.language.complexity');
      if (/\b(agent|workflow)\s+$/.test(before) && !has(k, 'entity.name.function')) fail(k, w.length, 'is a declared agent or workflow but not scoped entity.name.function');
      if (/\b(model|provider|mcp)\s+$/.test(before) && !has(k, 'entity.name.type')) fail(k, w.length, 'is a declared name but not scoped entity.name.type');
      const declared = /\b(agent|workflow|model|provider|mcp)\s+$/.test(before);
      if (/(^|[;{])[ \t]*$/.test(before) && /^[ \t]*=(?!=)/.test(after) && !has(k, 'entity.name.variable.step')) {
        fail(k, w.length, 'defines a step but is not scoped entity.name.variable.step');
      }
      if (!declared && /^(<[A-Za-z_$0-9 ,]*>)?\(/.test(after)) {
        counts.calls += 1;
        if (!has(k, 'entity.name.function.call') && !has(k, 'support.function')) fail(k, w.length, 'is called but not scoped entity.name.function.call');
      }
      if (isKey && !has(k, 'support.type.property-name') && !has(k, 'variable.parameter')) fail(k, w.length, 'is a field key but not scoped support.type.property-name');
    }
    for (const m of text.matchAll(/==|!=|<=|>=/g)) {
      if (codeAt(m.index) && !has(m.index, 'keyword.operator.comparison')) fail(m.index, 2, 'is a comparison but not scoped keyword.operator.comparison');
    }
  }
  // Text being typed: an unterminated string or interpolation ends with its line, so the next
  // line is code again.
  {
    const text = 'workflow main() {\n  a = w("open {x\n  b = w("ok")\n}\n';
    const scopes = scopesOf(grammar, text);
    const k = text.indexOf('b = w');
    if ((scopes[k] || []).some((sc) => sc.startsWith('string.') || sc.startsWith('meta.interpolation'))) {
      failures.push(`an unterminated string runs on to the next line: ${JSON.stringify(scopes[k])}`);
    }
    if (!(scopes[k] || []).some((sc) => sc.startsWith('entity.name.variable.step'))) {
      failures.push(`the step after an unterminated string is not scoped as a step: ${JSON.stringify(scopes[k])}`);
    }
  }
  for (const w of RESERVED) if (!seenKeywords.has(w)) failures.push(`the reserved word ${w} occurs in no checked text (add it to the snippets)`);
  return { failures, counts };
}

loadGrammar().then((grammar) => {
  const { failures, counts } = main(grammar);
  if (failures.length) {
    console.error(`grammar.test.js: ${failures.length} failure(s):\n  ${failures.join('\n  ')}`);
    process.exit(1);
  }
  if (process.env.ORCH_EDITORS_VERBOSE) console.log('grammar.test.js: ok', JSON.stringify(counts));
}, (e) => { console.error(e); process.exit(1); });
