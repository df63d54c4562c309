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
//! unchanged. Those three are hooks in the scheduler below: where a step is about to start
//! (`start_ready`), where it ends (`finish`, `settle`), and at the start and end of the run.

pub mod approval;
mod budget;
pub mod cache_key;
pub mod cancel;
pub mod command;
mod control;
pub mod journal;
pub mod limits;
pub mod provider;
pub mod render;
pub mod structured;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::check::ProviderKind;
use crate::common::Policy;
use crate::plan::{NodeId, Plan, PlanExec, PlanNode, estimate_tokens};
use limits::ProviderLimits;
use provider::{ApiKey, CompletionRequest, OutputFormat, Provider, ProviderError, Usage};
use render::{InputValue, Scope, render_with_args};

pub use approval::{Approval, ApprovalRequest, Approver};

use crate::common::format_duration;

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
    /// Who answers `approve(...)` steps (by default nobody: they fail, saying so).
    pub approver: Approver,
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

/// Registers the secrets a run may meet before it starts, so that even its first record is
/// redacted: the key of every provider the plan declares and of `--endpoint-key-env`, and,
/// when the plan runs commands, the variables they inherit whose names mark them as secrets
/// ([`crate::redact::is_secret_name`]).
fn register_secrets(plan: &Plan, opts: &RunOptions) {
    for var in plan.providers.values().filter_map(|p| p.key_env()) {
        opts.read_key(var);
    }
    if let Target::Endpoint(Endpoint {
        api_key_env: Some(var),
        ..
    }) = &opts.target
    {
        opts.read_key(var);
    }
    if plan
        .nodes
        .iter()
        .any(|n| matches!(n.exec, PlanExec::Command { .. }))
    {
        for (name, value) in std::env::vars_os() {
            if let (Some(name), Some(value)) = (name.to_str(), value.to_str()) {
                crate::redact::register_env(name, value);
            }
        }
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
    /// The journal cannot be created or written.
    #[error("{0}")]
    Journal(#[from] journal::JournalError),
}

/// Progress of a run, reported as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step started an attempt.
    Started {
        /// Step name.
        step: String,
        /// Model or command shown to users.
        runs_on: String,
        /// 1-based attempt.
        attempt: u32,
    },
    /// An attempt failed and will be retried after `delay_ms`.
    Retrying {
        /// Step name.
        step: String,
        /// The error.
        error: String,
        /// Backoff before the next attempt, in milliseconds.
        delay_ms: u64,
    },
    /// A streamed answer is arriving (reported at most every 250 ms per attempt).
    Streaming {
        /// Step name.
        step: String,
        /// Output tokens received so far in this attempt (an estimate; see
        /// [`provider::ProgressFn`]).
        tokens: u64,
    },
    /// An attempt waits for its provider's rate limits before it is sent.
    Waiting {
        /// Step name.
        step: String,
        /// How long, in milliseconds.
        delay_ms: u64,
        /// Which limit, for people (``"`anthropic` says its requests are used up"``).
        reason: String,
    },
    /// A step switches to its fallback model.
    FallingBack {
        /// Step name.
        step: String,
        /// The fallback model.
        model: String,
    },
    /// A step finished (successfully or not).
    Finished(StepReport),
    /// On a resumed run: a step's result was taken from the journal instead of running it.
    /// The report is the one recorded when it ran.
    Reused(StepReport),
    /// On a resumed run: a step runs again, and why (`it failed last time: ...`, `prompt
    /// changed (upstream `plan` re-ran)`, `model changed sonnet → opus`, ...).
    Rerun {
        /// Step name.
        step: String,
        /// The reason, in words.
        why: String,
    },
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "reason")]
pub enum StepStatus {
    /// It produced an output.
    Succeeded,
    /// Every attempt failed.
    Failed(String),
    /// It never started because a dependency failed, the budget ran out, or the run stopped.
    Skipped(String),
    /// A `gather <any|first N>` no longer needed it.
    Cancelled,
    /// It was running when the run was interrupted (Ctrl-C): its request was dropped (its
    /// program killed) and a resumed run runs it again.
    Interrupted,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// The agent.
    pub agent: String,
    /// The model that produced the output (after any fallback), `command`, or for an
    /// approval who answered: `person` or `--yes`.
    pub model: Option<String>,
    /// Outcome.
    #[serde(flatten)]
    pub status: StepStatus,
    /// Attempts made, over all models.
    pub attempts: u32,
    /// Tokens, as reported by the provider(s), over all attempts.
    pub usage: Usage,
    /// USD, from usage and the models' prices.
    pub cost_usd: f64,
    /// Start, in milliseconds since the run began.
    pub started_ms: Option<u64>,
    /// End, in milliseconds since the run began.
    pub finished_ms: Option<u64>,
    /// The output as text (absent when the step did not succeed); a structured output is its
    /// JSON text.
    pub output: Option<String>,
    /// A structured output (`-> T`) as a value of its type; absent for text outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For an answered approval step: the answer and how it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

impl StepReport {
    /// The value later steps see: the structured value, or the text as a JSON string.
    pub fn output_value(&self) -> Option<serde_json::Value> {
        self.value
            .clone()
            .or_else(|| self.output.clone().map(serde_json::Value::String))
    }
}

impl StepReport {
    /// The report of a step that did not run (skipped or cancelled): no model, no attempts.
    fn not_run(node: &PlanNode, status: StepStatus, finished_ms: Option<u64>) -> Self {
        StepReport {
            name: node.name.clone(),
            agent: node.agent.clone(),
            model: None,
            status,
            attempts: 0,
            usage: Usage::default(),
            cost_usd: 0.0,
            started_ms: None,
            finished_ms,
            output: None,
            value: None,
            approval: None,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Workflow name.
    pub workflow: String,
    /// Every step, in source order.
    pub steps: Vec<StepReport>,
    /// The rendered `return` value (or, without `return`, the outputs of the final steps).
    pub output: Option<String>,
    /// Whether every step that had to run succeeded.
    pub succeeded: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Total tokens.
    pub usage: Usage,
    /// Total USD.
    pub cost_usd: f64,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
    /// The run's id, when it is journalled.
    pub run_id: Option<String>,
    /// Steps whose result was taken from the journal of an earlier attempt of this run
    /// (`--resume`), in source order. Their reports are those recorded when they ran.
    pub reused: Vec<String>,
    /// Whether the run was interrupted ([`RunOptions::cancel`], Ctrl-C).
    pub interrupted: bool,
}

impl RunReport {
    /// Its step executions and how many succeeded, counted as the summary and `orch runs`
    /// count them ([`journal::StepCounts`]).
    pub fn step_counts(&self) -> journal::StepCounts {
        journal::StepCounts {
            succeeded: self
                .steps
                .iter()
                .filter(|x| x.status == StepStatus::Succeeded)
                .count(),
            total: self.steps.len(),
        }
    }
}

/// A step's client: a model provider with the identifier to request, or a command.
#[derive(Debug, Clone)]
struct ModelClient {
    provider: Provider,
    provider_name: String,
    model_id: String,
    price: crate::check::Price,
    /// The rate limits of the provider (shared by every model it serves).
    limits: Arc<ProviderLimits>,
}

/// Everything the tasks share.
struct Shared {
    clients: HashMap<String, ModelClient>,
    provider_limits: HashMap<String, Arc<Semaphore>>,
    group_limits: Vec<Option<Arc<Semaphore>>>,
    global: Option<Arc<Semaphore>>,
    simulate_commands: Option<provider::sim::Sim>,
    approver: Approver,
    start: Instant,
}

/// Runs a plan to the end (or to the first failure) and reports what happened. `on_event` is
/// called for progress as it happens.
///
/// # Errors
/// [`RunError`] when the run cannot start: a missing or ill-typed input, or a missing API key.
/// Failures of steps are not errors: they are in the report.
pub async fn run(
    plan: &Plan,
    models: &IndexMap<String, crate::check::ModelDef>,
    opts: &RunOptions,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> Result<RunReport, RunError> {
    register_secrets(plan, opts);
    let inputs = Arc::new(parse_inputs(plan, &opts.inputs)?);
    let shared = Arc::new(prepare(plan, models, opts)?);
    // Journal hook, run start: the `run`/`resume` record, before any step can end.
    if let Some(j) = &opts.journal {
        j.begin(plan, opts)?;
    }
    let plan_arc = Arc::new(plan.clone());
    let budgets = Arc::new(std::sync::Mutex::new(budget::Budgets::new(plan)));
    let mut report = Scheduler::new(&plan_arc, &inputs, shared, opts, Frame::top(plan), budgets)
        .run(on_event)
        .await;
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

fn parse_inputs(
    plan: &Plan,
    given: &IndexMap<String, String>,
) -> Result<IndexMap<String, InputValue>, RunError> {
    for k in given.keys() {
        if !plan.params.iter().any(|p| &p.name == k) {
            let names: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
            let hint = match crate::check::suggest::did_you_mean(k, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if names.is_empty() => "it takes no inputs".to_string(),
                None => format!("its inputs: {}", names.join(", ")),
            };
            return Err(RunError::Input(format!(
                "workflow `{}` has no parameter `{k}`; {hint}",
                plan.workflow
            )));
        }
    }
    let mut out = IndexMap::new();
    for p in &plan.params {
        let text = match (given.get(&p.name), &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(RunError::Input(format!(
                    "missing input `{}` ({}) for workflow `{}`: pass `--input {}=...` (or `--input {}=@file` to read a file)",
                    p.name, p.ty, plan.workflow, p.name, p.name
                )));
            }
        };
        let v = render::parse_input(&p.ty, &text)
            .map_err(|e| RunError::Input(format!("input `{}`: {e}", p.name)))?;
        out.insert(p.name.clone(), v);
    }
    Ok(out)
}

/// Builds one client per model used, reading keys from the environment.
fn prepare(
    plan: &Plan,
    models: &IndexMap<String, crate::check::ModelDef>,
    opts: &RunOptions,
) -> Result<Shared, RunError> {
    let env = |name: &str| opts.read_key(name);
    let mut clients = HashMap::new();
    let mut provider_limits = HashMap::new();
    let mut http_clients: HashMap<String, Provider> = HashMap::new();
    let mut limits: HashMap<String, Arc<ProviderLimits>> = HashMap::new();
    for n in &plan.nodes {
        let PlanExec::Model {
            model, fallback, ..
        } = &n.exec
        else {
            continue;
        };
        for m in std::iter::once(model).chain(fallback.iter()) {
            if clients.contains_key(m) {
                continue;
            }
            let Some(def) = models.get(m) else { continue };
            // A checked plan lists the provider of every model it uses; never guess one.
            let pdef = plan.providers.get(&def.provider).cloned().ok_or_else(|| {
                RunError::Input(format!(
                    "model `{m}` uses provider `{}`, which the plan does not declare",
                    def.provider
                ))
            })?;
            // Every model of a provider (or of the one --endpoint) shares its limits.
            let limits_key = match &opts.target {
                Target::Endpoint(_) => "--endpoint".to_string(),
                _ => pdef.name.clone(),
            };
            let rate_limits = limits
                .entry(limits_key.clone())
                .or_insert_with(|| {
                    Arc::new(match &opts.target {
                        // The script's limits are its providers'; a server given with
                        // --endpoint is limited only by what its own headers say.
                        Target::Endpoint(_) => ProviderLimits::new(&limits_key, None, None),
                        _ => ProviderLimits::new(
                            &pdef.name,
                            pdef.requests_per_minute,
                            pdef.tokens_per_minute,
                        ),
                    })
                })
                .clone();
            let idle = Duration::from_millis(
                pdef.idle_timeout_ms
                    .unwrap_or(provider::DEFAULT_IDLE_TIMEOUT.as_millis() as u64),
            );
            let stream = pdef.stream.unwrap_or(true);
            let (provider, model_id) = match &opts.target {
                // A declared `kind: sim` provider keeps its own latency and failures.
                Target::Simulate { latency_ms, .. } => (
                    Provider::Sim(
                        provider::sim::Sim::new(Duration::from_millis(
                            pdef.latency_ms.unwrap_or(*latency_ms),
                        ))
                        .with_failures(pdef.failures.unwrap_or(0)),
                    ),
                    def.api_name.clone(),
                ),
                Target::Endpoint(e) => {
                    let key = e.api_key_env.as_deref().and_then(env).map(ApiKey::new);
                    let p = http_clients
                        .entry("--endpoint".into())
                        .or_insert_with(|| {
                            Provider::OpenAi(
                                provider::openai::OpenAi::new(e.base_url.clone(), key)
                                    .streaming(e.stream)
                                    .with_limits(rate_limits.clone()),
                            )
                        })
                        .clone();
                    (p, e.model.clone().unwrap_or_else(|| def.api_name.clone()))
                }
                Target::Script => {
                    let key = match pdef.key_env() {
                        Some(var) => Some(ApiKey::new(env(var).ok_or_else(|| {
                            RunError::MissingKey {
                                var: var.to_string(),
                                provider: pdef.name.clone(),
                                model: m.clone(),
                            }
                        })?)),
                        None => None,
                    };
                    let p = http_clients
                        .entry(pdef.name.clone())
                        .or_insert_with(|| match pdef.kind {
                            ProviderKind::Sim => Provider::Sim(
                                provider::sim::Sim::new(Duration::from_millis(
                                    pdef.latency_ms.unwrap_or(0),
                                ))
                                .with_failures(pdef.failures.unwrap_or(0)),
                            ),
                            ProviderKind::Openai => Provider::OpenAi(
                                provider::openai::OpenAi::new(
                                    pdef.base_url.clone().unwrap_or_else(|| {
                                        provider::openai::DEFAULT_BASE_URL.into()
                                    }),
                                    key.clone(),
                                )
                                .streaming(stream)
                                .idle_timeout(idle)
                                .with_limits(rate_limits.clone()),
                            ),
                            ProviderKind::Anthropic => Provider::Anthropic(
                                provider::anthropic::Anthropic::new(
                                    pdef.base_url.clone().unwrap_or_else(|| {
                                        provider::anthropic::DEFAULT_BASE_URL.into()
                                    }),
                                    key.clone().unwrap_or_else(|| ApiKey::new("")),
                                )
                                .streaming(stream)
                                .idle_timeout(idle)
                                .with_limits(rate_limits.clone()),
                            ),
                        })
                        .clone();
                    (p, def.api_name.clone())
                }
            };
            if let Some(limit) = pdef.max_concurrency {
                provider_limits
                    .entry(pdef.name.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1) as usize)));
            }
            clients.insert(
                m.clone(),
                ModelClient {
                    provider,
                    provider_name: pdef.name.clone(),
                    model_id,
                    // A server given with --endpoint is not the script's provider: its tokens
                    // are not billed at the script's prices. A dry run keeps them, to estimate.
                    price: match &opts.target {
                        Target::Endpoint(_) => crate::check::Price::default(),
                        _ => def.price,
                    },
                    limits: rate_limits,
                },
            );
        }
    }
    let simulate_commands = match &opts.target {
        Target::Simulate {
            latency_ms,
            run_commands: false,
        } => Some(provider::sim::Sim::new(Duration::from_millis(*latency_ms))),
        _ => None,
    };
    Ok(Shared {
        clients,
        provider_limits,
        group_limits: plan
            .groups
            .iter()
            .map(|g| g.max.map(|m| Arc::new(Semaphore::new(m as usize))))
            .collect(),
        global: opts
            .max_concurrency
            .map(|m| Arc::new(Semaphore::new(m.max(1)))),
        simulate_commands,
        approver: opts.approver.clone(),
        start: Instant::now(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting,
    Running,
    Done(StepStatus),
}

/// The result of one finished task.
struct Outcome {
    node: NodeId,
    report: StepReport,
    /// For a region: the reports of the steps inside it.
    inner: Vec<StepReport>,
    /// For a region: values of the names it exports, by node.
    exports: Vec<(NodeId, Option<serde_json::Value>)>,
    /// For a region: its steps whose result came from the journal.
    reused: Vec<String>,
}

impl Outcome {
    fn step(node: NodeId, report: StepReport) -> Self {
        Outcome {
            node,
            report,
            inner: Vec::new(),
            exports: Vec::new(),
            reused: Vec::new(),
        }
    }
}

/// The part of a plan one scheduler runs: the workflow's top level, or one body of a region
/// (`control`), whose outside is already settled.
struct Frame {
    /// Nodes this scheduler runs.
    active: Vec<bool>,
    /// Outputs known at the start: values from outside the region, the item of a `for`,
    /// the previous iteration's of a `repeat`.
    outputs: Vec<Option<serde_json::Value>>,
}

impl Frame {
    /// The top level of a plan: every node outside regions, nothing known yet.
    fn top(plan: &Plan) -> Self {
        Frame {
            active: plan.nodes.iter().map(|n| n.region.is_none()).collect(),
            outputs: vec![None; plan.nodes.len()],
        }
    }
}

struct Scheduler<'a> {
    plan: &'a Plan,
    inputs: &'a IndexMap<String, InputValue>,
    /// The same plan and inputs, for region tasks.
    plan_arc: Arc<Plan>,
    inputs_arc: Arc<IndexMap<String, InputValue>>,
    /// The options of the run, for region tasks.
    opts: RunOptions,
    /// Nodes this scheduler runs ([`Frame::active`]).
    active: Vec<bool>,
    /// Reports of the steps inside regions, as they end.
    inner_reports: Vec<StepReport>,
    /// Steps inside regions whose result came from the journal.
    inner_reused: Vec<String>,
    shared: Arc<Shared>,
    max_tokens_cap: Option<u32>,
    state: Vec<State>,
    /// Outputs of settled steps: text as a JSON string, structured outputs as values.
    outputs: Vec<Option<serde_json::Value>>,
    reports: Vec<Option<StepReport>>,
    /// For each node: dependencies not yet settled, excluding those its join handles.
    waiting_on: Vec<usize>,
    /// Reverse edges, without the ones a tolerant join handles.
    dependents: Vec<Vec<NodeId>>,
    /// Nodes to look at: their counted dependencies are settled, or their join moved.
    candidates: VecDeque<NodeId>,
    /// Tolerant joins (`any`, `first N`, `min N`), with their branch counters.
    joins: HashMap<NodeId, JoinState>,
    /// For each node: the tolerant joins it is a branch member of, with the branch index.
    watched_by: Vec<Vec<(NodeId, usize)>>,
    /// Nodes of a tolerant join's block, whose failure does not stop the run.
    tolerated: Vec<bool>,
    stopped: Option<String>,
    /// Shared by the schedulers of every region of the run.
    budgets: Arc<std::sync::Mutex<budget::Budgets>>,
    abort: HashMap<NodeId, tokio::task::AbortHandle>,
    keep_going: bool,
    cancel: Option<cancel::Cancel>,
    interrupted: bool,
    journal: Option<journal::Journal>,
    /// With a journal: each model's identity, for cache keys.
    identities: Option<cache_key::Identities>,
    /// With a journal: the key parts of each step that was started, for its record.
    keys: Vec<Option<cache_key::KeyParts>>,
    /// Steps that ran in this process (not reused), for `--why-rerun` messages.
    ran: Vec<bool>,
    /// Steps whose result came from the journal.
    reused: Vec<bool>,
    /// On a resumed run: why each step that is not reused runs again (told when it starts).
    rerun_why: Vec<Option<String>>,
}

/// Progress of the block a tolerant `gather` joins, kept incrementally so that each settled
/// step costs O(1) instead of a scan of the block.
struct JoinState {
    policy: Policy,
    /// Steps of each branch not yet succeeded.
    pending: Vec<usize>,
    /// Branches with a step that failed, was skipped or was cancelled.
    failed: Vec<bool>,
    succeeded_branches: u32,
    settled_branches: u32,
}

impl JoinState {
    fn total(&self) -> u32 {
        self.pending.len() as u32
    }
    fn needed(&self) -> u32 {
        match self.policy {
            Policy::Any => 1,
            Policy::First(n) | Policy::Min(n) => n,
            Policy::All => self.total(),
        }
    }
}

impl<'a> Scheduler<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        plan: &'a Arc<Plan>,
        inputs: &'a Arc<IndexMap<String, InputValue>>,
        shared: Arc<Shared>,
        opts: &RunOptions,
        frame: Frame,
        budgets: Arc<std::sync::Mutex<budget::Budgets>>,
    ) -> Self {
        let n = plan.nodes.len();
        let active = frame.active;
        let mut dependents = vec![Vec::new(); n];
        let mut waiting_on = vec![0; n];
        let mut tolerated = vec![false; n];
        let mut joins = HashMap::new();
        let mut watched_by = vec![Vec::new(); n];
        for node in plan.nodes.iter().filter(|n| active[n.id]) {
            let tolerant = node.join.filter(|j| j.policy != Policy::All);
            let mut members = std::collections::HashSet::new();
            if let Some(j) = tolerant {
                let group = &plan.groups[j.group];
                for (b, branch) in group.branches.iter().enumerate() {
                    for &m in branch {
                        tolerated[m] = true;
                        members.insert(m);
                        watched_by[m].push((node.id, b));
                    }
                }
                joins.insert(
                    node.id,
                    JoinState {
                        policy: j.policy,
                        pending: group.branches.iter().map(Vec::len).collect(),
                        failed: vec![false; group.branches.len()],
                        succeeded_branches: 0,
                        settled_branches: 0,
                    },
                );
            }
            for &d in &node.deps {
                // Dependencies on the joined block are the join's business, not a count;
                // nodes outside the frame are settled already.
                if !members.contains(&d) && active[d] {
                    dependents[d].push(node.id);
                    waiting_on[node.id] += 1;
                }
            }
        }
        let candidates = (0..n)
            .filter(|&i| active[i] && waiting_on[i] == 0)
            .collect();
        let identities = opts
            .journal
            .as_ref()
            .map(|_| cache_key::Identities::new(plan, &shared.clients, &opts.target));
        let state = (0..n)
            .map(|i| {
                if active[i] {
                    State::Waiting
                } else {
                    State::Done(StepStatus::Succeeded)
                }
            })
            .collect();
        Scheduler {
            plan,
            inputs,
            plan_arc: plan.clone(),
            inputs_arc: inputs.clone(),
            opts: opts.clone(),
            active,
            inner_reports: Vec::new(),
            inner_reused: Vec::new(),
            shared,
            max_tokens_cap: opts.max_tokens_cap,
            state,
            outputs: frame.outputs,
            reports: vec![None; n],
            waiting_on,
            dependents,
            candidates,
            joins,
            watched_by,
            tolerated,
            stopped: None,
            budgets,
            abort: HashMap::new(),
            keep_going: opts.keep_going,
            cancel: opts.cancel.clone(),
            interrupted: false,
            identities,
            journal: opts.journal.clone(),
            keys: vec![None; n],
            ran: vec![false; n],
            reused: vec![false; n],
            rerun_why: vec![None; n],
        }
    }

