//! Run: a [`Plan`] → outputs and a [`RunReport`], interpreted on tokio.
//!
//! The scheduler keeps, for every step, the number of dependencies still running; a step
//! starts when that reaches zero. A started step first takes a permit from the global limit
//! (`--max-concurrency`), then from every enclosing `parallel <max N>` block (outermost
//! first, so permits are always taken in one order and cannot deadlock), then from its
//! provider's `max_concurrency`, and waits for the provider's rate limits ([`limits`]). Each
//! attempt is bounded by the step's `timeout`; a failed attempt that may succeed when repeated
//! is retried `retry` times with exponential backoff, then run on the `fallback` model if there
//! is one. The step's `deadline` bounds all of it together.
//!
//! Failure policy: a failure stops new work; steps in flight finish and are recorded. A
//! `gather <any|first N|min N>` tolerates failed branches of the block it joins. With
//! `keep_going`, everything that does not depend on a failure still runs.
//!
//! Budgets ([`budget`]) are checked before each model step starts; a [`cancel::Cancel`] stops
//! the run from outside (Ctrl-C); a [`journal::Journal`] records every step as it ends and,
//! on a resumed run, supplies the results of steps whose cache key ([`cache_key`]) is
//! unchanged. Those three are hooks in the scheduler (`scheduler`): where a step is about
//! to start (`start_ready`), where it ends (the journal's `start` and `step` records are
//! written by the step's own task, `spawn`, before the scheduler's `finish` and `settle` see
//! it), and at the start and end of
//! the run.
//!
//! The parts: `prepare` (inputs, secrets, clients, before the first step), `scheduler`
//! (which step may start), `step` (one step's attempts), `control` (regions), `regions`
//! (their rules as pure functions, shared by `control` and [`remote`]), `wiring` (how steps
//! wait on each other, shared likewise), `report` (events and reports), and [`html`] (the
//! HTML page of a run, from its journal).

mod agent;
pub mod approval;
mod attempt;
mod batch;
mod budget;
pub mod cache_key;
pub mod cancel;
pub mod cassette;
pub mod command;
mod control;
pub mod html;
pub mod journal;
pub mod limits;
mod prepare;
pub mod provider;
mod regions;
mod relay;
pub mod remote;
pub mod render;
mod report;
mod scheduler;
mod step;
pub mod step_cache;
pub mod structured;
pub mod tools;
mod wiring;

use std::sync::Arc;

use indexmap::IndexMap;

use crate::plan::Plan;
use scheduler::{Frame, Scheduler};

pub use agent::{DEFAULT_TOOL_TIMEOUT_MS, MAX_DELEGATION_DEPTH, call_brief};
pub use approval::{Approval, ApprovalRequest, Approver};
pub use report::{Event, LoopReport, RunReport, Sending, StepReport, StepStatus, ToolCallReport};

/// Sending every model step to one OpenAI-compatible server instead of the script's providers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL up to `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model identifier to request; `None` keeps each model's own identifier.
    pub model: Option<String>,
    /// Environment variable with a key for the server, if it needs one.
    pub api_key_env: Option<String>,
    /// Ask for streamed answers (`true` unless the server lacks streaming).
    pub stream: bool,
}

impl Endpoint {
    /// The host of the base URL (`http://user:pw@127.0.0.1:8080/v1` → `127.0.0.1`), redacted:
    /// the provider's name in attempt records, reports and traces; the URL's credentials never.
    pub fn host(&self) -> String {
        let url = self.base_url.as_str();
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        };
        crate::redact::redact(host).into_string()
    }
}

