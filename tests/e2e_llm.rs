//! End to end against a real OpenAI-compatible server (llama-cpp-python serving Gemma 3 270M,
//! started by `scripts/test.sh`). The model's answers are weak; these tests check the
//! plumbing: every step gets real model text, and token counts come from the server's `usage`.
//!
//! Needs `ORCH_E2E_ENDPOINT` (e.g. `http://127.0.0.1:8089/v1`). Without it the tests are
//! skipped with a message, unless `ORCH_E2E_REQUIRED=1` (set by scripts/test.sh and CI), in
//! which case they fail.

use std::path::Path;
use std::process::Command;

fn endpoint() -> Option<String> {
    match std::env::var("ORCH_E2E_ENDPOINT") {
        Ok(url) if !url.is_empty() => {
            assert!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
                "end-to-end tests only talk to a server on loopback, not {url}"
            );
            Some(url)
        }
        _ => {
            assert!(
                std::env::var("ORCH_E2E_REQUIRED").as_deref() != Ok("1"),
                "ORCH_E2E_REQUIRED=1 but ORCH_E2E_ENDPOINT is not set: run the tests with scripts/test.sh"
            );
            eprintln!(
                "skipped: ORCH_E2E_ENDPOINT is not set (scripts/test.sh starts a local server and sets it)"
            );
            None
        }
    }
}

/// Runs an example against the endpoint and returns the JSON run report and stdout.
fn run_example(url: &str, example: &str, inputs: &[&str]) -> (serde_json::Value, String) {
    run_example_with(url, example, inputs, &[])
}

/// [`run_example`] with extra `orch run` arguments.
fn run_example_with(
    url: &str,
    example: &str,
    inputs: &[&str],
    extra: &[&str],
) -> (serde_json::Value, String) {
    run_example_capped(url, example, inputs, extra, "48")
}

