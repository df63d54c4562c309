//! Running a plan on a durable engine (Temporal, `crate::engine`): the two halves of the
//! local scheduler taken apart so that an engine can put each where it belongs.
//!
//! - [`Interp`], the DAG interpreter as a pure state machine: no clock, no task, no I/O, so
//!   the same decisions come out every time the same results go in — what an engine's
//!   deterministic workflow code needs (Temporal replays it from its history). It keeps the
//!   local scheduler's rules ([`super::scheduler`]): a step starts when its dependencies are
//!   settled; `--max-concurrency` and `parallel <max N>` caps; `gather <all|any|first N|min
//!   N>` (tolerated failures, the rest of the block cancelled by `any`/`first N`); budgets
//!   (`<budget $X>` on the workflow and on blocks: a model step's worst case is held before it
//!   starts, [`super::budget`]); a failure stops new work unless `keep_going`. Regions (`parallel
//!   for`, `repeat`, `if`, workflow calls) run inline, each instance of a body a frame of the
//!   interpreter with the local rules ([`super::regions`]). An `approve(...)` step is a
//!   question the engine puts to a person ([`Decisions::ask`], answered with
//!   [`Interp::answer`]), or approved at once under `--yes` ([`Interp::approve_all`]); as
//!   locally it takes no permit of the caps.
//! - [`StepHost`], one step run by the very code a local run uses ([`super::step::execute`]:
//!   providers, rate limits, retries, timeouts, fallback, structured outputs, agent loops,
//!   redaction), for an engine's activity on a worker.
//!
//! Steps cross the engine as a [`StepCall`] (the node and its rendered prompt and
//! arguments) and come back as a [`StepReport`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::approval::{ANSWERED_BY_PERSON, ANSWERED_BY_YES, Approval, answered_report};
use super::budget::Budgets;
use super::prepare::{self, Shared};
use super::regions::{self, ForItem, RegionResult};
use super::render::{InputValue, Scope};
use super::step::{Call, execute};
use super::wiring::{JoinState, Release, Wiring};
use super::{Event, RunError, RunOptions, StepReport, StepStatus};
use crate::check::{ModelDef, Price};
use crate::common::Policy;
use crate::plan::{ListSource, NodeId, Plan, PlanExec, PlanNode, PlanRegionKind, estimate_tokens};

/// One step to run: the node and its call, rendered where the run's outputs are (the
/// interpreter), so that a worker needs only the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCall {
    /// The step's id in its run, unique among the steps the interpreter started (a node
    /// runs once per region instance): what [`Interp::finish`] takes back.
    #[serde(default)]
    pub id: u64,
    /// The node, an index in [`Plan::nodes`].
    pub node: NodeId,
    /// The step's name (for messages and progress): the node's, then `suffix`.
    pub name: String,
    /// What the step's name has after its node's: the region instances it runs in (`[2]`
    /// for a `for`'s second item, `#3` for a `repeat`'s third iteration); empty outside.
    #[serde(default)]
    pub suffix: String,
    /// The rendered prompt (a command's stdin).
    pub prompt: String,
    /// The rendered arguments, then the defaults the call leaves out.
    pub args: IndexMap<String, String>,
    /// The prompt's largest interpolation and its estimated tokens, for a model step.
    pub largest: Option<(String, u64)>,
}

impl StepCall {
    /// A digest of what the step is asked (name, prompt, arguments): a step whose digest is
    /// unchanged may take an earlier execution's result ([`Interp::reuse`]). Hex SHA-256.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let text =
            serde_json::to_string(&(&self.name, &self.prompt, &self.args)).unwrap_or_default();
        h.update(text.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }
}

/// What the interpreter decided after a change: steps to start, approvals to ask, steps
/// settled without running (skipped, cancelled, regions that ended), steps reused from an
/// earlier execution, approvals answered by `--yes`, and steps in flight (or questions
/// waiting) to cancel (their result no longer counts; they are among `settled`, as
/// cancelled).
#[derive(Debug, Default)]
pub struct Decisions {
    /// Steps to start now, in order.
    pub start: Vec<StepCall>,
    /// Approval steps whose question is to be put to a person now, in order: the engine
    /// waits for an answer and gives it to [`Interp::answer`] (or, when the step's
    /// `timeout`/`deadline` passes first, to [`Interp::unanswered`]).
    pub ask: Vec<Question>,
    /// Reports of approval steps approved at once ([`Interp::approve_all`], `--yes`).
    pub answered: Vec<StepReport>,
    /// Reports of steps settled without running, and of regions that ended, in order.
    pub settled: Vec<StepReport>,
    /// Reports of steps whose result was reused from the earlier execution, in order.
    pub reused: Vec<StepReport>,
    /// Steps in flight (or questions waiting) whose result is no longer wanted, by
    /// [`StepCall::id`] (or [`Question::id`]).
    pub cancel: Vec<u64>,
}

/// An approval step's question, to put to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The question's id in its run, as a [`StepCall::id`]: what [`Interp::answer`] takes.
    #[serde(default)]
    pub id: u64,
    /// The node, an index in [`Plan::nodes`].
    pub node: NodeId,
    /// The step's name (with its region instance's suffix, as a [`StepCall::name`]): what
    /// `orch approve` names.
    pub step: String,
    /// The rendered question.
    pub question: String,
    /// How long to wait for an answer, in milliseconds: the step's `timeout` or
    /// `deadline`, the shorter (`None`: for ever, as locally).
    pub wait_ms: Option<u64>,
}

/// The end of an interpreted run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Every step's report: the workflow's own steps in plan order (steps that never ran:
    /// skipped), then the steps of its regions' instances as the regions ended.
    pub steps: Vec<StepReport>,
    /// The workflow's result (its `return`, or its last steps' outputs), when every required
    /// step succeeded.
    pub output: Option<String>,
    /// Whether every required step succeeded.
    pub succeeded: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Names of the steps whose result was reused from an earlier execution.
    pub reused: Vec<String>,
    /// For each step that succeeded: its name and [`StepCall::digest`], for a later resume.
    pub digests: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting,
    Running,
    /// An approval step waiting for its answer (asked at this run time, in milliseconds).
    Asking(u64),
    Done(StepStatus),
}

/// Where a step in flight (or a question waiting) is: the region instances it is inside (each the region's node and
/// the instance's index), its node, and its name there.
struct Place {
    path: Vec<(NodeId, usize)>,
    node: NodeId,
    name: String,
    /// For a question: when it was asked (run time, milliseconds).
    asked: Option<u64>,
}

/// What every frame of a run shares: the inputs, the caps and budgets (which hold across
/// region instances, as locally), the earlier execution's results, the steps in flight.
struct Ctx {
    /// The plan as compiled (step names without instance suffixes).
    plan: Arc<Plan>,
    inputs: IndexMap<String, InputValue>,
    prices: HashMap<String, Price>,
    max_concurrency: Option<usize>,
    keep_going: bool,
    budgets: Budgets,
    /// Steps in flight in the whole run.
    running: usize,
    /// Steps in flight per `parallel <max N>` block, over every instance.
    group_running: Vec<u32>,
    /// Earlier results by step name: the digest of their call and their report.
    prior: HashMap<String, (String, StepReport)>,
    /// Steps in flight by id.
    flights: HashMap<u64, Place>,
    next_id: u64,
    /// The run's clock at the current [`Interp::decide`].
    now: u64,
    /// Why no new step starts anywhere in the run ([`Interp::halt`]).
    halted: Option<String>,
    /// `--yes`: approval steps are approved at once.
    approve_all: bool,
}

impl Ctx {
    /// Whether starting `node` keeps within `--max-concurrency` and its blocks' `max N`.
    fn has_room(&self, node: &PlanNode) -> bool {
        if self
            .max_concurrency
            .is_some_and(|m| self.running >= m.max(1))
        {
            return false;
        }
        node.groups.iter().all(|&g| {
            self.plan.groups[g]
                .max
                .is_none_or(|m| self.group_running[g] < m)
        })
    }

    fn hold(&mut self, node: &PlanNode) {
        self.running += 1;
        for &g in &node.groups {
            self.group_running[g] += 1;
        }
    }

    fn release(&mut self, node: &PlanNode) {
        self.running -= 1;
        for &g in &node.groups {
            self.group_running[g] -= 1;
        }
    }
}

/// The deterministic DAG interpreter (see the module docs). Drive it with
/// [`Interp::decide`], then [`Interp::finish`] for each step that ends, until
/// [`Interp::running`] is zero and `decide` starts nothing; then [`Interp::into_outcome`].
///
/// Regions run inline: each instance of a region's body (a `parallel for` item, a `repeat`
/// iteration, the branch an `if` takes, a called workflow) is a frame of its own over a copy
/// of the plan whose steps are renamed for it (`post[2]`, `draft#3`), as locally
/// ([`super::control`]), with the same rules ([`super::regions`]).
pub struct Interp {
    ctx: Ctx,
    top: Frame,
}

