//! `orch worker`, `orch run --engine`, `orch approve` and `orch runs [show] --engine`: the
//! command-line side of [`crate::engine`].
//!
//! `orch run --engine` keeps an index of the runs it submitted, one JSON line per
//! submission in `STATE/runs/engine-runs.jsonl` ([`IndexEntry`]; STATE as for journals:
//! `--state-dir`, or `.orch` in the script's directory), for `orch runs --engine` on a server
//! without Temporal's list API (its test server).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indexmap::IndexMap;

use super::progress::Progress;
use super::run::{summary, target, usage_error};
use super::{
    ApproveArgs, EngineAccessArgs, EngineArgs, Paint, RunArgs, RunsArgs, ShowArgs, WorkerArgs,
};
use crate::check::Program;
use crate::common::plural;
use crate::engine::temporal::{self, Access, EngineAddr, Submission, TargetSpec, WorkerSettings};
use crate::plan::Plan;
use crate::plan::render::usd;
use crate::redact::redact;
use crate::run::RunReport;
use crate::run::journal;

/// The engine at `url`, reached as `access` says (the API key read from this process's
/// environment).
///
/// # Errors
/// A URL that is not `temporal://HOST:PORT`, or an API key variable that is not set.
fn engine_at(url: &str, access: &EngineAccessArgs) -> Result<EngineAddr, String> {
    let addr = EngineAddr::parse(url)?;
    let access = Access::from_flags(access.tls, access.api_key_env.as_deref(), |v| {
        std::env::var(v).ok()
    })?;
    Ok(addr.with_access(access))
}

