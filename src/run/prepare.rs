//! Before the first step: the inputs parsed by their parameters' types, the secrets the run
//! may meet registered for redaction, and one client per model the plan uses (with its
//! provider's limits), from the run's target.

use crate::common::FastMap;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::limits::ProviderLimits;
use super::provider::{self, ApiKey, Provider};
use super::render::{self, InputValue};
use super::{Approver, Endpoint, RunError, RunOptions, Target};
use crate::check::items::{ParamDef, ProviderDef};
use crate::check::{ModelDef, Price, ProviderKind};
use crate::plan::{Plan, PlanExec};

/// Registers the secrets a run may meet before it starts, so that even its first record is
/// redacted: the key of every provider the plan declares and of `--endpoint-key-env`, and,
/// when the plan runs commands, the variables they inherit whose names mark them as secrets
/// ([`crate::redact::is_secret_name`]).
pub(super) fn register_secrets(plan: &Plan, opts: &RunOptions) {
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

/// A step's client: a model provider with the identifier to request, or a command.
#[derive(Debug, Clone)]
pub(super) struct ModelClient {
    pub(super) provider: Provider,
    pub(super) provider_name: String,
    /// Where its calls go, as `attempt` records name it: the script's provider name,
    /// `simulator` under `--simulate`, the host of an `--endpoint` (redacted).
    pub(super) sent_to: String,
    pub(super) model_id: String,
    pub(super) price: Price,
    /// The rate limits of the provider (shared by every model it serves).
    pub(super) limits: Arc<ProviderLimits>,
    /// The model's context window in tokens, when the script declares it and requests go to
    /// the script's model (not to an `--endpoint`, whose model's window is not the script's).
    pub(super) context_window: Option<u32>,
    /// The first wait before a provider batch of this client's is polled
    /// ([`super::batch`]): the provider's `batch_poll`, 30 s by default; on the simulator a
    /// quarter of its latency (at least 1 ms).
    pub(super) batch_poll: Duration,
    /// Whether `parallel <batch>` requests go in its provider's batches: not to an
    /// `--endpoint` server (the local servers it is for have no batch API).
    pub(super) batchable: bool,
    /// Whether its answers come from a cassette (`--replay`).
    pub(super) replayed: bool,
}

/// Everything the tasks share.
pub(super) struct Shared {
    pub(super) clients: FastMap<String, ModelClient>,
    /// With [`RunOptions::keys_per_step`]: the models without a client because their
    /// provider's key is not set, and the words a step that calls one fails with.
    pub(super) missing_keys: FastMap<String, String>,
    pub(super) provider_limits: FastMap<String, Arc<Semaphore>>,
    pub(super) group_limits: Vec<Option<Arc<Semaphore>>>,
    pub(super) global: Option<Arc<Semaphore>>,
    pub(super) simulate_commands: Option<provider::sim::Sim>,
    pub(super) approver: Approver,
    pub(super) start: Instant,
    /// Whether `attempt` records and events keep the texts sent and received (not
    /// `--no-store-prompts`).
    pub(super) store_prompts: bool,
    /// Whether each model call is announced with an [`super::Event::Sending`]
    /// ([`super::RunOptions::sending_events`]).
    pub(super) sending_events: bool,
    /// What agent loops share: the workspace, the journal, the budgets, the delegates.
    pub(super) agents: super::agent::AgentEnv,
    /// With a journal: each model's identity, for cache keys (the same for every scheduler
    /// of the run, each instance of a region's body included).
    pub(super) identities: Option<super::cache_key::Identities>,
    /// The batchers of the `parallel <batch>` blocks ([`super::batch`]).
    pub(super) batches: super::batch::Batches,
}

/// The run's inputs, each parsed by its parameter's type ([`render::parse_input`]), defaults
/// filling those not given.
///
/// # Errors
/// [`RunError::Input`] listing every problem at once, one per line: inputs the workflow has
/// no parameter for, then the missing ones (in one line, with the flags to pass), then those
/// not of their type.
pub(super) fn parse_inputs(
    plan: &Plan,
    given: &IndexMap<String, String>,
) -> Result<IndexMap<String, InputValue>, RunError> {
    let mut problems: Vec<String> = given
        .keys()
        .filter(|k| !plan.params.iter().any(|p| &p.name == *k))
        .map(|k| unknown_input(plan, k))
        .collect();
    let mut missing = Vec::new();
    let mut ill_typed = Vec::new();
    let mut out = IndexMap::new();
    for p in &plan.params {
        let text = match (given.get(&p.name), &p.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => {
                missing.push(p);
                continue;
            }
        };
        match render::parse_input(&p.ty, &p.name, text) {
            Ok(v) => {
                out.insert(p.name.clone(), v);
            }
            Err(e) => ill_typed.push(format!("input `{}` ({}): {e}", p.name, p.ty)),
        }
    }
    if !missing.is_empty() {
        problems.push(missing_inputs(plan, &missing));
    }
    problems.extend(ill_typed);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(RunError::Input(problems.join("\n")))
    }
}