impl Interp {
    /// An interpreter for `plan` with the inputs given as text (parsed by their parameters'
    /// types, defaults filling the rest). `priced`: whether model steps are billed at the
    /// script's prices (not against an `--endpoint`), for budgets. `prior`: results of an
    /// earlier execution of the same run, reused by steps whose call is unchanged.
    ///
    /// # Errors
    /// [`RunError::Input`] for inputs.
    pub fn new(
        plan: Arc<Plan>,
        inputs: &IndexMap<String, String>,
        models: &crate::common::NameMap<String, ModelDef>,
        priced: bool,
        max_concurrency: Option<usize>,
        keep_going: bool,
        prior: &Outcome,
    ) -> Result<Self, RunError> {
        let inputs = prepare::parse_inputs(&plan, inputs)?;
        let prices = models
            .iter()
            .map(|(k, d)| (k.clone(), if priced { d.price } else { Price::default() }))
            .collect();
        let prior_ok: HashMap<&str, &StepReport> = prior
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded)
            .map(|s| (s.name.as_str(), s))
            .collect();
        let prior = prior
            .digests
            .iter()
            .filter_map(|(name, d)| {
                prior_ok
                    .get(name.as_str())
                    .map(|r| (name.clone(), (d.clone(), (*r).clone())))
            })
            .collect();
        let active = plan.nodes.iter().map(|n| n.region.is_none()).collect();
        let top = Frame::new(plan.clone(), active, vec![None; plan.nodes.len()]);
        Ok(Interp {
            ctx: Ctx {
                budgets: Budgets::new(&plan),
                group_running: vec![0; plan.groups.len()],
                plan,
                inputs,
                prices,
                max_concurrency,
                keep_going,
                running: 0,
                prior,
                flights: HashMap::new(),
                next_id: 0,
                now: 0,
                halted: None,
                approve_all: false,
            },
            top,
        })
    }

    /// `--yes`: every approval step is approved as soon as it comes up, recorded as approved
    /// by `--yes` (as a local run's [`super::Approver::Yes`]) instead of asked.
    pub fn approve_all(mut self, yes: bool) -> Self {
        self.ctx.approve_all = yes;
        self
    }

    /// Records a person's answer to question `id` ([`Decisions::ask`]), given at `now_ms`:
    /// the step succeeds with `true` or `false` (a declined approval is a step that
    /// succeeded with `false`, as locally) and its report says who answered (`person`) and
    /// how (`answer.via`). Returns that report; `None` for a question not waiting (already
    /// answered, or cancelled), which is left as is.
    pub fn answer(&mut self, id: u64, answer: Approval, now_ms: u64) -> Option<StepReport> {
        self.settle_question(id, now_ms, Ok(answer))
    }

    /// Question `id` got no answer in time (its `timeout`/`deadline`): its step fails with
    /// `why`, as locally. Returns its report; `None` for a question not waiting.
    pub fn unanswered(&mut self, id: u64, why: String, now_ms: u64) -> Option<StepReport> {
        self.settle_question(id, now_ms, Err(why))
    }

    /// The questions waiting for an answer: id, step name, when they were asked (run time,
    /// milliseconds), in the order they were asked.
    pub fn asking(&self) -> Vec<(u64, &str, u64)> {
        let mut v: Vec<(u64, &str, u64)> = self
            .ctx
            .flights
            .iter()
            .filter_map(|(id, p)| p.asked.map(|at| (*id, p.name.as_str(), at)))
            .collect();
        v.sort_unstable();
        v
    }

    fn settle_question(
        &mut self,
        id: u64,
        now_ms: u64,
        answer: Result<Approval, String>,
    ) -> Option<StepReport> {
        let asked = self.ctx.flights.get(&id)?.asked?;
        let place = self.ctx.flights.remove(&id)?;
        let frame = self.top.at(&place.path)?;
        if frame.state[place.node] != State::Asking(asked) {
            return None;
        }
        frame.ids.remove(&place.node);
        let node = &frame.plan.nodes[place.node];
        let report = answered_report(node, asked, now_ms, ANSWERED_BY_PERSON, answer);
        frame.settle(place.node, report.clone(), &mut self.ctx);
        Some(report)
    }

    /// The plan interpreted.
    pub fn plan(&self) -> &Plan {
        &self.ctx.plan
    }

    /// Steps started and not yet finished.
    pub fn running(&self) -> usize {
        self.ctx.running
    }

    /// What to do now: settles what can be settled without running (skipped steps, steps
    /// reused from the earlier execution, cancelled ones, regions whose instances ended),
    /// starts the instances of regions, then the steps the caps and the budgets allow.
    /// `now_ms`: the run's clock (the engine's deterministic time since the run started),
    /// for the reports of steps settled now.
    pub fn decide(&mut self, now_ms: u64) -> Decisions {
        self.ctx.now = now_ms;
        let mut out = Decisions::default();
        let mut path = Vec::new();
        while self.top.pump(&mut self.ctx, &mut path, &mut out) {}
        out
    }

    /// Records the end of step `id` ([`StepCall::id`]) that [`Interp::decide`] started. A
    /// result for a step already settled (cancelled by a `gather` while it was in flight) is
    /// ignored, as locally.
    pub fn finish(&mut self, id: u64, report: StepReport) {
        let Some(place) = self.ctx.flights.remove(&id) else {
            return;
        };
        if let Some(frame) = self.top.at(&place.path) {
            frame.finish(place.node, report, &mut self.ctx);
        }
    }

    /// Stops new work in the whole run, for the engine's reasons (its history is near the
    /// engine's limit): no step starts any more, in any region instance; the steps in flight
    /// finish, and the run ends unsucceeded with `reason` as why it stopped (a failure in
    /// every region the stop reaches). Submitting the run again resumes it.
    pub fn halt(&mut self, reason: String) {
        self.ctx.halted.get_or_insert(reason);
    }

    /// The report of step `id` that stopped for the engine's reasons (its activity failed for
    /// good: no worker took it in time, or it kept dying): failed, with `why`.
    pub fn engine_failure(&self, id: u64, why: String, now_ms: u64) -> StepReport {
        let (name, agent) = match self.ctx.flights.get(&id) {
            Some(p) => (p.name.clone(), self.ctx.plan.nodes[p.node].agent.clone()),
            None => (format!("step #{id}"), String::new()),
        };
        StepReport {
            finished_ms: Some(now_ms),
            ..StepReport::blank(name, agent, StepStatus::Failed(why))
        }
    }

    /// The end of the run: every report (the workflow's steps in plan order, then its
    /// regions'), the output, the digests.
    pub fn into_outcome(self) -> Outcome {
        let ctx = self.ctx;
        let body = self.top.into_body();
        let output = body.succeeded.then(|| {
            let scope = Scope {
                plan: &body.plan,
                inputs: &ctx.inputs,
                outputs: &body.outputs,
            };
            match &body.plan.output {
                Some(t) => scope.render(t),
                None => super::scheduler::final_outputs(&body.plan, &body.active, &body.outputs),
            }
        });
        Outcome {
            steps: body.steps,
            output,
            succeeded: body.succeeded,
            stopped: body.stopped.or(ctx.halted),
            reused: body.reused,
            digests: body.digests,
        }
    }
}

/// One frame: the workflow's top level, or one instance of a region's body, whose outside is
/// settled (as a local region's scheduler, [`super::scheduler::Frame`]).
struct Frame {
    /// The plan, with this instance's steps renamed.
    plan: Arc<Plan>,
    /// The nodes this frame runs.
    active: Vec<bool>,
    state: Vec<State>,
    outputs: Vec<Option<serde_json::Value>>,
    reports: Vec<Option<StepReport>>,
    waiting_on: Vec<usize>,
    dependents: Vec<Vec<NodeId>>,
    candidates: VecDeque<NodeId>,
    /// Steps that may start but wait for a concurrency cap, in the order they became ready.
    capped: VecDeque<NodeId>,
    joins: crate::common::FastMap<NodeId, JoinState>,
    watched_by: Vec<Vec<(NodeId, usize)>>,
    tolerated: Vec<bool>,
    stopped: Option<String>,
    /// Cancelled by a `gather` that no longer needs it.
    interrupted: bool,
    /// This frame's steps in flight, with their ids.
    ids: HashMap<NodeId, u64>,
    /// This frame's regions in flight.
    regions: BTreeMap<NodeId, RegionRun>,
    digests: Vec<Option<String>>,
    reused: Vec<bool>,
    /// Reports, reused names and digests of the steps of this frame's regions, as they ended.
    inner: Vec<StepReport>,
    inner_reused: Vec<String>,
    inner_digests: Vec<(String, String)>,
}

/// A frame that ended: what its region needs of it.
struct Body {
    plan: Arc<Plan>,
    active: Vec<bool>,
    succeeded: bool,
    interrupted: bool,
    stopped: Option<String>,
    steps: Vec<StepReport>,
    reused: Vec<String>,
    digests: Vec<(String, String)>,
    outputs: Vec<Option<serde_json::Value>>,
}

