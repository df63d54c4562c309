//! The corpora that `tests/corpus.rs` runs one test per file of are where it looks and hold
//! files: its walker finds the files when it runs, so a wrong folder or pattern would run no
//! test at all rather than fail. The rules here are the ones its patterns say.

use std::path::{Path, PathBuf};

use crate::common::files::orch_files;

/// The `.orch` files directly in `dir` (`example::` and `stdlib::` take no subfolder).
fn top_level(dir: &str) -> Vec<PathBuf> {
    orch_files(dir)
        .into_iter()
        .filter(|p| p.parent() == Some(Path::new(dir)))
        .collect()
}

#[test]
fn there_are_fuzz_regressions() {
    let files = orch_files("tests/fuzz_regressions");
    assert!(!files.is_empty(), "no inputs in tests/fuzz_regressions");
}

#[test]
fn there_are_examples_and_stdlib_files() {
    let files: Vec<PathBuf> = top_level("examples")
        .into_iter()
        .chain(top_level("stdlib"))
        .collect();
    assert!(
        files.len() >= 9,
        "expected the examples and stdlib files, found {files:?}"
    );
}
