//! The cross-run cache (`--cache DIR`): a step without side effects takes its result from any
//! earlier run that sent the same request; a command step and an agent that may write always
//! run; `--why-rerun` says why a step was not taken from the cache.

use std::sync::Arc;

use orch::run::step_cache::StepCache;
use orch::run::{Endpoint, Event, RunOptions, Target};

use crate::common::cli::{orch_command, stderr};
use crate::common::fault_server::{FaultServer, openai_json};
use crate::common::run::{run_with, step};
use crate::common::temp_dir;

const SCRIPT: &str = r#"
provider p { kind: openai, base_url: "http://127.0.0.1:9/v1" }
model m { provider: p, name: "m-1" }
agent writer { model: m }
agent fixer { model: m, tools: [write], max_turns: 2 }
agent stamp { run: ["date", "+%s%N"] }
workflow main() {
  draft = writer("Draft a haiku about caches")
  now = stamp()
  fixed = fixer("Fix nothing; just answer")
}
"#;

fn options(server: &FaultServer, cache: &Arc<StepCache>, ws: &std::path::Path) -> RunOptions {
    RunOptions {
        target: Target::Endpoint(Endpoint {
            base_url: format!("{}/v1", server.uri()),
            model: None,
            api_key_env: None,
            stream: false,
        }),
        cache: Some(cache.clone()),
        workspace: Some(ws.to_path_buf()),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn a_step_without_side_effects_is_reused_across_runs_and_the_others_run_again() {
    let server = FaultServer::start(vec![
        openai_json("caches keep / what the last run has learned / tokens saved in spring"),
        openai_json("nothing to fix"),
        openai_json("still nothing to fix"),
    ])
    .await;
    let tmp = temp_dir();
    let cache = Arc::new(StepCache::open(&tmp.path().join("cache")).unwrap());
    let (first, _) = run_with(SCRIPT, &options(&server, &cache, tmp.path())).await;
    assert!(first.succeeded, "{:#?}", first.steps);
    assert_eq!(server.received().len(), 2);

    let (second, events) = run_with(SCRIPT, &options(&server, &cache, tmp.path())).await;
    assert!(second.succeeded, "{:#?}", second.steps);
    // The writer's request was not sent again; the agent that may write was.
    assert_eq!(server.received().len(), 3);
    let draft = step(&second, "draft");
    assert_eq!(draft.output, step(&first, "draft").output);
    assert_eq!((draft.attempts, draft.cost_usd), (0, 0.0));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Cached(r) if r.name == "draft"))
    );
    assert_eq!(
        step(&second, "fixed").output.as_deref(),
        Some("still nothing to fix")
    );
    // The command ran again.
    assert_eq!(step(&second, "now").attempts, 1);
    assert_ne!(step(&second, "now").output, step(&first, "now").output);
}

#[test]
fn why_rerun_says_why_a_step_was_not_taken_from_the_cache() {
    let tmp = temp_dir();
    let script = tmp.path().join("s.orch");
    std::fs::write(&script, SCRIPT).unwrap();
    let run = || {
        orch_command()
            .arg("run")
            .arg(&script)
            .args([
                "--simulate",
                "--sim-latency",
                "0ms",
                "--no-journal",
                "--color",
                "never",
            ])
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .arg("--why-rerun")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    let err = stderr(&first);
    assert!(
        err.contains("draft") && err.contains("has no result for its key"),
        "{err}"
    );
    assert!(
        err.contains("it is never cached: it may have side effects"),
        "{err}"
    );
    let second = run();
    let err = stderr(&second);
    assert!(second.status.success(), "{err}");
    assert!(
        err.contains("draft") && err.contains("from the cache"),
        "{err}"
    );
}

#[test]
fn why_rerun_needs_resume_or_cache() {
    let out = orch_command()
        .args(["run", "examples/pipeline.orch", "--simulate", "--why-rerun"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
