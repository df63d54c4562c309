//! Plan: a checked workflow → [`Plan`], the execution DAG the interpreter runs.
//!
//! The plan resolves every step to its agent, model, provider and policies, and computes
//! - **levels**: step `n` is on level `1 + max(level of its dependencies)`; the steps of one
//!   level can run together;
//! - the **critical path**: the longest chain of dependent steps (by number of steps, ties
//!   broken by worst-case cost), a lower bound on the number of rounds of model calls;
//! - **worst-case tokens and cost**: every attempt (`1 + retry`, and as many again on a
//!   fallback model) sends the system text, the prompt's literal text and every interpolated
//!   step output at its `max_tokens` bound, and receives `max_tokens`; parameters count as
//!   zero because their size is unknown before the run. Token counts of literal text are
//!   estimated at 4 characters per token;
//! - **peak concurrency**: the most steps in flight at once when every step takes the same
//!   time, honouring `parallel <max N>`.
//!
//! The plan is its own IR: [`lower`] turns the checker's graph into plan types once, and
//! what the interpreter evaluates — templates, conditions, `for` lists, `return` — is lowered
//! into [`ir`] with every name resolved to a parameter index, node or block id. Nothing in a
//! [`Plan`] is the checker's graph or the AST.
//!
//! [`render_dot`] and [`render_mermaid`] draw the DAG (`orch plan --format dot|mermaid`).
//!
//! The JSON form (`orch plan --format json`) is [`Plan`] serialized with serde; its shape is
//! documented in `docs/language.md` and only ever grows. Lowered values serialize as their
//! source text, as they always have; what only the interpreter needs is not serialized.

mod analysis;
pub mod budget;
pub mod diagram;
pub mod ir;
mod lower;
mod reduce;
pub mod render;
mod tools;
pub mod window;

use indexmap::IndexMap;
use serde::Serialize;

use crate::check::ProviderKind;
use crate::check::items::{ParamDef, ProviderDef};
use crate::check::workflow::WorkflowGraph;
use crate::common::{OnTruncated, Policy};
use crate::diag::Span;
pub use diagram::{render_dot, render_mermaid};
pub use ir::{
    Cond, CondExpr, ForList, GroupId, Interp, ListSource, NodeId, Operand, Ref, RegionId, Template,
    TemplatePart,
};
pub use lower::lower;
pub use render::render_text;

/// Tokens and USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// USD.
    pub cost_usd: f64,
}

impl std::ops::AddAssign for Estimate {
    fn add_assign(&mut self, o: Estimate) {
        // Saturating: bounds multiplied through nested regions can pass `u64::MAX`.
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cost_usd += o.cost_usd;
    }
}

/// How a plan node executes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlanExec {
    /// A model call.
    Model {
        /// The script's model name.
        model: String,
        /// The provider's model identifier.
        model_id: String,
        /// The provider's name.
        provider: String,
        /// The provider's API.
        provider_kind: ProviderKind,
        /// Fallback model name, if any.
        fallback: Option<String>,
        /// System text (`{param}` placeholders over the agent's parameters), if any.
        system: Option<Template>,
        /// Output-token limit.
        max_tokens: u32,
        /// The model's context window in tokens (its `context_window`), if declared.
        #[serde(skip_serializing_if = "Option::is_none")]
        context_window: Option<u32>,
        /// Sampling temperature.
        temperature: Option<f64>,
        /// The agent's tools, for an agent with `tools`: the step runs an agent loop.
        #[serde(skip_serializing_if = "Option::is_none")]
        tools: Option<PlanTools>,
    },
    /// A program run without a shell.
    Command {
        /// argv templates over the agent's parameters.
        argv: Vec<Template>,
        /// Environment templates over the agent's parameters.
        env: IndexMap<String, Template>,
        /// Working directory template over the agent's parameters.
        cwd: Option<Template>,
        /// `-> outcome`: the step's value is how the program exited (`{ ok, exit_code, stdout,
        /// stderr }`), and a non-zero exit does not fail it.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        outcome: bool,
    },
    /// A region (`parallel for`, `repeat`, `if`, a workflow call): runs its body, described
    /// in [`Plan::regions`].
    Region {
        /// Index in [`Plan::regions`].
        region: RegionId,
    },
    /// The variable of a `parallel for`: holds one item in each instance.
    Item,
    /// The built-in `approve("question")`: a person answers yes or no; the prompt is the
    /// question. Costs nothing.
    Approval,
}

