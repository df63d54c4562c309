//! Workflow analysis: a workflow body → [`WorkflowGraph`], the DAG of its steps.
//!
//! Lowering rules (docs/language.md, "How steps are ordered"):
//! - In a sequence (a workflow body or a `then` block) each statement starts after the
//!   previous one has finished ("order" edges).
//! - In a `parallel` block every statement is a branch that starts as soon as the block may
//!   start and the names it references are available ("data" edges), so sibling references
//!   make the block a DAG.
//! - `after a, b` adds ordering edges without data.
//! - `gather` joins the `parallel` block right before it under a policy.
//!
//! Along the way it checks names (undefined, duplicate), model assignment (call site, then
//! agent pin, then innermost block model), options, arguments and taint, and finally cycles.
//! This module holds the graph's types and [`lower`]; each job has a module of its own:
//! `graph` lowers statements into nodes and edges, `options` checks and scopes `< >`,
//! `arguments` matches a step's arguments with its agent, `references` resolves names once all
//! are known, `taint` follows model output, `cycles` finds dependency cycles; `calls`,
//! `control` (`for`, `repeat`, `if`), `approval`, `typing`, `overrides` and [`limits`] do
//! the rest. Their messages are worded in `check::error`.

mod arguments;
mod calls;
mod control;
mod cycles;
mod graph;
pub mod limits;
mod options;
mod references;

mod approval;
mod overrides;
mod taint;
mod typing;

pub use approval::APPROVE;
use options::{Place, step_scope_deadline, step_scope_retry, step_scope_timeout};
use references::closest_definition;

use indexmap::IndexMap;
use serde::Serialize;

use super::Tables;
use super::error::{
    BlockModelOverridden, DependencyCycle, DuplicateDefinition, Edge, EmptyParallel,
    ImpossibleValue, InvalidArguments, InvalidFieldAccess, InvalidOption, MisplacedGather,
    MisplacedReturn, ModelOnCommandAgent, OptionPlace, StepWithoutModel, UndefinedName, Wait,
};
use super::items::{AgentKind, ParamDef, value_template};
use super::types::Type;
use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostics, Span};
use crate::syntax::ast::{self, Ident, Opt, OptKind, Path, Policy, Stmt, Template};

/// Index of a node in [`WorkflowGraph::nodes`].
pub type NodeId = usize;
/// Index of a group in [`WorkflowGraph::groups`].
pub type GroupId = usize;
/// Index of a region in [`WorkflowGraph::regions`].
pub type RegionId = usize;

/// Why one node waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// It interpolates the other's output.
    Data,
    /// `after name`.
    After,
    /// It comes later in a sequence.
    Order,
}

/// An edge: this node needs `node` to finish first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep {
    /// The node waited for.
    pub node: NodeId,
    /// Why.
    pub kind: DepKind,
    /// Where the reason is written (the interpolation, the `after` name, the statement).
    pub span: Span,
}

/// How a node executes.
#[derive(Debug, Clone)]
pub enum Exec {
    /// A model call.
    Model {
        /// The script's model name (a key of the model table).
        model: String,
        /// Model to use when retries on `model` are exhausted.
        fallback: Option<String>,
        /// System text (may interpolate the agent's parameters).
        system: Option<Template>,
        /// Output-token limit.
        max_tokens: u32,
        /// Sampling temperature.
        temperature: Option<f64>,
    },
    /// A program run without a shell.
    Command {
        /// argv templates over the agent's parameters.
        argv: Vec<Template>,
        /// Environment variables.
        env: Vec<(String, Template)>,
        /// Working directory template over the agent's parameters.
        cwd: Option<Template>,
        /// `-> outcome`: the step's value is how the program exited, and a non-zero exit
        /// does not fail it.
        outcome: bool,
    },
    /// Stands for a region (`parallel for`, `repeat`, `if`, a workflow call) in the graph
    /// around it: running it runs the region's body.
    Region(RegionId),
    /// The variable of a `parallel for`: one item of the list in each instance of the body.
    Item,
    /// The built-in `approve("question")`: a person answers yes or no (docs/language.md,
    /// "Human approval"). The prompt is the question; the output is a `bool`.
    Approval,
}

