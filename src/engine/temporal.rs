//! Running plans on Temporal (<https://temporal.io>) with its Rust SDK (`temporalio-sdk`):
//! `orch worker --engine temporal://HOST:PORT` and `orch run FILE --engine
//! temporal://HOST:PORT`.
//!
//! - A run is one Temporal workflow, [`OrchRun`], whose input is a [`Submission`]: the
//!   script's source files (the entry and its includes, as text), the workflow, the inputs as
//!   given and where models run. Its code is the deterministic interpreter
//!   [`crate::run::remote::Interp`]: it compiles the submission (a pure function of its
//!   texts), starts each step as an activity when the interpreter says so, and returns an
//!   [`Outcome`]. Regions (`parallel for`, `repeat`, `if`, workflow calls) run inside it, as
//!   frames of the interpreter: their steps are the run's activities. Progress is a query
//!   ([`OrchRun::progress`]). A run whose history reaches [`HISTORY_BOUND`] events starts no
//!   new step and ends with that reason ([`crate::run::remote::Interp::halt`]).
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
    WorkflowExecutionStatus, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::workflows::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, Runtime, SyncWorkflowContext, Worker, WorkerOptions,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::check::ModelDef;
use crate::plan::{Plan, PlanExec};
use crate::run::remote::{Interp, Outcome, Question, StepCall, StepHost};
use crate::run::{Endpoint, Event, RunOptions, StepReport, StepStatus, Target};

/// How long a step's activity may go without a heartbeat before Temporal gives it to another
/// worker (its worker is taken for dead). Activities heartbeat every [`HEARTBEAT_EVERY`].
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// The history length (events) at which a run starts no new step: below Temporal's default
/// limit of 51,200 events, with room for the steps in flight to end (a few events each).
/// A step costs about 6 events, so one execution runs some 6,000 steps, regions included
/// (they run inline, docs/scale-out.md).
pub const HISTORY_BOUND: u32 = 40_000;

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

/// Where a Temporal frontend listens: `temporal://HOST:PORT`, and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineAddr {
    /// Host name or address.
    pub host: String,
    /// gRPC port (Temporal's default is 7233).
    pub port: u16,
    /// TLS and the API key (plain gRPC without a key by default).
    pub access: Access,
}

/// How a client connects: plain gRPC (a local or private server), or TLS (the system's
/// root certificates), with an API key for Temporal Cloud (which implies TLS, as in the
/// SDK). From `--tls` and `--api-key-env VAR`: the key itself is never given on the command
/// line, and it is registered with [`crate::redact`] so no output shows it.
#[derive(Clone, Default, PartialEq)]
pub struct Access {
    /// Connect with TLS.
    pub tls: bool,
    /// The API key (sent as a bearer token on every call).
    api_key: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tls", &self.tls)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl Access {
    /// The access `--tls` and `--api-key-env VAR` ask for, the key read with `env` (the
    /// process's environment, in the CLI).
    ///
    /// # Errors
    /// A variable name that is empty or not a name, or a variable that is not set or empty:
    /// the message names the variable, never its value.
    pub fn from_flags(
        tls: bool,
        api_key_env: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let Some(var) = api_key_env else {
            return Ok(Access { tls, api_key: None });
        };
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Not echoed: what was given may be the key itself.
            return Err(
                "--api-key-env takes the name of an environment variable (letters, digits and `_`, e.g. TEMPORAL_API_KEY) that holds the key, never the key itself".into(),
            );
        }
        let key = env(var)
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!("--api-key-env {var}: the environment variable {var} is not set or empty")
            })?;
        crate::redact::register(&key);
        Ok(Access {
            tls: true,
            api_key: Some(key),
        })
    }

    /// Whether an API key is set.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }
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
            access: Access::default(),
        })
    }

    /// The same address reached with `access`.
    pub fn with_access(self, access: Access) -> Self {
        EngineAddr { access, ..self }
    }

    /// Whether `other` is the same server (host and port; access aside).
    pub fn same_server(&self, other: &EngineAddr) -> bool {
        self.host == other.host && self.port == other.port
    }

    /// The gRPC URL the SDK connects to (`https` with TLS).
    fn url(&self) -> String {
        let scheme = if self.access.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
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
    /// `--yes`: every approval step is approved at once (recorded as approved by --yes)
    /// instead of waiting for `orch approve`.
    #[serde(default)]
    pub yes: bool,
    /// `--step-queue PROVIDER=QUEUE`: the task queue each provider's model steps are sent to
    /// (by the provider of the step's own model; a fallback to another provider's model is
    /// tried on the same worker). Other steps, and providers not named, use the run's task
    /// queue. With workers on each such queue started with `--queue-rate`, the provider's
    /// request rate is bounded across all workers, by the server (Temporal's "Rate-limit
    /// downstream APIs with separate Task Queues" guide). Not part of the run's id: it says
    /// where steps run, not what they compute.
    #[serde(default)]
    pub step_queues: IndexMap<String, String>,
}

