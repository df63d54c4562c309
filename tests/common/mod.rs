//! Helpers shared by the test binaries: `tests/it/` (every `#[test]`) and `tests/corpus.rs`
//! (one test per file of `tests/ui/`, `tests/fuzz_regressions/`, `examples/` and `stdlib/`).

pub mod cli;
pub mod fault_server;
pub mod files;
pub mod otlp_receiver;
pub mod proptest_config;
pub mod run;
pub mod ui;

use orch::check::Program;
use orch::plan::Plan;
use orch::resolve::ResolveOptions;
use tempfile::TempDir;

/// Compiles `src` (named `name`, includes relative to the working directory), asserts it has
/// no errors, and lowers its entry workflow (`main` or the only one) to a plan.
pub fn compile_plan(name: &str, src: &str) -> (Program, Plan) {
    let (program, diags) = orch::compile_source(
        name,
        src,
        std::path::Path::new("."),
        &ResolveOptions::default(),
    );
    assert!(
        !diags.has_errors(),
        "script has errors: {:?}",
        diags.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
    let entry = orch::diag::Span::new(orch::diag::FileId(0), 0, 0);
    let wf = orch::plan::entry_workflow(&program, None, entry).expect("entry workflow");
    let plan = orch::plan::lower(&program, wf);
    (program, plan)
}

/// A fresh, empty directory under the system's temporary directory (`TMPDIR`), removed with
/// everything in it when the value is dropped: keep it alive as long as the test uses it.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("orch-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// The base URL of the local LLM server for the end-to-end tests, from `ORCH_E2E_ENDPOINT`
/// (set by `scripts/test.sh`). Those tests are `#[ignore]`d, so one that runs was asked for:
/// without the variable it fails, saying how to run it, rather than pass without testing.
/// Only a server on loopback is accepted.
pub fn e2e_endpoint() -> String {
    let url = std::env::var("ORCH_E2E_ENDPOINT").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "ORCH_E2E_ENDPOINT is not set: run the end-to-end tests with scripts/test.sh, or start \
         scripts/llm-server.sh and set ORCH_E2E_ENDPOINT to the URL it prints"
    );
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "end-to-end tests only talk to a server on loopback, not {url}"
    );
    url
}