/// The problem of the inputs `missing` (in the workflow's order): every one, and the flags
/// that pass them.
fn missing_inputs(plan: &Plan, missing: &[&ParamDef]) -> String {
    let listed: Vec<String> = missing
        .iter()
        .map(|p| format!("`{}` ({})", p.name, p.ty))
        .collect();
    let flags: Vec<String> = missing
        .iter()
        .map(|p| format!("--input {}=...", p.name))
        .collect();
    let noun = if missing.len() == 1 {
        "input"
    } else {
        "inputs"
    };
    format!(
        "missing {noun} {} for workflow `{}`: pass `{}` (or `--input NAME=@FILE` to read a file)",
        listed.join(", "),
        plan.workflow,
        flags.join(" ")
    )
}

/// The problem of input `name` that the workflow has no parameter for, with a suggestion.
fn unknown_input(plan: &Plan, name: &str) -> String {
    let names: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
    let hint = match crate::diag::suggest::did_you_mean(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if names.is_empty() => "it takes no inputs".to_string(),
        None => format!("its inputs: {}", names.join(", ")),
    };
    format!(
        "workflow `{}` has no parameter `{name}`; {hint}",
        plan.workflow
    )
}

/// Builds one client per model used, reading keys from the environment, and the run's
/// semaphores (global, per block, per provider).
pub(super) fn prepare(
    plan: &Plan,
    models: &crate::common::NameMap<String, ModelDef>,
    opts: &RunOptions,
) -> Result<Shared, RunError> {
    let mut built = Clients {
        plan,
        opts,
        clients: FastMap::default(),
        http: FastMap::default(),
        limits: FastMap::default(),
        provider_limits: FastMap::default(),
        workspace: workspace(opts)?,
    };
    let mut missing_keys = FastMap::default();
    for m in models_used(plan) {
        if let Some(def) = models.get(m)
            && !built.clients.contains_key(m)
        {
            match built.client(m, def) {
                Ok(client) => {
                    built.clients.insert(m.clone(), client);
                }
                Err(e @ RunError::MissingKey { .. }) if opts.keys_per_step => {
                    missing_keys.insert(m.clone(), e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }
    let workspace = built.workspace.clone();
    let simulate_commands = match &opts.target {
        Target::Simulate {
            latency_ms,
            run_commands: false,
        } => Some(provider::sim::Sim::new(Duration::from_millis(*latency_ms))),
        _ => None,
    };
    // Cache keys are computed for a journal and for the cross-run cache.
    let identities = (opts.journal.is_some() || opts.cache.is_some())
        .then(|| super::cache_key::Identities::new(plan, &built.clients, &opts.target));
    Ok(Shared {
        identities,
        batches: super::batch::Batches::new(plan, opts.journal.as_ref()),
        clients: built.clients,
        missing_keys,
        provider_limits: built.provider_limits,
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
        store_prompts: !opts.no_store_prompts,
        sending_events: opts.sending_events,
        agents: super::agent::AgentEnv {
            workspace,
            journal: opts.journal.clone(),
            budgets: Arc::new(std::sync::Mutex::new(super::budget::Budgets::new(plan))),
            delegates: plan.delegates.clone(),
            mcp: None,
            cassette: match &opts.target {
                Target::Replay(c) => Some(c.clone()),
                _ => opts.record.clone(),
            },
        },
    })
}

/// The workspace of a run's tools: `--workspace`, else the current directory, canonical.
///
/// # Errors
/// [`RunError::Input`] when it does not exist or is not a directory.
pub(super) fn workspace(opts: &RunOptions) -> Result<std::path::PathBuf, RunError> {
    let given = match &opts.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| {
            RunError::Input(format!(
                "cannot read the current directory for the workspace ({e}); pass `--workspace DIR`"
            ))
        })?,
    };
    let canonical = std::fs::canonicalize(&given).map_err(|e| {
        RunError::Input(format!(
            "--workspace {}: {e}; pass an existing directory",
            given.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(RunError::Input(format!(
            "--workspace {}: not a directory; pass the directory the agents' tools may use",
            given.display()
        )));
    }
    Ok(canonical)
}

/// Every model a step may use (its own, then its fallback), in step order, then those of the
/// agents steps may delegate to, with repeats.
fn models_used(plan: &Plan) -> impl Iterator<Item = &String> {
    let delegated = plan.delegates.values().map(|d| &d.exec);
    plan.nodes
        .iter()
        .map(|n| &n.exec)
        .chain(delegated)
        .flat_map(|exec| {
            match exec {
                PlanExec::Model {
                    model, fallback, ..
                } => Some(std::iter::once(model).chain(fallback)),
                _ => None,
            }
            .into_iter()
            .flatten()
        })
}

/// The clients of a run as they are built: one provider client (HTTP connection pool,
/// simulator) and one set of rate limits per provider, shared by its models.
struct Clients<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    clients: FastMap<String, ModelClient>,
    /// Provider clients by provider name (`--endpoint` for the one endpoint).
    http: FastMap<String, Provider>,
    /// Rate limits by provider name (`--endpoint` for the one endpoint).
    limits: FastMap<String, Arc<ProviderLimits>>,
    /// `max_concurrency` of providers, by name.
    provider_limits: FastMap<String, Arc<Semaphore>>,
    /// The run's workspace, for simulators.
    workspace: std::path::PathBuf,
}

impl Clients<'_> {
    /// The client of model `m`.
    fn client(&mut self, m: &str, def: &ModelDef) -> Result<ModelClient, RunError> {
        // A checked plan lists the provider of every model it uses; never guess one.
        let pdef = self.plan.providers.get(&def.provider).ok_or_else(|| {
            RunError::Input(format!(
                "model `{m}` uses provider `{}`, which the plan does not declare",
                def.provider
            ))
        })?;
        let limits = self.rate_limits(pdef);
        let (provider, model_id) = match &self.opts.target {
            // A declared `kind: sim` provider keeps its own latency and failures.
            Target::Simulate { latency_ms, .. } => (
                simulator(
                    pdef.latency_ms.unwrap_or(*latency_ms),
                    pdef,
                    &self.workspace,
                ),
                def.api_name.clone(),
            ),
            Target::Endpoint(e) => (
                self.endpoint(e, &limits),
                e.model.clone().unwrap_or_else(|| def.api_name.clone()),
            ),
            Target::Script => (
                self.script_provider(m, pdef, &limits)?,
                def.api_name.clone(),
            ),
            Target::Replay(c) => (
                Provider::Replay(c.clone()),
                c.model(m).map_or_else(|| def.api_name.clone(), |r| r.id),
            ),
        };
        if let Some(limit) = pdef.max_concurrency {
            self.provider_limits
                .entry(pdef.name.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1) as usize)));
        }
        // A server given with --endpoint is not the script's provider: its tokens are not
        // billed at the script's prices, nor is its context window the script model's. A dry
        // run keeps them, to estimate; a replay does as the recorded run did.
        let priced = match &self.opts.target {
            Target::Endpoint(_) => false,
            Target::Replay(c) => c.model(m).is_none_or(|r| r.priced),
            Target::Script | Target::Simulate { .. } => true,
        };
        let provider = match &self.opts.record {
            Some(c) => {
                c.note_model(m, &model_id, priced)
                    .map_err(RunError::Input)?;
                Provider::Record(Box::new(provider), c.clone())
            }
            None => provider,
        };
        Ok(ModelClient {
            provider,
            provider_name: pdef.name.clone(),
            sent_to: match &self.opts.target {
                Target::Simulate { .. } => "simulator".to_string(),
                Target::Endpoint(e) => e.host(),
                Target::Script => pdef.name.clone(),
                Target::Replay(_) => "cassette".to_string(),
            },
            model_id,
            price: if priced { def.price } else { Price::default() },
            limits,
            context_window: if priced { def.context_window } else { None },
            batchable: !matches!(self.opts.target, Target::Endpoint(_)),
            replayed: matches!(self.opts.target, Target::Replay(_)),
            batch_poll: match &self.opts.target {
                Target::Simulate { latency_ms, .. } => {
                    Duration::from_millis((latency_ms / 4).max(1))
                }
                _ if pdef.kind == ProviderKind::Sim => {
                    Duration::from_millis((pdef.latency_ms.unwrap_or(0) / 4).max(1))
                }
                _ => pdef
                    .batch_poll_ms
                    .map_or(super::batch::DEFAULT_POLL, Duration::from_millis),
            },
        })
    }

    /// The rate limits of a provider, shared by every model it serves (every model shares
    /// those of the one `--endpoint`).
    fn rate_limits(&mut self, pdef: &ProviderDef) -> Arc<ProviderLimits> {
        let endpoint = matches!(self.opts.target, Target::Endpoint(_));
        let key = if endpoint { "--endpoint" } else { &pdef.name };
        self.limits
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(if endpoint {
                    // A server given with --endpoint is limited only by what its own headers
                    // say.
                    ProviderLimits::new(key, None, None)
                } else {
                    ProviderLimits::new(
                        &pdef.name,
                        pdef.requests_per_minute,
                        pdef.tokens_per_minute,
                    )
                })
            })
            .clone()
    }

    /// The one client of `--endpoint`.
    fn endpoint(&mut self, e: &Endpoint, limits: &Arc<ProviderLimits>) -> Provider {
        let opts = self.opts;
        self.http
            .entry("--endpoint".into())
            .or_insert_with(|| {
                let key = e.api_key_env.as_deref().and_then(|v| opts.read_key(v));
                Provider::OpenAi(
                    provider::openai::OpenAi::new(e.base_url.clone(), key.map(ApiKey::new))
                        .streaming(e.stream)
                        .with_limits(limits.clone()),
                )
            })
            .clone()
    }

    /// The client of a provider the script declares, with its key from the environment.
    fn script_provider(
        &mut self,
        model: &str,
        pdef: &ProviderDef,
        limits: &Arc<ProviderLimits>,
    ) -> Result<Provider, RunError> {
        let key = match pdef.key_env() {
            Some(var) => Some(ApiKey::new(self.opts.read_key(var).ok_or_else(|| {
                RunError::MissingKey {
                    var: var.to_string(),
                    provider: pdef.name.clone(),
                    model: model.to_string(),
                }
            })?)),
            None => None,
        };
        Ok(self
            .http
            .entry(pdef.name.clone())
            .or_insert_with(|| http_provider(pdef, key, limits, &self.workspace))
            .clone())
    }
}

