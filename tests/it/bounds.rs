//! The front end is bounded on every input: expanding calls stops at documented bounds with
//! one located error (E0304, `orch::check::workflow::limits`), nothing recurses past its
//! stack, and only regular files of a bounded size are read (`orch::resolve::read_source`).
//!
//! Inputs that used to overflow the stack are checked on a thread with a 2 MiB stack (what a
//! spawned thread gets), so a recursion that is not bounded fails here rather than in a user's
//! process. Times and memory are measured in the report of issue 10, not asserted here.

use std::path::{Path, PathBuf};

use orch::check::workflow::limits::{MAX_CALL_DEPTH, MAX_EXPANDED_STEPS, MAX_NESTING_DEPTH};
use orch::diag::Diagnostics;
use orch::resolve::ResolveOptions;

use crate::common::temp_dir;

const HEADER: &str = "include \"std/models.orch\"\nagent w { model: haiku, max_tokens: 10 }\n";

/// Compiles `text` on a thread with a 2 MiB stack.
fn compile_small_stack(text: String) -> (orch::check::Program, Diagnostics) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            orch::compile_source("b.orch", &text, Path::new("."), &ResolveOptions::default())
        })
        .expect("a thread")
        .join()
        .expect("no panic")
}

fn codes(d: &Diagnostics) -> Vec<&'static str> {
    d.iter().map(|d| d.code.as_str()).collect()
}

/// `main` calls `c0`, which calls `c1`, ... `c{n-1}`: a chain of `n` calls.
fn chain(n: usize) -> String {
    let mut s = format!("{HEADER}workflow main(q: text) {{\n  r = c0(q: q)\n  return r\n}}\n");
    for i in 0..n {
        let next = if i + 1 < n {
            format!("  r = c{}(q: q)\n", i + 1)
        } else {
            String::new()
        };
        s += &format!("workflow c{i}(q: text) {{\n  s = w(\"{{q}}\")\n{next}}}\n");
    }
    s
}

#[test]
fn a_chain_of_calls_nests_at_most_64_deep() {
    // `main` → c0 → ... → c63: 64 calls.
    let (_, d) = compile_small_stack(chain(MAX_CALL_DEPTH));
    assert!(d.is_empty(), "{:?}", codes(&d));
    let (program, d) = compile_small_stack(chain(MAX_CALL_DEPTH + 1));
    assert_eq!(codes(&d), ["E0304"]);
    let e = d.iter().next().unwrap();
    assert!(e.message.contains("more than 64 deep"), "{}", e.message);
    assert!(
        e.message
            .starts_with("calls nest more than 64 deep: `main` → `c0`")
    );
    assert!(e.message.ends_with("`c64`"), "{}", e.message);
    // At the 65th call: `r = c64(q: q)` in `c63`.
    let text = &program.sources.get(e.primary.span.file).text;
    assert_eq!(
        &text[e.primary.span.start as usize..e.primary.span.end as usize],
        "c64"
    );
    assert!(e.secondary.iter().any(|l| l.message.contains("first call")));
}

#[test]
fn a_long_chain_of_calls_fails_at_once_and_is_reported_once() {
    // Every workflow of it is checked on its own too: one report, at the top of the chain.
    let (program, d) = compile_small_stack(chain(5_000));
    assert_eq!(codes(&d), ["E0304"]);
    assert!(d.iter().next().unwrap().message.contains("`main` → `c0`"));
    // Workflows that reached the bound keep only their parameters.
    assert!(program.workflows["main"].nodes.is_empty());
    assert!(!program.workflows["c4999"].nodes.is_empty());
}

#[test]
fn a_fan_out_of_calls_stops_at_the_step_bound() {
    // Each workflow calls the next ten times: 21, 210, 2,100, 21,000 and 210,000 nodes.
    let mut s = format!("{HEADER}workflow main(q: text) {{\n  r = f0(q: q)\n  return r\n}}\n");
    for i in 0..5 {
        s += &format!("workflow f{i}(q: text) {{\n");
        for k in 0..10 {
            s += &format!("  a{k} = f{}(q: q)\n", i + 1);
        }
        s += "}\n";
    }
    s += "workflow f5(q: text) {\n  s = w(\"{q}\")\n}\n";
    let (program, d) = compile_small_stack(s);
    assert_eq!(codes(&d), ["E0304"], "reported once, for `main`");
    let e = d.iter().next().unwrap();
    assert_eq!(
        e.message,
        format!(
            "workflow `main` expands to more than {MAX_EXPANDED_STEPS} steps, through `main` → `f0` → `f1`"
        )
    );
    let text = &program.sources.get(e.primary.span.file).text;
    assert_eq!(
        &text[e.primary.span.start as usize..e.primary.span.end as usize],
        "f0"
    );
    assert!(program.workflows["f0"].nodes.is_empty());
    assert!(program.workflows["f1"].nodes.len() > 21_000);
}

