//! The rules of regions (`parallel for`, `repeat ... until`, `if ... else`, workflow calls)
//! as pure functions, shared by the two interpreters of a plan: the local runner of regions
//! ([`super::control`], async, one scheduler per body instance) and the deterministic
//! interpreter of an engine ([`super::remote`], inline). Both evaluate a `for`'s list, an
//! `until` or `if` condition, a `gather` policy's count and a region's value and report with
//! these functions, so that a region gives the same result, text and warnings either way.

use serde_json::Value as Json;

use super::render::{Scope, json_text};
use super::scheduler::final_outputs;
use super::{StepReport, StepStatus};
use crate::common::{CmpOp, Policy, plural};
use crate::plan::{
    CondExpr, ListSource, NodeId, Operand, Plan, PlanExec, PlanNode, PlanRegion, PlanRegionKind,
    Template,
};

/// What a region produced, or (as `Err` beside it) why it failed.
#[derive(Debug, Default)]
pub(super) struct RegionResult {
    /// A structured value (a `for`'s list, a call's structured result).
    pub(super) value: Option<Json>,
    /// The region's output text.
    pub(super) text: Option<String>,
    /// Values of the names the region exports, by node.
    pub(super) exports: Vec<(NodeId, Option<Json>)>,
    /// What a user should know of how it ended ([`StepReport::warnings`]).
    pub(super) warnings: Vec<String>,
}

/// The report of region node `node` (of kind `kind`) starting at `started_ms`: succeeded
/// until [`end_region`] says otherwise.
pub(super) fn region_report(node: &PlanNode, kind: &PlanRegionKind, started_ms: u64) -> StepReport {
    let agent = match kind {
        PlanRegionKind::For { .. } => "for",
        PlanRegionKind::Repeat { .. } => "repeat",
        PlanRegionKind::If { .. } => "if",
        PlanRegionKind::Call { workflow, .. } => workflow,
    };
    StepReport {
        attempts: 1,
        started_ms: Some(started_ms),
        ..StepReport::blank(node.name.clone(), agent, StepStatus::Succeeded)
    }
}

/// Completes a region's report with how it ended at `finished_ms`; returns its exports
/// (none when it failed).
pub(super) fn end_region(
    report: &mut StepReport,
    result: Result<RegionResult, StepStatus>,
    finished_ms: u64,
) -> Vec<(NodeId, Option<Json>)> {
    report.finished_ms = Some(finished_ms);
    match result {
        Ok(r) => {
            report.value = r.value;
            report.output = r.text;
            report.warnings = r.warnings;
            r.exports
        }
        Err(status) => {
            report.status = status;
            Vec::new()
        }
    }
}

/// A copy of `plan` whose members of region `region` are renamed with `suffix` (`[2]` for the
/// second item of a `for`, `#3` for the third iteration of a `repeat`), so that reports,
/// events and journals tell instances apart.
pub(super) fn renamed(plan: &Plan, region: usize, suffix: &str) -> Plan {
    let mut plan = plan.clone();
    if !suffix.is_empty() {
        for &m in &plan.regions[region].members.clone() {
            plan.nodes[m].name.push_str(suffix);
        }
    }
    plan
}

/// The nodes one instance of body `body` of region `region` runs (a `for`'s item node is
/// not a step), by node.
pub(super) fn body_active(plan: &Plan, region: usize, body: usize) -> Vec<bool> {
    let mut active = vec![false; plan.nodes.len()];
    for &m in plan.regions[region].bodies.get(body).into_iter().flatten() {
        active[m] = !matches!(plan.nodes[m].exec, PlanExec::Item);
    }
    active
}

/// The status of a region whose body run (`what`: "iteration 2 of `x`") did not succeed:
/// interrupted, or failed with why the body stopped or its first failed step.
pub(super) fn body_failure(
    interrupted: bool,
    stopped: Option<&str>,
    steps: &[StepReport],
    what: &str,
) -> StepStatus {
    if interrupted {
        return StepStatus::Interrupted;
    }
    let why = stopped
        .map(str::to_string)
        .or_else(|| {
            steps.iter().find_map(|s| match &s.status {
                StepStatus::Failed(e) => Some(format!("step `{}` failed: {e}", s.name)),
                _ => None,
            })
        })
        .unwrap_or_else(|| "a step did not succeed".into());
    StepStatus::Failed(format!("{what}: {why}"))
}

// ------------------------------------------------------------------ parallel for

/// One instance of a `for`: which body, the item (none over agents) and its label.
pub(super) type ForItem = (usize, Option<Json>, String);

/// How many instances of `total` must succeed under `policy`.
pub(super) fn needed(policy: Policy, total: usize) -> usize {
    match policy {
        Policy::All => total,
        Policy::Any => 1,
        Policy::First(n) | Policy::Min(n) => n as usize,
    }
}

