//! The scheduler: which steps may start, given what has settled, and what a settled step
//! releases. One runs the workflow's top level; each instance of a region's body gets its
//! own ([`super::control`]). The journal's hooks are in [`super::journal`], the budget's in
//! [`super::budget`]; running one step is [`super::step`].

use std::collections::VecDeque;
use std::sync::Arc;

use indexmap::IndexMap;
use tokio::task::JoinSet;

use super::prepare::Shared;
use super::provider::Usage;
use super::render::{self, InputValue, Scope};
use super::step::{Call, execute};
use super::wiring::{JoinState, Release, Wiring};
use super::{
    Event, RunOptions, RunReport, StepReport, StepStatus, batch, budget, cache_key, cancel,
    control, journal,
};
use crate::common::{FastMap, Policy};
use crate::plan::{NodeId, Plan, PlanExec, estimate_tokens};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum State {
    Waiting,
    Running,
    /// Settled; whether it succeeded (its status is in its report).
    Done {
        succeeded: bool,
    },
}

/// The result of one finished task.
pub(super) struct Outcome {
    pub(super) node: NodeId,
    /// Boxed: an outcome is moved several times on its way out of its task, and the box
    /// goes on, unmoved, as the step's [`Event::Finished`].
    pub(super) report: Box<StepReport>,
    /// For a region: the reports of the steps inside it.
    pub(super) inner: Vec<StepReport>,
    /// For a region: values of the names it exports, by node.
    pub(super) exports: Vec<(NodeId, Option<serde_json::Value>)>,
    /// For a region: its steps whose result came from the journal.
    pub(super) reused: Vec<String>,
    /// For a step: why its task could not journal it (the run then stops new work).
    pub(super) journal_error: Option<String>,
}

impl Outcome {
    pub(super) fn step(node: NodeId, report: StepReport) -> Self {
        Outcome {
            node,
            report: Box::new(report),
            inner: Vec::new(),
            exports: Vec::new(),
            reused: Vec::new(),
            journal_error: None,
        }
    }
}

/// The part of a plan one scheduler runs: the workflow's top level, or one body of a region
/// (`control`), whose outside is already settled.
pub(super) struct Frame {
    /// Nodes this scheduler runs.
    pub(super) active: Vec<bool>,
    /// Outputs known at the start: values from outside the region, the item of a `for`,
    /// the previous iteration's of a `repeat`.
    pub(super) outputs: Vec<Option<serde_json::Value>>,
    /// For a region's body inside a `parallel <batch>` block: the block's batcher held until
    /// the body has started its first steps ([`super::batch`]).
    pub(super) hold: Option<batch::Hold>,
}

impl Frame {
    /// The top level of a plan: every node outside regions, nothing known yet.
    pub(super) fn top(plan: &Plan) -> Self {
        Frame {
            active: plan.nodes.iter().map(|n| n.region.is_none()).collect(),
            outputs: vec![None; plan.nodes.len()],
            hold: None,
        }
    }
}

