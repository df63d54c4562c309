//! Agent loops end to end: on the simulator over this repository and a scratch workspace, and
//! against scripted OpenAI-compatible servers that make tool calls (several a turn, malformed
//! ones, too many turns, turns past a budget), through the real built-in tools; delegation as
//! nested steps; and a process killed after a side-effecting call, then resumed: the effect
//! happens exactly once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use orch::run::{Endpoint, Event, RunOptions, RunReport, StepStatus, Target, ToolCallReport};
use serde_json::{Value, json};

use crate::common::cli::orch_command;
use crate::common::fault_server::{FaultServer, Reply, openai_json, openai_tool_calls};
use crate::common::run::{run_with, step};
use crate::common::temp_dir;

// ------------------------------------------------------------------ helpers

/// The repository's root: the simulator's scouts read it.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Options for the script's own providers with `workspace`.
fn in_workspace(workspace: &Path) -> RunOptions {
    RunOptions {
        workspace: Some(workspace.to_path_buf()),
        ..RunOptions::default()
    }
}

/// Options sending every model to `server` (whole answers, not streamed) with `workspace`.
fn against(server: &FaultServer, workspace: &Path) -> RunOptions {
    RunOptions {
        target: Target::Endpoint(Endpoint {
            base_url: format!("{}/v1", server.uri()),
            model: None,
            api_key_env: None,
            stream: false,
        }),
        ..in_workspace(workspace)
    }
}

/// A whole OpenAI chat completion making `calls` (`(id, tool, raw arguments)`).
fn openai_calls(calls: &[(&str, &str, &str)]) -> Reply {
    openai_calls_using(calls, 10)
}

/// [`openai_calls`] reporting `prompt_tokens` of input.
fn openai_calls_using(calls: &[(&str, &str, &str)], prompt_tokens: u64) -> Reply {
    Reply::json(200, openai_tool_calls(calls, prompt_tokens))
}

/// The calls of step `name`'s loop.
fn calls_of<'r>(r: &'r RunReport, name: &str) -> &'r [ToolCallReport] {
    &step(r, name)
        .agent_loop
        .as_ref()
        .unwrap_or_else(|| panic!("`{name}` has no agent loop"))
        .tool_calls
}

fn turns_of(r: &RunReport, name: &str) -> u32 {
    step(r, name).agent_loop.as_ref().map_or(0, |l| l.turns)
}

fn failure(r: &RunReport, name: &str) -> String {
    match &step(r, name).status {
        StepStatus::Failed(e) => e.clone(),
        other => panic!("`{name}` did not fail: {other:?}"),
    }
}

/// The `messages` of the `n`th request the server received.
fn messages(server: &FaultServer, n: usize) -> Vec<Value> {
    server.received()[n].json()["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const SIM: &str = r#"
provider s { kind: sim }
model m { provider: s, name: "m-1" }
"#;

// ------------------------------------------------------------------ on the simulator

#[tokio::test]
async fn a_scout_on_the_simulator_reads_this_repository_with_real_tools() {
    let src = format!(
        r#"{SIM}
agent scout {{ model: m, tools: [read, list, glob, grep], max_turns: 4, max_tokens: 300 }}
workflow main() {{
  found = scout("Where is the agent loop implemented?")
  return found
}}
"#
    );
    let (r, events) = run_with(&src, &in_workspace(&repo())).await;
    assert!(r.succeeded, "{:?}", step(&r, "found").status);
    assert_eq!(turns_of(&r, "found"), 2);
    let calls = calls_of(&r, "found");
    let tools: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(tools.len(), 4);
    for t in ["read", "list", "glob", "grep"] {
        assert!(tools.contains(&t), "{tools:?}");
    }
    assert!(
        calls.iter().all(|c| !c.is_error && c.result_bytes > 0),
        "{calls:#?}"
    );
    let read = calls.iter().find(|c| c.tool == "read").unwrap();
    assert_eq!(read.arguments, json!({"path": "README.md"}));
    let out = step(&r, "found").output.clone().unwrap_or_default();
    assert!(out.contains("I made 4 tool calls"), "{out}");
    let shown = events
        .iter()
        .filter(|e| matches!(e, Event::ToolCalled { step, .. } if step == "found"))
        .count();
    assert_eq!(shown, 4);
}

#[tokio::test]
async fn a_dry_run_never_writes_even_with_write_tools_granted() {
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("notes.txt"), "keep me\n").unwrap();
    let src = format!(
        r#"{SIM}
agent fixer {{ model: m, tools: [read, write, edit, exec("touch")], max_turns: 3 }}
workflow main() {{
  done = fixer("Fix the notes")
  return done
}}
"#
    );
    let (r, _) = run_with(&src, &in_workspace(tmp.path())).await;
    assert!(r.succeeded, "{:?}", step(&r, "done").status);
    let tools: Vec<&str> = calls_of(&r, "done")
        .iter()
        .map(|c| c.tool.as_str())
        .collect();
    assert_eq!(tools, ["read"]);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "keep me\n"
    );
}

