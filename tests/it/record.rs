//! Prompts and answers on record, and honest outcomes: an `attempt` record and event per model
//! call (redacted texts, the served model, the stop reason), `--no-store-prompts`, answers cut
//! off by `max_tokens` (`on_truncated`), a `repeat` that stops at `max` (`until ... else
//! fail`), an empty `parallel for`; against the scripted server on loopback and the simulator.

use std::sync::Arc;

use orch::run::journal::{AttemptRecord, Journal, Record};
use orch::run::{EnvLookup, Event, RunOptions, StepStatus, Target};

use crate::common::cli::{orch_command, stderr, stdout};
use crate::common::fault_server::{FaultServer, Reply, openai_completion};
use crate::common::run::{run_with, step};
use crate::common::temp_dir;

/// The key every API key variable reads: the server is on loopback and never checks it.
const KEY: &str = "test-key-not-secret";

/// A key-shaped text: redacted wherever it turns up.
const SHAPED: &str = "sk-ant-api03-abcdefghijklmnop1234567890";

/// One step `x` of agent `a` (with extra agent fields) on an OpenAI-compatible provider at the
/// server; its prompt interpolates input `t` (a key-shaped text, see [`options`]).
fn script(server: &FaultServer, agent_fields: &str) -> String {
    format!(
        r#"
provider p {{ kind: openai, base_url: "{}/v1", api_key_env: "KEY", stream: false }}
model m {{ provider: p, name: "asked-model", price: {{ input: 1.0, output: 1.0 }} }}
agent a {{ model: m, max_tokens: 50, system: "You are terse."{agent_fields} }}
workflow main(t: text) {{ x = a("hello {{t}}") }}
"#,
        server.uri()
    )
}

/// A whole chat completion by `model` whose `finish_reason` is `finish`.
fn answer(model: &str, text: &str, finish: &str) -> Reply {
    let mut body = openai_completion(model, text, 10, 3);
    body["choices"][0]["finish_reason"] = serde_json::json!(finish);
    Reply::json(200, body)
}

/// Options with the server's key, input `t` a key-shaped text, and (when given) a journal.
fn options(journal: Option<&Journal>) -> RunOptions {
    RunOptions {
        inputs: crate::common::run::inputs(&[("t", SHAPED)]),
        env: Some(EnvLookup(Arc::new(|_: &str| Some(KEY.to_string())))),
        journal: journal.cloned(),
        ..RunOptions::default()
    }
}

/// The `attempt` events of a run, in order.
fn attempts(events: &[Event]) -> Vec<AttemptRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Attempt(a) => Some((**a).clone()),
            _ => None,
        })
        .collect()
}

