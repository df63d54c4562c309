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
//!   starts, [`super::budget`]); a failure stops new work unless `keep_going`. An
//!   `approve(...)` step is a question the engine puts to a person ([`Decisions::ask`],
//!   answered with [`Interp::answer`]), or approved at once under `--yes`
//!   ([`Interp::approve_all`]); as locally it takes no permit of the caps. Regions
//!   (`parallel for`, `repeat`, `if`, workflow calls) are not interpreted yet:
//!   [`Interp::supported`] says so before anything starts.
//! - [`StepHost`], one step run by the very code a local run uses ([`super::step::execute`]:
//!   providers, rate limits, retries, timeouts, fallback, structured outputs, agent loops,
//!   redaction), for an engine's activity on a worker.
//!
//! Steps cross the engine as a [`StepCall`] (the node and its rendered prompt and
//! arguments) and come back as a [`StepReport`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::approval::{ANSWERED_BY_PERSON, ANSWERED_BY_YES, Approval, answered_report};
use super::budget::Budgets;
use super::prepare::{self, Shared};
use super::render::{InputValue, Scope};
use super::step::{Call, execute};
use super::wiring::{JoinState, Wiring};
use super::{Event, RunError, RunOptions, StepReport, StepStatus};
use crate::check::{ModelDef, Price};
use crate::common::Policy;
use crate::plan::{NodeId, Plan, PlanExec, estimate_tokens};

/// One step to run: the node and its call, rendered where the run's outputs are (the
/// interpreter), so that a worker needs only the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCall {
    /// The node, an index in [`Plan::nodes`].
    pub node: NodeId,
    /// The step's name (for messages and progress).
    pub name: String,
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
/// settled without running (skipped, cancelled, reused), approvals answered by `--yes`, and
/// steps in flight (or questions waiting) to cancel (their result no longer counts; they are
/// among `settled`, as cancelled).
#[derive(Debug, Default)]
pub struct Decisions {
    /// Steps to start now, in order.
    pub start: Vec<StepCall>,
    /// Approval steps whose question is to be put to a person now, in order: the engine
    /// waits for an answer and gives it to [`Interp::answer`] (or, when the step's
    /// `timeout`/`deadline` passes first, to [`Interp::unanswered`]).
    pub ask: Vec<Question>,
    /// Reports of steps settled without running, in order.
    pub settled: Vec<StepReport>,
    /// Reports of approval steps approved at once ([`Interp::approve_all`], `--yes`).
    pub answered: Vec<StepReport>,
    /// Steps in flight (or questions waiting) whose result is no longer wanted.
    pub cancel: Vec<NodeId>,
}

/// An approval step's question, to put to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The node, an index in [`Plan::nodes`].
    pub node: NodeId,
    /// The step's name.
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
    /// Every step's report, in plan order (steps that never ran: skipped).
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

/// The deterministic DAG interpreter (see the module docs). Drive it with
/// [`Interp::decide`], then [`Interp::finish`] for each step that ends and
/// [`Interp::answer`] (or [`Interp::unanswered`]) for each question asked, until
/// [`Interp::running`] is zero, [`Interp::asking`] is empty and `decide` starts and asks
/// nothing; then [`Interp::into_outcome`].
pub struct Interp {
    plan: Arc<Plan>,
    inputs: IndexMap<String, InputValue>,
    prices: HashMap<String, Price>,
    max_concurrency: Option<usize>,
    keep_going: bool,
    state: Vec<State>,
    outputs: Vec<Option<serde_json::Value>>,
    reports: Vec<Option<StepReport>>,
    waiting_on: Vec<usize>,
    dependents: Vec<Vec<NodeId>>,
    candidates: VecDeque<NodeId>,
    /// Steps that may start but wait for a concurrency cap, in the order they became ready.
    capped: VecDeque<NodeId>,
    joins: HashMap<NodeId, JoinState>,
    watched_by: Vec<Vec<(NodeId, usize)>>,
    tolerated: Vec<bool>,
    stopped: Option<String>,
    budgets: Budgets,
    running: usize,
    group_running: Vec<u32>,
    /// Earlier results by step name: the digest of their call and their report.
    prior: HashMap<String, (String, StepReport)>,
    digests: Vec<Option<String>>,
    reused: Vec<bool>,
    /// `--yes`: approval steps are approved at once.
    approve_all: bool,
}