/// Where a node sits among the regions around it: one entry per enclosing region,
/// outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InRegion {
    /// The region.
    pub region: RegionId,
    /// Which body of it (`if`: 0 then, 1 else; a `for` over a list of agents: one per item).
    pub body: usize,
    /// Index of the body's top-level statement that holds the node (orders `repeat` bodies).
    pub stmt: usize,
}

/// What a region does with its body.
#[derive(Debug, Clone)]
pub enum RegionKind {
    /// `name = parallel <max N> for var in LIST { ... }`: the body once per item, at most
    /// `max` at once; the region's value is the list of each instance's last step output.
    For {
        /// The loop variable's node (an [`Exec::Item`] in the body); `None` over agents.
        var: Option<NodeId>,
        /// The list: a literal or a reference.
        list: ListSource,
        /// `max N`: instances in flight at once.
        max: Option<u32>,
        /// Each body's last step, whose output is the item's result.
        results: Vec<NodeId>,
        /// The policy of the `gather` right after the block: which failed instances it
        /// tolerates, and when the block is done (docs/language.md, "`gather` policies").
        gather: Option<Policy>,
    },
    /// `repeat <max N> { ... } until COND`: the body until COND holds after an iteration,
    /// at most `max` times; names of the body then hold the last iteration's values.
    Repeat {
        /// The bound on iterations.
        max: u32,
        /// The condition checked after each iteration.
        until: ast::Cond,
        /// `else fail`: stopping at `max` without `until` holding fails the loop.
        else_fail: bool,
    },
    /// `if COND { ... } else { ... }`: body 0 when COND holds, else body 1 (if any).
    If {
        /// The condition.
        cond: ast::Cond,
    },
    /// A call of workflow `workflow`, expanded: its body with the arguments bound; the
    /// region's value is the rendered `return` template (or its last steps' outputs).
    Call {
        /// The workflow called.
        workflow: String,
        /// Its `return`, over the expanded (renamed) names.
        output: Option<Template>,
    },
}

/// The list of a `parallel for`.
#[derive(Debug, Clone)]
pub enum ListSource {
    /// `[a, b, c]` written in the script: one template per item.
    Literal(Vec<Template>),
    /// A parameter, step output or field of one (`plan.tasks`).
    Path(Path),
    /// Agents (a `list<agent>` argument of a pattern): one body per agent, lowered apart.
    Agents(Vec<String>),
}

/// A region: a part of a workflow whose steps run zero, one or many times, as a unit.
#[derive(Debug, Clone)]
pub struct Region {
    /// Its index.
    pub id: RegionId,
    /// What it does.
    pub kind: RegionKind,
    /// The node standing for it in the graph around it.
    pub node: NodeId,
    /// The nodes directly in each body (nested regions appear as their node), in order.
    pub bodies: Vec<Vec<NodeId>>,
    /// Every node inside, nested regions' included.
    pub members: Vec<NodeId>,
    /// Names defined inside that steps after the region may use, with their node in each
    /// body (`repeat`: every name of the body; `if`: names defined in every branch).
    pub exports: IndexMap<String, Vec<NodeId>>,
    /// Where it is written (its keyword).
    pub span: Span,
}

