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
//! The JSON form (`orch plan --format json`) is [`Plan`] serialized with serde; its shape is
//! documented in `docs/language.md` and only ever grows.

pub mod budget;
pub mod render;

use indexmap::IndexMap;
use serde::Serialize;

use crate::check::items::{ParamDef, ProviderDef};
use crate::check::workflow::{
    Binding, DepKind, Exec, GroupId, InRegion, ListSource, NodeId, RegionId, RegionKind,
    WorkflowGraph,
};
use crate::check::{Program, ProviderKind};
use crate::diag::{Diagnostic, FileId, SourceMap, Span};
use crate::syntax::ast::{Policy, Template, TemplatePart};
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
        /// System text template (`{param}` placeholders), if any.
        system: Option<String>,
        /// Output-token limit.
        max_tokens: u32,
        /// Sampling temperature.
        temperature: Option<f64>,
    },
    /// A program run without a shell.
    Command {
        /// argv templates.
        argv: Vec<String>,
        /// Environment templates.
        env: IndexMap<String, String>,
        /// Working directory.
        cwd: Option<String>,
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
    pub prompt: Option<String>,
    /// Named arguments (templates).
    pub args: IndexMap<String, String>,
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
    /// Every region around it, outermost first.
    #[serde(skip)]
    pub regions: Vec<InRegion>,
    /// Worst-case tokens and cost of this step.
    pub worst_case: Estimate,
    /// Source location: file, 1-based line and column.
    pub location: Location,
    /// Span, for runtime diagnostics.
    #[serde(skip)]
    pub span: Span,
    #[serde(skip)]
    pub(crate) prompt_tpl: Option<Template>,
    #[serde(skip)]
    pub(crate) args_tpl: IndexMap<String, Template>,
    #[serde(skip)]
    pub(crate) system_tpl: Option<Template>,
    #[serde(skip)]
    pub(crate) argv_tpl: Vec<Template>,
    #[serde(skip)]
    pub(crate) env_tpl: Vec<(String, Template)>,
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
    /// For each body: names whose definition there is not the workflow-wide one (the same
    /// name in both branches of an `if`).
    #[serde(skip)]
    pub(crate) locals: Vec<IndexMap<String, NodeId>>,
    /// The checker's region, for the interpreter (conditions, list, `return`).
    #[serde(skip)]
    pub(crate) lowered: RegionKind,
}

/// What a region does, as the plan shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlanRegionKind {
    /// `parallel for`.
    For {
        /// The list: its source text (`plan.tasks`, `[a, b]`).
        list: String,
        /// Items, when the list is written in the script (`None`: known at run time).
        items: Option<usize>,
        /// `max N`: instances in flight at once.
        max: Option<u32>,
    },
    /// `repeat ... until`.
    Repeat {
        /// The bound on iterations.
        max: u32,
        /// The condition, as written.
        until: String,
    },
    /// `if ... else`.
    If {
        /// The condition, as written.
        cond: String,
    },
    /// A workflow call, expanded.
    Call {
        /// The workflow.
        workflow: String,
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
    /// What the worst case cannot bound (a `for` over a list known only at run time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Steps by level (level 1 first).
    pub levels: Vec<Vec<NodeId>>,
    /// The longest chain of dependent steps, first to last.
    pub critical_path: Vec<NodeId>,
    /// Worst-case tokens and cost of the whole run.
    pub worst_case: Estimate,
    /// The most steps in flight at once (equal step durations, `max N` honoured).
    pub peak_concurrency: usize,
    /// Providers used, by name (no keys: only the variable names).
    pub providers: IndexMap<String, ProviderDef>,
    /// The `return` template, if any.
    pub output: Option<String>,
    #[serde(skip)]
    pub(crate) output_tpl: Option<Template>,
    #[serde(skip)]
    pub(crate) bindings: IndexMap<String, Binding>,
}

