//! Running plans on Temporal (<https://temporal.io>) with its Rust SDK (`temporalio-sdk`):
//! `orch worker --engine temporal://HOST:PORT` and `orch run FILE --engine
//! temporal://HOST:PORT`.
//!
//! - A run is one Temporal workflow, [`OrchRun`], whose input is a [`Submission`]: the
//!   script's source files (the entry and its includes, as text), the workflow, the inputs as
//!   given and where models run. Its code is the deterministic interpreter
//!   [`crate::run::remote::Interp`]: it compiles the submission (a pure function of its
//!   texts), starts each step as an activity when the interpreter says so, and returns an
//!   [`Outcome`]. Progress is a query ([`OrchRun::progress`]).
//! - A step is one activity, [`OrchSteps::step`], run on any worker of the task queue by
//!   [`crate::run::remote::StepHost`] — the local run's step code: providers (keys from the
//!   worker's environment; they never cross Temporal), retries, timeouts, fallback, limits,
//!   redaction. It heartbeats every second while the step runs; the workflow gives it a
//!   heartbeat timeout of [`HEARTBEAT_TIMEOUT`], so the step of a worker that dies is retried
//!   on another worker after that long.
//! - The workflow id is derived from the submission ([`Submission::workflow_id`]): submitting
//!   the same run again attaches to it while it runs, and after an execution that did not
//!   succeed starts a new one that reuses every step whose call is unchanged
//!   ([`crate::run::remote::Interp::new`]'s `prior`).
//!
//! What is not built yet is in docs/scale-out.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowDescribeOptions,
    WorkflowExecutionStatus, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

use crate::check::ModelDef;
use crate::plan::{Plan, PlanExec};
use crate::run::remote::{Interp, Outcome, StepCall, StepHost};
use crate::run::{Endpoint, Event, RunOptions, StepReport, StepStatus, Target};

/// How long a step's activity may go without a heartbeat before Temporal gives it to another
/// worker (its worker is taken for dead). Activities heartbeat every [`HEARTBEAT_EVERY`].
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a running step's activity heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// The most times one step's activity is started: the first, then after each worker that
/// died (or missed its heartbeats) running it. A step's own failures are not activity
/// failures: they come back in its report and are retried as the script says.
pub const MAX_ACTIVITY_ATTEMPTS: u32 = 5;
/// The task queue when none is given.
pub const DEFAULT_TASK_QUEUE: &str = "orch";
/// The namespace when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where a Temporal frontend listens: `temporal://HOST:PORT`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineAddr {
    /// Host name or address.
    pub host: String,
    /// gRPC port (Temporal's default is 7233).
    pub port: u16,
}

impl EngineAddr {
    /// Parses `temporal://HOST:PORT`.
    ///
    /// # Errors
    /// A message naming what is wrong and the expected form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "--engine `{s}`: {why}; write `temporal://HOST:PORT`, e.g. `temporal://127.0.0.1:7233`"
            )
        };
        let rest = s
            .strip_prefix("temporal://")
            .ok_or_else(|| bad("only the `temporal://` engine exists"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port.parse().map_err(|_| bad("the port is not a number"))?;
        Ok(EngineAddr {
            host: host.to_string(),
            port,
        })
    }

    /// The gRPC URL the SDK connects to.
    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// Where model steps go, as a submission says it (the serializable part of
/// [`crate::run::Target`]: keys are read from each worker's environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TargetSpec {
    /// The script's providers.
    Script,
    /// The built-in simulator.
    Simulate {
        /// Latency of each simulated call, in milliseconds.
        latency_ms: u64,
        /// Run command agents for real.
        run_commands: bool,
    },
    /// One OpenAI-compatible endpoint for every model.
    Endpoint {
        /// Base URL up to `/v1`.
        base_url: String,
        /// Model identifier to request.
        model: Option<String>,
        /// Environment variable (on the workers) with the server's key.
        api_key_env: Option<String>,
        /// Ask for streamed answers.
        stream: bool,
    },
}

