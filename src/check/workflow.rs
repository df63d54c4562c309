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

mod approval;
mod overrides;
mod typing;

pub use approval::APPROVE;

use indexmap::IndexMap;
use serde::Serialize;

use super::Tables;
use super::items::{AgentKind, ParamDef, value_text};
use super::suggest::did_you_mean;
use super::types::Type;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::syntax::ast::{
    self, Ident, Opt, OptKind, Path, Policy, Stmt, Template, TemplatePart, ValueKind,
};

/// Index of a node in [`WorkflowGraph::nodes`].
pub type NodeId = usize;
/// Index of a group in [`WorkflowGraph::groups`].
pub type GroupId = usize;

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
    /// The built-in `approve("question")`: a person answers yes or no (docs/language.md,
    /// "Human approval"). The prompt is the question; the output is a `bool`.
    Approval,
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
    /// `-> T`: the structured output the step must produce (`None`: text).
    pub output_type: Option<Type>,
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
}

/// Lowers and checks one workflow.
pub fn lower(wf: &ast::Workflow, tables: &Tables, diags: &mut Diagnostics) -> WorkflowGraph {
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
            bindings: IndexMap::new(),
            output: None,
            sequences: Vec::new(),
        },
        defined_at: IndexMap::new(),
        pending: Vec::new(),
        returned: false,
        arg_checks: Vec::new(),
    };
    for (i, p) in params.iter().enumerate() {
        l.g.bindings.insert(p.name.clone(), Binding::Param(i));
        l.defined_at.insert(p.name.clone(), p.span);
    }
    let mut scope = Scope::default();
    l.apply_options(&wf.options, &mut scope, Place::Workflow);
    l.block(&wf.body, Mode::Sequence, &[], &scope);
    l.resolve_pending();
    l.check_arg_types();
    l.check_return_type(wf);
    l.check_cycles();
    l.g
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
    fn describe(self) -> &'static str {
        match self {
            Place::Workflow => "a workflow",
            Place::Parallel => "a `parallel` block",
            Place::Step => "a step",
        }
    }
}