/// Default output-token limit when neither the agent nor the model sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Retries of a model step when neither the call, the agent nor a block sets `retry`: 2, the
/// default of the official SDKs (anthropic-sdk-python and openai-python, `DEFAULT_MAX_RETRIES`).
/// Command steps default to no retries.
pub const DEFAULT_MODEL_RETRY: u32 = 2;

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its index.
    pub id: NodeId,
    /// The name its output is bound to.
    pub name: String,
    /// The whole statement.
    pub span: Span,
    /// The agent called.
    pub agent: String,
    /// The agent's name at the call site (`reviewer` in `r = reviewer<opus>(...)`).
    pub callee_span: Span,
    /// How it executes.
    pub exec: Exec,
    /// The prompt (the positional argument), over the workflow's names.
    pub prompt: Option<Template>,
    /// Named arguments for the agent's parameters, over the workflow's names.
    pub args: IndexMap<String, Template>,
    /// What it waits for.
    pub deps: Vec<Dep>,
    /// Attempts after the first.
    pub retry: u32,
    /// Bound on one attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Bound on the whole step (every attempt, backoff and fallback), in milliseconds.
    pub deadline_ms: Option<u64>,
    /// For a step of an agent with `tools`: the most model turns of its agent loop, from the
    /// call's `<max_turns N>`, else the agent's `max_turns`, else the blocks'; `None` for any
    /// other step, or when none of them sets it (then
    /// [`crate::check::tools::DEFAULT_MAX_TURNS`]).
    pub max_turns: Option<u32>,
    /// Enclosing `parallel` blocks, outermost first.
    pub groups: Vec<GroupId>,
    /// For a `gather`: the block it joins and how.
    pub join: Option<Join>,
    /// Whether its output is produced by a model (directly or through its inputs).
    pub tainted: bool,
    /// The type of its output: `-> T` on a step, an item's type, a region's value; `None`
    /// for text.
    pub output_type: Option<Type>,
    /// The regions around it, outermost first (empty at the top of the workflow).
    pub regions: Vec<InRegion>,
    /// The innermost `parallel <batch>` block around it: an index in
    /// [`WorkflowGraph::batches`].
    pub batch: Option<usize>,
}

/// A `gather` join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// The `parallel` block joined.
    pub group: GroupId,
    /// The policy.
    pub policy: Policy,
}

/// A `parallel <batch>` block or `parallel <batch> for`: its steps' model requests go to
/// their providers' batch APIs (docs/language.md, "Batches").
#[derive(Debug, Clone)]
pub struct BatchBlock {
    /// Its index in [`WorkflowGraph::batches`].
    pub id: usize,
    /// The `batch` option.
    pub span: Span,
    /// `max N` of the block: the most requests of one batch.
    pub max: Option<u32>,
}

/// A `parallel` block.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its index.
    pub id: GroupId,
    /// Its name, when bound (`cart = parallel { ... }`).
    pub name: Option<String>,
    /// The `parallel` keyword.
    pub span: Span,
    /// `max N`.
    pub max: Option<u32>,
    /// `budget $X`: spending limit in USD of the steps inside (nested blocks included).
    pub budget: Option<f64>,
    /// Every node inside, in source order (nested blocks included).
    pub members: Vec<NodeId>,
    /// The nodes of each branch (each statement directly inside).
    pub branches: Vec<Vec<NodeId>>,
}

/// What a name in a workflow is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The i-th parameter.
    Param(usize),
    /// A step's output.
    Node(NodeId),
    /// A named `parallel` block's outputs.
    Group(GroupId),
}

/// A checked workflow: its steps as a DAG.
#[derive(Debug, Clone)]
pub struct WorkflowGraph {
    /// Its name.
    pub name: String,
    /// `///` doc comment.
    pub doc: Option<String>,
    /// The name's span.
    pub span: Span,
    /// Parameters (the run's inputs).
    pub params: Vec<ParamDef>,
    /// Spending limit in USD.
    pub budget: Option<f64>,
    /// Where `budget $X` is written.
    pub budget_span: Option<Span>,
    /// Steps in source order.
    pub nodes: Vec<Node>,
    /// `parallel` blocks in source order.
    pub groups: Vec<Group>,
    /// Regions (`parallel for`, `repeat`, `if`, workflow calls), outer before inner.
    pub regions: Vec<Region>,
    /// The `parallel <batch>` blocks (and `parallel <batch> for`), in source order.
    pub batches: Vec<BatchBlock>,
    /// Every name: parameters, steps, named blocks.
    pub bindings: crate::common::NameMap<String, Binding>,
    /// `return` value.
    pub output: Option<Template>,
    /// Runs of two or more steps written one after another in a sequence (a workflow body or
    /// a `then` block), each run in source order; the lints look for independent ones.
    pub sequences: Vec<Vec<NodeId>>,
}

impl WorkflowGraph {
    /// The step named `name` directly or deeper inside block `g`.
    pub fn member(&self, g: GroupId, name: &str) -> Option<NodeId> {
        self.groups[g]
            .members
            .iter()
            .copied()
            .find(|&m| self.nodes[m].name == name)
    }

