//! Cassettes (`--record` / `--replay`): a run recorded against a scripted server replays with
//! no server, no key and no side effect, to the same outputs; a request the cassette does not
//! have fails its step naming the first difference; no key reaches a cassette; examples
//! recorded on the simulator replay through the CLI to the same output; and the cassettes of
//! the real-model end-to-end runs (tests/cassettes/, recorded by `scripts/record-cassettes.sh`)
//! replay in every test run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch::run::cassette::Cassette;
use orch::run::{EnvLookup, RunOptions, RunReport, StepStatus, Target};
use serde_json::Value;

use crate::common::cli::{orch_command, stderr, stdout};
use crate::common::fault_server::{FaultServer, Reply, openai_json, openai_tool_calls};
use crate::common::run::{run_with, step};
use crate::common::temp_dir;

const KEY: &str = "sk-cassette-test-0123456789abcdef";

/// A loop that writes a file, a command whose output changes every run, and a step whose
/// prompt holds both (and whose answer echoes the key).
fn script(server: &str, echo: &str) -> String {
    format!(
        r#"
provider p {{ kind: openai, base_url: "{server}/v1", api_key_env: "ORCH_TEST_KEY", stream: false }}
model m {{ provider: p, name: "m-1" }}
agent fixer {{ model: m, tools: [write], max_turns: 3 }}
agent echo {{ model: m }}
agent clock {{ run: ["date", "+%s%N"] }}
workflow main() -> text {{
  done = fixer("Write out.txt")
  stamp = clock()
  note = echo("{echo} {{done}} at {{stamp}}")
  return note
}}
"#
    )
}

fn keyed(workspace: &Path) -> RunOptions {
    RunOptions {
        env: Some(EnvLookup(Arc::new(|name: &str| {
            (name == "ORCH_TEST_KEY").then(|| KEY.to_string())
        }))),
        workspace: Some(workspace.to_path_buf()),
        ..RunOptions::default()
    }
}

/// Options replaying `cassette`, with no key in the environment.
fn replaying(cassette: &Path, workspace: &Path) -> RunOptions {
    RunOptions {
        target: Target::Replay(Arc::new(
            Cassette::replay(cassette).expect("cassette reads"),
        )),
        env: Some(EnvLookup(Arc::new(|_: &str| None))),
        workspace: Some(workspace.to_path_buf()),
        ..RunOptions::default()
    }
}

fn outputs(r: &RunReport) -> Vec<(String, Option<String>)> {
    r.steps
        .iter()
        .map(|s| (s.name.clone(), s.output.clone()))
        .collect()
}

/// Records the script against a server scripted for it; the server, the cassette's path, the
/// workspace (kept alive by the returned guard) and the report.
async fn recorded() -> (FaultServer, PathBuf, tempfile::TempDir, RunReport) {
    let server = FaultServer::start(vec![
        Reply::json(
            200,
            openai_tool_calls(
                &[(
                    "c1",
                    "write",
                    r#"{"path": "out.txt", "content": "hello\n"}"#,
                )],
                10,
            ),
        ),
        openai_json("wrote out.txt"),
        openai_json(&format!("noted; your key is {KEY}")),
    ])
    .await;
    let tmp = temp_dir();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let cassette = tmp.path().join("run.cassette.jsonl");
    let mut opts = keyed(&ws);
    opts.record = Some(Arc::new(
        Cassette::record(&cassette, "script providers").unwrap(),
    ));
    let (r, _) = run_with(&script(&server.uri(), "echo"), &opts).await;
    assert!(r.succeeded, "{:#?}", r.steps);
    (server, cassette, tmp, r)
}

#[tokio::test]
async fn a_recorded_run_replays_with_no_server_no_key_and_no_side_effect() {
    let (server, cassette, tmp, first) = recorded().await;
    let ws = tmp.path().join("ws");
    assert_eq!(
        std::fs::read_to_string(ws.join("out.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(server.received().len(), 3);
    let text = std::fs::read_to_string(&cassette).unwrap();
    assert!(!text.contains(KEY), "a key reached the cassette:\n{text}");
    assert!(text.contains("your key is <redacted>"), "{text}");

    // Replayed: the same outputs (the command's too, though `date` would differ now), nothing
    // sent, nothing written.
    std::fs::remove_file(ws.join("out.txt")).unwrap();
    let (again, _) = run_with(&script(&server.uri(), "echo"), &replaying(&cassette, &ws)).await;
    assert!(again.succeeded, "{:#?}", again.steps);
    assert_eq!(outputs(&again), outputs(&first));
    assert_eq!(again.output, first.output);
    assert_eq!(again.usage, first.usage);
    assert_eq!(server.received().len(), 3, "a replay sent a request");
    assert!(!ws.join("out.txt").exists(), "a replayed tool call ran");
    let calls = &step(&again, "done").agent_loop.as_ref().unwrap().tool_calls;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].summary,
        step(&first, "done").agent_loop.as_ref().unwrap().tool_calls[0].summary
    );
}

#[tokio::test]
async fn a_request_the_cassette_lacks_fails_its_step_with_the_first_difference() {
    let (server, cassette, tmp, _) = recorded().await;
    let ws = tmp.path().join("ws");
    let (r, _) = run_with(&script(&server.uri(), "repeat"), &replaying(&cassette, &ws)).await;
    assert!(!r.succeeded);
    assert_eq!(step(&r, "done").status, StepStatus::Succeeded);
    assert_eq!(step(&r, "stamp").status, StepStatus::Succeeded);
    let StepStatus::Failed(why) = &step(&r, "note").status else {
        panic!("`note` did not fail: {:?}", step(&r, "note").status);
    };
    assert!(why.contains("not in the cassette"), "{why}");
    assert!(
        why.contains("differs at `prompt`: now \"repeat wrote out.txt at "),
        "{why}"
    );
    assert!(why.contains("recorded \"echo wrote out.txt at "), "{why}");
    // Never retried: one attempt.
    assert_eq!(step(&r, "note").attempts, 1);
}

// ------------------------------------------------------------------ the CLI

/// `orch run` of `example` with `args`; its report (JSON), stdout and stderr.
fn orch_run(example: &str, args: &[&str], dir: &Path, name: &str) -> (Value, String, String) {
    let report = dir.join(format!("{name}.json"));
    let out = orch_command()
        .args([
            "run",
            example,
            "--no-journal",
            "--quiet",
            "--color",
            "never",
        ])
        .args(args)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("orch runs");
    let err = stderr(&out);
    assert!(out.status.success(), "{example} {args:?}:\n{err}");
    let json = std::fs::read_to_string(&report).expect("report");
    (serde_json::from_str(&json).unwrap(), stdout(&out), err)
}

/// Each step's name, status and output.
fn steps(report: &Value) -> Vec<(Value, Value, Value)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["status"].clone(), s["output"].clone()))
        .collect()
}