#[test]
fn two_workflows_at_the_top_of_chains_are_both_reported() {
    let mut s = chain(MAX_CALL_DEPTH + 3);
    s += "workflow other(q: text) {\n  r = c0(q: q)\n}\n";
    let (_, d) = compile_small_stack(s);
    let mut tops: Vec<String> = d
        .iter()
        .map(|e| e.message.split(" → ").next().unwrap().to_string())
        .collect();
    tops.sort();
    assert_eq!(
        tops,
        [
            "calls nest more than 64 deep: `main`",
            "calls nest more than 64 deep: `other`"
        ]
    );
}

/// `main` calls a chain of `n` workflows, each nesting its call `levels` blocks deep.
fn nested_chain(n: usize, levels: usize) -> String {
    let mut s = format!("{HEADER}workflow main(q: text) {{\n  r = c0(q: q)\n  return r\n}}\n");
    for i in 0..n {
        let call = if i + 1 < n {
            format!("r = c{}(q: q)", i + 1)
        } else {
            "z = w(\"end\")".to_string()
        };
        s += &format!(
            "workflow c{i}(q: text) {{\n  s = w(\"{{q}}\")\n  {}{call}{}\n}}\n",
            "repeat <max 2> { ".repeat(levels),
            " } until true".repeat(levels)
        );
    }
    s
}

#[test]
fn statements_nest_at_most_128_deep_through_calls() {
    // Each workflow adds its call and four `repeat`s: 5 levels, 25 workflows = 126 levels.
    let (_, d) = compile_small_stack(nested_chain(25, 4));
    assert!(d.is_empty(), "{:?}", codes(&d));
    let (_, d) = compile_small_stack(nested_chain(27, 4));
    assert_eq!(codes(&d), ["E0304"]);
    let e = d.iter().next().unwrap();
    assert!(
        e.message
            .contains(&format!("nest more than {MAX_NESTING_DEPTH} deep")),
        "{}",
        e.message
    );
}

#[test]
fn a_chain_of_calls_with_errors_inside_reports_them_without_follow_ons() {
    // An undefined name in the deepest workflow is reported once, where it is; the chain
    // that is too deep once, at its top; nothing else.
    let mut s = chain(MAX_CALL_DEPTH + 1);
    s = s.replacen("s = w(\"{q}\")", "s = w(\"{nope}\")", 1);
    let (_, d) = compile_small_stack(s);
    let mut c = codes(&d);
    c.sort();
    assert_eq!(c, ["E0201", "E0304"]);
}

// ------------------------------------------------------------------ files

/// Compiles a file on a thread, failing the test if it does not finish in 20 s (reading a
/// FIFO or a device used to block, or never end).
fn compile_file_in_time(path: PathBuf, opts: ResolveOptions) -> Diagnostics {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (_, d) = orch::compile_file(&path, &opts);
        let _ = done.send(d);
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the check finishes")
}

/// Checks `main.orch` of `dir` holding just `include "{include}"`, and the file `entry` as the
/// script itself; returns the first error of each.
fn include_and_entry_errors(
    dir: &Path,
    include: &str,
    entry: PathBuf,
    opts: ResolveOptions,
) -> [(&'static str, String); 2] {
    let main = dir.join("main.orch");
    std::fs::write(
        &main,
        format!("include \"{include}\"\nworkflow main() {{ }}\n"),
    )
    .unwrap();
    [main, entry].map(|file| {
        let d = compile_file_in_time(file, opts.clone());
        assert_eq!(d.len(), 1, "{:?}", codes(&d));
        let e = d.iter().next().unwrap();
        (e.code.as_str(), e.message.clone())
    })
}

#[cfg(unix)]
#[test]
fn an_include_of_a_fifo_or_a_device_is_refused_without_reading_it() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let fifo = dir.join("pipe.orch");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let [(code, message), (entry_code, _)] =
        include_and_entry_errors(dir, "pipe.orch", fifo, ResolveOptions::default());
    assert_eq!((code, entry_code), ("E0101", "E0100"));
    assert!(
        message.contains("pipe.orch`") && message.contains("FIFO (named pipe), not a regular file"),
        "{message}"
    );
    let opts = ResolveOptions {
        include_paths: vec![PathBuf::from("/dev")],
        ..ResolveOptions::default()
    };
    let [(code, message), _] =
        include_and_entry_errors(dir, "/dev/zero", PathBuf::from("/dev/zero"), opts);
    assert_eq!(code, "E0101");
    assert!(
        message.contains("/dev/zero`")
            && message.contains("a character device, not a regular file"),
        "{message}"
    );
}

#[test]
fn a_file_over_the_size_bound_is_refused() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let big = dir.join("big.orch");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(orch::resolve::MAX_SOURCE_BYTES + 1)
        .unwrap();
    let [(code, message), (entry_code, _)] =
        include_and_entry_errors(dir, "big.orch", big, ResolveOptions::default());
    assert_eq!((code, entry_code), ("E0101", "E0100"));
    assert!(message.contains("larger than 16 MiB"), "{message}");
}

