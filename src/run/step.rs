//! Running one step: its permits, every attempt, retry and fallback, a structured output's
//! parsing, all bounded by its `deadline`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::OwnedSemaphorePermit;

use super::agent::{self, Answer, LoopCx, LoopSpec, Toolbox, TurnModel};
use super::attempt;
use super::journal::AttemptRecord;
use super::prepare::{ModelClient, Shared};
use super::provider::{Completion, CompletionRequest, OutputFormat, ProviderError, StopReason};
use super::render::render_with_args;
use super::tools::BoxFuture;
use super::{
    Event, LoopReport, StepReport, StepStatus, approval, command, limits, provider, structured,
};
use crate::common::{MAX_TRUNCATED_RETRY_TOKENS, OnTruncated, format_duration, plural};
use crate::plan::render::thousands;
use crate::plan::{PlanExec, PlanNode, PlanTools, estimate_tokens};

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
pub(super) fn structured_type(node: &PlanNode) -> Option<&crate::check::types::Type> {
    node.output_type
        .as_ref()
        .filter(|t| **t != crate::check::types::Type::Text)
}

/// A step's call as rendered for one run of it.
pub(super) struct Call {
    /// The rendered prompt (a command's stdin, an approval's question).
    pub(super) prompt: String,
    /// The rendered arguments, then the defaults of the parameters the call leaves out.
    pub(super) args: IndexMap<String, String>,
    /// For a model step: the prompt's largest interpolation and its estimated tokens
    /// ([`super::render::Scope::largest_interp`]), named when the prompt does not fit.
    pub(super) largest: Option<(String, u64)>,
}