/// [`run_example_with`] with another `--max-tokens` cap: a structured answer needs room for
/// its whole JSON.
fn run_example_capped(
    url: &str,
    example: &str,
    inputs: &[&str],
    extra: &[&str],
    max_tokens: &str,
) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("orch-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One report file per call: tests run in parallel and may run the same example.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let report = dir.join(format!("{}-{run}.json", example.replace('/', "_")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ORCH_STATE_DIR", dir.join("state"))
        .args([
            "run",
            example,
            "--endpoint",
            url,
            "--max-tokens",
            max_tokens,
            "--quiet",
            "--color",
            "never",
            "--report",
        ])
        .arg(&report)
        // No hosted provider may be reached, whatever the caller's environment holds.
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY");
    for i in inputs {
        cmd.args(["--input", i]);
    }
    cmd.args(extra);
    let out = cmd.output().expect("orch runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{example} failed:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (report, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn assert_real_model_steps(report: &serde_json::Value) -> usize {
    let steps = report["steps"].as_array().unwrap();
    let mut models = 0;
    for s in steps {
        assert_eq!(s["status"], "succeeded", "step {}", s["name"]);
        // Commands print, and regions (`for`, `repeat`, `if`, calls) only hold their steps.
        if s["model"] == "command" || s["model"].is_null() {
            continue;
        }
        models += 1;
        let text = s["output"].as_str().unwrap();
        assert!(!text.trim().is_empty(), "step {} got no text", s["name"]);
        assert!(
            !text.starts_with("[sim"),
            "step {} was simulated",
            s["name"]
        );
        // Usage comes from the server: the prompt is never empty, and some text came back.
        assert!(
            s["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "step {} input tokens",
            s["name"]
        );
        assert!(
            s["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "step {} output tokens",
            s["name"]
        );
        assert!(s["attempts"].as_u64().unwrap() >= 1);
    }
    models
}

#[test]
fn scout_plan_build_runs_on_the_local_model() {
    let Some(url) = endpoint() else { return };
    let (report, stdout) = run_example(
        &url,
        "examples/scout_plan_build.orch",
        &["request=Add a login form to a small Flask app"],
    );
    assert_eq!(assert_real_model_steps(&report), 6);
    assert_eq!(report["succeeded"], true);
    assert!(report["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!stdout.trim().is_empty(), "the return value goes to stdout");
    // The returned value is the review step's text.
    let review = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "review")
        .unwrap();
    assert_eq!(stdout.trim(), review["output"].as_str().unwrap().trim());
}

#[test]
fn more_examples_run_on_the_local_model() {
    let Some(url) = endpoint() else { return };
    for (example, inputs) in [
        (
            "examples/scatter_gather_reviews.orch",
            vec!["code=def add(a, b): return a - b"],
        ),
        ("examples/build_test_deploy.orch", vec!["version=1.2.3"]),
    ] {
        if !Path::new(env!("CARGO_MANIFEST_DIR")).join(example).exists() {
            panic!("{example} is missing");
        }
        let (report, _) = run_example(&url, example, &inputs);
        assert!(assert_real_model_steps(&report) >= 1, "{example}");
    }
}

#[test]
fn streamed_and_whole_answers_both_work_on_the_local_model() {
    let Some(url) = endpoint() else { return };
    let example = "examples/scatter_gather_reviews.orch";
    let inputs = ["code=def add(a, b): return a - b"];
    // Streaming is the default: text arrives in chunks, usage from the server or estimated.
    let (streamed, _) = run_example(&url, example, &inputs);
    let n = assert_real_model_steps(&streamed);
    assert!(n >= 1);
    // Without streaming, the server's own usage counts come back, never estimated.
    let (whole, _) = run_example_with(&url, example, &inputs, &["--no-stream"]);
    assert_eq!(assert_real_model_steps(&whole), n);
    for s in whole["steps"].as_array().unwrap() {
        assert!(
            s["usage"].get("estimated").is_none(),
            "step {} has estimated usage without streaming",
            s["name"]
        );
    }
}

/// The steps of a report whose name starts with `prefix`.
fn steps_named<'r>(report: &'r serde_json::Value, prefix: &str) -> Vec<&'r serde_json::Value> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
        .collect()
}

/// The hierarchical pattern against the real model: the lead's answer is a real JSON list
/// (asked for with `response_format`), and the specialists fan out over it, one per item.
#[test]
fn hierarchical_pattern_fans_out_over_the_local_models_list() {
    let Some(url) = endpoint() else { return };
    let (report, stdout) = run_example_capped(
        &url,
        "examples/hierarchical.orch",
        &["goal=Audit a small web shop"],
        &[],
        "160",
    );
    assert_eq!(report["succeeded"], true);
    assert_real_model_steps(&report);
    let lead = steps_named(&report, "report/subtasks");
    let items = lead[0]["value"]
        .as_array()
        .expect("the lead's answer is a list");
    assert!(!items.is_empty());
    // One specialist per item of the list, each with real text.
    let specialists = steps_named(&report, "report/result[");
    assert_eq!(specialists.len(), items.len());
    assert!(!stdout.trim().is_empty());
}

/// The review-refine pattern against the real model: every verdict is a record parsed from
/// the model's JSON; the loop ends when one approves or after three rounds.
#[test]
fn review_refine_pattern_loops_on_the_local_models_verdicts() {
    let Some(url) = endpoint() else { return };
    let (report, _) = run_example_capped(
        &url,
        "examples/review_refine.orch",
        &["task=A two-sentence product update for a todo app"],
        &[],
        "120",
    );
    assert_eq!(report["succeeded"], true);
    assert_real_model_steps(&report);
    let verdicts = steps_named(&report, "post/verdict#");
    assert!(
        (1..=3).contains(&verdicts.len()),
        "{} rounds",
        verdicts.len()
    );
    for (i, v) in verdicts.iter().enumerate() {
        let approved = v["value"]["approved"].as_bool().expect("a bool `approved`");
        // Only the last round may approve: the loop stops at the first approval.
        assert!(!approved || i + 1 == verdicts.len());
    }
    assert_eq!(steps_named(&report, "post/draft#").len(), verdicts.len());
}

/// A structured answer the model cannot give (here: cut off by a tiny token cap) is retried
/// with the problem in the prompt, then reported clearly; the run keeps what completed.
#[test]
fn a_structured_answer_the_local_model_cannot_give_is_retried_then_reported() {
    let Some(url) = endpoint() else { return };
    let dir = std::env::temp_dir().join(format!("orch-e2e-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("cut.orch");
    std::fs::write(
        &script,
        r#"include "std/models.orch"
agent lead { model: sonnet, system: "You plan." }
workflow main(goal: text) {
  first = lead("Say hello")
  tasks = lead<retry 1>("Plan: {goal}") -> { title: text, steps: list<text>, risks: list<text> }
  return tasks
}
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["run"])
        .arg(&script)
        .args([
            "--endpoint",
            &url,
            "--max-tokens",
            "4",
            "--no-journal",
            "--color",
            "never",
        ])
        .args(["--input", "goal=Build a web shop"])
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a valid {"),
        "the failure names the expected type:\n{stderr}"
    );
    assert!(stderr.contains("tasks"), "{stderr}");
    // Two attempts (`retry 1`), the second with the problem in its prompt.
    assert!(stderr.contains("attempt 2"), "{stderr}");
}
