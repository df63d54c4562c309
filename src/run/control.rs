//! Running regions: `parallel for`, `repeat ... until`, `if ... else` and workflow calls.
//!
//! A region is one node for the scheduler around it. When it may start, its task runs the
//! region's body with a scheduler of its own ([`super::Frame`]): the outside is settled (its
//! outputs are copied in), and the body's steps run as any steps do — retries, budgets
//! (shared with the whole run), the journal, events. Each instance of a body runs on a copy
//! of the plan whose steps are renamed for it (`post[2]` for the second item of a `for`,
//! `draft#3` for the third iteration of a `repeat`), so reports, events and the journal tell
//! instances apart, and a resumed run reuses each instance's steps by name and cache key.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use indexmap::IndexMap;
use serde_json::Value as Json;
use tokio::sync::mpsc::UnboundedSender;

use super::batch::Hold;
use super::cancel::{self, Cancel};
use super::prepare::Shared;
use super::render::{InputValue, Scope, json_text};
use super::scheduler::{Frame, Outcome, Scheduler, final_outputs};
use super::{Event, RunOptions, RunReport, StepReport, StepStatus, budget::Budgets};
use crate::common::{CmpOp, Policy, plural};
use crate::plan::{
    CondExpr, ListSource, NodeId, Operand, Plan, PlanExec, PlanRegionKind, Template,
};

/// What a region's task needs: the plan it is part of, the run's shared state, and the
/// outputs settled when it started.
pub(super) struct RegionTask {
    pub plan: Arc<Plan>,
    pub inputs: Arc<IndexMap<String, InputValue>>,
    pub shared: Arc<Shared>,
    pub opts: RunOptions,
    pub budgets: Arc<Mutex<Budgets>>,
    pub outputs: Vec<Option<Json>>,
    pub node: NodeId,
    pub tx: UnboundedSender<Event>,
    /// In a `parallel <batch>` block: the block's batcher, held until the region's bodies have
    /// started their first steps ([`super::batch`]).
    pub hold: std::sync::Mutex<Option<Hold>>,
}

impl RegionTask {
    /// The region's hold, taken (for its first body, or to release it).
    fn take_hold(&self) -> Option<Hold> {
        self.hold.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Another hold of the region's batcher, for one of its bodies.
    fn body_hold(&self) -> Option<Hold> {
        self.hold
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Hold::another)
    }
}

/// One run of one body.
struct BodyRun {
    plan: Arc<Plan>,
    report: RunReport,
    outputs: Vec<Option<Json>>,
}

/// What a region produced, or why it failed.
#[derive(Default)]
struct RegionResult {
    value: Option<Json>,
    text: Option<String>,
    exports: Vec<(NodeId, Option<Json>)>,
    /// What a user should know of how it ended ([`StepReport::warnings`]).
    warnings: Vec<String>,
}

/// Runs a region's body to the end (boxed: a region's scheduler may start regions).
pub(super) fn run_region(task: RegionTask) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async move {
        let node = &task.plan.nodes[task.node];
        let PlanExec::Region { region } = node.exec else {
            unreachable!("a region task runs a region node");
        };
        let plan = task.plan.clone();
        let kind = &plan.regions[region].kind;
        let agent = match kind {
            PlanRegionKind::For { .. } => "for",
            PlanRegionKind::Repeat { .. } => "repeat",
            PlanRegionKind::If { .. } => "if",
            PlanRegionKind::Call { workflow, .. } => workflow,
        };
        let mut report = StepReport {
            attempts: 1,
            started_ms: Some(task.shared.start.elapsed().as_millis() as u64),
            ..StepReport::blank(node.name.clone(), agent, StepStatus::Succeeded)
        };
        let mut inner = Vec::new();
        let mut reused = Vec::new();
        let result = match kind {
            PlanRegionKind::For {
                var,
                list,
                max,
                results,
                gather,
                ..
            } => {
                let spec = ForSpec {
                    var: *var,
                    list: &list.items,
                    max: *max,
                    results,
                    policy: gather.unwrap_or(Policy::All),
                };
                run_for(&task, &spec, &mut inner, &mut reused).await
            }
            PlanRegionKind::Repeat {
                max,
                until,
                else_fail,
            } => {
                let spec = RepeatSpec {
                    region,
                    max: *max,
                    until: &until.expr,
                    else_fail: *else_fail,
                };
                run_repeat(&task, &spec, &mut inner, &mut reused).await
            }
            PlanRegionKind::If { cond } => {
                run_if(&task, region, &cond.expr, &mut inner, &mut reused).await
            }
            PlanRegionKind::Call { output, .. } => {
                run_call(&task, output.as_ref(), &mut inner, &mut reused).await
            }
        };
        report.finished_ms = Some(task.shared.start.elapsed().as_millis() as u64);
        let exports = match result {
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
        };
        Outcome {
            node: task.node,
            report,
            inner,
            exports,
            reused,
            journal_error: None,
        }
    })
}