/// Every record of a journal.
fn records(j: &Journal) -> Vec<Record> {
    std::fs::read_to_string(j.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_attempt_is_on_record_with_its_texts_served_model_and_stop_reason() {
    let server = FaultServer::start(vec![
        Reply::json(500, serde_json::json!({"error": {"message": "try again"}})),
        answer("qwen-served", "the answer", "stop"),
    ])
    .await;
    let state = temp_dir();
    let journal = Journal::create(state.path(), "test.orch");
    let (r, events) = run_with(&script(&server, ""), &options(Some(&journal))).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.served_model.as_deref(), Some("qwen-served"));
    assert!(!x.truncated && x.warnings.is_empty(), "{x:?}");

    let seen = attempts(&events);
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (failed, ok) = (&seen[0], &seen[1]);
    assert_eq!((failed.step.as_str(), failed.attempt), ("x", 1));
    assert!(
        failed.error.as_deref().unwrap().contains("HTTP 500"),
        "{failed:?}"
    );
    assert_eq!(
        (failed.answer.as_ref(), failed.served_model.as_ref()),
        (None, None)
    );
    assert_eq!(ok.attempt, 2);
    assert_eq!((ok.model.as_str(), ok.provider.as_str()), ("m", "p"));
    assert_eq!(ok.served_model.as_deref(), Some("qwen-served"));
    assert_eq!(ok.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(ok.system.as_deref(), Some("You are terse."));
    assert_eq!(ok.prompt.as_deref(), Some("hello <redacted>"));
    assert_eq!(ok.answer.as_deref(), Some("the answer"));
    assert_eq!((ok.usage.input_tokens, ok.usage.output_tokens), (10, 3));
    assert!(ok.cost_usd > 0.0 && ok.finished_ms >= ok.started_ms);
    // The backoff after the 500 is the wait before the second attempt.
    assert!(ok.wait_ms > 0, "{ok:?}");

    // The journal holds the same records, and no key-shaped text anywhere.
    let text = std::fs::read_to_string(journal.path()).unwrap();
    assert!(!text.contains(SHAPED));
    let journaled: Vec<AttemptRecord> = records(&journal)
        .into_iter()
        .filter_map(|r| match r {
            Record::Attempt(a) => Some((*a).clone()),
            _ => None,
        })
        .collect();
    assert_eq!(journaled, seen);
    // And the step record says which model served it.
    let served = records(&journal).into_iter().find_map(|r| match r {
        Record::Step(s) => s.served_model,
        _ => None,
    });
    assert_eq!(served.as_deref(), Some("qwen-served"));
}

#[tokio::test]
async fn no_store_prompts_keeps_only_digests() {
    let server = FaultServer::start(vec![answer("served", "secret answer", "stop")]).await;
    let state = temp_dir();
    let journal = Journal::create(state.path(), "test.orch");
    let opts = RunOptions {
        no_store_prompts: true,
        ..options(Some(&journal))
    };
    let (r, events) = run_with(&script(&server, ""), &opts).await;
    assert!(r.succeeded);
    let a = &attempts(&events)[0];
    assert_eq!((&a.system, &a.prompt, &a.answer), (&None, &None, &None));
    let digest = a.prompt_digest.as_ref().expect("a digest of the prompt");
    assert_eq!(digest.chars, "hello <redacted>".chars().count());
    assert_eq!(digest.sha256.len(), 64);
    assert_eq!(a.answer_digest.as_ref().unwrap().chars, 13);
    assert!(a.system_digest.is_some());
    let text = std::fs::read_to_string(journal.path()).unwrap();
    assert!(!text.contains("You are terse."), "{text}");
    assert!(!text.contains("hello"), "{text}");
    // The step's output is a result, kept as before.
    assert!(text.contains("secret answer"));
}

#[tokio::test]
async fn a_cut_off_answer_is_kept_and_flagged_by_default() {
    let server = FaultServer::start(vec![answer("served", "half an ans", "length")]).await;
    let (r, events) = run_with(&script(&server, ""), &options(None)).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded);
    assert_eq!(x.output.as_deref(), Some("half an ans"));
    assert!(x.truncated);
    assert_eq!(x.warnings.len(), 1);
    assert!(x.warnings[0].contains("cut off"), "{:?}", x.warnings);
    let a = &attempts(&events)[0];
    assert!(a.truncated);
    assert_eq!(a.stop_reason.as_deref(), Some("max_tokens"));
    // The JSON report says so too.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["steps"][0]["truncated"], true);
    assert!(json["steps"][0]["warnings"][0].is_string());
}

#[tokio::test]
async fn on_truncated_fail_fails_the_step() {
    let server = FaultServer::start(vec![answer("served", "half", "length")]).await;
    let (r, _) = run_with(&script(&server, ", on_truncated: fail"), &options(None)).await;
    assert!(!r.succeeded);
    let StepStatus::Failed(e) = &step(&r, "x").status else {
        panic!("x should fail");
    };
    assert!(
        e.contains("cut off at `max_tokens` 50") && e.contains("on_truncated: fail"),
        "{e}"
    );
    // Not retried: a cut-off answer is final under `fail`.
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn on_truncated_retry_asks_again_with_twice_the_tokens() {
    let server = FaultServer::start(vec![
        answer("served", "half", "length"),
        answer("served", "whole answer", "stop"),
    ])
    .await;
    let (r, events) = run_with(&script(&server, ", on_truncated: retry"), &options(None)).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.output.as_deref(), Some("whole answer"));
    assert!(!x.truncated && x.warnings.is_empty());
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].json()["max_tokens"], 50);
    assert_eq!(got[1].json()["max_tokens"], 100);
    let seen = attempts(&events);
    assert!(seen[0].truncated && !seen[1].truncated);
}