impl Frame {
    fn new(plan: Arc<Plan>, active: Vec<bool>, outputs: Vec<Option<serde_json::Value>>) -> Self {
        let n = plan.nodes.len();
        let Wiring {
            dependents,
            waiting_on,
            tolerated,
            joins,
            watched_by,
        } = Wiring::new(&plan, |i| active[i]);
        Frame {
            candidates: (0..n)
                .filter(|&i| active[i] && waiting_on[i] == 0)
                .collect(),
            plan,
            active,
            state: vec![State::Waiting; n],
            outputs,
            reports: vec![None; n],
            waiting_on,
            dependents,
            capped: VecDeque::new(),
            joins,
            watched_by,
            tolerated,
            stopped: None,
            interrupted: false,
            ids: HashMap::new(),
            regions: BTreeMap::new(),
            digests: vec![None; n],
            reused: vec![false; n],
            inner: Vec::new(),
            inner_reused: Vec::new(),
            inner_digests: Vec::new(),
        }
    }

    /// Whether the frame ended: nothing in flight, nothing left that may start.
    fn done(&self) -> bool {
        self.ids.is_empty()
            && self.regions.is_empty()
            && self.candidates.is_empty()
            && self.capped.is_empty()
    }

    /// The frame of the instance at `path` below this one, if it is still running.
    fn at(&mut self, path: &[(NodeId, usize)]) -> Option<&mut Frame> {
        let mut f = self;
        for &(node, i) in path {
            let run = f.regions.get_mut(&node)?;
            run.touch(i);
            f = run.instance(i)?;
        }
        Some(f)
    }

    /// One round of decisions in this frame and the instances below it; whether anything
    /// changed (call again until nothing does). `path`: where this frame is.
    fn pump(
        &mut self,
        ctx: &mut Ctx,
        path: &mut Vec<(NodeId, usize)>,
        out: &mut Decisions,
    ) -> bool {
        let mut changed = false;
        let mut go = Vec::new();
        while let Some(id) = self.candidates.pop_front() {
            if self.state[id] != State::Waiting || self.waiting_on[id] > 0 {
                continue;
            }
            match self.readiness(id) {
                Ready::NotYet => {}
                Ready::Skip(reason) => {
                    self.settle_not_run(id, StepStatus::Skipped(reason), ctx, out);
                    changed = true;
                }
                Ready::Go => go.push(id),
            }
        }
        // Gathers first: one that starts may cancel the rest of its block.
        go.sort_by_key(|&id| self.plan.nodes[id].join.is_none());
        self.capped.extend(go);
        let mut still = VecDeque::new();
        while let Some(id) = self.capped.pop_front() {
            if self.state[id] != State::Waiting {
                continue;
            }
            if self.stopped.is_none() {
                self.stopped.clone_from(&ctx.halted);
            }
            if let Some(reason) = self.stopped.clone() {
                changed = true;
                self.settle_not_run(id, StepStatus::Skipped(reason), ctx, out);
                continue;
            }
            if let PlanExec::Region { region } = self.plan.nodes[id].exec {
                changed = true;
                self.cancel_rest_of_join(id, ctx, out);
                self.start_region(id, region, ctx, out);
                continue;
            }
            let approval = matches!(self.plan.nodes[id].exec, PlanExec::Approval);
            // Waiting for a person is not work in flight: an approval takes no permit.
            if !approval && !ctx.has_room(&self.plan.nodes[id]) {
                still.push_back(id);
                continue;
            }
            changed = true;
            let mut call = self.call(id, ctx);
            let digest = call.digest();
            if let Some((d, report)) = ctx.prior.get(&call.name)
                && *d == digest
            {
                let report = report.clone();
                self.digests[id] = Some(digest);
                self.reused[id] = true;
                out.reused.push(report.clone());
                self.settle(id, report, ctx);
                continue;
            }
            if let Some(reason) = self.over_budget(id, &call, ctx) {
                if !ctx.keep_going {
                    self.stopped = Some(reason.clone());
                }
                self.settle_not_run(id, StepStatus::Skipped(reason), ctx, out);
                continue;
            }
            self.cancel_rest_of_join(id, ctx, out);
            if approval {
                self.ask(id, call, ctx, path, out);
                continue;
            }
            self.digests[id] = Some(digest);
            self.state[id] = State::Running;
            ctx.hold(&self.plan.nodes[id]);
            call.id = ctx.next_id;
            ctx.next_id += 1;
            self.ids.insert(id, call.id);
            ctx.flights.insert(
                call.id,
                Place {
                    path: path.clone(),
                    node: id,
                    name: call.name.clone(),
                    asked: None,
                },
            );
            out.start.push(call);
        }
        self.capped = still;
        // The regions in flight, in plan order: their instances, then their ends.
        let running: Vec<NodeId> = self.regions.keys().copied().collect();
        for id in running {
            let Some(mut run) = self.regions.remove(&id) else {
                continue;
            };
            changed |= run.pump(ctx, path, out);
            match run.result(ctx, out, &mut changed) {
                Some(result) => {
                    self.end_region(run, result, ctx, out);
                    changed = true;
                }
                None => {
                    self.regions.insert(id, run);
                }
            }
        }
        changed
    }