#[test]
fn includes_nest_at_most_64_files_deep() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let n = orch::resolve::MAX_INCLUDE_DEPTH + 5;
    for i in 0..n {
        let text = if i + 1 < n {
            format!("include \"f{}.orch\"\n", i + 1)
        } else {
            "workflow main() { }\n".to_string()
        };
        std::fs::write(dir.join(format!("f{i}.orch")), text).unwrap();
    }
    let d = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn({
            let entry = dir.join("f0.orch");
            move || orch::compile_file(&entry, &ResolveOptions::default()).1
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(codes(&d), ["E0101"]);
    assert!(
        d.iter()
            .next()
            .unwrap()
            .message
            .contains("more than 64 files deep")
    );
}

// ------------------------------------------------------------------ syntax

#[test]
fn long_else_if_and_condition_chains_are_errors_not_overflows() {
    let elseif = format!(
        "{HEADER}workflow main(x: bool) {{\n  if x {{ a = w(\"1\") }}{} else {{ a = w(\"2\") }}\n  return a\n}}\n",
        " else if x { a = w(\"1\") }".repeat(5_000)
    );
    let and = format!(
        "{HEADER}workflow main(x: bool) {{\n  if {} {{ a = w(\"1\") }} else {{ a = w(\"2\") }}\n  return a\n}}\n",
        vec!["x"; 5_000].join(" and ")
    );
    for text in [elseif, and] {
        let (_, d) = compile_small_stack(text);
        assert_eq!(codes(&d), ["E0001"]);
        assert!(d.iter().next().unwrap().message.contains("nests"));
    }
}

/// Where a random text of [`nested`] is: which openers may come next.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Value,
    Block,
    Cond,
    Type,
    /// After an `if`'s block: an `else if` chain may go on.
    Chain,
}

/// The openers valid in each place: (text, where it leads, its closer). One that leads back to
/// its own place may repeat.
fn openers(ctx: Ctx) -> &'static [(&'static str, Ctx, &'static str)] {
    match ctx {
        Ctx::Value => &[
            ("[", Ctx::Value, "]"),
            ("{a: ", Ctx::Value, "}"),
            ("f(", Ctx::Value, ")"),
            ("/* ", Ctx::Value, "*/"),
        ],
        Ctx::Block => &[
            ("then { ", Ctx::Block, "}"),
            ("parallel { ", Ctx::Block, "}"),
            ("if x { ", Ctx::Block, "}"),
            ("if x { } else if x { ", Ctx::Block, "}"),
            ("x = s([", Ctx::Value, "])"),
            ("if ", Ctx::Cond, " { }"),
            ("if x { }", Ctx::Chain, ""),
        ],
        Ctx::Chain => &[
            (" else if x { }", Ctx::Chain, ""),
            (" else if x { ", Ctx::Block, "}"),
        ],
        Ctx::Cond => &[
            ("(", Ctx::Cond, ")"),
            ("not ", Ctx::Cond, ""),
            ("not (", Ctx::Cond, ")"),
        ],
        Ctx::Type => &[("list<", Ctx::Type, ">"), ("{a: ", Ctx::Type, "}")],
    }
}

/// A text nesting as `picks` say, from one of three starts: each pick is an opener of the
/// current place (by index, modulo their number) and how many times it repeats (when it leads
/// back to its place). Closed in full when `close` is set, else cut off.
fn nested(start: usize, picks: &[(usize, usize)], close: bool) -> String {
    let (mut text, mut ctx, end) = match start % 3 {
        0 => ("agent a { x: ".to_string(), Ctx::Value, " }"),
        1 => ("workflow w { ".to_string(), Ctx::Block, " }"),
        _ => ("agent a(x: ".to_string(), Ctx::Type, ") { }"),
    };
    let mut closers = Vec::new();
    for &(pick, n) in picks {
        let options = openers(ctx);
        let (open, next, closer) = options[pick % options.len()];
        let n = if next == ctx { n } else { 1 };
        // A `not` chain ends in an operand; a type in a name.
        let leaf = match next {
            Ctx::Cond => "x",
            Ctx::Type => "text",
            _ => "",
        };
        text.push_str(&open.repeat(n));
        closers.push((leaf, closer.repeat(n)));
        ctx = next;
    }
    if close {
        while let Some((leaf, closer)) = closers.pop() {
            text.push_str(leaf);
            text.push_str(&closer);
        }
        text.push_str(end);
    }
    text
}

proptest::proptest! {
    #![proptest_config(crate::common::proptest_config::config(64))]

    /// pest's parser is linked without its stack probe (orch's own guard bounds it before it
    /// parses, `orch::syntax`): no text, however it nests (any mix of the ways the grammar
    /// nests, tens of thousands deep, closed or cut off), overflows a 2 MiB stack. Texts past the
    /// guard fail with E0001; the others parse or fail, but return.
    #[test]
    fn no_nesting_overflows_the_parser(
        start in 0usize..3,
        picks in proptest::collection::vec((0usize..420, 1usize..20_000), 1..6),
        close in proptest::bool::ANY,
    ) {
        let text = nested(start, &picks, close);
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let _ = orch::syntax::parse(orch::diag::FileId(0), &text);
            })
            .expect("a thread")
            .join()
            .expect("no panic");
    }
}