/// What an agent with `tools` may use, and the bounds of its agent loop (docs/language.md,
/// "Tools").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanTools {
    /// The grants, as written on the agent, in order.
    pub grants: Vec<crate::grant::ToolGrant>,
    /// The most model turns of one loop (the agent's `max_turns`, 10 by default).
    pub max_turns: u32,
    /// Bound on one tool call, in milliseconds (the agent's `tool_timeout`); absent: the
    /// run's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_timeout_ms: Option<u64>,
}

/// An agent a step may delegate to with an `agent(NAME)` grant, run as a nested step.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDelegate {
    /// The agent's (possibly namespaced) name.
    pub agent: String,
    /// How it runs: always [`PlanExec::Model`] (a command agent cannot be delegated to).
    #[serde(flatten)]
    pub exec: PlanExec,
    /// Attempts after the first, per model call.
    pub retry: u32,
    /// Bound on one attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The longest answer of one attempt, in bytes; absent: the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u32>,
    /// The agent's `on_truncated` (absent in JSON: `warn`, the default).
    #[serde(skip_serializing_if = "OnTruncated::is_warn")]
    pub on_truncated: OnTruncated,
    /// Worst-case tokens and cost of one delegation to it (its whole loop).
    pub worst_case: Estimate,
    /// The defaults of the agent's parameters (a delegation gives only a prompt, so every
    /// parameter has one: checked), rendered as its arguments ([`Ref::Arg`] counts them).
    #[serde(skip)]
    pub defaults: IndexMap<String, String>,
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    /// Index in [`Plan::nodes`].
    pub id: NodeId,
    /// The step's name.
    pub name: String,
    /// The agent called.
    pub agent: String,
    /// How it runs.
    #[serde(flatten)]
    pub exec: PlanExec,
    /// The prompt template, if any.
    pub prompt: Option<Template>,
    /// Named arguments of the call (templates), in the call's order.
    pub args: IndexMap<String, Template>,
    /// The defaults of the agent's parameters that the call leaves out, in the agent's order:
    /// rendered after [`Self::args`], as if given ([`Ref::Arg`] counts across both).
    #[serde(skip)]
    pub defaults: IndexMap<String, String>,
    /// Steps that must finish first (deduplicated, by id).
    pub deps: Vec<NodeId>,
    /// Steps whose output this one interpolates.
    pub data_deps: Vec<NodeId>,
    /// 1-based level.
    pub level: usize,
    /// Attempts after the first.
    pub retry: u32,
    /// Bound on one attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Bound on the whole step (every attempt, backoff and fallback), in milliseconds.
    pub deadline_ms: Option<u64>,
    /// The agent's `max_output_bytes`, when it sets one: the longest output (answer, stdout)
    /// of one attempt, in bytes. Absent: [`crate::common::DEFAULT_MAX_OUTPUT_BYTES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u32>,
    /// The agent's `on_truncated`: what an answer cut off by the token limit does (absent in
    /// JSON: `warn`, the default).
    #[serde(skip_serializing_if = "OnTruncated::is_warn")]
    pub on_truncated: OnTruncated,
    /// Enclosing `parallel` blocks, outermost first.
    pub groups: Vec<GroupId>,
    /// For a `gather`: the joined block and its policy.
    pub join: Option<PlanJoin>,
    /// Whether its output comes from a model.
    pub tainted: bool,
    /// `-> T`: the structured output the step must produce; absent for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_type: Option<crate::check::types::Type>,
    /// The innermost region it is in (absent at the top of the workflow). Serialized as
    /// `in_region`: a region's own node has `region` for the region it stands for.
    #[serde(rename = "in_region", skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
    /// How many times it may run, at most, for one run of the workflow: the product of its
    /// regions' bounds (`repeat <max N>`, a literal `for` list's length); a `for` over a list
    /// known only at run time counts once.
    pub runs: u64,
    /// Worst-case tokens and cost of this step.
    pub worst_case: Estimate,
    /// Worst-case input tokens of one request of a model step: its system text and prompt,
    /// each interpolated step output at its `max_tokens` bound, parameters as zero (0 for
    /// other steps). With `max_tokens` it is what must fit the model's context window.
    pub prompt_tokens: u64,
    /// Source location: file, 1-based line and column.
    pub location: Location,
    /// Span, for runtime diagnostics.
    #[serde(skip)]
    pub span: Span,
    /// The innermost `parallel <batch>` block it is in: an index in [`Plan::batches`]. A
    /// model step's first attempt is then sent in its provider's batch, at the batch price
    /// ([`crate::common::BATCH_PRICE_FACTOR`]); its retries go out as ordinary requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