impl Submission {
    /// The workflow id of this run: `orch-WORKFLOW-` and 20 hex digits of the SHA-256 of the
    /// script, inputs, `--keep-going` and `--yes` (not of `prior` or the concurrency:
    /// resubmitting the same run finds the same id).
    pub fn workflow_id(&self, workflow: &str) -> String {
        let d = digest_of(&(&self.script, &self.inputs, self.keep_going, self.yes));
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
    pub models: crate::common::NameMap<String, ModelDef>,
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
    /// An approval step waits for a person's answer ([`OrchRun::answer`], sent by `orch
    /// approve`).
    Asking(Question),
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
    /// The local run's event for it, for the same progress lines; `None` for a question
    /// waiting for its answer (a local run asks on its terminal instead).
    pub fn event(&self) -> Option<Event> {
        Some(match self {
            Progress::Asking(_) => return None,
            Progress::Started { step, runs_on } => Event::Started {
                step: step.clone(),
                runs_on: runs_on.clone(),
                attempt: 1,
                turn: None,
            },
            Progress::Finished(r) => Event::Finished(Box::new(r.clone())),
            Progress::Reused(r) => Event::Reused(Box::new(r.clone())),
        })
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

/// An answer to an approval step, sent by `orch approve` as the signal
/// [`OrchRun::answer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The approval step's name.
    pub step: String,
    /// Approved (`--yes`) or declined (`--no`).
    pub approved: bool,
    /// Who answered: `USER@HOST` of the `orch approve` that sent it (at most
    /// [`MAX_ANSWERED_BY`] characters are kept).
    pub by: String,
}

/// The most characters of [`Answer::by`] a report keeps.
pub const MAX_ANSWERED_BY: usize = 100;

impl Answer {
    /// How the answer was given, completing "approved ..." in the step's report
    /// ([`crate::run::Approval::via`]): `with orch approve by USER@HOST`.
    pub fn via(&self) -> String {
        let by = crate::redact::redact(self.by.trim()).shorten(MAX_ANSWERED_BY);
        format!("with orch approve by {}", by.as_str())
    }
}

/// A run's state as the query [`OrchRun::state`] reports it: its size and its approval
/// steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Steps in the run's plan.
    pub steps_total: usize,
    /// Every approval step of the run's plan, in plan order.
    pub steps: Vec<String>,
    /// The questions waiting for an answer now.
    pub waiting: Vec<Question>,
    /// Approval steps settled, each with how (`approved with orch approve by ...`,
    /// `declined ...`, `skipped: ...`).
    pub settled: Vec<(String, String)>,
    /// Steps an answer was received for (by signal), answered or not yet asked.
    pub answered: Vec<String>,
}

/// The workflow of a run (see the module docs). Its state is the progress so far (the
/// `progress` query), the run's approval steps and the answers received by signal.
#[workflow]
#[derive(Default)]
pub struct OrchRun {
    progress: Vec<Progress>,
    /// Steps in the plan (set when the run starts).
    steps_total: usize,
    /// Every approval step of the plan (set when the run starts).
    approval_steps: Vec<String>,
    /// Questions waiting for an answer.
    waiting: Vec<Question>,
    /// Answers received by signal, by step: the first answer to a step counts.
    answers: std::collections::BTreeMap<String, Answer>,
}

/// What ends in the workflow's loop: a step's activity, or an approval's wait (`None`: an
/// answer came, or the run was cancelled; `Some(ms)`: its `timeout`/`deadline` of `ms`
/// milliseconds passed first).
enum Ended {
    Step(u64, Result<Box<StepReport>, String>),
    Answer(u64, Option<u64>),
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
        .map_err(|e| fail(e.to_string()))?
        .approve_all(sub.yes);
        let approval_steps = compiled
            .plan
            .nodes
            .iter()
            .filter(|n| matches!(n.exec, PlanExec::Approval))
            .map(|n| n.name.clone())
            .collect();
        let steps_total = compiled.plan.nodes.len();
        ctx.state_mut(|s| {
            s.approval_steps = approval_steps;
            s.steps_total = steps_total;
        });
        let start = ctx.workflow_time();
        let now = || {
            match (start, ctx.workflow_time()) {
                (Some(s), Some(n)) => n.duration_since(s).unwrap_or_default(),
                _ => Duration::ZERO,
            }
            .as_millis() as u64
        };
        type Running<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Ended> + 'c>>;
        // Steps in flight and questions waiting: (id, when it started) and its future, at the
        // same index.
        let mut meta: Vec<(u64, u64)> = Vec::new();
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
                ctx.state_mut(|s| s.waiting.retain(|q| q.id != id));
            }
            events.extend(d.reused.into_iter().map(Progress::Reused));
            events.extend(d.settled.into_iter().map(Progress::Finished));
            events.extend(d.answered.into_iter().map(Progress::Finished));
            for q in d.ask {
                let id = q.id;
                let step = q.step.clone();
                let answered = ctx.wait_condition(move |s: &OrchRun| s.answers.contains_key(&step));
                let wait_ms = q.wait_ms;
                events.push(Progress::Asking(q.clone()));
                ctx.state_mut(|s| s.waiting.push(q));
                meta.push((id, now()));
                futs.push(Box::pin(async move {
                    let Some(ms) = wait_ms else {
                        let _ = answered.await;
                        return Ended::Answer(id, None);
                    };
                    let timer = ctx.timer(Duration::from_millis(ms));
                    futures_util::pin_mut!(answered);
                    futures_util::pin_mut!(timer);
                    match futures_util::future::select(answered, timer).await {
                        futures_util::future::Either::Left((_, timer)) => {
                            timer.cancel();
                            Ended::Answer(id, None)
                        }
                        futures_util::future::Either::Right(_) => Ended::Answer(id, Some(ms)),
                    }
                }));
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
                let id = call.id;
                let queue = match &node.exec {
                    PlanExec::Model { provider, .. } => sub.step_queues.get(provider).cloned(),
                    _ => None,
                };
                let opts = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(
                    7 * 24 * 3600,
                ))
                .maybe_task_queue(queue)
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
                    Ended::Step(id, fut.await.map(Box::new).map_err(|e| e.to_string()))
                }));
            }
            ctx.state_mut(|s| s.progress.extend(events));
            if futs.is_empty() {
                break;
            }
            // Polled in order: the first to complete (in history order) wins, the same way on
            // every replay. `select_all` hands back the rest with the winner swap-removed.
            let (done, index, rest) =
                futures_util::future::select_all(std::mem::take(&mut futs)).await;
            futs = rest;
            let (_, started) = meta.swap_remove(index);
            let ended = now();
            let (id, result) = match done {
                Ended::Step(id, result) => (id, result),
                Ended::Answer(id, timed_out) => {
                    let answer = ctx.state_mut(|s| {
                        let step = s
                            .waiting
                            .iter()
                            .find(|q| q.id == id)
                            .map(|q| q.step.clone());
                        s.waiting.retain(|q| q.id != id);
                        step.and_then(|step| s.answers.get(&step).cloned())
                    });
                    let report = match (timed_out, answer) {
                        (Some(ms), _) => {
                            let why =
                                format!("no answer within {}", crate::common::format_duration(ms));
                            interp.unanswered(id, why, ended)
                        }
                        (None, Some(a)) => {
                            let approval = crate::run::Approval {
                                approved: a.approved,
                                via: a.via(),
                            };
                            interp.answer(id, approval, ended)
                        }
                        (None, None) => interp.unanswered(
                            id,
                            "the run was cancelled while the question waited".into(),
                            ended,
                        ),
                    };
                    if let Some(r) = report {
                        ctx.state_mut(|s| s.progress.push(Progress::Finished(r)));
                    }
                    continue;
                }
            };
            let report = match result {
                Ok(r) => {
                    let mut r = *r;
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
            // A clear stop before Temporal's own limit would terminate the run.
            let events = ctx.history_length();
            if events >= HISTORY_BOUND {
                interp.halt(format!(
                    "the run's history on Temporal reached {events} events (orch stops new steps at {HISTORY_BOUND}; Temporal's limit is 51,200): submit it again to resume it with what succeeded, or run it locally (docs/scale-out.md)"
                ));
            }
        }
        Ok(interp.into_outcome())
    }

    /// Records the answer to an approval step (sent by `orch approve`). The first answer to
    /// a step counts; one sent before the step asks is taken when it does.
    #[signal(name = "answer")]
    pub fn answer(&mut self, _ctx: &mut SyncWorkflowContext<Self>, answer: Answer) {
        self.answers.entry(answer.step.clone()).or_insert(answer);
    }

    /// The run's size and its approval steps: which wait for an answer, which are settled
    /// and how.
    #[query]
    pub fn state(&self, _ctx: &WorkflowContextView, _unit: ()) -> RunState {
        let settled = self
            .progress
            .iter()
            .filter_map(|p| match p {
                Progress::Finished(r) | Progress::Reused(r)
                    if self.approval_steps.contains(&r.name) =>
                {
                    let how = match (&r.approval, &r.status) {
                        (Some(a), _) => a.describe(),
                        (None, StepStatus::Failed(e)) => format!("failed: {e}"),
                        (None, StepStatus::Skipped(e)) => format!("skipped: {e}"),
                        (None, s) => format!("{s:?}").to_lowercase(),
                    };
                    Some((r.name.clone(), how))
                }
                _ => None,
            })
            .collect();
        RunState {
            steps_total: self.steps_total,
            steps: self.approval_steps.clone(),
            waiting: self.waiting.clone(),
            settled,
            answered: self.answers.keys().cloned().collect(),
        }
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
    /// `--queue-rate`: at most this many steps per second taken from the worker's task
    /// queue by all its workers together, enforced by the server (the SDK's
    /// `max_task_queue_activities_per_second`; the value of the worker that polled last
    /// holds). `None`: unbounded.
    pub queue_rate: Option<f64>,
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
            // This worker runs the steps sent to its queue: a key it lacks fails only the
            // steps that need it (`--step-queue` sends those to workers that have it).
            keys_per_step: true,
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
    let opts = ConnectionOptions::new(url)
        .identity(worker_identity())
        .maybe_tls_options(addr.access.tls.then(temporalio_client::TlsOptions::default))
        .maybe_api_key(addr.access.api_key.clone())
        .build();
    let conn = Connection::connect(opts).await.map_err(|e| {
        let e = crate::redact::redact(e.to_string());
        format!(
            "cannot reach Temporal at {}:{}: {}",
            addr.host,
            addr.port,
            e.as_str()
        )
    })?;
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
    let queue_rate = steps.settings.queue_rate;
    let options = WorkerOptions::new(task_queue)
        .register_activities(steps)
        .register_workflow::<OrchRun>()
        .map_err(|e| e.to_string())?
        .maybe_max_cached_workflows(cached)
        .maybe_max_task_queue_activities_per_second(queue_rate)
        .build();
    let mut worker = Worker::new(&runtime, client, options).map_err(|e| e.to_string())?;
    worker.run().await.map_err(|e| e.to_string())
}

