//! Replays every input under `tests/fuzz_regressions/` that the fuzzer (`scripts/fuzz.sh`)
//! once crashed on, through the fuzz target's own checks (`exercise.rs`): compile without
//! panicking, render, plan, and format faithfully and idempotently, each within a time limit.
//! Each file's first lines say what it used to break.

use std::path::Path;
use std::time::Duration;

#[path = "fuzz_regressions/exercise.rs"]
mod exercise;

/// How long one input may take (a debug build takes milliseconds).
const LIMIT: Duration = Duration::from_secs(20);

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
        // Each input runs on its own thread, so that one that hangs (some took exponential
        // time) fails the test instead of stalling it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ok = std::panic::catch_unwind(|| exercise::exercise(&text)).is_ok();
            let _ = done.send(ok);
        });
        match finished.recv_timeout(LIMIT) {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{}: panicked", f.display())),
            Err(_) => failed.push(format!("{}: still running after {LIMIT:?}", f.display())),
        }
    }
    assert!(failed.is_empty(), "failing inputs: {failed:?}");
}