    async fn run(self, on_event: &(dyn Fn(&Event) + Send + Sync)) -> RunReport {
        self.run_frame(on_event).await.0
    }

    /// Runs the frame to the end; returns the report and every output at the end.
    async fn run_frame(
        mut self,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> (RunReport, Vec<Option<serde_json::Value>>) {
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        if self
            .cancel
            .as_ref()
            .is_some_and(cancel::Cancel::is_cancelled)
        {
            self.interrupt(&mut tasks, on_event);
        }
        self.start_ready(&mut tasks, &tx, on_event);
        loop {
            tokio::select! {
                biased;
                // Cancellation hook: stop new work, drop the steps in flight.
                () = cancel::cancelled(self.cancel.as_ref()), if !self.interrupted => {
                    self.interrupt(&mut tasks, on_event);
                    self.start_ready(&mut tasks, &tx, on_event);
                }
                Some(ev) = rx.recv() => on_event(&ev),
                joined = tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    while let Ok(ev) = rx.try_recv() {
                        on_event(&ev);
                    }
                    match joined {
                        Ok(outcome) => self.finish(outcome, on_event),
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => {
                            // A panic inside a task is a bug; record it rather than lose the run.
                            self.stopped.get_or_insert_with(|| format!("internal error in a step: {e}"));
                        }
                    }
                    self.start_ready(&mut tasks, &tx, on_event);
                }
            }
        }
        while let Ok(ev) = rx.try_recv() {
            on_event(&ev);
        }
        self.into_report()
    }