    /// Puts approval step `id`'s question (its rendered prompt, `call.prompt`), or approves
    /// it at once under `--yes`.
    fn ask(
        &mut self,
        id: NodeId,
        call: StepCall,
        ctx: &mut Ctx,
        path: &[(NodeId, usize)],
        out: &mut Decisions,
    ) {
        let node = &self.plan.nodes[id];
        if ctx.approve_all {
            let answer = Approval {
                approved: true,
                via: "by --yes".into(),
            };
            let report = answered_report(node, ctx.now, ctx.now, ANSWERED_BY_YES, Ok(answer));
            out.answered.push(report.clone());
            self.settle(id, report, ctx);
            return;
        }
        let wait_ms = match (node.timeout_ms, node.deadline_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let qid = ctx.next_id;
        ctx.next_id += 1;
        self.ids.insert(id, qid);
        ctx.flights.insert(
            qid,
            Place {
                path: path.to_vec(),
                node: id,
                name: call.name.clone(),
                asked: Some(ctx.now),
            },
        );
        out.ask.push(Question {
            id: qid,
            node: id,
            step: call.name,
            question: call.prompt,
            wait_ms,
        });
        self.state[id] = State::Asking(ctx.now);
    }

    /// Starts region `id` (region `region` of the plan): its first instances, or its end
    /// at once (an `if` without a branch to take, a `for` over a list that is not one).
    fn start_region(&mut self, id: NodeId, region: usize, ctx: &mut Ctx, out: &mut Decisions) {
        self.state[id] = State::Running;
        let kind = &self.plan.regions[region].kind;
        let report = regions::region_report(&self.plan.nodes[id], kind, ctx.now);
        let scope = Scope {
            plan: &self.plan,
            inputs: &ctx.inputs,
            outputs: &self.outputs,
        };
        let started = match kind {
            PlanRegionKind::For { list, max, .. } => regions::for_items(&scope, &list.items)
                .and_then(|items| {
                    let outputs = self.outputs.clone();
                    let r = RegionRun::start_for(&self.plan, id, region, items, *max, outputs)?;
                    Ok((r, None))
                }),
            PlanRegionKind::Repeat { .. } => {
                let plan = Arc::new(regions::renamed(&self.plan, region, "#1"));
                let active = regions::body_active(&plan, region, 0);
                let frame = Frame::new(plan, active, self.outputs.clone());
                Ok((Running::Repeat { k: 1, frame }, None))
            }
            PlanRegionKind::If { cond } => {
                regions::if_body(&self.plan.regions[region], &cond.expr, &scope).map(
                    |(holds, body)| match body {
                        Some(body) => {
                            let active = regions::body_active(&self.plan, region, body);
                            let frame = Frame::new(self.plan.clone(), active, self.outputs.clone());
                            (
                                Running::Body {
                                    holds: Some(holds),
                                    body,
                                    frame,
                                },
                                None,
                            )
                        }
                        None => (Running::Ended, Some(regions::if_skipped())),
                    },
                )
            }
            PlanRegionKind::Call { .. } => {
                let active = regions::body_active(&self.plan, region, 0);
                let frame = Frame::new(self.plan.clone(), active, self.outputs.clone());
                Ok((
                    Running::Body {
                        holds: None,
                        body: 0,
                        frame,
                    },
                    None,
                ))
            }
        };
        let mut run = RegionRun {
            node: id,
            region,
            plan: self.plan.clone(),
            report,
            inner: Vec::new(),
            reused: Vec::new(),
            digests: Vec::new(),
            running: Running::Ended,
        };
        match started {
            Ok((running, None)) => {
                run.running = running;
                self.regions.insert(id, run);
            }
            Ok((_, Some(result))) => self.end_region(run, Ok(result), ctx, out),
            Err(status) => self.end_region(run, Err(status), ctx, out),
        }
    }

    /// Settles region node `run.node` with how it ended: its exports and its instances'
    /// reports move to this frame.
    fn end_region(
        &mut self,
        run: RegionRun,
        result: Result<RegionResult, StepStatus>,
        ctx: &mut Ctx,
        out: &mut Decisions,
    ) {
        let RegionRun {
            node,
            mut report,
            inner,
            reused,
            digests,
            ..
        } = run;
        for (n, v) in regions::end_region(&mut report, result, ctx.now) {
            self.outputs[n] = v;
        }
        self.inner.extend(inner);
        self.inner_reused.extend(reused);
        self.inner_digests.extend(digests);
        out.settled.push(report.clone());
        self.settle(node, report, ctx);
    }

    /// Records the end of step `id` of this frame.
    fn finish(&mut self, id: NodeId, report: StepReport, ctx: &mut Ctx) {
        if self.state[id] != State::Running {
            return;
        }
        self.ids.remove(&id);
        ctx.release(&self.plan.nodes[id]);
        self.settle(id, report, ctx);
    }

    /// Stops this frame (a `gather` no longer needs its instance): its steps in flight are
    /// cancelled (their activities too), its regions stopped, and the steps that have not
    /// run are reported cancelled, as a local instance that a gather stops.
    fn cancel(&mut self, ctx: &mut Ctx, out: &mut Decisions) {
        self.interrupted = true;
        self.stopped.get_or_insert_with(|| "interrupted".into());
        let regions = std::mem::take(&mut self.regions);
        for (_, mut run) in regions {
            run.cancel(ctx, out);
            self.end_region(run, Err(StepStatus::Cancelled), ctx, out);
        }
        for id in 0..self.plan.nodes.len() {
            if self.active[id] && !matches!(self.plan.nodes[id].exec, PlanExec::Item) {
                self.cancel_node(id, ctx, out);
            }
        }
        self.candidates.clear();
        self.capped.clear();
    }

    /// The step's call, rendered from the outputs so far (its `id` is set when it starts).
    fn call(&self, id: NodeId, ctx: &Ctx) -> StepCall {
        let node = &self.plan.nodes[id];
        let scope = Scope {
            plan: &self.plan,
            inputs: &ctx.inputs,
            outputs: &self.outputs,
        };
        let (prompt, args) = scope.render_call(node);
        let largest = match node.exec {
            PlanExec::Model { .. } => scope.largest_interp(node),
            _ => None,
        };
        let suffix = node
            .name
            .strip_prefix(ctx.plan.nodes[id].name.as_str())
            .unwrap_or_default()
            .to_string();
        StepCall {
            id: 0,
            node: id,
            name: node.name.clone(),
            suffix,
            prompt,
            args,
            largest,
        }
    }

    /// As the local scheduler's `readiness`.
    fn readiness(&self, id: NodeId) -> Ready {
        for &d in &self.plan.nodes[id].deps {
            if let State::Done(s) = &self.state[d]
                && *s != StepStatus::Succeeded
                && !(self.joins.contains_key(&id)
                    && self.watched_by[d].iter().any(|(j, _)| *j == id))
            {
                return Ready::Skip(format!("`{}` did not succeed", self.plan.nodes[d].name));
            }
        }
        let Some(j) = self.joins.get(&id) else {
            return Ready::Go;
        };
        let (ok, settled, total, need) = (
            j.succeeded_branches,
            j.settled_branches,
            j.pending.len() as u32,
            j.needed(),
        );
        let waits_for_all = matches!(j.policy, Policy::Min(_));
        if ok >= need && (!waits_for_all || settled == total) {
            Ready::Go
        } else if settled == total || ok + (total - settled) < need {
            Ready::Skip(format!(
                "only {ok} of {total} branches succeeded; `gather <{}>` needs {need}",
                j.policy
            ))
        } else {
            Ready::NotYet
        }
    }

    /// As the local scheduler's `over_budget`: one attempt's worst case (system text and
    /// prompt at 4 characters a token, `max_tokens` out, at the model's price) must fit in
    /// every enclosing budget, where it is held until the step ends.
    fn over_budget(&self, id: NodeId, call: &StepCall, ctx: &mut Ctx) -> Option<String> {
        let node = &self.plan.nodes[id];
        if !ctx.budgets.applies(node) {
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
        let price = ctx.prices.get(model)?;
        let scope = Scope {
            plan: &self.plan,
            inputs: &ctx.inputs,
            outputs: &self.outputs,
        };
        let system = system.as_ref().map(|t| scope.render(t)).unwrap_or_default();
        let input = estimate_tokens(&call.prompt) + estimate_tokens(&system);
        let worst = price.cost(input, u64::from(*max_tokens));
        ctx.budgets.admit(node, worst).err()
    }

    fn settle_not_run(
        &mut self,
        id: NodeId,
        status: StepStatus,
        ctx: &mut Ctx,
        out: &mut Decisions,
    ) {
        let report = StepReport::not_run(&self.plan.nodes[id], status, Some(ctx.now));
        out.settled.push(report.clone());
        self.settle(id, report, ctx);
    }

    /// As the local scheduler's `settle`.
    fn settle(&mut self, id: NodeId, report: StepReport, ctx: &mut Ctx) {
        let succeeded = report.status == StepStatus::Succeeded;
        self.state[id] = State::Done(report.status.clone());
        self.outputs[id] = report.output_value();
        // A region's cost is its steps', already spent. A reused step's cost was spent on
        // this run (by the earlier execution): it counts.
        if !matches!(self.plan.nodes[id].exec, PlanExec::Region { .. }) {
            ctx.budgets.spend(&self.plan.nodes[id], report.cost_usd);
        }
        if let StepStatus::Failed(e) = &report.status
            && !self.tolerated[id]
            && !ctx.keep_going
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

    /// As the local scheduler's `cancel_rest_of_join`: a `gather <any|first N>` that starts
    /// cancels the rest of its block.
    fn cancel_rest_of_join(&mut self, id: NodeId, ctx: &mut Ctx, out: &mut Decisions) {
        let Some(join) = self.plan.nodes[id].join else {
            return;
        };
        if !matches!(join.policy, Policy::Any | Policy::First(_)) {
            return;
        }
        let members = self.plan.groups[join.group].members.clone();
        for m in members {
            self.cancel_node(m, ctx, out);
        }
    }

    /// Cancels node `id` unless it has ended: a running region is stopped; a step's
    /// activity, or an approval's question, is withdrawn and its permits released; then it
    /// settles as cancelled.
    fn cancel_node(&mut self, id: NodeId, ctx: &mut Ctx, out: &mut Decisions) {
        match self.state[id] {
            State::Done(_) => return,
            State::Running => {
                if let Some(mut run) = self.regions.remove(&id) {
                    run.cancel(ctx, out);
                    self.end_region(run, Err(StepStatus::Cancelled), ctx, out);
                    return;
                }
                if let Some(call) = self.ids.remove(&id) {
                    ctx.flights.remove(&call);
                    out.cancel.push(call);
                }
                ctx.release(&self.plan.nodes[id]);
            }
            State::Asking(_) => {
                if let Some(q) = self.ids.remove(&id) {
                    ctx.flights.remove(&q);
                    out.cancel.push(q);
                }
            }
            State::Waiting => {}
        }
        self.settle_not_run(id, StepStatus::Cancelled, ctx, out);
    }

    /// The frame's end: its steps' reports in plan order (steps that never ran: skipped),
    /// then its regions'.
    fn into_body(self) -> Body {
        let mut succeeded = true;
        let mut steps = Vec::new();
        let mut digests = Vec::new();
        let mut reused = Vec::new();
        for (i, report) in self.reports.into_iter().enumerate() {
            let node = &self.plan.nodes[i];
            if !self.active[i] || matches!(node.exec, PlanExec::Item) {
                continue;
            }
            let s = report.unwrap_or_else(|| {
                let why = StepStatus::Skipped("the run stopped".into());
                StepReport::not_run(node, why, None)
            });
            succeeded &= s.status == StepStatus::Succeeded || self.tolerated[i];
            if s.status == StepStatus::Succeeded
                && let Some(d) = &self.digests[i]
            {
                digests.push((s.name.clone(), d.clone()));
            }
            if self.reused[i] {
                reused.push(s.name.clone());
            }
            steps.push(s);
        }
        steps.extend(self.inner);
        reused.extend(self.inner_reused);
        digests.extend(self.inner_digests);
        Body {
            plan: self.plan,
            active: self.active,
            succeeded,
            interrupted: self.interrupted,
            stopped: self.stopped,
            steps,
            reused,
            digests,
            outputs: self.outputs,
        }
    }
}

enum Ready {
    NotYet,
    Go,
    Skip(String),
}

/// A region in flight in a frame: its instances, and what it gathered of those that ended.
struct RegionRun {
    node: NodeId,
    region: usize,
    /// The plan of the frame the region stands in.
    plan: Arc<Plan>,
    report: StepReport,
    inner: Vec<StepReport>,
    reused: Vec<String>,
    digests: Vec<(String, String)>,
    running: Running,
}

/// The instances of a region in flight.
enum Running {
    For(Box<ForRun>),
    /// Iteration `k` (from 1) of a `repeat`.
    Repeat {
        k: u32,
        frame: Frame,
    },
    /// The branch an `if` took (`holds`: whether its condition held), or a called workflow
    /// (`holds` none).
    Body {
        holds: Option<bool>,
        body: usize,
        frame: Frame,
    },
    /// Nothing left to run.
    Ended,
}

/// A `parallel for` in flight, as the local `run_for`.
struct ForRun {
    /// The plan without the list's items (the instances do not read them).
    plan: Arc<Plan>,
    var: Option<NodeId>,
    results: Vec<NodeId>,
    list: ListSource,
    policy: Policy,
    /// The outputs when the region started, each instance's start.
    outputs: Vec<Option<serde_json::Value>>,
    items: Vec<ForItem>,
    /// The next item to start.
    next: usize,
    limit: usize,
    need: usize,
    values: Vec<Option<serde_json::Value>>,
    ok: Vec<bool>,
    failed_at: Vec<bool>,
    succeeded: usize,
    settled: usize,
    failure: Option<StepStatus>,
    /// A met `any`/`first N`, or a policy that cannot be met any more: nothing more starts.
    done: bool,
    /// The instances in flight, by item index.
    running: BTreeMap<usize, Frame>,
    /// Instances to look at in the next round: started, or a step of theirs ended (the
    /// others have nothing to decide: looking at every instance in every round would cost
    /// the square of the items).
    touched: BTreeSet<usize>,
    /// Instances with steps waiting for a concurrency cap: looked at in every round.
    capped: BTreeSet<usize>,
    /// Instances that ended, to take in.
    ended: BTreeSet<usize>,
}

impl RegionRun {
    /// A `for` region at node `id` of `plan` over `items`, at most `max` instances at once.
    ///
    /// # Errors
    /// The region's failure when its `gather` needs more instances than the list has.
    fn start_for(
        plan: &Arc<Plan>,
        id: NodeId,
        region: usize,
        items: Vec<ForItem>,
        max: Option<u32>,
        outputs: Vec<Option<serde_json::Value>>,
    ) -> Result<Running, StepStatus> {
        let PlanRegionKind::For {
            var,
            list,
            results,
            gather,
            ..
        } = &plan.regions[region].kind
        else {
            unreachable!("a `for` region");
        };
        let policy = gather.unwrap_or(Policy::All);
        if let Some(status) = regions::unmeetable(policy, items.len(), &plan.nodes[id].name) {
            return Err(status);
        }
        let n = items.len();
        Ok(Running::For(Box::new(ForRun {
            plan: Arc::new(regions::without_list(plan, id)),
            var: *var,
            results: results.clone(),
            list: list.items.clone(),
            policy,
            outputs,
            need: regions::needed(policy, n),
            items,
            next: 0,
            limit: max.map_or(usize::MAX, |m| m.max(1) as usize),
            values: vec![None; n],
            ok: vec![false; n],
            failed_at: vec![false; n],
            succeeded: 0,
            settled: 0,
            failure: None,
            done: false,
            running: BTreeMap::new(),
            touched: BTreeSet::new(),
            capped: BTreeSet::new(),
            ended: BTreeSet::new(),
        })))
    }

    /// Marks instance `i` to be looked at in the next round (a step of it ended).
    fn touch(&mut self, i: usize) {
        if let Running::For(f) = &mut self.running {
            f.touched.insert(i);
        }
    }

    /// The frame of instance `i`, if it is running.
    fn instance(&mut self, i: usize) -> Option<&mut Frame> {
        match &mut self.running {
            Running::For(f) => f.running.get_mut(&i),
            Running::Repeat { k, frame } => (*k as usize == i).then_some(frame),
            Running::Body { frame, .. } => Some(frame),
            Running::Ended => None,
        }
    }

    /// One round of decisions in the region's instances; whether anything changed.
    fn pump(
        &mut self,
        ctx: &mut Ctx,
        path: &mut Vec<(NodeId, usize)>,
        out: &mut Decisions,
    ) -> bool {
        let node = self.node;
        let mut changed = false;
        let mut each = |i: usize, frame: &mut Frame, ctx: &mut Ctx, out: &mut Decisions| {
            path.push((node, i));
            while frame.pump(ctx, path, out) {
                changed = true;
            }
            path.pop();
        };
        match &mut self.running {
            Running::For(f) => {
                let mut look = std::mem::take(&mut f.touched);
                look.append(&mut f.capped);
                for i in look {
                    let Some(frame) = f.running.get_mut(&i) else {
                        continue;
                    };
                    each(i, frame, ctx, out);
                    if frame.done() {
                        f.ended.insert(i);
                    } else if !frame.capped.is_empty() {
                        f.capped.insert(i);
                    }
                }
            }
            Running::Repeat { k, frame } => each(*k as usize, frame, ctx, out),
            Running::Body { frame, .. } => each(0, frame, ctx, out),
            Running::Ended => {}
        }
        changed
    }

    /// Keeps what an instance that ended leaves the region: its steps' reports, reused
    /// names and digests.
    fn keep(&mut self, body: &mut Body) {
        self.inner.append(&mut body.steps);
        self.reused.append(&mut body.reused);
        self.digests.append(&mut body.digests);
    }

    /// Moves the instances that ended into the region and starts the next ones (`changed`
    /// when it did either); the region's result once it is over.
    fn result(
        &mut self,
        ctx: &mut Ctx,
        out: &mut Decisions,
        changed: &mut bool,
    ) -> Option<Result<RegionResult, StepStatus>> {
        let ended = match &self.running {
            Running::For(_) => return self.for_result(ctx, out, changed),
            Running::Repeat { frame, .. } | Running::Body { frame, .. } => frame.done(),
            Running::Ended => false,
        };
        if !ended {
            return None;
        }
        *changed = true;
        let name = self.plan.nodes[self.node].name.clone();
        let plan = self.plan.clone();
        let region = &plan.regions[self.region];
        match std::mem::replace(&mut self.running, Running::Ended) {
            Running::Repeat { k, frame } => {
                let PlanRegionKind::Repeat {
                    max,
                    until,
                    else_fail,
                } = &region.kind
                else {
                    unreachable!("a `repeat` region");
                };
                let mut body = frame.into_body();
                // The failure names the iteration's first failed step: read before they move.
                let failure = (!body.succeeded).then(|| {
                    let what = regions::iteration_what(k, &name);
                    regions::body_failure(
                        body.interrupted,
                        body.stopped.as_deref(),
                        &body.steps,
                        &what,
                    )
                });
                self.keep(&mut body);
                if let Some(f) = failure {
                    return Some(Err(f));
                }
                let scope = Scope {
                    plan: &body.plan,
                    inputs: &ctx.inputs,
                    outputs: &body.outputs,
                };
                let held = match regions::until_holds(&until.expr, &scope) {
                    Ok(h) => h,
                    Err(status) => return Some(Err(status)),
                };
                if held || k >= (*max).max(1) {
                    let exports = regions::exported(region, 0, &body.outputs);
                    return Some(regions::repeat_end(held, k, *max, *else_fail, exports));
                }
                let next = k + 1;
                let plan = Arc::new(regions::renamed(&plan, self.region, &format!("#{next}")));
                let active = regions::body_active(&plan, self.region, 0);
                self.running = Running::Repeat {
                    k: next,
                    frame: Frame::new(plan, active, body.outputs),
                };
                None
            }
            Running::Body { holds, body, frame } => {
                let index = body;
                let mut body = frame.into_body();
                let failure = (!body.succeeded).then(|| {
                    let what = match holds {
                        Some(h) => regions::branch_what(h).to_string(),
                        None => regions::call_what(&name),
                    };
                    regions::body_failure(
                        body.interrupted,
                        body.stopped.as_deref(),
                        &body.steps,
                        &what,
                    )
                });
                self.keep(&mut body);
                if let Some(f) = failure {
                    return Some(Err(f));
                }
                Some(Ok(match (holds, &region.kind) {
                    (Some(h), _) => {
                        regions::if_result(h, regions::exported(region, index, &body.outputs))
                    }
                    (None, PlanRegionKind::Call { output, .. }) => {
                        let scope = Scope {
                            plan: &body.plan,
                            inputs: &ctx.inputs,
                            outputs: &body.outputs,
                        };
                        regions::call_result(output.as_ref(), &scope, self.region)
                    }
                    (None, _) => unreachable!("a body without a condition is a call"),
                }))
            }
            Running::For(_) | Running::Ended => None,
        }
    }

    /// [`RegionRun::result`] of a `for`, as the local `run_for`: instances are taken in item
    /// order as they end; under `all` a failed instance fails the region (and no new one
    /// starts unless `--keep-going`); under a tolerant `gather` failed instances are left
    /// out, `any` and `first N` stop the rest once met, and the region fails only when the
    /// policy cannot be met.
    fn for_result(
        &mut self,
        ctx: &mut Ctx,
        out: &mut Decisions,
        changed: &mut bool,
    ) -> Option<Result<RegionResult, StepStatus>> {
        let Running::For(f) = &mut self.running else {
            unreachable!("a `for` in flight");
        };
        let name = &self.plan.nodes[self.node].name;
        let tolerant = f.policy != Policy::All;
        // `any` and `first N` are done once met; `min N` waits for every instance.
        let early = matches!(f.policy, Policy::Any | Policy::First(_));
        loop {
            let ended = std::mem::take(&mut f.ended);
            if ended.is_empty() {
                break;
            }
            *changed = true;
            for i in ended {
                let Some(frame) = f.running.remove(&i) else {
                    continue;
                };
                let mut body = frame.into_body();
                f.settled += 1;
                f.failed_at[i] = !body.succeeded && !body.interrupted;
                let met = early && f.succeeded >= f.need;
                if body.succeeded && !met {
                    let result = regions::result_node(&f.results, f.items[i].0);
                    f.values[i] = result.and_then(|n| body.outputs[n].take());
                    f.ok[i] = true;
                    f.succeeded += 1;
                } else if !body.succeeded && f.failure.is_none() && !met {
                    f.failure = Some(regions::body_failure(
                        body.interrupted,
                        body.stopped.as_deref(),
                        &body.steps,
                        &regions::item_what(i, name, &f.items[i].2),
                    ));
                }
                self.inner.append(&mut body.steps);
                self.reused.append(&mut body.reused);
                self.digests.append(&mut body.digests);
                // Nothing more to start, and the instances in flight are stopped: an `any` /
                // `first N` is met, or the policy cannot be met any more.
                let hopeless = tolerant && f.succeeded + (f.items.len() - f.settled) < f.need;
                if !f.done && ((early && f.succeeded >= f.need) || hopeless) {
                    f.done = true;
                    for (&j, frame) in f.running.iter_mut() {
                        frame.cancel(ctx, out);
                        f.ended.insert(j);
                    }
                }
            }
        }
        let may_start = !f.done && (tolerant || f.failure.is_none() || ctx.keep_going);
        while may_start && f.running.len() < f.limit && f.next < f.items.len() {
            let i = f.next;
            f.next += 1;
            let (body, item, _) = &f.items[i];
            let mut outputs = f.outputs.clone();
            if let (Some(v), Some(item)) = (f.var, item) {
                outputs[v] = Some(item.clone());
            }
            let plan = Arc::new(regions::renamed(
                &f.plan,
                self.region,
                &format!("[{}]", i + 1),
            ));
            let active = regions::body_active(&plan, self.region, *body);
            f.running.insert(i, Frame::new(plan, active, outputs));
            f.touched.insert(i);
            *changed = true;
        }
        if !f.running.is_empty() {
            return None;
        }
        // Instances a met `gather` (or a failure) never started.
        for i in f.next..f.items.len() {
            let reports =
                regions::not_started(&f.plan, self.region, f.items[i].0, i, Some(ctx.now));
            out.settled.extend(reports.iter().cloned());
            self.inner.extend(reports);
        }
        f.next = f.items.len();
        if !tolerant {
            if let Some(failure) = f.failure.take() {
                return Some(Err(failure));
            }
        } else if f.succeeded < f.need {
            return Some(Err(regions::shortfall(
                f.succeeded,
                f.items.len(),
                f.policy,
                name,
            )));
        }
        Some(Ok(regions::for_result(
            &f.list,
            f.policy,
            &f.items,
            &f.values,
            &f.ok,
            &f.failed_at,
        )))
    }

    /// Stops the region's instances (a `gather` no longer needs the region): their steps are
    /// cancelled, and so are the instances that did not start.
    fn cancel(&mut self, ctx: &mut Ctx, out: &mut Decisions) {
        let mut frames = Vec::new();
        match std::mem::replace(&mut self.running, Running::Ended) {
            Running::For(mut f) => {
                frames.extend(std::mem::take(&mut f.running).into_values());
                for i in f.next..f.items.len() {
                    let reports =
                        regions::not_started(&f.plan, self.region, f.items[i].0, i, Some(ctx.now));
                    out.settled.extend(reports.iter().cloned());
                    self.inner.extend(reports);
                }
            }
            Running::Repeat { frame, .. } | Running::Body { frame, .. } => frames.push(frame),
            Running::Ended => {}
        }
        for mut frame in frames {
            frame.cancel(ctx, out);
            let mut body = frame.into_body();
            self.keep(&mut body);
        }
    }
}

/// A worker's side: one plan's clients, limits and MCP servers, prepared once, running the
/// steps an engine hands it with the local run's step code.
pub struct StepHost {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    cap: Option<u32>,
}

impl StepHost {
    /// Prepares `plan` as a local run would with `opts` (its target, keys from this
    /// process's environment, `max_concurrency`, workspace, `max_tokens_cap`): clients per
    /// model, provider limits (shared by every step this host runs), MCP servers checked.
    /// `opts.inputs` are not read (steps come rendered); no journal is written.
    ///
    /// # Errors
    /// [`RunError`] as for a local run: a missing key, a workspace, an MCP server.
    pub async fn new(
        plan: Arc<Plan>,
        models: &crate::common::NameMap<String, ModelDef>,
        opts: &RunOptions,
    ) -> Result<Self, RunError> {
        let mut opts = opts.clone();
        opts.journal = None;
        prepare::register_secrets(&plan, &opts);
        let mut shared = prepare::prepare(&plan, models, &opts)?;
        shared.agents.mcp = super::start_mcp(&plan, &shared.agents.workspace).await?;
        Ok(StepHost {
            plan,
            shared: Arc::new(shared),
            cap: opts.max_tokens_cap,
        })
    }

    /// The plan this host runs steps of.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs one step to its end, as a local run does ([`super::step::execute`]), reporting
    /// its progress to `on_event` as it happens. A call naming no step of the plan, or a
    /// region, fails the step (it is not the plan the call was rendered from).
    pub async fn execute(
        &self,
        call: StepCall,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> StepReport {
        let Some(node) = self.plan.nodes.get(call.node).filter(|n| {
            call.name.len() == n.name.len() + call.suffix.len()
                && call.name.starts_with(n.name.as_str())
                && call.name.ends_with(call.suffix.as_str())
        }) else {
            return unknown_step(&call);
        };
        // A step of a region instance runs (and reports) under the instance's name.
        let renamed;
        let node = if call.suffix.is_empty() {
            node
        } else {
            let mut n = node.clone();
            n.name = call.name.clone();
            renamed = n;
            &renamed
        };
        if matches!(node.exec, PlanExec::Region { .. } | PlanExec::Item) {
            return StepReport::not_run(
                node,
                StepStatus::Failed(format!("`{}` is not a step a worker runs", node.name)),
                None,
            );
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let run = execute(
            node,
            Call {
                prompt: call.prompt,
                args: call.args,
                largest: call.largest,
            },
            &self.shared,
            self.cap,
            &tx,
            None,
        );
        tokio::pin!(run);
        loop {
            tokio::select! {
                report = &mut run => {
                    while let Ok(ev) = rx.try_recv() {
                        on_event(&ev);
                    }
                    return report;
                }
                Some(ev) = rx.recv() => on_event(&ev),
            }
        }
    }
}

/// The report of a call naming a step the plan does not have.
fn unknown_step(call: &StepCall) -> StepReport {
    StepReport::blank(
        call.name.clone(),
        "",
        StepStatus::Failed(format!(
            "step `{}` (node {}) is not in the plan this worker compiled: the script changed between submission and execution",
            call.name, call.node
        )),
    )
}

#[cfg(test)]
mod region_tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use indexmap::IndexMap;

    use super::{Interp, Outcome, StepCall, StepHost};
    use crate::plan::plan_for_test;
    use crate::run::{RunOptions, RunReport, StepReport, StepStatus, run};

    /// Runs `src` (command steps) locally and with the interpreter, whose steps run one at a
    /// time, first in first out, with the local step code ([`StepHost`]).
    async fn both(src: &str, opts: RunOptions) -> (RunReport, Outcome) {
        let (program, plan) = plan_for_test(src);
        let models = &program.tables.models;
        let local = run(&plan, models, &opts, &|_| {}).await.expect("runs");
        let plan = Arc::new(plan);
        let host = StepHost::new(plan.clone(), models, &opts)
            .await
            .expect("host");
        let mut i = Interp::new(
            plan,
            &opts.inputs,
            models,
            true,
            opts.max_concurrency,
            opts.keep_going,
            &Outcome::default(),
        )
        .expect("interpreter");
        let mut queue: VecDeque<StepCall> = VecDeque::new();
        loop {
            let d = i.decide(0);
            queue.retain(|c| !d.cancel.contains(&c.id));
            queue.extend(d.start);
            let Some(c) = queue.pop_front() else { break };
            let id = c.id;
            let report = host.execute(c, &|_| {}).await;
            i.finish(id, report);
        }
        assert_eq!(i.running(), 0);
        (local, i.into_outcome())
    }

    /// Each step's name, status, output and warnings, by name (instances end in any order).
    fn steps(reports: &[StepReport]) -> Vec<(String, String, Option<String>, Vec<String>)> {
        let mut v: Vec<_> = reports
            .iter()
            .map(|s| {
                let status = match &s.status {
                    StepStatus::Skipped(_) => "skipped".to_string(),
                    other => format!("{other:?}"),
                };
                (s.name.clone(), status, s.output.clone(), s.warnings.clone())
            })
            .collect();
        v.sort();
        v
    }

    /// The same output, success, steps (names, statuses, outputs, warnings) and reasons.
    async fn same(src: &str, opts: RunOptions) -> Outcome {
        let (local, remote) = both(src, opts).await;
        assert_eq!(remote.output, local.output, "{remote:#?}\n{local:#?}");
        assert_eq!(remote.succeeded, local.succeeded);
        assert_eq!(steps(&remote.steps), steps(&local.steps));
        assert_eq!(remote.stopped, local.stopped);
        remote
    }

    const SAY: &str = "agent say(x: text) { run: [\"echo\", \"{x}\"] }\nagent check(x: text) { run: [\"sh\", \"-c\", \"test '{x}' = ok && echo '{x}'\"] }\n";

    #[tokio::test]
    async fn a_parallel_for_gives_the_local_result_with_caps_and_gather() {
        let out = same(
            &format!(
                "{SAY}workflow main() {{\n  xs = parallel <max 2> for t in [\"one\", \"two\", \"three\"] {{\n    r = say(x: \"item {{t}}\")\n    s = say(x: \"again {{r}}\")\n  }}\n  return xs\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        assert!(out.steps.iter().any(|s| s.name == "s[3]"), "{out:#?}");
        // A tolerant gather leaves the failed instance out, as locally.
        same(
            &format!(
                "{SAY}workflow main() {{\n  xs = parallel for t in [\"ok\", \"bad\", \"ok\"] {{\n    r = check(x: \"{{t}}\")\n  }}\n  gather <min 2> g = say(x: \"{{xs}}\")\n  return g\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        // Under `all` a failed instance fails the region and the run.
        let out = same(
            &format!(
                "{SAY}workflow main() {{\n  xs = parallel <max 1> for t in [\"ok\", \"bad\", \"ok\"] {{\n    r = check(x: \"{{t}}\")\n  }}\n  y = say(x: \"{{xs}}\")\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        assert!(!out.succeeded);
        // An empty list: no instance, a warning.
        let out = same(
            &format!(
                "{SAY}workflow main() {{\n  xs = say(x: \"[]\") -> list<text>\n  ys = parallel for t in xs {{\n    r = say(x: \"{{t}}\")\n  }}\n  return ys\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        let ys = out.steps.iter().find(|s| s.name == "ys").unwrap();
        assert!(ys.warnings[0].contains("is empty"), "{ys:?}");
    }

    #[tokio::test]
    async fn repeat_if_and_calls_give_the_local_result() {
        // `until` holds after the first iteration; then one that stops at `max` (a warning).
        same(
            &format!(
                "{SAY}workflow main() {{\n  repeat <max 3> {{\n    d = say(x: \"done\")\n  }} until d == \"done\"\n  return d\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        let out = same(
            &format!(
                "{SAY}workflow main() {{\n  repeat <max 2> {{\n    d = say(x: \"draft {{d}}\")\n  }} until d == \"never\"\n  return d\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        assert!(out.steps.iter().any(|s| s.name == "d#2"), "{out:#?}");
        assert!(
            out.steps
                .iter()
                .any(|s| s.warnings.iter().any(|w| w.contains("max 2")))
        );
        same(
            &format!(
                "{SAY}workflow main() {{\n  x = say(x: \"b\")\n  if x == \"a\" {{\n    y = say(x: \"then\")\n  }} else {{\n    y = say(x: \"else {{x}}\")\n  }}\n  return y\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
        same(
            &format!(
                "{SAY}workflow inner(t: text) -> text {{\n  a = say(x: \"in {{t}}\")\n  b = say(x: \"then {{a}}\")\n  return b\n}}\nworkflow main() {{\n  xs = parallel for t in [\"p\", \"q\"] {{\n    r = inner(t: t)\n  }}\n  return xs\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
    }

    #[tokio::test]
    async fn a_gather_any_over_a_for_stops_the_other_instances() {
        same(
            &format!(
                "{SAY}workflow main() {{\n  xs = parallel <max 1> for t in [\"ok\", \"two\", \"three\"] {{\n    r = say(x: \"{{t}}\")\n  }}\n  gather <any> g = say(x: \"{{xs}}\")\n  return g\n}}\n"
            ),
            RunOptions::default(),
        )
        .await;
    }

    /// The workflow's budget holds across instances: the instance whose worst case no
    /// longer fits is skipped, which fails its instance, the region and the run, as locally.
    #[tokio::test]
    async fn a_budget_holds_across_the_instances_of_a_for() {
        let out = same(
            "provider s { kind: sim }\nmodel m { provider: s, price: { input: 1.0, output: 1.0 } }\nagent a { model: m, max_tokens: 10 }\nworkflow main() <budget $0.00003> {\n  xs = parallel <max 1> for t in [\"1\", \"2\", \"3\", \"4\"] {\n    r = a(\"{t}\")\n  }\n  return xs\n}\n",
            RunOptions::default(),
        )
        .await;
        assert!(!out.succeeded);
        assert!(
            out.stopped.as_deref().is_some_and(|s| s.contains("budget")),
            "{out:#?}"
        );
    }

    #[tokio::test]
    async fn keep_going_runs_every_instance_after_a_failure() {
        let opts = RunOptions {
            keep_going: true,
            ..RunOptions::default()
        };
        let out = same(
            &format!(
                "{SAY}workflow main() {{\n  xs = parallel <max 1> for t in [\"bad\", \"ok\"] {{\n    r = check(x: \"{{t}}\")\n  }}\n}}\n"
            ),
            opts,
        )
        .await;
        let r2 = out.steps.iter().find(|s| s.name == "r[2]").unwrap();
        assert_eq!(r2.status, StepStatus::Succeeded);
    }

    /// A resubmitted run reuses the region instances' steps that succeeded (by their
    /// instance names) and runs the rest.
    #[test]
    fn a_resubmitted_run_reuses_the_steps_of_region_instances() {
        let src = "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m, max_tokens: 10 }\nworkflow main() {\n  xs = parallel for t in [\"1\", \"2\"] {\n    r = a(\"{t}\")\n  }\n  y = a(\"{xs}\")\n}\n";
        let (program, plan) = plan_for_test(src);
        let plan = Arc::new(plan);
        let drive = |prior: &Outcome, fail: &str| {
            let mut i = Interp::new(
                plan.clone(),
                &IndexMap::new(),
                &program.tables.models,
                true,
                None,
                false,
                prior,
            )
            .unwrap();
            let mut started = Vec::new();
            loop {
                let d = i.decide(0);
                if d.start.is_empty() {
                    break;
                }
                for c in d.start {
                    let status = if c.name == fail {
                        StepStatus::Failed("down".into())
                    } else {
                        StepStatus::Succeeded
                    };
                    let r = StepReport {
                        output: Some(c.prompt.clone()),
                        ..StepReport::not_run(&plan.nodes[c.node], status, Some(1))
                    };
                    started.push(c.name.clone());
                    i.finish(c.id, StepReport { name: c.name, ..r });
                }
            }
            (started, i.into_outcome())
        };
        let (_, first) = drive(&Outcome::default(), "r[2]");
        assert!(!first.succeeded);
        let (started, second) = drive(&first, "");
        assert_eq!(started, ["r[2]", "y"]);
        assert_eq!(second.reused, ["r[1]"]);
        assert!(second.succeeded);
    }

    /// A halt (the engine's history is full) stops new work in region instances too; the
    /// run ends with its reason.
    #[test]
    fn a_halt_stops_new_work_everywhere() {
        let src = "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m, max_tokens: 10 }\nworkflow main() {\n  xs = parallel <max 1> for t in [\"1\", \"2\"] {\n    r = a(\"{t}\")\n  }\n}\n";
        let (program, plan) = plan_for_test(src);
        let plan = Arc::new(plan);
        let mut i = Interp::new(
            plan.clone(),
            &IndexMap::new(),
            &program.tables.models,
            true,
            None,
            false,
            &Outcome::default(),
        )
        .unwrap();
        let d = i.decide(0);
        assert_eq!(d.start.len(), 1);
        i.halt("history full".into());
        let r = StepReport {
            output: Some("1".into()),
            ..StepReport::not_run(&plan.nodes[d.start[0].node], StepStatus::Succeeded, Some(1))
        };
        i.finish(d.start[0].id, r);
        assert!(i.decide(1).start.is_empty());
        let out = i.into_outcome();
        assert!(!out.succeeded);
        assert!(
            out.stopped
                .as_deref()
                .is_some_and(|s| s.ends_with("history full")),
            "{out:?}"
        );
        let xs = out.steps.iter().find(|s| s.name == "xs").unwrap();
        assert!(
            matches!(&xs.status, StepStatus::Failed(e) if e.contains("item 2 of `xs` (2): history full")),
            "{xs:?}"
        );
    }

    /// `--max-concurrency` holds across the instances of a `for` (and a block's `max N`
    /// across its instances), as the local run's semaphores do.
    #[test]
    fn caps_hold_across_region_instances() {
        let src = "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m, max_tokens: 10 }\nworkflow main() {\n  xs = parallel for t in [\"1\", \"2\", \"3\"] {\n    r = a(\"{t}\")\n  }\n}\n";
        let (program, plan) = plan_for_test(src);
        let plan = Arc::new(plan);
        let mut i = Interp::new(
            plan.clone(),
            &IndexMap::new(),
            &program.tables.models,
            true,
            Some(2),
            false,
            &Outcome::default(),
        )
        .unwrap();
        let d = i.decide(0);
        let names: Vec<&str> = d.start.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["r[1]", "r[2]"]);
        assert_eq!(d.start[1].suffix, "[2]");
        let done = |c: &StepCall| StepReport {
            status: StepStatus::Succeeded,
            output: Some(c.prompt.clone()),
            ..StepReport::not_run(&plan.nodes[c.node], StepStatus::Succeeded, Some(1))
        };
        let first = done(&d.start[0]);
        i.finish(d.start[0].id, first);
        let d2 = i.decide(1);
        assert_eq!(d2.start.len(), 1);
        assert_eq!(d2.start[0].name, "r[3]");
        for c in d.start[1..].iter().chain(&d2.start) {
            let r = done(c);
            i.finish(c.id, r);
        }
        assert!(i.decide(2).start.is_empty());
        let out = i.into_outcome();
        assert!(out.succeeded);
        assert_eq!(out.output.as_deref(), Some("1. 1\n2. 2\n3. 3"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m }\n";

    /// An interpreter for `src` (no inputs), at most `max` steps in flight.
    fn interp(src: &str, max: Option<usize>) -> Interp {
        let (program, diags) = crate::compile_source(
            "t.orch",
            src,
            std::path::Path::new("."),
            &crate::resolve::ResolveOptions::default(),
        );
        assert!(
            !diags.has_errors(),
            "{:?}",
            diags.iter().collect::<Vec<_>>()
        );
        let entry = crate::diag::Span::new(crate::diag::FileId(0), 0, 0);
        let wf = crate::plan::entry_workflow(&program, None, entry).unwrap();
        let plan = crate::plan::lower(&program, wf);
        Interp::new(
            Arc::new(plan),
            &IndexMap::new(),
            &program.tables.models,
            true,
            max,
            false,
            &Outcome::default(),
        )
        .unwrap()
    }

    /// The report of a step of `i` that answered `out: PROMPT`.
    fn ok(i: &Interp, call: &StepCall) -> StepReport {
        let node = &i.plan().nodes[call.node];
        let mut r = StepReport::not_run(node, StepStatus::Succeeded, Some(1));
        r.output = Some(format!("out: {}", call.prompt));
        r
    }

    fn by_person(approved: bool) -> Approval {
        Approval {
            approved,
            via: "with orch approve by ann@box".into(),
        }
    }

    const DEPLOY: &str = "workflow main() {\n  v = a(\"version\")\n  ok = approve(\"Deploy {v}?\")\n  if_ok = a(\"after {ok}\")\n  return if_ok\n}\n";

    #[test]
    fn an_approval_asks_its_rendered_question_and_waits_for_its_answer() {
        let mut i = interp(&format!("{HEAD}{DEPLOY}"), None);
        let d = i.decide(0);
        assert_eq!(d.start.len(), 1);
        i.finish(d.start[0].id, ok(&i, &d.start[0]));
        let d = i.decide(5);
        assert!(d.start.is_empty() && d.answered.is_empty());
        assert_eq!(d.ask.len(), 1);
        let q = &d.ask[0];
        assert_eq!(
            (q.step.as_str(), q.question.as_str(), q.wait_ms),
            ("ok", "Deploy out: version?", None)
        );
        assert_eq!(i.asking(), [(q.id, "ok", 5)]);
        // Nothing else can start while the question waits, and it holds no permit.
        assert!(i.decide(6).start.is_empty());
        assert_eq!(i.running(), 0);
        let r = i.answer(q.id, by_person(true), 9).unwrap();
        assert_eq!(r.status, StepStatus::Succeeded);
        assert_eq!(r.model.as_deref(), Some("person"));
        assert_eq!((r.started_ms, r.finished_ms), (Some(5), Some(9)));
        assert_eq!(r.output.as_deref(), Some("true"));
        assert_eq!(r.value, Some(serde_json::Value::Bool(true)));
        assert_eq!(
            r.approval.as_ref().map(Approval::describe).as_deref(),
            Some("approved with orch approve by ann@box")
        );
        assert!(i.asking().is_empty());
        // A second answer to a settled step changes nothing.
        assert!(i.answer(q.id, by_person(false), 10).is_none());
        let d = i.decide(10);
        assert_eq!(d.start.len(), 1);
        assert_eq!(d.start[0].prompt, "after true");
        i.finish(d.start[0].id, ok(&i, &d.start[0]));
        assert!(i.decide(11).start.is_empty());
        let out = i.into_outcome();
        assert!(out.succeeded);
        assert_eq!(out.output.as_deref(), Some("out: after true"));
    }

    #[test]
    fn a_declined_approval_succeeds_with_false_and_an_unanswered_one_fails() {
        let mut i = interp(&format!("{HEAD}{DEPLOY}"), None);
        let d = i.decide(0);
        i.finish(d.start[0].id, ok(&i, &d.start[0]));
        let q = i.decide(0).ask.remove(0);
        let r = i.answer(q.id, by_person(false), 3).unwrap();
        assert_eq!(r.status, StepStatus::Succeeded);
        assert_eq!(r.output.as_deref(), Some("false"));
        assert_eq!(i.decide(3).start[0].prompt, "after false");

        let timed = DEPLOY.replace("approve(", "approve<timeout 30m, deadline 1h>(");
        let mut i = interp(&format!("{HEAD}{timed}"), None);
        let d = i.decide(0);
        i.finish(d.start[0].id, ok(&i, &d.start[0]));
        let q = i.decide(0).ask.remove(0);
        assert_eq!(q.wait_ms, Some(30 * 60 * 1000), "the shorter of the two");
        let r = i
            .unanswered(q.id, "no answer within 30m".into(), 7)
            .unwrap();
        assert_eq!(r.status, StepStatus::Failed("no answer within 30m".into()));
        assert!(r.approval.is_none());
        let d = i.decide(7);
        assert!(d.start.is_empty());
        assert!(matches!(d.settled[0].status, StepStatus::Skipped(_)));
        let out = i.into_outcome();
        assert!(!out.succeeded);
        assert!(out.stopped.is_some_and(|s| s.contains("`ok` failed")));
    }

    #[test]
    fn yes_approves_every_approval_at_once_as_local_yes_does() {
        let mut i = interp(&format!("{HEAD}{DEPLOY}"), None).approve_all(true);
        let d = i.decide(0);
        i.finish(d.start[0].id, ok(&i, &d.start[0]));
        let d = i.decide(4);
        assert!(d.ask.is_empty());
        assert_eq!(d.answered.len(), 1);
        let r = &d.answered[0];
        assert_eq!(r.model.as_deref(), Some("--yes"));
        assert_eq!(
            r.approval.as_ref().map(Approval::describe).as_deref(),
            Some("approved by --yes")
        );
        assert_eq!(d.start[0].prompt, "after true");
    }

    #[test]
    fn approvals_take_no_permit_of_the_caps() {
        let src = format!(
            "{HEAD}workflow main() {{\n  parallel <max 1> {{\n    p = approve(\"p?\")\n    q = approve(\"q?\")\n    r = a(\"r\")\n  }}\n}}\n"
        );
        let mut i = interp(&src, Some(1));
        let d = i.decide(0);
        assert_eq!(d.ask.len(), 2, "both questions are asked at once");
        assert_eq!(d.start.len(), 1, "and the step starts beside them");
        // Answers in any order; an answer to a step that is not asking is ignored.
        assert!(i.answer(d.start[0].id, by_person(true), 1).is_none());
        assert!(i.answer(d.ask[1].id, by_person(true), 1).is_some());
        assert_eq!(i.asking().len(), 1);
    }
}