/// Picks the workflow to plan: `name` if given, else `main`, else the only one.
///
/// # Errors
/// `E0701` when there is no such workflow, none at all, or several and none is `main`.
pub fn entry_workflow<'p>(
    program: &'p Program,
    name: Option<&str>,
    file_span: Span,
) -> Result<&'p WorkflowGraph, Box<Diagnostic>> {
    // Without a name, the entry file's own workflows: included libraries (the stdlib's
    // patterns) are called, not run.
    let own: IndexMap<&String, &WorkflowGraph> = program
        .workflows
        .iter()
        .filter(|(_, w)| w.span.file == file_span.file)
        .collect();
    let names: Vec<&str> = own.keys().map(|k| k.as_str()).collect();
    let pick = match name {
        Some(n) => program.workflows.get(n).ok_or_else(|| {
            let mut d = Diagnostic::error("E0701", file_span, format!("no workflow named `{n}`"))
                .with_label("in this file");
            d = match crate::check::suggest::did_you_mean(n, names.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!(
                    "workflows here: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )),
            };
            Box::new(d)
        })?,
        None => match (own.get(&"main".to_string()), own.len()) {
            (Some(w), _) => w,
            (None, 1) => own[0],
            (None, 0) => {
                return Err(Box::new(
                    Diagnostic::error("E0701", file_span, "this file has no workflow to run")
                        .with_label("no `workflow` here")
                        .with_help("add `workflow main() { ... }`, or plan a file that has one"),
                ));
            }
            (None, _) => {
                return Err(Box::new(
                    Diagnostic::error(
                        "E0701",
                        file_span,
                        format!("several workflows and none is `main`: {}", names.join(", ")),
                    )
                    .with_label("which one?")
                    .with_help("choose one with `--workflow NAME`, or name one `main`"),
                ));
            }
        },
    };
    if let Some(p) = pick.params.iter().find(|p| {
        p.ty == crate::check::types::Type::Agent
            || p.ty == crate::check::types::Type::List(Box::new(crate::check::types::Type::Agent))
    }) {
        return Err(Box::new(
            Diagnostic::error(
                "E0701",
                p.span,
                format!(
                    "workflow `{}` is a pattern: its parameter `{}` is {}",
                    pick.name, p.name, p.ty
                ),
            )
            .with_label("filled by a workflow that calls this one")
            .with_help(format!(
                "run a workflow that calls it: `result = {}({}: ...)`",
                pick.name, p.name
            )),
        ));
    }
    Ok(pick)
}

/// Estimated tokens of a text: 4 characters per token, rounded up (a common rule of thumb for
/// English with BPE tokenizers; only used for worst-case estimates, never for billing).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Lowers a checked workflow to its plan.
pub fn lower(program: &Program, wf: &WorkflowGraph) -> Plan {
    let lines = LineStarts::new(&program.sources);
    let mut nodes: Vec<PlanNode> = wf
        .nodes
        .iter()
        .map(|n| plan_node(program, &lines, n))
        .collect();
    let regions = plan_regions(wf);
    let notes = count_runs(wf, &regions, &mut nodes);
    assign_levels(&mut nodes, &regions);
    estimate_costs(program, wf, &mut nodes);
    let groups: Vec<PlanGroup> = wf
        .groups
        .iter()
        .map(|g| PlanGroup {
            id: g.id,
            name: g.name.clone(),
            max: g.max,
            budget_usd: g.budget,
            members: g.members.clone(),
            branches: g.branches.clone(),
        })
        .collect();
    let max_level = nodes.iter().map(|n| n.level).max().unwrap_or(0);
    let mut levels = vec![Vec::new(); max_level];
    for n in &nodes {
        levels[n.level - 1].push(n.id);
    }
    let mut worst_case = Estimate::default();
    for n in &nodes {
        worst_case += n.worst_case;
    }
    let mut providers = IndexMap::new();
    // The providers of every model a step may use: its own and its fallback's.
    for n in &nodes {
        let PlanExec::Model {
            model, fallback, ..
        } = &n.exec
        else {
            continue;
        };
        for m in std::iter::once(model).chain(fallback) {
            let Some(def) = program.tables.models.get(m) else {
                continue;
            };
            if let Some(p) = program.tables.providers.get(&def.provider) {
                providers.insert(def.provider.clone(), p.clone());
            }
        }
    }
    let critical_path = critical_path(&nodes, &regions);
    let peak_concurrency = peak_concurrency(&nodes, &groups, &regions);
    Plan {
        workflow: wf.name.clone(),
        params: wf.params.clone(),
        budget_usd: wf.budget,
        nodes,
        groups,
        regions,
        notes,
        levels,
        critical_path,
        worst_case,
        peak_concurrency,
        providers,
        output: wf.output.as_ref().map(template_source),
        output_tpl: wf.output.clone(),
        bindings: wf.bindings.clone(),
    }
}