pub(super) struct Scheduler<'a> {
    pub(super) plan: &'a Plan,
    pub(super) inputs: &'a IndexMap<String, InputValue>,
    /// The same plan and inputs, for region tasks.
    plan_arc: Arc<Plan>,
    inputs_arc: Arc<IndexMap<String, InputValue>>,
    /// The options of the run, for region tasks.
    pub(in crate::run) opts: RunOptions,
    /// Nodes this scheduler runs ([`Frame::active`]).
    active: Vec<bool>,
    /// Reports of the steps inside regions, as they end.
    inner_reports: Vec<StepReport>,
    /// Steps inside regions whose result came from the journal.
    inner_reused: Vec<String>,
    pub(super) shared: Arc<Shared>,
    pub(super) max_tokens_cap: Option<u32>,
    state: Vec<State>,
    /// Outputs of settled steps: text as a JSON string, structured outputs as values.
    pub(super) outputs: Vec<Option<serde_json::Value>>,
    reports: Vec<Option<StepReport>>,
    /// For each node: dependencies not yet settled, excluding those its join handles.
    waiting_on: Vec<usize>,
    /// Reverse edges, without the ones a tolerant join handles.
    dependents: Vec<Vec<NodeId>>,
    /// Nodes to look at: their counted dependencies are settled, or their join moved.
    candidates: VecDeque<NodeId>,
    /// Tolerant joins (`any`, `first N`, `min N`), with their branch counters.
    joins: FastMap<NodeId, JoinState>,
    /// For each node: the tolerant joins it is a branch member of, with the branch index.
    watched_by: Vec<Vec<(NodeId, usize)>>,
    /// Nodes of a tolerant join's block, whose failure does not stop the run.
    tolerated: Vec<bool>,
    pub(super) stopped: Option<String>,
    /// Shared by the schedulers of every region of the run.
    budgets: Arc<std::sync::Mutex<budget::Budgets>>,
    pub(super) abort: FastMap<NodeId, tokio::task::AbortHandle>,
    keep_going: bool,
    cancel: Option<cancel::Cancel>,
    pub(super) interrupted: bool,
    pub(super) journal: Option<journal::Journal>,
    /// With a journal: the key parts of each step that was started, for its record (shared
    /// with the step's task, which records it; kept here for a step interrupted in flight;
    /// most nodes have none at any time, and the parts are large).
    pub(super) keys: Vec<Option<Arc<cache_key::StepKey>>>,
    /// Steps that ran in this process (not reused), for `--why-rerun` messages.
    pub(super) ran: Vec<bool>,
    /// Steps whose result came from the journal.
    pub(super) reused: Vec<bool>,
    /// The batchers held by the steps in flight of `parallel <batch>` blocks, by node
    /// ([`super::batch`]); released once what a step's end lets start has started.
    pub(super) holds: FastMap<NodeId, batch::Hold>,
    /// The frame's hold, released after its first steps started.
    frame_hold: Option<batch::Hold>,
    /// On a resumed run: why each step that is not reused runs again (told when it starts).
    pub(super) rerun_why: Vec<Option<String>>,
}