impl Interp {
    /// Whether the interpreter runs `plan`: `Err` names each construct it does not run yet.
    ///
    /// # Errors
    /// A message for people listing the regions, with what to do.
    pub fn supported(plan: &Plan) -> Result<(), String> {
        let mut not = Vec::new();
        for n in &plan.nodes {
            if let PlanExec::Region { region } = &n.exec {
                let kind = match &plan.regions[*region].kind {
                    crate::plan::PlanRegionKind::For { .. } => "a `parallel for`",
                    crate::plan::PlanRegionKind::Repeat { .. } => "a `repeat` loop",
                    crate::plan::PlanRegionKind::If { .. } => "an `if`",
                    crate::plan::PlanRegionKind::Call { .. } => "a workflow call",
                };
                not.push(format!("`{}` ({kind}, line {})", n.name, n.location.line));
            }
        }
        if !not.is_empty() {
            return Err(format!(
                "workflow `{}` cannot run on an engine yet: it has {}; engines run steps, approvals, `parallel` blocks, `gather` and budgets so far (docs/scale-out.md). Run it locally (without --engine)",
                plan.workflow,
                not.join(", ")
            ));
        }
        Ok(())
    }

    /// An interpreter for `plan` with the inputs given as text (parsed by their parameters'
    /// types, defaults filling the rest). `priced`: whether model steps are billed at the
    /// script's prices (not against an `--endpoint`), for budgets. `prior`: results of an
    /// earlier execution of the same run, reused by steps whose call is unchanged.
    ///
    /// # Errors
    /// [`RunError::Input`] for inputs, and for a plan [`Interp::supported`] refuses.
    pub fn new(
        plan: Arc<Plan>,
        inputs: &IndexMap<String, String>,
        models: &IndexMap<String, ModelDef>,
        priced: bool,
        max_concurrency: Option<usize>,
        keep_going: bool,
        prior: &Outcome,
    ) -> Result<Self, RunError> {
        Self::supported(&plan).map_err(RunError::Input)?;
        let inputs = prepare::parse_inputs(&plan, inputs)?;
        let n = plan.nodes.len();
        let Wiring {
            dependents,
            waiting_on,
            tolerated,
            joins,
            watched_by,
        } = Wiring::new(&plan, |_| true);
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
        Ok(Interp {
            budgets: Budgets::new(&plan),
            group_running: vec![0; plan.groups.len()],
            candidates: (0..n).filter(|&i| waiting_on[i] == 0).collect(),
            plan,
            inputs,
            prices,
            max_concurrency,
            keep_going,
            state: vec![State::Waiting; n],
            outputs: vec![None; n],
            reports: vec![None; n],
            waiting_on,
            dependents,
            capped: VecDeque::new(),
            joins,
            watched_by,
            tolerated,
            stopped: None,
            running: 0,
            prior,
            digests: vec![None; n],
            reused: vec![false; n],
            approve_all: false,
        })
    }

    /// `--yes`: every approval step is approved as soon as it comes up, recorded as approved
    /// by `--yes` (as a local run's [`super::Approver::Yes`]) instead of asked.
    pub fn approve_all(mut self, yes: bool) -> Self {
        self.approve_all = yes;
        self
    }