impl TargetSpec {
    /// The spec of a local target; `None` for a cassette replay, which engines do not run.
    pub fn of(target: &Target) -> Option<Self> {
        match target {
            Target::Script => Some(TargetSpec::Script),
            Target::Simulate {
                latency_ms,
                run_commands,
            } => Some(TargetSpec::Simulate {
                latency_ms: *latency_ms,
                run_commands: *run_commands,
            }),
            Target::Endpoint(e) => Some(TargetSpec::Endpoint {
                base_url: e.base_url.clone(),
                model: e.model.clone(),
                api_key_env: e.api_key_env.clone(),
                stream: e.stream,
            }),
            Target::Replay(_) => None,
        }
    }

    fn target(&self) -> Target {
        match self {
            TargetSpec::Script => Target::Script,
            TargetSpec::Simulate {
                latency_ms,
                run_commands,
            } => Target::Simulate {
                latency_ms: *latency_ms,
                run_commands: *run_commands,
            },
            TargetSpec::Endpoint {
                base_url,
                model,
                api_key_env,
                stream,
            } => Target::Endpoint(Endpoint {
                base_url: base_url.clone(),
                model: model.clone(),
                api_key_env: api_key_env.clone(),
                stream: *stream,
            }),
        }
    }
}

/// The script of a run, as every worker compiles it: source files by path relative to their
/// common directory, the entry, the workflow and the options that shape steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Every source file the entry loads (not the embedded `std/` ones): relative path, text.
    pub files: Vec<(String, String)>,
    /// The entry file's relative path.
    pub entry: String,
    /// The workflow to run (`None`: `main`, or the only one).
    pub workflow: Option<String>,
    /// Where model steps go.
    pub target: TargetSpec,
    /// `--max-tokens`: caps every model step's `max_tokens`.
    pub max_tokens: Option<u32>,
}

impl Script {
    /// Hex SHA-256 of the whole script (files, entry, workflow, target, cap).
    pub fn digest(&self) -> String {
        digest_of(self)
    }
}

/// A run submitted to Temporal: the input of [`OrchRun`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// What runs.
    pub script: Script,
    /// Inputs as given (`--input name=value`, files already read).
    pub inputs: IndexMap<String, String>,
    /// `--max-concurrency`: steps in flight in the whole run, across workers.
    pub max_concurrency: Option<usize>,
    /// `--keep-going`.
    pub keep_going: bool,
    /// An earlier execution of the same run that did not succeed: its succeeded steps are
    /// reused when their call is unchanged.
    pub prior: Option<Outcome>,
}

impl Submission {
    /// The workflow id of this run: `orch-WORKFLOW-` and 20 hex digits of the SHA-256 of the
    /// script and inputs (not of `prior` or the concurrency: resubmitting the same run finds
    /// the same id).
    pub fn workflow_id(&self, workflow: &str) -> String {
        let d = digest_of(&(&self.script, &self.inputs, self.keep_going));
        format!("orch-{workflow}-{}", &d[..20])
    }
}

