//! `parallel <batch>` against fake batch APIs on loopback: the Anthropic Message Batches API
//! and the OpenAI Batch API (files, batches, results), with partial failures, expiry, and a
//! run killed while its batch is polled, then resumed without a second submission.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::cli::orch_command;
use crate::common::run::{run_keyed, step};
use orch::run::StepStatus;

const KEY: &str = "sk-test-batch-KEY-0123456789";

/// What the fake server saw and how it answers.
#[derive(Default)]
struct State {
    uri: String,
    /// Batches created: their requests (`custom_id`, prompt), and polls left before they end.
    batches: Vec<Batch>,
    /// Uploaded OpenAI files: their JSONL lines.
    files: HashMap<String, Vec<Value>>,
    /// Polls answered.
    polls: usize,
    /// Ordinary (not batched) completions answered, by prompt.
    plain: Vec<String>,
    /// Polls each new batch stays in progress for.
    polls_before_end: usize,
    /// While set, no batch ends.
    hold: bool,
    /// OpenAI: batches end `expired`, the requests whose prompt has `EXPIRE` unanswered.
    expire: bool,
    /// Multipart bodies of the uploads, for checks.
    uploads: Vec<String>,
    /// `x-api-key` / `authorization` values seen.
    keys: Vec<String>,
    /// Results downloaded (Anthropic's `results_url`, OpenAI's file contents).
    downloads: usize,
    /// Polls still to answer with HTTP 500.
    poll_errors: usize,
    /// OpenAI: batches end `failed` (their input file refused), with no output.
    fail: bool,
    /// No batch API: creating a batch is a 404.
    no_batches: bool,
}

struct Batch {
    requests: Vec<(String, String, Value)>,
    polls_left: usize,
    model: String,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn serve(&self, polls_before_end: usize) -> MockServer {
        let server = MockServer::start().await;
        {
            let mut st = self.state.lock().unwrap();
            st.uri = server.uri();
            st.polls_before_end = polls_before_end;
        }
        Mock::given(wiremock::matchers::any())
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }
    fn creations(&self) -> usize {
        self.state.lock().unwrap().batches.len()
    }
    fn batch_sizes(&self) -> Vec<usize> {
        let st = self.state.lock().unwrap();
        st.batches.iter().map(|b| b.requests.len()).collect()
    }
    fn plain(&self) -> Vec<String> {
        self.state.lock().unwrap().plain.clone()
    }
    fn polls(&self) -> usize {
        self.state.lock().unwrap().polls
    }
    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }
}

/// The text the fake model answers `prompt` with.
fn answer(prompt: &str) -> String {
    format!("answer to <{prompt}>")
}

fn anthropic_message(prompt: &str) -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": [{"type": "text", "text": answer(prompt)}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 20}
    })
}

fn chat_completion(prompt: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer(prompt)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20}
    })
}

