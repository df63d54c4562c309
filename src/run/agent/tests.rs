//! Unit tests of the agent loop: a scripted model, hand-built toolboxes and test tools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::grant::ToolGrant;
use crate::plan::{PlanExec, PlanTools};
use crate::run::provider::{
    Completion, CompletionRequest, ToolCall, ToolChoice, ToolSpec, Turn, Usage,
};
use crate::run::tools::{BoxFuture, Tool, ToolContext, ToolOutput};
use crate::run::{LoopReport, RunOptions, Target};

const SCRIPT: &str = r#"
provider s { kind: sim }
model m { provider: s, name: "m-1", price: { input: 100.0, output: 100.0 } }
agent a { model: m, max_tokens: 100 }
agent helper { model: m, max_tokens: 50 }
workflow main() {
  x = a("find the login handler")
  return x
}
"#;

/// A tool that echoes its input after `delay`; `{"fail": true}` makes an error result.
struct Echo {
    name: &'static str,
    read_only: bool,
    delay: Duration,
    calls: Arc<AtomicUsize>,
}

impl Echo {
    fn new(name: &'static str, read_only: bool, delay_ms: u64) -> Arc<Echo> {
        Arc::new(Echo {
            name,
            read_only,
            delay: Duration::from_millis(delay_ms),
            calls: Arc::default(),
        })
    }
}

impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.into(),
            description: "Echoes.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn call<'a>(&'a self, input: Value, cx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = input.get("fail").is_some();
            ToolOutput::new(
                &format!("{} {input}", self.name),
                fail,
                "echoed",
                cx.max_result_bytes,
            )
        })
    }
}

/// A model that answers from a script, one completion a turn, and keeps every request.
struct Scripted {
    answers: Vec<Completion>,
    seen: Vec<CompletionRequest>,
    cost: f64,
}

impl Scripted {
    fn new(answers: Vec<Completion>) -> Self {
        Scripted {
            answers,
            seen: Vec::new(),
            cost: 0.001,
        }
    }
}

impl TurnModel for Scripted {
    fn complete<'a>(
        &'a mut self,
        req: &'a CompletionRequest,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            self.seen.push(req.clone());
            if self.answers.is_empty() {
                return Err("the script has no more answers".into());
            }
            let completion = self.answers.remove(0);
            Ok(Answer {
                completion,
                cost_usd: self.cost,
                model: "m".into(),
            })
        })
    }
    fn worst_usd(&self, _: &CompletionRequest) -> f64 {
        0.01
    }
}

fn calls(calls: &[(&str, Value)]) -> Completion {
    Completion {
        calls: calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| ToolCall {
                id: format!("c{i}"),
                name: (*name).into(),
                input: input.clone(),
                malformed: None,
            })
            .collect(),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            estimated: false,
        },
        ..Completion::default()
    }
}

fn answer(text: &str) -> Completion {
    Completion {
        text: text.into(),
        ..Completion::default()
    }
}

/// A run's shared state for `SCRIPT` (with `budget` if given) on the simulator.
fn setup(budget: Option<&str>) -> (crate::plan::Plan, crate::run::prepare::Shared) {
    let src = match budget {
        Some(b) => SCRIPT.replace("workflow main()", &format!("workflow main() <budget {b}>")),
        None => SCRIPT.to_string(),
    };
    let (program, plan) = crate::plan::plan_for_test(&src);
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 0,
            run_commands: false,
        },
        workspace: Some(env!("CARGO_MANIFEST_DIR").into()),
        ..RunOptions::default()
    };
    let shared =
        crate::run::prepare::prepare(&plan, &program.tables.models, &opts).expect("prepare");
    (plan, shared)
}

fn spec(max_turns: u32) -> LoopSpec {
    LoopSpec {
        first: CompletionRequest {
            prompt: "find the login handler".into(),
            max_tokens: 100,
            ..CompletionRequest::default()
        },
        max_turns,
        tool_timeout: Duration::from_millis(500),
        agent: "a".into(),
    }
}

async fn run_scripted(
    shared: &crate::run::prepare::Shared,
    node: &crate::plan::PlanNode,
    model: &mut Scripted,
    toolbox: &Toolbox,
    max_turns: u32,
) -> (Result<String, String>, LoopReport, Vec<crate::run::Event>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cx = LoopCx {
        step: node.name.clone(),
        top: node,
        key: None,
        depth: 0,
        shared,
        tx: &tx,
        tree_cost: Arc::default(),
        cap: None,
    };
    let mut out = LoopReport::default();
    let r = run_loop(&cx, model, &spec(max_turns), toolbox, &mut out).await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (r, out, events)
}