fn digest_of<T: Serialize>(v: &T) -> String {
    use sha2::Digest as _;
    let text = serde_json::to_string(v).unwrap_or_default();
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The script of `program` for a submission: the text of every file it loaded, by path
/// relative to their deepest common directory.
///
/// # Errors
/// A file outside any common directory (none on Unix), or a path that is not UTF-8.
pub fn script_of(
    program: &crate::check::Program,
    workflow: Option<&str>,
    target: TargetSpec,
    max_tokens: Option<u32>,
) -> Result<Script, String> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut entry = None;
    for (i, (_, f)) in program.sources.files().enumerate() {
        let Some(path) = &f.path else { continue };
        if i == 0 {
            entry = Some(path.clone());
        }
        if !files.iter().any(|(p, _)| p == path) {
            files.push((path.clone(), f.text.to_string()));
        }
    }
    let entry = entry.ok_or("the script has no file on disk")?;
    let mut root = entry.parent().map(Path::to_path_buf).unwrap_or_default();
    for (p, _) in &files {
        while !p.starts_with(&root) {
            root = root
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| format!("{} shares no directory with the script", p.display()))?;
        }
    }
    let rel = |p: &Path| -> Result<String, String> {
        p.strip_prefix(&root)
            .ok()
            .and_then(|r| r.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "{} is not a UTF-8 path under {}",
                    p.display(),
                    root.display()
                )
            })
    };
    Ok(Script {
        entry: rel(&entry)?,
        files: files
            .iter()
            .map(|(p, t)| Ok((rel(p)?, t.clone())))
            .collect::<Result<_, String>>()?,
        workflow: workflow.map(str::to_string),
        target,
        max_tokens,
    })
}

/// A script compiled on a worker.
pub struct Compiled {
    /// The plan of its workflow.
    pub plan: Arc<Plan>,
    /// The program's models (prices, for budgets; identifiers, for clients).
    pub models: IndexMap<String, ModelDef>,
}

/// Compiled scripts by digest: compiling is a pure function of the texts, so a cache keeps
/// workflow code deterministic while sparing a compile per workflow task and per activity.
static COMPILED: Mutex<Option<HashMap<String, Arc<Compiled>>>> = Mutex::new(None);

/// Compiles a script as `orch run` would: its files written once under the cache directory
/// (`$XDG_CACHE_HOME/orch/engine-scripts/DIGEST/`, or the temporary directory), then loaded,
/// checked and planned there.
///
/// # Errors
/// A file that cannot be written, a path leaving the directory, or the script's first
/// error (it compiled where it was submitted, so this means another version of orch).
pub fn compile(script: &Script) -> Result<Arc<Compiled>, String> {
    let digest = script.digest();
    let mut cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get_or_insert_with(HashMap::new).get(&digest) {
        return Ok(c.clone());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("orch").join("engine-scripts").join(&digest);
    for (rel, text) in &script.files {
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("script file `{rel}` leaves the script's directory"));
        }
        let path = dir.join(rel_path);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == *text) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let opts = crate::resolve::ResolveOptions {
        include_paths: vec![dir.clone()],
        ..Default::default()
    };
    let crate::Compiled {
        program,
        diags,
        priced,
        ..
    } = crate::compile_file_priced(&dir.join(&script.entry), &opts);
    if let Some(d) = diags
        .iter()
        .find(|d| d.severity == crate::diag::Severity::Error)
    {
        return Err(format!("the script does not compile here: {}", d.message));
    }
    let entry = program
        .sources
        .files()
        .next()
        .map(|(id, _)| id)
        .ok_or("the script has no file")?;
    let wf = crate::plan::entry_workflow(
        &program,
        script.workflow.as_deref(),
        crate::diag::Span::new(entry, 0, 0),
    )
    .map_err(|d| d.message.clone())?;
    let plan = priced.plan(&program, wf);
    let compiled = Arc::new(Compiled {
        plan: Arc::new(plan),
        models: program.tables.models.clone(),
    });
    cache
        .get_or_insert_with(HashMap::new)
        .insert(digest, compiled.clone());
    Ok(compiled)
}

/// A step's progress as the workflow reports it ([`OrchRun::progress`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Progress {
    /// A step's activity was scheduled.
    Started {
        /// Step name.
        step: String,
        /// Model or `command`.
        runs_on: String,
    },
    /// A step ended (or was settled without running: skipped, cancelled).
    Finished(StepReport),
    /// A step's result was reused from an earlier execution.
    Reused(StepReport),
}

impl Progress {
    /// The local run's event for it, for the same progress lines.
    pub fn event(&self) -> Event {
        match self {
            Progress::Started { step, runs_on } => Event::Started {
                step: step.clone(),
                runs_on: runs_on.clone(),
                attempt: 1,
                turn: None,
            },
            Progress::Finished(r) => Event::Finished(r.clone()),
            Progress::Reused(r) => Event::Reused(r.clone()),
        }
    }
}