    /// The plan interpreted.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Steps started and not yet finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// What to do now: settles what can be settled without running (skipped steps, steps
    /// reused from the earlier execution, cancelled ones), then starts what the caps and the
    /// budgets allow. `now_ms`: the run's clock (the engine's deterministic time since the
    /// run started), for the reports of steps settled now.
    pub fn decide(&mut self, now_ms: u64) -> Decisions {
        let mut out = Decisions::default();
        loop {
            let mut go = Vec::new();
            while let Some(id) = self.candidates.pop_front() {
                if self.state[id] != State::Waiting || self.waiting_on[id] > 0 {
                    continue;
                }
                match self.readiness(id) {
                    Ready::NotYet => {}
                    Ready::Skip(reason) => {
                        self.settle_not_run(id, StepStatus::Skipped(reason), Some(now_ms), &mut out)
                    }
                    Ready::Go => go.push(id),
                }
            }
            // Gathers first: one that starts may cancel the rest of its block.
            go.sort_by_key(|&id| self.plan.nodes[id].join.is_none());
            self.capped.extend(go);
            let mut started_any = false;
            let mut still = VecDeque::new();
            while let Some(id) = self.capped.pop_front() {
                if self.state[id] != State::Waiting {
                    continue;
                }
                if let Some(reason) = self.stopped.clone() {
                    self.settle_not_run(id, StepStatus::Skipped(reason), Some(now_ms), &mut out);
                    started_any = true;
                    continue;
                }
                let approval = matches!(self.plan.nodes[id].exec, PlanExec::Approval);
                // Waiting for a person is not work in flight: an approval takes no permit.
                if !approval && !self.has_room(id) {
                    still.push_back(id);
                    continue;
                }
                let call = self.call(id);
                let digest = call.digest();
                if let Some((d, report)) = self.prior.get(&call.name)
                    && *d == digest
                {
                    let report = report.clone();
                    self.digests[id] = Some(digest);
                    self.reused[id] = true;
                    out.settled.push(report.clone());
                    self.settle(id, report);
                    started_any = true;
                    continue;
                }
                if let Some(reason) = self.over_budget(id, &call) {
                    if !self.keep_going {
                        self.stopped = Some(reason.clone());
                    }
                    self.settle_not_run(id, StepStatus::Skipped(reason), Some(now_ms), &mut out);
                    started_any = true;
                    continue;
                }
                self.cancel_rest_of_join(id, now_ms, &mut out);
                self.digests[id] = Some(digest);
                if approval {
                    self.ask(id, call, now_ms, &mut out);
                    started_any = true;
                    continue;
                }
                self.state[id] = State::Running;
                self.running += 1;
                for &g in &self.plan.nodes[id].groups {
                    self.group_running[g] += 1;
                }
                out.start.push(call);
                started_any = true;
            }
            self.capped = still;
            if self.candidates.is_empty() && !started_any {
                return out;
            }
        }
    }

    /// Records the end of a step [`Interp::decide`] started. A result for a step already
    /// settled (cancelled by a `gather` while it was in flight) is ignored, as locally.
    pub fn finish(&mut self, id: NodeId, report: StepReport) {
        if self.state[id] != State::Running {
            return;
        }
        self.release(id);
        self.settle(id, report);
    }

