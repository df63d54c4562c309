//! Lowering: the checker's [`WorkflowGraph`] → a [`Plan`] of plan-owned types.
//!
//! Every step is resolved to its model, provider and policies; every template, condition and
//! `for` list is lowered to [`super::ir`] with each name resolved where it is written. A name
//! defined in several bodies of a region (both branches of an `if`, each agent's body of a
//! `for` over agents) reads, inside one of those bodies, that body's own step; elsewhere it
//! reads the workflow-wide binding, which the region fills after it ran (its exports).

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::analysis;
use super::ir::{
    Cond, CondExpr, ForList, Interp, ListSource, Operand, Ref, Template, TemplatePart,
};
use super::{
    Location, NodeId, Plan, PlanBatch, PlanExec, PlanGroup, PlanJoin, PlanNode, PlanRegion,
    PlanRegionKind, RegionId,
};
use crate::check::workflow::{self as graph, Binding, DepKind, Exec, InRegion, WorkflowGraph};
use crate::check::{Program, ProviderKind};
use crate::diag::{FileId, SourceMap};
use crate::syntax::ast::{self, ValueKind};
use crate::syntax::print::{cond_source, template_source, value_text};

/// Lowers a checked workflow to its plan.
pub fn lower(program: &Program, wf: &WorkflowGraph) -> Plan {
    let mut plan = price(program, wf);
    complete(&mut plan);
    plan
}

/// The first part of [`lower`]: the plan with every step lowered and priced (its `runs`,
/// `prompt_tokens` and worst case), its blocks, regions, notes, tools, providers, output and
/// total worst case — all the planning stage's lints read — but no levels, critical path or
/// peak concurrency yet ([`complete`] adds them; until then `levels` and `critical_path`
/// are empty and every step is on level 0).
pub(super) fn price(program: &Program, wf: &WorkflowGraph) -> Plan {
    let lines = LineStarts::new(&program.sources);
    let names = Names::new(wf);
    let mut nodes: Vec<PlanNode> = wf
        .nodes
        .iter()
        .map(|n| plan_node(program, &lines, &names, n))
        .collect();
    let regions: Vec<PlanRegion> = wf.regions.iter().map(|r| plan_region(&names, r)).collect();
    let mut notes = analysis::count_runs(wf, &regions, &mut nodes);
    let (mcp, delegates) = super::tools::lower_tools(program, &nodes);
    notes.extend(super::tools::notes(&nodes, &delegates));
    analysis::estimate_costs(program, wf, &mut nodes, &delegates);
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
    let batches = wf
        .batches
        .iter()
        .map(|b| {
            let (line, column) = lines.line_col(b.span.file, b.span.start);
            PlanBatch {
                id: b.id,
                max: b.max,
                window_ms: crate::common::BATCH_WINDOW_MS,
                steps: nodes
                    .iter()
                    .filter(|n| n.batch == Some(b.id) && matches!(n.exec, PlanExec::Model { .. }))
                    .map(|n| n.id)
                    .collect(),
                location: Location {
                    file: program.sources.get(b.span.file).name.clone(),
                    line,
                    column,
                },
            }
        })
        .collect();
    let mut worst_case = super::Estimate::default();
    for n in &nodes {
        worst_case += n.worst_case;
    }
    let providers = providers_used(program, &nodes);
    Plan {
        workflow: wf.name.clone(),
        params: wf.params.clone(),
        budget_usd: wf.budget,
        nodes,
        groups,
        regions,
        batches,
        notes,
        levels: Vec::new(),
        critical_path: Vec::new(),
        critical_path_batch_wait_ms: None,
        worst_case,
        peak_concurrency: 0,
        providers,
        output: wf.output.as_ref().map(|t| names.template(t, &[])),
        mcp,
        delegates,
        mcp_tools: IndexMap::new(),
    }
}

/// The second part of [`lower`], on a plan from [`price`]: each step's level, the steps by
/// level, the critical path and the peak concurrency, all over one ordering of the steps.
pub(super) fn complete(plan: &mut Plan) {
    let deps = analysis::view_deps(&plan.nodes, &plan.regions);
    analysis::assign_levels(&mut plan.nodes, &deps);
    let max_level = plan.nodes.iter().map(|n| n.level).max().unwrap_or(0);
    let mut levels = vec![Vec::new(); max_level];
    for n in &plan.nodes {
        levels[n.level - 1].push(n.id);
    }
    plan.levels = levels;
    plan.critical_path = analysis::critical_path(&plan.nodes, &deps);
    let batched = plan
        .critical_path
        .iter()
        .filter(|&&n| {
            plan.nodes[n].batch.is_some() && matches!(plan.nodes[n].exec, PlanExec::Model { .. })
        })
        .count() as u64;
    plan.critical_path_batch_wait_ms =
        (batched > 0).then(|| batched.saturating_mul(crate::common::BATCH_WINDOW_MS));
    plan.peak_concurrency = analysis::peak_concurrency(&plan.nodes, &plan.groups, &deps);
}

