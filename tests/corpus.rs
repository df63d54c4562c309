//! One test per file of the repository's corpora, named after the file, so that each shows in
//! `cargo test`'s output and a filter picks cases: `cargo test --test corpus ui::names/`.
//!
//! - `ui::PATH`: a case of `tests/ui/` (below).
//! - `fuzz_regression::FILE`: an input of `tests/fuzz_regressions/` that the fuzzer once crashed
//!   on, through the fuzz target's own checks (`exercise.rs`): compile without panicking,
//!   render, plan, and format faithfully and idempotently, within a time limit. Each file's
//!   first lines say what it used to break.
//! - `example::FILE`: an example checks clean (no warning either) and runs on the simulator.
//! - `stdlib::FILE`: a stdlib file checks clean.
//!
//! The files are found when the tests run (datatest-stable walks the folders, so this binary
//! has its own harness: `harness = false` in Cargo.toml), so a new file is a new test without
//! a rebuild. Tests of each corpus as a whole (how many files, a snapshot without a case, a
//! case per code) are in `tests/it/`.
//!
//! **UI cases.** Every `tests/ui/**/*.orch` (outside `support/` folders) is a broken script
//! with one deliberate mistake, and starts with a header naming the codes it must produce:
//!
//! ```text
//! // expect: E0201
//! // expect: E0201, E0203      (a file that shows several errors are reported in one run)
//! ```
//!
//! For each file the test checks that the set of codes reported equals the header (a
//! missing or an extra diagnostic fails), that every diagnostic has a message and spans inside
//! its file, and snapshots the rendered human output under `tests/ui/snapshots/`. All problems
//! of a case are reported together.
//!
//! `tests/ui/poor/` holds cases whose message is known to be weak (the idea of PRQL's
//! `bad_error_messages.rs`): each says under its `expect` line, in `// POOR:` and `// SHOULD:`
//! comments, what is wrong with the message and what it should say. Their snapshots record
//! today's output, so an improvement shows up as a snapshot change: then move the case to its
//! area (or delete it) and drop the comments.
//!
//! When the checker finds no error, the test also picks the entry workflow the way
//! `orch plan` does, so `E0701` cases live here too. Lint levels are the defaults, with the
//! cases' `// orch: allow(...)` comments applied (`tests/ui/lints/`).
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test --test corpus ui::`, then review the
//! diff.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use orch::diag::render_human;
use orch::resolve::ResolveOptions;
use orch::run::{RunOptions, Target};

#[path = "common/ui.rs"]
#[allow(dead_code)] // `cases()`: the walk that tests/it checks this binary's pattern against
mod ui_case;

#[path = "fuzz_regressions/exercise.rs"]
mod exercise;

use ui_case::{STYLE, UI_DIR, compile, expected_codes, shape_problems, snapshot_name};

datatest_stable::harness! {
    { test = ui, root = UI_DIR, pattern = ui_case::CASE_PATTERN },
    { test = fuzz_regression, root = "tests/fuzz_regressions", pattern = r"\.orch$" },
    { test = example, root = "examples", pattern = r"^[^/]*\.orch$" },
    { test = stdlib, root = "stdlib", pattern = r"^[^/]*\.orch$" },
}

/// A test's failure, shown as written: datatest-stable prints errors with `{:?}`, which
/// would quote a `String` and escape its line breaks.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

// ------------------------------------------------------------------ UI cases

fn ui(path: &Path) -> datatest_stable::Result<()> {
    check_case(path).map_err(|e| Failure(e).into())
}

/// Checks one case: its `// expect:` codes are exactly the codes reported, every diagnostic is
/// well formed, no absolute path is shown, a `poor/` case says what is poor, and the rendered
/// output matches its snapshot. Every problem is reported, not only the first.
fn check_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let expected = expected_codes(&text)
        .ok_or("no `// expect: CODE` header on the first lines".to_string())?;
    let (sources, diags) = compile(path);
    let rendered = render_human(&diags, &sources, STYLE);
    let mut problems = Vec::new();
    if path.starts_with(Path::new(UI_DIR).join("poor"))
        && !(text.contains("\n// POOR: ") && text.contains("\n// SHOULD: "))
    {
        problems.push("a case of poor/ needs `// POOR:` and `// SHOULD:` comments".to_string());
    }

    let found: BTreeSet<String> = diags.iter().map(|d| d.code.to_string()).collect();
    if found != expected {
        let missing: Vec<_> = expected.difference(&found).cloned().collect();
        let extra: Vec<_> = found.difference(&expected).cloned().collect();
        problems.push(format!(
            "codes differ: expected {expected:?}, found {found:?} (missing {missing:?}, unexpected {extra:?})"
        ));
    }
    for d in diags.iter() {
        problems.extend(shape_problems(d, &sources));
    }
    if rendered.contains(&*std::env::current_dir().unwrap().to_string_lossy()) {
        problems.push("the output shows an absolute path".to_string());
    }

    let name = snapshot_name(path);
    let snap = catch_unwind(AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => "ui/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => path.display().to_string(),
        }, {
            insta::assert_snapshot!(name.as_str(), rendered);
        });
    }));
    if snap.is_err() {
        problems.push(format!("snapshot `{name}` differs (see the diff above)"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", problems.join("\n"), indent(&rendered)))
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}\n")).collect()
}

// ------------------------------------------------------------------ fuzz regressions

/// How long one input may take (a debug build takes milliseconds).
const LIMIT: Duration = Duration::from_secs(20);

fn fuzz_regression(path: &Path, text: String) -> datatest_stable::Result<()> {
    // On its own thread, so that an input that hangs (some took exponential time) fails the
    // test instead of stalling it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ok = catch_unwind(|| exercise::exercise(&text)).is_ok();
        let _ = done.send(ok);
    });
    match finished.recv_timeout(LIMIT) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure(format!("{}: panicked", path.display())).into()),
        Err(_) => Err(Failure(format!("{}: still running after {LIMIT:?}", path.display())).into()),
    }
}