/// The simulator standing for provider `pdef`, answering after `latency_ms`; its tool calls
/// read the run's `workspace`.
fn simulator(latency_ms: u64, pdef: &ProviderDef, workspace: &std::path::Path) -> Provider {
    Provider::Sim(
        provider::sim::Sim::new(Duration::from_millis(latency_ms))
            .with_failures(pdef.failures.unwrap_or(0))
            .with_workspace(workspace),
    )
}

/// The client of a declared provider, by its kind.
fn http_provider(
    pdef: &ProviderDef,
    key: Option<ApiKey>,
    limits: &Arc<ProviderLimits>,
    workspace: &std::path::Path,
) -> Provider {
    let idle = pdef
        .idle_timeout_ms
        .map_or(provider::DEFAULT_IDLE_TIMEOUT, Duration::from_millis);
    let stream = pdef.stream.unwrap_or(true);
    let url = |default: &str| pdef.base_url.clone().unwrap_or_else(|| default.into());
    match pdef.kind {
        ProviderKind::Sim => simulator(pdef.latency_ms.unwrap_or(0), pdef, workspace),
        ProviderKind::Openai => Provider::OpenAi(
            provider::openai::OpenAi::new(url(provider::openai::DEFAULT_BASE_URL), key)
                .streaming(stream)
                .idle_timeout(idle)
                .with_limits(limits.clone()),
        ),
        ProviderKind::Anthropic => Provider::Anthropic(
            provider::anthropic::Anthropic::new(
                url(provider::anthropic::DEFAULT_BASE_URL),
                key.unwrap_or_else(|| ApiKey::new("")),
            )
            .streaming(stream)
            .idle_timeout(idle)
            .with_limits(limits.clone()),
        ),
    }
}