#[tokio::test(start_paused = true)]
async fn calls_of_one_turn_run_concurrently_and_their_results_go_back_in_order() {
    let (plan, shared) = setup(None);
    let mut toolbox = Toolbox::default();
    let slow = Echo::new("slow", true, 300);
    let fast = Echo::new("fast", true, 100);
    toolbox.add_tool(slow.clone());
    toolbox.add_tool(fast.clone());
    let mut model = Scripted::new(vec![
        calls(&[
            ("slow", json!({"path": "a"})),
            ("fast", json!({"path": "b"})),
        ]),
        calls(&[("fast", json!({"path": "c"}))]),
        answer("done"),
    ]);
    let start = tokio::time::Instant::now();
    let (r, out, events) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 10).await;
    assert_eq!(r.as_deref(), Ok("done"));
    // 300 ms for the first turn's two calls together, 100 ms for the second.
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    assert_eq!(out.turns, 3);
    assert_eq!(out.tool_calls.len(), 3);
    assert_eq!(fast.calls.load(Ordering::SeqCst), 2);
    // The second request carries the first turn and its results, in call order.
    let second = &model.seen[1];
    assert!(matches!(&second.turns[0], Turn::Assistant { calls, .. } if calls.len() == 2));
    let Turn::Tools { results } = &second.turns[1] else {
        panic!("{:?}", second.turns)
    };
    assert_eq!(results[0].call_id, "c0");
    assert!(results[0].content.starts_with("slow "));
    assert_eq!(results[1].call_id, "c1");
    assert_eq!(model.seen[2].turns.len(), 4);
    // Tools are offered on every turn, with tool choice auto.
    assert!(
        model
            .seen
            .iter()
            .all(|r| r.tools.len() == 2 && r.tool_choice == ToolChoice::Auto)
    );
    let shown = events
        .iter()
        .filter(|e| matches!(e, crate::run::Event::ToolCalled { .. }))
        .count();
    assert_eq!(shown, 3);
}

#[tokio::test]
async fn malformed_and_ungranted_calls_are_refused_and_the_loop_goes_on() {
    let (plan, shared) = setup(None);
    let mut toolbox = Toolbox::default();
    let echo = Echo::new("echo", false, 0);
    toolbox.add_tool(echo.clone());
    let mut bad = calls(&[("echo", json!({})), ("rm_rf", json!({"path": "/"}))]);
    bad.calls[0].malformed = Some("not JSON: `{\"path\": `".into());
    let mut model = Scripted::new(vec![bad, answer("ok")]);
    let (r, out, _) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 10).await;
    assert_eq!(r.as_deref(), Ok("ok"));
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        0,
        "a malformed call never runs"
    );
    assert_eq!(out.refused(), 2);
    let Turn::Tools { results } = &model.seen[1].turns[1] else {
        panic!()
    };
    assert!(results.iter().all(|r| r.is_error));
    assert!(
        results[0].content.contains("could not be read"),
        "{}",
        results[0].content
    );
    assert!(
        results[1].content.contains("not one of your tools") && results[1].content.contains("echo"),
        "{}",
        results[1].content
    );
}

#[tokio::test]
async fn tool_errors_and_timeouts_are_results_for_the_model() {
    let (plan, shared) = setup(None);
    let mut toolbox = Toolbox::default();
    toolbox.add_tool(Echo::new("echo", true, 0));
    toolbox.add_tool(Echo::new("sleepy", true, 5_000));
    let mut model = Scripted::new(vec![
        calls(&[
            ("echo", json!({"path": "x", "fail": true})),
            ("sleepy", json!({"path": "y"})),
        ]),
        answer("handled"),
    ]);
    let (r, out, _) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 10).await;
    assert_eq!(r.as_deref(), Ok("handled"));
    assert_eq!(out.errors(), 2);
    assert_eq!(out.refused(), 0);
    let Turn::Tools { results } = &model.seen[1].turns[1] else {
        panic!()
    };
    assert!(results[0].is_error);
    assert!(
        results[1].content.contains("did not end within"),
        "{}",
        results[1].content
    );
}

