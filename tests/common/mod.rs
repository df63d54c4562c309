//! Helpers shared by the test binaries: `tests/it/` (every `#[test]`) and `tests/corpus.rs`
//! (one test per file of `tests/ui/`, `tests/fuzz_regressions/`, `examples/` and `stdlib/`).

pub mod cli;
pub mod counting_llm;
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

/// The local LLM server for one end-to-end test: its base URL (the value derefs to it), held
/// by one test at a time.
///
/// The server (llama-cpp-python) answers one request at a time and keeps generating a whole
/// answer its client gave up on; every endpoint, `/models` too, waits meanwhile. Tests that
/// shared it at once starved each other's requests past the inactivity timeout, and a test
/// that started while an earlier one's abandoned answer was still being generated waited
/// behind it. So each test takes the server in turn ([`E2E_TURN`], held as long as the value
/// lives) and starts once it answers `/models` (idle).
pub struct E2eServer {
    url: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for E2eServer {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

/// Taken by each end-to-end test for its whole run (see [`E2eServer`]).
static E2E_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long a test waits for the server to finish what it is generating before it starts:
/// an abandoned answer of a few hundred tokens on a loaded 2-core machine.
const E2E_IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The local LLM server for the end-to-end tests, from `ORCH_E2E_ENDPOINT` (set by
/// `scripts/test.sh`), once it is this test's turn and the server is idle. Those tests are
/// `#[ignore]`d, so one that runs was asked for: without the variable it fails, saying how to
/// run it, rather than pass without testing. Only a server on loopback is accepted.
pub fn e2e_endpoint() -> E2eServer {
    let url = std::env::var("ORCH_E2E_ENDPOINT").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "ORCH_E2E_ENDPOINT is not set: run the end-to-end tests with scripts/test.sh, or start \
         scripts/llm-server.sh and set ORCH_E2E_ENDPOINT to the URL it prints"
    );
    let Some(authority) = url
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|a| a.starts_with("127.0.0.1:") || a.starts_with("localhost:"))
    else {
        panic!("end-to-end tests only talk to a server on loopback, not {url}");
    };
    // A test that failed while holding the turn poisons it; the server is still usable.
    let turn = E2E_TURN.lock().unwrap_or_else(|e| e.into_inner());
    wait_until_idle(authority, &url);
    E2eServer { url, _turn: turn }
}

/// Waits until the server at `authority` answers `GET {url}/models` with 200, which it does
/// only between generations; panics after [`E2E_IDLE_WAIT`].
fn wait_until_idle(authority: &str, url: &str) {
    use std::io::{Read, Write};
    let path = format!("{}/models", url.trim_end_matches('/'));
    let path = path
        .strip_prefix(&format!("http://{authority}"))
        .unwrap_or("/v1/models");
    let started = std::time::Instant::now();
    loop {
        let answered = std::net::TcpStream::connect(authority).and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head.ends_with(b" 200"))
        });
        if matches!(answered, Ok(true)) {
            return;
        }
        assert!(
            started.elapsed() < E2E_IDLE_WAIT,
            "the local LLM server at {url} has not been idle for {} min (last: {answered:?})",
            E2E_IDLE_WAIT.as_secs() / 60
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