    /// The steps whose outputs a reference reads: a step, one step of a block
    /// (`{block.step}`), or every step of a block (`{block}`); none for a parameter or an
    /// undefined name.
    pub fn referenced_nodes(&self, p: &Path) -> Vec<NodeId> {
        match self.bindings.get(&p.root.name) {
            Some(Binding::Node(n)) => vec![*n],
            Some(Binding::Group(g)) => {
                match p.fields.first().and_then(|f| self.member(*g, &f.name)) {
                    Some(m) => vec![m],
                    None => self.groups[*g].members.clone(),
                }
            }
            _ => Vec::new(),
        }
    }
}

/// The options in force in a block: the innermost block's model and inherited policies.
#[derive(Debug, Clone, Default)]
struct Scope {
    model: Option<(Ident, Span)>,
    /// The innermost block named a model that is not declared (already reported).
    model_unknown: bool,
    retry: Option<u32>,
    timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
    /// `max_turns N` of a block: the default for the agent loops inside.
    max_turns: Option<u32>,
    fallback: Option<Ident>,
    /// Where the block options in force were written: `retry`, `timeout`, `fallback`.
    retry_span: Option<Span>,
    timeout_span: Option<Span>,
    deadline_span: Option<Span>,
    fallback_span: Option<Span>,
    groups: Vec<GroupId>,
    /// The innermost `parallel <batch>` block around: an index in [`WorkflowGraph::batches`].
    batch: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sequence,
    Parallel,
}

/// A reference waiting to be resolved once every name is known.
struct PendingRef {
    node: NodeId,
    path: Path,
    kind: DepKind,
    /// The regions the reference is written in (which definition it sees, and whether it
    /// crosses a region's edge).
    from: Vec<InRegion>,
}

struct Lowerer<'a> {
    tables: &'a Tables,
    diags: &'a mut Diagnostics,
    g: WorkflowGraph,
    /// Where each name was bound.
    defined_at: crate::common::NameMap<String, Span>,
    pending: Vec<PendingRef>,
    /// Set after a `return`, so the next statement is reported as unreachable.
    returned: bool,
    /// Named arguments whose types are checked once every name is known:
    /// `(node, parameter, span of the value)`.
    arg_checks: Vec<(NodeId, String, Span)>,
    /// Value arguments of workflow calls, checked against their parameter's type once every
    /// name is known.
    call_arg_checks: Vec<CallArgCheck>,
    /// The regions being lowered, outermost first.
    path: Vec<InRegion>,
    /// Names standing for agents while a body is lowered: a `for` variable over agents, or
    /// an `agent` parameter of a pattern checked on its own.
    agent_alias: crate::common::NameMap<String, String>,
    /// `parallel for` variables whose item type is known once every name is.
    item_types: Vec<(NodeId, ast::Value)>,
    /// Conditions to type-check once every name is known, with where they are read.
    cond_checks: Vec<(ast::Cond, &'static str)>,
    /// Every definition of a name defined in more than one body of a region (`if` branches,
    /// a `for` over agents).
    alt_defs: IndexMap<String, Vec<NodeId>>,
    /// Workflows being expanded (calls in progress), with the call's span: recursion check.
    call_stack: Vec<(String, Span)>,
    /// Every workflow of the program, by table key (for calls).
    workflows: &'a IndexMap<String, &'a ast::Workflow>,
    /// What lowering the workflows before this one found: bounds reached, sizes, nodes.
    known: &'a limits::Expansion,
    /// The bound this lowering reached: it stops there.
    limit: Option<limits::LimitHit>,
    /// How deeply the statement being lowered is nested, calls' bodies included.
    nesting: usize,
    /// The workflows called by this workflow's own body.
    direct_calls: Vec<String>,
    /// How many unnamed regions of each kind (`if`, `repeat`, `for`) are named so far.
    unnamed: std::collections::HashMap<&'static str, usize>,
}

/// A value argument of a workflow call, to check against its parameter's type.
struct CallArgCheck {
    /// The argument as written (names renamed into the calling graph).
    value: ast::Value,
    /// The parameter's type.
    ty: Type,
    param: String,
    workflow: String,
    /// Where the parameter is declared.
    declared: Span,
}