#[tokio::test]
async fn the_last_turn_asks_for_an_answer_and_a_model_that_still_calls_fails_the_step() {
    let (plan, shared) = setup(None);
    let mut toolbox = Toolbox::default();
    toolbox.add_tool(Echo::new("echo", true, 0));
    let again = || calls(&[("echo", json!({"path": "x"}))]);
    let mut model = Scripted::new(vec![again(), again(), again()]);
    let (r, out, _) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 3).await;
    let e = r.expect_err("max_turns");
    assert!(
        e.contains("max_turns (3)") && e.contains("agent `a`"),
        "{e}"
    );
    assert_eq!(out.turns, 3);
    assert_eq!(out.tool_calls.len(), 2, "the last turn's calls do not run");
    assert_eq!(model.seen[2].tool_choice, ToolChoice::None);
    // A model that obeys answers on the last turn.
    let mut model = Scripted::new(vec![again(), answer("enough")]);
    let (r, _, _) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 2).await;
    assert_eq!(r.as_deref(), Ok("enough"));
}

#[tokio::test]
async fn a_turn_that_does_not_fit_the_budget_stops_the_loop() {
    let (plan, shared) = setup(Some("$0.025"));
    let node = &plan.nodes[0];
    let mut toolbox = Toolbox::default();
    toolbox.add_tool(Echo::new("echo", true, 0));
    let again = || calls(&[("echo", json!({"path": "x"}))]);
    // Each turn costs $0.006 and may cost $0.01: turn 2 fits ($0.006 spent + $0.01), turn 3
    // too ($0.012 + $0.01), turn 4 does not ($0.018 + $0.01 > $0.025).
    let mut model = Scripted::new(vec![again(); 30]);
    model.cost = 0.006;
    let (r, out, _) = run_scripted(&shared, node, &mut model, &toolbox, 30).await;
    let e = r.expect_err("budget");
    assert!(
        e.contains("budget") && e.contains("so the agent loop was stopped"),
        "{e}"
    );
    assert!(e.contains("turn 4 of `x`"), "{e}");
    assert_eq!(out.turns, 3);
}

#[test]
fn briefs_show_the_tool_as_written_and_its_main_argument() {
    assert_eq!(
        call_brief("grep", &json!({"pattern": "login", "path": "."})),
        "grep \"login\""
    );
    assert_eq!(
        call_brief("read", &json!({"path": "src/main.rs"})),
        "read src/main.rs"
    );
    assert_eq!(
        call_brief("exec", &json!({"argv": ["cargo", "test", "--quiet"]})),
        "exec cargo test --quiet"
    );
    assert_eq!(
        call_brief("agent__scout", &json!({"prompt": "find the\nlogin code"})),
        "agent(scout) \"find the login code\""
    );
    assert_eq!(
        call_brief("fs__read_text_file", &json!({})),
        "fs.read_text_file"
    );
}

/// The plan of `SCRIPT` whose step `x` has `tools`, and `helper` as a delegate.
fn plan_with_tools(
    grants: Vec<ToolGrant>,
    max_turns: u32,
) -> (crate::check::Program, crate::plan::Plan) {
    let (program, mut plan) = crate::plan::plan_for_test(SCRIPT);
    let helper = plan.nodes[0].clone();
    if let PlanExec::Model { tools, .. } = &mut plan.nodes[0].exec {
        *tools = Some(PlanTools {
            grants,
            max_turns,
            tool_timeout_ms: None,
        });
    }
    let mut exec = helper.exec.clone();
    if let PlanExec::Model { max_tokens, .. } = &mut exec {
        *max_tokens = 50;
    }
    plan.delegates.insert(
        "helper".into(),
        crate::plan::PlanDelegate {
            agent: "helper".into(),
            exec,
            retry: 0,
            timeout_ms: None,
            max_output_bytes: None,
            on_truncated: Default::default(),
            worst_case: crate::plan::Estimate::default(),
            defaults: Default::default(),
        },
    );
    (program, plan)
}

