//! Replays every input under `tests/fuzz_regressions/` that the fuzzer (`scripts/fuzz.sh`)
//! once crashed on, through the fuzz target's own checks (`exercise.rs`): compile without
//! panicking, render, plan, and format faithfully and idempotently. Each file's first line
//! says what it used to break.

use std::path::Path;

#[path = "fuzz_regressions/exercise.rs"]
mod exercise;

#[test]
fn fuzz_regressions_pass_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz_regressions")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "orch"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        if std::panic::catch_unwind(|| exercise::exercise(&text)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(failed.is_empty(), "failing inputs: {failed:?}");
}
