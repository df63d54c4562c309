//! End to end against a real OpenAI-compatible server (llama-cpp-python serving Gemma 3 270M,
//! started by `scripts/test.sh`). The model is weak: it may answer with empty text, an empty
//! list or a record cut short. These tests check the plumbing only — requests are made, token
//! counts come from the server, answers are parsed, and an answer that does not fit is retried
//! then reported — never what the model says.
//!
//! They are `#[ignore]`d: `cargo test` lists them as ignored, and `scripts/test.sh` runs them
//! (`--include-ignored`) with `ORCH_E2E_ENDPOINT` set to the server it started. Run by hand:
//! `ORCH_E2E_ENDPOINT=http://127.0.0.1:8089/v1 cargo test --test it e2e_llm:: -- --include-ignored`.

use std::path::Path;

use crate::common::cli::orch_command;
use crate::common::e2e_endpoint as endpoint;
use crate::common::temp_dir;

/// What one `orch run` against the endpoint left: the JSON run report, stdout, stderr and
/// whether it exited with success.
struct Outcome {
    report: serde_json::Value,
    stdout: String,
    stderr: String,
    success: bool,
}

/// Runs an example whose steps all answer in text against the endpoint: it must succeed,
/// whatever the model says.
fn run_example(url: &str, example: &str, inputs: &[&str]) -> Outcome {
    run_example_with(url, example, inputs, &[])
}

/// [`run_example`] with extra `orch run` arguments.
fn run_example_with(url: &str, example: &str, inputs: &[&str], extra: &[&str]) -> Outcome {
    let out = run_orch(url, example, inputs, extra, "48");
    assert!(out.success, "{example} failed:\n{}", out.stderr);
    assert_eq!(out.report["succeeded"], true);
    out
}

/// Runs `example` against the endpoint with a `--max-tokens` cap (a structured answer needs
/// room for its whole JSON), whatever the outcome. The exit status must agree with the
/// report.
fn run_orch(
    url: &str,
    example: &str,
    inputs: &[&str],
    extra: &[&str],
    max_tokens: &str,
) -> Outcome {
    let tmp = temp_dir();
    let dir = tmp.path();
    let report = dir.join(format!("{}.json", example.replace('/', "_")));
    let mut cmd = orch_command();
    cmd.env("ORCH_STATE_DIR", dir.join("state"))
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
            "--workspace",
        ])
        .arg(scratch_workspace(dir))
        .arg("--report")
        .arg(&report);
    for i in inputs {
        cmd.args(["--input", i]);
    }
    cmd.args(extra);
    let recording = Recording::new(example, inputs, extra, max_tokens);
    if let Some(r) = &recording {
        cmd.arg("--record").arg(&r.cassette);
    }
    let out = cmd.output().expect("orch runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("{example}: no report ({e}):\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["succeeded"].as_bool(),
        Some(out.status.success()),
        "{example}: the exit status disagrees with the report:\n{stderr}"
    );
    let outcome = Outcome {
        report,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        success: out.status.success(),
    };
    if let Some(r) = recording {
        r.finish(&outcome);
    }
    outcome
}

/// A run being recorded to a cassette (`ORCH_E2E_RECORD=DIR`, set by
/// `scripts/record-cassettes.sh`): DIR/NAME.jsonl, and beside it NAME.run.json saying how to
/// replay it and what it printed, which `cassette::the_end_to_end_cassettes_replay_...`
/// replays in every test run.
struct Recording {
    cassette: std::path::PathBuf,
    manifest: std::path::PathBuf,
    script: String,
    args: Vec<String>,
}

impl Recording {
    fn new(example: &str, inputs: &[&str], extra: &[&str], max_tokens: &str) -> Option<Self> {
        let dir = std::path::PathBuf::from(std::env::var_os("ORCH_E2E_RECORD")?);
        let path = Path::new(example);
        let stem = path.file_stem()?.to_string_lossy().into_owned();
        let whole = extra.contains(&"--no-stream");
        // A script written by the test is kept beside its cassette.
        let (name, script) = if path.is_relative() {
            (stem, example.to_string())
        } else {
            let name = format!("written-{stem}");
            let copy = dir.join(format!("{name}.orch"));
            std::fs::copy(path, &copy).expect("the test's script is copied");
            let rel = copy
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(&copy);
            (name, rel.to_string_lossy().into_owned())
        };
        let name = if whole { format!("{name}-whole") } else { name };
        let mut args = vec!["--max-tokens".to_string(), max_tokens.to_string()];
        for i in inputs {
            args.extend(["--input".to_string(), i.to_string()]);
        }
        // Flags of --endpoint are not a replay's.
        args.extend(
            extra
                .iter()
                .filter(|a| **a != "--no-stream")
                .map(|a| a.to_string()),
        );
        Some(Recording {
            cassette: dir.join(format!("{name}.jsonl")),
            manifest: dir.join(format!("{name}.run.json")),
            script,
            args,
        })
    }

