//! Human approval: `ok = approve("question")` in the checker, the plan, a run with an injected
//! approver (approve, decline, nobody to ask, `--yes`, no answer in time), and a resumed run
//! that reuses the recorded decision instead of asking again. (The binary's `--yes` and its
//! message without a terminal are in `cli`.)

use std::path::Path;
use std::sync::{Arc, Mutex};

use orch::check::types::Type;
use orch::check::workflow::Exec;
use orch::resolve::ResolveOptions;
use orch::run::journal::Journal;
use orch::run::{Approval, ApprovalRequest, Approver, Event, RunOptions, StepStatus};

use crate::common::run::{inputs, run_with, step};
use crate::common::{compile_plan, temp_dir};

const SCRIPT: &str = r#"
provider s { kind: sim, latency: 5ms }
model m { provider: s, name: "m-1" }
agent writer { model: m, max_tokens: 60 }

workflow main(version: text) <retry 3, timeout 10s, deadline 1m> {
  notes = writer("Release notes for {version}")
  ok    = approve("Deploy {version} to production?\n{notes}")
  done  = writer("Announce {version}: approved={ok}")
  return done
}
"#;

/// An approver that answers `answer` and records every question it was asked.
fn answering(answer: bool) -> (Approver, Arc<Mutex<Vec<ApprovalRequest>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let approver = Approver::ask("on the terminal", move |req: &ApprovalRequest| {
        log.lock().unwrap().push(req.clone());
        Ok(answer)
    });
    (approver, asked)
}

/// An approver that must not be asked.
fn never_asked() -> Approver {
    Approver::ask("on the terminal", |req: &ApprovalRequest| {
        panic!("asked {req:?}, but the decision should have been reused")
    })
}

// ------------------------------------------------------------------ checker and plan

#[test]
fn approve_is_a_built_in_step_with_a_bool_output_that_no_block_option_reaches() {
    let (program, plan) = compile_plan("test.orch", SCRIPT);
    let wf = &program.workflows["main"];
    let ok = wf.nodes.iter().find(|n| n.name == "ok").unwrap();
    assert!(matches!(ok.exec, Exec::Approval), "{:?}", ok.exec);
    assert_eq!(ok.agent, "approve");
    assert_eq!(ok.output_type, Some(Type::Bool));
    // A person answers: not model output, even though the question shows some.
    assert!(!ok.tainted);
    // The workflow's retry, timeout and deadline are meant for its model steps.
    assert_eq!((ok.retry, ok.timeout_ms, ok.deadline_ms), (0, None, None));
    let done = wf.nodes.iter().find(|n| n.name == "done").unwrap();
    assert_eq!((done.retry, done.timeout_ms), (3, Some(10_000)));

    let json = serde_json::to_value(&plan).unwrap();
    let node = &json["nodes"][1];
    assert_eq!(node["kind"], "approval");
    assert_eq!(node["agent"], "approve");
    assert_eq!(node["output_type"]["type"], "bool");
    assert_eq!(node["worst_case"]["cost_usd"], 0.0);
    assert_eq!(node["tainted"], false);
    let text = orch::plan::render_text(&plan);
    assert!(text.contains("ok     approval: ask a person"), "{text}");

    // Its own timeout and deadline bound the wait for the answer.
    let timed = SCRIPT.replace("approve(", "approve<timeout 30m, deadline 1h>(");
    let (program, _) = compile_plan("test.orch", &timed);
    let ok = &program.workflows["main"].nodes[1];
    assert_eq!(
        (ok.retry, ok.timeout_ms, ok.deadline_ms),
        (0, Some(1_800_000), Some(3_600_000))
    );
}

#[test]
fn a_declared_agent_named_approve_wins_over_the_built_in() {
    let src = SCRIPT.replace(
        "agent writer {",
        "agent approve { model: m, max_tokens: 20 }\nagent writer {",
    );
    let (program, plan) = compile_plan("test.orch", &src);
    let ok = &program.workflows["main"].nodes[1];
    assert!(matches!(ok.exec, Exec::Model { .. }), "{:?}", ok.exec);
    assert_eq!(ok.output_type, None);
    assert!(ok.tainted);
    assert_eq!(
        serde_json::to_value(&plan).unwrap()["nodes"][1]["kind"],
        "model"
    );
}

#[test]
fn an_approval_is_typed_bool_where_its_value_is_passed() {
    let check = |src: &str| {
        let (_, diags) =
            orch::compile_source("t.orch", src, Path::new("."), &ResolveOptions::default());
        diags.iter().map(|d| d.code.to_string()).collect::<Vec<_>>()
    };
    let ok = r#"
agent deploy(confirmed: bool) { run: ["echo", "{confirmed}"] }
workflow main() -> bool {
  ok = approve("Deploy?")
  d  = deploy(confirmed: ok)
  return ok
}
"#;
    assert_eq!(check(ok), Vec::<String>::new());
    let bad = "workflow main() -> number {\n  ok = approve(\"Deploy?\")\n  return ok\n}\n";
    assert_eq!(check(bad), vec!["E0212".to_string()]);
}