impl<'a> Scheduler<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        plan: &'a Arc<Plan>,
        inputs: &'a Arc<IndexMap<String, InputValue>>,
        shared: Arc<Shared>,
        opts: &RunOptions,
        frame: Frame,
        budgets: Arc<std::sync::Mutex<budget::Budgets>>,
    ) -> Self {
        let n = plan.nodes.len();
        let active = frame.active;
        let frame_hold = frame.hold;
        let Wiring {
            dependents,
            waiting_on,
            tolerated,
            joins,
            watched_by,
        } = Wiring::new(plan, |i| active[i]);
        let candidates = (0..n)
            .filter(|&i| active[i] && waiting_on[i] == 0)
            .collect();
        let state = (0..n)
            .map(|i| {
                if active[i] {
                    State::Waiting
                } else {
                    State::Done { succeeded: true }
                }
            })
            .collect();
        Scheduler {
            plan,
            inputs,
            plan_arc: plan.clone(),
            inputs_arc: inputs.clone(),
            opts: opts.clone(),
            active,
            inner_reports: Vec::new(),
            inner_reused: Vec::new(),
            shared,
            max_tokens_cap: opts.max_tokens_cap,
            state,
            outputs: frame.outputs,
            reports: vec![None; n],
            waiting_on,
            dependents,
            candidates,
            joins,
            watched_by,
            tolerated,
            stopped: None,
            budgets,
            abort: FastMap::default(),
            keep_going: opts.keep_going,
            cancel: opts.cancel.clone(),
            interrupted: false,
            journal: opts.journal.clone(),
            keys: vec![None; n],
            ran: vec![false; n],
            reused: vec![false; n],
            rerun_why: vec![None; n],
            holds: FastMap::default(),
            frame_hold,
        }
    }

    /// Runs the workflow's top level: its steps send their events on `tx`, whose receiver
    /// reports them as `on_event` would (see [`Scheduler::run_frame_on`]).
    pub(super) async fn run_top(
        self,
        tx: tokio::sync::mpsc::UnboundedSender<Event>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> RunReport {
        self.run_to_end(tx, None, on_event, false).await.0
    }

    /// Runs the frame to the end; returns the report and every output at the end.
    pub(super) async fn run_frame(
        self,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> (RunReport, Vec<Option<serde_json::Value>>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        self.run_frame_on(tx, Some(rx), on_event).await
    }

    /// [`Scheduler::run_frame`] whose steps send their events on `tx`: a channel of its own
    /// (`rx` its receiver, whose events go to `on_event`), or, without `rx`, an enclosing
    /// frame's, whose receiver reports them as this frame's `on_event` would. A `for`
    /// instance then makes no channel of its own (tokio allocates a block of 32 events for
    /// each, ~9 KiB) and its steps' events are not copied on the way up.
    pub(super) async fn run_frame_on(
        self,
        tx: tokio::sync::mpsc::UnboundedSender<Event>,
        rx: Option<tokio::sync::mpsc::UnboundedReceiver<Event>>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> (RunReport, Vec<Option<serde_json::Value>>) {
        self.run_to_end(tx, rx, on_event, true).await
    }

    /// [`Scheduler::run_frame_on`]; returns, when `keep_outputs`, every output at the end
    /// (else none: the reports take their texts back without a copy).
    async fn run_to_end(
        mut self,
        tx: tokio::sync::mpsc::UnboundedSender<Event>,
        mut rx: Option<tokio::sync::mpsc::UnboundedReceiver<Event>>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
        keep_outputs: bool,
    ) -> (RunReport, Vec<Option<serde_json::Value>>) {
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        if self
            .cancel
            .as_ref()
            .is_some_and(cancel::Cancel::is_cancelled)
        {
            self.interrupt(&mut tasks, on_event);
        }
        self.start_ready(&mut tasks, &tx, on_event);
        self.frame_hold = None;
        loop {
            tokio::select! {
                biased;
                // Cancellation hook: stop new work, drop the steps in flight.
                () = cancel::cancelled(self.cancel.as_ref()), if !self.interrupted => {
                    self.interrupt(&mut tasks, on_event);
                    self.start_ready(&mut tasks, &tx, on_event);
                }
                Some(ev) = next_event(&mut rx) => on_event(&ev),
                joined = tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    drain_events(&mut rx, on_event);
                    // A batched step's hold is released once what its end lets start has
                    // started (its dependents in the block may queue requests too).
                    let mut released = None;
                    match joined {
                        Ok(outcome) => {
                            released = self.holds.remove(&outcome.node);
                            self.finish(outcome, on_event);
                        }
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => {
                            // A panic inside a task is a bug; record it rather than lose the run.
                            self.stopped.get_or_insert_with(|| format!("internal error in a step: {e}"));
                        }
                    }
                    self.start_ready(&mut tasks, &tx, on_event);
                    drop(released);
                }
            }
        }
        drain_events(&mut rx, on_event);
        self.into_report(keep_outputs)
    }

    pub(super) fn elapsed_ms(&self) -> u64 {
        self.shared.start.elapsed().as_millis() as u64
    }

    /// Starts every candidate step whose dependencies allow it, unless the run has stopped.
    ///
    /// Candidates are settled first (skipped, or reused from the journal of a resumed run,
    /// which may release further candidates) and started after, `gather` steps first: a
    /// gather that starts may cancel the rest of its block, which then never starts.
    fn start_ready(
        &mut self,
        tasks: &mut JoinSet<Outcome>,
        tx: &tokio::sync::mpsc::UnboundedSender<Event>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        loop {
            let mut go = Vec::new();
            while let Some(id) = self.candidates.pop_front() {
                if self.state[id] != State::Waiting || self.waiting_on[id] > 0 {
                    continue;
                }
                match self.readiness(id) {
                    Readiness::NotYet => {}
                    Readiness::Skip(reason) => {
                        self.settle_without_running(id, StepStatus::Skipped(reason), on_event)
                    }
                    // Journal hook, a step about to start: reuse its recorded result? (A
                    // region is not recorded: its steps are.)
                    Readiness::Go if !self.is_region(id) && self.reuse(id, on_event) => {}
                    Readiness::Go => go.push(id),
                }
            }
            if go.is_empty() {
                return;
            }
            go.sort_by_key(|&id| self.plan.nodes[id].join.is_none());
            for id in go {
                if self.state[id] != State::Waiting {
                    continue; // cancelled by a gather started just before
                }
                let skip = match self.stopped.clone() {
                    Some(reason) => Some(reason),
                    None => self.over_budget(id).inspect(|reason| {
                        if !self.keep_going {
                            self.stopped = Some(reason.clone());
                        }
                    }),
                };
                match skip {
                    Some(reason) => {
                        self.settle_without_running(id, StepStatus::Skipped(reason), on_event)
                    }
                    None => {
                        self.cancel_rest_of_join(id, on_event);
                        self.spawn(id, tasks, tx.clone());
                    }
                }
            }
        }
    }

    /// Whether a step whose counted dependencies are settled may run.
    fn readiness(&self, id: NodeId) -> Readiness {
        for &d in &self.plan.nodes[id].deps {
            if self.state[d] == (State::Done { succeeded: false })
                && !self
                    .joins
                    .get(&id)
                    .is_some_and(|_| self.watched_by[d].iter().any(|(j, _)| *j == id))
            {
                return Readiness::Skip(format!("`{}` did not succeed", self.plan.nodes[d].name));
            }
        }
        let Some(j) = self.joins.get(&id) else {
            return Readiness::Go;
        };
        let (ok, settled, total, need) = (
            j.succeeded_branches,
            j.settled_branches,
            j.total(),
            j.needed(),
        );
        let waits_for_all = matches!(j.policy, Policy::Min(_));
        if ok >= need && (!waits_for_all || settled == total) {
            Readiness::Go
        } else if settled == total || ok + (total - settled) < need {
            Readiness::Skip(format!(
                "only {ok} of {total} branches succeeded; `gather <{}>` needs {need}",
                j.policy
            ))
        } else {
            Readiness::NotYet
        }
    }

    /// Budget hook, a step about to start: its worst case for one attempt (system text and
    /// rendered prompt at 4 characters per token, plus `max_tokens` out, at its model's price)
    /// must fit in every enclosing budget ([`budget`]), where it is then held until the step
    /// ends. Returns why it may not start.
    fn over_budget(&mut self, id: NodeId) -> Option<String> {
        let node = &self.plan.nodes[id];
        if !self
            .budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .applies(node)
        {
            return None;
        }
        let PlanExec::Model {
            model,
            system,
            max_tokens,
            ..
        } = &node.exec
        else {
            return None;
        };
        let client = self.shared.clients.get(model)?;
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let render =
            |t: Option<&crate::plan::Template>| t.map(|t| scope.render(t)).unwrap_or_default();
        let input = estimate_tokens(&render(node.prompt.as_ref()))
            + estimate_tokens(&render(system.as_ref()));
        let out = self
            .max_tokens_cap
            .map_or(*max_tokens, |c| c.min(*max_tokens));
        let mut worst = client.price.cost(input, u64::from(out));
        // A `parallel <batch>` step's first attempt is answered at the batch price.
        if node.batch.is_some() && (client.batchable || client.replayed) {
            worst *= crate::common::BATCH_PRICE_FACTOR;
        }
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(node, worst)
            .err()
    }

    pub(super) fn settle_without_running(
        &mut self,
        id: NodeId,
        status: StepStatus,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        let report = StepReport::not_run(&self.plan.nodes[id], status, None);
        self.settle(id, report_finished(Box::new(report), on_event));
    }

    /// Records a finished step and releases its dependents and the joins that watch it.
    pub(super) fn settle(&mut self, id: NodeId, mut report: StepReport) {
        let succeeded = report.status == StepStatus::Succeeded;
        self.state[id] = State::Done { succeeded };
        // A text output is kept once: moved here, where later steps read it, and back into
        // its report at the end ([`Scheduler::into_report`]).
        self.outputs[id] = match &report.value {
            Some(v) => Some(v.clone()),
            None => report.output.take().map(serde_json::Value::String),
        };
        if !matches!(self.plan.nodes[id].exec, PlanExec::Region { .. }) {
            // A region's cost is its steps', already spent by its own schedulers.
            self.budgets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .spend(&self.plan.nodes[id], report.cost_usd);
        }
        if let StepStatus::Failed(e) = &report.status
            && !self.tolerated[id]
            && !self.keep_going
            && self.stopped.is_none()
        {
            self.stopped = Some(format!("step `{}` failed: {e}", report.name));
        }
        self.reports[id] = Some(report);
        Release {
            dependents: &self.dependents,
            waiting_on: &mut self.waiting_on,
            watched_by: &self.watched_by,
            joins: &mut self.joins,
            candidates: &mut self.candidates,
        }
        .settled(id, succeeded);
    }

    pub(super) fn finish(
        &mut self,
        mut outcome: Outcome,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        self.abort.remove(&outcome.node);
        if matches!(self.state[outcome.node], State::Done { .. }) {
            // Cancelled by a gather while its result was already on the way: it stays cancelled.
            return;
        }
        if self.is_region(outcome.node) {
            for (n, v) in outcome.exports {
                self.outputs[n] = v;
            }
            self.inner_reports.extend(outcome.inner);
            self.inner_reused.extend(outcome.reused);
            if let Some(j) = &self.journal
                && let Err(e) = j.warnings(&outcome.report)
            {
                self.stopped.get_or_insert_with(|| e.to_string());
            }
        } else {
            // Journal hook, a step ended: its task recorded it (and cached it with `--cache`)
            // before handing it here, so before anything depends on it.
            self.keys[outcome.node] = None;
            if let Some(e) = outcome.journal_error.take() {
                self.stopped.get_or_insert(e);
            }
        }
        self.settle(outcome.node, report_finished(outcome.report, on_event));
    }

    /// A `gather <any|first N>` that starts no longer needs the rest of its block: cancel it.
    pub(super) fn cancel_rest_of_join(
        &mut self,
        id: NodeId,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        let Some(join) = self.plan.nodes[id].join else {
            return;
        };
        if !matches!(join.policy, Policy::Any | Policy::First(_)) {
            return;
        }
        for &m in &self.plan.groups[join.group].members {
            if !matches!(self.state[m], State::Waiting | State::Running) {
                continue;
            }
            if let Some(h) = self.abort.remove(&m) {
                h.abort();
            }
            self.holds.remove(&m);
            let report = StepReport::not_run(
                &self.plan.nodes[m],
                StepStatus::Cancelled,
                Some(self.elapsed_ms()),
            );
            self.settle(m, report_finished(Box::new(report), on_event));
        }
    }

    fn spawn(
        &mut self,
        id: NodeId,
        tasks: &mut JoinSet<Outcome>,
        tx: tokio::sync::mpsc::UnboundedSender<Event>,
    ) {
        self.state[id] = State::Running;
        self.ran[id] = true;
        let hold = self.plan.nodes[id]
            .batch
            .and_then(|b| self.shared.batches.get(b))
            .map(|b| b.hold());
        if self.is_region(id) {
            let task = control::RegionTask {
                plan: self.plan_arc.clone(),
                inputs: self.inputs_arc.clone(),
                shared: self.shared.clone(),
                opts: self.opts.clone(),
                budgets: self.budgets.clone(),
                outputs: self.outputs.clone(),
                node: id,
                tx,
                hold: std::sync::Mutex::new(hold),
            };
            let handle = tasks.spawn(control::run_region(task));
            self.abort.insert(id, handle);
            return;
        }
        if let Some(hold) = hold {
            self.holds.insert(id, hold);
        }
        self.record_start(id, &tx);
        let node = &self.plan.nodes[id];
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let (prompt, args) = scope.render_call(node);
        // For a model step, what a prompt too large for its model would name.
        let largest = match node.exec {
            PlanExec::Model { .. } => scope.largest_interp(node),
            _ => None,
        };
        // The task reads its node in the shared plan (a copy would cost ~1 KiB per step in
        // flight).
        let plan = self.plan_arc.clone();
        let shared = self.shared.clone();
        let cap = self.max_tokens_cap;
        let step_key = self.keys[id].clone();
        let journal = self.journal.clone();
        let cache = self.opts.cache.clone();
        let call = Call {
            prompt,
            args,
            largest,
        };
        // Boxed: tokio moves a task's future several times on its way into the task's cell
        // (seven copies of about 2 KB each); a box is allocated once and moved as a pointer.
        let handle = tasks.spawn(Box::pin(async move {
            let node = &plan.nodes[id];
            // Journal hook, a step starts: its `start` record, written by its own task (as
            // its end below) so that the scheduler's task does not wait for the journal.
            let journal_error = match journal.as_ref() {
                Some(j) => j.started(&node.name).await.err().map(|e| e.to_string()),
                None => None,
            };
            let key = step_key.as_ref().map(|k| k.key.clone());
            let ended = StepEnd {
                node,
                id,
                key: step_key,
                journal: journal.as_ref(),
                cache: cache.as_deref(),
                journal_error,
            };
            // The report goes straight into `ended` (not through a local of this task): a
            // local assigned from an `.await` is kept beside the awaited future in the task's
            // state, 384 bytes for every step in flight.
            ended
                .record(execute(node, call, &shared, cap, &tx, key).await)
                .await
        }));
        self.abort.insert(id, handle);
    }

    /// Whether node `id` stands for a region.
    pub(super) fn is_region(&self, id: NodeId) -> bool {
        matches!(self.plan.nodes[id].exec, PlanExec::Region { .. })
    }

    fn into_report(mut self, keep_outputs: bool) -> (RunReport, Vec<Option<serde_json::Value>>) {
        let required_ok = (0..self.plan.nodes.len())
            .filter(|&i| self.active[i] && !matches!(self.plan.nodes[i].exec, PlanExec::Item))
            .all(|i| {
                self.tolerated[i]
                    || self.reports[i]
                        .as_ref()
                        .is_some_and(|r| r.status == StepStatus::Succeeded)
            });
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let output = if required_ok {
            match &self.plan.output {
                Some(t) => Some(scope.render(t)),
                None => Some(final_outputs(self.plan, &self.active, &self.outputs)),
            }
        } else {
            None
        };
        let mut reused: Vec<String> = (0..self.plan.nodes.len())
            .filter(|&i| self.reused[i])
            .map(|i| self.plan.nodes[i].name.clone())
            .collect();
        reused.extend(self.inner_reused);
        // This frame's steps (a `for` item is not a step), then the steps of its regions.
        // Moved out of `reports` (in place where the allocator allows): a second vector of
        // every report would double the run's peak memory at its end.
        // A text output moved out of its report when it settled ([`Scheduler::settle`])
        // goes back: copied when the outputs are kept, else moved.
        let (plan, active, outputs) = (self.plan, &self.active, &mut self.outputs);
        let mut steps: Vec<StepReport> = std::mem::take(&mut self.reports)
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| active[i] && !matches!(plan.nodes[i].exec, PlanExec::Item))
            .map(|(i, report)| {
                let Some(mut s) = report else {
                    let why = StepStatus::Skipped("the run stopped".into());
                    return StepReport::not_run(&plan.nodes[i], why, None);
                };
                if s.output.is_none() && s.value.is_none() {
                    s.output = match &mut outputs[i] {
                        Some(serde_json::Value::String(text)) if keep_outputs => Some(text.clone()),
                        Some(serde_json::Value::String(text)) => Some(std::mem::take(text)),
                        _ => None,
                    };
                }
                s
            })
            .collect();
        steps.extend(std::mem::take(&mut self.inner_reports));
        let mut usage = Usage::default();
        let mut cost_usd = 0.0;
        for s in &steps {
            usage.add(s.usage);
            cost_usd += s.cost_usd;
        }
        let report = RunReport {
            workflow: self.plan.workflow.clone(),
            succeeded: required_ok,
            stopped: self.stopped,
            output,
            usage,
            cost_usd,
            wall_ms: self.shared.start.elapsed().as_millis() as u64,
            steps,
            run_id: None,
            reused,
            interrupted: self.interrupted,
        };
        (report, self.outputs)
    }
}

