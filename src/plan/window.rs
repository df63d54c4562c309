//! `W0804 context-window-exceeded`: a model step whose worst-case request is larger than the
//! context window of its model (or of its fallback).
//!
//! A request must hold its input and its `max_tokens` within the model's window (Anthropic's
//! Messages API refuses `prompt + max_tokens` over the window for current models: "Context
//! windows", docs.anthropic.com/en/docs/build-with-claude/context-windows). The worst-case
//! input is the plan's [`PlanNode::prompt_tokens`]: the literal text at 4 characters a token
//! plus each interpolated step output at its whole `max_tokens`; parameters count as zero,
//! so a large input is caught at run time instead (the run stage refuses a rendered prompt
//! that does not fit before sending it).

use std::collections::HashSet;

use super::render::thousands;
use super::{Plan, PlanExec, PlanNode, Ref};
use crate::check::Program;
use crate::diag::{Code, Diagnostic, Diagnostics, Span};

/// How many of the largest interpolated steps the warning points at.
const LARGEST: usize = 3;

/// Whether some model of `program` declares a `context_window`, which [`check_windows`]
/// checks.
pub(super) fn has_windows(program: &Program) -> bool {
    program
        .tables
        .models
        .values()
        .any(|m| m.context_window.is_some())
}

/// Warns for every model step of `plan` whose worst-case prompt plus `max_tokens` is over the
/// `context_window` of its model or fallback. `reported` holds the steps (by span) and models
/// already reported, so that a step of a workflow that others call is reported once.
pub(super) fn check_windows(
    program: &Program,
    plan: &Plan,
    reported: &mut HashSet<(Span, String)>,
    diags: &mut Diagnostics,
) {
    let models = &program.tables.models;
    for n in &plan.nodes {
        let PlanExec::Model {
            model,
            fallback,
            max_tokens,
            ..
        } = &n.exec
        else {
            continue;
        };
        for (i, m) in std::iter::once(model).chain(fallback).enumerate() {
            let Some(window) = models.get(m).and_then(|d| d.context_window) else {
                continue;
            };
            let need = n.prompt_tokens.saturating_add(u64::from(*max_tokens));
            if need > u64::from(window) && reported.insert((n.span, m.clone())) {
                diags.push(
                    WindowExceeded {
                        step: n,
                        model: m,
                        fallback: i > 0,
                        window,
                        max_tokens: *max_tokens,
                        largest: largest_inputs(plan, n),
                    }
                    .into(),
                );
            }
        }
    }
}

/// The steps whose outputs `n` interpolates, largest bound first: `(name, max_tokens, span)`.
fn largest_inputs(plan: &Plan, n: &PlanNode) -> Vec<(String, u32, Span)> {
    let mut ids: Vec<usize> = Vec::new();
    for i in n.prompt.iter().flat_map(|t| t.interps()) {
        match i.target {
            Ref::Node(m) | Ref::Member(m) => ids.push(m),
            Ref::Group(g) => ids.extend(&plan.groups[g].members),
            Ref::Param(_) | Ref::Arg(_) | Ref::Unbound => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut steps: Vec<(String, u32, Span)> = ids
        .into_iter()
        .filter_map(|id| {
            let s = &plan.nodes[id];
            match &s.exec {
                PlanExec::Model { max_tokens, .. } => Some((s.name.clone(), *max_tokens, s.span)),
                _ => None,
            }
        })
        .collect();
    steps.sort_by_key(|s| std::cmp::Reverse(s.1));
    steps.truncate(LARGEST);
    steps
}

/// `W0804`: step `step` on `model` (its fallback when `fallback`) may need more than the model's `window` tokens; `largest`
/// are the steps it interpolates with the largest bounds. Worded here only.
struct WindowExceeded<'p> {
    step: &'p PlanNode,
    model: &'p str,
    /// Whether `model` is the step's fallback.
    fallback: bool,
    window: u32,
    max_tokens: u32,
    largest: Vec<(String, u32, Span)>,
}

impl From<WindowExceeded<'_>> for Diagnostic {
    fn from(w: WindowExceeded<'_>) -> Self {
        let need = w.step.prompt_tokens.saturating_add(u64::from(w.max_tokens));
        let mut d = Diagnostic::new(
            Code::ContextWindowExceeded,
            w.step.span,
            format!(
                "step `{}` may need ~{} tokens (a prompt of up to ~{} and `max_tokens` {}), more than the {}-token context window of {}model `{}`",
                w.step.name,
                thousands(need),
                thousands(w.step.prompt_tokens),
                thousands(u64::from(w.max_tokens)),
                thousands(u64::from(w.window)),
                if w.fallback { "its fallback " } else { "" },
                w.model
            ),
        )
        .with_label(format!("over {} tokens", thousands(u64::from(w.window))));
        for (name, bound, span) in w.largest {
            d = d.with_secondary(
                span,
                format!("`{name}` may answer {} tokens", thousands(u64::from(bound))),
            );
        }
        d.with_help(
            "the prompt counts each step output it interpolates at its whole `max_tokens`; \
             lower those `max_tokens` (or this step's), interpolate fewer outputs, or use a \
             model with a larger `context_window`. At run time a prompt that does not fit is \
             refused before it is sent.",
        )
    }
}