#[tokio::test]
async fn a_delegation_is_a_nested_step_in_the_report_and_the_journal() {
    let tmp = temp_dir();
    let journal = orch::run::journal::Journal::create(tmp.path(), "/scripts/lead.orch");
    let src = format!(
        r#"{SIM}
agent scout {{ model: m, tools: [read, grep], max_turns: 3 }}
agent lead {{ model: m, tools: [agent(scout)], max_turns: 3 }}
workflow main() {{
  answer = lead("Find out how the journal is written")
  return answer
}}
"#
    );
    let opts = RunOptions {
        journal: Some(journal.clone()),
        ..in_workspace(&repo())
    };
    let (r, events) = run_with(&src, &opts).await;
    assert!(r.succeeded, "{:?}", step(&r, "answer").status);
    let calls = calls_of(&r, "answer");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].tool, "agent__scout");
    let nested = calls[0].delegated.as_ref().expect("nested report");
    assert_eq!(nested.name, "answer/scout#1.1");
    assert_eq!(nested.status, StepStatus::Succeeded);
    let nested_calls = &nested.agent_loop.as_ref().expect("nested loop").tool_calls;
    assert_eq!(nested_calls.len(), 2);
    // The parent's usage includes the nested step's.
    let parent = step(&r, "answer");
    assert!(parent.usage.input_tokens > nested.usage.input_tokens);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Started { step, .. } if step == "answer/scout#1.1"))
    );
    let recs: Vec<Value> = std::fs::read_to_string(journal.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let turn_steps: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "turn")
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        turn_steps,
        ["answer", "answer/scout#1.1", "answer/scout#1.1", "answer"]
    );
    assert!(
        recs.iter()
            .any(|r| r["type"] == "tool" && r["call"]["tool"] == "agent__scout")
    );
}

#[tokio::test(start_paused = true)]
async fn retry_applies_to_each_model_call_and_the_deadline_to_the_whole_loop() {
    // The first call of each prompt fails: the loop's first turn is retried, the loop goes
    // on, and no tool call runs twice.
    let flaky = r#"
provider s { kind: sim, latency: 1s, failures: 1 }
model m { provider: s, name: "m-1" }
agent scout { model: m, tools: [read, list], max_turns: 4, retry: 1 }
workflow main() {
  found = scout("What is this project?")
  return found
}
"#;
    let (r, events) = run_with(flaky, &in_workspace(&repo())).await;
    assert!(r.succeeded, "{:?}", step(&r, "found").status);
    assert_eq!(turns_of(&r, "found"), 2);
    assert_eq!(step(&r, "found").attempts, 3, "turn 1 twice, turn 2 once");
    assert_eq!(calls_of(&r, "found").len(), 2);
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::Retrying { .. }))
        .count();
    assert_eq!(retries, 1);
    // Each turn takes 1 s of latency: a deadline of 1.5 s ends the loop in its second turn,
    // and the report still lists what it did.
    let late = flaky
        .replace(", failures: 1", "")
        .replace("scout(\"What", "scout<deadline 1500ms>(\"What");
    let (r, _) = run_with(&late, &in_workspace(&repo())).await;
    let e = failure(&r, "found");
    assert!(e.contains("deadline of 1.5s passed"), "{e}");
    assert_eq!(turns_of(&r, "found"), 1);
    assert_eq!(calls_of(&r, "found").len(), 2);
}

// ------------------------------------------------------------------ scripted servers

const SERVED: &str = r#"
agent worker { model: m, tools: [read, list], max_turns: 5 }
workflow main() {
  w = worker("Look at the files")
  return w
}
"#;

fn served(script: &str) -> String {
    format!(
        "provider p {{ kind: openai, base_url: \"http://unused.invalid/v1\" }}\nmodel m {{ provider: p, name: \"served-model\" }}\n{script}"
    )
}

/// A workspace with `a.txt` and `b.txt`.
fn scratch() -> tempfile::TempDir {
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tmp.path().join("b.txt"), "beta\n").unwrap();
    tmp
}