/// The plan's view of the checker's regions.
fn plan_regions(wf: &WorkflowGraph) -> Vec<PlanRegion> {
    wf.regions
        .iter()
        .map(|r| {
            let kind = match &r.kind {
                RegionKind::For { list, max, .. } => {
                    let (text, items) = match list {
                        ListSource::Literal(items) => (
                            format!(
                                "[{}]",
                                items
                                    .iter()
                                    .map(template_source)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            Some(items.len()),
                        ),
                        ListSource::Path(p) => (p.dotted(), None),
                        ListSource::Agents(a) => (format!("[{}]", a.join(", ")), Some(a.len())),
                    };
                    PlanRegionKind::For {
                        list: text,
                        items,
                        max: *max,
                    }
                }
                RegionKind::Repeat { max, until } => PlanRegionKind::Repeat {
                    max: *max,
                    until: crate::check::workflow::cond_source(until),
                },
                RegionKind::If { cond } => PlanRegionKind::If {
                    cond: crate::check::workflow::cond_source(cond),
                },
                RegionKind::Call { workflow, .. } => PlanRegionKind::Call {
                    workflow: workflow.clone(),
                },
            };
            PlanRegion {
                id: r.id,
                kind,
                node: r.node,
                bodies: r.bodies.clone(),
                members: r.members.clone(),
                exports: r.exports.clone(),
                locals: body_locals(wf, r.id),
                lowered: r.kind.clone(),
            }
        })
        .collect()
}

/// For each body of region `rid`: the names defined there whose workflow-wide binding is a
/// node of another body (a name defined in both branches of an `if`).
fn body_locals(wf: &WorkflowGraph, rid: RegionId) -> Vec<IndexMap<String, NodeId>> {
    let r = &wf.regions[rid];
    let depth = wf.nodes[r.node].regions.len();
    let mut out = vec![IndexMap::new(); r.bodies.len()];
    for &m in &r.members {
        let node = &wf.nodes[m];
        let Some(at) = node.regions.get(depth) else {
            continue;
        };
        if let Some(Binding::Node(bound)) = wf.bindings.get(&node.name)
            && *bound != m
            && wf.nodes[*bound]
                .regions
                .get(depth)
                .is_some_and(|b| b.region == rid && b.body != at.body)
        {
            out[at.body].insert(node.name.clone(), m);
        }
    }
    out
}

/// Sets each node's `runs` (the product of its regions' bounds) and says what is unbounded.
fn count_runs(wf: &WorkflowGraph, regions: &[PlanRegion], nodes: &mut [PlanNode]) -> Vec<String> {
    let mut notes = Vec::new();
    let factor: Vec<u64> = regions
        .iter()
        .map(|r| match &r.kind {
            PlanRegionKind::Repeat { max, .. } => u64::from(*max),
            PlanRegionKind::For {
                items: Some(n), ..
            } => match &r.lowered {
                // Over agents each body runs once.
                RegionKind::For {
                    list: ListSource::Agents(_),
                    ..
                } => 1,
                _ => *n as u64,
            },
            PlanRegionKind::For { list, .. } => {
                notes.push(format!(
                    "`{}` runs its body once per item of `{list}`, known only at run time: the worst case counts one item",
                    wf.nodes[r.node].name
                ));
                1
            }
            _ => 1,
        })
        .collect();
    for n in nodes.iter_mut() {
        // Nested `repeat`s multiply: saturate rather than overflow.
        n.runs = n
            .regions
            .iter()
            .fold(1u64, |acc, r| acc.saturating_mul(factor[r.region]));
    }
    notes
}

/// The dependencies that order the plan's view (levels, critical path, peak concurrency):
/// a region's steps come after its inputs, and the region after its steps.
fn view_deps(nodes: &[PlanNode], regions: &[PlanRegion]) -> Vec<Vec<NodeId>> {
    let mut deps: Vec<Vec<NodeId>> = nodes.iter().map(|n| n.deps.clone()).collect();
    for r in regions {
        let entry = &nodes[r.node].deps;
        for body in &r.bodies {
            for &m in body {
                deps[m].extend_from_slice(entry);
            }
        }
        deps[r.node].extend_from_slice(&r.members);
    }
    // Duplicates removed once at the end: a region may have a hundred thousand members.
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    deps
}

/// The offset of every line start of every source file: lines and columns of many steps
/// without scanning the text from its start for each ([`SourceMap::line_col`] does).
struct LineStarts<'s> {
    sources: &'s SourceMap,
    starts: Vec<Vec<usize>>,
}