/// What a step's task does once the step has run: with a journal, cache and journal its
/// report, then hand it to the scheduler as its [`Outcome`].
struct StepEnd<'a> {
    node: &'a crate::plan::PlanNode,
    id: NodeId,
    /// The step's cache key, when the run has a journal.
    key: Option<Arc<cache_key::StepKey>>,
    journal: Option<&'a journal::Journal>,
    cache: Option<&'a super::step_cache::StepCache>,
    /// Why the step's `start` record could not be written, if it could not.
    journal_error: Option<String>,
}

impl StepEnd<'_> {
    /// Journal hook, a step ended, in the step's own task (the scheduler's goes on
    /// meanwhile): cached first with `--cache`, then recorded by the journal's writer thread;
    /// the scheduler learns of it only once its record is in the file, so before anything
    /// depends on it.
    async fn record(self, mut report: StepReport) -> Outcome {
        let mut journal_error = self.journal_error;
        if let Some(k) = self.key {
            if let Some(cache) = self.cache {
                cache_result(cache, self.node, &k, &mut report);
            }
            if let Some(j) = self.journal {
                let written = j.step_written(report, k).await;
                let (back, written) = written.unwrap_or_else(|| {
                    let why = "the journal's writer thread lost the step's report";
                    let failed = StepStatus::Failed(why.into());
                    (StepReport::not_run(self.node, failed, None), Ok(()))
                });
                report = back;
                if let Err(e) = written {
                    journal_error.get_or_insert(e.to_string());
                }
            }
        }
        Outcome {
            journal_error,
            ..Outcome::step(self.id, report)
        }
    }
}

