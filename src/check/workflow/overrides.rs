//! `W0405 block-option-overridden`: a `retry`, `timeout`, `deadline` or `fallback` set on a block (or the
//! workflow) that an agent's own field overrides for one of its steps.
//!
//! Options resolve like models: the call site, then the agent's field, then the innermost
//! block. A block option reads as "every step here gets this", so a step that silently gets
//! something else is worth a word; models have their own lint (`W0402`).

use super::{Lowerer, Scope};
use crate::check::AgentDef;
use crate::check::error::BlockOptionOverridden;
use crate::common::format_duration;
use crate::diag::Span;
use crate::syntax::ast;

/// One option as the block and the agent set it.
struct Clash {
    keyword: &'static str,
    block: String,
    agent: String,
    block_span: Span,
}

impl Lowerer<'_> {
    /// Warns for each block option of `scope` that the called agent's field overrides at `s`.
    pub(super) fn check_block_overrides(&mut self, s: &ast::Step, scope: &Scope) {
        let Some(agent) = self
            .tables
            .agents
            .get(&s.callee.root.name)
            .filter(|_| s.callee.fields.is_empty())
        else {
            return;
        };
        for clash in clashes(s, agent, scope) {
            let field_span = agent
                .field_spans
                .get(clash.keyword)
                .copied()
                .unwrap_or(agent.name_span);
            self.diags.push(
                BlockOptionOverridden {
                    at: s.callee.span,
                    agent: agent.name.clone(),
                    keyword: clash.keyword,
                    own: clash.agent,
                    field: field_span,
                    block: clash.block,
                    block_at: clash.block_span,
                }
                .into(),
            );
        }
    }
}

/// The block options that `agent`'s fields override at step `s` (unless the call sets them).
fn clashes(s: &ast::Step, agent: &AgentDef, scope: &Scope) -> Vec<Clash> {
    let at_call = |kw: &str| s.options.iter().any(|o| o.kind.keyword() == kw);
    let mut out = Vec::new();
    if let (Some(b), Some(a), Some(span)) = (scope.retry, agent.retry, scope.retry_span)
        && a != b
        && !at_call("retry")
    {
        out.push(Clash {
            keyword: "retry",
            block: b.to_string(),
            agent: a.to_string(),
            block_span: span,
        });
    }
    if let (Some(b), Some(a), Some(span)) = (scope.timeout_ms, agent.timeout_ms, scope.timeout_span)
        && a != b
        && !at_call("timeout")
    {
        out.push(Clash {
            keyword: "timeout",
            block: format_duration(b),
            agent: format_duration(a),
            block_span: span,
        });
    }
    if let (Some(b), Some(a), Some(span)) =
        (scope.deadline_ms, agent.deadline_ms, scope.deadline_span)
        && a != b
        && !at_call("deadline")
    {
        out.push(Clash {
            keyword: "deadline",
            block: format_duration(b),
            agent: format_duration(a),
            block_span: span,
        });
    }
    if let crate::check::AgentKind::Model {
        fallback: Some(a), ..
    } = &agent.kind
        && let (Some(b), Some(span)) = (&scope.fallback, scope.fallback_span)
        && a.name != b.name
        && !at_call("fallback")
    {
        out.push(Clash {
            keyword: "fallback",
            block: b.name.clone(),
            agent: a.name.clone(),
            block_span: span,
        });
    }
    out
}