/// Runs one step to its end: every attempt, retry, fallback and (for `-> T`) the parsing and
/// checking of its answer — for an agent with `tools`, its whole agent loop — bounded by its
/// `deadline`. `key` is its cache key when the run has a journal.
pub(super) async fn execute(
    node: &PlanNode,
    call: Call,
    shared: &Shared,
    cap: Option<u32>,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    key: Option<String>,
) -> StepReport {
    let Call {
        prompt,
        args,
        largest,
    } = call;
    if let PlanExec::Approval = node.exec {
        // A person answers: no permits, attempts or fallback. (Boxed, like commands and
        // agent loops below: a model step's task should not carry their room.)
        return Box::pin(approval::execute(node, prompt, shared, tx)).await;
    }
    let _permits = permits(node, shared).await;
    let mut report = StepReport::starting(node, shared.start.elapsed().as_millis() as u64);
    // The last failed attempt's error, for the message when the deadline passes.
    let mut last_error: Option<String> = None;
    // An agent loop's report, kept out of `report` while the loop borrows it: a deadline may
    // drop the loop at any turn, and what it did so far is still reported.
    let mut looped: Option<LoopReport> = None;
    let work = async {
        let step = StepRun {
            node,
            shared,
            tx,
            report: &mut report,
            last_error: &mut last_error,
            origin: Origin {
                top: node,
                key,
                depth: 0,
                tree_cost: Arc::default(),
                cap,
                largest,
            },
        };
        match &node.exec {
            PlanExec::Model { .. } => on_models(step, prompt, &args, &mut looped).await,
            PlanExec::Command {
                argv,
                env,
                cwd,
                outcome,
            } => {
                step.report.model = Some("command".into());
                let spec = command::CommandSpec {
                    argv: argv.iter().map(|t| render_with_args(t, &args)).collect(),
                    env: env
                        .iter()
                        .map(|(k, t)| (k.clone(), render_with_args(t, &args)))
                        .collect(),
                    stdin: prompt,
                    cwd: cwd
                        .as_ref()
                        .map(|t| std::path::PathBuf::from(render_with_args(t, &args))),
                    max_stdout_bytes: Some(max_output_bytes(node)),
                    ..Default::default()
                };
                Box::pin(command_attempts(step, &spec, *outcome)).await
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
    close(&mut report, result, looped, shared);
    report
}

/// Ends a step's report: its end time, output or failure, and its agent loop (whose nested
/// steps' usage and cost become the step's too).
fn close(
    report: &mut StepReport,
    result: Result<StepOutput, String>,
    looped: Option<LoopReport>,
    shared: &Shared,
) {
    report.finished_ms = Some(shared.start.elapsed().as_millis() as u64);
    match result {
        Ok(mut out) => {
            // Kept until the run ends (and the text as the step's output): without the spare
            // room a streamed or assembled answer grew with.
            out.text.shrink_to_fit();
            report.output = Some(out.text);
            report.value = out.value;
            if report.truncated {
                report.warnings.push(format!(
                    "its answer was cut off at the token limit (stop reason `max_tokens`); raise `max_tokens` in agent `{}`, or set `on_truncated: retry` or `fail`",
                    report.agent
                ));
            }
        }
        Err(e) => report.status = StepStatus::Failed(e),
    }
    if let Some(l) = &looped {
        for nested in l.tool_calls.iter().filter(|c| !c.reused) {
            if let Some(d) = &nested.delegated {
                report.usage.add(d.usage);
                report.cost_usd += d.cost_usd;
            }
        }
    }
    report.agent_loop = looped;
}

/// Runs a nested step (a delegation, [`agent`]) for the loop `parent`, its system text rendered
/// with `args`: its model calls (with
/// their retries and fallback) or its own agent loop, without the permits of a workflow step
/// (its parent holds them) and bounded by its parent's deadline.
pub(super) fn run_nested<'a>(
    node: PlanNode,
    prompt: String,
    args: IndexMap<String, String>,
    parent: &'a LoopCx<'a>,
) -> BoxFuture<'a, StepReport> {
    Box::pin(async move {
        let shared = parent.shared;
        let mut report = StepReport::starting(&node, shared.start.elapsed().as_millis() as u64);
        let mut last_error = None;
        let mut looped = None;
        let step = StepRun {
            node: &node,
            shared,
            tx: parent.tx,
            report: &mut report,
            last_error: &mut last_error,
            origin: Origin {
                top: parent.top,
                key: parent.key.clone(),
                depth: parent.depth + 1,
                tree_cost: parent.tree_cost.clone(),
                cap: parent.cap,
                largest: None,
            },
        };
        let result = on_models(step, prompt, &args, &mut looped).await;
        close(&mut report, result, looped, shared);
        let _ = parent.tx.send(Event::Finished(Box::new(report.clone())));
        report
    })
}

/// The permits a step holds while it runs: the run's global limit, then its blocks'
/// outermost first (the provider's is taken per attempt, after these: one order, so no
/// deadlock).
async fn permits(node: &PlanNode, shared: &Shared) -> Vec<OwnedSemaphorePermit> {
    let mut held = Vec::new();
    let blocks = node
        .groups
        .iter()
        .filter_map(|&g| shared.group_limits[g].as_ref());
    // In a `parallel <batch>` block, a step that must wait for a permit is not one its
    // batch waits for: the steps holding the permits may be waiting for that batch.
    let batcher = node.batch.and_then(|b| shared.batches.get(b));
    for s in shared.global.iter().chain(blocks) {
        match s.clone().try_acquire_owned() {
            Ok(permit) => held.push(permit),
            Err(_) => {
                let _away = batcher.map(|b| b.away());
                held.extend(s.clone().acquire_owned().await.ok());
            }
        }
    }
    held
}

/// A model step: its attempts on its model, then (when they fail) on its fallback; for an
/// agent with `tools`, its agent loop.
async fn on_models(
    step: StepRun<'_>,
    prompt: String,
    args: &IndexMap<String, String>,
    looped: &mut Option<LoopReport>,
) -> Result<StepOutput, String> {
    let node = step.node;
    let PlanExec::Model {
        system,
        max_tokens,
        temperature,
        tools,
        ..
    } = &node.exec
    else {
        return Err("internal error: not a model step".into());
    };
    let cap = step.origin.cap;
    let base = CompletionRequest {
        model: String::new(),
        system: system.as_ref().map(|t| render_with_args(t, args)),
        prompt,
        max_tokens: cap.map_or(*max_tokens, |c| c.min(*max_tokens)),
        temperature: *temperature,
        output: node
            .output_type
            .as_ref()
            .and_then(|t| OutputFormat::new(&node.name, t)),
        max_output_bytes: max_output_bytes(node),
        ..Default::default()
    };
    match tools {
        // Boxed, as the call below: each level of async calls that moves its arguments on
        // holds them beside its callee's future, so a step's task grew by a factor of about
        // two per level (18.7 KB in all, held by every step in flight or waiting for a
        // permit); a box per level keeps it to what the level itself holds.
        None => Box::pin(with_fallback(step, &base)).await.map(|a| a.output),
        // Boxed: an agent loop's state is large, and a plain step (most of them, each a task
        // of its own while it runs) should not carry its room.
        Some(tools) => Box::pin(agent_step(step, base, tools, looped)).await,
    }
}

/// What a model call with fallback produced: the completion, its output (text, or the checked
/// value for a structured request), and the model that answered. For a plain request (every
/// turn of an agent loop is one), the answer's text has moved from the completion to the
/// output: a step's answer is not copied to be reported.
struct Answered {
    completion: Completion,
    output: StepOutput,
    model: String,
}

/// One model call of a step: its attempts on the step's model, then (when they fail) on its
/// fallback. `req.model` is set to each model's identifier.
async fn with_fallback(step: StepRun<'_>, req: &CompletionRequest) -> Result<Answered, String> {
    let mut step = step;
    let (node, shared, tx) = (step.node, step.shared, step.tx);
    let PlanExec::Model {
        model, fallback, ..
    } = &node.exec
    else {
        return Err("internal error: not a model step".into());
    };
    // Why the last model tried could not answer.
    let mut failure = "no model".to_string();
    for (i, m) in std::iter::once(model).chain(fallback.iter()).enumerate() {
        let Some(client) = shared.clients.get(m) else {
            // A worker without this provider's key (`keys_per_step`): this model cannot be
            // called here; a fallback may.
            if let Some(why) = shared.missing_keys.get(m) {
                failure.clone_from(why);
            }
            continue;
        };
        // A request that cannot fit is not sent: the next model (a fallback) may take it.
        let request = Request {
            system: req.system.as_deref(),
            prompt: &req.prompt,
            max_tokens: req.max_tokens,
            largest: step.origin.largest.as_ref(),
            loop_tokens: loop_tokens(req),
        };
        if let Err(e) = fits_window(node, m, client, &request) {
            failure = e;
            continue;
        }
        if i > 0 {
            let _ = tx.send(Event::FallingBack {
                step: node.name.clone(),
                model: m.clone(),
            });
        }
        // Boxed, as the attempts' state: held by every step in flight.
        let req = Box::new(CompletionRequest {
            model: client.model_id.clone(),
            ..req.clone()
        });
        step.report.model = Some(m.clone());
        let has_fallback = i == 0 && fallback.is_some();
        // Boxed: see `on_models`.
        let attempts = Box::pin(model_attempts(
            step.reborrow(),
            m,
            client,
            &req,
            has_fallback,
        ));
        match attempts.await {
            Ok((completion, output)) => {
                return Ok(Answered {
                    completion,
                    output,
                    model: m.clone(),
                });
            }
            Err(e) => failure = e,
        }
    }
    Err(failure)
}

/// A step of an agent with `tools`: its agent loop ([`agent::run_loop`]), then its output. For
/// `-> T`, the loop's prompt ends with the type's instructions, and a final answer that does
/// not parse as a `T` is given to the model once more, with the structured output asked as a
/// plain step asks it (no tools; its own retries on a mismatch).
async fn agent_step(
    step: StepRun<'_>,
    base: CompletionRequest,
    tools: &PlanTools,
    looped: &mut Option<LoopReport>,
) -> Result<StepOutput, String> {
    let mut step = step;
    let node = step.node;
    let mut first = base.clone();
    if let Some(format) = first.output.take() {
        first.prompt = format.prompt_with_instructions(&first.prompt);
    }
    let toolbox = Toolbox::build(&tools.grants, &step.shared.agents)
        .await
        .map_err(|e| format!("step `{}`: {e}", node.name))?;
    let cx = LoopCx {
        step: node.name.clone(),
        top: step.origin.top,
        key: step.origin.key.clone(),
        depth: step.origin.depth,
        shared: step.shared,
        tx: step.tx,
        tree_cost: step.origin.tree_cost.clone(),
        cap: step.origin.cap,
    };
    let spec = LoopSpec {
        first,
        max_turns: tools.max_turns,
        tool_timeout: agent::tool_timeout(tools.tool_timeout_ms),
        agent: node.agent.clone(),
    };
    let out = looped.get_or_insert_with(LoopReport::default);
    let text = {
        let mut model = StepModel {
            step: step.reborrow(),
        };
        agent::run_loop(&cx, &mut model, &spec, &toolbox, out).await?
    };
    let Some(ty) = structured_type(node) else {
        return Ok(StepOutput::text(text));
    };
    if let Ok(value) = structured::parse_as(&text, ty) {
        return Ok(StepOutput::value(value));
    }
    let mut req = base;
    req.prompt = format!(
        "{}\n\nWhat you found, using your tools:\n{text}",
        req.prompt
    );
    with_fallback(step, &req).await.map(|a| a.output)
}

/// An agent loop's model: the step's model calls, each with its retries and fallback.
struct StepModel<'s> {
    step: StepRun<'s>,
}