/// With `--cache`: keeps the result of a step that may be cached and succeeded, for later
/// runs. A cache that cannot be written is a warning on the step; the run goes on.
fn cache_result(
    cache: &super::step_cache::StepCache,
    node: &crate::plan::PlanNode,
    key: &cache_key::StepKey,
    report: &mut StepReport,
) {
    if report.status != StepStatus::Succeeded || !super::step_cache::cacheable(node) {
        return;
    }
    if let Err(e) = cache.put(&key.key, report) {
        report.warnings.push(format!("not cached: {e}"));
    }
}

/// The next event on a frame's own channel; never, without one.
async fn next_event(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Event>>) -> Option<Event> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reports the events waiting on a frame's own channel.
fn drain_events(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Event>>,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) {
    if let Some(rx) = rx {
        while let Ok(ev) = rx.try_recv() {
            on_event(&ev);
        }
    }
}

/// Reports `report` as [`Event::Finished`] and hands it back (not copied for the event).
pub(super) fn report_finished(
    report: Box<StepReport>,
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> StepReport {
    let event = Event::Finished(report);
    on_event(&event);
    let Event::Finished(report) = event else {
        unreachable!("built as a finished event just above");
    };
    *report
}

pub(super) enum Readiness {
    NotYet,
    Go,
    Skip(String),
}

/// Without `return`: the outputs of the steps nothing depends on, each under its name.
pub(super) fn final_outputs(
    plan: &Plan,
    active: &[bool],
    outputs: &[Option<serde_json::Value>],
) -> String {
    let mut has_dependent = vec![false; plan.nodes.len()];
    for n in plan.nodes.iter().filter(|n| active[n.id]) {
        for &d in &n.deps {
            has_dependent[d] = true;
        }
    }
    // Regions other than a `for` have no value of their own.
    let sinks: Vec<NodeId> = (0..plan.nodes.len())
        .filter(|&i| active[i] && !has_dependent[i])
        .filter(|&i| match plan.nodes[i].exec {
            PlanExec::Region { region } => matches!(
                plan.regions[region].kind,
                crate::plan::PlanRegionKind::For { .. } | crate::plan::PlanRegionKind::Call { .. }
            ),
            PlanExec::Item => false,
            _ => true,
        })
        .collect();
    if let [only] = sinks.as_slice() {
        return outputs[*only]
            .as_ref()
            .map(render::json_text)
            .unwrap_or_default();
    }
    sinks
        .iter()
        .filter_map(|&i| {
            outputs[i].as_ref().map(|o| {
                format!(
                    "## {}\n{}",
                    plan.nodes[i].name,
                    render::json_text(o).trim_end()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