/// Runs body `body` of the task's region once, renamed with `suffix`, starting from
/// `outputs`.
async fn run_body(
    task: &RegionTask,
    body: usize,
    suffix: &str,
    outputs: Vec<Option<Json>>,
) -> BodyRun {
    run_body_until(task, body, suffix, outputs, None, task.take_hold()).await
}

/// [`run_body`], stopped by `stop` (a `gather <any|first N>` met) as well as by the run's
/// own cancellation: the steps it stops are then reported as cancelled, not interrupted.
async fn run_body_until(
    task: &RegionTask,
    body: usize,
    suffix: &str,
    outputs: Vec<Option<Json>>,
    stop: Option<&GatherStop>,
    hold: Option<Hold>,
) -> BodyRun {
    let PlanExec::Region { region } = task.plan.nodes[task.node].exec else {
        unreachable!("a region task runs a region node");
    };
    let r = &task.plan.regions[region];
    let mut plan = (*task.plan).clone();
    if !suffix.is_empty() {
        for &m in &r.members {
            plan.nodes[m].name.push_str(suffix);
        }
    }
    let plan = Arc::new(plan);
    let mut active = vec![false; plan.nodes.len()];
    for &m in r.bodies.get(body).into_iter().flatten() {
        active[m] = !matches!(plan.nodes[m].exec, PlanExec::Item);
    }
    let frame = Frame {
        active,
        outputs,
        hold,
    };
    let tx = task.tx.clone();
    let mut opts = task.opts.clone();
    if let Some(s) = stop {
        opts.cancel = Some(s.cancel.clone());
    }
    let relabel = stop.cloned();
    let on_event = move |e: &Event| {
        let e = match (e, &relabel) {
            (Event::Finished(r), Some(s)) => Event::Finished(s.relabel(r.clone())),
            _ => e.clone(),
        };
        let _ = tx.send(e);
    };
    let (mut report, outputs) = Scheduler::new(
        &plan,
        &task.inputs,
        task.shared.clone(),
        &opts,
        frame,
        task.budgets.clone(),
    )
    .run_frame(&on_event)
    .await;
    if let Some(s) = stop {
        report.steps = report.steps.into_iter().map(|r| s.relabel(r)).collect();
    }
    BodyRun {
        plan,
        report,
        outputs,
    }
}

/// The status of a region whose body run did not succeed.
fn failed(run: &BodyRun, what: &str) -> StepStatus {
    if run.report.interrupted {
        return StepStatus::Interrupted;
    }
    let why = run
        .report
        .stopped
        .clone()
        .or_else(|| {
            run.report.steps.iter().find_map(|s| match &s.status {
                StepStatus::Failed(e) => Some(format!("step `{}` failed: {e}", s.name)),
                _ => None,
            })
        })
        .unwrap_or_else(|| "a step did not succeed".into());
    StepStatus::Failed(format!("{what}: {why}"))
}

// ------------------------------------------------------------------ parallel for