#[tokio::test]
async fn on_truncated_retry_fails_when_no_attempt_is_left() {
    let server = FaultServer::start(vec![
        answer("served", "half", "length"),
        answer("served", "still half", "length"),
    ])
    .await;
    let (r, _) = run_with(
        &script(&server, ", on_truncated: retry, retry: 1"),
        &options(None),
    )
    .await;
    let StepStatus::Failed(e) = &step(&r, "x").status else {
        panic!("x should fail");
    };
    assert!(e.contains("cut off at `max_tokens` 100"), "{e}");
    assert_eq!(server.received().len(), 2);
}

/// A simulated run of `src`.
fn simulated() -> RunOptions {
    RunOptions {
        target: Target::Simulate {
            latency_ms: 1,
            run_commands: false,
        },
        ..RunOptions::default()
    }
}

const REPEAT: &str = r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 20 }
workflow main() {
  repeat <max 2> {
    draft = a("write")
  } until draft == "never"ELSE
  return draft
}
"#;

#[tokio::test]
async fn a_repeat_stopped_at_max_is_a_warning_and_with_else_fail_a_failure() {
    let (r, _) = run_with(&REPEAT.replace("ELSE", ""), &simulated()).await;
    assert!(r.succeeded);
    let region = step(&r, "repeat#1");
    assert_eq!(region.warnings.len(), 1, "{region:?}");
    assert!(
        region.warnings[0].contains("stopped at `max 2` without `until` holding"),
        "{:?}",
        region.warnings
    );

    let (r, _) = run_with(&REPEAT.replace("ELSE", " else fail"), &simulated()).await;
    assert!(!r.succeeded);
    let StepStatus::Failed(e) = &step(&r, "repeat#1").status else {
        panic!("the loop should fail");
    };
    assert!(
        e.contains("stopped at `max 2`") && e.contains("else fail"),
        "{e}"
    );
    // Both iterations ran.
    assert_eq!(step(&r, "draft#2").status, StepStatus::Succeeded);
}

#[tokio::test]
async fn an_empty_parallel_for_is_reported() {
    let src = r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 20 }
workflow main(items: list<text>) {
  posts = parallel for item in items {
    post = a("write about {item}")
  }
  return posts
}
"#;
    let opts = RunOptions {
        inputs: crate::common::run::inputs(&[("items", "[]")]),
        ..simulated()
    };
    let (r, _) = run_with(src, &opts).await;
    assert!(r.succeeded);
    let posts = step(&r, "posts");
    assert_eq!(posts.warnings.len(), 1, "{posts:?}");
    assert!(
        posts.warnings[0].contains("`items` is empty"),
        "{:?}",
        posts.warnings
    );
}