/// The user prompt of a Messages or Chat Completions body.
fn prompt_of(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap();
        for h in ["x-api-key", "authorization"] {
            if let Some(v) = req.headers.get(h) {
                st.keys.push(v.to_str().unwrap_or_default().to_string());
            }
        }
        let path = req.url.path().to_string();
        let method = req.method.as_str().to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if st.no_batches && method == "POST" && path.ends_with("/batches") {
            return ResponseTemplate::new(404)
                .set_body_json(json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}));
        }
        match (method.as_str(), segments.as_slice()) {
            // ---- Anthropic
            ("POST", ["v1", "messages", "batches"]) => {
                let requests = body["requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let id = r["custom_id"].as_str().unwrap().to_string();
                        (id, prompt_of(&r["params"]), r["params"].clone())
                    })
                    .collect();
                let polls_left = st.polls_before_end;
                st.batches.push(Batch {
                    requests,
                    polls_left,
                    model: String::new(),
                });
                let id = format!("msgbatch_{}", st.batches.len());
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": id, "type": "message_batch", "processing_status": "in_progress",
                    "results_url": null
                }))
            }
            ("GET", ["v1", "messages", "batches", id]) => {
                st.polls += 1;
                let n: usize = id.trim_start_matches("msgbatch_").parse().unwrap();
                let hold = st.hold;
                let uri = st.uri.clone();
                let b = &mut st.batches[n - 1];
                let ended = !hold && b.polls_left == 0;
                b.polls_left = b.polls_left.saturating_sub(1);
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": id, "type": "message_batch",
                    "processing_status": if ended { "ended" } else { "in_progress" },
                    "results_url": if ended { Value::String(format!("{uri}/v1/messages/batches/{id}/results")) } else { Value::Null },
                }))
            }
            ("GET", ["v1", "messages", "batches", id, "results"]) => {
                st.downloads += 1;
                let n: usize = id.trim_start_matches("msgbatch_").parse().unwrap();
                let lines: Vec<String> = st.batches[n - 1]
                    .requests
                    .iter()
                    .map(|(cid, prompt, _)| {
                        let result = if prompt.contains("BAD") {
                            json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}})
                        } else if prompt.contains("FLAKY") {
                            json!({"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "internal error"}}})
                        } else if prompt.contains("EXPIRE") {
                            json!({"type": "expired"})
                        } else {
                            json!({"type": "succeeded", "message": anthropic_message(prompt)})
                        };
                        json!({"custom_id": cid, "result": result}).to_string()
                    })
                    .collect();
                ResponseTemplate::new(200)
                    .set_body_raw(lines.join("\n") + "\n", "application/binary")
            }
            ("POST", ["v1", "messages"]) => {
                let prompt = prompt_of(&body);
                st.plain.push(prompt.clone());
                ResponseTemplate::new(200).set_body_json(anthropic_message(&prompt))
            }
            // ---- OpenAI
            ("POST", ["v1", "files"]) => {
                let text = String::from_utf8_lossy(&req.body).to_string();
                let lines: Vec<Value> = text
                    .lines()
                    .filter(|l| l.starts_with("{\"custom_id\""))
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                st.uploads.push(text);
                let id = format!("file-in-{}", st.files.len() + 1);
                st.files.insert(id.clone(), lines);
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": id, "object": "file", "purpose": "batch"}))
            }
            ("POST", ["v1", "batches"]) => {
                assert_eq!(body["endpoint"], "/v1/chat/completions");
                assert_eq!(body["completion_window"], "24h");
                let file = body["input_file_id"].as_str().unwrap();
                let lines = st.files[file].clone();
                let requests: Vec<(String, String, Value)> = lines
                    .iter()
                    .map(|l| {
                        assert_eq!(l["method"], "POST");
                        assert_eq!(l["url"], "/v1/chat/completions");
                        (
                            l["custom_id"].as_str().unwrap().to_string(),
                            prompt_of(&l["body"]),
                            l["body"].clone(),
                        )
                    })
                    .collect();
                let model = requests[0].2["model"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let polls_left = st.polls_before_end;
                st.batches.push(Batch {
                    requests,
                    polls_left,
                    model,
                });
                let id = format!("batch_{}", st.batches.len());
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": id, "object": "batch", "status": "validating"}))
            }
            ("GET", ["v1", "batches", id]) => {
                st.polls += 1;
                if st.poll_errors > 0 {
                    st.poll_errors -= 1;
                    return ResponseTemplate::new(500)
                        .set_body_json(json!({"error": {"message": "try again"}}));
                }
                if st.fail {
                    return ResponseTemplate::new(200).set_body_json(json!({
                        "id": id, "object": "batch", "status": "failed",
                        "output_file_id": null, "error_file_id": null,
                        "errors": {"object": "list", "data": [{"code": "invalid_json_line", "message": "line 1 is not valid JSON"}]},
                    }));
                }
                let n: usize = id.trim_start_matches("batch_").parse().unwrap();
                let (hold, expire) = (st.hold, st.expire);
                let b = &mut st.batches[n - 1];
                let ended = !hold && b.polls_left == 0;
                b.polls_left = b.polls_left.saturating_sub(1);
                let status = match (ended, expire) {
                    (false, _) => "in_progress",
                    (true, false) => "completed",
                    (true, true) => "expired",
                };
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": id, "object": "batch", "status": status,
                    "output_file_id": if ended { Value::String(format!("file-out-{n}")) } else { Value::Null },
                    "error_file_id": if ended { Value::String(format!("file-err-{n}")) } else { Value::Null },
                }))
            }
            ("GET", ["v1", "files", file, "content"]) => {
                st.downloads += 1;
                let (kind, n) = file.trim_start_matches("file-").split_once('-').unwrap();
                let n: usize = n.parse().unwrap();
                let expire = st.expire;
                let lines: Vec<String> = st.batches[n - 1]
                    .requests
                    .iter()
                    .filter_map(|(cid, prompt, _)| {
                        let failed = prompt.contains("BAD") || (expire && prompt.contains("EXPIRE"));
                        match (kind, failed) {
                            ("out", false) => Some(json!({"id": "r", "custom_id": cid, "response": {"status_code": 200, "request_id": "q", "body": chat_completion(prompt)}, "error": null})),
                            ("err", true) if prompt.contains("BAD") => Some(json!({"id": "r", "custom_id": cid, "response": {"status_code": 400, "request_id": "q", "body": {"error": {"message": "bad request", "code": "invalid_value"}}}, "error": null})),
                            ("err", true) => Some(json!({"id": "r", "custom_id": cid, "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})),
                            _ => None,
                        }
                    })
                    .map(|l| l.to_string())
                    .collect();
                ResponseTemplate::new(200)
                    .set_body_raw(lines.join("\n") + "\n", "application/octet-stream")
            }
            ("POST", ["v1", "chat", "completions"]) => {
                let prompt = prompt_of(&body);
                st.plain.push(prompt.clone());
                ResponseTemplate::new(200).set_body_json(chat_completion(&prompt))
            }
            _ => ResponseTemplate::new(404).set_body_string(format!("unscripted {method} {path}")),
        }
    }
}