#[tokio::test]
async fn on_the_simulator_a_delegation_runs_a_nested_step_reported_under_its_parent() {
    let (program, plan) = plan_with_tools(
        vec![ToolGrant::Agent {
            name: "helper".into(),
        }],
        5,
    );
    let events = std::sync::Mutex::new(Vec::new());
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 0,
            run_commands: false,
        },
        workspace: Some(env!("CARGO_MANIFEST_DIR").into()),
        ..RunOptions::default()
    };
    let report = crate::run::run(&plan, &program.tables.models, &opts, &|e| {
        events.lock().unwrap().push(e.clone());
    })
    .await
    .expect("run");
    assert!(report.succeeded, "{:?}", report.steps[0].status);
    let x = &report.steps[0];
    let l = x.agent_loop.as_ref().expect("loop");
    assert_eq!(l.turns, 2);
    assert_eq!(l.tool_calls.len(), 1);
    let call = &l.tool_calls[0];
    assert_eq!(call.tool, "agent__helper");
    let nested = call.delegated.as_ref().expect("nested report");
    assert_eq!(nested.name, "x/helper#1.1");
    assert!(
        nested
            .output
            .as_deref()
            .unwrap_or("")
            .starts_with("[sim m-1]")
    );
    // The parent's cost includes its nested step's.
    assert!(x.cost_usd > nested.cost_usd && nested.cost_usd > 0.0);
    assert!(
        x.output.as_deref().unwrap().contains("I made 1 tool call"),
        "{:?}",
        x.output
    );
    let names: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            crate::run::Event::Started { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert!(names.contains(&"x/helper#1.1".to_string()), "{names:?}");
}

#[tokio::test]
async fn delegation_is_bounded_in_depth() {
    // `helper` may delegate to itself: the depth bound stops it.
    let (program, mut plan) = plan_with_tools(
        vec![ToolGrant::Agent {
            name: "helper".into(),
        }],
        5,
    );
    let tools = match &plan.nodes[0].exec {
        PlanExec::Model { tools, .. } => tools.clone(),
        _ => None,
    };
    if let Some(d) = plan.delegates.get_mut("helper")
        && let PlanExec::Model { tools: t, .. } = &mut d.exec
    {
        *t = tools;
    }
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 0,
            run_commands: false,
        },
        ..RunOptions::default()
    };
    let report = crate::run::run(&plan, &program.tables.models, &opts, &|_| {})
        .await
        .expect("run");
    assert!(report.succeeded);
    let mut l = report.steps[0].agent_loop.clone().expect("loop");
    let mut depth = 0;
    while let Some(nested) = l.tool_calls.first().and_then(|c| c.delegated.clone()) {
        depth += 1;
        l = nested.agent_loop.expect("nested loop");
    }
    assert_eq!(depth, MAX_DELEGATION_DEPTH);
    assert!(l.tool_calls[0].refused, "{:?}", l.tool_calls[0]);
}

/// A run's shared state for `SCRIPT` with `journal`, begun (a new run) or resumed.
fn journalled(
    journal: &crate::run::journal::Journal,
) -> (crate::plan::Plan, crate::run::prepare::Shared) {
    let (program, plan) = crate::plan::plan_for_test(SCRIPT);
    let opts = RunOptions {
        target: Target::Simulate {
            latency_ms: 0,
            run_commands: false,
        },
        journal: Some(journal.clone()),
        ..RunOptions::default()
    };
    journal.begin(&plan, &opts).expect("begin");
    let shared =
        crate::run::prepare::prepare(&plan, &program.tables.models, &opts).expect("prepare");
    (plan, shared)
}

async fn run_keyed(
    shared: &crate::run::prepare::Shared,
    node: &crate::plan::PlanNode,
    model: &mut Scripted,
    toolbox: &Toolbox,
) -> (Result<String, String>, LoopReport) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cx = LoopCx {
        step: node.name.clone(),
        top: node,
        key: Some("key-1".into()),
        depth: 0,
        shared,
        tx: &tx,
        tree_cost: Arc::default(),
        cap: None,
    };
    let mut out = LoopReport::default();
    let r = run_loop(&cx, model, &spec(10), toolbox, &mut out).await;
    (r, out)
}