impl TurnModel for StepModel<'_> {
    fn complete<'a>(
        &'a mut self,
        req: &'a CompletionRequest,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let before = self.step.report.cost_usd;
            let a = with_fallback(self.step.reborrow(), req).await?;
            Ok(Answer {
                // The turn's text is back where the loop reads it (see `Answered`).
                completion: Completion {
                    text: a.output.text,
                    ..a.completion
                },
                cost_usd: self.step.report.cost_usd - before,
                model: a.model,
            })
        })
    }

    fn worst_usd(&self, req: &CompletionRequest) -> f64 {
        let PlanExec::Model { model, .. } = &self.step.node.exec else {
            return 0.0;
        };
        self.step.shared.clients.get(model).map_or(0.0, |c| {
            c.price.cost(request_tokens(req), u64::from(req.max_tokens))
        })
    }
}

/// The input tokens of a request, estimated at 4 characters a token: system text, prompt,
/// the turns so far and the tools offered.
fn request_tokens(req: &CompletionRequest) -> u64 {
    req.system.as_deref().map_or(0, estimate_tokens)
        + estimate_tokens(&req.prompt)
        + loop_tokens(req)
}

/// The estimated input tokens an agent loop adds to a request: its turns so far and the
/// tools offered (0 for a plain step).
fn loop_tokens(req: &CompletionRequest) -> u64 {
    let turns = if req.turns.is_empty() {
        0
    } else {
        estimate_tokens(&serde_json::to_string(&req.turns).unwrap_or_default())
    };
    let tools: u64 = req
        .tools
        .iter()
        .map(|t| {
            estimate_tokens(&t.spec.name)
                + estimate_tokens(&t.spec.description)
                + estimate_tokens(&t.spec.input_schema.to_string())
        })
        .sum();
    turns + tools
}