/// A `parallel <batch>` block (or `parallel <batch> for`): the model requests of its steps go
/// to their providers' batch APIs (docs/language.md, "Batches").
#[derive(Debug, Clone, Serialize)]
pub struct PlanBatch {
    /// Index in [`Plan::batches`].
    pub id: usize,
    /// `max N` of the block: the most requests in one batch (absent: as many as are ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// The longest a provider may take to end a batch, in milliseconds: 24 hours for both
    /// batch APIs ([`crate::common::BATCH_WINDOW_MS`]).
    pub window_ms: u64,
    /// The model steps inside (nested blocks included), by id.
    pub steps: Vec<NodeId>,
    /// Where the `batch` option is written.
    pub location: Location,
}

/// A `gather` join.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PlanJoin {
    /// The joined block.
    pub group: GroupId,
    /// The policy.
    pub policy: Policy,
}

/// A region of the plan: a part whose steps run zero, one or many times, as a unit.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRegion {
    /// Index in [`Plan::regions`].
    pub id: RegionId,
    /// `for`, `repeat`, `if` or `call`, with what drives it.
    #[serde(flatten)]
    pub kind: PlanRegionKind,
    /// The node standing for it.
    pub node: NodeId,
    /// The steps directly in each body.
    pub bodies: Vec<Vec<NodeId>>,
    /// Every step inside.
    pub members: Vec<NodeId>,
    /// Names visible after it, with their node in each body.
    pub exports: IndexMap<String, Vec<NodeId>>,
}

/// What a region does with its bodies. The JSON form shows each list and condition as its
/// source text; what only the interpreter needs is not serialized.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlanRegionKind {
    /// `name = parallel <max N> for var in LIST { ... }`: the body once per item, at most
    /// `max` at once; the region's value is the list of each instance's last step output.
    For {
        /// The list (JSON: its source text, `plan.tasks`, `[a, b]`).
        list: ForList,
        /// Items, when the list is written in the script (`None`: known at run time).
        items: Option<usize>,
        /// `max N`: instances in flight at once.
        max: Option<u32>,
        /// The loop variable's node (a [`PlanExec::Item`] in the body); `None` over agents.
        #[serde(skip)]
        var: Option<NodeId>,
        /// Each body's last step, whose output is the item's result.
        #[serde(skip)]
        results: Vec<NodeId>,
        /// The policy of the `gather` right after the block (absent without one): failed
        /// instances it tolerates are left out of the block's value.
        #[serde(skip_serializing_if = "Option::is_none")]
        gather: Option<Policy>,
    },
    /// `repeat <max N> { ... } until COND [else fail]`: the body until COND holds after an
    /// iteration, at most `max` times.
    Repeat {
        /// The bound on iterations.
        max: u32,
        /// The condition (JSON: as written), over the names after an iteration.
        until: Cond,
        /// `else fail`: stopping at `max` without `until` holding fails the loop (absent in
        /// JSON when not written).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        else_fail: bool,
    },
    /// `if COND { ... } else { ... }`: body 0 when COND holds, else body 1 (if any).
    If {
        /// The condition (JSON: as written).
        cond: Cond,
    },
    /// A workflow call, expanded: its body with the arguments bound.
    Call {
        /// The workflow.
        workflow: String,
        /// Its `return`, over the names of its body; without one, the value is the outputs of
        /// its last steps.
        #[serde(skip)]
        output: Option<Template>,
    },
}

/// A source location.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// A `parallel` block.
#[derive(Debug, Clone, Serialize)]
pub struct PlanGroup {
    /// Index in [`Plan::groups`].
    pub id: GroupId,
    /// Its name, if bound.
    pub name: Option<String>,
    /// `max N`.
    pub max: Option<u32>,
    /// `budget $X`: spending limit in USD of the steps inside (nested blocks included), on
    /// top of the workflow's budget.
    pub budget_usd: Option<f64>,
    /// Every step inside.
    pub members: Vec<NodeId>,
    /// Steps of each branch.
    pub branches: Vec<Vec<NodeId>>,
}