// ------------------------------------------------------------------ examples and stdlib

/// Checks `path` like `orch check`: no diagnostic at all, not even a warning.
fn checks_clean(path: &Path) -> Result<(), String> {
    let (_, diags) = orch::compile_file(path, &ResolveOptions::default());
    if diags.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    Err(format!("{}: {messages:?}", path.display()))
}

fn stdlib(path: &Path) -> datatest_stable::Result<()> {
    checks_clean(path).map_err(|e| Failure(e).into())
}

fn example(path: &Path) -> datatest_stable::Result<()> {
    checks_clean(path).map_err(Failure)?;
    // The simulator's latency on a paused clock: instant, and the same on every machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(runs_on_the_simulator(path));
    Ok(())
}

/// A value of each parameter type, for running examples without real inputs.
fn sample_input(ty: &orch::check::types::Type) -> String {
    use orch::check::types::Type;
    match ty {
        Type::Text => "a small web shop".into(),
        Type::Number => "3".into(),
        Type::Bool => "true".into(),
        Type::Json | Type::Record(_) | Type::Agent => "{}".into(),
        Type::List(_) => "[\"one\", \"two\"]".into(),
    }
}

/// Runs the entry workflow of `path` on the simulator with a sample of each input it needs:
/// it succeeds and returns some text.
async fn runs_on_the_simulator(path: &Path) {
    let (program, diags) = orch::compile_file(path, &ResolveOptions::default());
    assert!(!diags.has_errors(), "{}", path.display());
    let entry = orch::diag::Span::new(orch::diag::FileId(0), 0, 0);
    let wf = orch::plan::entry_workflow(&program, None, entry).unwrap();
    let plan = orch::plan::lower(&program, wf);
    let opts = RunOptions {
        inputs: plan
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .map(|p| (p.name.clone(), sample_input(&p.ty)))
            .collect(),
        target: Target::Simulate {
            latency_ms: 100,
            run_commands: false,
        },
        ..RunOptions::default()
    };
    let report = orch::run::run(&plan, &program.tables.models, &opts, &|_| {})
        .await
        .unwrap();
    assert!(
        report.succeeded,
        "{} failed: {:?}",
        path.display(),
        report.stopped
    );
    assert!(
        report
            .output
            .as_deref()
            .is_some_and(|o| !o.trim().is_empty()),
        "{} returned nothing",
        path.display()
    );
}