/// The providers of every model a step may use: its own and its fallback's.
fn providers_used(
    program: &Program,
    nodes: &[PlanNode],
) -> IndexMap<String, crate::check::items::ProviderDef> {
    let mut providers = IndexMap::new();
    for n in nodes {
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
    providers
}

/// Resolves the names of one workflow where they are written.
struct Names<'w> {
    wf: &'w WorkflowGraph,
    /// For each region, for each body: the names defined there whose workflow-wide binding
    /// is a step of another body.
    locals: Vec<Vec<crate::common::NameMap<String, NodeId>>>,
}

impl<'w> Names<'w> {
    fn new(wf: &'w WorkflowGraph) -> Self {
        let locals = (0..wf.regions.len()).map(|r| body_locals(wf, r)).collect();
        Names { wf, locals }
    }

    /// What `name` is bound to at a place inside the regions `at` (outermost first): the
    /// innermost body's own definition, else the workflow's.
    fn binding(&self, name: &str, at: &[InRegion]) -> Option<Binding> {
        at.iter()
            .rev()
            .find_map(|r| self.locals[r.region].get(r.body)?.get(name))
            .map(|&n| Binding::Node(n))
            .or_else(|| self.wf.bindings.get(name).copied())
    }

    /// A path read at a place inside the regions `at`.
    fn interp(&self, p: &ast::Path, at: &[InRegion]) -> Interp {
        let mut fields: Vec<String> = p.fields.iter().map(|f| f.name.clone()).collect();
        let target = match self.binding(&p.root.name, at) {
            Some(Binding::Param(i)) => Ref::Param(i),
            Some(Binding::Node(n)) => Ref::Node(n),
            Some(Binding::Group(g)) if fields.is_empty() => Ref::Group(g),
            Some(Binding::Group(g)) => match self.wf.member(g, &fields[0]) {
                Some(m) => {
                    fields.remove(0);
                    Ref::Member(m)
                }
                None => Ref::Unbound,
            },
            None => Ref::Unbound,
        };
        Interp {
            path: p.dotted(),
            target,
            fields,
        }
    }

    /// A template over the workflow's names, written inside the regions `at`.
    fn template(&self, t: &ast::Template, at: &[InRegion]) -> Template {
        lower_template(t, |p| self.interp(p, at))
    }

    fn cond(&self, c: &ast::Cond, at: &[InRegion]) -> Cond {
        Cond {
            source: cond_source(c),
            expr: self.cond_expr(c, at),
        }
    }

    fn cond_expr(&self, c: &ast::Cond, at: &[InRegion]) -> CondExpr {
        let go = |x: &ast::Cond| Box::new(self.cond_expr(x, at));
        match &c.kind {
            ast::CondKind::Value(v) => CondExpr::Value(self.operand(v, at)),
            ast::CondKind::Compare(a, op, b) => {
                CondExpr::Compare(self.operand(a, at), *op, self.operand(b, at))
            }
            ast::CondKind::Not(x) => CondExpr::Not(go(x)),
            ast::CondKind::And(a, b) => CondExpr::And(go(a), go(b)),
            ast::CondKind::Or(a, b) => CondExpr::Or(go(a), go(b)),
        }
    }

    fn operand(&self, v: &ast::Value, at: &[InRegion]) -> Operand {
        let source = value_text(v);
        let value = match &v.kind {
            ValueKind::Path(p) => return Operand::Ref(self.interp(p, at)),
            ValueKind::Str(t) => {
                return Operand::Text {
                    template: self.template(t, at),
                    source,
                };
            }
            ValueKind::Int(i) => Json::from(*i),
            ValueKind::Decimal(d) => {
                serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number)
            }
            ValueKind::Bool(b) => Json::Bool(*b),
            _ => Json::Null,
        };
        Operand::Const { value, source }
    }

    /// The list of a `parallel for`, read where its region stands.
    fn for_list(&self, list: &graph::ListSource, at: &[InRegion]) -> ForList {
        match list {
            graph::ListSource::Literal(items) => ForList {
                source: format!(
                    "[{}]",
                    items
                        .iter()
                        .map(template_source)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                items: ListSource::Literal(items.iter().map(|t| self.template(t, at)).collect()),
            },
            graph::ListSource::Path(p) => ForList {
                source: p.dotted(),
                items: ListSource::Ref(self.interp(p, at)),
            },
            graph::ListSource::Agents(a) => ForList {
                source: format!("[{}]", a.join(", ")),
                items: ListSource::Agents(a.clone()),
            },
        }
    }
}