/// Checks that a request of `node` to model `m` fits the model's context window: its system
/// text and prompt, estimated at 4 characters a token ([`estimate_tokens`]), plus
/// `max_tokens` (the output the request asks room for) must be at most the window.
///
/// # Errors
/// For people, naming the step, the sizes, the window and the fixes; nothing was sent.
fn fits_window(
    node: &PlanNode,
    m: &str,
    client: &ModelClient,
    request: &Request<'_>,
) -> Result<(), String> {
    let Some(window) = client.context_window else {
        return Ok(());
    };
    let max_tokens = request.max_tokens;
    let input = request
        .system
        .map_or(0, estimate_tokens)
        .saturating_add(estimate_tokens(request.prompt))
        .saturating_add(request.loop_tokens);
    if input.saturating_add(u64::from(max_tokens)) <= u64::from(window) {
        return Ok(());
    }
    if request.loop_tokens > 0 {
        return Err(format!(
            "step `{}`: its agent loop's conversation is ~{} tokens (system text, prompt, the turns so far and the tool definitions, at 4 characters a token), which with `max_tokens` {} is more than the {}-token context window of model `{m}` ({}); nothing was sent. Lower `max_turns`, ask for less per turn, or use a model with a larger `context_window`",
            node.name,
            thousands(input),
            thousands(u64::from(max_tokens)),
            thousands(u64::from(window)),
            client.model_id
        ));
    }
    let largest = match request.largest {
        Some((path, tokens)) if *tokens > 0 => {
            format!(
                " (the largest value it interpolates is `{{{path}}}`, ~{} tokens)",
                thousands(*tokens)
            )
        }
        _ => String::new(),
    };
    Err(format!(
        "step `{}`: its prompt is ~{} tokens (system text and prompt at 4 characters a token), which with `max_tokens` {} is more than the {}-token context window of model `{m}` ({}); nothing was sent. Interpolate less{largest}, lower `max_tokens`, or use a model with a larger `context_window`",
        node.name,
        thousands(input),
        thousands(u64::from(max_tokens)),
        thousands(u64::from(window)),
        client.model_id
    ))
}