    fn elapsed_ms(&self) -> u64 {
        self.shared.start.elapsed().as_millis() as u64
    }

    /// Starts every candidate step whose dependencies allow it, unless the run has stopped.
    ///
    /// Candidates are settled first (skipped, or reused from the journal of a resumed run,
    /// which may release further candidates) and started after, `gather` steps first: a
    /// gather that starts may cancel the rest of its block, which then never starts.
    fn start_ready(
        &mut self,
        tasks: &mut JoinSet<Outcome>,
        tx: &tokio::sync::mpsc::UnboundedSender<Event>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        loop {
            let mut go = Vec::new();
            while let Some(id) = self.candidates.pop_front() {
                if self.state[id] != State::Waiting || self.waiting_on[id] > 0 {
                    continue;
                }
                match self.readiness(id) {
                    Readiness::NotYet => {}
                    Readiness::Skip(reason) => {
                        self.settle_without_running(id, StepStatus::Skipped(reason), on_event)
                    }
                    // Journal hook, a step about to start: reuse its recorded result? (A
                    // region is not recorded: its steps are.)
                    Readiness::Go if !self.is_region(id) && self.reuse(id, on_event) => {}
                    Readiness::Go => go.push(id),
                }
            }
            if go.is_empty() {
                return;
            }
            go.sort_by_key(|&id| self.plan.nodes[id].join.is_none());
            for id in go {
                if self.state[id] != State::Waiting {
                    continue; // cancelled by a gather started just before
                }
                let skip = match self.stopped.clone() {
                    Some(reason) => Some(reason),
                    None => self.over_budget(id).inspect(|reason| {
                        if !self.keep_going {
                            self.stopped = Some(reason.clone());
                        }
                    }),
                };
                match skip {
                    Some(reason) => {
                        self.settle_without_running(id, StepStatus::Skipped(reason), on_event)
                    }
                    None => {
                        self.cancel_rest_of_join(id, on_event);
                        self.spawn(id, tasks, tx.clone());
                    }
                }
            }
        }
    }