// ------------------------------------------------------------------ running

#[tokio::test]
async fn an_approved_step_is_true_and_the_workflow_goes_on() {
    let (approver, asked) = answering(true);
    let opts = RunOptions {
        inputs: inputs(&[("version", "1.2")]),
        approver,
        ..RunOptions::default()
    };
    let (r, events) = run_with(SCRIPT, &opts).await;
    assert!(r.succeeded, "{r:?}");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].step, "ok");
    assert!(
        asked[0]
            .question
            .starts_with("Deploy 1.2 to production?\n[sim m-1]"),
        "the question is rendered: {:?}",
        asked[0].question
    );
    let ok = step(&r, "ok");
    assert_eq!(ok.status, StepStatus::Succeeded);
    assert_eq!(ok.value, Some(serde_json::Value::Bool(true)));
    assert_eq!(ok.output.as_deref(), Some("true"));
    assert_eq!(ok.model.as_deref(), Some("person"));
    assert_eq!((ok.usage.input_tokens, ok.cost_usd), (0, 0.0));
    assert_eq!(
        ok.approval,
        Some(Approval {
            approved: true,
            via: "on the terminal".into()
        })
    );
    assert_eq!(
        ok.approval.as_ref().unwrap().describe(),
        "approved on the terminal"
    );
    // The answer flows on as `true`.
    assert!(
        step(&r, "done")
            .output
            .as_deref()
            .unwrap()
            .contains("approved=true")
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Started { step, runs_on, .. } if step == "ok" && runs_on == "person"
    )));
    // The report's JSON says who answered.
    let json = serde_json::to_value(ok).unwrap();
    assert_eq!(
        json["approval"],
        serde_json::json!({"approved": true, "via": "on the terminal"})
    );
    assert_eq!(json["value"], true);
    assert!(
        serde_json::to_value(step(&r, "notes"))
            .unwrap()
            .get("approval")
            .is_none()
    );
}

#[tokio::test]
async fn a_declined_step_succeeds_with_false() {
    let (approver, asked) = answering(false);
    let opts = RunOptions {
        inputs: inputs(&[("version", "1.2")]),
        approver,
        ..RunOptions::default()
    };
    let (r, _) = run_with(SCRIPT, &opts).await;
    assert!(r.succeeded, "declining is an answer, not a failure: {r:?}");
    assert_eq!(asked.lock().unwrap().len(), 1);
    let ok = step(&r, "ok");
    assert_eq!(ok.status, StepStatus::Succeeded);
    assert_eq!(ok.value, Some(serde_json::Value::Bool(false)));
    assert_eq!(ok.output.as_deref(), Some("false"));
    assert_eq!(
        ok.approval.as_ref().unwrap().describe(),
        "declined on the terminal"
    );
    assert!(
        step(&r, "done")
            .output
            .as_deref()
            .unwrap()
            .contains("approved=false")
    );
}

