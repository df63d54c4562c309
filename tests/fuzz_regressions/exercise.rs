//! What the fuzz target checks on one input, shared by `fuzz/fuzz_targets/parse_check_fmt.rs`
//! and `fuzz_regression::` in `tests/corpus.rs` (which replays the inputs the fuzzer once
//! crashed on).
//!
//! Any text must compile without panicking, and its diagnostics must render. A program
//! without errors must plan. When the text parses, `orch fmt` must not panic; when it formats,
//! its output must parse to the same program and formatting it again must change nothing.
//! (`format_source` may refuse a text it cannot lay out faithfully: that is its documented way
//! out, not a crash.)
//!
//! Includes of `std/` files are served from the embedded stdlib; relative includes resolve
//! against a directory that does not exist, so they fail with E0101 and never touch the disk.

use std::path::Path;

use orch::diag::{FileId, HumanStyle, LintLevels, Span, apply_levels, render_human, render_json};
use orch::resolve::ResolveOptions;

/// Relative includes resolve here: a directory that does not exist.
const NO_DIR: &str = "/nonexistent/orch-fuzz";

/// Runs every check on `text`; panics on a failure.
pub fn exercise(text: &str) {
    compile(text);
    format(text);
}

/// Compiles, applies the default lint levels with the source's `allow` comments, renders the
/// diagnostics, and plans the entry workflow when there is no error.
fn compile(text: &str) {
    let opts = ResolveOptions::default();
    let (program, mut diags) = orch::compile_source("fuzz.orch", text, Path::new(NO_DIR), &opts);
    apply_levels(&mut diags, &program.sources, &LintLevels::new());
    for d in diags.iter() {
        assert!(!d.message.is_empty(), "empty message for {}", d.code);
    }
    let style = HumanStyle {
        color: false,
        unicode: true,
        width: 80,
    };
    let _ = render_human(&diags, &program.sources, style);
    let _ = render_json(&diags, &program.sources);
    if diags.has_errors() {
        return;
    }
    let Some((entry, _)) = program.sources.files().next() else {
        return;
    };
    if let Ok(wf) = orch::plan::entry_workflow(&program, None, Span::new(entry, 0, 0)) {
        let plan = orch::plan::lower(&program, wf);
        let _ = orch::plan::render_text(&plan);
        serde_json::to_string(&plan).expect("a plan serialises");
    }
}

/// Formats when the text parses; checks that the result means the same and is a fixed point.
fn format(text: &str) {
    let Ok(module) = orch::syntax::parse(FileId(0), text) else {
        return;
    };
    let Ok(once) = orch::fmt::format_source(text) else {
        return;
    };
    let again = orch::syntax::parse(FileId(0), &once)
        .unwrap_or_else(|e| panic!("formatted text does not parse: {}\n{once}", e.message));
    assert!(
        orch::fmt::same_program(&module, &again),
        "formatting changed the program:\n{once}"
    );
    let twice = orch::fmt::format_source(&once)
        .unwrap_or_else(|e| panic!("formatted text does not format: {}\n{once}", e.message));
    assert_eq!(once, twice, "formatting is not idempotent");
}