/// The input of a step's activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInput {
    /// The script (compiled once per worker, by digest).
    pub script: Script,
    /// The step and its rendered call.
    pub call: StepCall,
}

/// The workflow of a run (see the module docs). Its state is the progress so far, for the
/// `progress` query.
#[workflow]
#[derive(Default)]
pub struct OrchRun {
    progress: Vec<Progress>,
}

#[workflow_methods]
impl OrchRun {
    /// Interprets the submitted plan to its end.
    #[run(name = "orch-run")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, sub: Submission) -> WorkflowResult<Outcome> {
        let ctx = &*ctx;
        let fail = |e: String| temporalio_common::error::ApplicationFailure::new(e);
        let compiled = compile(&sub.script).map_err(fail)?;
        let priced = !matches!(sub.script.target, TargetSpec::Endpoint { .. });
        let mut interp = Interp::new(
            compiled.plan.clone(),
            &sub.inputs,
            &compiled.models,
            priced,
            sub.max_concurrency,
            sub.keep_going,
            &sub.prior.clone().unwrap_or_default(),
        )
        .map_err(|e| fail(e.to_string()))?;
        let start = ctx.workflow_time();
        let now = || {
            match (start, ctx.workflow_time()) {
                (Some(s), Some(n)) => n.duration_since(s).unwrap_or_default(),
                _ => Duration::ZERO,
            }
            .as_millis() as u64
        };
        type Running<'c> = std::pin::Pin<
            Box<dyn std::future::Future<Output = (usize, Result<StepReport, String>)> + 'c>,
        >;
        // Steps in flight: (node, when it started) and its future, at the same index.
        let mut meta: Vec<(usize, u64)> = Vec::new();
        let mut futs: Vec<Running<'_>> = Vec::new();
        loop {
            let d = interp.decide(now());
            let mut events = Vec::new();
            for id in d.cancel {
                // The step's result no longer counts (a `gather` has what it needs): its
                // future is dropped, which asks Temporal to cancel the activity.
                if let Some(i) = meta.iter().position(|(n, _)| *n == id) {
                    meta.remove(i);
                    drop(futs.remove(i));
                }
            }
            for r in d.settled {
                let reused = r.status == StepStatus::Succeeded;
                events.push(if reused {
                    Progress::Reused(r)
                } else {
                    Progress::Finished(r)
                });
            }
            for call in d.start {
                let node = &interp.plan().nodes[call.node];
                events.push(Progress::Started {
                    step: call.name.clone(),
                    runs_on: match &node.exec {
                        PlanExec::Model { model, .. } => model.clone(),
                        _ => "command".to_string(),
                    },
                });
                let id = call.node;
                let opts = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(
                    7 * 24 * 3600,
                ))
                .heartbeat_timeout(HEARTBEAT_TIMEOUT)
                .retry_policy(retry_policy())
                .summary(call.name.clone())
                .build();
                let input = StepInput {
                    script: sub.script.clone(),
                    call,
                };
                let fut = ctx.execute_activity(OrchSteps::step, input, opts);
                meta.push((id, now()));
                futs.push(Box::pin(async move {
                    (id, fut.await.map_err(|e| e.to_string()))
                }));
            }
            ctx.state_mut(|s| s.progress.extend(events));
            if futs.is_empty() {
                break;
            }
            // Polled in order: the first to complete (in history order) wins, the same way on
            // every replay. `select_all` hands back the rest with the winner swap-removed.
            let ((id, result), index, rest) =
                futures_util::future::select_all(std::mem::take(&mut futs)).await;
            futs = rest;
            let (_, started) = meta.swap_remove(index);
            let ended = now();
            let report = match result {
                Ok(mut r) => {
                    r.started_ms = Some(started);
                    r.finished_ms = Some(ended);
                    r
                }
                Err(e) => interp.engine_failure(
                    id,
                    format!("its activity failed on Temporal: {e}"),
                    ended,
                ),
            };
            ctx.state_mut(|s| s.progress.push(Progress::Finished(report.clone())));
            interp.finish(id, report);
        }
        Ok(interp.into_outcome())
    }

    /// The progress events from index `since` on.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView, since: u32) -> Vec<Progress> {
        self.progress
            .get(since as usize..)
            .map(<[Progress]>::to_vec)
            .unwrap_or_default()
    }
}

