//! Budgets: `<budget $X>` on a workflow and on `parallel` blocks, enforced while the run goes.
//!
//! Every budget is a scope: the workflow's covers every step, a block's covers the steps
//! inside it (nested blocks included), so a step counts against every enclosing budget.
//! Before a model step starts, the cost of one attempt at its worst (its rendered system text
//! and prompt at 4 characters per token, plus its `max_tokens` out, at its model's price) is
//! checked against each scope: what the scope has spent (real usage, as the providers report
//! it) plus what its steps in flight hold plus this worst case must not exceed the limit. A
//! step that passes holds its worst case in every scope until it ends; then the hold is
//! replaced by what it really cost. So steps started together cannot overrun a budget between
//! them. Retries and a fallback are paid from real usage as they happen and are not held in
//! advance. Command steps cost nothing.
//!
//! An agent loop (`super::agent`) counts as it goes: after each model turn the step's hold
//! becomes what it has really cost so far (its delegations' nested steps included), and
//! before each later turn, and each turn of a nested step, that turn's worst case is held
//! under a key of its own ([`Budgets::try_hold`]); a turn that does not fit stops the loop.

use crate::common::FastMap;

use crate::plan::render::usd;
use crate::plan::{Plan, PlanNode};

/// One budget: a limit and what counts against it, in USD.
#[derive(Debug, Clone)]
struct Scope {
    /// For messages: `budget` or `budget of block `x``.
    label: String,
    limit: f64,
    spent: f64,
    held: f64,
}

/// The run's budgets and what counts against them.
#[derive(Debug, Clone)]
pub(super) struct Budgets {
    /// The workflow's budget.
    workflow: Option<Scope>,
    /// Each block's budget, by group id.
    groups: Vec<Option<Scope>>,
    /// The worst case each step in flight holds, in USD, by step name (unique per instance
    /// of a region's body: `post[2]`).
    holds: FastMap<String, f64>,
}

impl Budgets {
    /// The budgets of a plan, nothing spent.
    pub(super) fn new(plan: &Plan) -> Self {
        let scope = |label: String, limit: f64| Scope {
            label,
            limit,
            spent: 0.0,
            held: 0.0,
        };
        Budgets {
            workflow: plan.budget_usd.map(|b| scope("budget".into(), b)),
            groups: plan
                .groups
                .iter()
                .map(|g| {
                    g.budget_usd.map(|b| {
                        let label = match &g.name {
                            Some(n) => format!("budget of block `{n}`"),
                            None => format!(
                                "budget of the block of {}",
                                g.members
                                    .iter()
                                    .map(|&m| format!("`{}`", plan.nodes[m].name))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        scope(label, b)
                    })
                })
                .collect(),
            holds: FastMap::default(),
        }
    }

    /// Whether any budget applies to `node`.
    pub(super) fn applies(&self, node: &PlanNode) -> bool {
        self.workflow.is_some() || node.groups.iter().any(|&g| self.groups[g].is_some())
    }

    fn scopes_mut<'s>(&'s mut self, node: &PlanNode) -> impl Iterator<Item = &'s mut Scope> {
        let groups = &node.groups;
        let Budgets {
            workflow,
            groups: scopes,
            ..
        } = self;
        workflow.iter_mut().chain(
            scopes
                .iter_mut()
                .enumerate()
                .filter(move |(g, _)| groups.contains(g))
                .filter_map(|(_, s)| s.as_mut()),
        )
    }

    /// Lets `node` start if `worst_usd` fits in every enclosing budget, and holds it there;
    /// otherwise says which budget it would overrun, with what was spent and held. Outermost
    /// budget first.
    pub(super) fn admit(&mut self, node: &PlanNode, worst_usd: f64) -> Result<(), String> {
        let refusal = self
            .scopes_mut(node)
            .find(|s| s.spent + s.held + worst_usd > s.limit)
            .map(|s| {
                let held = if s.held > 0.0 {
                    format!(" and {} held by steps in flight", usd(s.held))
                } else {
                    String::new()
                };
                format!(
                    "{}: {} spent of {}{held}; `{}` could cost up to {}, so it was not started",
                    s.label,
                    usd(s.spent),
                    usd(s.limit),
                    node.name,
                    usd(worst_usd)
                )
            });
        if let Some(r) = refusal {
            return Err(r);
        }
        for s in self.scopes_mut(node) {
            s.held += worst_usd;
        }
        self.holds.insert(node.name.clone(), worst_usd);
        Ok(())
    }

    /// Holds `usd` under `key` in every budget enclosing `node` (replacing what `key` held),
    /// if it fits; otherwise says which budget it would overrun, for turn `turn` of `step`.
    /// Outermost budget first.
    pub(super) fn try_hold(
        &mut self,
        node: &PlanNode,
        key: &str,
        usd_now: f64,
        what: &str,
    ) -> Result<(), String> {
        let old = self.holds.get(key).copied().unwrap_or(0.0);
        let refusal = self
            .scopes_mut(node)
            .find(|s| s.spent + s.held - old + usd_now > s.limit)
            .map(|s| {
                let others = (s.held - old).max(0.0);
                let held = if others > 0.0 {
                    format!(" and {} held by steps in flight", usd(others))
                } else {
                    String::new()
                };
                format!(
                    "{}: {} spent of {}{held}; {what} could cost up to {}, so the agent loop was stopped",
                    s.label,
                    usd(s.spent),
                    usd(s.limit),
                    usd(usd_now)
                )
            });
        if let Some(r) = refusal {
            return Err(r);
        }
        self.set_hold(node, key, usd_now);
        Ok(())
    }

    /// Holds `usd` under `key` in every budget enclosing `node`, whatever the limits say
    /// (money already spent is held, not asked for); `0` releases the key.
    pub(super) fn set_hold(&mut self, node: &PlanNode, key: &str, usd_now: f64) {
        let old = self.holds.get(key).copied().unwrap_or(0.0);
        for s in self.scopes_mut(node) {
            s.held = (s.held - old + usd_now).max(0.0);
        }
        if usd_now > 0.0 {
            self.holds.insert(key.to_string(), usd_now);
        } else {
            self.holds.remove(key);
        }
    }

    /// `node` ended having cost `cost_usd` (a reused step costs what it cost when it ran):
    /// releases its hold and counts the cost against every enclosing budget.
    pub(super) fn spend(&mut self, node: &PlanNode, cost_usd: f64) {
        let held = self.holds.remove(&node.name).unwrap_or(0.0);
        for s in self.scopes_mut(node) {
            s.held = (s.held - held).max(0.0);
            s.spent += cost_usd;
        }
    }
}
