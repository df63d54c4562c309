//! Every ```orch block in the README and docs checks (```orch,fail blocks must not). (Each
//! example and stdlib file is a test of its own in `tests/corpus.rs`.)

use std::path::Path;

use orch::resolve::ResolveOptions;

use crate::common::files::orch_blocks;

#[test]
fn code_blocks_in_readme_and_docs_check() {
    let mut bad = Vec::new();
    let mut count = 0;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for doc in ["README.md", "docs/language.md"] {
        for block in orch_blocks(doc) {
            count += 1;
            let line = block.line;
            let (_, diags) =
                orch::compile_source("block.orch", &block.body, &dir, &ResolveOptions::default());
            match (block.fail, diags.has_errors()) {
                (false, true) => {
                    let messages: Vec<String> = diags
                        .iter()
                        .map(|d| format!("{} {}", d.code, d.message))
                        .collect();
                    bad.push(format!("{doc}:{line}: {messages:?}"))
                }
                (true, false) => bad.push(format!("{doc}:{line}: marked `fail` but checks clean")),
                _ => {}
            }
        }
    }
    assert!(
        count >= 10,
        "expected code blocks in README.md and docs/language.md, found {count}"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Runs `example` with `orch run --simulate` on this repository as the workspace; its JSON
/// report and stderr.
fn simulate_on_this_repository(example: &str, input: &str) -> (serde_json::Value, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = crate::common::temp_dir();
    let report = tmp.path().join("report.json");
    let out = crate::common::cli::orch_command()
        .current_dir(root)
        .args([
            "run",
            example,
            "--simulate",
            "--no-journal",
            "--color",
            "never",
        ])
        .args(["--workspace", ".", "--input", input, "--report"])
        .arg(&report)
        .output()
        .expect("orch runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{example}:\n{stderr}");
    let json = std::fs::read_to_string(&report).expect("report");
    (serde_json::from_str(&json).unwrap(), stderr)
}

/// The tools called by the loop of `step` (a step of the report, or a nested step's report).
fn tools_called(step: &serde_json::Value) -> Vec<String> {
    step["agent_loop"]["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| c["tool"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn step_named<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step `{name}`"))
}

#[test]
fn scout_plan_build_runs_on_this_repository_with_real_tools_on_the_simulator() {
    let (report, stderr) = simulate_on_this_repository(
        "examples/scout_plan_build.orch",
        "request=Add user authentication",
    );
    for scout in ["files", "deps", "patterns"] {
        let s = step_named(&report, scout);
        assert_eq!(tools_called(s), ["read", "list", "glob", "grep"], "{scout}");
        assert_eq!(s["agent_loop"]["turns"], 2);
        for c in s["agent_loop"]["tool_calls"].as_array().unwrap() {
            assert_eq!(c["is_error"], false, "{c}");
            assert!(c["result_bytes"].as_u64().unwrap() > 0, "{c}");
        }
    }
    // The builder and the reviewer read; nothing writes or runs on a dry run.
    assert_eq!(
        tools_called(step_named(&report, "build")),
        ["read", "list", "glob", "grep"]
    );
    assert_eq!(
        tools_called(step_named(&report, "review")),
        ["read", "grep"]
    );
    assert!(stderr.contains("⚒ files"), "{stderr}");
    assert!(stderr.contains("read README.md → "), "{stderr}");
    assert!(stderr.contains("2 turns · 4 calls"), "{stderr}");
}

#[test]
fn lead_with_specialists_delegates_as_nested_steps_on_the_simulator() {
    let (report, stderr) = simulate_on_this_repository(
        "examples/lead_specialists.orch",
        "question=How is the run journal written?",
    );
    let answer = step_named(&report, "answer");
    assert_eq!(tools_called(answer), ["agent__code_scout", "agent__tester"]);
    let calls = answer["agent_loop"]["tool_calls"].as_array().unwrap();
    let scout = &calls[0]["delegated"];
    assert_eq!(scout["name"], "answer/code_scout#1.1");
    assert_eq!(scout["status"], "succeeded");
    assert_eq!(tools_called(scout), ["read", "list", "glob", "grep"]);
    // The tester only reads on a dry run: `cargo test` never runs.
    assert_eq!(tools_called(&calls[1]["delegated"]), ["read"]);
    // Nested steps' costs are the lead's too; their calls count in its summary line.
    let lead_cost = answer["cost_usd"].as_f64().unwrap();
    let nested: f64 = calls
        .iter()
        .map(|c| c["delegated"]["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(lead_cost > nested && nested > 0.0);
    assert!(stderr.contains("answer/code_scout#1.1"), "{stderr}");
    assert!(stderr.contains("2 turns · 7 calls"), "{stderr}");
}