/// The retry policy of step activities: a new attempt (on any worker) only when one timed out
/// or its worker died, at most [`MAX_ACTIVITY_ATTEMPTS`] in all.
fn retry_policy() -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .maximum_interval(Duration::from_secs(10))
        .maximum_attempts(MAX_ACTIVITY_ATTEMPTS)
        .build()
}

/// The worker's options for the steps it runs.
#[derive(Debug, Clone, Default)]
pub struct WorkerSettings {
    /// At most this many steps at once on this worker (`--max-concurrency`).
    pub max_concurrency: Option<usize>,
    /// The directory agents' tools work in (`--workspace`).
    pub workspace: Option<PathBuf>,
    /// Runs (workflow executions) kept in memory between their tasks (Temporal's sticky
    /// cache; `None`: the SDK's default, 1000). With 0 every task of a run goes to any worker
    /// of the queue, which replays the run's history: for a server that does not move the
    /// tasks of a dead worker's sticky queue to the others (Temporal's test server), at the
    /// cost of a replay per task.
    pub max_cached_runs: Option<usize>,
}

/// The activities of a worker: one [`StepHost`] per script it has run steps of.
pub struct OrchSteps {
    settings: WorkerSettings,
    hosts: tokio::sync::Mutex<HashMap<String, Arc<StepHost>>>,
}

#[temporalio_sdk::activities::activities]
impl OrchSteps {
    /// Runs one step with the local run's step code, heartbeating while it runs. A step
    /// that fails (or cannot be prepared here: a missing key) comes back as a failed
    /// report, not an activity failure, so Temporal retries only a worker that died.
    #[activity(name = "orch-step")]
    pub async fn step(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StepInput,
    ) -> Result<StepReport, ActivityError> {
        let host = match self.host(&input.script).await {
            Ok(h) => h,
            Err(e) => return Ok(failed_report(&input.call, e)),
        };
        let quiet = |_: &Event| {};
        let run = host.execute(input.call, &quiet);
        tokio::pin!(run);
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                report = &mut run => return Ok(report),
                () = ctx.cancelled() => return Err(ActivityError::cancelled()),
                _ = beat.tick() => {
                    let _ = ctx.record_heartbeat(()).await;
                }
            }
        }
    }
}

