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

mod calls;
mod control;
pub mod limits;

mod approval;
mod overrides;
mod taint;
mod typing;

pub use approval::APPROVE;

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
        /// Working directory.
        cwd: Option<String>,
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
    },
    /// `repeat <max N> { ... } until COND`: the body until COND holds after an iteration,
    /// at most `max` times; names of the body then hold the last iteration's values.
    Repeat {
        /// The bound on iterations.
        max: u32,
        /// The condition checked after each iteration.
        until: ast::Cond,
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
}

/// A `gather` join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// The `parallel` block joined.
    pub group: GroupId,
    /// The policy.
    pub policy: Policy,
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
    /// Every name: parameters, steps, named blocks.
    pub bindings: IndexMap<String, Binding>,
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
    fallback: Option<Ident>,
    /// Where the block options in force were written: `retry`, `timeout`, `fallback`.
    retry_span: Option<Span>,
    timeout_span: Option<Span>,
    deadline_span: Option<Span>,
    fallback_span: Option<Span>,
    groups: Vec<GroupId>,
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
    defined_at: IndexMap<String, Span>,
    pending: Vec<PendingRef>,
    /// Set after a `return`, so the next statement is reported as unreachable.
    returned: bool,
    /// Named arguments whose types are checked once every name is known:
    /// `(node, parameter, span of the value)`.
    arg_checks: Vec<(NodeId, String, Span)>,
    /// The regions being lowered, outermost first.
    path: Vec<InRegion>,
    /// Names standing for agents while a body is lowered: a `for` variable over agents, or
    /// an `agent` parameter of a pattern checked on its own.
    agent_alias: IndexMap<String, String>,
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
            bindings: IndexMap::new(),
            output: None,
            sequences: Vec::new(),
        },
        defined_at: IndexMap::new(),
        pending: Vec::new(),
        returned: false,
        arg_checks: Vec::new(),
        path: Vec::new(),
        agent_alias: IndexMap::new(),
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Workflow,
    Parallel,
    Step,
}

impl Place {
    fn allows(self, o: &OptKind) -> bool {
        match o {
            OptKind::Model(_)
            | OptKind::Retry(_)
            | OptKind::Timeout(_)
            | OptKind::Deadline(_)
            | OptKind::Fallback(_) => true,
            OptKind::Max(_) => self == Place::Parallel,
            OptKind::Budget(_) => self != Place::Step,
        }
    }
    fn option_place(self) -> OptionPlace {
        match self {
            Place::Workflow => OptionPlace::Workflow,
            Place::Parallel => OptionPlace::Parallel,
            Place::Step => OptionPlace::Step,
        }
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
        self.check_conditions();
    }

    // ------------------------------------------------------------------ options