    /// Puts approval step `id`'s question (its rendered prompt, `call.prompt`), or approves
    /// it at once under `--yes`.
    fn ask(&mut self, id: NodeId, call: StepCall, now_ms: u64, out: &mut Decisions) {
        let node = &self.plan.nodes[id];
        if self.approve_all {
            let answer = Approval {
                approved: true,
                via: "by --yes".into(),
            };
            let report = answered_report(node, now_ms, now_ms, ANSWERED_BY_YES, Ok(answer));
            out.answered.push(report.clone());
            self.settle(id, report);
            return;
        }
        let wait_ms = match (node.timeout_ms, node.deadline_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.ask.push(Question {
            node: id,
            step: call.name,
            question: call.prompt,
            wait_ms,
        });
        self.state[id] = State::Asking(now_ms);
    }

    /// Records a person's answer to approval step `id` (asked by [`Decisions::ask`]),
    /// given at `now_ms`: the step succeeds with `true` or `false` (a declined approval is
    /// a step that succeeded with `false`, as locally) and its report says who answered
    /// (`person`) and how (`answer.via`). Returns that report; `None` for a step not waiting
    /// for an answer (not an approval, already answered, or cancelled), which is left as is.
    pub fn answer(&mut self, id: NodeId, answer: Approval, now_ms: u64) -> Option<StepReport> {
        self.settle_question(id, now_ms, Ok(answer))
    }

    /// Approval step `id` got no answer in time (its `timeout`/`deadline`): it fails with
    /// `why`, as locally. Returns its report; `None` for a step not waiting for an answer.
    pub fn unanswered(&mut self, id: NodeId, why: String, now_ms: u64) -> Option<StepReport> {
        self.settle_question(id, now_ms, Err(why))
    }

    /// The approval steps waiting for an answer: node, name, when they were asked (run time,
    /// milliseconds).
    pub fn asking(&self) -> Vec<(NodeId, &str, u64)> {
        self.state
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                State::Asking(at) => Some((i, self.plan.nodes[i].name.as_str(), *at)),
                _ => None,
            })
            .collect()
    }

    fn settle_question(
        &mut self,
        id: NodeId,
        now_ms: u64,
        answer: Result<Approval, String>,
    ) -> Option<StepReport> {
        let State::Asking(asked) = *self.state.get(id)? else {
            return None;
        };
        let node = &self.plan.nodes[id];
        let report = answered_report(node, asked, now_ms, ANSWERED_BY_PERSON, answer);
        self.settle(id, report.clone());
        Some(report)
    }

    /// The report of a step that stopped for the engine's reasons (its activity failed for
    /// good: no worker took it in time, or it kept dying): failed, with `why`.
    pub fn engine_failure(&self, id: NodeId, why: String, now_ms: u64) -> StepReport {
        let mut r =
            StepReport::not_run(&self.plan.nodes[id], StepStatus::Failed(why), Some(now_ms));
        r.started_ms = None;
        r
    }

    /// Whether starting `id` keeps within `--max-concurrency` and its blocks' `max N`.
    fn has_room(&self, id: NodeId) -> bool {
        if self
            .max_concurrency
            .is_some_and(|m| self.running >= m.max(1))
        {
            return false;
        }
        self.plan.nodes[id].groups.iter().all(|&g| {
            self.plan.groups[g]
                .max
                .is_none_or(|m| self.group_running[g] < m)
        })
    }

    fn release(&mut self, id: NodeId) {
        self.running -= 1;
        for &g in &self.plan.nodes[id].groups {
            self.group_running[g] -= 1;
        }
    }

    /// The step's call, rendered from the outputs so far.
    fn call(&self, id: NodeId) -> StepCall {
        let node = &self.plan.nodes[id];
        let scope = Scope {
            plan: &self.plan,
            inputs: &self.inputs,
            outputs: &self.outputs,
        };
        let (prompt, args) = scope.render_call(node);
        let largest = match node.exec {
            PlanExec::Model { .. } => scope.largest_interp(node),
            _ => None,
        };
        StepCall {
            node: id,
            name: node.name.clone(),
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
    fn over_budget(&mut self, id: NodeId, call: &StepCall) -> Option<String> {
        let node = &self.plan.nodes[id];
        if !self.budgets.applies(node) {
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
        let price = self.prices.get(model)?;
        let scope = Scope {
            plan: &self.plan,
            inputs: &self.inputs,
            outputs: &self.outputs,
        };
        let system = system.as_ref().map(|t| scope.render(t)).unwrap_or_default();
        let input = estimate_tokens(&call.prompt) + estimate_tokens(&system);
        let worst = price.cost(input, u64::from(*max_tokens));
        self.budgets.admit(node, worst).err()
    }

    fn settle_not_run(
        &mut self,
        id: NodeId,
        status: StepStatus,
        at: Option<u64>,
        out: &mut Decisions,
    ) {
        let report = StepReport::not_run(&self.plan.nodes[id], status, at);
        out.settled.push(report.clone());
        self.settle(id, report);
    }

    /// As the local scheduler's `settle`.
    fn settle(&mut self, id: NodeId, report: StepReport) {
        let succeeded = report.status == StepStatus::Succeeded;
        self.state[id] = State::Done(report.status.clone());
        self.outputs[id] = report.output_value();
        // A reused step's cost was spent on this run (by the earlier execution): it counts.
        self.budgets.spend(&self.plan.nodes[id], report.cost_usd);
        if let StepStatus::Failed(e) = &report.status
            && !self.tolerated[id]
            && !self.keep_going
            && self.stopped.is_none()
        {
            self.stopped = Some(format!("step `{}` failed: {e}", report.name));
        }
        self.reports[id] = Some(report);
        for i in 0..self.dependents[id].len() {
            let d = self.dependents[id][i];
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.candidates.push_back(d);
            }
        }
        for i in 0..self.watched_by[id].len() {
            let (join, branch) = self.watched_by[id][i];
            let Some(j) = self.joins.get_mut(&join) else {
                continue;
            };
            if j.failed[branch] {
                continue;
            }
            if succeeded {
                j.pending[branch] -= 1;
                if j.pending[branch] == 0 {
                    j.succeeded_branches += 1;
                    j.settled_branches += 1;
                }
            } else {
                j.failed[branch] = true;
                j.settled_branches += 1;
            }
            if self.waiting_on[join] == 0 {
                self.candidates.push_back(join);
            }
        }
    }

    /// As the local scheduler's `cancel_rest_of_join`: a `gather <any|first N>` that starts
    /// cancels the rest of its block.
    fn cancel_rest_of_join(&mut self, id: NodeId, now_ms: u64, out: &mut Decisions) {
        let Some(join) = self.plan.nodes[id].join else {
            return;
        };
        if !matches!(join.policy, Policy::Any | Policy::First(_)) {
            return;
        }
        let members = self.plan.groups[join.group].members.clone();
        for m in members {
            match self.state[m] {
                State::Running => {
                    self.release(m);
                    out.cancel.push(m);
                }
                State::Asking(_) => out.cancel.push(m),
                State::Waiting => {}
                State::Done(_) => continue,
            }
            self.settle_not_run(m, StepStatus::Cancelled, Some(now_ms), out);
        }
    }

    /// The end of the run: every report in plan order, the output, the digests.
    pub fn into_outcome(self) -> Outcome {
        let mut required_ok = true;
        let mut steps = Vec::with_capacity(self.reports.len());
        let mut digests = Vec::new();
        let mut reused = Vec::new();
        for (i, report) in self.reports.into_iter().enumerate() {
            let node = &self.plan.nodes[i];
            let s = report.unwrap_or_else(|| {
                let why = StepStatus::Skipped("the run stopped".into());
                StepReport::not_run(node, why, None)
            });
            required_ok &= s.status == StepStatus::Succeeded || self.tolerated[i];
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
        let output = required_ok.then(|| {
            let scope = Scope {
                plan: &self.plan,
                inputs: &self.inputs,
                outputs: &self.outputs,
            };
            match &self.plan.output {
                Some(t) => scope.render(t),
                None => super::scheduler::final_outputs(
                    &self.plan,
                    &vec![true; self.plan.nodes.len()],
                    &self.outputs,
                ),
            }
        });
        Outcome {
            steps,
            output,
            succeeded: required_ok,
            stopped: self.stopped,
            reused,
            digests,
        }
    }
}

enum Ready {
    NotYet,
    Go,
    Skip(String),
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
        models: &IndexMap<String, ModelDef>,
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
        let Some(node) = self
            .plan
            .nodes
            .get(call.node)
            .filter(|n| n.name == call.name)
        else {
            return unknown_step(&call);
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
        assert!(Interp::supported(i.plan()).is_ok());
        let d = i.decide(0);
        assert_eq!(d.start.len(), 1);
        i.finish(d.start[0].node, ok(&i, &d.start[0]));
        let d = i.decide(5);
        assert!(d.start.is_empty() && d.answered.is_empty());
        assert_eq!(d.ask.len(), 1);
        let q = &d.ask[0];
        assert_eq!(
            (q.step.as_str(), q.question.as_str(), q.wait_ms),
            ("ok", "Deploy out: version?", None)
        );
        assert_eq!(i.asking(), [(q.node, "ok", 5)]);
        // Nothing else can start while the question waits, and it holds no permit.
        assert!(i.decide(6).start.is_empty());
        assert_eq!(i.running(), 0);
        let r = i.answer(q.node, by_person(true), 9).unwrap();
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
        assert!(i.answer(q.node, by_person(false), 10).is_none());
        let d = i.decide(10);
        assert_eq!(d.start.len(), 1);
        assert_eq!(d.start[0].prompt, "after true");
        i.finish(d.start[0].node, ok(&i, &d.start[0]));
        assert!(i.decide(11).start.is_empty());
        let out = i.into_outcome();
        assert!(out.succeeded);
        assert_eq!(out.output.as_deref(), Some("out: after true"));
    }

    #[test]
    fn a_declined_approval_succeeds_with_false_and_an_unanswered_one_fails() {
        let mut i = interp(&format!("{HEAD}{DEPLOY}"), None);
        let d = i.decide(0);
        i.finish(d.start[0].node, ok(&i, &d.start[0]));
        let q = i.decide(0).ask.remove(0);
        let r = i.answer(q.node, by_person(false), 3).unwrap();
        assert_eq!(r.status, StepStatus::Succeeded);
        assert_eq!(r.output.as_deref(), Some("false"));
        assert_eq!(i.decide(3).start[0].prompt, "after false");

        let timed = DEPLOY.replace("approve(", "approve<timeout 30m, deadline 1h>(");
        let mut i = interp(&format!("{HEAD}{timed}"), None);
        let d = i.decide(0);
        i.finish(d.start[0].node, ok(&i, &d.start[0]));
        let q = i.decide(0).ask.remove(0);
        assert_eq!(q.wait_ms, Some(30 * 60 * 1000), "the shorter of the two");
        let r = i
            .unanswered(q.node, "no answer within 30m".into(), 7)
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
        i.finish(d.start[0].node, ok(&i, &d.start[0]));
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
        assert!(i.answer(d.start[0].node, by_person(true), 1).is_none());
        assert!(i.answer(d.ask[1].node, by_person(true), 1).is_some());
        assert_eq!(i.asking().len(), 1);
    }
}
