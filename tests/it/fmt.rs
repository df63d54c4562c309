//! `orch fmt`: on every `.orch` file of the repository (examples, stdlib, UI cases that parse,
//! and the code blocks of the README and docs), formatting keeps the program (the AST, spans
//! aside) and every comment, and is idempotent; `examples/` and `stdlib/` are already
//! formatted. Then the same properties on generated variants of two dense scripts (one with
//! every declaration and statement, one with the control flow: `parallel for`, `repeat`, `if`),
//! with a comment, a line break or a blank line put at every position where the parser accepts
//! one; then the command line.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use orch::diag::FileId;
use orch::fmt::format_source;
use tempfile::TempDir;

use crate::common::cli::orch_command;
use crate::common::files::{orch_blocks, orch_files};
use crate::common::temp_dir;

/// Every input: (name, text).
fn corpus() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ["examples", "stdlib", "tests/ui"]
        .iter()
        .flat_map(|d| orch_files(d))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect();
    for doc in ["README.md", "docs/language.md"] {
        out.extend(
            orch_blocks(doc)
                .into_iter()
                .map(|b| (format!("{doc}:{}", b.line), b.body)),
        );
    }
    out
}

/// The AST's debug form without spans (`Span { file: FileId(0), start: 3, end: 9 }`), so
/// that two parses of differently laid-out text compare equal when they mean the same.
fn ast_without_spans(text: &str) -> Option<String> {
    let m = orch::syntax::parse(FileId(0), text).ok()?;
    let debug = format!("{m:#?}");
    let mut out = String::new();
    let mut rest = debug.as_str();
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        let end = rest[at..].find('}').expect("a span's closing brace");
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The comments of a text, as printed (trailing white space of `//` comments dropped), sorted.
pub(crate) fn comments(text: &str) -> Vec<String> {
    let mut v: Vec<String> = orch::fmt::comments::comments(text)
        .iter()
        .map(|c| c.text(text).to_string())
        .collect();
    v.sort();
    v
}

/// Checks meaning, comments and idempotence for one text that parses; returns the formatted
/// text, or a description of what went wrong.
fn check_one(name: &str, text: &str) -> Result<String, String> {
    let before = ast_without_spans(text).expect("only called on text that parses");
    let once = format_source(text).map_err(|d| format!("{name}: refused: {}", d.message))?;
    let fail = |what: &str| format!("{name}: {what}\n--- input:\n{text}\n--- formatted:\n{once}");
    match ast_without_spans(&once) {
        None => return Err(fail("the result does not parse")),
        Some(after) if after != before => return Err(fail("the meaning changed")),
        Some(_) => {}
    }
    let (n_before, n_after) = (comments(text), comments(&once));
    if n_before != n_after {
        return Err(fail(&format!(
            "comments changed: {} before, {} after\n{n_before:?}\n{n_after:?}",
            n_before.len(),
            n_after.len()
        )));
    }
    let twice =
        format_source(&once).map_err(|d| fail(&format!("second pass refused: {}", d.message)))?;
    if twice != once {
        return Err(fail(&format!("not idempotent; second pass:\n{twice}")));
    }
    Ok(once)
}

#[test]
fn formatting_keeps_meaning_and_comments_and_is_idempotent() {
    let mut bad = Vec::new();
    let (mut formatted, mut skipped) = (0, 0);
    for (name, text) in corpus() {
        if ast_without_spans(&text).is_none() {
            // A syntax error: the formatter reports it and changes nothing.
            let err = format_source(&text).expect_err(&name);
            assert_eq!(err.code, "E0001", "{name}");
            skipped += 1;
            continue;
        }
        formatted += 1;
        if let Err(e) = check_one(&name, &text) {
            bad.push(e);
        }
    }
    assert!(
        formatted >= 100,
        "only {formatted} files formatted ({skipped} skipped)"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn examples_and_stdlib_are_formatted() {
    let mut unformatted = Vec::new();
    for path in orch_files("examples")
        .into_iter()
        .chain(orch_files("stdlib"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        if format_source(&text).ok().as_ref() != Some(&text) {
            unformatted.push(path.display().to_string());
        }
    }
    assert!(
        unformatted.is_empty(),
        "not formatted (run `cargo run -- fmt {}`)",
        unformatted.join(" ")
    );
}

/// One script with every construct of the grammar.
const DENSE: &str = r#"/// Doc.
include "std/models.orch"
provider p { kind: sim, latency: 5ms }
model m { provider: p, price: { input: 1.00, output: 2 } }
agent a(x: text, n: number = 3, l: list<text> = ["u", "v"]) { model: m, system: "S {x}" }
agent c { run: ["echo", "{q}"], env: { K: "v" } }
workflow main(q: text, r: { k: text, n: list<number> }) -> text <m, budget $1.50, retry 1> {
  s = a<m, timeout 2s>("""
    P {q}
    """, x: q, n: 4) after t -> text
  t = parallel <max 2> {
    then { u = a("1"); v = a("2") }
    w = c()
  }
  gather <min 1> z = a("g {t}")
  return "{z}"
}
"#;

/// One script with every tool construct: `mcp` declarations of both transports, grants of
/// every form, the loop fields and the `max_turns` option.
const DENSE_TOOLS: &str = r#"mcp fs { command: ["npx", "-y", "srv", "."], env: { GIT_PAGER: "cat" } }
mcp docs { url: "http://127.0.0.1:3001/mcp" }
agent s { model: m, tools: [read, grep, exec("cargo test", "git diff"), fs.read_text_file, docs.*], max_turns: 12, tool_timeout: 30s }
agent l { model: m, tools: [agent(s), agent(ns.b)] }
workflow main(q: text) <max_turns 4> {
  x = l<max_turns 3, retry 1>("{q}")
  y = parallel <max_turns 2> { z = s("1"); w = s("2") }
}
"#;

#[test]
fn comments_and_line_breaks_anywhere_in_tools() {
    insert_everywhere(DENSE_TOOLS, 300);
}

/// One script with every control-flow construct: `parallel for` over a list literal and over a
/// path, `repeat ... until`, `if` / `else if` / `else`, and conditions with every operator.
const DENSE_CONTROL: &str = r#"workflow main(xs: list<text>) {
  p = parallel <max 2> for x in ["u", "v"] {
    repeat <max 3, retry 1> { s = a("{x}") } until s.ok == true and not (s.n < 2.5 or s.done)
  }
  parallel for y in p.items { if y != "u" { t = a("1") } else if 3 >= y or y <= 1 { u = a("2") } else { v = a("3") } }
  if not p.ok and (p.n > 1 or false) {} else { return p }
}
"#;

/// The char boundaries of `text`.
fn boundaries(text: &str) -> impl Iterator<Item = usize> + '_ {
    (0..=text.len()).filter(|&i| text.is_char_boundary(i))
}

#[test]
fn comments_and_line_breaks_anywhere_the_parser_accepts_them() {
    insert_everywhere(DENSE, 500);
}

#[test]
fn comments_and_line_breaks_anywhere_in_control_flow() {
    insert_everywhere(DENSE_CONTROL, 500);
}

/// Checks every variant of `dense` (which must parse) with a comment, a line break, a blank
/// line or a separator inserted at one position, among those that parse (more than `min`).
fn insert_everywhere(dense: &str, min: usize) {
    assert!(
        ast_without_spans(dense).is_some(),
        "the dense script parses"
    );
    let inserts = [
        " /* c */ ",
        " // c\n",
        "\n",
        "\n\n",
        "/* a\n b */",
        ";",
        ",",
    ];
    let mut bad = Vec::new();
    let mut tried = 0;
    for at in boundaries(dense) {
        for ins in inserts {
            let text = format!("{}{ins}{}", &dense[..at], &dense[at..]);
            if ast_without_spans(&text).is_none() {
                continue;
            }
            tried += 1;
            if let Err(e) = check_one(&format!("insert {ins:?} at {at}"), &text) {
                bad.push(e);
            }
        }
    }
    assert!(tried > min, "only {tried} variants parse");
    let shown: Vec<&String> = bad.iter().take(5).collect();
    assert!(
        bad.is_empty(),
        "{} variants failed; the first ones:\n{shown:#?}",
        bad.len()
    );
}

// ---------------------------------------------------------------- the command line

/// Runs `orch ARGS` ([`orch_command`]) with `stdin` (or nothing) on its standard input.
fn orch(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = orch_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

const MESSY: &str = "agent a {model: haiku}\nworkflow main() { x = a(\"hi\") ; return x }\n";
const TIDY: &str =
    "agent a { model: haiku }\n\nworkflow main() {\n  x = a(\"hi\")\n  return x\n}\n";

/// A fresh directory holding `messy.orch` ([`MESSY`]) and `tidy.orch` ([`TIDY`]); their paths.
fn messy_and_tidy() -> (TempDir, PathBuf, PathBuf) {
    let tmp = temp_dir();
    let messy = tmp.path().join("messy.orch");
    let tidy = tmp.path().join("tidy.orch");
    std::fs::write(&messy, MESSY).unwrap();
    std::fs::write(&tidy, TIDY).unwrap();
    (tmp, messy, tidy)
}

#[test]
fn fmt_rewrites_files_in_place() {
    let (_tmp, messy, tidy) = messy_and_tidy();
    let o = orch(
        &["fmt", messy.to_str().unwrap(), tidy.to_str().unwrap()],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), TIDY);
    assert_eq!(std::fs::read_to_string(&tidy).unwrap(), TIDY);
}

#[test]
fn fmt_check_writes_nothing_and_lists_what_would_change() {
    let (_tmp, messy, tidy) = messy_and_tidy();
    let o = orch(
        &[
            "fmt",
            "--check",
            messy.to_str().unwrap(),
            tidy.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.trim(),
        messy.to_str().unwrap(),
        "only the file that would change"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("-agent a {model: haiku}") && err.contains("+agent a { model: haiku }"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap(),
        MESSY,
        "--check writes nothing"
    );

    let o = orch(&["fmt", "--check", tidy.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
}

#[test]
fn fmt_reads_stdin_and_writes_stdout() {
    let o = orch(&["fmt", "-"], Some(MESSY));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), TIDY);
    let o = orch(&["fmt", "--check", "-"], Some(MESSY));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "<stdin>");
}

#[test]
fn fmt_syntax_errors_and_usage_errors() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let broken = dir.join("broken.orch");
    let text = "workflow main() { x = }\n";
    std::fs::write(&broken, text).unwrap();
    let o = orch(&["fmt", broken.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("E0001"));
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        text,
        "left untouched"
    );

    assert_eq!(orch(&["fmt"], None).status.code(), Some(2), "no file");
    assert_eq!(
        orch(&["fmt", "--bogus", "x.orch"], None).status.code(),
        Some(2)
    );
    let missing = dir.join("missing.orch");
    let o = orch(&["fmt", missing.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
}