    fn finish(self, out: &Outcome) {
        let steps: Vec<serde_json::Value> = out.report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| serde_json::json!([s["name"], s["status"], s["output"]]))
            .collect();
        let manifest = serde_json::json!({
            "script": self.script,
            "args": self.args,
            "stdout": out.stdout,
            "succeeded": out.success,
            "steps": steps,
        });
        let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
        std::fs::write(&self.manifest, text).expect("the manifest is written");
    }
}

/// A small project for the examples' agents to work in, under `dir`: a model that writes,
/// edits or runs `cargo test` does so there, never in this repository.
fn scratch_workspace(dir: &Path) -> std::path::PathBuf {
    let ws = dir.join("workspace");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("README.md"), "# adder\n\nAdds two numbers.\n").unwrap();
    std::fs::write(ws.join("src/app.py"), "def add(a, b):\n    return a - b\n").unwrap();
    ws
}

/// The model steps of a report that ran (commands, regions and steps that never started
/// left out).
fn model_steps(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !(s["model"] == "command" || s["model"].is_null()))
        .filter(|s| s["attempts"].as_u64().unwrap() >= 1)
        .collect()
}

/// Checks the plumbing of every model step that ran, and returns how many there are: each
/// either succeeded with an answer from the server (not the simulator; text, possibly empty:
/// the model may say nothing) whose input was counted, or failed with a reason (a request cut
/// by a timeout may have counted nothing). Never what the answers say.
fn assert_model_steps_ran(report: &serde_json::Value) -> usize {
    let steps = model_steps(report);
    for s in &steps {
        let name = &s["name"];
        assert!(s["usage"]["input_tokens"].is_u64(), "step {name}");
        assert!(s["usage"]["output_tokens"].is_u64(), "step {name}");
        match s["status"].as_str().unwrap() {
            "succeeded" => {
                assert!(
                    s["usage"]["input_tokens"].as_u64().unwrap() > 0,
                    "step {name}: no input tokens counted"
                );
                let text = s["output"]
                    .as_str()
                    .expect("a succeeded step has an output");
                assert!(!text.starts_with("[sim"), "step {name} was simulated");
            }
            "failed" => assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty())),
            other => panic!("step {name} {other}"),
        }
    }
    steps.len()
}

/// [`assert_model_steps_ran`] for a run whose steps all answer in text: every one succeeded.
fn assert_text_steps_succeeded(report: &serde_json::Value) -> usize {
    let n = assert_model_steps_ran(report);
    for s in model_steps(report) {
        assert_eq!(
            s["status"], "succeeded",
            "step {}: {}",
            s["name"], s["reason"]
        );
    }
    n
}

/// Checks a structured step's outcome: a value was parsed from the model's answer, or the
/// failure says the answer was not a value of the type (after the retries with the problem
/// in the prompt). Returns the value, if any.
fn parsed_or_reported(step: &serde_json::Value) -> Option<&serde_json::Value> {
    match step["status"].as_str().unwrap() {
        "succeeded" => Some(step.get("value").expect("a structured step has a value")),
        "failed" => {
            let reason = step["reason"].as_str().unwrap();
            assert!(
                reason.contains("is not a valid"),
                "{}: {reason}",
                step["name"]
            );
            None
        }
        other => panic!("{}: {other}", step["name"]),
    }
}

/// Scout / plan / build against the real model, in a scratch workspace. Its scouts, builder
/// and reviewer run agent loops: a 270M model may call tools until `max_turns`, which fails
/// the step with a reason, so only the plumbing is checked — every model step that ran made
/// requests and settled, and a run that succeeded printed the review.
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn scout_plan_build_runs_on_the_local_model() {
    let url = endpoint();
    let out = run_orch(
        &url,
        "examples/scout_plan_build.orch",
        &["request=Add a login form to a small Flask app"],
        &[],
        "48",
    );
    assert!(assert_model_steps_ran(&out.report) >= 1);
    if out.success {
        assert!(out.report["usage"]["input_tokens"].as_u64().unwrap() > 0);
        // The returned value, the review step's text, goes to stdout.
        let review = out.report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "review")
            .unwrap();
        assert_eq!(out.stdout.trim(), review["output"].as_str().unwrap().trim());
    }
}

/// More examples against the real model: the reviews (agent loops: plumbing only, as above)
/// and build / test / deploy (text answers and commands: every step succeeds).
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn more_examples_run_on_the_local_model() {
    let url = endpoint();
    let reviews = run_orch(
        &url,
        "examples/scatter_gather_reviews.orch",
        &["code=def add(a, b): return a - b"],
        &[],
        "48",
    );
    assert!(assert_model_steps_ran(&reviews.report) >= 1);
    let deploy = run_example(&url, "examples/build_test_deploy.orch", &["version=1.2.3"]);
    assert!(assert_text_steps_succeeded(&deploy.report) >= 1);
}