/// A lowered workflow and what its lowering found out about calls.
#[derive(Debug)]
pub struct Lowered {
    /// Its graph (empty, but for its parameters, when `limit` is set).
    pub graph: WorkflowGraph,
    /// The workflows its own body calls, by table key.
    pub calls: Vec<String>,
    /// The bound on expanding calls that lowering reached, if any.
    pub limit: Option<limits::LimitHit>,
}

/// Lowers and checks one workflow. `workflows` are every workflow of the program by table
/// key, for calls of patterns; `expansion` what lowering the others found (bounds reached,
/// nodes made), which this one adds to.
pub fn lower(
    wf: &ast::Workflow,
    tables: &Tables,
    workflows: &IndexMap<String, &ast::Workflow>,
    expansion: &mut limits::Expansion,
    diags: &mut Diagnostics,
) -> Lowered {
    let params = super::items::params(&wf.params, diags);
    let mut l = Lowerer {
        tables,
        diags,
        g: WorkflowGraph {
            name: wf.name.name.clone(),
            doc: wf.doc.clone(),
            span: wf.name.span,
            params: params.clone(),
            budget: None,
            budget_span: None,
            nodes: Vec::new(),
            groups: Vec::new(),
            regions: Vec::new(),
            batches: Vec::new(),
            bindings: Default::default(),
            output: None,
            sequences: Vec::new(),
        },
        defined_at: Default::default(),
        pending: Vec::new(),
        returned: false,
        arg_checks: Vec::new(),
        call_arg_checks: Vec::new(),
        path: Vec::new(),
        agent_alias: Default::default(),
        item_types: Vec::new(),
        cond_checks: Vec::new(),
        alt_defs: IndexMap::new(),
        call_stack: vec![(wf.name.name.clone(), wf.name.span)],
        workflows,
        known: expansion,
        limit: None,
        nesting: 0,
        direct_calls: Vec::new(),
        unnamed: std::collections::HashMap::new(),
    };
    for (i, p) in params.iter().enumerate() {
        l.g.bindings.insert(p.name.clone(), Binding::Param(i));
        l.defined_at.insert(p.name.clone(), p.span);
        if p.ty == Type::Agent {
            // Its default must name an agent, whether or not a call leaves it out.
            let ast_p = wf.params.iter().find(|q| q.name.name == p.name);
            if let Some(d) = ast_p.and_then(|q| q.default.as_ref()) {
                l.check_agent_default(d, p, &wf.name.name);
            }
            // Checked on its own, a pattern calls whatever agent a caller will pass.
            l.agent_alias
                .insert(p.name.clone(), control::GENERIC_AGENT.to_string());
        }
    }
    let mut scope = Scope::default();
    l.apply_options(&wf.options, &mut scope, Place::Workflow);
    l.block(&wf.body, Mode::Sequence, &[], &scope);
    if l.limit.is_some() {
        // A partial expansion would only add follow-on errors: keep the parameters alone.
        l.g.nodes = Vec::new();
        l.g.groups = Vec::new();
        l.g.regions = Vec::new();
        l.g.sequences = Vec::new();
        l.g.output = None;
        l.g.bindings.retain(|_, b| matches!(b, Binding::Param(_)));
    } else {
        l.finish();
        l.check_return_type(wf);
        l.check_cycles();
    }
    let limit = l.limit.take();
    let calls = std::mem::take(&mut l.direct_calls);
    let graph = l.g;
    expansion.steps += graph.nodes.len();
    Lowered {
        graph,
        calls,
        limit,
    }
}

impl Lowerer<'_> {
    /// Resolves references and checks what needs every name: argument and condition types,
    /// item and region types, and each region's inputs.
    fn finish(&mut self) {
        // Types first: field accesses are checked while references are resolved.
        self.assign_region_types();
        self.resolve_pending();
        self.lift_region_deps();
        let origin = self.propagate_taint();
        self.check_argv_taint(&origin);
        self.check_arg_types();
        self.check_call_arg_types();
        self.check_conditions();
    }
}