/// What one request of a model step holds, for [`fits_window`].
struct Request<'a> {
    /// The rendered system text.
    system: Option<&'a str>,
    /// The rendered prompt.
    prompt: &'a str,
    /// Output tokens asked for.
    max_tokens: u32,
    /// The prompt's largest interpolation and its estimated tokens.
    largest: Option<&'a (String, u64)>,
    /// In an agent loop: the estimated tokens of the turns so far and the tools offered.
    loop_tokens: u64,
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
        n => format!(
            "deadline of {} passed after {}{on}",
            format_duration(ms),
            plural(n, "attempt")
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
    origin: Origin<'a>,
}

/// Where a step's model calls come from: a step of the workflow, or a nested step a loop
/// delegated to ([`agent`]).
struct Origin<'a> {
    /// The workflow step: whose budgets apply.
    top: &'a PlanNode,
    /// Its cache key, with a journal.
    key: Option<String>,
    /// 0 for a workflow step; a nested step is one deeper than its parent.
    depth: u32,
    /// USD spent so far by the workflow step and every step nested under it.
    tree_cost: Arc<Mutex<f64>>,
    /// `--max-tokens`.
    cap: Option<u32>,
    /// The prompt's largest interpolation and its estimated tokens, named when a request does
    /// not fit its model's context window.
    largest: Option<(String, u64)>,
}