#[tokio::test]
async fn without_anyone_to_ask_the_run_is_refused_before_its_first_step() {
    let (program, plan) = compile_plan("test.orch", SCRIPT);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let sink = ran.clone();
    let on_event = move |e: &Event| sink.lock().unwrap().push(format!("{e:?}"));
    let opts = RunOptions {
        inputs: inputs(&[("version", "1.2")]),
        ..RunOptions::default()
    };
    let err = orch::run::run(&plan, &program.tables.models, &opts, &on_event)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "step `ok` (\"Deploy {version} to production?\\n{notes}\") needs a person's approval, but there is no terminal to ask on and --yes was not given; nothing was run.\n  Run on a terminal to answer, or pass --yes to approve every approval step"
    );
    assert!(ran.lock().unwrap().is_empty(), "no step started");

    // Every approval is named, also one in a branch that may not be taken.
    let two = SCRIPT.replace(
        "  return done\n",
        "  if ok {\n    sure = approve(\"Really?\")\n  }\n  return done\n",
    );
    let (program, plan) = compile_plan("test.orch", &two);
    let err = orch::run::run(&plan, &program.tables.models, &opts, &|_: &Event| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "steps `ok` (\"Deploy {version} to production?\\n{notes}\"), `sure` (\"Really?\") need a person's approval"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn yes_approves_every_approval_without_asking() {
    let src = r#"
workflow main(version: text) {
  parallel {
    staging    = approve("Deploy {version} to staging?")
    production = approve("Deploy {version} to production?")
  }
  return "{staging} {production}"
}
"#;
    let opts = RunOptions {
        inputs: inputs(&[("version", "1.2")]),
        approver: Approver::Yes,
        ..RunOptions::default()
    };
    let (r, _) = run_with(src, &opts).await;
    assert!(r.succeeded, "{r:?}");
    assert_eq!(r.output.as_deref(), Some("true true"));
    for name in ["staging", "production"] {
        let s = step(&r, name);
        assert_eq!(s.model.as_deref(), Some("--yes"));
        assert_eq!(
            s.approval.as_ref().map(Approval::describe).as_deref(),
            Some("approved by --yes")
        );
    }
}

#[tokio::test]
async fn an_answer_that_does_not_come_in_time_fails_the_step() {
    let src = r#"
workflow main() {
  ok = approve<timeout 50ms>("Deploy?")
  return ok
}
"#;
    let slow = Approver::ask("on the terminal", |_: &ApprovalRequest| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(true)
    });
    let (r, _) = run_with(
        src,
        &RunOptions {
            approver: slow,
            ..RunOptions::default()
        },
    )
    .await;
    assert!(!r.succeeded);
    assert_eq!(
        step(&r, "ok").status,
        StepStatus::Failed("no answer within 50ms".into())
    );

    let failing = Approver::ask("on the terminal", |_: &ApprovalRequest| {
        Err("the terminal's input ended before an answer".to_string())
    });
    let (r, _) = run_with(
        src,
        &RunOptions {
            approver: failing,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(
        step(&r, "ok").status,
        StepStatus::Failed(
            "could not ask for approval: the terminal's input ended before an answer".into()
        )
    );
}

// ------------------------------------------------------------------ resuming

const JOURNALLED: &str = "/scripts/deploy.orch";

/// The script with a last step that fails until `flag` exists.
fn gated(flag: &Path) -> String {
    SCRIPT.replace(
        "  return done\n",
        "  shipped = ship<retry 0>(v: \"{version}\") after done\n  return shipped\n",
    ) + &format!(
        "agent ship(v: text) {{ run: [\"sh\", \"-c\", \"test -f {} && echo shipped $0\", \"{{v}}\"] }}\n",
        flag.display()
    )
}

#[tokio::test]
async fn a_resumed_run_reuses_the_decision_instead_of_asking_again() {
    for answer in [true, false] {
        let tmp = temp_dir();
        let dir = tmp.path();
        let flag = dir.join("flag");
        let state = dir.join("state");
        let src = gated(&flag);
        let journal = Journal::create(&state, JOURNALLED);
        let (approver, asked) = answering(answer);
        let (first, _) = run_with(
            &src,
            &RunOptions {
                inputs: inputs(&[("version", "1.2")]),
                journal: Some(journal.clone()),
                approver,
                ..RunOptions::default()
            },
        )
        .await;
        assert!(!first.succeeded, "the last step fails without its flag");
        assert_eq!(asked.lock().unwrap().len(), 1);
        // The decision is journalled like any step, with who gave it.
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let record: serde_json::Value = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["type"] == "step" && r["name"] == "ok")
            .expect("a record of the approval");
        assert_eq!(record["status"], "succeeded");
        assert_eq!(record["output"], answer.to_string());
        assert_eq!(record["value"], answer);
        assert_eq!(record["approval"]["approved"], answer);
        assert_eq!(record["key"]["kind"], "approval");

        std::fs::write(&flag, "").unwrap();
        let resumed = Journal::resume(&state, JOURNALLED, "main", None).expect("resumable");
        let (second, events) = run_with(
            &src,
            &RunOptions {
                inputs: resumed.recorded_inputs(),
                journal: Some(resumed),
                // With nobody to ask the run is not refused either: the answer is recorded.
                approver: if answer {
                    never_asked()
                } else {
                    Approver::NoTerminal
                },
                ..RunOptions::default()
            },
        )
        .await;
        assert!(second.succeeded, "{second:?}");
        assert_eq!(second.reused, ["notes", "ok", "done"]);
        let ok = step(&second, "ok");
        assert_eq!(ok.value, Some(serde_json::Value::Bool(answer)));
        assert_eq!(ok.approval, step(&first, "ok").approval);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Reused(r) if r.name == "ok" && r.approval.as_ref().is_some_and(|a| a.approved == answer)
        )));
    }
}

#[tokio::test]
async fn a_changed_question_is_asked_again_and_says_why() {
    let tmp = temp_dir();
    let state = tmp.path();
    let one_line = SCRIPT.replace("?\\n{notes}", "?");
    let journal = Journal::create(state, JOURNALLED);
    let (approver, _) = answering(true);
    let (first, _) = run_with(
        &one_line,
        &RunOptions {
            inputs: inputs(&[("version", "1.2")]),
            journal: Some(journal.clone()),
            approver,
            ..RunOptions::default()
        },
    )
    .await;
    assert!(first.succeeded);

    let resumed = Journal::resume(state, JOURNALLED, "main", Some(&journal.id())).unwrap();
    let (approver, asked) = answering(false);
    let (second, events) = run_with(
        &one_line,
        &RunOptions {
            inputs: inputs(&[("version", "1.3")]),
            journal: Some(resumed),
            approver,
            ..RunOptions::default()
        },
    )
    .await;
    assert!(second.succeeded);
    assert_eq!(
        asked.lock().unwrap()[0].question,
        "Deploy 1.3 to production?"
    );
    let why = events.iter().find_map(|e| match e {
        Event::Rerun { step, why } if step == "ok" => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some("question changed (input `version` changed)")
    );
    assert_eq!(
        step(&second, "ok").value,
        Some(serde_json::Value::Bool(false))
    );
}