/// Where model steps go.
#[derive(Debug, Clone, Default)]
pub enum Target {
    /// The providers the script declares.
    #[default]
    Script,
    /// The built-in simulator for every model (a dry run); command agents are simulated too
    /// unless `run_commands` is set.
    Simulate {
        /// Latency of each simulated call, in milliseconds (a `sim` provider's own `latency`
        /// wins).
        latency_ms: u64,
        /// Run command agents for real.
        run_commands: bool,
    },
    /// One OpenAI-compatible endpoint for every model. Its tokens are counted but priced at
    /// zero: the script's prices are those of its own providers.
    Endpoint(Endpoint),
    /// No provider: every model request, and every tool call of an agent loop, is answered
    /// from a cassette recorded by an earlier run (`--replay`, [`cassette`]). Models are asked
    /// by the identifiers, and priced as, the cassette recorded. Command steps run.
    Replay(Arc<cassette::Cassette>),
}

impl Target {
    /// Where models run, as journals and reports say it: `script providers`, `simulator`, or
    /// `endpoint URL`.
    pub fn describe(&self) -> String {
        match self {
            Target::Script => "script providers".to_string(),
            Target::Simulate { .. } => "simulator".to_string(),
            Target::Endpoint(e) => format!("endpoint {}", e.base_url),
            Target::Replay(c) => format!("cassette {}", c.path().display()),
        }
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Inputs by parameter name, as given on the command line (parsed by the parameter's type).
    pub inputs: IndexMap<String, String>,
    /// Where model steps go.
    pub target: Target,
    /// Caps every model step's `max_tokens`.
    pub max_tokens_cap: Option<u32>,
    /// At most this many steps in flight in the whole run.
    pub max_concurrency: Option<usize>,
    /// Environment lookup for API keys (tests inject their own; the CLI reads the process
    /// environment). Read through [`RunOptions::read_key`].
    pub env: Option<EnvLookup>,
    /// After a failure (or a step the budget refuses), still run every step that does not
    /// depend on it, instead of stopping new work.
    pub keep_going: bool,
    /// Stops the run from outside: steps in flight are dropped and recorded as interrupted,
    /// nothing new starts.
    pub cancel: Option<cancel::Cancel>,
    /// Where the run is recorded, and (when it resumes an earlier run) whose results it reuses.
    pub journal: Option<journal::Journal>,
    /// Who answers `approve(...)` steps (by default nobody: a run with approval steps is
    /// refused before it starts, [`RunError::NoApprover`]).
    pub approver: Approver,
    /// The directory agents' tools work in (`--workspace`): file tools never reach outside
    /// it. `None`: the current directory.
    pub workspace: Option<std::path::PathBuf>,
    /// Keep the texts of model calls (system text, prompt, answer) out of the journal and the
    /// [`Event::Attempt`] events, keeping only their digests (`--no-store-prompts`).
    pub no_store_prompts: bool,
    /// Write every model exchange and agent tool call of the run to this cassette
    /// (`--record`, [`cassette`]), whatever the target.
    pub record: Option<Arc<cassette::Cassette>>,
    /// Reuse the results of steps without side effects from any earlier run that used this
    /// cache, and cache those that succeed now (`--cache DIR`, [`step_cache`]).
    pub cache: Option<Arc<step_cache::StepCache>>,
    /// A model whose provider's key is not set fails only the steps that call it, with
    /// [`RunError::MissingKey`]'s words, instead of refusing the run before it starts: for
    /// an engine's worker, which runs only the steps sent to its task queue (another
    /// queue's workers may hold that key).
    pub keys_per_step: bool,
    /// Send an [`Event::Sending`] before each model call, with the texts it sends (`orch run
    /// -v` prints them). Off by default: each event copies the request's redacted texts, which
    /// nothing else reads.
    pub sending_events: bool,
}

impl RunOptions {
    /// The value of the environment variable `name` that holds an API key (from [`Self::env`],
    /// else the process environment, where an empty value counts as unset), registered as a
    /// secret ([`crate::redact::register`]) so that it is redacted wherever it turns up.
    pub fn read_key(&self, name: &str) -> Option<String> {
        let value = match &self.env {
            Some(f) => (f.0)(name),
            None => std::env::var(name).ok().filter(|v| !v.is_empty()),
        }?;
        crate::redact::register(&value);
        Some(value)
    }
}

/// A lookup of environment variables by name (for API keys).
#[derive(Clone)]
pub struct EnvLookup(pub Arc<EnvFn>);

/// The function behind an [`EnvLookup`]: a variable's value, or `None` when unset.
pub type EnvFn = dyn Fn(&str) -> Option<String> + Send + Sync;

impl std::fmt::Debug for EnvLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvLookup(..)")
    }
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// A provider needs an API key that the environment does not have.
    #[error(
        "{var} is not set: model `{model}` uses provider `{provider}`, which needs it.\n  Set it (`export {var}=...`), or run without a key: `--simulate` for the built-in simulator, or `--endpoint http://127.0.0.1:8080/v1` for a local OpenAI-compatible server"
    )]
    MissingKey {
        /// The environment variable.
        var: String,
        /// The provider's name.
        provider: String,
        /// A model that needs it.
        model: String,
    },
    /// An input is missing, unknown or not of its parameter's type.
    #[error("{0}")]
    Input(String),
    /// The plan has approval steps and nobody to answer them (no terminal, no `--yes`): each
    /// step's name and question as written in the script.
    #[error("{}", approval::refused_message(.0))]
    NoApprover(Vec<(String, String)>),
    /// The journal cannot be created or written.
    #[error("{0}")]
    Journal(#[from] journal::JournalError),
    /// An MCP server the plan uses does not start, or lacks a granted tool (checked before
    /// the first step).
    #[error("{0}")]
    Mcp(String),
}