/// The failure of `for` region `name` whose `gather` needs more instances than its list has.
pub(super) fn unmeetable(policy: Policy, items: usize, name: &str) -> Option<StepStatus> {
    let need = needed(policy, items);
    (need > items).then(|| {
        StepStatus::Failed(format!(
            "`gather <{policy}>` needs {need} instances of `{name}` to succeed, but its list has {items} item{}",
            if items == 1 { "" } else { "s" }
        ))
    })
}

/// The node whose output is the value of an instance of body `body`.
pub(super) fn result_node(results: &[NodeId], body: usize) -> Option<NodeId> {
    results
        .get(if results.len() > 1 { body } else { 0 })
        .copied()
}

/// What failed, for instance `i` (0-based) of `for` region `name`.
pub(super) fn item_what(i: usize, name: &str, label: &str) -> String {
    format!("item {} of `{name}` ({label})", i + 1)
}

/// The failure of a `for` whose tolerant `gather` was not met.
pub(super) fn shortfall(succeeded: usize, total: usize, policy: Policy, name: &str) -> StepStatus {
    StepStatus::Failed(format!(
        "only {succeeded} of {total} instances of `{name}` succeeded; `gather <{policy}>` needs {}",
        needed(policy, total)
    ))
}

/// The result of a `for` that ended: the values of the instances that succeeded (`ok`), in
/// item order, its text, which items it left out and why (`failed_at`: failed, else not
/// needed), and a warning for an empty list.
pub(super) fn for_result(
    list: &ListSource,
    policy: Policy,
    items: &[ForItem],
    values: &[Option<Json>],
    ok: &[bool],
    failed_at: &[bool],
) -> RegionResult {
    // An empty list runs nothing: said, not silent.
    let warnings = if items.is_empty() {
        let list = match list {
            ListSource::Ref(p) => format!("`{}`", p.path),
            _ => "its list".to_string(),
        };
        vec![format!(
            "{list} is empty: no instance ran, and its value is an empty list"
        )]
    } else {
        Vec::new()
    };
    let kept = || items.iter().zip(values).zip(ok).filter(|(_, ok)| **ok);
    let mut text = kept()
        .map(|(((_, _, label), v), _)| {
            format!(
                "## {label}\n{}",
                v.as_ref().map(json_text).unwrap_or_default().trim_end()
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let left_out: Vec<String> = (0..items.len())
        .filter(|&i| !ok[i])
        .map(|i| {
            let why = if failed_at[i] { "failed" } else { "not needed" };
            format!("item {} ({}) {why}", i + 1, items[i].2)
        })
        .collect();
    if !left_out.is_empty() {
        text.push_str(&format!(
            "\n\nleft out by `gather <{policy}>`: {}",
            left_out.join("; ")
        ));
    }
    RegionResult {
        value: Some(Json::Array(
            kept()
                .map(|((_, v), _)| v.clone().unwrap_or(Json::Null))
                .collect(),
        )),
        text: Some(text),
        exports: Vec::new(),
        warnings,
    }
}

/// `plan` without the literal items (and their source text) of the list of the `for` region
/// standing at `node`, nor what only `orch plan` shows (levels, critical path, notes, MCP
/// tool notes): the instances do not read them, so a long literal list is not copied once
/// per item (quadratic), and each instance's copy is smaller.
pub(super) fn without_list(plan: &Plan, node: NodeId) -> Plan {
    let mut copy = plan.clone();
    copy.levels = Vec::new();
    copy.critical_path = Vec::new();
    copy.notes = Vec::new();
    copy.mcp_tools = Default::default();
    if let PlanExec::Region { region } = copy.nodes[node].exec
        && let PlanRegionKind::For { list, .. } = &mut copy.regions[region].kind
        && let ListSource::Literal(items) = &mut list.items
    {
        *items = Vec::new();
        // Its source text too (`[...]`, as long as the list): shown by `orch plan` only.
        list.source = String::new();
    }
    copy
}

/// The reports of the steps of instance `i` (body `body`) of the `for` region `region` that
/// a met `gather` (or a failure) never started: cancelled, renamed as the instance's.
pub(super) fn not_started(
    plan: &Plan,
    region: usize,
    body: usize,
    i: usize,
    at: Option<u64>,
) -> Vec<StepReport> {
    plan.regions[region]
        .bodies
        .get(body)
        .into_iter()
        .flatten()
        .filter(|&&m| !matches!(plan.nodes[m].exec, PlanExec::Item))
        .map(|&m| {
            let mut node = plan.nodes[m].clone();
            node.name.push_str(&format!("[{}]", i + 1));
            StepReport::not_run(&node, StepStatus::Cancelled, at)
        })
        .collect()
}

/// The instances of a `for` over `list`, evaluated in `scope`.
///
/// # Errors
/// The failure of the region when its list is not a list (or has no value).
pub(super) fn for_items(scope: &Scope<'_>, list: &ListSource) -> Result<Vec<ForItem>, StepStatus> {
    // One instance of the one body, labelled by its item.
    let item = |v: Json| {
        let label = label_of(&v);
        (0, Some(v), label)
    };
    Ok(match list {
        ListSource::Agents(agents) => agents
            .iter()
            .enumerate()
            .map(|(i, a)| (i, None, a.clone()))
            .collect(),
        ListSource::Literal(templates) => templates
            .iter()
            .map(|t| item(template_value(t, scope)))
            .collect(),
        ListSource::Ref(p) => match scope.value(p) {
            Some(Json::Array(items)) => items.into_iter().map(item).collect(),
            Some(Json::String(s)) => match serde_json::from_str::<Json>(s.trim()) {
                Ok(Json::Array(items)) => items.into_iter().map(item).collect(),
                _ => {
                    return Err(StepStatus::Failed(format!(
                        "`for` needs a list, but `{}` is text that is not a JSON list; give the step that makes it `-> list<text>`",
                        p.path
                    )));
                }
            },
            Some(other) => {
                return Err(StepStatus::Failed(format!(
                    "`for` needs a list, but `{}` is {}",
                    p.path,
                    kind_of(&other)
                )));
            }
            None => {
                return Err(StepStatus::Failed(format!(
                    "`for` needs a list, but `{}` has no value",
                    p.path
                )));
            }
        },
    })
}

/// An item's label in a `for`'s text: its first line, redacted, then shortened.
fn label_of(v: &Json) -> String {
    let text = crate::redact::redact(json_text(v));
    text.slice(|t| t.lines().next().unwrap_or("").trim())
        .shorten(60)
        .into_string()
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "empty",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "a record",
    }
}

/// A literal list item: a name alone keeps its value (a record stays a record); anything
/// else is text.
fn template_value(t: &Template, scope: &Scope<'_>) -> Json {
    if let Some(v) = t.only_interp().and_then(|i| scope.value(i)) {
        return v;
    }
    Json::String(scope.render(t))
}

// ------------------------------------------------------------------ repeat

/// What failed, for iteration `k` (1-based) of `repeat` region `name`.
pub(super) fn iteration_what(k: u32, name: &str) -> String {
    format!("iteration {k} of `{name}`")
}

/// Whether a `repeat`'s `until` holds after an iteration (`scope`: that iteration's plan and
/// outputs).
///
/// # Errors
/// The region's failure when the condition cannot be evaluated.
pub(super) fn until_holds(until: &CondExpr, scope: &Scope<'_>) -> Result<bool, StepStatus> {
    eval(until, scope).map_err(|e| StepStatus::Failed(format!("`until`: {e}")))
}

/// The end of a `repeat` after `iterations` iterations: `held` (its `until`), or stopped at
/// `max`, a warning on the region's report or with `else fail` its failure.
pub(super) fn repeat_end(
    held: bool,
    iterations: u32,
    max: u32,
    else_fail: bool,
    exports: Vec<(NodeId, Option<Json>)>,
) -> Result<RegionResult, StepStatus> {
    if held {
        return Ok(RegionResult {
            text: Some(format!(
                "`until` held after {}",
                plural(iterations, "iteration")
            )),
            exports,
            ..RegionResult::default()
        });
    }
    let stopped = format!("stopped at `max {max}` without `until` holding");
    if else_fail {
        return Err(StepStatus::Failed(format!(
            "{stopped} (`until ... else fail`); raise `max`, or let the loop's steps meet the condition sooner"
        )));
    }
    Ok(RegionResult {
        text: Some(stopped.clone()),
        exports,
        warnings: vec![format!(
            "{stopped}: its results are those of the last iteration; write `until ... else fail` to make this a failure"
        )],
        ..RegionResult::default()
    })
}

/// The values a region exports after body `body` ran: each exported name's value there,
/// for its node in every body (later steps look a name up by the node it is bound to).
pub(super) fn exported(
    r: &PlanRegion,
    body: usize,
    outputs: &[Option<Json>],
) -> Vec<(NodeId, Option<Json>)> {
    r.exports
        .values()
        .flat_map(|nodes| {
            let v = nodes.get(body).and_then(|&n| outputs[n].clone());
            nodes.iter().map(move |&n| (n, v.clone()))
        })
        .collect()
}

// ------------------------------------------------------------------ if

/// Which body of `if` region `r` runs: `(whether the condition held, the body)`, the body
/// `None` when it did not hold and there is no `else`.
///
/// # Errors
/// The region's failure when the condition cannot be evaluated.
pub(super) fn if_body(
    r: &PlanRegion,
    cond: &CondExpr,
    scope: &Scope<'_>,
) -> Result<(bool, Option<usize>), StepStatus> {
    let holds = eval(cond, scope).map_err(|e| StepStatus::Failed(format!("`if`: {e}")))?;
    let body = if holds { 0 } else { 1 };
    Ok((holds, (body < r.bodies.len()).then_some(body)))
}

/// The result of an `if` whose condition did not hold, without an `else`.
pub(super) fn if_skipped() -> RegionResult {
    RegionResult {
        text: Some("the condition did not hold; no `else`".into()),
        ..RegionResult::default()
    }
}

/// Which branch of an `if` failed.
pub(super) fn branch_what(holds: bool) -> &'static str {
    if holds {
        "the `if` branch"
    } else {
        "the `else` branch"
    }
}

/// The result of an `if` whose branch succeeded.
pub(super) fn if_result(holds: bool, exports: Vec<(NodeId, Option<Json>)>) -> RegionResult {
    RegionResult {
        value: None,
        text: Some(
            if holds {
                "took the `if` branch"
            } else {
                "took the `else` branch"
            }
            .into(),
        ),
        exports,
        warnings: Vec::new(),
    }
}

// ------------------------------------------------------------------ calls

/// What failed, for the call standing at `name`.
pub(super) fn call_what(name: &str) -> String {
    format!("call `{name}`")
}

/// The result of a workflow call whose body succeeded: its `return` (`output`) or its last
/// steps' outputs; `scope`: the body's plan and outputs, `region`: the call's region.
pub(super) fn call_result(
    output: Option<&Template>,
    scope: &Scope<'_>,
    region: usize,
) -> RegionResult {
    let (value, text) = match output {
        Some(t) => {
            let v = template_value(t, scope);
            let text = json_text(&v);
            (Some(v), text)
        }
        None => {
            let mut active = vec![false; scope.plan.nodes.len()];
            for &m in &scope.plan.regions[region].bodies[0] {
                active[m] = true;
            }
            let text = final_outputs(scope.plan, &active, scope.outputs);
            (Some(Json::String(text.clone())), text)
        }
    };
    // A text value is the output; a structured one is also kept as a value.
    let value = value.filter(|v| !v.is_string());
    RegionResult {
        value,
        text: Some(text),
        exports: Vec::new(),
        warnings: Vec::new(),
    }
}

// ------------------------------------------------------------------ conditions

/// Evaluates a condition against the values known at this point.
///
/// # Errors
/// A message when an operand alone is not a bool, or an ordering compares non-numbers.
pub(super) fn eval(c: &CondExpr, scope: &Scope<'_>) -> Result<bool, String> {
    match c {
        CondExpr::Not(x) => Ok(!eval(x, scope)?),
        CondExpr::And(a, b) => Ok(eval(a, scope)? && eval(b, scope)?),
        CondExpr::Or(a, b) => Ok(eval(a, scope)? || eval(b, scope)?),
        CondExpr::Value(v) => match operand(v, scope) {
            Json::Bool(b) => Ok(b),
            // Not produced yet (a step that did not run): not true.
            Json::Null => Ok(false),
            Json::String(s) if s.trim() == "true" => Ok(true),
            Json::String(s) if s.trim() == "false" => Ok(false),
            other => Err(format!(
                "`{}` is {}, not true or false",
                v.source(),
                kind_of(&other)
            )),
        },
        CondExpr::Compare(a, op, b) => {
            let (x, y) = (operand(a, scope), operand(b, scope));
            if op.is_ordering() {
                let (Some(x), Some(y)) = (number(&x), number(&y)) else {
                    return Err(format!(
                        "`{}` compares numbers, but `{}` is {} and `{}` is {}",
                        op.symbol(),
                        a.source(),
                        kind_of(&x),
                        b.source(),
                        kind_of(&y)
                    ));
                };
                Ok(match op {
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    _ => x >= y,
                })
            } else {
                let same = match (number(&x), number(&y)) {
                    (Some(p), Some(q)) if !x.is_string() || !y.is_string() => p == q,
                    _ => match (&x, &y) {
                        // Model text often ends with a newline: compare trimmed.
                        (Json::String(p), Json::String(q)) => p.trim() == q.trim(),
                        _ => x == y,
                    },
                };
                Ok(if *op == CmpOp::Eq { same } else { !same })
            }
        }
    }
}

fn operand(v: &Operand, scope: &Scope<'_>) -> Json {
    match v {
        Operand::Ref(i) => scope.value(i).unwrap_or(Json::Null),
        Operand::Text { template, .. } => Json::String(scope.render(template)),
        Operand::Const { value, .. } => value.clone(),
    }
}

fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