#[tokio::test]
async fn a_multi_turn_loop_runs_several_calls_a_turn_and_feeds_errors_back() {
    let ws = scratch();
    let server = FaultServer::start(vec![
        openai_calls(&[
            ("c1", "read", r#"{"path": "a.txt"}"#),
            ("c2", "read", r#"{"path": "b.txt"}"#),
        ]),
        openai_calls(&[("c3", "read", r#"{"path": "missing.txt"}"#)]),
        openai_json("alpha and beta"),
    ])
    .await;
    let (r, _) = run_with(&served(SERVED), &against(&server, ws.path())).await;
    assert!(r.succeeded, "{:?}", step(&r, "w").status);
    assert_eq!(step(&r, "w").output.as_deref(), Some("alpha and beta"));
    assert_eq!(turns_of(&r, "w"), 3);
    let calls = calls_of(&r, "w");
    assert_eq!(calls.len(), 3);
    assert!(!calls[0].is_error && !calls[1].is_error);
    assert!(calls[2].is_error && !calls[2].refused, "{:?}", calls[2]);
    // The second request carries the first turn's calls and both results, in order.
    let second = messages(&server, 1);
    let tool_msgs: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 2);
    assert_eq!(tool_msgs[0]["tool_call_id"], "c1");
    assert!(tool_msgs[0]["content"].as_str().unwrap().contains("alpha"));
    assert_eq!(tool_msgs[1]["tool_call_id"], "c2");
    // The third carries the error result.
    let third = messages(&server, 2);
    let last = third.iter().rev().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(last["tool_call_id"], "c3");
    // Tools are offered on every request.
    let req = server.received()[0].json();
    let offered: Vec<&str> = req["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["read", "list"]);
}

#[tokio::test]
async fn malformed_arguments_and_ungranted_tools_are_refused_results_not_crashes() {
    let ws = scratch();
    let server = FaultServer::start(vec![
        openai_calls(&[
            ("c1", "read", r#"{"path": "a.t"#),
            ("c2", "write", r#"{"path": "x", "content": "y"}"#),
        ]),
        openai_json("sorry"),
    ])
    .await;
    let (r, _) = run_with(&served(SERVED), &against(&server, ws.path())).await;
    assert!(r.succeeded, "{:?}", step(&r, "w").status);
    let calls = calls_of(&r, "w");
    assert!(calls.iter().all(|c| c.refused && c.is_error), "{calls:#?}");
    assert!(!ws.path().join("x").exists());
    let second = messages(&server, 1);
    let results: Vec<&str> = second
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(results[0].contains("could not be read"), "{results:?}");
    assert!(results[1].contains("not one of your tools"), "{results:?}");
}

#[tokio::test]
async fn max_turns_fails_the_step_naming_the_fix() {
    let ws = scratch();
    let again = || openai_calls(&[("c", "list", "{}")]);
    let server = FaultServer::start(vec![again(), again()]).await;
    let script = SERVED.replace("max_turns: 5", "max_turns: 2");
    let (r, _) = run_with(&served(&script), &against(&server, ws.path())).await;
    let e = failure(&r, "w");
    assert!(
        e.contains("max_turns (2)") && e.contains("raise `max_turns`"),
        "{e}"
    );
    assert_eq!(turns_of(&r, "w"), 2);
    // The last turn asked for an answer without tools.
    assert_eq!(server.received()[1].json()["tool_choice"], "none");
}

#[tokio::test]
async fn a_budget_stops_the_loop_between_turns() {
    let ws = scratch();
    // Each turn reads 600 tokens and writes 5 ($0.0605 at $100 per million), and may cost
    // about $0.10 more (1,000 tokens out): turn 2 fits in $0.21 ($0.06 spent), turn 3 does not
    // ($0.12 spent + its worst case).
    let again = || openai_calls_using(&[("c", "list", "{}")], 600);
    let server = FaultServer::start(vec![again(), again(), again(), again()]).await;
    let src = format!(
        r#"
provider p {{ kind: openai, base_url: "{}/v1" }}
model m {{ provider: p, name: "served-model", price: {{ input: 100.0, output: 100.0 }} }}
agent worker {{ model: m, tools: [list], max_turns: 9, max_tokens: 1000 }}
workflow main() <budget $0.21> {{
  w = worker("Look at the files")
  return w
}}
"#,
        server.uri()
    );
    let (r, _) = run_with(&src, &in_workspace(ws.path())).await;
    let e = failure(&r, "w");
    assert!(
        e.contains("so the agent loop was stopped") && e.contains("turn"),
        "{e}"
    );
    assert_eq!(turns_of(&r, "w"), 2, "{e}");
    assert!(e.contains("turn 3 of `w`"), "{e}");
    assert_eq!(server.received().len() as u32, turns_of(&r, "w"));
    assert!(step(&r, "w").cost_usd > 0.0);
}

// ------------------------------------------------------------------ kill, then resume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_side_effecting_call_a_resumed_run_does_not_repeat_it() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let ws = dir.join("ws");
    std::fs::create_dir(&ws).unwrap();
    let script = dir.join("act.orch");
    std::fs::write(
        &script,
        r#"
provider p { kind: openai, base_url: "http://unused.invalid/v1" }
model m { provider: p, name: "served-model" }
agent actor { model: m, tools: [exec("sh -c")], max_turns: 4 }
workflow main() {
  a = actor("Append one line to effects.txt")
  return a
}
"#,
    )
    .unwrap();
    let append = r#"{"argv": ["sh", "-c", "echo once >> effects.txt"]}"#;
    // Request 1: the call; request 2: held until the process is killed; request 3 (the
    // resumed run): the answer.
    let server = FaultServer::start(vec![
        openai_calls(&[("c1", "exec", append)]),
        openai_json("too late").after(Duration::from_secs(120)),
        openai_json("appended"),
    ])
    .await;
    let url = format!("{}/v1", server.uri());
    let state = dir.join("state");
    let args = |resume: bool| {
        let mut a = vec![
            "run".to_string(),
            script.to_string_lossy().into_owned(),
            "--endpoint".into(),
            url.clone(),
            "--no-stream".into(),
            "--workspace".into(),
            ws.to_string_lossy().into_owned(),
            "--state-dir".into(),
            state.to_string_lossy().into_owned(),
            "-q".into(),
        ];
        if resume {
            a.push("--resume".into());
            a.push("--why-rerun".into());
        }
        a
    };
    let mut child = tokio::process::Command::from(orch_command())
        .args(args(false))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..1500 {
        if server.received().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.received().len(), 2, "the second turn was asked");
    child.start_kill().unwrap(); // SIGKILL
    assert_eq!(child.wait().await.unwrap().code(), None);
    assert_eq!(
        std::fs::read_to_string(ws.join("effects.txt")).unwrap(),
        "once\n"
    );

    let o = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::from(orch_command())
            .args(args(true))
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("resume ends")
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "appended");
    assert!(
        err.contains("its agent loop continues from the 1 turn in the journal"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("effects.txt")).unwrap(),
        "once\n",
        "the effect happened exactly once"
    );
    // The resumed request carried the recorded call and its result.
    let third = messages(&server, 2);
    assert!(
        third
            .iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "c1"),
        "{third:#?}"
    );
}

// ------------------------------------------------------------------ the local model

/// A scout with `read` and `grep` over this repository, against the local small model
/// (`scripts/test.sh` runs it): the run finishes and its report lists the loop's turns and
/// every call it made (or none). The plumbing only, never what the model says; the figures are
/// printed for the record.
#[test]
#[ignore = "needs the local LLM server: run by scripts/test.sh"]
fn a_scout_with_tools_runs_to_completion_on_the_local_model() {
    let url = crate::common::e2e_endpoint();
    let tmp = temp_dir();
    let script = tmp.path().join("scout.orch");
    std::fs::write(
        &script,
        r#"
provider local { kind: openai, base_url: "http://unused.invalid/v1" }
model small { provider: local, name: "local" }
agent scout {
  model: small
  system: "You explore a codebase with your tools and answer in one short paragraph."
  tools: [read, grep]
  max_turns: 4
  max_tokens: 200
}
workflow main() {
  found = scout("Read README.md and say in one sentence what this project is.")
  return found
}
"#,
    )
    .unwrap();
    let report_path = tmp.path().join("report.json");
    let out = orch_command()
        .env("ORCH_STATE_DIR", tmp.path().join("state"))
        .args(["run"])
        .arg(&script)
        .args([
            "--endpoint",
            &url,
            "--quiet",
            "--color",
            "never",
            "--workspace",
        ])
        .arg(repo())
        .arg("--report")
        .arg(&report_path)
        .output()
        .expect("orch runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report_path)
            .unwrap_or_else(|e| panic!("no report ({e}):\n{stderr}")),
    )
    .unwrap();
    assert_eq!(
        report["succeeded"].as_bool(),
        Some(out.status.success()),
        "{stderr}"
    );
    let found = &report["steps"][0];
    let l = &found["agent_loop"];
    let turns = l["turns"].as_u64().expect("turns reported");
    assert!((1..=4).contains(&turns), "{l}");
    let calls = l["tool_calls"]
        .as_array()
        .expect("calls listed (maybe none)");
    for c in calls {
        for field in [
            "turn",
            "id",
            "tool",
            "arguments",
            "result_bytes",
            "time_ms",
            "refused",
        ] {
            assert!(!c[field].is_null(), "{field} missing in {c}");
        }
    }
    let refused = calls.iter().filter(|c| c["refused"] == true).count();
    eprintln!(
        "local model: status {}, {turns} turns, {} tool calls ({refused} refused): {:?}; tokens {} in, {} out; {} ms",
        found["status"],
        calls.len(),
        calls
            .iter()
            .map(|c| format!("{} {}", c["tool"], c["arguments"]))
            .collect::<Vec<_>>(),
        found["usage"]["input_tokens"],
        found["usage"]["output_tokens"],
        report["wall_ms"]
    );
}

#[test]
fn a_workspace_that_is_not_a_directory_is_refused_before_anything_runs() {
    let tmp = temp_dir();
    let script = tmp.path().join("w.orch");
    std::fs::write(
        &script,
        "agent a { model: haiku }\ninclude \"std/models.orch\"\nworkflow main() {\n  x = a(\"hi\")\n  return x\n}\n",
    )
    .unwrap();
    let missing = tmp.path().join("nowhere");
    let out = orch_command()
        .current_dir(repo())
        .args(["run"])
        .arg(&script)
        .args(["--simulate", "--no-journal", "--workspace"])
        .arg(&missing)
        .output()
        .expect("orch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--workspace")
            && err.contains("nowhere")
            && err.contains("pass an existing directory"),
        "{err}"
    );
    std::fs::write(&missing, "a file").unwrap();
    let out = orch_command()
        .args(["run"])
        .arg(&script)
        .args(["--simulate", "--no-journal", "--workspace"])
        .arg(&missing)
        .output()
        .expect("orch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a directory"), "{err}");
}

// ------------------------------------------------------------------ MCP servers

/// The argv of the real filesystem MCP server (`scripts/mcp-servers.sh`), or `None` when it
/// cannot be installed here (the test then says so and passes, except under CI).
fn fs_server() -> Option<Vec<String>> {
    let script = repo().join("scripts/mcp-servers.sh");
    let out = std::process::Command::new(&script)
        .output()
        .expect("runs bash");
    if !out.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the MCP servers could not be installed under CI"
        );
        eprintln!("SKIPPED: the MCP servers could not be installed");
        return None;
    }
    let all: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    Some(
        all["fs"]
            .as_array()?
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_run_in_the_loop_and_a_wrong_grant_fails_before_any_step() {
    let Some(fs) = fs_server() else { return };
    let ws = scratch();
    std::fs::write(ws.path().join("README.md"), "# scratch\n").unwrap();
    let command: Vec<String> = fs
        .iter()
        .cloned()
        .chain([ws.path().to_string_lossy().into_owned()])
        .map(|a| format!("{a:?}"))
        .collect();
    let script = |grant: &str| {
        format!(
            r#"{SIM}
mcp fs {{ command: [{}] }}
agent archivist {{ model: m, tools: [{grant}], max_turns: 3 }}
workflow main() {{
  a = archivist("What is in the notes?")
  return a
}}
"#,
            command.join(", ")
        )
    };
    let (r, _) = run_with(&script("fs.*"), &in_workspace(ws.path())).await;
    assert!(r.succeeded, "{:?}", step(&r, "a").status);
    let calls = calls_of(&r, "a");
    assert!(!calls.is_empty());
    // Only the server's read-only tools, on a dry run.
    for c in calls {
        assert!(c.tool.starts_with("fs__"), "{c:?}");
        for verb in ["write", "edit", "create", "move"] {
            assert!(!c.tool.contains(verb), "{c:?}");
        }
    }
    // A tool the server does not have fails the run before its first step.
    let (program, plan) = crate::common::compile_plan("t.orch", &script("fs.read_txt_file"));
    let e = orch::run::run(
        &plan,
        &program.tables.models,
        &in_workspace(ws.path()),
        &|_| {},
    )
    .await
    .expect_err("unknown tool");
    let msg = e.to_string();
    assert!(
        msg.contains("read_txt_file") && msg.contains("read_text_file"),
        "{msg}"
    );
}