#[test]
fn examples_recorded_on_the_simulator_replay_through_the_cli_to_the_same_output() {
    let tmp = temp_dir();
    for (example, input) in [
        (
            "examples/lead_specialists.orch",
            "question=How is the run journal written?",
        ),
        ("examples/build_test_deploy.orch", "version=1.2.3"),
        // Batched requests are recorded one by one, and replayed by their identity.
        (
            "examples/batch_reviews.orch",
            r#"files=["src/lib.rs", "src/main.rs", "README.md"]"#,
        ),
    ] {
        let cassette = tmp.path().join("c.jsonl");
        let c = cassette.to_str().unwrap();
        let (first, out1, _) = orch_run(
            example,
            &[
                "--simulate",
                "--sim-latency",
                "0ms",
                "--run-commands",
                "--workspace",
                ".",
                "--input",
                input,
                "--record",
                c,
            ],
            tmp.path(),
            "recorded",
        );
        let (again, out2, err) = orch_run(
            example,
            &["--workspace", ".", "--input", input, "--replay", c],
            tmp.path(),
            "replayed",
        );
        assert_eq!(out2, out1, "{example}");
        // In name order: the instances of a batch end together, in any order.
        let sorted = |r| {
            let mut s = steps(r);
            s.sort_by_key(|(name, _, _)| name.to_string());
            s
        };
        assert_eq!(sorted(&again), sorted(&first), "{example}");
        assert!(err.contains("replaying"), "{err}");
    }
}

#[test]
fn a_cassette_that_cannot_be_read_is_a_usage_error() {
    let tmp = temp_dir();
    let missing = tmp.path().join("none.jsonl");
    let out = orch_command()
        .args(["run", "examples/pipeline.orch", "--replay"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("none.jsonl") && err.contains("--record"),
        "{err}"
    );
    let both = orch_command()
        .args([
            "run",
            "examples/pipeline.orch",
            "--simulate",
            "--replay",
            "x.jsonl",
        ])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}

// ------------------------------------------------------------------ the real-model runs

/// What `scripts/record-cassettes.sh` kept of one end-to-end run beside its cassette: how it
/// was run and what it printed.
#[derive(serde::Deserialize)]
struct Recorded {
    script: String,
    args: Vec<String>,
    stdout: String,
    succeeded: bool,
    steps: Vec<(Value, Value, Value)>,
}

/// Every cassette in tests/cassettes/ replays, with no server, to the recorded outputs.
#[test]
fn the_end_to_end_cassettes_replay_to_their_recorded_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cassettes");
    let mut seen = 0;
    let tmp = temp_dir();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cassettes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".run.json"))
        .collect();
    manifests.sort();
    for manifest in manifests {
        let rec: Recorded =
            serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let cassette = manifest.to_string_lossy().replace(".run.json", ".jsonl");
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let report = tmp.path().join("report.json");
        let out = orch_command()
            .args([
                "run",
                &rec.script,
                "--no-journal",
                "--quiet",
                "--color",
                "never",
            ])
            .args(&rec.args)
            .arg("--workspace")
            .arg(&ws)
            .args(["--replay", &cassette])
            .arg("--report")
            .arg(&report)
            .output()
            .unwrap();
        let name = manifest.display();
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{name}: no report ({e}):\n{}", stderr(&out)));
        assert_eq!(
            json["succeeded"],
            rec.succeeded,
            "{name}:\n{}",
            stderr(&out)
        );
        assert_eq!(steps(&json), rec.steps, "{name}");
        assert_eq!(stdout(&out), rec.stdout, "{name}");
        seen += 1;
    }
    assert!(seen >= 5, "expected the end-to-end cassettes, found {seen}");
}