/// A fan-out of text answers and a fan-in, without tools: what the streaming test runs, so
/// that it checks how answers arrive and nothing of agent loops or deadlines.
const TEXT_FAN_OUT: &str = r#"include "std/models.orch"
agent reviewer { model: sonnet, system: "You review code. Be brief." }
agent lead { model: sonnet, system: "You merge reviews into an action plan." }
workflow main(code: text) -> text {
  reviews = parallel {
    security = reviewer("Security review:\n\n{code}")
    quality  = reviewer("Quality review:\n\n{code}")
  }
  plan = lead("Action plan from these reviews:\n\n{reviews}")
  return plan
}
"#;

#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn streamed_and_whole_answers_both_work_on_the_local_model() {
    let url = endpoint();
    let tmp = temp_dir();
    let script = tmp.path().join("fan_out.orch");
    std::fs::write(&script, TEXT_FAN_OUT).unwrap();
    let script = script.to_str().unwrap();
    let inputs = ["code=def add(a, b): return a - b"];
    // Streaming is the default: text arrives in chunks, usage from the server or estimated.
    let streamed = run_example(&url, script, &inputs);
    assert_eq!(assert_text_steps_succeeded(&streamed.report), 3);
    // Without streaming, the server's own usage counts come back, never estimated.
    let whole = run_example_with(&url, script, &inputs, &["--no-stream"]);
    assert_eq!(assert_text_steps_succeeded(&whole.report), 3);
    for s in model_steps(&whole.report) {
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

/// The hierarchical pattern against the real model: the lead's answer is parsed as a JSON
/// list (asked for with `response_format`) or reported as not one, and the specialists fan
/// out over it, at most one per item — however many items the model gave, none included —
/// in a scratch workspace.
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn hierarchical_pattern_fans_out_over_the_local_models_list() {
    let url = endpoint();
    let out = run_orch(
        &url,
        "examples/hierarchical.orch",
        &["goal=Audit a small web shop"],
        &[],
        "160",
    );
    assert_model_steps_ran(&out.report);
    let lead = steps_named(&out.report, "report/subtasks");
    let specialists = steps_named(&out.report, "report/result[");
    match parsed_or_reported(lead[0]) {
        Some(list) => {
            let items = list.as_array().expect("the lead's value is a list");
            // Specialists run agent loops, which a 270M model may end at `max_turns` (a
            // failure with a reason, checked above); a run that succeeded ran one per item.
            assert!(specialists.len() <= items.len(), "{specialists:?}");
            if out.success {
                assert_eq!(specialists.len(), items.len());
            }
        }
        None => {
            // The run stops at the failure: nothing fans out, and the exit status says so.
            assert!(specialists.is_empty(), "{specialists:?}");
            assert!(!out.success);
        }
    }
}

/// The review-refine pattern against the real model: every verdict is a record parsed from
/// the model's JSON (or an answer reported as not one, which ends the run); the loop ends at
/// the first approval or after three rounds.
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn review_refine_pattern_loops_on_the_local_models_verdicts() {
    let url = endpoint();
    let out = run_orch(
        &url,
        "examples/review_refine.orch",
        &["task=A two-sentence product update for a todo app"],
        &[],
        "120",
    );
    assert_model_steps_ran(&out.report);
    let verdicts = steps_named(&out.report, "post/verdict#");
    assert!(
        (1..=3).contains(&verdicts.len()),
        "{} rounds",
        verdicts.len()
    );
    for (i, v) in verdicts.iter().enumerate() {
        let last = i + 1 == verdicts.len();
        match parsed_or_reported(v) {
            Some(value) => {
                let approved = value["approved"].as_bool().expect("a bool `approved`");
                // The loop stops at the first approval.
                assert!(
                    !approved || last,
                    "round {} approved, yet the loop went on",
                    i + 1
                );
            }
            // A verdict that is not a record fails the step and stops the loop.
            None => assert!(
                last && !out.success,
                "round {} failed, yet the loop went on",
                i + 1
            ),
        }
    }
    assert_eq!(
        steps_named(&out.report, "post/draft#").len(),
        verdicts.len()
    );
}

/// A structured answer the model cannot give (here: cut off by a tiny token cap) is retried
/// with the problem in the prompt, then reported clearly; the run keeps what completed.
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn a_structured_answer_the_local_model_cannot_give_is_retried_then_reported() {
    let url = endpoint();
    let tmp = temp_dir();
    let dir = tmp.path();
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
    let out = orch_command()
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