/// The run's MCP servers, when the plan uses any: a pool whose granted tools are checked now
/// (each server they name is started).
///
/// # Errors
/// [`RunError::Mcp`]: a server that does not start, a granted tool it does not list.
async fn start_mcp(
    plan: &Plan,
    workspace: &std::path::Path,
) -> Result<Option<Arc<tools::mcp::McpPool>>, RunError> {
    if plan.mcp.is_empty() {
        return Ok(None);
    }
    let pool = tools::mcp::McpPool::new(&plan.mcp, workspace);
    if let Err(e) = pool.check_grants(&tools::mcp::plan_grants(plan)).await {
        pool.shutdown().await;
        return Err(RunError::Mcp(e.to_string()));
    }
    Ok(Some(Arc::new(pool)))
}

/// Stops the run's MCP servers once nothing else holds the pool: steps dropped at the end of
/// the run (a gather's cancelled branches, an interrupt) release it as their tasks unwind,
/// so this waits up to a second for them; a pool still held then is left to its processes'
/// own end when it is dropped.
async fn stop_mcp(mut pool: Arc<tools::mcp::McpPool>) {
    for _ in 0..100 {
        match Arc::try_unwrap(pool) {
            Ok(p) => return p.shutdown().await,
            Err(held) => pool = held,
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs the workflow's top level: its scheduler in a task of its own, on the runtime's
/// workers, where the steps' tasks end (the thread awaiting [`run`], often the one of
/// `block_on`, would add a wake-up of another thread between a step's end and the start of
/// the next one), with its events handed to `on_event` here, in order. Dropping the future
/// stops the run's task (and with it every step in flight), as before; a panic in it is
/// resumed here.
async fn run_top(
    plan: Arc<Plan>,
    inputs: Arc<IndexMap<String, render::InputValue>>,
    shared: Arc<prepare::Shared>,
    opts: RunOptions,
    budgets: Arc<std::sync::Mutex<budget::Budgets>>,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> RunReport {
    /// Aborts the top level's task when [`run_top`] is dropped before it ends.
    struct AbortOnDrop(tokio::task::JoinHandle<RunReport>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let workflow = plan.workflow.clone();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let mut task = AbortOnDrop(tokio::spawn(async move {
        // The steps' tasks send their events here themselves; the scheduler's own (a step's
        // end) are copied in, as it keeps their reports.
        let direct = events.clone();
        let sink = move |e: &Event| {
            let _ = events.send(e.clone());
        };
        Scheduler::new(&plan, &inputs, shared, &opts, Frame::top(&plan), budgets)
            .run_top(direct, &sink)
            .await
    }));
    // The sender goes with the task's end: every event is handed on before the report.
    while let Some(e) = received.recv().await {
        on_event(&e);
    }
    match (&mut task.0).await {
        Ok(report) => report,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled without this future being dropped: the runtime is shutting down.
        Err(e) => RunReport {
            workflow: workflow.clone(),
            succeeded: false,
            stopped: Some(format!("the run's task ended early: {e}")),
            output: None,
            usage: provider::Usage::default(),
            cost_usd: 0.0,
            wall_ms: 0,
            steps: Vec::new(),
            run_id: None,
            reused: Vec::new(),
            interrupted: true,
        },
    }
}

/// Runs a plan to the end (or to the first failure) and reports what happened. `on_event` is
/// called for progress as it happens. The run's tasks share one copy of the plan, made here;
/// a caller that holds the plan in an [`Arc`] saves that copy with [`run_shared`].
///
/// # Errors
/// [`RunError`] when the run cannot start: a missing or ill-typed input, a missing API key,
/// or approval steps with nobody to answer them.
/// Failures of steps are not errors: they are in the report.
pub async fn run(
    plan: &Plan,
    models: &crate::common::NameMap<String, crate::check::ModelDef>,
    opts: &RunOptions,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> Result<RunReport, RunError> {
    run_shared(Arc::new(plan.clone()), models, opts, on_event).await
}

/// [`run`] on a plan the caller already shares: the run's tasks read it in place, with no
/// copy (for a 10,000-step plan, a copy is about as large as everything the run itself
/// allocates).
///
/// # Errors
/// As [`run`].
pub async fn run_shared(
    plan: Arc<Plan>,
    models: &crate::common::NameMap<String, crate::check::ModelDef>,
    opts: &RunOptions,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> Result<RunReport, RunError> {
    let plan_arc = plan;
    let plan: &Plan = &plan_arc;
    prepare::register_secrets(plan, opts);
    let inputs = Arc::new(prepare::parse_inputs(plan, &opts.inputs)?);
    approval::check_answerable(plan, &opts.approver, opts.journal.as_ref())?;
    let mut shared = prepare::prepare(plan, models, opts)?;
    // MCP servers, run start: every granted tool is checked (starting its server) before any
    // step runs, so a wrong name fails the run at once, not in the middle.
    let mcp = start_mcp(plan, &shared.agents.workspace).await?;
    shared.agents.mcp = mcp;
    // Journal hook, run start: the `run`/`resume` record, before any step can end.
    if let Some(j) = &opts.journal
        && let Err(e) = j.begin(plan, opts)
    {
        if let Some(pool) = shared.agents.mcp.take() {
            stop_mcp(pool).await;
        }
        return Err(e.into());
    }
    let mcp = shared.agents.mcp.clone();
    let shared = Arc::new(shared);
    let budgets = shared.agents.budgets.clone();
    let mut report = run_top(plan_arc, inputs, shared, opts.clone(), budgets, on_event).await;
    // MCP servers, run end: stopped (every step is over, so nothing holds the pool any more).
    if let Some(pool) = mcp {
        stop_mcp(pool).await;
    }
    // Journal hook, run end: the `end` record. Every step is already recorded, so a failure
    // here only leaves the run looking unfinished, which `--resume` handles.
    if let Some(j) = &opts.journal {
        report.run_id = Some(j.id());
        if let Err(e) = j.end(&report) {
            report
                .stopped
                .get_or_insert_with(|| format!("the journal could not be closed: {e}"));
        }
    }
    Ok(report)
}
