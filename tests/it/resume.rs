//! Runs that stop — a failure, a budget, Ctrl-C, `kill -9` — and resume from their journal:
//! in process on the simulator (paused clock where timing matters), and with the real binary
//! against a local OpenAI-compatible server that counts requests per step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use orch::run::cancel::Cancel;
use orch::run::journal::{Journal, JournalError};
use orch::run::{EnvLookup, Event, RunOptions, RunReport, StepStatus};

use crate::common::cli::orch_command;
use crate::common::counting_llm::Llm;
use crate::common::run::{inputs, run_with, step};
use crate::common::temp_dir;

// ------------------------------------------------------------------ helpers

/// Why each step ran again, from the `Rerun` events.
fn reruns(events: &[Event]) -> HashMap<String, String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rerun { step, why } => Some((step.clone(), why.clone())),
            _ => None,
        })
        .collect()
}

/// The journal's records as JSON values, one per line (every line must be complete JSON).
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `(name, status)` of the journal's `step` records.
fn step_records(path: &Path) -> Vec<(String, String)> {
    records(path)
        .iter()
        .filter(|r| r["type"] == "step")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Same outcome: every step's status and output, and the run's output.
fn assert_same_outcome(a: &RunReport, b: &RunReport) {
    assert_eq!(a.output, b.output);
    assert_eq!(a.succeeded, b.succeeded);
    for (x, y) in a.steps.iter().zip(&b.steps) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.status, y.status, "{}", x.name);
        assert_eq!(x.output, y.output, "{}", x.name);
        assert_eq!(x.usage, y.usage, "{}", x.name);
    }
}

const SCRIPT: &str = "/scripts/test.orch";

// ------------------------------------------------------------------ resume after a failure

const GATED: &str = r#"
provider s { kind: sim, latency: 5ms }
model m { provider: s, name: "m-1" }
agent a { model: m, max_tokens: 60 }
agent gate(flag: text) { run: ["sh", "-c", "test -f \"$1\" && echo open", "gate", "{flag}"] }
workflow main(topic: text, flag: text) {
  scout = a("scout {topic}")
  parallel <> {
    left = a("left from {scout}")
    g = gate(flag: "{flag}")
  }
  right = a("right from {left} and {g}")
  return right
}
"#;

#[tokio::test]
async fn a_failed_run_resumes_reusing_what_completed_and_ends_like_an_uninterrupted_run() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let flag = dir.join("flag");
    let flag_s = flag.to_string_lossy().into_owned();
    let state = dir.join("state");

    let journal = Journal::create(&state, SCRIPT);
    let opts = RunOptions {
        inputs: inputs(&[("topic", "cats"), ("flag", &flag_s)]),
        journal: Some(journal.clone()),
        ..RunOptions::default()
    };
    let (first, _) = run_with(GATED, &opts).await;
    assert!(!first.succeeded);
    assert!(matches!(step(&first, "g").status, StepStatus::Failed(_)));
    assert_eq!(first.run_id.as_deref(), Some(journal.id().as_str()));
    let recorded = step_records(&journal.path());
    assert!(recorded.contains(&("scout".into(), "succeeded".into())));
    assert!(recorded.contains(&("left".into(), "succeeded".into())));
    assert!(recorded.contains(&("g".into(), "failed".into())));
    let last = records(&journal.path()).pop().unwrap();
    assert_eq!(last["type"], "end");
    assert_eq!(last["status"], "failed");

    std::fs::write(&flag, "").unwrap();
    let resumed = Journal::resume(&state, SCRIPT, "main", None).expect("resumable");
    assert_eq!(resumed.id(), journal.id());
    assert_eq!(resumed.recorded_inputs(), opts.inputs);
    let opts2 = RunOptions {
        inputs: resumed.recorded_inputs(),
        journal: Some(resumed.clone()),
        ..RunOptions::default()
    };
    let (second, events) = run_with(GATED, &opts2).await;
    assert!(second.succeeded, "{second:?}");
    assert_eq!(second.reused, vec!["scout".to_string(), "left".to_string()]);
    let why = reruns(&events);
    assert!(why["g"].starts_with("it failed last time"), "{why:?}");
    assert_eq!(
        why["right"],
        "it did not start last time (the run stopped before it)"
    );
    assert!(!why.contains_key("scout") && !why.contains_key("left"));
    // Reused steps keep what they cost when they ran.
    assert_eq!(
        step(&second, "scout").usage,
        step(&first, "scout").usage,
        "reused usage"
    );

    let (whole, _) = run_with(
        GATED,
        &RunOptions {
            inputs: opts.inputs.clone(),
            ..RunOptions::default()
        },
    )
    .await;
    assert_same_outcome(&second, &whole);
    assert!(whole.reused.is_empty() && whole.run_id.is_none());
    // The resumed run appended to the same journal and ended it.
    let recs = records(&journal.path());
    assert_eq!(recs.iter().filter(|r| r["type"] == "run").count(), 1);
    assert_eq!(recs.iter().filter(|r| r["type"] == "resume").count(), 1);
    assert_eq!(recs.last().unwrap()["status"], "succeeded");
    // Nothing left to resume now.
    let err = Journal::resume(&state, SCRIPT, "main", None).unwrap_err();
    assert!(
        err.to_string().contains("no unfinished run") && err.to_string().contains("succeeded"),
        "{err}"
    );
}