/// Submits `sub` (or attaches to the same run already going) and returns its workflow id
/// without waiting for it.
///
/// An earlier execution with the same id that ended without succeeding is resumed: its
/// outcome becomes the new execution's `prior`.
///
/// # Errors
/// The server refused the run.
pub async fn start(
    client: &Client,
    task_queue: &str,
    mut sub: Submission,
    workflow: &str,
) -> Result<String, String> {
    let id = sub.workflow_id(workflow);
    let existing = client.get_workflow_handle::<OrchRun>(id.clone());
    if let Ok(desc) = existing.describe(WorkflowDescribeOptions::default()).await {
        match desc.status() {
            WorkflowExecutionStatus::Running => return Ok(id),
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
    let opts = WorkflowStartOptions::new(task_queue, id.clone()).build();
    match client.start_workflow(OrchRun::run, sub, opts).await {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(id),
        Err(e) => Err(format!("cannot start the run on Temporal: {e}")),
    }
}

/// Follows run `id` to its end, giving its progress to `on_progress` (polled every 200 ms),
/// and returns its outcome.
///
/// # Errors
/// The workflow failed on Temporal (not a step: a failed step is in the outcome).
pub async fn follow(
    client: &Client,
    id: &str,
    on_progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<Outcome, String> {
    let handle = client.get_workflow_handle::<OrchRun>(id.to_string());
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
                return out.map_err(|e| format!("the run failed on Temporal: {e}"));
            }
            _ = tick.tick() => poll(&mut seen).await,
        }
    }
}