impl<'s> LineStarts<'s> {
    fn new(sources: &'s SourceMap) -> Self {
        let starts = sources
            .files()
            .map(|(_, f)| {
                std::iter::once(0)
                    .chain(f.text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect()
            })
            .collect();
        Self { sources, starts }
    }

    /// 1-based line and column (in characters) of a byte offset, as [`SourceMap::line_col`].
    fn line_col(&self, file: FileId, offset: u32) -> (usize, usize) {
        let text = &self.sources.get(file).text;
        let offset = (offset as usize).min(text.len());
        let starts = &self.starts[file.0 as usize];
        let line = starts.partition_point(|&s| s <= offset);
        let column = text[starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }
}

fn plan_node(
    program: &Program,
    lines: &LineStarts<'_>,
    n: &crate::check::workflow::Node,
) -> PlanNode {
    let (line, column) = lines.line_col(n.span.file, n.span.start);
    let mut deps: Vec<NodeId> = n.deps.iter().map(|d| d.node).collect();
    deps.sort_unstable();
    deps.dedup();
    let mut data_deps: Vec<NodeId> = n
        .deps
        .iter()
        .filter(|d| d.kind == DepKind::Data)
        .map(|d| d.node)
        .collect();
    data_deps.sort_unstable();
    data_deps.dedup();
    let (exec, system_tpl, argv_tpl, env_tpl) = match &n.exec {
        Exec::Model {
            model,
            fallback,
            system,
            max_tokens,
            temperature,
        } => {
            let m = program.tables.models.get(model);
            let provider = m.map(|m| m.provider.clone()).unwrap_or_default();
            let provider_kind = program
                .tables
                .providers
                .get(&provider)
                .map_or(ProviderKind::Sim, |p| p.kind);
            (
                PlanExec::Model {
                    model: model.clone(),
                    model_id: m.map(|m| m.api_name.clone()).unwrap_or_default(),
                    provider,
                    provider_kind,
                    fallback: fallback.clone(),
                    system: system.as_ref().map(template_source),
                    max_tokens: *max_tokens,
                    temperature: *temperature,
                },
                system.clone(),
                Vec::new(),
                Vec::new(),
            )
        }
        Exec::Command { argv, env, cwd } => (
            PlanExec::Command {
                argv: argv.iter().map(template_source).collect(),
                env: env
                    .iter()
                    .map(|(k, t)| (k.clone(), template_source(t)))
                    .collect(),
                cwd: cwd.clone(),
            },
            None,
            argv.clone(),
            env.clone(),
        ),
        Exec::Region(r) => (
            PlanExec::Region { region: *r },
            None,
            Vec::new(),
            Vec::new(),
        ),
        Exec::Item => (PlanExec::Item, None, Vec::new(), Vec::new()),
        Exec::Approval => (PlanExec::Approval, None, Vec::new(), Vec::new()),
    };
    let mut args_tpl = n.args.clone();
    let agent = program.tables.agents.get(&n.agent);
    if let Some(agent) = agent {
        for p in &agent.params {
            if let (false, Some(d)) = (args_tpl.contains_key(&p.name), &p.default) {
                args_tpl.insert(
                    p.name.clone(),
                    Template {
                        parts: vec![TemplatePart::Text(d.clone())],
                    },
                );
            }
        }
    }
    PlanNode {
        id: n.id,
        name: n.name.clone(),
        agent: n.agent.clone(),
        exec,
        prompt: n.prompt.as_ref().map(template_source),
        args: n
            .args
            .iter()
            .map(|(k, t)| (k.clone(), template_source(t)))
            .collect(),
        deps,
        data_deps,
        level: 0,
        retry: n.retry,
        timeout_ms: n.timeout_ms,
        deadline_ms: n.deadline_ms,
        max_output_bytes: agent.and_then(|a| a.max_output_bytes),
        groups: n.groups.clone(),
        join: n.join.map(|j| PlanJoin {
            group: j.group,
            policy: j.policy,
        }),
        tainted: n.tainted,
        output_type: n.output_type.clone(),
        region: n.regions.last().map(|r| r.region),
        runs: 1,
        regions: n.regions.clone(),
        worst_case: Estimate::default(),
        location: Location {
            file: program.sources.get(n.span.file).name.clone(),
            line,
            column,
        },
        span: n.span,
        prompt_tpl: n.prompt.clone(),
        args_tpl,
        system_tpl: system_tpl.clone(),
        argv_tpl,
        env_tpl,
    }
}

/// A template as source text: literal text with `{path}` placeholders and braces doubled.
pub fn template_source(t: &Template) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            TemplatePart::Text(s) => s.replace('{', "{{").replace('}', "}}"),
            TemplatePart::Interp(p) => format!("{{{}}}", p.dotted()),
        })
        .collect()
}