    /// Whether a step whose counted dependencies are settled may run.
    fn readiness(&self, id: NodeId) -> Readiness {
        for &d in &self.plan.nodes[id].deps {
            if let State::Done(s) = &self.state[d]
                && *s != StepStatus::Succeeded
                && !self
                    .joins
                    .get(&id)
                    .is_some_and(|_| self.watched_by[d].iter().any(|(j, _)| *j == id))
            {
                return Readiness::Skip(format!("`{}` did not succeed", self.plan.nodes[d].name));
            }
        }
        let Some(j) = self.joins.get(&id) else {
            return Readiness::Go;
        };
        let (ok, settled, total, need) = (
            j.succeeded_branches,
            j.settled_branches,
            j.total(),
            j.needed(),
        );
        let waits_for_all = matches!(j.policy, Policy::Min(_));
        if ok >= need && (!waits_for_all || settled == total) {
            Readiness::Go
        } else if settled == total || ok + (total - settled) < need {
            Readiness::Skip(format!(
                "only {ok} of {total} branches succeeded; `gather <{}>` needs {need}",
                j.policy
            ))
        } else {
            Readiness::NotYet
        }
    }

    /// Budget hook, a step about to start: its worst case for one attempt (system text and
    /// rendered prompt at 4 characters per token, plus `max_tokens` out, at its model's price)
    /// must fit in every enclosing budget ([`budget`]), where it is then held until the step
    /// ends. Returns why it may not start.
    fn over_budget(&mut self, id: NodeId) -> Option<String> {
        let node = &self.plan.nodes[id];
        if !self
            .budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .applies(node)
        {
            return None;
        }
        let PlanExec::Model {
            model,
            system,
            max_tokens,
            ..
        } = &node.exec
        else {
            return None;
        };
        let client = self.shared.clients.get(model)?;
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let render =
            |t: Option<&crate::plan::Template>| t.map(|t| scope.render(t)).unwrap_or_default();
        let input = estimate_tokens(&render(node.prompt.as_ref()))
            + estimate_tokens(&render(system.as_ref()));
        let out = self
            .max_tokens_cap
            .map_or(*max_tokens, |c| c.min(*max_tokens));
        let worst = client.price.cost(input, u64::from(out));
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(node, worst)
            .err()
    }