impl StepRun<'_> {
    /// The same step run, for one call that updates it.
    fn reborrow(&mut self) -> StepRun<'_> {
        StepRun {
            node: self.node,
            shared: self.shared,
            tx: self.tx,
            report: &mut *self.report,
            last_error: &mut *self.last_error,
            origin: Origin {
                top: self.origin.top,
                key: self.origin.key.clone(),
                depth: self.origin.depth,
                tree_cost: self.origin.tree_cost.clone(),
                cap: self.origin.cap,
                largest: self.origin.largest.clone(),
            },
        }
    }
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
) -> Result<(Completion, StepOutput), String> {
    let StepRun {
        node,
        shared,
        tx,
        report,
        last_error,
        origin,
    } = step;
    // Structured only when asked: an agent loop's turns are plain (see `agent_step`).
    let ty = first.output.as_ref().map(|f| &f.ty);
    // A retry's changed request (more tokens, or the type's instructions), boxed: this state
    // is held by every step in flight, and a request is 280 bytes.
    let mut changed: Option<Box<CompletionRequest>> = None;
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
    // An agent loop's turn: each earlier turn is an answer and its results.
    let turn = (!first.tools.is_empty()).then(|| first.turns.len() as u32 / 2 + 1);
    let mut tries = 0;
    let mut k = 0;
    // Since when the next attempt waits (backoff, permits, rate limits): its `wait_ms`.
    let mut waiting_since = std::time::Instant::now();
    loop {
        let req: &CompletionRequest = changed.as_deref().unwrap_or(first);
        // What a request counts against a tokens-per-minute limit: its input, estimated, and
        // its output bound.
        let tokens = request_tokens(req) + u64::from(req.max_tokens);
        // `parallel <batch>`: the first attempt on the step's own model goes in a provider
        // batch (a workflow step's, not a nested one's); retries are ordinary requests.
        let in_batch = match (&node.exec, node.batch) {
            (PlanExec::Model { model: own, .. }, Some(b))
                if tries == 0 && own == model && origin.depth == 0 =>
            {
                Some(b)
            }
            _ => None,
        };
        // Sent in a batch when the client has a batch API (a replayed cassette answers each
        // request by its identity, at the batch price it was recorded at; an `--endpoint`
        // server is asked request by request).
        let batch = in_batch
            .filter(|_| client.batchable)
            .and_then(|b| shared.batches.get(b))
            .zip(client.provider.batch_api());
        // A batched request waits in no provider line and counts against no rate limit: the
        // provider takes the whole batch at once.
        let _permit = match shared.provider_limits.get(&client.provider_name) {
            // The provider's permit is taken before the attempt's clock starts: waiting in line
            // for a provider is not part of a timeout, and the step counts as started once it
            // has one.
            Some(s) if batch.is_none() => s.clone().acquire_owned().await.ok(),
            _ => None,
        };
        // Rate limits, too, are waited for before the attempt's clock starts.
        if batch.is_none() {
            client.limits.acquire(tokens, &on_wait).await;
        }
        let price_factor = if in_batch.is_some() && (batch.is_some() || client.replayed) {
            crate::common::BATCH_PRICE_FACTOR
        } else {
            1.0
        };
        if report.attempts == 0 {
            report.started_ms = Some(shared.start.elapsed().as_millis() as u64);
        }
        report.attempts += 1;
        tries += 1;
        let attempt_no = if turn.is_some() {
            tries
        } else {
            report.attempts
        };
        let _ = tx.send(Event::Started {
            step: node.name.clone(),
            runs_on: model.to_string(),
            attempt: attempt_no,
            turn,
        });
        if batch.is_some() {
            let _ = tx.send(Event::Batched {
                step: node.name.clone(),
            });
        }
        let sent = attempt::sent_texts(req);
        attempt::sending(shared, tx, &node.name, model, attempt_no, turn, &sent);
        let wait_ms = waiting_since.elapsed().as_millis() as u64;
        let started_ms = shared.start.elapsed().as_millis() as u64;
        let attempt: std::pin::Pin<
            Box<dyn Future<Output = Result<Completion, ProviderError>> + Send + '_>,
        > = match batch {
            Some((batcher, api)) => Box::pin(batcher.submit(&node.name, client, api, req)),
            None => Box::pin(client.provider.complete_with_progress(req, &on_progress)),
        };
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
        waiting_since = std::time::Instant::now();
        // In a block of its own, so that the record (384 bytes) is not kept in the state
        // across the backoff below.
        {
            let mut rec = AttemptRecord {
                step: node.name.clone(),
                attempt: attempt_no,
                turn,
                model: model.to_string(),
                provider: client.sent_to.clone(),
                started_ms,
                finished_ms: shared.start.elapsed().as_millis() as u64,
                wait_ms,
                ..Default::default()
            };
            match &outcome {
                Ok(c) => {
                    rec.served_model = Some(c.model.clone());
                    rec.stop_reason = Some(attempt::stop_word(&c.stop));
                    rec.truncated = c.stop == StopReason::MaxTokens;
                    rec.usage = c.usage;
                    rec.cost_usd = client
                        .price
                        .cost(c.usage.input_tokens, c.usage.output_tokens)
                        * price_factor;
                    attempt::record(shared, tx, sent, Some(&c.text), rec);
                }
                Err(e) => {
                    rec.error = Some(e.message.clone());
                    attempt::record(shared, tx, sent, None, rec);
                }
            }
        }
        match outcome {
            Ok(mut c) => {
                report.usage.add(c.usage);
                report.cost_usd += client
                    .price
                    .cost(c.usage.input_tokens, c.usage.output_tokens)
                    * price_factor;
                report.served_model = Some(c.model.clone());
                report.truncated = c.stop == StopReason::MaxTokens;
                if report.truncated && node.on_truncated != OnTruncated::Warn {
                    let cut = truncated_message(node, model, req.max_tokens);
                    *last_error = Some(cut.clone());
                    let more = more_tokens(req.max_tokens, origin.cap);
                    match (node.on_truncated, more) {
                        (OnTruncated::Retry, Some(more)) if k < node.retry => {
                            drop(_permit);
                            let _ = tx.send(Event::Retrying {
                                step: node.name.clone(),
                                error: format!("{cut}; asking again with `max_tokens` {more}"),
                                delay_ms: 0,
                            });
                            let mut next = Box::new(req.clone());
                            next.max_tokens = more;
                            changed = Some(next);
                            k += 1;
                            continue;
                        }
                        _ => {
                            return Err(format!(
                                "{cut} (on `{model}`, attempt {}; `on_truncated: {}`)",
                                report.attempts,
                                on_truncated_word(node.on_truncated)
                            ));
                        }
                    }
                }
                let Some(ty) = ty else {
                    // The answer's text moves to the output, uncopied (see `Answered`).
                    let text = StepOutput::text(std::mem::take(&mut c.text));
                    return Ok((c, text));
                };
                let problems = match structured::parse_as(&c.text, ty) {
                    Ok(value) => return Ok((c, StepOutput::value(value))),
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
                changed = Some(Box::new(next));
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

/// The error of an answer cut off by the token limit, for people: the step, the model, the
/// limit, and the fixes.
fn truncated_message(node: &PlanNode, model: &str, max_tokens: u32) -> String {
    let or_retry = if node.on_truncated == OnTruncated::Retry {
        ""
    } else {
        ", or set `on_truncated: retry` to ask again with more"
    };
    format!(
        "step `{}`: the answer of `{model}` was cut off at `max_tokens` {max_tokens}; raise `max_tokens` in agent `{}`{or_retry}",
        node.name, node.agent
    )
}

/// The `max_tokens` of a retry after a cut-off answer: twice `now`, at most
/// [`MAX_TRUNCATED_RETRY_TOKENS`] and `--max-tokens`; `None` when that is no more than `now`.
fn more_tokens(now: u32, cap: Option<u32>) -> Option<u32> {
    let limit = cap.map_or(MAX_TRUNCATED_RETRY_TOKENS, |c| {
        c.min(MAX_TRUNCATED_RETRY_TOKENS)
    });
    let more = now.saturating_mul(2).min(limit);
    (more > now).then_some(more)
}

/// How `on_truncated` is written.
fn on_truncated_word(o: OnTruncated) -> &'static str {
    match o {
        OnTruncated::Warn => "warn",
        OnTruncated::Fail => "fail",
        OnTruncated::Retry => "retry",
    }
}

/// The attempts of a command step. With `-> T`, its stdout is parsed and checked like a
/// model's answer, but a mismatch fails the step at once: a program is not asked again with
/// instructions. A dry run (`--simulate` without `--run-commands`) answers with a sample
/// value of the type, or says what would run.
/// Runs a command step's attempts; with `outcome` (`-> outcome`) a non-zero exit is the
/// step's value, not a failure.
async fn command_attempts(
    step: StepRun<'_>,
    spec: &command::CommandSpec,
    outcome: bool,
) -> Result<StepOutput, String> {
    let StepRun {
        node,
        shared,
        tx,
        report,
        last_error,
        ..
    } = step;
    let shown = serde_json::to_string(&spec.argv).unwrap_or_default();
    let mut k = 0;
    loop {
        report.attempts += 1;
        let _ = tx.send(Event::Started {
            step: node.name.clone(),
            runs_on: shown.clone(),
            attempt: report.attempts,
            turn: None,
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
                ..Default::default()
            };
            if outcome {
                // A dry run succeeds: loops on `.ok` end, branches on it take the happy path.
                let exit = command::CommandExit {
                    output: command::CommandOutput {
                        stdout: format!("[simulated] would run {shown}"),
                        stderr: String::new(),
                    },
                    code: 0,
                };
                return Ok(StepOutput::value(outcome_value(exit)));
            }
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
        let attempt = async {
            // A cassette answers (`--replay`) or records (`--record`) the whole exit; the
            // step then judges it as `run_command` would.
            let cassette = shared.agents.cassette.as_deref();
            let exit = match cassette {
                Some(c) if c.is_replay() => c.command(spec)?,
                _ => {
                    let ended = command::run_to_exit(spec).await;
                    if let Some(c) = cassette {
                        c.note_command(spec, &ended)
                            .map_err(command::CommandError::Replayed)?;
                    }
                    ended?
                }
            };
            if outcome {
                Ok(exit)
            } else {
                let output = command::require_success(spec, exit)?;
                Ok(command::CommandExit { output, code: 0 })
            }
        };
        let ran = match node.timeout_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), attempt).await {
                Ok(r) => r.map_err(message),
                Err(_) => Err(format!("attempt timed out after {}", format_duration(ms))),
            },
            None => attempt.await.map_err(message),
        };
        match ran {
            Ok(exit) if outcome => return Ok(StepOutput::value(outcome_value(exit))),
            Ok(exit) => {
                return match structured_type(node) {
                    Some(ty) => command_output(node, ty, exit.output.stdout),
                    None => Ok(StepOutput::text(exit.output.stdout)),
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
/// A command's outcome as the value of `-> outcome` ([`crate::check::types::Type::outcome`]).
fn outcome_value(exit: command::CommandExit) -> serde_json::Value {
    serde_json::json!({
        "ok": exit.code == 0,
        "exit_code": exit.code,
        "stdout": exit.output.stdout,
        "stderr": exit.output.stderr,
    })
}

fn command_output(
    node: &PlanNode,
    ty: &crate::check::types::Type,
    stdout: String,
) -> Result<StepOutput, String> {
    structured::parse_as(&stdout, ty)
        .map(StepOutput::value)
        .map_err(|problems| structured::mismatch_message(&node.name, ty, &problems, &stdout))
}