/// Longest-path layering. The graph is acyclic (the checker refused cycles), but a plan of a
/// program with errors may still be built by tools, so cycles are cut rather than looped on.
/// Depth-first with a stack of its own: a long sequence is a chain as deep as it is long.
fn assign_levels(nodes: &mut [PlanNode], regions: &[PlanRegion]) {
    let deps = view_deps(nodes, regions);
    let n = nodes.len();
    let mut level = vec![0usize; n];
    let mut state = vec![0u8; n]; // 0 new, 1 visiting, 2 done
    // (node, index of the next dependency to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        stack.push((root, 0));
        while let Some(&(i, next)) = stack.last() {
            if let Some(&d) = deps[i].get(next) {
                stack.last_mut().expect("not empty").1 += 1;
                if state[d] == 0 {
                    state[d] = 1;
                    stack.push((d, 0));
                }
                continue;
            }
            // A dependency still being visited closes a cycle: it is cut there (counts 0).
            let highest = deps[i]
                .iter()
                .map(|&d| if state[d] == 2 { level[d] } else { 0 })
                .max()
                .unwrap_or(0);
            level[i] = highest + 1;
            state[i] = 2;
            stack.pop();
        }
    }
    for (node, l) in nodes.iter_mut().zip(level) {
        node.level = l;
    }
}

fn estimate_costs(program: &Program, wf: &WorkflowGraph, nodes: &mut [PlanNode]) {
    // Worst-case output of each node, for the nodes that interpolate it.
    let out_bound: Vec<u64> = nodes
        .iter()
        .map(|n| match &n.exec {
            PlanExec::Model { max_tokens, .. } => u64::from(*max_tokens),
            _ => 0,
        })
        .collect();
    for node in nodes.iter_mut() {
        let once = worst_case(program, wf, node, &out_bound);
        let runs = node.runs;
        node.worst_case = Estimate {
            input_tokens: once.input_tokens.saturating_mul(runs),
            output_tokens: once.output_tokens.saturating_mul(runs),
            cost_usd: once.cost_usd * runs as f64,
        };
    }
}