/// Lowers a template, resolving each interpolation with `resolve`.
fn lower_template(t: &ast::Template, resolve: impl Fn(&ast::Path) -> Interp) -> Template {
    let parts = t
        .parts
        .iter()
        .map(|p| match p {
            ast::TemplatePart::Text(s) => TemplatePart::Text(s.clone()),
            ast::TemplatePart::Interp(p) => TemplatePart::Interp(resolve(p)),
        })
        .collect();
    Template::new(template_source(t), parts)
}

/// A template over an agent's parameters (system text, argv, env): each name is the
/// argument at its position among `args` ([`Ref::Arg`]); fields are not read.
pub(super) fn agent_template(t: &ast::Template, args: &[&str]) -> Template {
    lower_template(t, |p| Interp {
        path: p.dotted(),
        target: args
            .iter()
            .position(|a| *a == p.root.name)
            .map_or(Ref::Unbound, Ref::Arg),
        fields: Vec::new(),
    })
}

/// For each body of region `rid`: the names defined there whose workflow-wide binding is a
/// node of another body (a name defined in both branches of an `if`).
fn body_locals(wf: &WorkflowGraph, rid: RegionId) -> Vec<crate::common::NameMap<String, NodeId>> {
    let r = &wf.regions[rid];
    let depth = wf.nodes[r.node].regions.len();
    let mut out = vec![crate::common::NameMap::default(); r.bodies.len()];
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

/// The plan's region: its lists and conditions lowered where they are read — a `for`'s list
/// and an `if`'s condition where the region stands, a `repeat`'s `until` and a call's
/// `return` inside its body.
fn plan_region(names: &Names<'_>, r: &graph::Region) -> PlanRegion {
    let at = &names.wf.nodes[r.node].regions;
    let mut inside = at.clone();
    inside.push(InRegion {
        region: r.id,
        body: 0,
        stmt: 0,
    });
    let kind = match &r.kind {
        graph::RegionKind::For {
            var,
            list,
            max,
            results,
            gather,
        } => PlanRegionKind::For {
            gather: *gather,
            items: match list {
                graph::ListSource::Literal(items) => Some(items.len()),
                graph::ListSource::Agents(a) => Some(a.len()),
                graph::ListSource::Path(_) => None,
            },
            list: names.for_list(list, at),
            max: *max,
            var: *var,
            results: results.clone(),
        },
        graph::RegionKind::Repeat {
            max,
            until,
            else_fail,
        } => PlanRegionKind::Repeat {
            max: *max,
            until: names.cond(until, &inside),
            else_fail: *else_fail,
        },
        graph::RegionKind::If { cond } => PlanRegionKind::If {
            cond: names.cond(cond, at),
        },
        graph::RegionKind::Call { workflow, output } => PlanRegionKind::Call {
            workflow: workflow.clone(),
            output: output.as_ref().map(|t| names.template(t, &inside)),
        },
    };
    PlanRegion {
        id: r.id,
        kind,
        node: r.node,
        bodies: r.bodies.clone(),
        members: r.members.clone(),
        exports: r.exports.clone(),
    }
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

/// Sorted, without duplicates: the steps `n` waits for, all of them or only those whose
/// output it reads.
fn deps_of(n: &graph::Node, data_only: bool) -> Vec<NodeId> {
    let mut deps: Vec<NodeId> = n
        .deps
        .iter()
        .filter(|d| !data_only || d.kind == DepKind::Data)
        .map(|d| d.node)
        .collect();
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// How a step runs, with its agent-level templates over `args` (the call's arguments, then
/// the defaults it leaves out).
pub(super) fn plan_exec(program: &Program, exec: &Exec, args: &[&str]) -> PlanExec {
    match exec {
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
            PlanExec::Model {
                model: model.clone(),
                model_id: m.map(|m| m.api_name.clone()).unwrap_or_default(),
                provider,
                provider_kind,
                fallback: fallback.clone(),
                system: system.as_ref().map(|t| agent_template(t, args)),
                max_tokens: *max_tokens,
                context_window: m.and_then(|m| m.context_window),
                temperature: *temperature,
                tools: None,
            }
        }
        Exec::Command {
            argv,
            env,
            cwd,
            outcome,
        } => PlanExec::Command {
            outcome: *outcome,
            argv: argv.iter().map(|t| agent_template(t, args)).collect(),
            env: env
                .iter()
                .map(|(k, t)| (k.clone(), agent_template(t, args)))
                .collect(),
            cwd: cwd.as_ref().map(|t| agent_template(t, args)),
        },
        Exec::Region(r) => PlanExec::Region { region: *r },
        Exec::Item => PlanExec::Item,
        Exec::Approval => PlanExec::Approval,
    }
}

fn plan_node(
    program: &Program,
    lines: &LineStarts<'_>,
    names: &Names<'_>,
    n: &graph::Node,
) -> PlanNode {
    let (line, column) = lines.line_col(n.span.file, n.span.start);
    let agent = program.tables.agents.get(&n.agent);
    // The agent's defaults for the parameters the call leaves out, rendered after its
    // arguments.
    let defaults: IndexMap<String, String> = agent
        .iter()
        .flat_map(|a| &a.params)
        .filter(|p| !n.args.contains_key(&p.name))
        .filter_map(|p| Some((p.name.clone(), p.default.clone()?)))
        .collect();
    let arg_names: Vec<&str> = n
        .args
        .keys()
        .chain(defaults.keys())
        .map(String::as_str)
        .collect();
    let mut exec = plan_exec(program, &n.exec, &arg_names);
    if let (PlanExec::Model { tools, .. }, Some(a)) = (&mut exec, agent) {
        *tools = super::tools::plan_tools(a, n.max_turns);
    }
    PlanNode {
        id: n.id,
        name: n.name.clone(),
        agent: n.agent.clone(),
        exec,
        prompt: n.prompt.as_ref().map(|t| names.template(t, &n.regions)),
        args: n
            .args
            .iter()
            .map(|(k, t)| (k.clone(), names.template(t, &n.regions)))
            .collect(),
        defaults,
        deps: deps_of(n, false),
        data_deps: deps_of(n, true),
        level: 0,
        retry: n.retry,
        timeout_ms: n.timeout_ms,
        deadline_ms: n.deadline_ms,
        max_output_bytes: agent.and_then(|a| a.max_output_bytes),
        on_truncated: agent.map(|a| a.on_truncated).unwrap_or_default(),
        groups: n.groups.clone(),
        join: n.join.map(|j| PlanJoin {
            group: j.group,
            policy: j.policy,
        }),
        tainted: n.tainted,
        output_type: n.output_type.clone(),
        region: n.regions.last().map(|r| r.region),
        runs: 1,
        worst_case: super::Estimate::default(),
        prompt_tokens: 0,
        location: Location {
            file: program.sources.get(n.span.file).name.clone(),
            line,
            column,
        },
        span: n.span,
        batch: n.batch,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Plan, PlanNode, Ref, plan_for_test};

    fn plan_of(src: &str) -> Plan {
        plan_for_test(src).1
    }

    fn targets(n: &PlanNode) -> Vec<Ref> {
        n.prompt
            .iter()
            .flat_map(|t| t.interps())
            .map(|i| i.target)
            .collect()
    }

    /// A name defined in both branches of an `if` reads, inside a branch, that branch's own
    /// step, and after the `if` the workflow-wide one; a parameter reads its index; a block
    /// member its node.
    #[test]
    fn names_resolve_where_they_are_written() {
        let plan = plan_of(
            r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m }
workflow main(topic: text, n: number) {
  b = parallel { x = a("x"); y = a("y") }
  if n > 1 {
    d = a("then {topic}")
    e = a("{d}")
  } else {
    d = a("else")
    e = a("{d} {b.x}")
  }
  f = a("{d} {b}")
}
"#,
        );
        let node = |name: &str, nth: usize| {
            plan.nodes
                .iter()
                .filter(|n| n.name == name)
                .nth(nth)
                .unwrap()
        };
        let (d_then, d_else) = (node("d", 0).id, node("d", 1).id);
        assert_eq!(targets(node("d", 0)), [Ref::Param(0)]);
        assert_eq!(targets(node("e", 0)), [Ref::Node(d_then)]);
        assert_eq!(
            targets(node("e", 1)),
            [Ref::Node(d_else), Ref::Member(node("x", 0).id)]
        );
        let member = node("e", 1)
            .prompt
            .as_ref()
            .unwrap()
            .interps()
            .nth(1)
            .unwrap()
            .clone();
        assert_eq!(
            (member.path.as_str(), member.fields),
            ("b.x", Vec::<String>::new())
        );
        let after = targets(node("f", 0));
        assert!(
            matches!(after[0], Ref::Node(d) if d == d_then || d == d_else),
            "{after:?}"
        );
        assert!(matches!(after[1], Ref::Group(0)), "{after:?}");
    }
}
