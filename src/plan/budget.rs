//! `W0803 budget-exceeded`: a workflow or `parallel` block whose worst-case cost is over its
//! `budget`.
//!
//! The worst case is the plan's: every step's prompt estimate plus its whole `max_tokens`, on
//! every attempt (retries), then on its fallback, priced by the model. A run stops before a
//! step that could overrun what is left of the budget, so a script that warns here may stop
//! early; the warning says so before any money is spent.

use super::{Plan, PlanGroup};
use crate::check::workflow::WorkflowGraph;
use crate::diag::{Code, Diagnostic, Diagnostics};

use super::render::usd;

/// How many of the most expensive steps the warning points at.
const COSTLIEST: usize = 3;

/// Whether workflow `wf` or one of its blocks has a `budget`, which [`check_budgets`] checks.
pub(super) fn has_budgets(wf: &WorkflowGraph) -> bool {
    wf.budget.is_some() || wf.groups.iter().any(|g| g.budget.is_some())
}

/// Warns when the worst-case cost of workflow `wf` (planned as `plan`), or of one of its
/// `parallel` blocks, exceeds its `budget`.
pub(super) fn check_budgets(wf: &WorkflowGraph, plan: &Plan, diags: &mut Diagnostics) {
    for g in &plan.groups {
        if let Some(budget) = g.budget_usd {
            check_block(plan, g, budget, wf.groups[g.id].span, diags);
        }
    }
    let (Some(budget), Some(span)) = (wf.budget, wf.budget_span) else {
        return;
    };
    let worst = plan.worst_case.cost_usd;
    if worst > budget {
        diags.push(
            BudgetExceeded {
                at: span,
                what: format!("workflow `{}`", wf.name),
                worst,
                budget,
                costliest: costliest(plan, None),
                block: false,
            }
            .into(),
        );
    }
}

/// Warns when the steps of one `parallel <budget $X>` block may cost more than `budget`.
fn check_block(
    plan: &Plan,
    g: &PlanGroup,
    budget: f64,
    span: crate::diag::Span,
    diags: &mut Diagnostics,
) {
    let worst: f64 = g
        .members
        .iter()
        .map(|&m| plan.nodes[m].worst_case.cost_usd)
        .sum();
    if worst <= budget {
        return;
    }
    let what = g
        .name
        .as_ref()
        .map_or("this `parallel` block".to_string(), |n| {
            format!("block `{n}`")
        });
    diags.push(
        BudgetExceeded {
            at: span,
            what,
            worst,
            budget,
            costliest: costliest(plan, Some(&g.members)),
            block: true,
        }
        .into(),
    );
}

/// `W0803`: the worst case of `what` (a workflow, or a `parallel` block when `block`) is
/// `worst` USD, over its `budget`; `costliest` are its costliest steps. Worded here only.
struct BudgetExceeded {
    at: crate::diag::Span,
    what: String,
    worst: f64,
    budget: f64,
    costliest: Vec<(String, f64, crate::diag::Span)>,
    block: bool,
}

impl From<BudgetExceeded> for Diagnostic {
    fn from(b: BudgetExceeded) -> Self {
        let mut d = Diagnostic::new(
            Code::BudgetExceeded,
            b.at,
            format!(
                "the worst case of {} is {}, over its budget of {}",
                b.what,
                usd(b.worst),
                usd(b.budget)
            ),
        )
        .with_label(format!("budget {}", usd(b.budget)));
        for (name, cost, step_span) in b.costliest {
            d = d.with_secondary(step_span, format!("`{name}` may cost {}", usd(cost)));
        }
        d.with_help(if b.block {
            "the worst case counts each step's whole `max_tokens` on every attempt and fallback; \
             lower `max_tokens` or `retry`, use a cheaper model for the costliest steps, or raise \
             the block's budget. The run does not start a step that could overrun it."
        } else {
            "the worst case counts each step's whole `max_tokens` on every attempt and fallback; \
             lower `max_tokens` or `retry`, use a cheaper model for the costliest steps, or raise \
             the budget (`orch plan` shows the cost of each step). The run stops before a step \
             that could overrun the budget."
        })
    }
}

/// The most expensive steps (of `among`, or of the whole plan), costliest first, for labels.
fn costliest(plan: &Plan, among: Option<&[usize]>) -> Vec<(String, f64, crate::diag::Span)> {
    let mut steps: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| among.is_none_or(|m| m.contains(&n.id)))
        .filter(|n| n.worst_case.cost_usd > 0.0)
        .map(|n| (n.name.clone(), n.worst_case.cost_usd, n.span))
        .collect();
    steps.sort_by(|a, b| b.1.total_cmp(&a.1));
    steps.truncate(COSTLIEST);
    steps
}