/// Worst case of one step: every attempt (and as many on the fallback) sends the literal text
/// plus every interpolated step output at its bound, and receives `max_tokens`.
fn worst_case(
    program: &Program,
    wf: &WorkflowGraph,
    node: &PlanNode,
    out_bound: &[u64],
) -> Estimate {
    let PlanExec::Model {
        model,
        fallback,
        max_tokens,
        ..
    } = &node.exec
    else {
        return Estimate::default();
    };
    let mut input = node.system_tpl.as_ref().map_or(0, literal_tokens);
    input = input.saturating_add(node.prompt_tpl.as_ref().map_or(0, literal_tokens));
    for p in node.prompt_tpl.iter().flat_map(|t| t.interps()) {
        input = input.saturating_add(match wf.bindings.get(&p.root.name) {
            Some(Binding::Node(m)) => out_bound[*m],
            // Each branch renders under a `## name` heading: about 4 more tokens.
            Some(Binding::Group(g)) => {
                let members = &wf.groups[*g].members;
                let named = p.fields.first();
                match named.and_then(|f| members.iter().find(|&&m| wf.nodes[m].name == f.name)) {
                    // `{block.step}`: that step's output only.
                    Some(&m) => out_bound[m],
                    None => members
                        .iter()
                        .fold(0u64, |acc, m| acc.saturating_add(out_bound[*m] + 4)),
                }
            }
            _ => 0,
        });
    }
    let attempts = u64::from(node.retry) + 1;
    let (input, output) = (
        input.saturating_mul(attempts),
        u64::from(*max_tokens).saturating_mul(attempts),
    );
    let price = |m: &str| {
        program
            .tables
            .models
            .get(m)
            .map(|m| m.price)
            .unwrap_or_default()
    };
    let mut e = Estimate {
        input_tokens: input,
        output_tokens: output,
        cost_usd: price(model).cost(input, output),
    };
    if let Some(f) = fallback {
        e += Estimate {
            input_tokens: input,
            output_tokens: output,
            cost_usd: price(f).cost(input, output),
        };
    }
    e
}

fn literal_tokens(t: &Template) -> u64 {
    t.parts
        .iter()
        .map(|p| match p {
            TemplatePart::Text(s) => estimate_tokens(s),
            TemplatePart::Interp(_) => 0,
        })
        .sum()
}

fn critical_path(nodes: &[PlanNode], regions: &[PlanRegion]) -> Vec<NodeId> {
    let deps = view_deps(nodes, regions);
    // Nodes sorted by level are in topological order.
    let mut order: Vec<NodeId> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| nodes[i].level);
    let mut best: Vec<(usize, f64, Option<NodeId>)> = vec![(0, 0.0, None); nodes.len()];
    for &i in &order {
        let mut b = (1, nodes[i].worst_case.cost_usd, None);
        for &d in &deps[i] {
            let cand = (
                best[d].0 + 1,
                best[d].1 + nodes[i].worst_case.cost_usd,
                Some(d),
            );
            if cand.0 > b.0 || (cand.0 == b.0 && cand.1 > b.1) {
                b = cand;
            }
        }
        best[i] = b;
    }
    let Some(mut end) = (0..nodes.len()).max_by(|&a, &b| {
        (best[a].0, best[a].1)
            .partial_cmp(&(best[b].0, best[b].1))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) else {
        return Vec::new();
    };
    let mut path = vec![end];
    while let Some(p) = best[end].2 {
        path.push(p);
        end = p;
    }
    path.reverse();
    path
}

/// Unit-time list scheduling: each round starts every ready step that its blocks' `max N`
/// allow, in step order; the answer is the largest round. Steps become ready when their last
/// dependency finishes, so a round costs the steps ready in it, not every step.
fn peak_concurrency(nodes: &[PlanNode], groups: &[PlanGroup], regions: &[PlanRegion]) -> usize {
    let deps = view_deps(nodes, regions);
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
    for n in nodes {
        for &d in &deps[n.id] {
            dependents[d].push(n.id);
        }
    }
    let mut ready: Vec<NodeId> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut in_group = vec![0u32; groups.len()];
    let mut peak = 0;
    while !ready.is_empty() {
        let mut started = Vec::new();
        let mut next = Vec::new();
        for &i in &ready {
            let fits = nodes[i]
                .groups
                .iter()
                .all(|&g| groups[g].max.is_none_or(|m| in_group[g] < m));
            if fits {
                for &g in &nodes[i].groups {
                    in_group[g] += 1;
                }
                started.push(i);
            } else {
                next.push(i);
            }
        }
        if started.is_empty() {
            break;
        }
        // Regions and `for` items are not calls of their own.
        let calls = started
            .iter()
            .filter(|&&i| {
                matches!(
                    nodes[i].exec,
                    PlanExec::Model { .. } | PlanExec::Command { .. }
                )
            })
            .count();
        peak = peak.max(calls);
        for &s in &started {
            for &g in &nodes[s].groups {
                in_group[g] = 0;
            }
            for &t in &dependents[s] {
                waiting[t] -= 1;
                if waiting[t] == 0 {
                    next.push(t);
                }
            }
        }
        next.sort_unstable();
        ready = next;
    }
    peak
}