#[tokio::test]
async fn a_resumed_loop_continues_from_its_transcript_and_never_runs_a_recorded_call_again() {
    let tmp = std::env::temp_dir().join(format!("orch-agent-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let script = "/scripts/agent.orch";
    let side = Echo::new("side", false, 0);
    let look = Echo::new("look", true, 0);
    let mut toolbox = Toolbox::default();
    toolbox.add_tool(side.clone());
    toolbox.add_tool(look.clone());
    let first_turn = || {
        calls(&[
            ("side", json!({"path": "a"})),
            ("look", json!({"path": "b"})),
        ])
    };
    // First attempt: turn 1's calls run, then the model fails (the run stops).
    let journal = crate::run::journal::Journal::create(&tmp, script);
    {
        let (plan, shared) = journalled(&journal);
        let mut model = Scripted::new(vec![first_turn()]);
        let (r, out) = run_keyed(&shared, &plan.nodes[0], &mut model, &toolbox).await;
        assert!(r.is_err());
        assert_eq!(out.tool_calls.len(), 2);
    }
    assert_eq!(side.calls.load(Ordering::SeqCst), 1);
    let text = std::fs::read_to_string(journal.path()).unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        types,
        ["run", "turn", "tool_start", "tool", "tool"],
        "{text}"
    );
    drop(journal);

    // Resumed: the transcript is sent again, no call runs again, the loop goes on.
    let resumed = crate::run::journal::Journal::resume(&tmp, script, "main", None).expect("resume");
    let (plan, shared) = journalled(&resumed);
    let mut model = Scripted::new(vec![answer("done")]);
    let (r, out) = run_keyed(&shared, &plan.nodes[0], &mut model, &toolbox).await;
    assert_eq!(r.as_deref(), Ok("done"));
    assert_eq!(
        side.calls.load(Ordering::SeqCst),
        1,
        "a recorded call never runs again"
    );
    assert_eq!(look.calls.load(Ordering::SeqCst), 1);
    assert_eq!(out.turns, 2);
    assert!(out.tool_calls.iter().all(|c| c.reused));
    assert_eq!(model.seen.len(), 1);
    assert_eq!(model.seen[0].turns.len(), 2);
    let Turn::Tools { results } = &model.seen[0].turns[1] else {
        panic!()
    };
    assert!(results[0].content.starts_with("side "));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test]
async fn a_call_that_started_and_never_ended_is_not_run_again_and_the_model_is_told() {
    let tmp = std::env::temp_dir().join(format!("orch-agent-started-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let script = "/scripts/agent.orch";
    let side = Echo::new("side", false, 0);
    let mut toolbox = Toolbox::default();
    toolbox.add_tool(side.clone());
    let journal = crate::run::journal::Journal::create(&tmp, script);
    {
        // As a crash leaves it: the turn and the call's start, no end.
        let (_plan, _shared) = journalled(&journal);
        let turn = calls(&[("side", json!({"path": "a"}))]);
        journal
            .turn(crate::run::journal::TurnRecord {
                step: "x".into(),
                key: "key-1".into(),
                turn: 1,
                model: "m".into(),
                text: String::new(),
                calls: turn.calls.clone(),
                usage: Usage::default(),
                cost_usd: 0.0,
                at_ms: 0,
            })
            .unwrap();
        journal
            .tool_started(crate::run::journal::ToolStartRecord {
                step: "x".into(),
                key: "key-1".into(),
                turn: 1,
                call_id: "c0".into(),
                tool: "side".into(),
                at_ms: 0,
            })
            .await
            .unwrap();
    }
    drop(journal);
    let resumed = crate::run::journal::Journal::resume(&tmp, script, "main", None).expect("resume");
    let (plan, shared) = journalled(&resumed);
    let mut model = Scripted::new(vec![answer("checked")]);
    let (r, out) = run_keyed(&shared, &plan.nodes[0], &mut model, &toolbox).await;
    assert_eq!(r.as_deref(), Ok("checked"));
    assert_eq!(side.calls.load(Ordering::SeqCst), 0);
    assert!(out.tool_calls[0].is_error && !out.tool_calls[0].reused);
    let Turn::Tools { results } = &model.seen[0].turns[1] else {
        panic!()
    };
    assert!(
        results[0]
            .content
            .contains("may or may not have taken effect")
    );
    // Another key (the step changed): the transcript is not used.
    let other = resumed.transcript("x", "key-2");
    assert!(other.is_none());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test]
async fn at_most_eight_calls_of_a_turn_run() {
    let (plan, shared) = setup(None);
    let mut toolbox = Toolbox::default();
    let echo = Echo::new("echo", true, 0);
    toolbox.add_tool(echo.clone());
    let ten: Vec<(&str, Value)> = (0..10)
        .map(|i| ("echo", json!({ "path": i.to_string() })))
        .collect();
    let mut model = Scripted::new(vec![calls(&ten), answer("ok")]);
    let (r, out, _) = run_scripted(&shared, &plan.nodes[0], &mut model, &toolbox, 10).await;
    assert_eq!(r.as_deref(), Ok("ok"));
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        crate::grant::MAX_CALLS_PER_TURN
    );
    assert_eq!(out.tool_calls.len(), 10);
    assert_eq!(out.refused(), 2);
    let Turn::Tools { results } = &model.seen[1].turns[1] else {
        panic!()
    };
    assert_eq!(results.len(), 10);
    assert!(results[9].content.starts_with("not run"));
}