/// Submits `sub` ([`start`]), follows it ([`follow`]) and returns its outcome and workflow
/// id.
///
/// # Errors
/// The server cannot be reached or refused the run, or the workflow failed on Temporal.
pub async fn submit(
    addr: &EngineAddr,
    namespace: &str,
    task_queue: &str,
    sub: Submission,
    workflow: &str,
    on_progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<(Outcome, String), String> {
    let client = connect(addr, namespace).await?;
    let id = start(&client, task_queue, sub, workflow).await?;
    let outcome = follow(&client, &id, on_progress).await?;
    Ok((outcome, id))
}

/// Why an answer could not be given ([`approve`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ApproveError {
    /// The run or the step named does not exist, or the engine cannot be reached: a usage
    /// error (the message names the fix).
    Usage(String),
    /// The run or the step is past answering: the run ended, or the step is settled or
    /// already has an answer.
    TooLate(String),
}

/// What [`approve`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Approved {
    /// The step was waiting: it takes the answer now.
    Answered,
    /// The step has not asked yet: it takes the answer when it does.
    Early,
}

/// How many times a query is tried while a run's first workflow task has not completed
/// (a worker has not picked the run up yet), [`QUERY_RETRY`] apart.
const QUERY_TRIES: u32 = 25;
/// The pause between tries of a query.
const QUERY_RETRY: Duration = Duration::from_millis(200);