/// The execution plan of one workflow.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Workflow name.
    pub workflow: String,
    /// Its parameters (the run's inputs).
    pub params: Vec<ParamDef>,
    /// Spending limit in USD.
    pub budget_usd: Option<f64>,
    /// Steps in source order.
    pub nodes: Vec<PlanNode>,
    /// `parallel` blocks.
    pub groups: Vec<PlanGroup>,
    /// Regions: `parallel for`, `repeat`, `if` and workflow calls.
    pub regions: Vec<PlanRegion>,
    /// `parallel <batch>` blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<PlanBatch>,
    /// What the worst case cannot bound (a `for` over a list known only at run time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Steps by level (level 1 first).
    pub levels: Vec<Vec<NodeId>>,
    /// The longest chain of dependent steps, first to last.
    pub critical_path: Vec<NodeId>,
    /// The longest the critical path may wait for provider batches, in milliseconds: the
    /// batch window ([`crate::common::BATCH_WINDOW_MS`]) once for each batched step on it (a
    /// step's batch is submitted once the steps before it are answered, so batches on one
    /// chain do not overlap). Absent when none of its steps is batched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_path_batch_wait_ms: Option<u64>,
    /// Worst-case tokens and cost of the whole run.
    pub worst_case: Estimate,
    /// The most steps in flight at once (equal step durations, `max N` honoured).
    pub peak_concurrency: usize,
    /// Providers used, by name (no keys: only the variable names).
    pub providers: IndexMap<String, ProviderDef>,
    /// The `return` template, if any.
    pub output: Option<Template>,
    /// The MCP servers the plan's agents use, by declared name (started when first needed).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub mcp: IndexMap<String, crate::grant::McpServer>,
    /// The agents reachable by delegation (`agent(NAME)` grants, followed transitively), by
    /// name.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub delegates: IndexMap<String, PlanDelegate>,
    /// What each MCP server says of the tools granted from it, by server name: filled only
    /// by `orch plan --mcp`, which starts the servers to ask (a plan alone cannot know).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub mcp_tools: IndexMap<String, Vec<McpToolNote>>,
}

/// One MCP tool as its server describes it (MCP specification, "Tools", tool annotations:
/// `readOnlyHint`, `destructiveHint` — hints from the server, not guarantees).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpToolNote {
    /// The tool's name as the server lists it.
    pub name: String,
    /// `readOnlyHint`, when the server gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `destructiveHint`, when the server gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive: Option<bool>,
}

/// Picks the workflow to plan (the checker's [`crate::check::entry_workflow`], here too
/// because planning starts from it).
pub use crate::check::entry_workflow;

/// The planning stage's lints, over a program without errors (lowering assumes a well-formed
/// DAG): `W0803` ([`budget`]) and `W0804` ([`window`]), each workflow that needs them priced
/// once (lowered without its levels, critical path and peak concurrency, which they do not
/// read). Returns those priced plans, which [`Priced::plan`] finishes rather than lowering the
/// workflow again.
pub fn lint(program: &crate::check::Program, diags: &mut crate::diag::Diagnostics) -> Priced {
    let windows = window::has_windows(program);
    let mut reported = std::collections::HashSet::new();
    let mut priced = Vec::new();
    for (i, wf) in program.workflows.values().enumerate() {
        let budgets = budget::has_budgets(wf);
        if !budgets && !windows {
            continue;
        }
        let plan = lower::price(program, wf);
        if budgets {
            budget::check_budgets(wf, &plan, diags);
        }
        if windows {
            window::check_windows(program, &plan, &mut reported, diags);
        }
        priced.push((i, plan));
    }
    Priced(priced)
}

/// The workflows [`lint`] lowered as far as their costs, with their index in the program's
/// workflows: kept so that planning one of them finishes its plan instead of lowering it a
/// second time.
#[derive(Debug, Default)]
pub struct Priced(Vec<(usize, Plan)>);

impl Priced {
    /// The plan of workflow `wf` of `program`: the priced one completed when [`lint`] priced
    /// it, else lowered whole ([`lower`]); the same plan either way. `wf` is one of
    /// `program`'s workflows (found by identity, not by name).
    pub fn plan(mut self, program: &crate::check::Program, wf: &WorkflowGraph) -> Plan {
        let index = program.workflows.values().position(|w| std::ptr::eq(w, wf));
        let at = index.and_then(|i| self.0.iter().position(|(j, _)| *j == i));
        match at {
            Some(at) => {
                let mut plan = self.0.swap_remove(at).1;
                lower::complete(&mut plan);
                plan
            }
            None => lower(program, wf),
        }
    }
}

/// Estimated tokens of a text: 4 characters per token, rounded up (a common rule of thumb for
/// English with BPE tokenizers; only used for worst-case estimates, never for billing).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A script's entry workflow checked and planned, for unit tests; panics on errors.
#[cfg(test)]
pub(crate) fn plan_for_test(src: &str) -> (crate::check::Program, Plan) {
    let opts = crate::resolve::ResolveOptions::default();
    let (program, diags) = crate::compile_source("t.orch", src, std::path::Path::new("."), &opts);
    assert!(
        !diags.has_errors(),
        "{:?}",
        diags.iter().collect::<Vec<_>>()
    );
    let wf = entry_workflow(&program, None, Span::new(crate::diag::FileId(0), 0, 0))
        .expect("entry workflow");
    let plan = lower(&program, wf);
    (program, plan)
}