    fn settle_without_running(
        &mut self,
        id: NodeId,
        status: StepStatus,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        let report = StepReport::not_run(&self.plan.nodes[id], status, None);
        on_event(&Event::Finished(report.clone()));
        self.settle(id, report);
    }

    /// Records a finished step and releases its dependents and the joins that watch it.
    fn settle(&mut self, id: NodeId, report: StepReport) {
        let succeeded = report.status == StepStatus::Succeeded;
        self.state[id] = State::Done(report.status.clone());
        self.outputs[id] = report.output_value();
        if !matches!(self.plan.nodes[id].exec, PlanExec::Region { .. }) {
            // A region's cost is its steps', already spent by its own schedulers.
            self.budgets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .spend(&self.plan.nodes[id], report.cost_usd);
        }
        if let StepStatus::Failed(e) = &report.status
            && !self.tolerated[id]
            && !self.keep_going
            && self.stopped.is_none()
        {
            self.stopped = Some(format!("step `{}` failed: {e}", report.name));
        }
        self.reports[id] = Some(report);
        for &d in &self.dependents[id] {
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.candidates.push_back(d);
            }
        }
        for &(join, branch) in &self.watched_by[id] {
            let Some(j) = self.joins.get_mut(&join) else {
                continue;
            };
            if j.failed[branch] {
                continue;
            }
            if succeeded {
                j.pending[branch] -= 1;
                if j.pending[branch] == 0 {
                    j.succeeded_branches += 1;
                    j.settled_branches += 1;
                }
            } else {
                j.failed[branch] = true;
                j.settled_branches += 1;
            }
            if self.waiting_on[join] == 0 {
                self.candidates.push_back(join);
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, on_event: &(dyn Fn(&Event) + Send + Sync)) {
        self.abort.remove(&outcome.node);
        if matches!(self.state[outcome.node], State::Done(_)) {
            // Cancelled by a gather while its result was already on the way: it stays cancelled.
            return;
        }
        if self.is_region(outcome.node) {
            for (n, v) in outcome.exports {
                self.outputs[n] = v;
            }
            self.inner_reports.extend(outcome.inner);
            self.inner_reused.extend(outcome.reused);
        } else {
            // Journal hook, a step ended: record it before anything depends on it.
            self.record(outcome.node, &outcome.report);
        }
        on_event(&Event::Finished(outcome.report.clone()));
        self.settle(outcome.node, outcome.report);
    }

    /// A `gather <any|first N>` that starts no longer needs the rest of its block: cancel it.
    fn cancel_rest_of_join(&mut self, id: NodeId, on_event: &(dyn Fn(&Event) + Send + Sync)) {
        let Some(join) = self.plan.nodes[id].join else {
            return;
        };
        if !matches!(join.policy, Policy::Any | Policy::First(_)) {
            return;
        }
        for &m in &self.plan.groups[join.group].members {
            if !matches!(self.state[m], State::Waiting | State::Running) {
                continue;
            }
            if let Some(h) = self.abort.remove(&m) {
                h.abort();
            }
            let report = StepReport::not_run(
                &self.plan.nodes[m],
                StepStatus::Cancelled,
                Some(self.elapsed_ms()),
            );
            on_event(&Event::Finished(report.clone()));
            self.settle(m, report);
        }
    }

    fn spawn(
        &mut self,
        id: NodeId,
        tasks: &mut JoinSet<Outcome>,
        tx: tokio::sync::mpsc::UnboundedSender<Event>,
    ) {
        self.state[id] = State::Running;
        self.ran[id] = true;
        if self.is_region(id) {
            let task = control::RegionTask {
                plan: self.plan_arc.clone(),
                inputs: self.inputs_arc.clone(),
                shared: self.shared.clone(),
                opts: self.opts.clone(),
                budgets: self.budgets.clone(),
                outputs: self.outputs.clone(),
                node: id,
                tx,
            };
            let handle = tasks.spawn(control::run_region(task));
            self.abort.insert(id, handle);
            return;
        }
        self.record_start(id, &tx);
        let node = self.plan.nodes[id].clone();
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let (prompt, args) = scope.render_call(&node);
        let shared = self.shared.clone();
        let cap = self.max_tokens_cap;
        let handle = tasks.spawn(async move {
            let report = execute(&node, prompt, args, &shared, cap, &tx).await;
            Outcome::step(node.id, report)
        });
        self.abort.insert(id, handle);
    }

    /// Whether node `id` stands for a region.
    fn is_region(&self, id: NodeId) -> bool {
        matches!(self.plan.nodes[id].exec, PlanExec::Region { .. })
    }

    fn into_report(self) -> (RunReport, Vec<Option<serde_json::Value>>) {
        let mut reused: Vec<String> = (0..self.plan.nodes.len())
            .filter(|&i| self.reused[i])
            .map(|i| self.plan.nodes[i].name.clone())
            .collect();
        reused.extend(self.inner_reused);
        // This frame's steps (a `for` item is not a step), then the steps of its regions.
        let shown: Vec<NodeId> = (0..self.plan.nodes.len())
            .filter(|&i| self.active[i] && !matches!(self.plan.nodes[i].exec, PlanExec::Item))
            .collect();
        let mut reports = self.reports;
        let mut steps: Vec<StepReport> = shown
            .iter()
            .map(|&i| {
                reports[i].take().unwrap_or_else(|| {
                    let why = StepStatus::Skipped("the run stopped".into());
                    StepReport::not_run(&self.plan.nodes[i], why, None)
                })
            })
            .collect();
        let required_ok = shown.iter().zip(&steps).all(|(&i, s)| {
            s.status == StepStatus::Succeeded
                || (self.tolerated[i] && s.status != StepStatus::Succeeded)
        });
        steps.extend(self.inner_reports);
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let output = if required_ok {
            match &self.plan.output {
                Some(t) => Some(scope.render(t)),
                None => Some(final_outputs(self.plan, &self.active, &self.outputs)),
            }
        } else {
            None
        };
        let mut usage = Usage::default();
        let mut cost_usd = 0.0;
        for s in &steps {
            usage.add(s.usage);
            cost_usd += s.cost_usd;
        }
        let report = RunReport {
            workflow: self.plan.workflow.clone(),
            succeeded: required_ok,
            stopped: self.stopped,
            output,
            usage,
            cost_usd,
            wall_ms: self.shared.start.elapsed().as_millis() as u64,
            steps,
            run_id: None,
            reused,
            interrupted: self.interrupted,
        };
        (report, self.outputs)
    }
}

enum Readiness {
    NotYet,
    Go,
    Skip(String),
}

/// Without `return`: the outputs of the steps nothing depends on, each under its name.
fn final_outputs(plan: &Plan, active: &[bool], outputs: &[Option<serde_json::Value>]) -> String {
    let mut has_dependent = vec![false; plan.nodes.len()];
    for n in plan.nodes.iter().filter(|n| active[n.id]) {
        for &d in &n.deps {
            has_dependent[d] = true;
        }
    }
    // Regions other than a `for` have no value of their own.
    let sinks: Vec<NodeId> = (0..plan.nodes.len())
        .filter(|&i| active[i] && !has_dependent[i])
        .filter(|&i| match plan.nodes[i].exec {
            PlanExec::Region { region } => matches!(
                plan.regions[region].kind,
                crate::plan::PlanRegionKind::For { .. } | crate::plan::PlanRegionKind::Call { .. }
            ),
            PlanExec::Item => false,
            _ => true,
        })
        .collect();
    if let [only] = sinks.as_slice() {
        return outputs[*only]
            .as_ref()
            .map(render::json_text)
            .unwrap_or_default();
    }
    sinks
        .iter()
        .filter_map(|&i| {
            outputs[i].as_ref().map(|o| {
                format!(
                    "## {}\n{}",
                    plan.nodes[i].name,
                    render::json_text(o).trim_end()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

// ------------------------------------------------------------------ executing one step

struct AttemptError {
    message: String,
    retryable: bool,
    overloaded: bool,
    retry_after_ms: Option<u64>,
    /// The answer outgrew the step's `max_output_bytes`.
    too_large: bool,
}

impl From<ProviderError> for AttemptError {
    fn from(e: ProviderError) -> Self {
        AttemptError {
            retryable: e.is_retryable(),
            overloaded: e.is_overloaded(),
            retry_after_ms: e.retry_after_ms(),
            too_large: matches!(e, ProviderError::TooLarge { .. }),
            message: e.to_string(),
        }
    }
}

/// What a successful step produced: its text, and for a structured output (`-> T`, not
/// `text`) the value, whose compact JSON the text then is.
struct StepOutput {
    text: String,
    value: Option<serde_json::Value>,
}

impl StepOutput {
    fn text(text: String) -> Self {
        StepOutput { text, value: None }
    }

    fn value(value: serde_json::Value) -> Self {
        StepOutput {
            text: value.to_string(),
            value: Some(value),
        }
    }
}

/// The bound on one attempt's output (answer, stdout) of a step, in bytes: its agent's
/// `max_output_bytes`, else [`provider::DEFAULT_MAX_OUTPUT_BYTES`].
fn max_output_bytes(node: &PlanNode) -> u32 {
    node.max_output_bytes
        .unwrap_or(provider::DEFAULT_MAX_OUTPUT_BYTES)
}

/// The error of an output over its bound, for people: the step, the bound, and the fix.
fn too_large_message(node: &PlanNode, what: &str) -> String {
    let bound = max_output_bytes(node);
    let set = if node.max_output_bytes.is_some() {
        "its agent's `max_output_bytes`"
    } else {
        "the default `max_output_bytes`"
    };
    format!(
        "step `{}`: {what} is longer than {bound} bytes ({set}); if so long an output is expected, raise `max_output_bytes` in agent `{}`",
        node.name, node.agent
    )
}

/// The structured output a step must produce: its type, unless it has none or it is `text`.
fn structured_type(node: &PlanNode) -> Option<&crate::check::types::Type> {
    node.output_type
        .as_ref()
        .filter(|t| **t != crate::check::types::Type::Text)
}

/// Runs one step to its end: every attempt, retry, fallback and (for `-> T`) the parsing and
/// checking of its answer, bounded by its `deadline`.
async fn execute(
    node: &PlanNode,
    prompt: String,
    args: IndexMap<String, String>,
    shared: &Shared,
    cap: Option<u32>,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> StepReport {
    if let PlanExec::Approval = node.exec {
        // A person answers: no permits, attempts or fallback.
        return approval::execute(node, prompt, shared, tx).await;
    }
    // Permits: global, then blocks outermost first, then the provider (one order: no deadlock).
    let _global = match &shared.global {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    let mut _groups = Vec::new();
    for &g in &node.groups {
        if let Some(s) = &shared.group_limits[g] {
            _groups.push(s.clone().acquire_owned().await.ok());
        }
    }
    let started = shared.start.elapsed().as_millis() as u64;
    let mut report = StepReport {
        name: node.name.clone(),
        agent: node.agent.clone(),
        model: None,
        status: StepStatus::Succeeded,
        attempts: 0,
        usage: Usage::default(),
        cost_usd: 0.0,
        started_ms: Some(started),
        finished_ms: None,
        output: None,
        value: None,
        approval: None,
    };
    // The last failed attempt's error, for the message when the deadline passes.
    let mut last_error: Option<String> = None;
    let work = async {
        match &node.exec {
            PlanExec::Model {
                model,
                fallback,
                system,
                max_tokens,
                temperature,
                ..
            } => {
                let system = system.as_ref().map(|t| render_with_args(t, &args));
                let max_tokens = cap.map_or(*max_tokens, |c| c.min(*max_tokens));
                let mut result = Err("no model".to_string());
                for (i, m) in std::iter::once(model).chain(fallback.iter()).enumerate() {
                    let Some(client) = shared.clients.get(m) else {
                        continue;
                    };
                    if i > 0 {
                        let _ = tx.send(Event::FallingBack {
                            step: node.name.clone(),
                            model: m.clone(),
                        });
                    }
                    let req = CompletionRequest {
                        model: client.model_id.clone(),
                        system: system.clone(),
                        prompt: prompt.clone(),
                        max_tokens,
                        temperature: *temperature,
                        output: node
                            .output_type
                            .as_ref()
                            .and_then(|t| OutputFormat::new(&node.name, t)),
                        max_output_bytes: max_output_bytes(node),
                    };
                    report.model = Some(m.clone());
                    let has_fallback = i == 0 && fallback.is_some();
                    let step = StepRun {
                        node,
                        shared,
                        tx,
                        report: &mut report,
                        last_error: &mut last_error,
                    };
                    result = model_attempts(step, m, client, &req, has_fallback).await;
                    if result.is_ok() {
                        break;
                    }
                }
                result
            }
            PlanExec::Command { argv, env, cwd } => {
                report.model = Some("command".into());
                let spec = command::CommandSpec {
                    argv: argv.iter().map(|t| render_with_args(t, &args)).collect(),
                    env: env
                        .iter()
                        .map(|(k, t)| (k.clone(), render_with_args(t, &args)))
                        .collect(),
                    stdin: prompt.clone(),
                    cwd: cwd.as_ref().map(std::path::PathBuf::from),
                    max_stdout_bytes: Some(max_output_bytes(node)),
                };
                let step = StepRun {
                    node,
                    shared,
                    tx,
                    report: &mut report,
                    last_error: &mut last_error,
                };
                command_attempts(step, &spec).await
            }
            // Regions run in their own tasks (`control`), items are settled with their
            // instance: neither is executed as a step.
            PlanExec::Region { .. } | PlanExec::Item => {
                Err("internal error: a region or item was executed as a step".to_string())
            }
            // Answered by `approval::execute` above.
            PlanExec::Approval => Err("an approval step cannot run as a model or command".into()),
        }
    };
    // The deadline bounds everything above: attempts, backoff, waits for the provider's
    // permits and rate limits, and the fallback. When it passes, the attempt in flight is
    // dropped (a command is killed) and the step fails; no fallback follows.
    let result = match node.deadline_ms {
        None => work.await,
        Some(ms) => {
            let outcome = tokio::time::timeout(Duration::from_millis(ms), work).await;
            outcome.unwrap_or_else(|_| Err(deadline_passed(ms, &report, last_error.as_deref())))
        }
    };
    report.finished_ms = Some(shared.start.elapsed().as_millis() as u64);
    match result {
        Ok(out) => {
            report.output = Some(out.text);
            report.value = out.value;
        }
        Err(e) => report.status = StepStatus::Failed(e),
    }
    report
}

/// The failure of a step whose `deadline` passed.
fn deadline_passed(ms: u64, report: &StepReport, last_error: Option<&str>) -> String {
    let on = report
        .model
        .as_deref()
        .map(|m| format!(" on `{m}`"))
        .unwrap_or_default();
    let mut message = match report.attempts {
        0 => format!(
            "deadline of {} passed before the first attempt started",
            format_duration(ms)
        ),
        1 => format!(
            "deadline of {} passed after 1 attempt{on}",
            format_duration(ms)
        ),
        n => format!(
            "deadline of {} passed after {n} attempts{on}",
            format_duration(ms)
        ),
    };
    if let Some(e) = last_error {
        message.push_str(&format!(" (last error: {e})"));
    }
    message
}

/// What a step's attempts share: the step, the run, the progress channel, and the report and
/// last error they update.
struct StepRun<'a> {
    node: &'a PlanNode,
    shared: &'a Shared,
    tx: &'a tokio::sync::mpsc::UnboundedSender<Event>,
    report: &'a mut StepReport,
    last_error: &'a mut Option<String>,
}

/// The attempts of a model step on one model: each takes the provider's permit and waits for
/// its rate limits, then is bounded by the step's `timeout`. A failure that may pass when
/// repeated is retried after a backoff, up to the step's `retry` count.
///
/// For a structured output (`-> T`), a completed answer is parsed and checked against the type
/// ([`structured::parse_as`]). An answer that does not fit counts as a failed attempt, retried
/// at once (no backoff: the server is fine, the answer was not) within the same `retry` count,
/// with the problems, the start of the answer and the schema appended to the prompt
/// ([`structured::retry_instructions`]). Every attempt's usage and cost are counted, those of
/// rejected answers too. When no attempt fits, this model fails with
/// [`structured::mismatch_message`], the model and the attempt (and the step's `fallback`
/// model, if any, is tried next, like after any other failure).
async fn model_attempts(
    step: StepRun<'_>,
    model: &str,
    client: &ModelClient,
    first: &CompletionRequest,
    has_fallback: bool,
) -> Result<StepOutput, String> {
    let StepRun {
        node,
        shared,
        tx,
        report,
        last_error,
    } = step;
    let ty = structured_type(node);
    let mut req = std::borrow::Cow::Borrowed(first);
    let on_wait = |delay_ms: u64, why: &str| {
        let _ = tx.send(Event::Waiting {
            step: node.name.clone(),
            delay_ms,
            reason: why.to_string(),
        });
    };
    let on_progress = |tokens: u64| {
        let _ = tx.send(Event::Streaming {
            step: node.name.clone(),
            tokens,
        });
    };
    let mut k = 0;
    loop {
        // What a request counts against a tokens-per-minute limit: its input, estimated, and
        // its output bound.
        let tokens = req.system.as_deref().map_or(0, estimate_tokens)
            + estimate_tokens(&req.prompt)
            + u64::from(req.max_tokens);
        // The provider's permit is taken before the attempt's clock starts: waiting in line for
        // a provider is not part of a timeout, and the step counts as started once it has one.
        let _permit = match shared.provider_limits.get(&client.provider_name) {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        // Rate limits, too, are waited for before the attempt's clock starts.
        client.limits.acquire(tokens, &on_wait).await;
        if report.attempts == 0 {
            report.started_ms = Some(shared.start.elapsed().as_millis() as u64);
        }
        report.attempts += 1;
        let _ = tx.send(Event::Started {
            step: node.name.clone(),
            runs_on: model.to_string(),
            attempt: report.attempts,
        });
        let attempt = client.provider.complete_with_progress(&req, &on_progress);
        let outcome: Result<_, AttemptError> = match node.timeout_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), attempt).await {
                Ok(r) => r.map_err(AttemptError::from),
                Err(_) => Err(AttemptError {
                    message: format!("attempt timed out after {}", format_duration(ms)),
                    retryable: true,
                    overloaded: false,
                    retry_after_ms: None,
                    too_large: false,
                }),
            },
            None => attempt.await.map_err(AttemptError::from),
        };
        let outcome = outcome.map_err(|mut e| {
            if e.too_large {
                e.message = too_large_message(node, &format!("the answer of `{model}`"));
            }
            e
        });
        match outcome {
            Ok(c) => {
                report.usage.add(c.usage);
                report.cost_usd += client
                    .price
                    .cost(c.usage.input_tokens, c.usage.output_tokens);
                let Some(ty) = ty else {
                    return Ok(StepOutput::text(c.text));
                };
                let problems = match structured::parse_as(&c.text, ty) {
                    Ok(value) => return Ok(StepOutput::value(value)),
                    Err(problems) => problems,
                };
                let message = structured::mismatch_message(&node.name, ty, &problems, &c.text);
                *last_error = Some(message.clone());
                if k >= node.retry {
                    return Err(format!(
                        "{message} (on `{model}`, attempt {})",
                        report.attempts
                    ));
                }
                drop(_permit);
                let _ = tx.send(Event::Retrying {
                    step: node.name.clone(),
                    error: message,
                    delay_ms: 0,
                });
                let retry = structured::retry_instructions(ty, &problems, &c.text);
                let mut next = first.clone();
                next.prompt = format!("{}\n\n{retry}", first.prompt);
                if let Some(format) = &mut next.output {
                    format.prompted = true;
                }
                req = std::borrow::Cow::Owned(next);
                k += 1;
            }
            // An overloaded model will not get better in seconds: use the fallback now.
            Err(e) if e.overloaded && has_fallback => {
                *last_error = Some(e.message.clone());
                return Err(format!("{} (on `{model}`, overloaded)", e.message));
            }
            Err(e) if e.retryable && k < node.retry => {
                drop(_permit);
                *last_error = Some(e.message.clone());
                let server = e.retry_after_ms.map(Duration::from_millis);
                limits::before_retry(k, server, fastrand::f64(), |delay_ms| {
                    let _ = tx.send(Event::Retrying {
                        step: node.name.clone(),
                        error: e.message,
                        delay_ms,
                    });
                })
                .await;
                k += 1;
            }
            Err(e) => {
                *last_error = Some(e.message.clone());
                return Err(format!(
                    "{} (on `{model}`, attempt {})",
                    e.message, report.attempts
                ));
            }
        }
    }
}

/// The attempts of a command step. With `-> T`, its stdout is parsed and checked like a
/// model's answer, but a mismatch fails the step at once: a program is not asked again with
/// instructions. A dry run (`--simulate` without `--run-commands`) answers with a sample
/// value of the type, or says what would run.
async fn command_attempts(
    step: StepRun<'_>,
    spec: &command::CommandSpec,
) -> Result<StepOutput, String> {
    let StepRun {
        node,
        shared,
        tx,
        report,
        last_error,
    } = step;
    let shown = serde_json::to_string(&spec.argv).unwrap_or_default();
    let mut k = 0;
    loop {
        report.attempts += 1;
        let _ = tx.send(Event::Started {
            step: node.name.clone(),
            runs_on: shown.clone(),
            attempt: report.attempts,
        });
        if let Some(sim) = &shared.simulate_commands {
            // Dry run: say what would run, without running it.
            let req = CompletionRequest {
                model: "command".into(),
                system: None,
                prompt: spec.stdin.clone(),
                max_tokens: 64,
                temperature: None,
                output: structured_type(node).and_then(|t| OutputFormat::new(&node.name, t)),
                max_output_bytes: max_output_bytes(node),
            };
            let answer = sim.complete(&req).await;
            return match (structured_type(node), answer) {
                (Some(ty), Ok(c)) => command_output(node, ty, c.text),
                _ => Ok(StepOutput::text(format!("[simulated] would run {shown}"))),
            };
        }
        let message = |e: command::CommandError| match e {
            command::CommandError::TooLarge { program, .. } => {
                too_large_message(node, &format!("the stdout of `{program}`"))
            }
            e => e.to_string(),
        };
        let outcome = match node.timeout_ms {
            Some(ms) => {
                match tokio::time::timeout(Duration::from_millis(ms), command::run_command(spec))
                    .await
                {
                    Ok(r) => r.map_err(message),
                    Err(_) => Err(format!("attempt timed out after {}", format_duration(ms))),
                }
            }
            None => command::run_command(spec).await.map_err(message),
        };
        match outcome {
            Ok(out) => {
                return match structured_type(node) {
                    Some(ty) => command_output(node, ty, out.stdout),
                    None => Ok(StepOutput::text(out.stdout)),
                };
            }
            Err(e) if k < node.retry => {
                *last_error = Some(e.clone());
                limits::before_retry(k, None, fastrand::f64(), |delay_ms| {
                    let _ = tx.send(Event::Retrying {
                        step: node.name.clone(),
                        error: e,
                        delay_ms,
                    });
                })
                .await;
                k += 1;
            }
            Err(e) => {
                *last_error = Some(e.clone());
                return Err(e);
            }
        }
    }
}

/// A command's stdout as the value of its step's type.
///
/// # Errors
/// [`structured::mismatch_message`] when it is not one.
fn command_output(
    node: &PlanNode,
    ty: &crate::check::types::Type,
    stdout: String,
) -> Result<StepOutput, String> {
    structured::parse_as(&stdout, ty)
        .map(StepOutput::value)
        .map_err(|problems| structured::mismatch_message(&node.name, ty, &problems, &stdout))
}