/// Sends `answer` to approval step `answer.step` of run `id` as the signal
/// [`OrchRun::answer`], after checking with the query [`OrchRun::state`] that the run is
/// going and that the step is one of its approval steps with no answer yet.
///
/// # Errors
/// [`ApproveError`].
pub async fn approve(client: &Client, id: &str, answer: Answer) -> Result<Approved, ApproveError> {
    let handle = client.get_workflow_handle::<OrchRun>(id.to_string());
    let desc = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .map_err(|e| {
            ApproveError::Usage(format!(
                "no run `{id}` on Temporal ({e}); `orch runs --engine URL` lists the runs this machine submitted"
            ))
        })?;
    if desc.status() != WorkflowExecutionStatus::Running {
        return Err(ApproveError::TooLate(format!(
            "run `{id}` has ended ({}): its approvals can no longer be answered",
            status_word(desc.status(), None)
        )));
    }
    let state = query_state(client, id).await.map_err(ApproveError::Usage)?;
    let step = &answer.step;
    if !state.steps.contains(step) {
        let has = if state.steps.is_empty() {
            "it has no approval steps".to_string()
        } else {
            let names: Vec<String> = state.steps.iter().map(|s| format!("`{s}`")).collect();
            format!("its approval steps are {}", names.join(", "))
        };
        return Err(ApproveError::Usage(format!(
            "`{step}` is not an approval step of run `{id}`; {has}"
        )));
    }
    if let Some((_, how)) = state.settled.iter().find(|(s, _)| s == step) {
        return Err(ApproveError::TooLate(format!(
            "step `{step}` of run `{id}` is already settled: {how}"
        )));
    }
    if state.answered.contains(step) {
        return Err(ApproveError::TooLate(format!(
            "step `{step}` of run `{id}` already has an answer (the first answer counts)"
        )));
    }
    let waiting = state.waiting.iter().any(|q| &q.step == step);
    handle
        .signal(OrchRun::answer, answer, WorkflowSignalOptions::default())
        .await
        .map_err(|e| ApproveError::Usage(format!("cannot send the answer to run `{id}`: {e}")))?;
    Ok(if waiting {
        Approved::Answered
    } else {
        Approved::Early
    })
}