    /// Validates options at `place` and applies them to `scope`. Returns a block's `max N` and
    /// `budget $X` (a workflow's budget goes to the graph).
    fn apply_options(
        &mut self,
        opts: &[Opt],
        scope: &mut Scope,
        place: Place,
    ) -> (Option<u32>, Option<f64>) {
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        let mut max = None;
        let mut budget = None;
        for o in opts {
            let kw = o.kind.keyword();
            if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == kw) {
                self.diags.push(
                    InvalidOption::Twice {
                        at: o.span,
                        keyword: kw,
                        first: *prev,
                    }
                    .into(),
                );
                continue;
            }
            seen.push((kw, o.span));
            if !place.allows(&o.kind) {
                self.diags.push(
                    InvalidOption::NotHere {
                        at: o.span,
                        keyword: kw,
                        place: place.option_place(),
                    }
                    .into(),
                );
                continue;
            }
            match &o.kind {
                OptKind::Model(m) => {
                    if self.known_model(m) {
                        scope.model = Some((m.clone(), o.span));
                        scope.model_unknown = false;
                    } else {
                        scope.model = None;
                        scope.model_unknown = true;
                    }
                }
                OptKind::Fallback(m) => {
                    if self.known_model(m) {
                        scope.fallback = Some(m.clone());
                        scope.fallback_span = Some(o.span);
                    }
                }
                OptKind::Retry(n) => {
                    scope.retry = Some(*n);
                    scope.retry_span = Some(o.span);
                }
                OptKind::Timeout(ms) => {
                    if *ms == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroTimeout { at: o.span }.into());
                    }
                    scope.timeout_ms = Some(*ms);
                    scope.timeout_span = Some(o.span);
                }
                OptKind::Deadline(ms) => {
                    if *ms == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroDeadline { at: o.span }.into());
                    }
                    scope.deadline_ms = Some(*ms);
                    scope.deadline_span = Some(o.span);
                }
                OptKind::Max(n) => {
                    if *n == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroMax { at: o.span }.into());
                    } else {
                        max = Some(*n);
                    }
                }
                OptKind::Budget(usd) if place == Place::Workflow => {
                    self.g.budget = Some(*usd);
                    self.g.budget_span = Some(o.span);
                }
                OptKind::Budget(usd) => budget = Some(*usd),
            }
        }
        (max, budget)
    }

    /// Reports an unknown model name; returns whether it is known.
    fn known_model(&mut self, m: &Ident) -> bool {
        if self.tables.models.contains_key(&m.name) {
            return true;
        }
        self.diags.push(self.tables.unknown_model(m));
        false
    }

    // ------------------------------------------------------------------ names

    fn bind(&mut self, name: &Ident, b: Binding) {
        // The same name in another branch of an `if` (or another agent's body of a `for`
        // over agents): one more definition, chosen by where it is used.
        if let (Some(Binding::Node(prev)), Binding::Node(new)) =
            (self.g.bindings.get(&name.name).copied(), b)
            && self.in_sibling_body(prev)
        {
            let defs = self.alt_defs.entry(name.name.clone()).or_default();
            if defs.is_empty() {
                defs.push(prev);
            }
            defs.push(new);
            return;
        }
        if let Some(prev) = self.defined_at.get(&name.name) {
            self.diags.push(
                DuplicateDefinition::Name {
                    at: name.span,
                    name: name.name.clone(),
                    workflow: self.g.name.clone(),
                    first: *prev,
                    first_is_param: matches!(
                        self.g.bindings.get(&name.name),
                        Some(Binding::Param(_))
                    ),
                }
                .into(),
            );
            return;
        }
        self.defined_at.insert(name.name.clone(), name.span);
        self.g.bindings.insert(name.name.clone(), b);
    }

    /// Whether node `prev` is in another body of a region being lowered now.
    fn in_sibling_body(&self, prev: NodeId) -> bool {
        for (x, y) in self.g.nodes[prev].regions.iter().zip(&self.path) {
            if x.region != y.region {
                return false;
            }
            if x.body != y.body {
                return true;
            }
        }
        false
    }

    // ------------------------------------------------------------------ statements

    /// Lowers a block; `entry` are the nodes every statement of it must wait for. Returns the
    /// nodes whose completion completes the block.
    fn block(
        &mut self,
        block: &ast::Block,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
    ) -> Vec<NodeId> {
        self.block_in(block, mode, entry, scope, None)
    }

    /// [`Self::block`]; `body_of` is the index in `self.path` of the region whose body this
    /// block is, whose statement counter it advances.
    fn block_in(
        &mut self,
        block: &ast::Block,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
        body_of: Option<usize>,
    ) -> Vec<NodeId> {
        let mut prev: Vec<Dep> = entry.to_vec();
        let mut all_exits = Vec::new();
        let mut last_parallel: Option<GroupId> = None;
        // Consecutive plain steps of this sequence (for the parallelisable-sequence lint).
        let mut run: Vec<NodeId> = Vec::new();
        for (i, stmt) in block.stmts.iter().enumerate() {
            if let Some(k) = body_of {
                self.path[k].stmt = i;
            }
            if self.returned {
                // Statements after `return` are reported once, at the first of them.
                self.diags
                    .push(MisplacedReturn::AfterReturn { at: stmt.span() }.into());
                self.returned = false;
            }
            let stmt_entry = if mode == Mode::Sequence {
                prev.clone()
            } else {
                entry.to_vec()
            };
            let (exits, group) = self.stmt(stmt, mode, &stmt_entry, scope, last_parallel);
            last_parallel = group;
            match (mode, stmt, exits.as_slice()) {
                (Mode::Sequence, Stmt::Step(_), [node]) => run.push(*node),
                _ => self.end_sequence_run(&mut run),
            }
            if let Stmt::Return(_) = stmt {
                continue;
            }
            let order_span = stmt.span();
            if mode == Mode::Sequence && !exits.is_empty() {
                prev = exits
                    .iter()
                    .map(|&n| Dep {
                        node: n,
                        kind: DepKind::Order,
                        span: order_span,
                    })
                    .collect();
            }
            all_exits.extend(exits);
        }
        self.end_sequence_run(&mut run);
        match mode {
            Mode::Sequence => prev.iter().map(|d| d.node).collect(),
            Mode::Parallel => all_exits,
        }
    }

    /// Records a finished run of consecutive steps when it has two or more.
    fn end_sequence_run(&mut self, run: &mut Vec<NodeId>) {
        if run.len() >= 2 {
            self.g.sequences.push(std::mem::take(run));
        } else {
            run.clear();
        }
    }

    /// Lowers one statement; returns its exit nodes and, for a `parallel`, its group.
    /// Nothing once a bound on expanding calls is reached (see [`limits`]).
    fn stmt(
        &mut self,
        stmt: &Stmt,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
        last_parallel: Option<GroupId>,
    ) -> (Vec<NodeId>, Option<GroupId>) {
        if self.limit.is_some() {
            return (Vec::new(), None);
        }
        if self.nesting >= limits::MAX_NESTING_DEPTH {
            self.reach(limits::Limit::Nesting, stmt.span());
            return (Vec::new(), None);
        }
        self.nesting += 1;
        let out = match stmt {
            Stmt::Step(s) => match self.workflow_key(&s.callee) {
                Some(key) => (vec![self.call(s, key, entry, scope)], None),
                None => (vec![self.step(s, entry, scope, None)], None),
            },
            Stmt::Then(b) => (self.block(b, Mode::Sequence, entry, scope), None),
            Stmt::Parallel(p) if p.for_each.is_some() => {
                let fe = p.for_each.as_ref().expect("checked above");
                (vec![self.parallel_for(p, fe, entry, scope)], None)
            }
            Stmt::Parallel(p) => {
                let (exits, g) = self.parallel(p, entry, scope);
                (exits, Some(g))
            }
            Stmt::Gather(gather) => {
                let join = match (mode, last_parallel) {
                    (Mode::Sequence, Some(group)) => Some(Join {
                        group,
                        policy: gather.policy,
                    }),
                    _ => {
                        self.diags.push(
                            MisplacedGather {
                                at: gather.keyword,
                                in_parallel: mode == Mode::Parallel,
                            }
                            .into(),
                        );
                        None
                    }
                };
                if let Some(j) = join {
                    self.check_policy(gather, j.group);
                }
                (vec![self.step(&gather.step, entry, scope, join)], None)
            }
            Stmt::Repeat(r) => (vec![self.repeat(r, entry, scope)], None),
            Stmt::If(i) => (vec![self.if_stmt(i, entry, scope)], None),
            Stmt::Return(r) => {
                self.returned = true;
                let t = value_template(&r.value);
                if !self.path.is_empty() && mode != Mode::Parallel {
                    self.diags
                        .push(MisplacedReturn::InRegion { at: r.span }.into());
                }
                if mode == Mode::Parallel {
                    self.diags
                        .push(MisplacedReturn::InParallel { at: r.span }.into());
                }
                self.check_template_refs(&t);
                self.g.output = Some(t);
                (Vec::new(), None)
            }
        };
        self.nesting -= 1;
        out
    }

    fn check_policy(&mut self, gather: &ast::Gather, group: GroupId) {
        let branches = self.g.groups[group].branches.len() as u32;
        let n = match gather.policy {
            Policy::First(n) | Policy::Min(n) => n,
            _ => return,
        };
        if n == 0 || n > branches {
            self.diags.push(
                ImpossibleValue::Policy {
                    at: gather.policy_span,
                    policy: gather.policy,
                    branches,
                    block: self.g.groups[group].span,
                }
                .into(),
            );
        }
    }

    fn parallel(
        &mut self,
        p: &ast::Parallel,
        entry: &[Dep],
        outer: &Scope,
    ) -> (Vec<NodeId>, GroupId) {
        let mut scope = outer.clone();
        let (max, budget) = self.apply_options(&p.options, &mut scope, Place::Parallel);
        let id = self.g.groups.len();
        self.g.groups.push(Group {
            id,
            name: p.name.as_ref().map(|n| n.name.clone()),
            span: p.keyword,
            max,
            budget,
            members: Vec::new(),
            branches: Vec::new(),
        });
        if let Some(name) = &p.name {
            self.bind(name, Binding::Group(id));
        }
        scope.groups.push(id);
        let first = self.g.nodes.len();
        let mut exits = Vec::new();
        for stmt in &p.body.stmts {
            let before = self.g.nodes.len();
            let (e, _) = self.stmt(stmt, Mode::Parallel, entry, &scope, None);
            exits.extend(e);
            self.g.groups[id]
                .branches
                .push((before..self.g.nodes.len()).collect());
        }
        self.g.groups[id].members = (first..self.g.nodes.len()).collect();
        if p.body.stmts.is_empty() {
            self.diags.push(
                EmptyParallel {
                    at: p.keyword,
                    is_for: false,
                }
                .into(),
            );
        }
        (exits, id)
    }

    fn step(&mut self, s: &ast::Step, entry: &[Dep], scope: &Scope, join: Option<Join>) -> NodeId {
        let id = self.g.nodes.len();
        self.bind(&s.name, Binding::Node(id));
        let mut step_scope = scope.clone();
        self.apply_options(&s.options, &mut step_scope, Place::Step);
        let call_model = s.options.iter().find_map(|o| match &o.kind {
            OptKind::Model(m) => Some((m.clone(), o.span)),
            _ => None,
        });
        let output_type = s
            .output
            .as_ref()
            .map(|t| super::types::resolve_type(t, self.diags));
        let (exec, agent_retry, agent_timeout, agent_name) = self.exec_for(s, scope, call_model);
        self.check_block_overrides(s, scope);
        let agent_deadline = self
            .tables
            .agents
            .get(&agent_name)
            .and_then(|a| a.deadline_ms);
        let default_retry = match exec {
            Exec::Model { .. } => DEFAULT_MODEL_RETRY,
            _ => 0,
        };
        let approval = matches!(exec, Exec::Approval);
        let (prompt, args, arg_spans) = if approval {
            self.approval_arguments(s)
        } else {
            self.arguments(s, &agent_name)
        };
        self.arg_checks
            .extend(arg_spans.into_iter().map(|(name, span)| (id, name, span)));
        let mut deps: Vec<Dep> = entry.to_vec();
        deps.retain(|d| d.node != id);
        self.push_node(Node {
            id,
            name: s.name.name.clone(),
            span: s.span,
            agent: agent_name,
            callee_span: s.callee.span,
            exec,
            prompt: prompt.clone(),
            args: args.clone(),
            deps,
            retry: step_scope_retry(s, agent_retry, scope, default_retry),
            timeout_ms: step_scope_timeout(s, agent_timeout, scope),
            deadline_ms: step_scope_deadline(s, agent_deadline, scope),
            groups: scope.groups.clone(),
            join,
            tainted: false,
            output_type,
            regions: self.path.clone(),
        });
        if approval {
            self.approval_step(id, s);
        }
        for t in prompt.iter().chain(args.values()) {
            for p in t.interps() {
                self.pending.push(PendingRef {
                    node: id,
                    path: p.clone(),
                    kind: DepKind::Data,
                    from: self.path.clone(),
                });
            }
        }
        for a in &s.after {
            let path = Path {
                root: a.clone(),
                fields: Vec::new(),
                span: a.span,
            };
            self.pending.push(PendingRef {
                node: id,
                path,
                kind: DepKind::After,
                from: self.path.clone(),
            });
        }
        id
    }

    /// The agent's execution, with the model resolved: call site `<m>`, then the agent's pin,
    /// then the innermost block's model. `approve` without an agent of that name is the
    /// built-in approval.
    fn exec_for(
        &mut self,
        s: &ast::Step,
        scope: &Scope,
        call_model: Option<(Ident, Span)>,
    ) -> (Exec, Option<u32>, Option<u64>, String) {
        let callee = &s.callee;
        let name = callee.dotted();
        let placeholder = Exec::Command {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: None,
        };
        let alias = callee
            .fields
            .is_empty()
            .then(|| self.agent_alias.get(&callee.root.name).cloned())
            .flatten();
        if alias.as_deref() == Some(control::GENERIC_AGENT)
            || callee.root.name == control::GENERIC_AGENT
        {
            // An `agent` parameter of a pattern checked on its own: the caller picks the
            // agent, and the call's expansion is checked with it.
            let generic = Exec::Model {
                model: String::new(),
                fallback: None,
                system: None,
                max_tokens: DEFAULT_MAX_TOKENS,
                temperature: None,
            };
            return (generic, None, None, control::GENERIC_AGENT.to_string());
        }
        let key = alias.or_else(|| self.agent_key(callee));
        let Some(agent) = key.as_ref().and_then(|k| self.tables.agents.get(k)) else {
            if approval::is_approve(callee) {
                return (Exec::Approval, None, None, name);
            }
            self.diags.push(self.tables.unknown_agent(callee));
            return (placeholder, None, None, name);
        };
        let exec = match &agent.kind {
            AgentKind::Command { argv, env, cwd } => {
                if let Some((m, span)) = &call_model {
                    self.diags.push(
                        ModelOnCommandAgent::Model {
                            at: *span,
                            agent: agent.name.clone(),
                            model: m.name.clone(),
                            declared: agent.name_span,
                        }
                        .into(),
                    );
                }
                if let Some(o) = s
                    .options
                    .iter()
                    .find(|o| matches!(o.kind, OptKind::Fallback(_)))
                {
                    self.diags.push(
                        ModelOnCommandAgent::Fallback {
                            at: o.span,
                            agent: agent.name.clone(),
                            declared: agent.name_span,
                        }
                        .into(),
                    );
                }
                Exec::Command {
                    argv: argv.iter().map(|(t, _)| t.clone()).collect(),
                    env: env.iter().map(|(k, t, _)| (k.clone(), t.clone())).collect(),
                    cwd: cwd.clone(),
                }
            }
            AgentKind::Model {
                model: pin,
                system,
                max_tokens,
                temperature,
                fallback,
            } => {
                let pin_known = pin
                    .as_ref()
                    .filter(|m| self.tables.models.contains_key(&m.name));
                let model = if let Some((m, _)) = &call_model {
                    Some(m.name.clone())
                } else if let Some(p) = pin_known {
                    if let Some((block_model, block_span)) = &scope.model
                        && block_model.name != p.name
                    {
                        self.diags.push(
                            BlockModelOverridden {
                                at: s.callee.span,
                                agent: agent.name.clone(),
                                pin: p.name.clone(),
                                pin_at: p.span,
                                block: block_model.name.clone(),
                                block_at: *block_span,
                            }
                            .into(),
                        );
                    }
                    Some(p.name.clone())
                } else if pin.is_some() {
                    None // The unknown pin is reported once, with the agent.
                } else {
                    scope.model.as_ref().map(|(m, _)| m.name.clone())
                };
                let model = match model {
                    Some(m) => m,
                    None => {
                        if pin.is_none() && !scope.model_unknown {
                            self.diags.push(
                                StepWithoutModel {
                                    at: s.callee.span,
                                    step: s.name.name.clone(),
                                    agent: agent.name.clone(),
                                    declared: agent.name_span,
                                }
                                .into(),
                            );
                        }
                        String::new()
                    }
                };
                let s_fallback = s.options.iter().find_map(|o| match &o.kind {
                    OptKind::Fallback(m) => Some(m.name.clone()),
                    _ => None,
                });
                let fallback = s_fallback
                    .or_else(|| {
                        fallback
                            .as_ref()
                            .filter(|m| self.tables.models.contains_key(&m.name))
                            .map(|m| m.name.clone())
                    })
                    .or_else(|| scope.fallback.as_ref().map(|m| m.name.clone()))
                    .filter(|f| *f != model);
                let model_max = self.tables.models.get(&model).and_then(|m| m.max_tokens);
                Exec::Model {
                    model,
                    fallback,
                    system: system.clone(),
                    max_tokens: max_tokens.or(model_max).unwrap_or(DEFAULT_MAX_TOKENS),
                    temperature: *temperature,
                }
            }
        };
        (exec, agent.retry, agent.timeout_ms, agent.name.clone())
    }

    /// Splits the call's arguments into the prompt and named arguments, checking them against
    /// the agent's parameters.
    fn arguments(
        &mut self,
        s: &ast::Step,
        agent_name: &str,
    ) -> (
        Option<Template>,
        IndexMap<String, Template>,
        IndexMap<String, Span>,
    ) {
        let agent = self.tables.agents.get(agent_name);
        let mut prompt = None;
        let mut args = IndexMap::new();
        // Where each named argument was first given.
        let mut given: IndexMap<String, Span> = IndexMap::new();
        // Where each accepted named argument's value is written.
        let mut value_spans: IndexMap<String, Span> = IndexMap::new();
        // Parameters that a misspelled argument was probably meant for.
        let mut meant: Vec<String> = Vec::new();
        for a in &s.args {
            let t = value_template(&a.value);
            match &a.name {
                None if prompt.is_none() => prompt = Some(t),
                None => self
                    .diags
                    .push(InvalidArguments::SecondPrompt { at: a.value.span }.into()),
                // `agent(prompt: "...")`: the prompt written as a named argument. Taken as the
                // prompt, so this is the only error instead of "no prompt" plus "no parameter".
                Some(n)
                    if n.name == "prompt"
                        && prompt.is_none()
                        && !s.args.iter().any(|a| a.name.is_none())
                        && agent
                            .is_some_and(|ag| !ag.params.iter().any(|p| p.name == "prompt")) =>
                {
                    self.diags.push(
                        InvalidArguments::PromptByName {
                            at: n.span,
                            agent: agent_name.to_string(),
                        }
                        .into(),
                    );
                    prompt = Some(t);
                }
                Some(n) => {
                    if let Some(agent) = agent
                        && !agent.params.iter().any(|p| p.name == n.name)
                    {
                        let params: Vec<&str> =
                            agent.params.iter().map(|p| p.name.as_str()).collect();
                        let suggestion = did_you_mean(&n.name, params.iter().copied());
                        if let Some(x) = suggestion {
                            meant.push(x.to_string());
                        }
                        self.diags.push(
                            InvalidArguments::NoSuchParameter {
                                at: n.span,
                                agent: agent_name.to_string(),
                                name: n.name.clone(),
                                declared: agent.name_span,
                                suggestion: suggestion.map(String::from),
                                params: params.iter().map(|p| p.to_string()).collect(),
                            }
                            .into(),
                        );
                    } else if let Some(first) = given.get(&n.name) {
                        self.diags.push(
                            InvalidArguments::GivenTwice {
                                at: n.span,
                                name: n.name.clone(),
                                first: Some(*first),
                            }
                            .into(),
                        );
                    } else {
                        given.insert(n.name.clone(), n.span);
                        value_spans.insert(n.name.clone(), a.value.span);
                        args.insert(n.name.clone(), t);
                    }
                }
            }
        }
        if let Some(agent) = agent {
            let missing: Vec<&str> = agent
                .params
                .iter()
                .filter(|p| {
                    p.default.is_none() && !args.contains_key(&p.name) && !meant.contains(&p.name)
                })
                .map(|p| p.name.as_str())
                .collect();
            if !missing.is_empty() {
                self.diags.push(
                    InvalidArguments::MissingArguments {
                        at: s.callee.span,
                        agent: agent_name.to_string(),
                        declared: agent.name_span,
                        missing: missing.iter().map(|m| m.to_string()).collect(),
                        with_prompt: prompt.is_some(),
                        command: matches!(agent.kind, AgentKind::Command { .. }),
                    }
                    .into(),
                );
            }
            if prompt.is_none() && matches!(agent.kind, AgentKind::Model { .. }) {
                self.diags.push(
                    InvalidArguments::NoPrompt {
                        at: s.callee.span,
                        step: s.name.name.clone(),
                        agent: agent_name.to_string(),
                    }
                    .into(),
                );
            }
        }
        (prompt, args, value_spans)
    }

    // ------------------------------------------------------------------ references

    fn check_template_refs(&mut self, t: &Template) {
        for p in t.interps() {
            self.pending.push(PendingRef {
                node: usize::MAX,
                path: p.clone(),
                kind: DepKind::Data,
                from: self.path.clone(),
            });
        }
    }

    /// Resolves every reference now that every name is known: adds data and `after` edges,
    /// reports undefined names and bad field accesses, and propagates taint.
    fn resolve_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for r in &pending {
            let Some(mut binding) = self.g.bindings.get(&r.path.root.name).copied() else {
                self.undefined(&r.path.root);
                continue;
            };
            if let Some(defs) = self.alt_defs.get(&r.path.root.name) {
                binding = Binding::Node(closest_definition(&self.g.nodes, defs, &r.from));
            }
            self.check_fields(&r.path, binding);
            let targets: Vec<NodeId> = match binding {
                Binding::Param(_) => Vec::new(),
                Binding::Node(n) => vec![n],
                Binding::Group(g) => {
                    let members = self.g.groups[g].members.clone();
                    if members.contains(&r.node) {
                        self.diags.push(
                            DependencyCycle::OwnBlock {
                                at: r.path.span,
                                step: self.g.nodes[r.node].name.clone(),
                                block: r.path.root.name.clone(),
                            }
                            .into(),
                        );
                        continue;
                    }
                    // `{block.step}` needs that step only; `{block}` needs every step.
                    match r
                        .path
                        .fields
                        .first()
                        .and_then(|f| self.g.member(g, &f.name))
                    {
                        Some(m) => vec![m],
                        None => members,
                    }
                }
            };
            // Across a region's edge, a step waits for the region (or may not see the name).
            let mut seen = Vec::new();
            for t in targets {
                if let Some(v) = self.visible_target(t, r)
                    && !seen.contains(&v)
                {
                    seen.push(v);
                }
            }
            // A region's own condition (`until`) reads its body: that is no input of it.
            if let Some(Exec::Region(rid)) = self.g.nodes.get(r.node).map(|n| &n.exec) {
                let members = &self.g.regions[*rid].members;
                seen.retain(|t| !members.contains(t));
            }
            let targets = seen;
            if r.node == usize::MAX {
                continue; // `return`: no node waits.
            }
            if r.kind == DepKind::After && matches!(binding, Binding::Param(_)) {
                self.diags.push(
                    UndefinedName::AfterParameter {
                        at: r.path.span,
                        name: r.path.root.name.clone(),
                    }
                    .into(),
                );
            }
            for t in targets {
                if t == r.node && r.kind != DepKind::Order {
                    self.diags.push(
                        DependencyCycle::OwnOutput {
                            at: r.path.span,
                            step: r.path.root.name.clone(),
                        }
                        .into(),
                    );
                    continue;
                }
                let dep = Dep {
                    node: t,
                    kind: r.kind,
                    span: r.path.span,
                };
                let node = &mut self.g.nodes[r.node];
                if !node.deps.iter().any(|d| d.node == t && d.kind == r.kind) {
                    node.deps.push(dep);
                }
            }
        }
    }

    /// What a reference to node `t` waits for: `t` itself; the region around `t` when the
    /// reference is outside it (a `repeat`'s or `if`'s exported name); nothing for a value
    /// of the previous iteration of a `repeat`, or when `t` is out of reach (reported).
    fn visible_target(&mut self, t: NodeId, r: &PendingRef) -> Option<NodeId> {
        let tr = self.g.nodes[t].regions.clone();
        let from = &r.from;
        let mut k = 0;
        while k < tr.len()
            && k < from.len()
            && tr[k].region == from[k].region
            && tr[k].body == from[k].body
        {
            k += 1;
        }
        if k == tr.len() {
            // In reach. Inside a `repeat`, a name defined by a later statement of the body is
            // the previous iteration's value: no wait.
            let prev = (0..k)
                .rev()
                .find(|&j| matches!(self.g.regions[tr[j].region].kind, RegionKind::Repeat { .. }));
            if let Some(j) = prev
                && (tr[j].stmt > from[j].stmt || t == r.node)
                && r.kind == DepKind::Data
            {
                return None;
            }
            return Some(t);
        }
        let rid = tr[k].region;
        let name = r.path.root.name.clone();
        let region = &self.g.regions[rid];
        let inner_for = tr[k..]
            .iter()
            .find(|x| matches!(self.g.regions[x.region].kind, RegionKind::For { .. }))
            .map(|x| x.region);
        if k < from.len() && from[k].region == rid {
            self.diags.push(
                UndefinedName::InOtherBranch {
                    at: r.path.span,
                    name,
                    definition: self.g.nodes[t].span,
                }
                .into(),
            );
            return None;
        }
        if let Some(f) = inner_for {
            let list = self.g.nodes[self.g.regions[f].node].name.clone();
            let named = self.g.bindings.get(&list) == Some(&Binding::Node(self.g.regions[f].node));
            self.diags.push(
                UndefinedName::InsideFor {
                    at: r.path.span,
                    name,
                    block: self.g.regions[f].span,
                    list: named.then_some(list),
                }
                .into(),
            );
            return None;
        }
        match &region.kind {
            RegionKind::If { .. } if !region.exports.contains_key(&name) => {
                let if_at = region.span;
                self.diags.push(
                    UndefinedName::InOneBranch {
                        at: r.path.span,
                        name,
                        if_at,
                    }
                    .into(),
                );
                None
            }
            _ => Some(region.node),
        }
    }

    /// Every region waits for what its steps use from outside it (inner regions first, so
    /// an outer region gets its inner regions' inputs too).
    fn lift_region_deps(&mut self) {
        for rid in (0..self.g.regions.len()).rev() {
            let node = self.g.regions[rid].node;
            let members: std::collections::HashSet<NodeId> =
                self.g.regions[rid].members.iter().copied().collect();
            let mut extra = Vec::new();
            for &m in &members {
                for d in &self.g.nodes[m].deps {
                    if !members.contains(&d.node) && d.node != node {
                        extra.push(*d);
                    }
                }
            }
            let deps = &mut self.g.nodes[node].deps;
            for d in extra {
                if !deps.iter().any(|x| x.node == d.node) {
                    deps.push(Dep {
                        kind: DepKind::Data,
                        ..d
                    });
                }
            }
        }
    }

    fn undefined(&mut self, name: &Ident) {
        let names: Vec<String> = self.g.bindings.keys().cloned().collect();
        let suggestion =
            did_you_mean(&name.name, names.iter().map(String::as_str)).map(String::from);
        self.diags.push(
            UndefinedName::InWorkflow {
                at: name.span,
                name: name.name.clone(),
                workflow: self.g.name.clone(),
                suggestion,
                is_agent: self.tables.agents.contains_key(&name.name),
                names,
            }
            .into(),
        );
    }

    /// `{a.b}`: only records, json values and named blocks have fields.
    fn check_fields(&mut self, path: &Path, binding: Binding) {
        let Some(first) = path.fields.first() else {
            return;
        };
        match binding {
            Binding::Param(i) => {
                let ty = self.g.params[i].ty.clone();
                self.check_field_path(path, ty);
            }
            Binding::Node(n) => {
                let ty = self.node_type(n);
                self.check_field_path(path, ty);
            }
            Binding::Group(g) => {
                let members: Vec<String> = self.g.groups[g]
                    .members
                    .iter()
                    .map(|&n| self.g.nodes[n].name.clone())
                    .collect();
                if !members.contains(&first.name) {
                    self.diags.push(
                        InvalidFieldAccess::NoSuchStep {
                            at: first.span,
                            block: path.root.name.clone(),
                            step: first.name.clone(),
                            suggestion: did_you_mean(
                                &first.name,
                                members.iter().map(String::as_str),
                            )
                            .map(String::from),
                            steps: members,
                        }
                        .into(),
                    );
                } else if path.fields.len() > 1 {
                    self.diags.push(
                        InvalidFieldAccess::StepOutputIsText {
                            at: path.fields[1].span,
                            block: path.root.name.clone(),
                            step: first.name.clone(),
                        }
                        .into(),
                    );
                }
            }
        }
    }

    /// Walks `path`'s fields from a value of type `ty`, reporting the first that is not there.
    fn check_field_path(&mut self, path: &Path, mut ty: Type) {
        let mut owner = path.root.name.clone();
        for f in &path.fields {
            match ty.field(&f.name) {
                Some(Some(t)) => ty = t,
                Some(None) => {
                    let fields: Option<Vec<String>> = match &ty {
                        Type::Record(fields) => {
                            Some(fields.iter().map(|(k, _)| k.clone()).collect())
                        }
                        _ => None,
                    };
                    let suggestion = fields.as_ref().and_then(|fields| {
                        did_you_mean(&f.name, fields.iter().map(String::as_str)).map(String::from)
                    });
                    self.diags.push(
                        InvalidFieldAccess::NoSuchField {
                            at: f.span,
                            owner,
                            field: f.name.clone(),
                            ty,
                            suggestion,
                            fields,
                        }
                        .into(),
                    );
                    return;
                }
                None => {
                    let root_is_param = matches!(
                        self.g.bindings.get(&path.root.name),
                        Some(Binding::Param(_))
                    );
                    self.diags.push(
                        InvalidFieldAccess::NoFields {
                            at: f.span,
                            owner,
                            field: f.name.clone(),
                            ty,
                            root: path.root.name.clone(),
                            root_is_param,
                        }
                        .into(),
                    );
                    return;
                }
            }
            owner = format!("{owner}.{}", f.name);
        }
    }

    // ------------------------------------------------------------------ cycles

    fn check_cycles(&mut self) {
        use petgraph::graph::DiGraph;
        let mut graph: DiGraph<NodeId, Dep> = DiGraph::new();
        let idx: Vec<_> = (0..self.g.nodes.len()).map(|i| graph.add_node(i)).collect();
        for n in &self.g.nodes {
            for d in &n.deps {
                graph.add_edge(idx[n.id], idx[d.node], *d);
            }
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            if scc.len() < 2 {
                continue;
            }
            let cycle = find_cycle(&graph, &scc);
            if cycle.is_empty() {
                continue;
            }
            let uses: Vec<&(NodeId, Dep)> = cycle
                .iter()
                .filter(|(_, d)| d.kind != DepKind::Order)
                .collect();
            if uses.len() == 1 && uses.len() < cycle.len() {
                // One use of a step that only runs later in the sequence.
                let (from, dep) = *uses[0];
                let (x, y) = (
                    self.g.nodes[from].name.clone(),
                    self.g.nodes[dep.node].name.clone(),
                );
                self.diags.push(
                    DependencyCycle::Later {
                        at: dep.span,
                        defined: self.defined_at.get(&y).copied(),
                        from: x,
                        to: y,
                        after: dep.kind == DepKind::After,
                    }
                    .into(),
                );
                continue;
            }
            // Sequence-order edges are shown at the earlier step's name, not its whole statement.
            let edge_span = |dep: &Dep| match dep.kind {
                DepKind::Order => self
                    .defined_at
                    .get(&self.g.nodes[dep.node].name)
                    .copied()
                    .unwrap_or(dep.span),
                _ => dep.span,
            };
            let edges = cycle
                .iter()
                .map(|(from, dep)| Edge {
                    at: edge_span(dep),
                    from: self.g.nodes[*from].name.clone(),
                    to: self.g.nodes[dep.node].name.clone(),
                    wait: match dep.kind {
                        DepKind::Data => Wait::Uses,
                        DepKind::After => Wait::After,
                        DepKind::Order => Wait::Sequence,
                    },
                })
                .collect();
            self.diags.push(DependencyCycle::Cycle { edges }.into());
        }
    }
}