/// The CLI: `-v` prints the prompt as it is sent, the summary flags a warning, the journal has
/// a `warning` record, and `orch runs show` prints every call's texts.
#[test]
fn verbose_progress_and_runs_show() {
    let dir = temp_dir();
    let file = dir.path().join("loop.orch");
    std::fs::write(&file, REPEAT.replace("ELSE", "")).unwrap();
    let state = dir.path().join("state");
    let out = orch_command()
        .args([
            "run",
            file.to_str().unwrap(),
            "--simulate",
            "--sim-latency",
            "1ms",
            "-v",
        ])
        .env("ORCH_STATE_DIR", &state)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("draft#1  m sends:") || err.contains("sends:"),
        "{err}"
    );
    assert!(err.contains("    prompt:\n      write\n"), "{err}");
    assert!(err.contains("(1 with a warning)"), "{err}");
    assert!(
        err.contains("warning: repeat#1: stopped at `max 2`"),
        "{err}"
    );

    let id = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let journal =
        std::fs::read_to_string(state.join("runs").join(&id).join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""type":"warning","step":"repeat#1""#),
        "{journal}"
    );

    let show = orch_command()
        .args(["runs", "show", &id, "draft"])
        .env("ORCH_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = stdout(&show);
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(text.contains("step draft#1 · succeeded"), "{text}");
    assert!(text.contains("step draft#2 · succeeded"), "{text}");
    assert!(
        text.contains("attempt 1 · m on simulator · served by m · stop end_turn"),
        "{text}"
    );
    assert!(
        text.contains("    prompt:\n      write\n    answer:\n      [sim"),
        "{text}"
    );

    let unknown = orch_command()
        .args(["runs", "show", &id, "nope"])
        .env("ORCH_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no step `nope`; its steps: draft#1"),
        "{}",
        stderr(&unknown)
    );
    let missing = orch_command()
        .args(["runs", "show", "no-such-run"])
        .env("ORCH_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no run `no-such-run`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn else_fail_is_parsed_formatted_and_planned() {
    let messy = REPEAT.replace("ELSE", "   else    fail");
    let formatted = orch::fmt::format_source(&messy).expect("formats");
    assert!(
        formatted.contains("} until draft == \"never\" else fail\n"),
        "{formatted}"
    );
    assert_eq!(orch::fmt::format_source(&formatted).unwrap(), formatted);
    let (_, plan) = crate::common::compile_plan("loop.orch", &formatted);
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains(r#""else_fail":true"#), "{json}");
    let (_, plain) = crate::common::compile_plan("loop.orch", &REPEAT.replace("ELSE", ""));
    assert!(!serde_json::to_string(&plain).unwrap().contains("else_fail"));
}

#[test]
fn on_truncated_takes_warn_fail_or_retry() {
    let src = |v: &str| {
        format!(
            "provider s {{ kind: sim }}\nmodel m {{ provider: s }}\nagent a {{ model: m, on_truncated: {v} }}\nworkflow main() {{ x = a(\"hi\") }}\n"
        )
    };
    let (_, plan) = crate::common::compile_plan("t.orch", &src("retry"));
    assert!(
        serde_json::to_string(&plan)
            .unwrap()
            .contains(r#""on_truncated":"retry""#)
    );
    let dir = temp_dir();
    let file = dir.path().join("bad.orch");
    std::fs::write(&file, src("maybe")).unwrap();
    let out = orch_command()
        .args(["check", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("on_truncated") && said.contains("retry"),
        "{said}"
    );
}

/// With `--endpoint`, progress and the summary name the model the server said answered, and
/// a cut-off answer is flagged in both.
#[tokio::test]
async fn endpoint_runs_show_the_served_model_and_flag_cut_off_answers() {
    let server = FaultServer::start(vec![answer("qwen-served", "half", "length")]).await;
    let dir = temp_dir();
    let file = dir.path().join("one.orch");
    std::fs::write(
        &file,
        "include \"std/models.orch\"\nagent a { model: sonnet, max_tokens: 50 }\nworkflow main() { x = a(\"hi\") }\n",
    )
    .unwrap();
    let endpoint = format!("{}/v1", server.uri());
    let state = dir.path().join("state");
    let out = tokio::task::spawn_blocking(move || {
        orch_command()
            .args([
                "run",
                file.to_str().unwrap(),
                "--endpoint",
                &endpoint,
                "--no-stream",
            ])
            .env("ORCH_STATE_DIR", &state)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("· served by qwen-served"), "{err}");
    assert!(err.contains("was cut off at its token limit"), "{err}");
    let table = err.split("summary").nth(1).expect("a summary");
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("x "))
        .unwrap();
    assert!(
        row.contains("qwen-served") && !row.contains("sonnet"),
        "{row}"
    );
    assert!(
        table.contains("warning: x: its answer was cut off"),
        "{table}"
    );
}