/// Asks run `id` for its [`RunState`], trying again while no worker has started it yet.
async fn query_state(client: &Client, id: &str) -> Result<RunState, String> {
    let handle = client.get_workflow_handle::<OrchRun>(id.to_string());
    let mut last = String::new();
    for _ in 0..QUERY_TRIES {
        match handle
            .query(OrchRun::state, (), WorkflowQueryOptions::default())
            .await
        {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(QUERY_RETRY).await;
    }
    Err(format!(
        "run `{id}` does not answer queries ({last}); is an `orch worker` polling its task queue?"
    ))
}

/// A run on Temporal as `orch runs` and `orch runs show` show it.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The workflow id.
    pub id: String,
    /// `running`, `waiting` (for an approval), `succeeded`, `failed` (a step failed), or
    /// what Temporal says of a run that did not complete (`failed on Temporal`,
    /// `cancelled`, `terminated`, `timed out`).
    pub status: String,
    /// The workflow's name, from the id (`orch-WORKFLOW-DIGEST`).
    pub workflow: String,
    /// When it started (Temporal's clock).
    pub started: Option<std::time::SystemTime>,
    /// When it ended (Temporal's clock), if it did.
    pub closed: Option<std::time::SystemTime>,
    /// The outcome of a run that completed.
    pub outcome: Option<Outcome>,
    /// A running run's progress so far (every event) and state (`None` when the run did not
    /// answer the queries: no worker).
    pub live: Option<(Vec<Progress>, RunState)>,
}

impl RunView {
    /// Step executions that succeeded, and steps in all (for a running run whose state is
    /// unknown, those settled so far).
    pub fn counts(&self) -> (usize, usize) {
        if let Some(o) = &self.outcome {
            let ok = o
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Succeeded)
                .count();
            return (ok, o.steps.len());
        }
        let Some((events, state)) = &self.live else {
            return (0, 0);
        };
        let ok = finished(events)
            .filter(|r| r.status == StepStatus::Succeeded)
            .count();
        (ok, state.steps_total)
    }

    /// Milliseconds from start to end of a run that ended (Temporal's clock).
    pub fn wall_ms(&self) -> Option<u64> {
        let d = self.closed?.duration_since(self.started?).ok()?;
        Some(d.as_millis() as u64)
    }

    /// USD spent by the steps settled so far.
    pub fn cost_usd(&self) -> f64 {
        match (&self.outcome, &self.live) {
            (Some(o), _) => o.steps.iter().fold(0.0, |t, s| t + s.cost_usd),
            (None, Some((events, _))) => finished(events).fold(0.0, |t, r| t + r.cost_usd),
            (None, None) => 0.0,
        }
    }
}

/// The reports of the steps settled in `events`, the last one of each step.
fn finished(events: &[Progress]) -> impl Iterator<Item = &StepReport> {
    let mut last: IndexMap<&str, &StepReport> = IndexMap::new();
    for e in events {
        if let Progress::Finished(r) | Progress::Reused(r) = e {
            last.insert(r.name.as_str(), r);
        }
    }
    last.into_values()
}

/// The word for a run's status: Temporal's, or for a completed run its outcome's.
fn status_word(status: WorkflowExecutionStatus, outcome: Option<&Outcome>) -> String {
    match status {
        WorkflowExecutionStatus::Running => "running",
        WorkflowExecutionStatus::Completed => match outcome {
            Some(o) if o.succeeded => "succeeded",
            Some(_) => "failed",
            None => "completed",
        },
        WorkflowExecutionStatus::Failed => "failed on Temporal",
        WorkflowExecutionStatus::Canceled => "cancelled",
        WorkflowExecutionStatus::Terminated => "terminated",
        WorkflowExecutionStatus::ContinuedAsNew => "continued as new",
        WorkflowExecutionStatus::TimedOut => "timed out",
        WorkflowExecutionStatus::Paused => "paused",
        _ => "unknown",
    }
    .to_string()
}

/// The workflow's name in a run id `orch-WORKFLOW-DIGEST` ([`Submission::workflow_id`]).
pub fn workflow_of_id(id: &str) -> Option<&str> {
    id.strip_prefix("orch-")?.rsplit_once('-').map(|(w, _)| w)
}