/// A script whose `parallel <batch> for` asks `items` prompts of `provider` (declared at
/// `uri`, polled every 5 ms at first), then one ordinary step.
fn script(kind: &str, uri: &str, items: &[&str]) -> String {
    let base = if kind == "openai" {
        format!("{uri}/v1")
    } else {
        uri.to_string()
    };
    let list = items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
provider p {{ kind: {kind}, base_url: "{base}", api_key_env: "FAKE_KEY", batch_poll: 5ms }}
model m {{ provider: p, name: "fake-model", price: {{ input: 1.00, output: 5.00 }} }}
agent a {{ model: m, max_tokens: 100, retry: 1 }}
workflow main() {{
  answers = parallel <batch> for item in [{list}] {{
    r = a("question {{item}}")
  }}
  return answers
}}
"#
    )
}

fn items(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("q{i}")).collect()
}

/// USD of 10 input and 20 output tokens at $1 / $5 per million, times `factor`.
fn cost(factor: f64) -> f64 {
    (10.0 * 1.0 + 20.0 * 5.0) / 1_000_000.0 * factor
}

async fn wide_for_in_one_batch(kind: &str) {
    let fake = Fake::default();
    let server = fake.serve(2).await;
    let names = items(40);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (report, _) = run_keyed(KEY, &script(kind, &server.uri(), &refs)).await;
    assert!(report.succeeded, "{report:#?}");
    assert_eq!(fake.batch_sizes(), vec![40], "one batch of every request");
    assert!(fake.polls() >= 3, "polled until it ended: {}", fake.polls());
    assert!(fake.plain().is_empty(), "{:?}", fake.plain());
    for i in 1..=40 {
        let r = step(&report, &format!("r[{i}]"));
        assert_eq!(
            r.output.as_deref(),
            Some(answer(&format!("question q{i}")).as_str())
        );
        assert_eq!(r.usage.input_tokens, 10);
        assert_eq!(r.usage.output_tokens, 20);
        assert!(
            (r.cost_usd - cost(0.5)).abs() < 1e-12,
            "batch price: {}",
            r.cost_usd
        );
    }
    let st = fake.state.lock().unwrap();
    assert!(st.keys.iter().all(|k| k.contains(KEY)), "the key is sent");
    if kind == "openai" {
        assert_eq!(st.batches[0].model, "fake-model");
        assert!(st.uploads[0].contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
    } else {
        // The Messages body of an ordinary request, without streaming.
        let params = &st.batches[0].requests[0].2;
        assert_eq!(params["model"], "fake-model");
        assert_eq!(params["max_tokens"], 100);
        assert!(params.get("stream").is_none_or(|s| s == false), "{params}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_parallel_for_goes_in_one_anthropic_message_batch() {
    wide_for_in_one_batch("anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_parallel_for_goes_in_one_openai_batch() {
    wide_for_in_one_batch("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_are_retried_as_ordinary_requests_unless_final() {
    let fake = Fake::default();
    let server = fake.serve(0).await;
    let src = script(
        "anthropic",
        &server.uri(),
        &["ok", "FLAKY", "EXPIRE", "BAD"],
    );
    let (report, _) = run_keyed(KEY, &src).await;
    assert!(!report.succeeded);
    assert_eq!(fake.creations(), 1);
    // `api_error` and `expired` are worth retrying, at the ordinary price; `invalid_request`
    // is final.
    let mut plain = fake.plain();
    plain.sort();
    assert_eq!(plain, vec!["question EXPIRE", "question FLAKY"]);
    let ok = step(&report, "r[1]");
    assert!((ok.cost_usd - cost(0.5)).abs() < 1e-12);
    for i in [2, 3] {
        let r = step(&report, &format!("r[{i}]"));
        assert_eq!(r.status, StepStatus::Succeeded, "{r:#?}");
        assert_eq!(r.attempts, 2);
        assert!(
            (r.cost_usd - cost(1.0)).abs() < 1e-12,
            "the retry at the full price"
        );
    }
    let bad = step(&report, "r[4]");
    match &bad.status {
        StepStatus::Failed(e) => assert!(
            e.contains("invalid_request_error: max_tokens: too large") && e.contains("attempt 1"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_openai_batch_retries_what_it_did_not_answer() {
    let fake = Fake::default();
    let server = fake.serve(1).await;
    fake.set(|s| s.expire = true);
    let src = script("openai", &server.uri(), &["one", "EXPIRE-two", "three"]);
    let (report, _) = run_keyed(KEY, &src).await;
    assert!(report.succeeded, "{report:#?}");
    assert_eq!(fake.creations(), 1);
    assert_eq!(fake.plain(), vec!["question EXPIRE-two"]);
    let expired = step(&report, "r[2]");
    assert_eq!(expired.attempts, 2);
    assert_eq!(
        expired.output.as_deref(),
        Some(answer("question EXPIRE-two").as_str())
    );
    assert_eq!(step(&report, "r[1]").attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_block_with_max_sends_batches_of_at_most_max() {
    let fake = Fake::default();
    let server = fake.serve(0).await;
    let names = items(7);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let src = script("anthropic", &server.uri(), &refs).replace("<batch>", "<batch, max 3>");
    let (report, _) = run_keyed(KEY, &src).await;
    assert!(report.succeeded, "{report:#?}");
    let sizes = fake.batch_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 7);
    assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
}

// ------------------------------------------------------------------ kill and resume

fn orch_cmd(args: &[&str], state: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::from(orch_command());
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .env("FAKE_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn journal_in(state: &Path) -> PathBuf {
    let run = std::fs::read_dir(state.join("runs"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path().join("journal.jsonl"));
    run.unwrap_or_default()
}

fn batch_records(journal: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "batch")
        .collect()
}

async fn killed_while_polling_then_resumed(kind: &str) {
    let fake = Fake::default();
    let server = fake.serve(0).await;
    fake.set(|s| s.hold = true);
    let tmp = crate::common::temp_dir();
    let script_path = tmp.path().join("batch.orch");
    let names = items(12);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    std::fs::write(&script_path, script(kind, &server.uri(), &refs)).unwrap();
    let script_arg = script_path.to_string_lossy().into_owned();
    let state = tmp.path().join("state");
    let mut child = orch_cmd(&["run", &script_arg, "-q"], &state)
        .spawn()
        .unwrap();
    wait_for("the batch to be created", || fake.creations() == 1).await;
    let journal = journal_in(&state);
    wait_for("the batch in the journal", || {
        !batch_records(&journal_in(&state)).is_empty()
    })
    .await;
    let polls = fake.polls();
    wait_for("a poll", || fake.polls() > polls).await;
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let records = batch_records(&journal);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["items"].as_array().unwrap().len(), 12);
    assert!(!std::fs::read_to_string(&journal).unwrap().contains(KEY));

    fake.set(|s| s.hold = false);
    let o = tokio::time::timeout(
        Duration::from_secs(60),
        orch_cmd(&["run", &script_arg, "--resume", "-q"], &state).output(),
    )
    .await
    .expect("the resumed run ends")
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(fake.creations(), 1, "polled, not submitted again");
    assert!(fake.plain().is_empty(), "{:?}", fake.plain());
    let out = String::from_utf8_lossy(&o.stdout);
    for i in 1..=12 {
        assert!(out.contains(&answer(&format!("question q{i}"))), "{out}");
    }
    // The resumed run submitted nothing: no second `batch` record.
    assert_eq!(batch_records(&journal).len(), 1);
    // The results were read once for the twelve steps (OpenAI: its output and error files).
    let files = if kind == "openai" { 2 } else { 1 };
    assert_eq!(fake.state.lock().unwrap().downloads, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_its_anthropic_batch_is_polled_a_resumed_run_polls_it_again() {
    killed_while_polling_then_resumed("anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_its_openai_batch_is_polled_a_resumed_run_polls_it_again() {
    killed_while_polling_then_resumed("openai").await;
}

// ------------------------------------------------------------------ simulator, cassettes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_a_batch_after_its_latency() {
    let src = r#"
provider s { kind: sim, latency: 40ms }
model m { provider: s, price: { input: 1.00, output: 5.00 } }
agent a { model: m, max_tokens: 50 }
workflow main() {
  parallel <batch> {
    x = a("one")
    y = a("two") -> { ok: bool }
  }
  z = a("three {x} {y.ok}")
  return z
}
"#;
    let (report, _) = crate::common::run::run_script(src, &[]).await;
    assert!(report.succeeded, "{report:#?}");
    let x = step(&report, "x");
    let z = step(&report, "z");
    let full = |r: &orch::run::StepReport| {
        (r.usage.input_tokens as f64 * 1.0 + r.usage.output_tokens as f64 * 5.0) / 1e6
    };
    assert!(
        (x.cost_usd - full(x) * 0.5).abs() < 1e-12,
        "batched at half price"
    );
    assert!(
        (z.cost_usd - full(z)).abs() < 1e-12,
        "outside the block at full price"
    );
    assert!(
        step(&report, "y").value.is_some(),
        "a structured output in a batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_are_recorded_and_replayed_one_by_one() {
    let fake = Fake::default();
    let server = fake.serve(1).await;
    let tmp = crate::common::temp_dir();
    let script_path = tmp.path().join("batch.orch");
    std::fs::write(
        &script_path,
        script("openai", &server.uri(), &["one", "two", "three"]),
    )
    .unwrap();
    let script_arg = script_path.to_string_lossy().into_owned();
    let tape = tmp.path().join("tape.jsonl");
    let tape_arg = tape.to_string_lossy().into_owned();
    let state = tmp.path().join("state");
    let report = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let (first, second) = (report("recorded.json"), report("replayed.json"));
    let recorded = orch_cmd(
        &[
            "run",
            &script_arg,
            "-q",
            "--record",
            &tape_arg,
            "--report",
            &first,
        ],
        &state,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(
        recorded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    assert_eq!(fake.creations(), 1);
    drop(server);
    let text = std::fs::read_to_string(&tape).unwrap();
    assert_eq!(text.matches("\"answer\"").count(), 3, "{text}");
    assert!(!text.contains(KEY));
    let replayed = orch_cmd(
        &[
            "run",
            &script_arg,
            "-q",
            "--replay",
            &tape_arg,
            "--report",
            &second,
        ],
        &state,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert_eq!(replayed.stdout, recorded.stdout);
    // Priced as recorded: at the batch price.
    let total = |path: &str| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["cost_usd"].as_f64().unwrap()
    };
    assert!(
        (total(&first) - 3.0 * cost(0.5)).abs() < 1e-12,
        "{}",
        total(&first)
    );
    assert!((total(&second) - total(&first)).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_waiting_for_a_permit_do_not_hold_back_their_batch() {
    // `--max-concurrency 2`: the two steps holding the permits wait for their batch, which
    // must not wait for the steps waiting for those permits.
    let src = r#"
provider s { kind: sim, latency: 10ms }
model m { provider: s }
agent a { model: m, max_tokens: 20 }
workflow main() {
  all = parallel <batch> for item in ["1", "2", "3", "4", "5"] {
    r = a("item {item}")
  }
  return all
}
"#;
    let opts = orch::run::RunOptions {
        max_concurrency: Some(2),
        ..Default::default()
    };
    let run = crate::common::run::run_with(src, &opts);
    let (report, events) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("no deadlock");
    assert!(report.succeeded, "{report:#?}");
    let batched = events
        .iter()
        .filter(|e| matches!(e, orch::run::Event::Batched { .. }))
        .count();
    assert_eq!(batched, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_turn_of_an_agent_loop_in_a_batch_is_a_batched_request() {
    let src = r#"
provider s { kind: sim, latency: 10ms }
model m { provider: s, price: { input: 1.00, output: 5.00 } }
agent scout { model: m, max_tokens: 200, tools: [read, list], max_turns: 3 }
workflow main() {
  found = parallel <batch> for topic in ["the journal", "the scheduler"] {
    notes = scout("Find what the repository says about {topic}")
  }
  return found
}
"#;
    let (report, events) = crate::common::run::run_script(src, &[]).await;
    assert!(report.succeeded, "{report:#?}");
    let mut turns = 0;
    for i in 1..=2 {
        let r = step(&report, &format!("notes[{i}]"));
        let looped = r.agent_loop.as_ref().expect("an agent loop");
        assert!(looped.turns >= 2, "{looped:#?}");
        turns += looped.turns as usize;
        let full = (r.usage.input_tokens as f64 * 1.0 + r.usage.output_tokens as f64 * 5.0) / 1e6;
        assert!(
            (r.cost_usd - full * 0.5).abs() < 1e-12,
            "every turn at the batch price"
        );
    }
    let batched = events
        .iter()
        .filter(|e| matches!(e, orch::run::Event::Batched { .. }))
        .count();
    assert_eq!(batched, turns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_step_is_admitted_to_a_budget_at_the_batch_price() {
    // One attempt's worst case: 1,000 output tokens at $10 per million, $0.01 at the full
    // price and $0.005 batched: only the batched one fits in $0.006.
    let src = r#"
provider s { kind: sim }
model m { provider: s, price: { input: 0, output: 10.00 } }
agent a { model: m, max_tokens: 1000, retry: 0 }
workflow main() <budget $0.006> {
  all = parallel <batch> for x in ["one"] {
    r = a("q {x}")
  }
  return all
}
"#;
    let (report, _) = crate::common::run::run_script(src, &[]).await;
    assert!(report.succeeded, "{report:#?}");
    let (report, _) = crate::common::run::run_script(&src.replace("<batch>", "<>"), &[]).await;
    assert!(!report.succeeded, "at the full price it does not fit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_polls_are_retried_and_a_failed_batch_retries_its_requests() {
    let fake = Fake::default();
    let server = fake.serve(0).await;
    fake.set(|s| s.poll_errors = 3);
    let (report, _) = run_keyed(KEY, &script("openai", &server.uri(), &["a", "b"])).await;
    assert!(report.succeeded, "{report:#?}");
    assert_eq!(
        fake.polls(),
        4,
        "three failed polls, then the one that saw it end"
    );
    assert!(fake.plain().is_empty());

    let fake = Fake::default();
    let server = fake.serve(0).await;
    fake.set(|s| s.fail = true);
    let (report, events) = run_keyed(KEY, &script("openai", &server.uri(), &["a", "b"])).await;
    assert!(report.succeeded, "{report:#?}");
    let mut plain = fake.plain();
    plain.sort();
    assert_eq!(plain, vec!["question a", "question b"]);
    let said = crate::common::run::retries(&events);
    assert!(
        said.iter()
            .any(|(e, _)| e.contains("ended `failed`") && e.contains("line 1 is not valid JSON")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_provider_refuses_is_sent_again_request_by_request() {
    let fake = Fake::default();
    let server = fake.serve(0).await;
    fake.set(|s| s.no_batches = true);
    let (report, events) = run_keyed(KEY, &script("anthropic", &server.uri(), &["a", "b"])).await;
    assert!(report.succeeded, "{report:#?}");
    assert_eq!(fake.plain().len(), 2);
    assert_eq!(step(&report, "r[1]").attempts, 2);
    let said = crate::common::run::retries(&events);
    assert!(
        said.iter()
            .any(|(e, _)| e.contains("the batch failed: HTTP 404")),
        "{said:?}"
    );
}