/// The task queue of each provider's model steps, from `--step-queue PROVIDER=QUEUE` flags.
///
/// # Errors
/// A flag without `=`, an empty side, a provider the plan does not declare (the message
/// lists those it does), or a provider named twice.
fn step_queues(flags: &[String], plan: &Plan) -> Result<IndexMap<String, String>, String> {
    let mut queues = IndexMap::new();
    for flag in flags {
        let Some((provider, queue)) = flag
            .split_once('=')
            .filter(|(p, q)| !p.is_empty() && !q.is_empty())
        else {
            return Err(format!(
                "--step-queue `{flag}`: write PROVIDER=QUEUE (e.g. --step-queue openai=orch-openai)"
            ));
        };
        if !plan.providers.contains_key(provider) {
            let known: Vec<&str> = plan.providers.keys().map(String::as_str).collect();
            return Err(format!(
                "--step-queue `{flag}`: the script has no provider `{provider}` (its providers: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        if queues
            .insert(provider.to_string(), queue.to_string())
            .is_some()
        {
            return Err(format!(
                "--step-queue names provider `{provider}` twice: give each provider one queue"
            ));
        }
    }
    Ok(queues)
}

/// `orch worker`: serves the task queue until Ctrl-C.
pub(super) fn worker(a: WorkerArgs) -> ExitCode {
    let addr = match engine_at(&a.engine, &a.access) {
        Ok(x) => x,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the async runtime: {e}")),
    };
    let settings = WorkerSettings {
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        workspace: a.workspace.clone(),
        max_cached_runs: a.max_cached_runs,
        queue_rate: a.queue_rate,
    };
    eprintln!(
        "worker: polling task queue `{}` of namespace `{}` at {}:{} (Ctrl-C to stop)",
        a.task_queue, a.namespace, addr.host, addr.port
    );
    let result = runtime.block_on(async {
        tokio::select! {
            r = temporal::serve(&addr, &a.namespace, &a.task_queue, settings) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", redact(e));
            ExitCode::from(1)
        }
    }
}

/// `orch run FILE --engine URL`: submits the run, follows it, prints what a local run prints.
pub(super) fn run(
    a: &RunArgs,
    program: &Program,
    plan: &Plan,
    inputs: IndexMap<String, String>,
) -> ExitCode {
    let unsupported = [
        (a.record.is_some(), "--record"),
        (a.replay.is_some(), "--replay"),
        (
            a.resume.is_some(),
            "--resume (submit the same run again to resume it)",
        ),
        (a.cache.is_some(), "--cache"),
        (a.report.is_some(), "--report"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        return usage_error(&format!(
            "{flag} does not work with --engine yet (docs/scale-out.md)"
        ));
    }
    let addr = match engine_at(a.engine.as_deref().unwrap_or_default(), &a.access) {
        Ok(x) => x,
        Err(e) => return usage_error(&e),
    };
    let target = match target(a) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let Some(spec) = TargetSpec::of(&target) else {
        return usage_error("--replay does not work with --engine yet");
    };
    let script = match temporal::script_of(program, a.workflow.as_deref(), spec, a.max_tokens) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let sub = Submission {
        script,
        inputs,
        max_concurrency: a.max_concurrency.map(|n| n as usize),
        keep_going: a.keep_going,
        prior: None,
        yes: a.yes,
        step_queues: match step_queues(&a.step_queue, plan) {
            Ok(q) => q,
            Err(e) => return usage_error(&e),
        },
    };
    let id = sub.workflow_id(&plan.workflow);
    let engine = a.engine.clone().unwrap_or_default();
    let flags = engine_flags(&engine, &a.namespace, &a.access);
    let approve_hint = approve_command(&id, "STEP", &flags);
    let paint = Paint::stderr();
    eprintln!(
        "{}",
        redact(format!(
            "{} {} ({}, {}) on Temporal at {}:{} (task queue `{}`, workflow id {})",
            paint.bold("running"),
            plan.workflow,
            plural(plan.nodes.len() as u64, "step"),
            plural(plan.levels.len() as u64, "level"),
            addr.host,
            addr.port,
            a.task_queue,
            id,
        ))
    );
    let progress = Progress::new(plan, a.quiet, false, a.verbose, a.endpoint.is_some(), paint);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the async runtime: {e}")),
    };
    let started = std::time::Instant::now();
    let on_progress = |p: &temporal::Progress| match p {
        temporal::Progress::Asking(q) => {
            progress.asking(&q.step, &q.question, &approve_command(&id, &q.step, &flags))
        }
        p => {
            if let Some(e) = p.event() {
                progress.on_event(&e);
            }
        }
    };
    let index = index_path(a.state_dir.as_deref(), &a.file);
    let result = runtime.block_on(async {
        let client = temporal::connect(&addr, &a.namespace).await?;
        let id = temporal::start(&client, &a.task_queue, sub, &plan.workflow).await?;
        // A run the index cannot take still runs: the index only helps `orch runs`.
        if let Err(e) = remember(&index, &id, a, &plan.workflow) {
            eprintln!("warning: {e}");
        }
        if a.detach {
            return Ok(None);
        }
        temporal::follow(&client, &id, &on_progress).await.map(Some)
    });
    runtime.shutdown_background();
    let outcome = match result {
        Ok(Some(x)) => x,
        Ok(None) => {
            println!("{id}");
            eprintln!("  submitted; follow it with: orch runs show {id} {flags}");
            if plan
                .nodes
                .iter()
                .any(|n| matches!(n.exec, crate::plan::PlanExec::Approval))
                && !a.yes
            {
                eprintln!("  answer its approvals with: {approve_hint}");
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{} {}", paint.red("error:"), redact(e));
            return ExitCode::from(2);
        }
    };
    let mut usage = crate::run::provider::Usage::default();
    let mut cost_usd = 0.0;
    for s in &outcome.steps {
        usage.add(s.usage);
        cost_usd += s.cost_usd;
    }
    let report = RunReport {
        workflow: plan.workflow.clone(),
        steps: outcome.steps,
        output: outcome.output,
        succeeded: outcome.succeeded,
        stopped: outcome.stopped,
        usage,
        cost_usd,
        wall_ms: started.elapsed().as_millis() as u64,
        run_id: Some(id.clone()),
        reused: outcome.reused,
        interrupted: false,
    };
    eprint!("{}", redact(summary(&report, a.endpoint.is_some(), &paint)));
    eprintln!("  run {id} on Temporal");
    if !report.succeeded {
        eprintln!(
            "  resume with: orch run {} --engine {} (the same inputs)",
            a.file.display(),
            a.engine.as_deref().unwrap_or_default()
        );
    }
    if let Some(out) = &report.output {
        println!("{}", redact(out.trim_end()));
    }
    if report.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The flags that reach the engine, for the commands printed: `--engine URL`, then
/// `--namespace NS` when not the default, `--tls`, `--api-key-env VAR` (the variable's name,
/// never the key).
fn engine_flags(engine: &str, ns: &str, access: &EngineAccessArgs) -> String {
    let mut f = format!("--engine {engine}");
    if ns != temporal::DEFAULT_NAMESPACE {
        f.push_str(&format!(" --namespace {ns}"));
    }
    match &access.api_key_env {
        Some(var) => f.push_str(&format!(" --api-key-env {var}")),
        None if access.tls => f.push_str(" --tls"),
        None => {}
    }
    f
}

/// The command that answers approval step `step` of run `id`; `flags`: [`engine_flags`].
fn approve_command(id: &str, step: &str, flags: &str) -> String {
    format!("orch approve {id} {step} --yes|--no {flags}")
}

/// One submission in the index of runs this machine submitted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct IndexEntry {
    /// The run's workflow id.
    pub id: String,
    /// `--engine`, as given.
    pub engine: String,
    /// `--namespace`.
    pub namespace: String,
    /// The script's canonical path.
    pub script: String,
    /// The workflow.
    pub workflow: String,
    /// When it was submitted, in seconds since the Unix epoch.
    pub submitted: u64,
}

/// The file of the index: `STATE/runs/engine-runs.jsonl`.
fn index_path(state_dir: Option<&Path>, script: &Path) -> PathBuf {
    let state = match state_dir {
        Some(d) => d.to_path_buf(),
        None => {
            let script = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf());
            journal::default_state_dir(&script)
        }
    };
    state.join("runs").join(INDEX_FILE)
}

/// The name of the index file in `STATE/runs`.
const INDEX_FILE: &str = "engine-runs.jsonl";

/// Adds run `id` to the index (once: a run submitted again is not added again).
fn remember(index: &Path, id: &str, a: &RunArgs, workflow: &str) -> Result<(), String> {
    use std::io::Write as _;
    let text = std::fs::read_to_string(index).unwrap_or_default();
    if parse_index(&text).iter().any(|e| e.id == id) {
        return Ok(());
    }
    let script = std::fs::canonicalize(&a.file).unwrap_or_else(|_| a.file.clone());
    let entry = IndexEntry {
        id: id.to_string(),
        engine: a.engine.clone().unwrap_or_default(),
        namespace: a.namespace.clone(),
        script: script.to_string_lossy().into_owned(),
        workflow: workflow.to_string(),
        submitted: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let cannot = |e: std::io::Error| format!("cannot add the run to {}: {e}", index.display());
    if let Some(dir) = index.parent() {
        std::fs::create_dir_all(dir).map_err(cannot)?;
    }
    let mut line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
    line.push('\n');
    // After a line cut short (a crash while writing), start a new one.
    if !text.is_empty() && !text.ends_with('\n') {
        line.insert(0, '\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(index)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(cannot)
}

/// The index's entries (lines that are not entries are left out: a line cut short by a
/// crash, or written by another version).
fn read_index(index: &Path) -> Vec<IndexEntry> {
    parse_index(&std::fs::read_to_string(index).unwrap_or_default())
}

fn parse_index(text: &str) -> Vec<IndexEntry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A runtime for one command's calls to the engine.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage_error(&format!("cannot start the async runtime: {e}")))
}

/// `--engine`'s address, or a usage error naming `what` needs it.
fn engine_addr(e: &EngineArgs, what: &str) -> Result<EngineAddr, ExitCode> {
    let Some(url) = e.engine.as_deref() else {
        return Err(usage_error(&format!(
            "{what} needs --engine temporal://HOST:PORT"
        )));
    };
    engine_at(url, &e.access).map_err(|e| usage_error(&e))
}

/// Who answers, for an approval's report: `USER@HOST` (the user from `$USER`, `$LOGNAME`,
/// or this process's uid in /etc/passwd; `uid N` when none says).
fn answerer() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(user_of_uid);
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// This process's user name from /etc/passwd, or `uid N`.
fn user_of_uid() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "someone".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid.to_string()).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// `orch approve RUN_ID STEP --yes|--no`: exit 0 when the answer was sent, 1 when the run or
/// step is past answering, 2 for a usage error (no --engine, an unknown run or step, an
/// engine that cannot be reached).
pub(super) fn approve(a: &ApproveArgs) -> ExitCode {
    if a.engine.engine.is_none() {
        return usage_error(&format!(
            "orch approve answers runs on an engine: pass --engine temporal://HOST:PORT (or set ORCH_ENGINE) as `orch run --engine` was given. A local run (without --engine) cannot be answered from another command: it asks its approvals on its terminal, or approves them all with `orch run {} --yes`",
            "FILE"
        ));
    }
    let addr = match engine_addr(&a.engine, "orch approve") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let answer = temporal::Answer {
        step: a.step.clone(),
        approved: a.yes,
        by: answerer(),
    };
    let verb = if a.yes { "approved" } else { "declined" };
    let result = rt.block_on(async {
        let client = temporal::connect(&addr, &a.engine.namespace)
            .await
            .map_err(temporal::ApproveError::Usage)?;
        temporal::approve(&client, &a.id, answer).await
    });
    rt.shutdown_background();
    match result {
        Ok(temporal::Approved::Answered) => {
            eprintln!("{verb} step `{}` of run {}", a.step, a.id);
            ExitCode::SUCCESS
        }
        Ok(temporal::Approved::Early) => {
            eprintln!(
                "{verb} step `{}` of run {}: it has not asked yet and takes this answer when it does",
                a.step, a.id
            );
            ExitCode::SUCCESS
        }
        Err(temporal::ApproveError::Usage(e)) => usage_error(&redact(e)),
        Err(temporal::ApproveError::TooLate(e)) => {
            eprintln!("error: {}", redact(e));
            ExitCode::from(1)
        }
    }
}

/// At most this many runs listed from Temporal's list API.
const LIST_LIMIT: usize = 1000;

/// `orch runs --engine URL [FILE]`: the runs on the engine, as `orch runs` lists journalled
/// ones. Temporal's list API gives every run in the namespace; with FILE, or on a server
/// without that API, the runs this machine submitted (the index) are listed.
pub(super) fn runs(a: &RunsArgs) -> ExitCode {
    let addr = match engine_addr(&a.engine, "orch runs --engine") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (state, script) = match a.scope() {
        Ok(x) => x,
        Err(code) => return code,
    };
    let index_file = state.join("runs").join(INDEX_FILE);
    let engine = a.engine.engine.clone().unwrap_or_default();
    let index: Vec<IndexEntry> = read_index(&index_file)
        .into_iter()
        .filter(|e| {
            e.namespace == a.engine.namespace
                && EngineAddr::parse(&e.engine).is_ok_and(|x| x.same_server(&addr))
        })
        .filter(|e| script.as_ref().is_none_or(|s| *s == e.script))
        .collect();
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let client = temporal::connect(&addr, &a.engine.namespace).await?;
        let (ids, from_index) = match script {
            Some(_) => (index.iter().map(|e| e.id.clone()).collect(), true),
            None => match temporal::list(&client, LIST_LIMIT).await {
                Ok(ids) => (ids, false),
                Err(_) => (index.iter().rev().map(|e| e.id.clone()).collect(), true),
            },
        };
        let mut views = Vec::new();
        for id in ids {
            let view = temporal::describe(&client, &id).await;
            views.push((id, view));
        }
        Ok::<_, String>((views, from_index))
    });
    rt.shutdown_background();
    let (views, from_index) = match result {
        Ok(x) => x,
        Err(e) => return usage_error(&redact(e)),
    };
    if from_index {
        eprintln!(
            "runs submitted from this machine (the index {}; this server does not list workflows)",
            index_file.display()
        );
    }
    if views.is_empty() {
        eprintln!(
            "no runs on Temporal at {engine} (namespace `{}`)",
            a.engine.namespace
        );
        return ExitCode::SUCCESS;
    }
    let width = views.iter().map(|(id, _)| id.len()).max().unwrap_or(2);
    println!(
        "{:<width$}  {:<12} {:>9} {:>9}  script",
        "id", "status", "ok/steps", "cost"
    );
    for (id, view) in &views {
        let script = index
            .iter()
            .find(|e| e.id == *id)
            .map(|e| format!("{} ({})", e.script, e.workflow));
        match view {
            Ok(v) => {
                let (ok, total) = v.counts();
                println!(
                    "{id:<width$}  {:<12} {:>9} {:>9}  {}",
                    v.status,
                    format!("{ok}/{total}"),
                    usd(v.cost_usd()),
                    script.unwrap_or_else(|| format!("? ({})", v.workflow)),
                );
            }
            Err(e) => println!(
                "{id:<width$}  {:<12} {:>9} {:>9}  {}",
                "unknown",
                "-",
                "-",
                redact(e.as_str()).shorten(120).as_str()
            ),
        }
    }
    ExitCode::SUCCESS
}

/// `orch runs show RUN_ID [STEP] --engine URL`: a run on the engine. A completed run: its
/// summary, as `orch run` prints it, and its result; a running one: its steps so far, those
/// running, and the approvals waiting with the command that answers them. Exit 0, or 2 when
/// the run cannot be found.
pub(super) fn show(a: &ShowArgs) -> ExitCode {
    let addr = match engine_addr(&a.engine, "orch runs show --engine") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let client = temporal::connect(&addr, &a.engine.namespace).await?;
        temporal::describe(&client, &a.id).await
    });
    rt.shutdown_background();
    let view = match result {
        Ok(v) => v,
        Err(e) => {
            return usage_error(&format!(
                "{}; `orch runs --engine URL` lists the runs",
                redact(e)
            ));
        }
    };
    let engine = a.engine.engine.clone().unwrap_or_default();
    let (ok, total) = view.counts();
    println!(
        "run {} on Temporal: workflow {}, {}, {ok}/{total} steps succeeded, {}",
        view.id,
        view.workflow,
        view.status,
        usd(view.cost_usd())
    );
    let wanted = |name: &str| a.step.as_deref().is_none_or(|s| s == name);
    if let Some(o) = &view.outcome {
        let steps: Vec<_> = o
            .steps
            .iter()
            .filter(|s| wanted(&s.name))
            .cloned()
            .collect();
        if a.step.is_some() && steps.is_empty() {
            return usage_error(&format!(
                "run {} has no step `{}`",
                view.id,
                a.step.as_deref().unwrap_or_default()
            ));
        }
        let mut usage = crate::run::provider::Usage::default();
        for s in &steps {
            usage.add(s.usage);
        }
        let approvals: Vec<String> = steps
            .iter()
            .filter_map(|s| {
                let a = s.approval.as_ref()?;
                Some(format!("  {}: {}", s.name, a.describe()))
            })
            .collect();
        let report = RunReport {
            workflow: view.workflow.clone(),
            steps,
            output: o.output.clone(),
            succeeded: o.succeeded,
            stopped: o.stopped.clone(),
            usage,
            cost_usd: view.cost_usd(),
            wall_ms: view.wall_ms().unwrap_or(0),
            run_id: Some(view.id.clone()),
            reused: o.reused.clone(),
            interrupted: false,
        };
        print!("{}", redact(summary(&report, false, &Paint { on: false })));
        if !approvals.is_empty() {
            println!("approvals\n{}", redact(approvals.join("\n")));
        }
        if a.step.is_none()
            && let Some(out) = &o.output
        {
            println!("result:\n{}", redact(out.trim_end()));
        }
        return ExitCode::SUCCESS;
    }
    let Some((events, state)) = &view.live else {
        if view.status == "running" {
            println!("  (no worker answers its queries: start `orch worker --engine {engine}`)");
        }
        return ExitCode::SUCCESS;
    };
    let mut settled: IndexMap<&str, String> = IndexMap::new();
    for e in events {
        match e {
            temporal::Progress::Started { step, runs_on } => {
                settled.insert(step, format!("running on {runs_on}"));
            }
            temporal::Progress::Finished(r) | temporal::Progress::Reused(r) => {
                let how = match (&r.approval, &r.status) {
                    (Some(ap), _) => ap.describe(),
                    (None, crate::run::StepStatus::Succeeded) => {
                        format!("succeeded · {}", usd(r.cost_usd))
                    }
                    (None, crate::run::StepStatus::Failed(e)) => format!("failed: {e}"),
                    (None, crate::run::StepStatus::Skipped(e)) => format!("skipped: {e}"),
                    (None, crate::run::StepStatus::Cancelled) => "cancelled".into(),
                    (None, crate::run::StepStatus::Interrupted) => "interrupted".into(),
                };
                settled.insert(&r.name, how);
            }
            temporal::Progress::Asking(_) => {}
        }
    }
    let w = settled
        .keys()
        .map(|k| k.len())
        .chain(state.waiting.iter().map(|q| q.step.len()))
        .max()
        .unwrap_or(4);
    for (step, how) in &settled {
        if wanted(step) && !state.waiting.iter().any(|q| q.step == *step) {
            println!("  {step:<w$}  {}", redact(how.as_str()));
        }
    }
    for q in state.waiting.iter().filter(|q| wanted(&q.step)) {
        println!(
            "  {:<w$}  waits for approval: {:?}\n  {:<w$}  answer with: {}",
            q.step,
            redact(q.question.trim()).shorten(200).as_str(),
            "",
            approve_command(
                &view.id,
                &q.step,
                &engine_flags(&engine, &a.engine.namespace, &a.engine.access)
            )
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command, RunsCommand};

    #[test]
    fn engine_commands_parse_their_access_flags_and_answers() {
        let cli = Cli::try_parse_from([
            "orch",
            "approve",
            "orch-main-1",
            "ok",
            "--no",
            "--engine",
            "temporal://h:7233",
            "--namespace",
            "team",
            "--api-key-env",
            "TEMPORAL_API_KEY",
        ])
        .unwrap();
        let Command::Approve(a) = cli.command else {
            panic!("not approve")
        };
        assert_eq!(
            (a.id.as_str(), a.step.as_str(), a.yes, a.no),
            ("orch-main-1", "ok", false, true)
        );
        assert_eq!(a.engine.namespace, "team");
        assert_eq!(
            a.engine.access.api_key_env.as_deref(),
            Some("TEMPORAL_API_KEY")
        );
        assert_eq!(
            engine_flags("temporal://h:7233", "team", &a.engine.access),
            "--engine temporal://h:7233 --namespace team --api-key-env TEMPORAL_API_KEY"
        );
        // One answer, and one is needed.
        for bad in [&["--yes", "--no"][..], &[]] {
            let args = [&["orch", "approve", "r", "s"][..], bad].concat();
            assert!(Cli::try_parse_from(args).is_err());
        }
        let cli = Cli::try_parse_from(["orch", "worker", "--engine", "temporal://h:7233", "--tls"])
            .unwrap();
        let Command::Worker(w) = cli.command else {
            panic!("not worker")
        };
        assert!(w.access.tls && w.access.api_key_env.is_none());
        assert_eq!(
            engine_flags("temporal://h:7233", "default", &w.access),
            "--engine temporal://h:7233 --tls"
        );
        let cli = Cli::try_parse_from([
            "orch",
            "runs",
            "show",
            "orch-main-1",
            "--engine",
            "temporal://h:7233",
        ])
        .unwrap();
        let Command::Runs(r) = cli.command else {
            panic!("not runs")
        };
        let Some(RunsCommand::Show(s)) = r.action else {
            panic!("not show")
        };
        assert_eq!(s.engine.engine.as_deref(), Some("temporal://h:7233"));
    }

    #[test]
    fn the_index_keeps_one_line_per_run_and_skips_lines_it_cannot_read() {
        let dir = std::env::temp_dir().join(format!("orch-index-{}", std::process::id()));
        let index = dir.join("runs").join(INDEX_FILE);
        let cli = Cli::try_parse_from(["orch", "run", "x.orch", "--engine", "temporal://h:7233"])
            .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        remember(&index, "orch-main-1", &a, "main").unwrap();
        remember(&index, "orch-main-1", &a, "main").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&index)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"id\": \"cut sh"))
            .unwrap();
        remember(&index, "orch-main-2", &a, "main").unwrap();
        let ids: Vec<String> = read_index(&index).into_iter().map(|e| e.id).collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ids, ["orch-main-1", "orch-main-2"]);
    }
}