/// Describes run `id`: its status, and its outcome (completed) or its progress and state
/// (running; `None` when no worker answers its queries).
///
/// # Errors
/// No such run (the message says so), or the server cannot be reached.
pub async fn describe(client: &Client, id: &str) -> Result<RunView, String> {
    let handle = client.get_workflow_handle::<OrchRun>(id.to_string());
    let desc = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .map_err(|e| format!("no run `{id}` on Temporal ({e})"))?;
    let status = desc.status();
    let outcome = if status == WorkflowExecutionStatus::Completed {
        handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .ok()
    } else {
        None
    };
    let live = if status == WorkflowExecutionStatus::Running {
        let events = handle
            .query(OrchRun::progress, 0, WorkflowQueryOptions::default())
            .await
            .ok();
        match events {
            Some(events) => query_state(client, id).await.ok().map(|s| (events, s)),
            None => None,
        }
    } else {
        None
    };
    let mut word = status_word(status, outcome.as_ref());
    if live.as_ref().is_some_and(|(_, s)| !s.waiting.is_empty()) {
        word = "waiting".into();
    }
    Ok(RunView {
        id: id.to_string(),
        status: word,
        workflow: workflow_of_id(id).unwrap_or("?").to_string(),
        started: desc.start_time(),
        closed: desc.close_time(),
        outcome,
        live,
    })
}

/// The ids of the runs (workflows of type `orch-run`) in the client's namespace, newest
/// first, at most `limit`, from Temporal's visibility API (`ListWorkflowExecutions`).
///
/// # Errors
/// The server does not offer the list (Temporal's test server does not), or cannot be
/// reached.
pub async fn list(client: &Client, limit: usize) -> Result<Vec<String>, String> {
    use futures_util::StreamExt as _;
    let opts = temporalio_client::WorkflowListOptions::builder()
        .limit(limit)
        .build();
    let mut stream = client.list_workflows("WorkflowType = 'orch-run'", opts);
    let mut ids = Vec::new();
    while let Some(item) = stream.next().await {
        let w = item.map_err(|e| e.to_string())?;
        if !ids.iter().any(|i| i == w.id()) {
            ids.push(w.id().to_string());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_flags_read_the_key_from_the_named_variable_and_never_show_it() {
        let env = |v: &str| {
            (v == "TEMPORAL_API_KEY").then(|| "  sk-test-0123456789abcdef \n".to_string())
        };
        assert_eq!(
            Access::from_flags(false, None, env).unwrap(),
            Access::default()
        );
        let tls = Access::from_flags(true, None, env).unwrap();
        assert!(tls.tls && !tls.has_api_key());
        let keyed = Access::from_flags(false, Some("TEMPORAL_API_KEY"), env).unwrap();
        assert!(keyed.tls, "an API key implies TLS");
        assert!(keyed.has_api_key());
        let shown = format!("{keyed:?}");
        assert!(!shown.contains("sk-test"), "{shown}");
        let addr = EngineAddr::parse("temporal://ns.tmprl.cloud:7233")
            .unwrap()
            .with_access(keyed);
        assert_eq!(addr.url(), "https://ns.tmprl.cloud:7233");
        assert!(!format!("{addr:?}").contains("sk-test"));
        assert!(addr.same_server(&EngineAddr::parse("temporal://ns.tmprl.cloud:7233").unwrap()));
        assert_eq!(
            EngineAddr::parse("temporal://127.0.0.1:7233")
                .unwrap()
                .url(),
            "http://127.0.0.1:7233"
        );

        let e = Access::from_flags(false, Some("MISSING"), env).unwrap_err();
        assert!(e.contains("MISSING is not set"), "{e}");
        let e = Access::from_flags(false, Some("sk-test-0123456789abcdef"), env).unwrap_err();
        assert!(
            e.contains("never the key itself") && !e.contains("sk-test"),
            "{e}"
        );
        let e = Access::from_flags(false, Some(""), env).unwrap_err();
        assert!(e.contains("the name of an environment variable"), "{e}");
    }

    #[test]
    fn a_run_id_names_its_workflow() {
        assert_eq!(
            workflow_of_id("orch-main-0123456789abcdef0123"),
            Some("main")
        );
        assert_eq!(workflow_of_id("orch-my-flow-0123"), Some("my-flow"));
        assert_eq!(workflow_of_id("other"), None);
    }
}