impl Lowerer<'_> {
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
                let message = if kw == "model" {
                    "two models are given in these options".to_string()
                } else {
                    format!("`{kw}` is given twice in these options")
                };
                self.diags.push(
                    Diagnostic::error("E0502", o.span, message)
                        .with_label("given again")
                        .with_secondary(*prev, "first given here")
                        .with_help("keep one of them"),
                );
                continue;
            }
            seen.push((kw, o.span));
            if !place.allows(&o.kind) {
                let help = match o.kind {
                    OptKind::Max(_) => {
                        "`max N` limits the branches of a `parallel` block; put it on the block"
                    }
                    OptKind::Budget(_) => {
                        "`budget $X` limits a workflow or a `parallel` block: `workflow main() <budget $2.00> { ... }`"
                    }
                    _ => "remove it",
                };
                self.diags.push(
                    Diagnostic::error(
                        "E0502",
                        o.span,
                        format!("`{kw}` is not an option of {}", place.describe()),
                    )
                    .with_label("not allowed here")
                    .with_help(help),
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
                        self.diags.push(
                            Diagnostic::error(
                                "E0503",
                                o.span,
                                "a timeout of zero would fail every attempt",
                            )
                            .with_label("zero")
                            .with_help("give a positive duration like `30s`"),
                        );
                    }
                    scope.timeout_ms = Some(*ms);
                    scope.timeout_span = Some(o.span);
                }
                OptKind::Deadline(ms) => {
                    if *ms == 0 {
                        self.diags.push(
                            Diagnostic::error(
                                "E0503",
                                o.span,
                                "a deadline of zero would fail every step",
                            )
                            .with_label("zero")
                            .with_help("give a positive duration like `10m`"),
                        );
                    }
                    scope.deadline_ms = Some(*ms);
                    scope.deadline_span = Some(o.span);
                }
                OptKind::Max(n) => {
                    if *n == 0 {
                        self.diags.push(
                            Diagnostic::error("E0503", o.span, "`max 0` would never run any branch")
                                .with_label("zero")
                                .with_help("use `max 1` to run the branches one at a time, or remove `max` for no limit"),
                        );
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
        if let Some(prev) = self.defined_at.get(&name.name) {
            let what = match self.g.bindings.get(&name.name) {
                Some(Binding::Param(_)) => "a parameter",
                _ => "a step",
            };
            self.diags.push(
                Diagnostic::error(
                    "E0205",
                    name.span,
                    format!(
                        "`{}` is defined twice in workflow `{}`",
                        name.name, self.g.name
                    ),
                )
                .with_label("defined again here")
                .with_secondary(*prev, format!("first defined here, as {what}"))
                .with_help("every name is defined once per workflow; rename one of them"),
            );
            return;
        }
        self.defined_at.insert(name.name.clone(), name.span);
        self.g.bindings.insert(name.name.clone(), b);
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
        let mut prev: Vec<Dep> = entry.to_vec();
        let mut all_exits = Vec::new();
        let mut last_parallel: Option<GroupId> = None;
        // Consecutive plain steps of this sequence (for the parallelisable-sequence lint).
        let mut run: Vec<NodeId> = Vec::new();
        for stmt in &block.stmts {
            if self.returned {
                // Statements after `return` are reported once, at the first of them.
                self.diags.push(
                    Diagnostic::error("E0505", stmt.span(), "statement after `return` never runs")
                        .with_label("unreachable")
                        .with_help("move `return` to the end of the workflow body"),
                );
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
    fn stmt(
        &mut self,
        stmt: &Stmt,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
        last_parallel: Option<GroupId>,
    ) -> (Vec<NodeId>, Option<GroupId>) {
        match stmt {
            Stmt::Step(s) => (vec![self.step(s, entry, scope, None)], None),
            Stmt::Then(b) => (self.block(b, Mode::Sequence, entry, scope), None),
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
                        let help = if mode == Mode::Parallel {
                            "inside `parallel` every statement is a branch; put the `gather` after the block"
                        } else {
                            "put `gather` right after the `parallel` block whose branches it joins"
                        };
                        self.diags.push(
                            Diagnostic::error(
                                "E0501",
                                gather.keyword,
                                "`gather` does not follow a `parallel` block",
                            )
                            .with_label("nothing to gather here")
                            .with_help(help),
                        );
                        None
                    }
                };
                if let Some(j) = join {
                    self.check_policy(gather, j.group);
                }
                (vec![self.step(&gather.step, entry, scope, join)], None)
            }
            Stmt::Repeat(_) | Stmt::If(_) => (Vec::new(), None), // TEMP: lowered in the next step
            Stmt::Return(r) => {
                self.returned = true;
                let t = match &r.value.kind {
                    ValueKind::Str(t) => t.clone(),
                    ValueKind::Path(p) => Template {
                        parts: vec![TemplatePart::Interp(p.clone())],
                    },
                    other => Template {
                        parts: vec![TemplatePart::Text(value_text(&ast::Value {
                            kind: other.clone(),
                            span: r.span,
                        }))],
                    },
                };
                if mode == Mode::Parallel {
                    self.diags.push(
                        Diagnostic::error("E0505", r.span, "`return` inside a `parallel` block")
                            .with_label("a branch cannot return")
                            .with_help("return after the block, at the end of the workflow body"),
                    );
                }
                self.check_template_refs(&t);
                self.g.output = Some(t);
                (Vec::new(), None)
            }
        }
    }

    fn check_policy(&mut self, gather: &ast::Gather, group: GroupId) {
        let branches = self.g.groups[group].branches.len() as u32;
        let n = match gather.policy {
            Policy::First(n) | Policy::Min(n) => n,
            _ => return,
        };
        if n == 0 || n > branches {
            let message = match gather.policy {
                Policy::First(0) => {
                    "`first 0` would cancel every branch before it runs".to_string()
                }
                Policy::Min(0) => "`min 0` is met even when every branch fails".to_string(),
                _ => format!(
                    "`{}` cannot be met by a block of {branches} {}",
                    gather.policy,
                    if branches == 1 { "branch" } else { "branches" }
                ),
            };
            let label = if n == 0 {
                "zero".to_string()
            } else {
                format!("needs {n} successful branches")
            };
            self.diags.push(
                Diagnostic::error("E0503", gather.policy_span, message)
                    .with_label(label)
                    .with_secondary(
                        self.g.groups[group].span,
                        format!(
                            "this block has {branches} {}",
                            if branches == 1 { "branch" } else { "branches" }
                        ),
                    )
                    .with_help(if branches == 0 {
                        "the block has no branches to gather".to_string()
                    } else {
                        format!(
                            "use a number from 1 to {branches}, or `all` to wait for every branch"
                        )
                    }),
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
                Diagnostic::error("E0506", p.keyword, "this `parallel` block has no branches")
                    .with_label("empty block")
                    .with_help("put at least one step inside, or remove the block"),
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
            Exec::Command { .. } | Exec::Approval => 0,
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
        self.g.nodes.push(Node {
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
        let Some(agent) = self
            .tables
            .agents
            .get(&callee.root.name)
            .filter(|_| callee.fields.is_empty())
        else {
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
                        Diagnostic::error(
                            "E0403",
                            *span,
                            format!("`{}` is a command agent; it takes no model", agent.name),
                        )
                        .with_label(format!("model `{}` given here", m.name))
                        .with_secondary(agent.name_span, "declared with `run:` here")
                        .with_help(format!(
                            "remove `{}` from the options: a command agent runs a program, not a model",
                            m.name
                        )),
                    );
                }
                if let Some(o) = s
                    .options
                    .iter()
                    .find(|o| matches!(o.kind, OptKind::Fallback(_)))
                {
                    self.diags.push(
                        Diagnostic::error(
                            "E0403",
                            o.span,
                            format!(
                                "`{}` is a command agent; it has no model to fall back from",
                                agent.name
                            ),
                        )
                        .with_label("`fallback` given here")
                        .with_secondary(agent.name_span, "declared with `run:` here")
                        .with_help("remove `fallback`; `retry N` re-runs a failed command"),
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
                            Diagnostic::warning(
                                "W0402",
                                s.callee.span,
                                format!("`{}` runs on `{}`, not on the block's model `{}`", agent.name, p.name, block_model.name),
                            )
                            .with_label(format!("runs on `{}`", p.name))
                            .with_secondary(p.span, format!("`{}` pins `{}` here", agent.name, p.name))
                            .with_secondary(*block_span, format!("the block asks for `{}`", block_model.name))
                            .with_help(format!(
                                "to use `{}`, write `{}<{}>(...)`; to keep `{}`, remove `{}` from the block's options",
                                block_model.name, agent.name, block_model.name, p.name, block_model.name
                            )),
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
                                Diagnostic::error("E0401", s.callee.span, format!("step `{}` has no model", s.name.name))
                                    .with_label(format!("`{}` pins no model and no block gives one", agent.name))
                                    .with_secondary(agent.name_span, "agent declared here")
                                    .with_help(format!(
                                        "pick one at the call (`{}<sonnet>(...)`), pin one in the agent (`model: sonnet`), or set one on an enclosing block (`parallel <sonnet> {{ ... }}`)",
                                        agent.name
                                    )),
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
            let t = match &a.value.kind {
                ValueKind::Str(t) => t.clone(),
                ValueKind::Path(p) => Template {
                    parts: vec![TemplatePart::Interp(p.clone())],
                },
                other => Template {
                    parts: vec![TemplatePart::Text(value_text(&ast::Value {
                        kind: other.clone(),
                        span: a.value.span,
                    }))],
                },
            };
            match &a.name {
                None if prompt.is_none() => prompt = Some(t),
                None => self.diags.push(
                    Diagnostic::error("E0211", a.value.span, "a step takes one prompt; this is a second one")
                        .with_label("extra argument")
                        .with_help("join the texts into one string, or pass named arguments (`name: value`) for the agent's parameters"),
                ),
                // `agent(prompt: "...")`: the prompt written as a named argument. Taken as the
                // prompt, so this is the only error instead of "no prompt" plus "no parameter".
                Some(n)
                    if n.name == "prompt"
                        && prompt.is_none()
                        && !s.args.iter().any(|a| a.name.is_none())
                        && agent.is_some_and(|ag| !ag.params.iter().any(|p| p.name == "prompt")) =>
                {
                    self.diags.push(
                        Diagnostic::error("E0211", n.span, "the prompt is passed without a name")
                            .with_label("`prompt:` is not a parameter")
                            .with_help(format!("drop `prompt:` and pass the text first: `{agent_name}(\"...\")`; names are for the agent's declared parameters")),
                    );
                    prompt = Some(t);
                }
                Some(n) => {
                    if let Some(agent) = agent
                        && !agent.params.iter().any(|p| p.name == n.name)
                    {
                        let mut d = Diagnostic::error("E0211", n.span, format!("agent `{agent_name}` has no parameter `{}`", n.name))
                            .with_label("unknown parameter")
                            .with_secondary(agent.name_span, "agent declared here");
                        d = match did_you_mean(&n.name, agent.params.iter().map(|p| p.name.as_str())) {
                            Some(x) => {
                                meant.push(x.to_string());
                                d.with_help(format!("did you mean `{x}`?"))
                            }
                            None if agent.params.is_empty() => d.with_help(format!(
                                "`{agent_name}` declares no parameters; to pass one, declare it (`agent {agent_name}({}: text) {{ ... }}`) and use `{{{}}}` in its fields",
                                n.name, n.name
                            )),
                            None => d.with_help(format!(
                                "its parameters: {}",
                                agent.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                            )),
                        };
                        self.diags.push(d);
                    } else if let Some(first) = given.get(&n.name) {
                        self.diags.push(
                            Diagnostic::error("E0211", n.span, format!("argument `{}` is given twice", n.name))
                                .with_label("given again")
                                .with_secondary(*first, "first given here")
                                .with_help("remove one of them"),
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
                let list = missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let (noun, it) = if missing.len() == 1 {
                    ("argument", "it")
                } else {
                    ("arguments", "them")
                };
                let mut help =
                    format!("pass {it} by name: `{agent_name}({}: \"...\")`", missing[0]);
                if prompt.is_some() {
                    let what = match agent.kind {
                        AgentKind::Command { .. } => "the prompt (the command's stdin)",
                        AgentKind::Model { .. } => "the prompt",
                    };
                    help.push_str(&format!(
                        "; an argument without a name is {what}, not a parameter"
                    ));
                }
                self.diags.push(
                    Diagnostic::error(
                        "E0211",
                        s.callee.span,
                        format!("call of `{agent_name}` is missing the {noun} {list}"),
                    )
                    .with_label(format!("missing {list}"))
                    .with_secondary(agent.name_span, format!("`{agent_name}` declared here"))
                    .with_help(help),
                );
            }
            if prompt.is_none() && matches!(agent.kind, AgentKind::Model { .. }) {
                self.diags.push(
                    Diagnostic::error(
                        "E0211",
                        s.callee.span,
                        format!(
                            "step `{}` gives agent `{agent_name}` no prompt",
                            s.name.name
                        ),
                    )
                    .with_label("no prompt")
                    .with_help(format!(
                        "say what the agent is asked: `{}(\"...\")`",
                        agent_name
                    )),
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
            });
        }
    }

    /// Resolves every reference now that every name is known: adds data and `after` edges,
    /// reports undefined names and bad field accesses, and propagates taint.
    fn resolve_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for r in &pending {
            let Some(binding) = self.g.bindings.get(&r.path.root.name).copied() else {
                self.undefined(&r.path.root);
                continue;
            };
            self.check_fields(&r.path, binding);
            if r.node == usize::MAX {
                continue; // `return`: no node waits.
            }
            let targets: Vec<NodeId> = match binding {
                Binding::Param(_) => Vec::new(),
                Binding::Node(n) => vec![n],
                Binding::Group(g) => {
                    let members = self.g.groups[g].members.clone();
                    if members.contains(&r.node) {
                        self.diags.push(
                            Diagnostic::error(
                                "E0301",
                                r.path.span,
                                format!(
                                    "step `{}` uses the block it is in",
                                    self.g.nodes[r.node].name
                                ),
                            )
                            .with_label(format!(
                                "`{}` includes this step's own output",
                                r.path.root.name
                            ))
                            .with_help(
                                "a branch can use its siblings by name, not the whole block",
                            ),
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
            if r.kind == DepKind::After && matches!(binding, Binding::Param(_)) {
                self.diags.push(
                    Diagnostic::error(
                        "E0201",
                        r.path.span,
                        format!("`{}` is a parameter, not a step", r.path.root.name),
                    )
                    .with_label("`after` names steps")
                    .with_help("parameters are available from the start; remove it"),
                );
            }
            for t in targets {
                if t == r.node && r.kind != DepKind::Order {
                    self.diags.push(
                        Diagnostic::error(
                            "E0301",
                            r.path.span,
                            format!("step `{}` uses its own output", r.path.root.name),
                        )
                        .with_label("refers to itself")
                        .with_help("a step can only use outputs of other steps"),
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
        self.propagate_taint();
        self.check_argv_taint();
    }

    fn undefined(&mut self, name: &Ident) {
        let mut d = Diagnostic::error(
            "E0201",
            name.span,
            format!(
                "`{}` is not defined in workflow `{}`",
                name.name, self.g.name
            ),
        )
        .with_label("not defined");
        let candidates: Vec<&str> = self.g.bindings.keys().map(String::as_str).collect();
        d = match did_you_mean(&name.name, candidates.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None if self.tables.agents.contains_key(&name.name) => d.with_help(format!(
                "`{0}` is an agent, not a value; call it in a step (`result = {0}(\"...\")`) and use `{{result}}`",
                name.name
            )),
            None if candidates.is_empty() => d.with_help(format!(
                "workflow `{}` defines no names; a name is a parameter, a step or a named `parallel` block",
                self.g.name
            )),
            None => d.with_help(format!(
                "a name is a parameter, a step or a named `parallel` block; `{}` defines {}",
                self.g.name,
                candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            )),
        };
        self.diags.push(d);
    }

    /// `{a.b}`: only records, json values and named blocks have fields.
    fn check_fields(&mut self, path: &Path, binding: Binding) {
        let Some(first) = path.fields.first() else {
            return;
        };
        match binding {
            Binding::Param(i) => {
                let mut ty = self.g.params[i].ty.clone();
                let mut owner = path.root.name.clone();
                for f in &path.fields {
                    match ty.field(&f.name) {
                        Some(Some(t)) => ty = t,
                        Some(None) => {
                            let mut d = Diagnostic::error(
                                "E0210",
                                f.span,
                                format!("`{owner}` has no field `{}`", f.name),
                            )
                            .with_label(format!("not a field of {ty}"));
                            if let Type::Record(fields) = &ty
                                && let Some(s) =
                                    did_you_mean(&f.name, fields.iter().map(|(k, _)| k.as_str()))
                            {
                                d = d.with_help(format!("did you mean `{s}`?"));
                            }
                            self.diags.push(d);
                            return;
                        }
                        None => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0210",
                                    f.span,
                                    format!("`{owner}` is {ty}; it has no fields"),
                                )
                                .with_label("no such field")
                                .with_help(format!("use `{{{owner}}}` whole")),
                            );
                            return;
                        }
                    }
                    owner = format!("{owner}.{}", f.name);
                }
            }
            Binding::Node(_) => self.diags.push(
                Diagnostic::error(
                    "E0210",
                    first.span,
                    format!(
                        "`{}` is text; it has no field `{}`",
                        path.root.name, first.name
                    ),
                )
                .with_label("a step's output is text")
                .with_help(format!(
                    "use `{{{}}}` whole; structured outputs (`-> {{ {}: ... }}` on a step) are not supported yet",
                    path.root.name, first.name
                )),
            ),
            Binding::Group(g) => {
                let members: Vec<String> = self.g.groups[g]
                    .members
                    .iter()
                    .map(|&n| self.g.nodes[n].name.clone())
                    .collect();
                if !members.contains(&first.name) {
                    let mut d = Diagnostic::error(
                        "E0210",
                        first.span,
                        format!("block `{}` has no step `{}`", path.root.name, first.name),
                    )
                    .with_label("not in the block");
                    d = match did_you_mean(&first.name, members.iter().map(String::as_str)) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(format!("its steps: {}", members.join(", "))),
                    };
                    self.diags.push(d);
                } else if path.fields.len() > 1 {
                    self.diags.push(
                        Diagnostic::error(
                            "E0210",
                            path.fields[1].span,
                            format!(
                                "`{}.{}` is text; it has no fields",
                                path.root.name, first.name
                            ),
                        )
                        .with_label("no such field"),
                    );
                }
            }
        }
    }

    /// A node is tainted when it is a model step or any of its data inputs is tainted. An
    /// approval never is: its output is a person's yes or no, whatever its question shows.
    fn propagate_taint(&mut self) {
        // Nodes may depend on later nodes inside `parallel`, so iterate to a fixed point.
        loop {
            let mut changed = false;
            for i in 0..self.g.nodes.len() {
                if self.g.nodes[i].tainted {
                    continue;
                }
                let n = &self.g.nodes[i];
                if matches!(n.exec, Exec::Approval) {
                    continue;
                }
                let t = matches!(n.exec, Exec::Model { .. })
                    || n.deps
                        .iter()
                        .any(|d| d.kind == DepKind::Data && self.g.nodes[d.node].tainted);
                if t {
                    self.g.nodes[i].tainted = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Model output may reach a command through stdin or env, never argv.
    fn check_argv_taint(&mut self) {
        let mut found = Vec::new();
        for n in &self.g.nodes {
            let Exec::Command { argv, .. } = &n.exec else {
                continue;
            };
            let Some(agent) = self.tables.agents.get(&n.agent) else {
                continue;
            };
            for (param, arg) in &n.args {
                let in_argv = argv
                    .iter()
                    .any(|t| t.interps().any(|p| p.root.name == *param));
                if !in_argv {
                    continue;
                }
                for p in arg.interps() {
                    let tainted_by = self
                        .g
                        .referenced_nodes(p)
                        .iter()
                        .any(|m| self.g.nodes[*m].tainted)
                        .then_some(p);
                    if let Some(p) = tainted_by {
                        let argv_span = agent.kind_argv_span(param);
                        found.push((
                            p.span,
                            p.dotted(),
                            param.clone(),
                            n.agent.clone(),
                            argv_span,
                        ));
                    }
                }
            }
        }
        for (span, source, param, agent, argv_span) in found {
            let mut d = Diagnostic::error("E0602", span, format!("model output `{source}` reaches the argv of command agent `{agent}`"))
                .with_label(format!("produced by a model, passed as `{param}`"))
                .with_help(format!(
                    "pass model output on stdin (the prompt) or in `env`, never in argv: change `{agent}` to read `{param}` from an environment variable"
                ));
            if let Some(s) = argv_span {
                d = d.with_secondary(s, format!("`{param}` is used in argv here"));
            }
            self.diags.push(d);
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
                let verb = if dep.kind == DepKind::After {
                    "waits for"
                } else {
                    "uses"
                };
                let mut d = Diagnostic::error(
                    "E0301",
                    dep.span,
                    format!("`{x}` {verb} `{y}`, which only runs after it"),
                )
                .with_label(format!("`{y}` has not run yet here"))
                .with_help(format!(
                    "statements of a sequence run top to bottom: move `{y} = ...` above `{x}`"
                ));
                if let Some(def) = self.defined_at.get(&y) {
                    d = d.with_secondary(*def, format!("`{y}` is defined here, after `{x}`"));
                }
                self.diags.push(d);
                continue;
            }
            let names: Vec<String> = cycle
                .iter()
                .map(|(from, _)| format!("`{}`", self.g.nodes[*from].name))
                .collect();
            // Sequence-order edges are shown at the earlier step's name, not its whole statement.
            let edge_span = |dep: &Dep| match dep.kind {
                DepKind::Order => self
                    .defined_at
                    .get(&self.g.nodes[dep.node].name)
                    .copied()
                    .unwrap_or(dep.span),
                _ => dep.span,
            };
            let (first_from, first_dep) = cycle[0];
            let mut d = Diagnostic::error(
                "E0301",
                edge_span(&first_dep),
                format!("dependency cycle: {} → {}", names.join(" → "), names[0]),
            )
            .with_label(edge_label(&self.g.nodes[first_from].name, &self.g.nodes[first_dep.node].name, first_dep.kind))
            .with_help("a step cannot wait, directly or through others, for itself: remove one of these dependencies");
            for (from, dep) in &cycle[1..] {
                d = d.with_secondary(
                    edge_span(dep),
                    edge_label(
                        &self.g.nodes[*from].name,
                        &self.g.nodes[dep.node].name,
                        dep.kind,
                    ),
                );
            }
            self.diags.push(d);
        }
    }
}

fn edge_label(from: &str, to: &str, kind: DepKind) -> String {
    match kind {
        DepKind::Data => format!("`{from}` uses `{to}`"),
        DepKind::After => format!("`{from}` runs after `{to}`"),
        DepKind::Order => format!("`{from}` comes after `{to}` in sequence"),
    }
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