/// What a `parallel for` runs: its list, bounds, results and the policy of the `gather`
/// after it (`all` without one).
struct ForSpec<'a> {
    var: Option<NodeId>,
    list: &'a ListSource,
    max: Option<u32>,
    results: &'a [NodeId],
    policy: Policy,
}

/// Stops the instances still running once a `gather <any|first N>` is met or a tolerant
/// policy cannot be met any more, or when the run is cancelled (which it forwards): steps it
/// stops for the gather are reported as cancelled, like the branches of a block a gather no
/// longer needs.
#[derive(Clone)]
struct GatherStop {
    cancel: Cancel,
    /// The run's own cancellation: steps it stops stay interrupted.
    run: Option<Cancel>,
}

impl GatherStop {
    /// A step stopped by this handle, in flight (interrupted) or before it started (skipped
    /// because the instance was interrupted), is cancelled unless the run itself was.
    fn relabel(&self, mut r: StepReport) -> StepReport {
        let by_run = self.run.as_ref().is_some_and(Cancel::is_cancelled);
        let stopped = match &r.status {
            StepStatus::Interrupted => true,
            StepStatus::Skipped(why) => why.starts_with("interrupted"),
            _ => false,
        };
        if stopped && !by_run && self.cancel.is_cancelled() {
            r.status = StepStatus::Cancelled;
        }
        r
    }
}

/// How many instances of a `parallel for` start before the ones that ended meanwhile are
/// taken (and dropped): bounds what is in memory when many items start at once.
const START_CHUNK: usize = 64;

/// How many instances of `total` must succeed under `policy`.
fn needed(policy: Policy, total: usize) -> usize {
    match policy {
        Policy::All => total,
        Policy::Any => 1,
        Policy::First(n) | Policy::Min(n) => n as usize,
    }
}

