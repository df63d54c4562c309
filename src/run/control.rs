//! Running regions: `parallel for`, `repeat ... until`, `if ... else` and workflow calls.
//!
//! A region is one node for the scheduler around it. When it may start, its task runs the
//! region's body with a scheduler of its own ([`super::Frame`]): the outside is settled (its
//! outputs are copied in), and the body's steps run as any steps do — retries, budgets
//! (shared with the whole run), the journal, events. Each instance of a body runs on a copy
//! of the plan whose steps are renamed for it (`post[2]` for the second item of a `for`,
//! `draft#3` for the third iteration of a `repeat`), so reports, events and the journal tell
//! instances apart, and a resumed run reuses each instance's steps by name and cache key.
//! The rules themselves (a `for`'s list, conditions, `gather` counts, a region's value and
//! report) are pure functions in [`super::regions`], shared with the engine's interpreter.

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
use super::regions::{self, RegionResult};
use super::render::{InputValue, Scope};
use super::scheduler::{Frame, Outcome, Scheduler};
use super::{Event, RunOptions, RunReport, StepReport, StepStatus, budget::Budgets};
use crate::common::Policy;
use crate::plan::{CondExpr, ListSource, NodeId, Plan, PlanExec, PlanRegionKind, Template};

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

/// Runs a region's body to the end (boxed: a region's scheduler may start regions).
pub(super) fn run_region(task: RegionTask) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async move {
        let node = &task.plan.nodes[task.node];
        let PlanExec::Region { region } = node.exec else {
            unreachable!("a region task runs a region node");
        };
        let plan = task.plan.clone();
        let kind = &plan.regions[region].kind;
        let started = task.shared.start.elapsed().as_millis() as u64;
        let mut report = regions::region_report(node, kind, started);
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
        let finished = task.shared.start.elapsed().as_millis() as u64;
        let exports = regions::end_region(&mut report, result, finished);
        Outcome {
            node: task.node,
            report: Box::new(report),
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
    let plan = Arc::new(regions::renamed(&task.plan, region, suffix));
    let active = regions::body_active(&plan, region, body);
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
    // Without a gather's relabelling, the body's steps send their events straight on the
    // region's channel (the body makes none of its own): they reach the region's frame as
    // they would through `on_event`, uncopied.
    let direct = relabel.is_none().then(|| tx.clone());
    let on_event = move |e: &Event| {
        let e = match (e, &relabel) {
            (Event::Finished(r), Some(s)) => Event::Finished(Box::new(s.relabel((**r).clone()))),
            _ => e.clone(),
        };
        let _ = tx.send(e);
    };
    let scheduler = Scheduler::new(
        &plan,
        &task.inputs,
        task.shared.clone(),
        &opts,
        frame,
        task.budgets.clone(),
    );
    let (mut report, outputs) = match direct {
        Some(tx) => scheduler.run_frame_on(tx, None, &on_event).await,
        None => scheduler.run_frame(&on_event).await,
    };
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
    regions::body_failure(
        run.report.interrupted,
        run.report.stopped.as_deref(),
        &run.report.steps,
        what,
    )
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
    let items = regions::for_items(
        &Scope {
            plan: &task.plan,
            inputs: &task.inputs,
            outputs: &task.outputs,
        },
        spec.list,
    )?;
    // Each instance runs on a copy of the plan (its steps renamed `[i]`): a copy without
    // the list's items, which the instances do not read, so that a long literal list is not
    // copied once per item (quadratic).
    let stripped = RegionTask {
        plan: Arc::new(regions::without_list(&task.plan, task.node)),
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
    let need = regions::needed(spec.policy, items.len());
    if let Some(status) = regions::unmeetable(spec.policy, items.len(), name) {
        return Err(status);
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
            let result = regions::result_node(spec.results, body);
            values[i] = result.and_then(|n| run.outputs[n].take());
            ok[i] = true;
            succeeded += 1;
        } else if !run.report.succeeded && failure.is_none() && !met {
            failure = Some(failed(&run, &regions::item_what(i, name, &items[i].2)));
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
        return Err(regions::shortfall(
            succeeded,
            items.len(),
            spec.policy,
            name,
        ));
    }
    Ok(regions::for_result(
        spec.list,
        spec.policy,
        &items,
        &values,
        &ok,
        &failed_at,
    ))
}

/// The steps of instance `i` (body `body`) that a met `gather` did not start, reported as
/// cancelled, with an event each (as the steps of a block the gather no longer needs).
fn not_started(task: &RegionTask, body: usize, i: usize) -> Vec<StepReport> {
    let PlanExec::Region { region } = task.plan.nodes[task.node].exec else {
        unreachable!("a region task runs a region node");
    };
    let at = Some(task.shared.start.elapsed().as_millis() as u64);
    let reports = regions::not_started(&task.plan, region, body, i, at);
    for r in &reports {
        let _ = task.tx.send(Event::Finished(Box::new(r.clone())));
    }
    reports
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
                &regions::iteration_what(k, &task.plan.nodes[task.node].name),
            ));
        }
        let scope = Scope {
            plan: &run.plan,
            inputs: &task.inputs,
            outputs: &run.outputs,
        };
        held = regions::until_holds(until, &scope)?;
        outputs = run.outputs;
        if held {
            break;
        }
    }
    let exports = regions::exported(&task.plan.regions[region], 0, &outputs);
    regions::repeat_end(held, iterations, max, else_fail, exports)
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
    let r = &task.plan.regions[region];
    let (holds, body) = regions::if_body(r, cond, &scope)?;
    let Some(body) = body else {
        return Ok(regions::if_skipped());
    };
    let run = run_body(task, body, "", task.outputs.clone()).await;
    reused.extend(run.report.reused.iter().cloned());
    inner.extend(run.report.steps.iter().cloned());
    if !run.report.succeeded {
        return Err(failed(&run, regions::branch_what(holds)));
    }
    let exports = regions::exported(r, body, &run.outputs);
    Ok(regions::if_result(holds, exports))
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
            &regions::call_what(&task.plan.nodes[task.node].name),
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
    Ok(regions::call_result(output, &scope, region))
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