// ------------------------------------------------------------------ edits re-run what they affect

const CHAIN: &str = r#"
provider s { kind: sim, latency: 1s }
model sonnet { provider: s, name: "claude-sonnet-4-5" }
model opus { provider: s, name: "claude-opus-4-5" }
agent a { model: sonnet, max_tokens: 80 }
agent b { max_tokens: 80 }
workflow main(topic: text) {
  scout = a("Scout {topic}")
  parallel <> {
    plan = a("Plan from {scout}")
    side = a("Side notes on {topic}")
  }
  build = b<sonnet>("Build {plan}")
  return build
}
"#;

#[tokio::test(start_paused = true)]
async fn after_an_edit_exactly_the_affected_steps_rerun_and_say_why() {
    let tmp = temp_dir();
    let state = tmp.path();
    let base = RunOptions {
        inputs: inputs(&[("topic", "a shop")]),
        ..RunOptions::default()
    };
    let id = first_run(state, CHAIN, &base).await;

    // An edited prompt: that step and what depends on it.
    let edited = CHAIN.replace("Plan from {scout}", "Plan carefully from {scout}");
    let (r, events) = resume_with(state, &id, &edited, &base).await;
    assert!(r.succeeded);
    assert_eq!(r.reused, vec!["scout".to_string(), "side".to_string()]);
    let why = reruns(&events);
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!(
        why["plan"],
        "prompt changed (the step was edited in the script)"
    );
    assert_eq!(why["build"], "prompt changed (upstream `plan` re-ran)");
    // Reuse is instant: only the two re-run steps took time.
    assert_eq!(r.wall_ms, 2000);

    // Another model for one step.
    let model = edited.replace("b<sonnet>", "b<opus>");
    let (r, events) = resume_with(state, &id, &model, &base).await;
    assert_eq!(r.reused, vec!["scout", "plan", "side"]);
    assert_eq!(reruns(&events)["build"], "model changed sonnet → opus");

    // Another input: every step that uses it, and their dependants.
    let resumed = Journal::resume(state, SCRIPT, "main", Some(&id)).expect("by id");
    let (r, events) = run_with(
        &model,
        &RunOptions {
            inputs: inputs(&[("topic", "a bakery")]),
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(r.reused.is_empty());
    let why = reruns(&events);
    assert_eq!(why["scout"], "prompt changed (input `topic` changed)");
    assert_eq!(why["side"], "prompt changed (input `topic` changed)");
    assert_eq!(why["plan"], "prompt changed (upstream `scout` re-ran)");

    // Policies are not part of the key: a retry and a fallback re-run nothing.
    let policies = model.replace(
        "agent b { max_tokens: 80 }",
        "agent b { max_tokens: 80, retry: 3, fallback: sonnet }",
    );
    let resumed = Journal::resume(state, SCRIPT, "main", Some(&id)).expect("by id");
    let (r, events) = run_with(
        &policies,
        &RunOptions {
            inputs: inputs(&[("topic", "a bakery")]),
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.reused.len(), 4, "{:?}", reruns(&events));
    assert_eq!(r.wall_ms, 0);
}

const TYPED: &str = r#"
provider s { kind: sim, latency: 1s }
model m { provider: s }
agent a { model: m, max_tokens: 80 }
workflow main(topic: text) {
  scout = a("Scout {topic}")
  plan = a("Plan from {scout}") -> { tasks: list<text> }
  return plan
}
"#;

/// Runs `script` once with a new journal in `state`; its run id. Panics if it fails.
async fn first_run(state: &Path, script: &str, base: &RunOptions) -> String {
    let journal = Journal::create(state, SCRIPT);
    let (first, _) = run_with(
        script,
        &RunOptions {
            journal: Some(journal.clone()),
            ..base.clone()
        },
    )
    .await;
    assert!(first.succeeded);
    journal.id()
}

/// Resumes run `id` of [`SCRIPT`] under `state` with `script`.
async fn resume_with(
    state: &Path,
    id: &str,
    script: &str,
    base: &RunOptions,
) -> (RunReport, Vec<Event>) {
    let resumed = Journal::resume(state, SCRIPT, "main", Some(id)).expect("by id");
    run_with(
        script,
        &RunOptions {
            journal: Some(resumed),
            ..base.clone()
        },
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn changing_a_steps_output_type_reruns_it() {
    let tmp = temp_dir();
    let state = tmp.path();
    let base = RunOptions {
        inputs: inputs(&[("topic", "a shop")]),
        ..RunOptions::default()
    };
    let id = first_run(state, TYPED, &base).await;

    // The same type: everything is reused.
    let (r, events) = resume_with(state, &id, TYPED, &base).await;
    assert_eq!(r.reused, vec!["scout", "plan"], "{:?}", reruns(&events));

    // Another type: the step runs again (its prompt is unchanged), and says why.
    let retyped = TYPED.replace(
        "-> { tasks: list<text> }",
        "-> { tasks: list<text>, done: bool }",
    );
    let (r, events) = resume_with(state, &id, &retyped, &base).await;
    assert!(r.succeeded);
    assert_eq!(r.reused, vec!["scout"]);
    assert_eq!(
        reruns(&events)["plan"],
        "output type changed { tasks: list<text> } → { tasks: list<text>, done: bool }"
    );
    assert!(step(&r, "plan").value.as_ref().unwrap()["done"].is_boolean());

    // Dropping the type (text output) re-runs it too; the latest record is compared.
    let untyped = TYPED.replace(" -> { tasks: list<text> }", "");
    let (_, events) = resume_with(state, &id, &untyped, &base).await;
    assert_eq!(
        reruns(&events)["plan"],
        "output type changed { tasks: list<text>, done: bool } → none"
    );
}

// ------------------------------------------------------------------ Ctrl-C

const SLOW: &str = r#"
provider s { kind: sim, latency: 10s }
model m { provider: s }
agent a { model: m, max_tokens: 60 }
workflow main() {
  first = a("first")
  parallel <> {
    second = a("second after {first}")
    third = a("third after {first}")
  }
  last = a("last from {second} and {third}")
  return last
}
"#;

#[tokio::test(start_paused = true)]
async fn cancelling_drops_steps_in_flight_records_them_and_the_journal_resumes() {
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = Journal::create(state, SCRIPT);
    let cancel = Cancel::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        c.cancel();
    });
    let (r, _) = run_with(
        SLOW,
        &RunOptions {
            cancel: Some(cancel),
            journal: Some(journal.clone()),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(r.interrupted && !r.succeeded);
    // Stopped at once: the steps in flight were dropped, not waited for.
    assert_eq!(r.wall_ms, 15_000);
    assert_eq!(step(&r, "first").status, StepStatus::Succeeded);
    assert_eq!(step(&r, "second").status, StepStatus::Interrupted);
    assert_eq!(step(&r, "third").status, StepStatus::Interrupted);
    assert!(matches!(step(&r, "last").status, StepStatus::Skipped(_)));
    assert!(
        r.stopped.as_deref().unwrap().contains("interrupted"),
        "{:?}",
        r.stopped
    );
    let recorded = step_records(&journal.path());
    assert_eq!(
        recorded,
        vec![
            ("first".to_string(), "succeeded".to_string()),
            ("second".to_string(), "interrupted".to_string()),
            ("third".to_string(), "interrupted".to_string()),
        ]
    );
    assert_eq!(
        records(&journal.path()).last().unwrap()["status"],
        "interrupted"
    );

    let resumed = Journal::resume(state, SCRIPT, "main", None).expect("resumable");
    let (again, events) = run_with(
        SLOW,
        &RunOptions {
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(again.succeeded && !again.interrupted);
    assert_eq!(again.reused, vec!["first"]);
    assert_eq!(reruns(&events)["second"], "it was interrupted last time");
    assert_eq!(again.wall_ms, 20_000);
    let (whole, _) = run_with(SLOW, &RunOptions::default()).await;
    assert_same_outcome(&again, &whole);
}

#[tokio::test]
async fn cancelling_kills_the_program_of_a_command_step() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let marker = dir.join("marker");
    let src = r#"
agent slow(marker: text) { run: ["sh", "-c", "sleep 2; touch \"$1\"", "slow", "{marker}"] }
workflow main(marker: text) { s = slow(marker: "{marker}") }
"#;
    let cancel = Cancel::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let started = std::time::Instant::now();
    let (r, _) = run_with(
        src,
        &RunOptions {
            inputs: inputs(&[("marker", &marker.to_string_lossy())]),
            cancel: Some(cancel),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waited for the program"
    );
    assert_eq!(step(&r, "s").status, StepStatus::Interrupted);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!marker.exists(), "the program survived the interrupt");
}

// ------------------------------------------------------------------ budgets

fn priced(budget: &str, body: &str) -> String {
    // Each call can cost up to 1,000 output tokens at $100 per million: about $0.10.
    format!(
        r#"
provider simp {{ kind: sim, latency: 1s }}
model pricey {{ provider: simp, price: {{ input: 100.0, output: 100.0 }} }}
agent a {{ model: pricey, max_tokens: 1000 }}
workflow main() <budget {budget}> {{
{body}
}}
"#
    )
}

const TWO: &str = "  one = a(\"first\")\n  two = a(\"second, after {one}\")\n  return two";

#[tokio::test(start_paused = true)]
async fn a_budget_stop_leaves_a_journal_that_resumes_once_the_budget_is_raised() {
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = Journal::create(state, SCRIPT);
    let tight = priced("$0.102", TWO);
    let (r, _) = run_with(
        &tight,
        &RunOptions {
            journal: Some(journal.clone()),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(!r.succeeded);
    let stopped = r.stopped.clone().unwrap();
    assert!(
        stopped.starts_with("budget: $")
            && stopped.contains("spent of $0.10")
            && stopped.contains("`two` could cost up to"),
        "{stopped}"
    );
    assert!(r.cost_usd <= 0.102);
    let end = records(&journal.path()).pop().unwrap();
    assert_eq!(end["status"], "failed");
    assert!(end["reason"].as_str().unwrap().contains("budget"));

    // The same budget still holds on resume: what the run spent counts against it.
    let resumed = Journal::resume(state, SCRIPT, "main", None).unwrap();
    let (r, _) = run_with(
        &tight,
        &RunOptions {
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.reused, vec!["one"]);
    assert!(matches!(&step(&r, "two").status, StepStatus::Skipped(w) if w.contains("budget")));

    // Raised: the rest runs, nothing is paid twice.
    let roomy = priced("$1.00", TWO);
    let resumed = Journal::resume(state, SCRIPT, "main", None).unwrap();
    let (r, _) = run_with(
        &roomy,
        &RunOptions {
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert!(r.succeeded, "{r:?}");
    assert_eq!(r.reused, vec!["one"]);
    assert_eq!(r.wall_ms, 1000);
    let (whole, _) = run_with(&roomy, &RunOptions::default()).await;
    assert_same_outcome(&r, &whole);
}

#[tokio::test(start_paused = true)]
async fn block_budgets_hold_steps_in_flight_and_nest_inside_the_workflow_budget() {
    let body = "  parallel <> {\n    cheap = parallel <budget $0.15> { a1 = a(\"1\"); a2 = a(\"2\") }\n    b1 = a(\"b1\")\n  }";
    // a1 holds $0.10 of the block's $0.15, so a2 (started with it) cannot fit.
    let src = priced("$0.35", body);
    let (r, _) = run_with(&src, &RunOptions::default()).await;
    assert_eq!(step(&r, "a1").status, StepStatus::Succeeded);
    let StepStatus::Skipped(why) = &step(&r, "a2").status else {
        panic!("{:?}", step(&r, "a2").status)
    };
    assert!(
        why.starts_with(
            "budget of block `cheap`: $0.00 spent of $0.15 and $0.10 held by steps in flight"
        ),
        "{why}"
    );
    // Without --keep-going the refusal stops new work...
    assert!(matches!(step(&r, "b1").status, StepStatus::Skipped(_)));
    // ...with it, what does not depend on the refused step still runs, within the budgets.
    let (r, _) = run_with(
        &src,
        &RunOptions {
            keep_going: true,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(step(&r, "b1").status, StepStatus::Succeeded);
    assert!(matches!(step(&r, "a2").status, StepStatus::Skipped(_)));
    assert!(!r.succeeded && r.stopped.is_none());
    assert!(r.cost_usd <= 0.35);

    // A step counts against every enclosing budget: here the workflow's is the tighter one.
    let src = priced(
        "$0.15",
        "  parallel <> {\n    roomy = parallel <budget $5.00> { a1 = a(\"1\"); a2 = a(\"2\") }\n  }",
    );
    let (r, _) = run_with(&src, &RunOptions::default()).await;
    assert_eq!(step(&r, "a1").status, StepStatus::Succeeded);
    assert!(
        matches!(&step(&r, "a2").status, StepStatus::Skipped(w) if w.starts_with("budget: ")),
        "{:?}",
        step(&r, "a2").status
    );
}

// ------------------------------------------------------------------ --keep-going

const FAILING: &str = r#"
provider ok { kind: sim, latency: 1s }
provider flaky { kind: sim, latency: 500ms, failures: 9 }
model good { provider: ok }
model bad { provider: flaky }
agent a { }
workflow main() {
  parallel <> {
    broken = a<bad, retry 0>("x")
    then { s1 = a<good>("1"); s2 = a<good>("2 {s1}") }
    then {
      opinions = parallel <> { o1 = a<good>("o1"); o2 = a<bad, retry 0>("o2") }
      gather <any> verdict = a<good>("verdict from {opinions}")
    }
  }
  later = a<good>("later, after {broken}")
}
"#;

#[tokio::test(start_paused = true)]
async fn keep_going_runs_everything_that_does_not_depend_on_the_failure() {
    let (r, _) = run_with(FAILING, &RunOptions::default()).await;
    assert!(matches!(step(&r, "broken").status, StepStatus::Failed(_)));
    assert_eq!(step(&r, "s1").status, StepStatus::Succeeded, "in flight");
    assert!(
        matches!(step(&r, "s2").status, StepStatus::Skipped(_)),
        "{:#?}",
        r.steps
    );

    let (r, _) = run_with(
        FAILING,
        &RunOptions {
            keep_going: true,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(step(&r, "s2").status, StepStatus::Succeeded);
    // The gather still tolerates its failed branch.
    assert_eq!(step(&r, "verdict").status, StepStatus::Succeeded);
    assert!(
        matches!(&step(&r, "later").status, StepStatus::Skipped(w) if w.contains("`broken` did not succeed"))
    );
    assert!(!r.succeeded);
    assert!(r.output.is_none());
}

// ------------------------------------------------------------------ journal errors

const ONE_FAILS: &str = r#"
provider ok { kind: sim, latency: 1ms }
provider flaky { kind: sim, latency: 1ms, failures: 9 }
model good { provider: ok }
model bad { provider: flaky }
agent a { }
workflow main() {
  x = a<good>("x")
  y = a<bad>("y {x}")
}
"#;

async fn unfinished_run(state: &Path) -> Journal {
    let journal = Journal::create(state, SCRIPT);
    run_with(
        ONE_FAILS,
        &RunOptions {
            journal: Some(journal.clone()),
            ..RunOptions::default()
        },
    )
    .await;
    journal
}

#[tokio::test(start_paused = true)]
async fn a_cut_last_line_is_dropped_and_a_damaged_line_is_an_error_naming_it() {
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = unfinished_run(state).await;
    let path = journal.path();
    let good = std::fs::read_to_string(&path).unwrap();

    // Killed in the middle of a write: tolerated, and cut off before the next append.
    std::fs::write(
        &path,
        format!("{good}{{\"type\":\"step\",\"name\":\"y\",\"sta"),
    )
    .unwrap();
    let resumed = Journal::resume(state, SCRIPT, "main", None).expect("cut line tolerated");
    let (r, _) = run_with(
        ONE_FAILS,
        &RunOptions {
            journal: Some(resumed),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.reused, vec!["x"]);
    let _ = records(&path); // every line is whole JSON again

    // A damaged line in the middle: an error that names the file and the line, and the fix.
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[1] = "{not json".into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = Journal::resume(state, SCRIPT, "main", Some(&journal.id())).unwrap_err();
    assert!(
        matches!(err, JournalError::Corrupt { line: 2, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("line 2")
            && msg.contains("delete that line"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn resume_refuses_unknown_ids_other_scripts_other_workflows_and_live_runs() {
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = unfinished_run(state).await;
    let id = journal.id();

    let err = Journal::resume(state, SCRIPT, "main", Some("20990101-000000-000-zzzzzz"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no run `20990101-000000-000-zzzzzz`") && err.contains("orch runs"),
        "{err}"
    );

    let err = Journal::resume(state, "/scripts/other.orch", "main", Some(&id))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("is a run of {SCRIPT}, not of /scripts/other.orch"))
            && err.contains(&format!("orch run {SCRIPT} --resume {id}")),
        "{err}"
    );
    let err = Journal::resume(state, "/scripts/other.orch", "main", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no unfinished run of /scripts/other.orch"),
        "{err}"
    );

    let err = Journal::resume(state, SCRIPT, "review", Some(&id))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pass `--workflow main`"), "{err}");
    let err = Journal::resume(state, SCRIPT, "review", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ran workflow `main`: pass `--workflow main`"),
        "{err}"
    );

    // A run whose lock is held (by another process, or another open of the lock file) is
    // refused at once, naming the run and the lock file.
    let lock = journal.path().with_file_name("lock");
    let held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&lock)
        .expect("the lock file stays after the run");
    held.try_lock().expect("nobody holds it");
    for id in [None, Some(id.as_str())] {
        let err = Journal::resume(state, SCRIPT, "main", id).unwrap_err();
        assert!(matches!(err, JournalError::Busy { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "run `{id}` is being run by another process",
                id = journal.id()
            )) && msg.contains(&lock.display().to_string()),
            "{msg}"
        );
    }
    drop(held);
    // The lock is the OS's, not the process id in the file: a live process's id left in it
    // (a reused pid, a zombie) does not block.
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(&lock, live.id().to_string()).unwrap();
    let resumed = Journal::resume(state, SCRIPT, "main", None).expect("no live lock");
    // While this journal holds the run, nobody else takes it; dropping it releases it.
    assert!(matches!(
        Journal::resume(state, SCRIPT, "main", None),
        Err(JournalError::Busy { .. })
    ));
    drop(resumed);
    Journal::resume(state, SCRIPT, "main", None).expect("released on drop");
    live.kill().unwrap();
    live.wait().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_run_stopped_before_its_first_record_is_listed_and_explained() {
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = unfinished_run(state).await;
    // Killed after creating its directory (an older orch: after creating an empty journal).
    let runs = state.join("runs");
    std::fs::create_dir_all(runs.join("20990101-000000-000-nofile")).unwrap();
    let empty = runs.join("20990101-000000-001-emptyj");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("journal.jsonl"), "").unwrap();

    let list = orch::run::journal::list_runs(state, Some(SCRIPT)).unwrap();
    let status: Vec<(&str, &str)> = list
        .iter()
        .map(|r| (r.id.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        status,
        [
            (journal.id().as_str(), "failed"),
            ("20990101-000000-000-nofile", "empty"),
            ("20990101-000000-001-emptyj", "empty"),
        ]
    );
    for id in ["20990101-000000-000-nofile", "20990101-000000-001-emptyj"] {
        let err = Journal::resume(state, SCRIPT, "main", Some(id)).unwrap_err();
        assert!(matches!(err, JournalError::NoRecords { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("run `{id}` has no records"))
                && msg.contains("stopped before it began")
                && msg.contains("start a new run"),
            "{msg}"
        );
    }
    // Without an id, the newest run with records is resumed, as if the empty ones were not
    // there; with none, the message mentions them.
    let resumed = Journal::resume(state, SCRIPT, "main", None).expect("the failed run");
    assert_eq!(resumed.id(), journal.id());
    drop(resumed);
    let err = Journal::resume(state, "/scripts/other.orch", "main", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run `20990101-000000-001-emptyj` has no records"),
        "{err}"
    );
}

// ------------------------------------------------------------------ secrets

#[tokio::test]
async fn api_keys_never_enter_the_journal() {
    use wiremock::matchers::{body_string_contains, header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const KEY: &str = "sk-test-journal-secret-0123456789";
    let server = MockServer::start().await;
    // A careless server that echoes the key, in an answer and in an error.
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_string_contains("echo"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": format!("your key is {KEY}")}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            serde_json::json!({"error": {"message": format!("internal error for key {KEY}")}}),
        ))
        .mount(&server)
        .await;
    let src = format!(
        r#"
provider p {{ kind: openai, base_url: "{}/v1", api_key_env: "ORCH_TEST_KEY" }}
model m {{ provider: p }}
agent a {{ model: m }}
workflow main() {{
  parallel <> {{ e = a("echo"); f = a("fail") }}
}}
"#,
        server.uri()
    );
    let tmp = temp_dir();
    let state = tmp.path();
    let journal = Journal::create(state, SCRIPT);
    let (r, _) = run_with(
        &src,
        &RunOptions {
            env: Some(EnvLookup(Arc::new(|name: &str| {
                (name == "ORCH_TEST_KEY").then(|| KEY.to_string())
            }))),
            journal: Some(journal.clone()),
            ..RunOptions::default()
        },
    )
    .await;
    // The key was in play: the request carried it (the mock answers `e` only then) and the
    // answer echoed it, redacted before the run saw it.
    assert_eq!(
        step(&r, "e").output.as_deref(),
        Some("your key is <redacted>")
    );
    assert!(matches!(step(&r, "f").status, StepStatus::Failed(_)));
    let text = std::fs::read_to_string(journal.path()).unwrap();
    assert!(
        !text.contains(KEY),
        "the key leaked into the journal:\n{text}"
    );
    assert!(text.contains("your key is <redacted>"), "{text}");
}

// ------------------------------------------------------------------ the binary

const PIPELINE: &str = r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 50 }
workflow main(topic: text) {
  s1 = a("s1: start on {topic}")
  parallel <> {
    s2 = a("s2: left of {s1}")
    s3 = a("s3: right of {s1}")
  }
  s4 = a("s4: join {s2} and {s3}")
  s5 = a("s5: refine {s4}")
  s6 = a("s6: check {s5}")
  s7 = a("s7: finish {s6}")
  return s7
}
"#;

const STEPS: [&str; 7] = ["s1", "s2", "s3", "s4", "s5", "s6", "s7"];

/// `orch ARGS --state-dir STATE` ([`orch_command`]), its output piped, killed when dropped.
fn orch_cmd(args: &[&str], state: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::from(orch_command());
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn orch_output(args: &[&str], state: &Path) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), orch_cmd(args, state).output())
        .await
        .expect("orch finishes")
        .expect("orch runs")
}

/// Waits until `cond` holds (polling), or fails the test with `what`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The only journal in `state`.
fn journal_in(state: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("journal.jsonl"))
                .collect()
        })
        .unwrap_or_default();
    assert!(runs.len() <= 1, "{runs:?}");
    runs.into_iter().next().unwrap_or_default()
}

/// Steps with a `succeeded` record, as far as the journal has been written.
fn succeeded_in(journal: &Path) -> Vec<String> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "step" && r["status"] == "succeeded")
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Writes [`PIPELINE`] to `dir/pipeline.orch`; returns its path.
fn write_pipeline(dir: &Path) -> String {
    let script = dir.join("pipeline.orch");
    std::fs::write(&script, PIPELINE).unwrap();
    script.to_string_lossy().into_owned()
}

/// The output of the pipeline run without interruption, on its own server and state.
async fn uninterrupted(dir: &Path, script: &str) -> String {
    let llm = Llm::default();
    let server = llm.serve().await;
    let url = format!("{}/v1", server.uri());
    let o = orch_output(
        &["run", script, "--endpoint", &url, "-q", "-i", "topic=tea"],
        &dir.join("whole"),
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for s in STEPS {
        assert_eq!(llm.count(s), 1, "{s}");
    }
    String::from_utf8(o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_several_points_a_resumed_run_requests_no_completed_step_again() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = write_pipeline(dir);
    let expected = uninterrupted(dir, &script).await;

    // Kill while the step after 1, 3 and 5 completed steps is waiting for its answer.
    for (done, held) in [(1, "s2"), (3, "s4"), (5, "s6")] {
        let llm = Llm::default();
        llm.hold(Some(held));
        let server = llm.serve().await;
        let url = format!("{}/v1", server.uri());
        let state = dir.join(format!("state-{done}"));
        let mut child = orch_cmd(
            &["run", &script, "--endpoint", &url, "-q", "-i", "topic=tea"],
            &state,
        )
        .spawn()
        .unwrap();
        wait_for(&format!("{held} to be requested"), || llm.count(held) == 1).await;
        let journal = journal_in(&state);
        wait_for(&format!("{done} completed steps in the journal"), || {
            succeeded_in(&journal).len() >= done
        })
        .await;
        child.start_kill().unwrap(); // SIGKILL: no chance to write anything more
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
        let completed = succeeded_in(&journal);
        assert!(!completed.contains(&held.to_string()));
        assert!(completed.len() >= done, "{completed:?}");
        // Requests made before the kill: a step other than `held` may have been in flight too
        // (its answer arrived but was not journalled yet), and is then rightly asked again.
        let before: Vec<usize> = STEPS.iter().map(|s| llm.count(s)).collect();

        llm.hold(None);
        // No inputs given: the recorded ones are used.
        let o = orch_output(
            &[
                "run",
                &script,
                "--resume",
                "--endpoint",
                &url,
                "--why-rerun",
            ],
            &state,
        )
        .await;
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            expected,
            "after a kill at {done}"
        );
        assert!(
            err.contains(&format!(
                "{held}  runs again: it was in flight when the earlier run was killed"
            )),
            "{err}"
        );
        for (s, &was) in STEPS.iter().zip(&before) {
            let want = if completed.contains(&s.to_string()) {
                was // completed: never requested again
            } else {
                was + 1 // in flight or not started: asked (again) exactly once
            };
            assert_eq!(llm.count(s), want, "{s} after a kill at {done}: {err}");
        }
        assert_eq!(
            llm.count(held),
            2,
            "the held step was in flight, then asked again"
        );
        // One journal, with the resume appended to it.
        let recs = records(&journal);
        assert_eq!(recs.iter().filter(|r| r["type"] == "resume").count(), 1);
        assert_eq!(recs.last().unwrap()["status"], "succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_records_it_exits_130_and_resumes() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = write_pipeline(dir);
    let llm = Llm::default();
    llm.hold(Some("s4"));
    let server = llm.serve().await;
    let url = format!("{}/v1", server.uri());
    let state = dir.join("state");
    let child = orch_cmd(
        &["run", &script, "--endpoint", &url, "-i", "topic=tea"],
        &state,
    )
    .spawn()
    .unwrap();
    wait_for("s4 to be requested", || llm.count("s4") == 1).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits soon after Ctrl-C")
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: stopping"), "{err}");
    assert!(err.contains("resume with: orch run"), "{err}");
    let journal = journal_in(&state);
    let recs = records(&journal);
    let mut recorded = step_records(&journal);
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("s1", "succeeded"),
            ("s2", "succeeded"),
            ("s3", "succeeded"),
            ("s4", "interrupted")
        ]
        .map(|(n, s)| (n.to_string(), s.to_string()))
    );
    assert_eq!(recs.last().unwrap()["status"], "interrupted");

    llm.hold(None);
    let o = orch_output(&["run", &script, "--resume", "--endpoint", &url], &state).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for s in ["s1", "s2", "s3", "s5", "s6", "s7"] {
        assert_eq!(llm.count(s), 1, "{s}");
    }
    assert_eq!(llm.count("s4"), 2);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        uninterrupted(dir, &script).await
    );

    // `orch runs` lists it as done.
    let o = orch_output(&["runs", &script], &state).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("succeeded") && out.contains("7/7"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_resuming_one_run_at_once_one_is_refused_and_nothing_runs_twice() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = write_pipeline(dir);
    let expected = uninterrupted(dir, &script).await;
    let llm = Llm::default();
    llm.hold(Some("s4"));
    let server = llm.serve().await;
    let url = format!("{}/v1", server.uri());
    let state = dir.join("state");
    let run = ["run", script.as_str(), "--endpoint", url.as_str(), "-q"];

    // An unfinished run: killed while `s4` waits for its answer.
    let mut first = orch_cmd(&[&run[..], &["-i", "topic=tea"]].concat(), &state)
        .spawn()
        .unwrap();
    wait_for("s4 to be requested", || llm.count("s4") == 1).await;
    let journal = journal_in(&state);
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let id = journal
        .parent()
        .and_then(|d| d.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // Two resumes started together: one takes the run, the other is refused at once.
    let resume = [&run[..], &["--resume"]].concat();
    let mut a = orch_cmd(&resume, &state).spawn().unwrap();
    let mut b = orch_cmd(&resume, &state).spawn().unwrap();
    let mut refused = None;
    wait_for("one of the two resumes to be refused", || {
        for (name, child) in [("a", &mut a), ("b", &mut b)] {
            if let Ok(Some(status)) = child.try_wait() {
                refused = Some((name, status));
                return true;
            }
        }
        false
    })
    .await;
    let (loser, status) = refused.unwrap();
    let (mut winner, loser) = if loser == "a" { (b, a) } else { (a, b) };
    assert_eq!(status.code(), Some(2), "refused with a usage error");
    let err = String::from_utf8_lossy(&loser.wait_with_output().await.unwrap().stderr).into_owned();
    let lock = journal.with_file_name("lock");
    assert!(
        err.contains(&format!("run `{id}` is being run by another process"))
            && err.contains(&lock.display().to_string()),
        "{err}"
    );
    // The winner asks for `s4` again (it was in flight); the loser asked for nothing.
    wait_for("the winner to request s4", || llm.count("s4") == 2).await;
    assert_eq!(llm.count("s4"), 2);
    let recs = records(&journal);
    assert_eq!(recs.iter().filter(|r| r["type"] == "resume").count(), 1);
    assert!(
        winner.try_wait().unwrap().is_none(),
        "the winner still runs"
    );

    // The winner killed too, a third resume ends the run: every step was asked for once,
    // `s4` once per process that ran it, and the journal is one whole history.
    winner.start_kill().unwrap();
    winner.wait().await.unwrap();
    llm.hold(None);
    let o = orch_output(&resume, &state).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    for s in ["s1", "s2", "s3", "s5", "s6", "s7"] {
        assert_eq!(llm.count(s), 1, "{s}");
    }
    assert_eq!(llm.count("s4"), 3);
    let recs = records(&journal);
    let count = |t: &str| recs.iter().filter(|r| r["type"] == t).count();
    assert_eq!((count("run"), count("resume"), count("end")), (1, 2, 1));
    assert_eq!(
        step_records(&journal)
            .iter()
            .filter(|(_, status)| status == "succeeded")
            .count(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orch_runs_counts_step_executions_like_the_summary() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = dir.join("fan.orch");
    // 6 plan nodes (`topics`, `posts`, its item `t`, `d`, `e`, `f`); 9 executions: `topics`,
    // `posts`, `f`, and `d` and `e` for each of 3 items.
    std::fs::write(
        &script,
        r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 20 }
workflow main() {
  topics = a("list")
  posts = parallel for t in ["a", "b", "c"] {
    d = a("draft {t} after {topics}")
    e = a("edit {d}")
  }
  f = a("final {posts}")
  return f
}
"#,
    )
    .unwrap();
    let script = script.to_string_lossy().into_owned();
    let state = dir.join("state");
    let o = orch_output(&["run", &script, "--simulate"], &state).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("9/9 steps succeeded"), "{err}");
    let o = orch_output(&["runs", &script], &state).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ok/steps"), "{out}");
    assert!(out.contains("succeeded          9/9"), "{out}");

    // Without an `end` record (killed): executions recorded so far, never more done than
    // known.
    let journal = journal_in(&state);
    let text = std::fs::read_to_string(&journal).unwrap();
    let cut: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"type\":\"end\""))
        .collect();
    std::fs::write(&journal, cut.join("\n") + "\n").unwrap();
    let o = orch_output(&["runs", &script], &state).await;
    let out = String::from_utf8_lossy(&o.stdout);
    // 8 executions have records (the region `posts` has none of its own).
    assert!(out.contains("unfinished         8/8"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_explains_runs_it_cannot_resume() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let script = write_pipeline(dir);
    let state = dir.join("state");
    let o = orch_output(&["run", &script, "--simulate", "--resume"], &state).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no unfinished run of") && err.contains("without --resume"),
        "{err}"
    );
    let o = orch_output(&["run", &script, "--simulate", "--resume", "nope"], &state).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run `nope`"));
    let o = orch_output(&["run", &script, "--simulate", "--why-rerun"], &state).await;
    assert_eq!(o.status.code(), Some(2), "--why-rerun needs --resume");
    let o = orch_output(&["runs", &script], &state).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("no runs in"));

    // --no-journal keeps nothing; a journalled run is listed; a damaged journal is listed
    // with its problem instead of failing the list.
    let o = orch_output(
        &[
            "run",
            &script,
            "--simulate",
            "--sim-latency",
            "1ms",
            "-i",
            "topic=x",
            "--no-journal",
        ],
        &state,
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert!(!state.join("runs").exists());
    let o = orch_output(
        &[
            "run",
            &script,
            "--simulate",
            "--sim-latency",
            "1ms",
            "-i",
            "topic=x",
        ],
        &state,
    )
    .await;
    assert_eq!(o.status.code(), Some(0));
    let bad = state.join("runs").join("20000101-000000-000-broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("journal.jsonl"), "{oops\n").unwrap();
    let o = orch_output(&["runs"], &state).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("20000101-000000-000-broken  damaged:"),
        "{out}"
    );
    assert!(
        out.contains("succeeded") && out.contains("7/7") && out.contains(&script),
        "{out}"
    );
}

// ------------------------------------------------------------------ gather after a `for`

#[tokio::test(start_paused = true)]
async fn a_resumed_gather_any_after_a_for_reuses_the_winner_and_cancels_the_rest_again() {
    let src = r#"
provider fast { kind: sim, latency: 1s }
provider slow { kind: sim, latency: 10s }
model f { provider: fast }
model s { provider: slow }
agent good { model: f }
agent slowpoke { model: s }
workflow main() {
  drafts = parallel for w in [good, slowpoke] { d = w("write") }
  gather <any> edit = good("edit {drafts}")
  return edit
}
"#;
    let tmp = temp_dir();
    let state = tmp.path().join("state");
    let journal = Journal::create(&state, SCRIPT);
    let opts = RunOptions {
        journal: Some(journal.clone()),
        ..RunOptions::default()
    };
    let (first, _) = run_with(src, &opts).await;
    assert!(first.succeeded, "{first:?}");
    assert_eq!(step(&first, "d[2]").status, StepStatus::Cancelled);

    let id = journal.id();
    let resumed = Journal::resume(&state, SCRIPT, "main", Some(id.as_str())).expect("resumable");
    let opts = RunOptions {
        journal: Some(resumed),
        ..RunOptions::default()
    };
    let (second, _) = run_with(src, &opts).await;
    assert!(second.succeeded, "{second:?}");
    assert!(
        second.reused.contains(&"d[1]".to_string()),
        "{:?}",
        second.reused
    );
    // The gather is met by the reused instance: the other is cancelled, not run or skipped.
    assert_eq!(step(&second, "d[2]").status, StepStatus::Cancelled);
    assert_eq!(second.output, first.output);
}