/// Runs the instances of a `parallel for`, at most `max` at once. Under `all` a failed
/// instance fails the region (and no new one starts unless `--keep-going`); under a
/// tolerant `gather` policy failed instances are left out of the value, `any` and `first N`
/// stop the rest once met, and the region fails only when the policy cannot be met.
async fn run_for(
    task: &RegionTask,
    spec: &ForSpec<'_>,
    inner: &mut Vec<StepReport>,
    reused: &mut Vec<String>,
) -> Result<RegionResult, StepStatus> {
    let items = for_items(task, spec.list)?;
    // Each instance runs on a copy of the plan (its steps renamed `[i]`): a copy without
    // the list's items, which the instances do not read, so that a long literal list is not
    // copied once per item (quadratic).
    let stripped = RegionTask {
        plan: Arc::new(without_list(&task.plan, task.node)),
        inputs: task.inputs.clone(),
        shared: task.shared.clone(),
        opts: task.opts.clone(),
        budgets: task.budgets.clone(),
        outputs: Vec::new(),
        node: task.node,
        tx: task.tx.clone(),
        hold: std::sync::Mutex::new(None),
    };
    let name = &task.plan.nodes[task.node].name;
    let tolerant = spec.policy != Policy::All;
    let need = needed(spec.policy, items.len());
    if need > items.len() {
        return Err(StepStatus::Failed(format!(
            "`gather <{}>` needs {need} instances of `{name}` to succeed, but its list has {} item{}",
            spec.policy,
            items.len(),
            if items.len() == 1 { "" } else { "s" }
        )));
    }
    let stop = GatherStop {
        cancel: Cancel::new(),
        run: task.opts.cancel.clone(),
    };
    let stop = tolerant.then_some(stop);
    // `any` and `first N` are done once met; `min N` waits for every instance.
    let early = matches!(spec.policy, Policy::Any | Policy::First(_));
    let limit = spec.max.map_or(usize::MAX, |m| m.max(1) as usize);
    let mut values: Vec<Option<Json>> = vec![None; items.len()];
    let mut ok = vec![false; items.len()];
    let (mut succeeded, mut settled) = (0, 0);
    let mut failure: Option<StepStatus> = None;
    let mut done = false;
    let mut failed_at = vec![false; items.len()];
    let mut queue = items.iter().enumerate();
    let mut running = FuturesUnordered::new();
    loop {
        let may_start = !done && (tolerant || failure.is_none() || task.opts.keep_going);
        let mut started = 0;
        while may_start && running.len() < limit && started < START_CHUNK {
            started += 1;
            let Some((i, (body, item, _))) = queue.next() else {
                break;
            };
            let mut outputs = task.outputs.clone();
            if let (Some(v), Some(item)) = (spec.var, item) {
                outputs[v] = Some(item.clone());
            }
            let suffix = format!("[{}]", i + 1);
            let stop = stop.as_ref();
            let stripped = &stripped;
            let hold = task.body_hold();
            // Outside tokio's cooperative budget: once the region's task spent its budget,
            // every instance polled in the same pass would return at once and wake itself
            // again, so each pass of `running` would poll every instance (quadratic in the
            // items: a 100,000-item `for` took minutes).
            running.push(tokio::task::unconstrained(async move {
                let run = run_body_until(stripped, *body, &suffix, outputs, stop, hold).await;
                (i, *body, run)
            }));
        }
        // More instances may start at once: take the ones that ended meanwhile, without
        // waiting, then start the next chunk. Starting every instance before looking at any
        // that ended would keep all of them in memory at once (~30 KB each).
        let more = may_start && running.len() < limit && queue.len() > 0;
        if !more {
            // No further instance starts before one ends: the region's own hold goes (each
            // instance started holds the block's batcher until its first steps started).
            drop(task.take_hold());
        }
        let watch = stop.as_ref().filter(|s| !s.cancel.is_cancelled());
        let next = tokio::select! {
            biased;
            // The run's cancellation reaches the instances through the gather's handle.
            () = cancel::cancelled(watch.and_then(|s| s.run.as_ref())), if watch.is_some() => {
                if let Some(s) = watch {
                    s.cancel.cancel();
                }
                continue;
            }
            next = running.next() => next,
            () = tokio::task::yield_now(), if more => continue,
        };
        let Some((i, body, mut run)) = next else {
            break;
        };
        settled += 1;
        failed_at[i] = !run.report.succeeded && !run.report.interrupted;
        let met = early && succeeded >= need;
        if run.report.succeeded && !met {
            let result = spec
                .results
                .get(if spec.results.len() > 1 { body } else { 0 });
            values[i] = result.and_then(|&n| run.outputs[n].take());
            ok[i] = true;
            succeeded += 1;
        } else if !run.report.succeeded && failure.is_none() && !met {
            failure = Some(failed(
                &run,
                &format!("item {} of `{name}` ({})", i + 1, items[i].2),
            ));
        }
        // The instance's reports move to the region's (the step reports are not copied).
        let BodyRun { report, .. } = run;
        reused.extend(report.reused);
        inner.extend(report.steps);
        // Nothing more to start, and the instances in flight are stopped: an `any` /
        // `first N` is met, or the policy cannot be met any more.
        let hopeless = tolerant && succeeded + (items.len() - settled) < need;
        if (early && succeeded >= need) || hopeless {
            done = true;
            if let Some(s) = &stop {
                s.cancel.cancel();
            }
        }
    }
    // Instances a met `gather` never started.
    for (i, (body, _, _)) in queue {
        inner.extend(not_started(task, *body, i));
    }
    if !tolerant {
        if let Some(f) = failure {
            return Err(f);
        }
    } else if succeeded < need && task.opts.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
        return Err(StepStatus::Interrupted);
    } else if succeeded < need {
        return Err(StepStatus::Failed(format!(
            "only {succeeded} of {} instances of `{name}` succeeded; `gather <{}>` needs {need}",
            items.len(),
            spec.policy
        )));
    }
    // An empty list runs nothing: said, not silent.
    let warnings = if items.is_empty() {
        let list = match spec.list {
            ListSource::Ref(p) => format!("`{}`", p.path),
            _ => "its list".to_string(),
        };
        vec![format!(
            "{list} is empty: no instance ran, and its value is an empty list"
        )]
    } else {
        Vec::new()
    };
    let kept = || items.iter().zip(&values).zip(&ok).filter(|(_, ok)| **ok);
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
            "\n\nleft out by `gather <{}>`: {}",
            spec.policy,
            left_out.join("; ")
        ));
    }
    Ok(RegionResult {
        value: Some(Json::Array(
            kept()
                .map(|((_, v), _)| v.clone().unwrap_or(Json::Null))
                .collect(),
        )),
        text: Some(text),
        exports: Vec::new(),
        warnings,
    })
}