/// Of several definitions of a name (one per branch), the one a use at `from` sees: the one
/// sharing the most regions and bodies with it.
fn closest_definition(nodes: &[Node], defs: &[NodeId], from: &[InRegion]) -> NodeId {
    let shared = |n: NodeId| {
        nodes[n]
            .regions
            .iter()
            .zip(from)
            .take_while(|(a, b)| a.region == b.region && a.body == b.body)
            .count()
    };
    defs.iter()
        .copied()
        .max_by_key(|&n| (shared(n), std::cmp::Reverse(n)))
        .unwrap_or(defs[0])
}

/// One cycle through the strongly connected component `scc`, as (node, edge to next) pairs.
fn find_cycle(
    graph: &petgraph::graph::DiGraph<NodeId, Dep>,
    scc: &[petgraph::graph::NodeIndex],
) -> Vec<(NodeId, Dep)> {
    use petgraph::visit::EdgeRef;
    use std::collections::{HashMap, VecDeque};
    let in_scc: std::collections::HashSet<_> = scc.iter().copied().collect();
    let start = *scc
        .iter()
        .min_by_key(|n| graph[**n])
        .expect("non-empty scc");
    // BFS from start's successors back to start, within the component.
    let mut parent: HashMap<petgraph::graph::NodeIndex, (petgraph::graph::NodeIndex, Dep)> =
        HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = std::collections::HashSet::from([start]);
    'bfs: while let Some(u) = queue.pop_front() {
        let mut edges: Vec<_> = graph
            .edges(u)
            .filter(|e| in_scc.contains(&e.target()))
            .collect();
        // Between the same two steps, prefer a data or `after` edge to a sequence-order one.
        edges.sort_by_key(|e| (graph[e.target()], e.weight().kind == DepKind::Order));
        for e in edges {
            let v = e.target();
            if v == start {
                parent.insert(start, (u, *e.weight()));
                break 'bfs;
            }
            if seen.insert(v) {
                parent.insert(v, (u, *e.weight()));
                queue.push_back(v);
            }
        }
    }
    let mut cycle = Vec::new();
    let mut v = start;
    while let Some((u, dep)) = parent.get(&v).copied() {
        cycle.push((graph[u], dep));
        v = u;
        if v == start || cycle.len() > scc.len() {
            break;
        }
    }
    cycle.reverse();
    cycle
}

fn step_scope_retry(s: &ast::Step, agent: Option<u32>, scope: &Scope, default: u32) -> u32 {
    s.options
        .iter()
        .find_map(|o| {
            if let OptKind::Retry(n) = o.kind {
                Some(n)
            } else {
                None
            }
        })
        .or(agent)
        .or(scope.retry)
        .unwrap_or(default)
}

fn step_scope_timeout(s: &ast::Step, agent: Option<u64>, scope: &Scope) -> Option<u64> {
    s.options
        .iter()
        .find_map(|o| {
            if let OptKind::Timeout(n) = o.kind {
                Some(n)
            } else {
                None
            }
        })
        .or(agent)
        .or(scope.timeout_ms)
}

fn step_scope_deadline(s: &ast::Step, agent: Option<u64>, scope: &Scope) -> Option<u64> {
    s.options
        .iter()
        .find_map(|o| {
            if let OptKind::Deadline(n) = o.kind {
                Some(n)
            } else {
                None
            }
        })
        .or(agent)
        .or(scope.deadline_ms)
}