impl OrchSteps {
    async fn host(&self, script: &Script) -> Result<Arc<StepHost>, String> {
        let digest = script.digest();
        let mut hosts = self.hosts.lock().await;
        if let Some(h) = hosts.get(&digest) {
            return Ok(h.clone());
        }
        let compiled = compile(script)?;
        let opts = RunOptions {
            target: script.target.target(),
            max_tokens_cap: script.max_tokens,
            max_concurrency: self.settings.max_concurrency,
            workspace: self.settings.workspace.clone(),
            ..Default::default()
        };
        let host = StepHost::new(compiled.plan.clone(), &compiled.models, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let host = Arc::new(host);
        hosts.insert(digest, host.clone());
        Ok(host)
    }
}

fn failed_report(call: &StepCall, why: String) -> StepReport {
    StepReport::blank(
        call.name.clone(),
        "",
        StepStatus::Failed(crate::redact::redact(&why).into_string()),
    )
}

/// Connects a client to `addr` in `namespace`.
///
/// # Errors
/// The server cannot be reached.
pub async fn connect(addr: &EngineAddr, namespace: &str) -> Result<Client, String> {
    let url = url::Url::parse(&addr.url()).map_err(|e| e.to_string())?;
    let conn = Connection::connect(
        ConnectionOptions::new(url)
            .identity(worker_identity())
            .build(),
    )
    .await
    .map_err(|e| format!("cannot reach Temporal at {}:{}: {e}", addr.host, addr.port))?;
    Client::new(conn, ClientOptions::new(namespace).build()).map_err(|e| e.to_string())
}

fn worker_identity() -> String {
    format!("orch-{}@{}", std::process::id(), hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Runs a worker until it is stopped (Ctrl-C): it polls `task_queue` for runs' workflow
/// tasks and steps' activities.
///
/// # Errors
/// The server cannot be reached, or the worker stops with an error.
pub async fn serve(
    addr: &EngineAddr,
    namespace: &str,
    task_queue: &str,
    settings: WorkerSettings,
) -> Result<(), String> {
    let runtime = Runtime::from_current_tokio(Default::default()).map_err(|e| e.to_string())?;
    let client = connect(addr, namespace).await?;
    let steps = OrchSteps {
        settings,
        hosts: tokio::sync::Mutex::new(HashMap::new()),
    };
    let cached = steps.settings.max_cached_runs;
    let options = WorkerOptions::new(task_queue)
        .register_activities(steps)
        .register_workflow::<OrchRun>()
        .map_err(|e| e.to_string())?
        .maybe_max_cached_workflows(cached)
        .build();
    let mut worker = Worker::new(&runtime, client, options).map_err(|e| e.to_string())?;
    worker.run().await.map_err(|e| e.to_string())
}

/// Submits `sub` (or attaches to the same run already going), follows its progress with
/// `on_progress` (polled every 200 ms) and returns its outcome and workflow id.
///
/// An earlier execution with the same id that ended without succeeding is resumed: its
/// outcome becomes the new execution's `prior`.
///
/// # Errors
/// The server cannot be reached, the workflow failed on Temporal (not a step: a failed step
/// is in the outcome).
pub async fn submit(
    addr: &EngineAddr,
    namespace: &str,
    task_queue: &str,
    mut sub: Submission,
    workflow: &str,
    on_progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<(Outcome, String), String> {
    let client = connect(addr, namespace).await?;
    let id = sub.workflow_id(workflow);
    let existing = client.get_workflow_handle::<OrchRun>(id.clone());
    let mut attach = false;
    if let Ok(desc) = existing.describe(WorkflowDescribeOptions::default()).await {
        match desc.status() {
            WorkflowExecutionStatus::Running => attach = true,
            WorkflowExecutionStatus::Completed => {
                if let Ok(prior) = existing
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    && !prior.succeeded
                {
                    sub.prior = Some(prior);
                }
            }
            _ => {}
        }
    }
    if !attach {
        let opts = WorkflowStartOptions::new(task_queue, id.clone()).build();
        match client.start_workflow(OrchRun::run, sub, opts).await {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => {}
            Err(e) => return Err(format!("cannot start the run on Temporal: {e}")),
        }
    }
    let handle = client.get_workflow_handle::<OrchRun>(id.clone());
    let result = handle.get_result(WorkflowGetResultOptions::default());
    tokio::pin!(result);
    let mut seen = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let poll = async |seen: &mut u32| {
        if let Ok(events) = handle
            .query(OrchRun::progress, *seen, WorkflowQueryOptions::default())
            .await
        {
            for e in &events {
                on_progress(e);
            }
            *seen += events.len() as u32;
        }
    };
    loop {
        tokio::select! {
            out = &mut result => {
                poll(&mut seen).await;
                return out
                    .map(|o| (o, id.clone()))
                    .map_err(|e| format!("the run failed on Temporal: {e}"));
            }
            _ = tick.tick() => poll(&mut seen).await,
        }
    }
}