/// `plan` without the literal items (and their source text) of the list of the `for` region
/// standing at `node`.
fn without_list(plan: &Plan, node: NodeId) -> Plan {
    let mut copy = plan.clone();
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

/// The steps of instance `i` (body `body`) that a met `gather` did not start, reported as
/// cancelled, with an event each (as the steps of a block the gather no longer needs).
fn not_started(task: &RegionTask, body: usize, i: usize) -> Vec<StepReport> {
    let PlanExec::Region { region } = task.plan.nodes[task.node].exec else {
        unreachable!("a region task runs a region node");
    };
    let at = Some(task.shared.start.elapsed().as_millis() as u64);
    let bodies = &task.plan.regions[region].bodies;
    bodies
        .get(body)
        .into_iter()
        .flatten()
        .filter(|&&m| !matches!(task.plan.nodes[m].exec, PlanExec::Item))
        .map(|&m| {
            let mut node = task.plan.nodes[m].clone();
            node.name.push_str(&format!("[{}]", i + 1));
            let report = StepReport::not_run(&node, StepStatus::Cancelled, at);
            let _ = task.tx.send(Event::Finished(report.clone()));
            report
        })
        .collect()
}

/// The instances of a `for`: for each, which body, the item (none over agents) and its label.
///
/// # Errors
/// The failure of the region when its list is not a list (or has no value).
fn for_items(
    task: &RegionTask,
    list: &ListSource,
) -> Result<Vec<(usize, Option<Json>, String)>, StepStatus> {
    let scope = Scope {
        plan: &task.plan,
        inputs: &task.inputs,
        outputs: &task.outputs,
    };
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
            .map(|t| item(template_value(t, &scope)))
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

/// What a `repeat` runs: its region, bound, condition, and whether stopping at the bound
/// fails it (`until COND else fail`).
struct RepeatSpec<'a> {
    region: usize,
    max: u32,
    until: &'a CondExpr,
    else_fail: bool,
}

/// Runs a `repeat`: its body until `until` holds after an iteration, at most `max` times.
/// Stopping at `max` without `until` holding is a warning on the region's report, or with
/// `else fail` its failure.
async fn run_repeat(
    task: &RegionTask,
    spec: &RepeatSpec<'_>,
    inner: &mut Vec<StepReport>,
    reused: &mut Vec<String>,
) -> Result<RegionResult, StepStatus> {
    let RepeatSpec {
        region,
        max,
        until,
        else_fail,
    } = *spec;
    let mut outputs = task.outputs.clone();
    let mut held = false;
    let mut iterations = 0;
    for k in 1..=max.max(1) {
        iterations = k;
        let run = run_body(task, 0, &format!("#{k}"), outputs).await;
        reused.extend(run.report.reused.iter().cloned());
        inner.extend(run.report.steps.iter().cloned());
        if !run.report.succeeded {
            return Err(failed(
                &run,
                &format!("iteration {k} of `{}`", task.plan.nodes[task.node].name),
            ));
        }
        let scope = Scope {
            plan: &run.plan,
            inputs: &task.inputs,
            outputs: &run.outputs,
        };
        held = eval(until, &scope).map_err(|e| StepStatus::Failed(format!("`until`: {e}")))?;
        outputs = run.outputs;
        if held {
            break;
        }
    }
    let exports = exported(&task.plan.regions[region], 0, &outputs);
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
fn exported(
    r: &crate::plan::PlanRegion,
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

async fn run_if(
    task: &RegionTask,
    region: usize,
    cond: &CondExpr,
    inner: &mut Vec<StepReport>,
    reused: &mut Vec<String>,
) -> Result<RegionResult, StepStatus> {
    let scope = Scope {
        plan: &task.plan,
        inputs: &task.inputs,
        outputs: &task.outputs,
    };
    let holds = eval(cond, &scope).map_err(|e| StepStatus::Failed(format!("`if`: {e}")))?;
    let r = &task.plan.regions[region];
    let body = if holds { 0 } else { 1 };
    if body >= r.bodies.len() {
        return Ok(RegionResult {
            text: Some("the condition did not hold; no `else`".into()),
            ..RegionResult::default()
        });
    }
    let run = run_body(task, body, "", task.outputs.clone()).await;
    reused.extend(run.report.reused.iter().cloned());
    inner.extend(run.report.steps.iter().cloned());
    if !run.report.succeeded {
        let branch = if holds {
            "the `if` branch"
        } else {
            "the `else` branch"
        };
        return Err(failed(&run, branch));
    }
    let exports = exported(r, body, &run.outputs);
    Ok(RegionResult {
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
    })
}

// ------------------------------------------------------------------ calls

async fn run_call(
    task: &RegionTask,
    output: Option<&Template>,
    inner: &mut Vec<StepReport>,
    reused: &mut Vec<String>,
) -> Result<RegionResult, StepStatus> {
    let run = run_body(task, 0, "", task.outputs.clone()).await;
    reused.extend(run.report.reused.iter().cloned());
    inner.extend(run.report.steps.iter().cloned());
    if !run.report.succeeded {
        return Err(failed(
            &run,
            &format!("call `{}`", task.plan.nodes[task.node].name),
        ));
    }
    let scope = Scope {
        plan: &run.plan,
        inputs: &task.inputs,
        outputs: &run.outputs,
    };
    let PlanExec::Region { region } = task.plan.nodes[task.node].exec else {
        unreachable!("a region task runs a region node");
    };
    let (value, text) = match output {
        Some(t) => {
            let v = template_value(t, &scope);
            let text = json_text(&v);
            (Some(v), text)
        }
        None => {
            let mut active = vec![false; run.plan.nodes.len()];
            for &m in &task.plan.regions[region].bodies[0] {
                active[m] = true;
            }
            let text = final_outputs(&run.plan, &active, &run.outputs);
            (Some(Json::String(text.clone())), text)
        }
    };
    // A text value is the output; a structured one is also kept as a value.
    let value = value.filter(|v| !v.is_string());
    Ok(RegionResult {
        value,
        text: Some(text),
        exports: Vec::new(),
        warnings: Vec::new(),
    })
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

#[cfg(test)]
mod tests {
    use super::super::{RunOptions, RunReport, run};
    use crate::plan::plan_for_test;

    async fn run_script(src: &str) -> RunReport {
        let (program, plan) = plan_for_test(src);
        let opts = RunOptions::default();
        run(&plan, &program.tables.models, &opts, &|_| {})
            .await
            .expect("run starts")
    }

    /// Inside each instance of a `for` body the steps are renamed (`p[1]`), but `{b.p}` still
    /// reads the instance's own step of block `b`: references are resolved by node, not by
    /// name, when the plan is made.
    #[tokio::test]
    async fn a_block_member_read_inside_a_for_body_is_the_instance_s_own() {
        let report = run_script(
            r#"
agent say(x: text) { run: ["echo", "{x}"] }
workflow main() {
  out = parallel for t in ["one", "two"] {
    b = parallel { p = say(x: "item {t}"); q = say(x: "other") }
    r = say(x: "got {b.p}")
  }
}
"#,
        )
        .await;
        assert!(report.succeeded, "{report:?}");
        let output = |name: &str| {
            let s = report.steps.iter().find(|s| s.name == name);
            s.and_then(|s| s.output.clone()).unwrap_or_default()
        };
        assert_eq!(output("r[1]").trim(), "got item one");
        assert_eq!(output("r[2]").trim(), "got item two");
    }
}
