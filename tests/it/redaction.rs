//! Secrets never reach what orch writes: `orch run` through the CLI against a scripted server
//! on loopback (`common::fault_server`) that echoes the API key back in the ways servers do,
//! and commands that print it. Each test greps stderr, stdout, the `--report` file and the journal for the
//! key and for its first 8 characters (a key cut short is still a leak).

use std::path::Path;

use crate::common::cli::{orch_command, stderr, stdout};
use crate::common::fault_server::{self, FaultServer, Reply};
use crate::common::temp_dir;

/// The key the runs read from `ORCH_TEST_KEY`. Not shaped like any well-known format, so only
/// the registry of keys read can catch it, not the key-shape patterns.
const KEY: &str = "orchTEST-9f3K2xQ7mB5vL1pZ8cW4";

/// Everything one `orch run` wrote.
struct Artefacts {
    stdout: String,
    stderr: String,
    report: String,
    journal: String,
}

impl Artefacts {
    /// Asserts that no artefact holds `secret` or its first 8 characters, and that the
    /// redaction mark shows where it was.
    fn assert_clean_of(&self, secret: &str) {
        let prefix = &secret[..8];
        for (what, text) in [
            ("stdout", &self.stdout),
            ("stderr", &self.stderr),
            ("the report", &self.report),
            ("the journal", &self.journal),
        ] {
            assert!(
                !text.contains(prefix),
                "{what} holds (the start of) the key:\n{text}"
            );
        }
        assert!(
            self.stderr.contains("<redacted>") || self.stdout.contains("<redacted>"),
            "the output does not show where the key was:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.report.contains("<redacted>"),
            "report: {}",
            self.report
        );
        assert!(
            self.journal.contains("<redacted>"),
            "journal: {}",
            self.journal
        );
    }
}

/// Runs `orch run` on `src` in a fresh directory with `ORCH_TEST_KEY=KEY` and `env`, and
/// collects what it wrote. The child runs on a blocking thread, so the test's server keeps
/// answering.
async fn orch_run(src: &str, env: &[(&str, &str)]) -> Artefacts {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = dir.join("leak.orch");
    std::fs::write(&script, src).unwrap();
    let report = dir.join("report.json");
    let state = dir.join("state");
    let mut cmd = orch_command();
    cmd.arg("run")
        .arg(&script)
        .arg("--report")
        .arg(&report)
        .arg("--state-dir")
        .arg(&state)
        .args(["--color", "never"])
        .env("ORCH_TEST_KEY", KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("orch runs");
    let journal = journal_text(&state);
    Artefacts {
        stdout: stdout(&out),
        stderr: stderr(&out),
        report: std::fs::read_to_string(&report).expect("the report is written"),
        journal,
    }
}

/// The text of every journal under `state`.
fn journal_text(state: &Path) -> String {
    let mut text = String::new();
    for run in std::fs::read_dir(state.join("runs")).expect("a run directory") {
        let path = run.unwrap().path().join("journal.jsonl");
        text.push_str(&std::fs::read_to_string(path).expect("a journal"));
    }
    assert!(!text.is_empty(), "the journal is empty");
    text
}

/// A model `m` on an OpenAI-compatible provider at `server` whose key is read from
/// `ORCH_TEST_KEY`, an agent `a` of it, and `workflow`.
fn script_with(server: &FaultServer, workflow: &str) -> String {
    format!(
        r#"
provider p {{ kind: openai, base_url: "{}/v1", api_key_env: "ORCH_TEST_KEY" }}
model m {{ provider: p, name: "served", price: {{ input: 1.0, output: 1.0 }} }}
agent a {{ model: m, max_tokens: 50 }}
{workflow}
"#,
        server.uri()
    )
}

/// One model step `x`, `retry 0`: one scripted reply is one attempt.
fn model_script(server: &FaultServer) -> String {
    script_with(server, r#"workflow main() { x = a<retry 0>("hello") }"#)
}

/// Runs one model step that the server answers with `reply`, checks that stderr reports the
/// failure as `failure`, and that no artefact holds `secret`.
async fn a_failed_step_leaks_nothing(reply: Reply, failure: &str, secret: &str) {
    let server = FaultServer::start(vec![reply]).await;
    let out = orch_run(&model_script(&server), &[]).await;
    assert!(out.stderr.contains(failure), "{}", out.stderr);
    out.assert_clean_of(secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_the_end_of_a_long_error_message_is_redacted_before_it_is_cut() {
    // The API's message is longer than what an error keeps: the key straddles the cut.
    let message = format!("{} Incorrect API key provided: {KEY}", "x".repeat(960));
    let reply = Reply::json(
        401,
        serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}}),
    );
    a_failed_step_leaks_nothing(reply, "HTTP 401 from openai", KEY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_success_body_that_is_not_a_completion_is_redacted() {
    let reply = Reply::json(
        200,
        serde_json::json!({"object": "error", "detail": format!("unknown key {KEY}")}),
    );
    let failure = "malformed response from openai";
    a_failed_step_leaks_nothing(reply, failure, KEY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_a_command_prints_is_redacted_in_every_artefact() {
    // The provider's key is read by the run; a command step prints it from its environment.
    let server = FaultServer::start(vec![fault_server::openai_json("fine")]).await;
    let src = script_with(
        &server,
        r#"agent show { run: ["printenv", "ORCH_TEST_KEY"] }
workflow main() -> text {
  x = a("hello")
  c = show("{x}")
  return c
}"#,
    );
    let out = orch_run(&src, &[]).await;
    assert!(out.stdout.contains("<redacted>"), "{}", out.stdout);
    out.assert_clean_of(KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_variable_a_command_inherits_is_redacted_from_its_output() {
    // No provider reads this variable: its name marks it as a secret, and the command got it.
    let token = "Zq4rT8vN-deploy-2kW6yH1m";
    let src = "agent show { run: [\"printenv\", \"ORCH_DEPLOY_TOKEN\"] }\nworkflow main() -> text {\n  c = show(\"go\")\n  return c\n}\n";
    let out = orch_run(src, &[("ORCH_DEPLOY_TOKEN", token)]).await;
    assert!(out.stdout.contains("<redacted>"), "{}", out.stdout);
    out.assert_clean_of(token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_shaped_text_no_run_read_is_redacted_by_its_shape() {
    // A key the run never read (an Anthropic-shaped one), echoed by the server in an error.
    let foreign = "sk-ant-api03-Hq7Lw2Zp9Xc4Vb6Nm1Kj8Yt5";
    let reply = Reply::json(
        403,
        serde_json::json!({"error": {"message": format!("key {foreign} is not allowed here")}}),
    );
    a_failed_step_leaks_nothing(reply, "HTTP 403 from openai", foreign).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_streamed_in_pieces_is_redacted_from_the_answer() {
    // The model echoes the key across two chunks: no single event holds it whole.
    let (head, rest) = KEY.split_at(12);
    let mut pieces = vec![
        fault_server::openai_chunk("your key: "),
        fault_server::openai_chunk(head),
        fault_server::openai_chunk(rest),
    ];
    pieces.extend(fault_server::openai_end(10, 3));
    let server = FaultServer::start(vec![Reply::sse(pieces, fault_server::End::Complete)]).await;
    let src = script_with(
        &server,
        r#"workflow main() -> text { x = a<retry 0>("hello")
  return x }"#,
    );
    let out = orch_run(&src, &[]).await;
    assert_eq!(out.stdout.trim(), "your key: <redacted>", "{}", out.stderr);
    out.assert_clean_of(KEY);
}
