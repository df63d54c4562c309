//! `ok = approve("Deploy {version}?")`: the built-in step that asks a person to approve
//! (docs/language.md, "Human approval").
//!
//! `approve` is built in only where no agent of that name is declared: a script's own agent
//! `approve` wins, so scripts written before the built-in keep their meaning. An approval
//! takes one positional argument, the question (a template), and nothing else: no named
//! arguments (E0211), no model, `retry` or `fallback` (E0502: a person answers once; there is
//! no model). Its own `timeout` and `deadline` bound the wait for the answer; a block's
//! options, written for the model steps in it, do not reach it. Its output is a `bool`.

use indexmap::IndexMap;

use super::{Lowerer, NodeId};
use crate::check::error::{InvalidArguments, InvalidOption, TypeMismatch};
use crate::check::types::Type;
use crate::diag::Span;
use crate::syntax::ast::{self, OptKind, Path, Template, TemplatePart, ValueKind};
use crate::syntax::print::value_text;

/// The built-in's name.
pub const APPROVE: &str = "approve";

/// Whether a callee is the built-in (the caller has checked that no agent has its name).
pub(super) fn is_approve(callee: &Path) -> bool {
    callee.fields.is_empty() && callee.root.name == APPROVE
}

/// An argument's value as a template: a string as written, a bare name as `{name}`, a literal
/// as its text.
fn template_of(v: &ast::Value) -> Template {
    match &v.kind {
        ValueKind::Str(t) => t.clone(),
        ValueKind::Path(p) => Template {
            parts: vec![TemplatePart::Interp(p.clone())],
        },
        other => Template {
            parts: vec![TemplatePart::Text(value_text(&ast::Value {
                kind: other.clone(),
                span: v.span,
            }))],
        },
    }
}

impl Lowerer<'_> {
    /// The question of an approval step (its prompt), checking that it is the only argument.
    pub(super) fn approval_arguments(
        &mut self,
        s: &ast::Step,
    ) -> (
        Option<Template>,
        IndexMap<String, Template>,
        IndexMap<String, Span>,
    ) {
        let mut question = None;
        let positional = s.args.iter().filter(|a| a.name.is_none()).count();
        for a in &s.args {
            match &a.name {
                None if question.is_none() => question = Some(template_of(&a.value)),
                None => self
                    .diags
                    .push(InvalidArguments::SecondQuestion { at: a.value.span }.into()),
                Some(n) => {
                    self.diags.push(
                        InvalidArguments::ApproveByName {
                            at: n.span,
                            name: n.name.clone(),
                            only: positional == 0 && s.args.len() == 1,
                        }
                        .into(),
                    );
                }
            }
        }
        if s.args.is_empty() {
            self.diags.push(
                InvalidArguments::NoQuestion {
                    at: s.callee.span,
                    step: s.name.name.clone(),
                }
                .into(),
            );
        }
        (question, IndexMap::new(), IndexMap::new())
    }

    /// Completes approval step `id` (written as `s`): a person answers once, so no retries;
    /// only the call's own `timeout` and `deadline` bound the wait; the output is a `bool`.
    /// Reports the options an approval cannot take and a `-> T` other than `bool`.
    pub(super) fn approval_step(&mut self, id: NodeId, s: &ast::Step) {
        let mut reported: Vec<&'static str> = Vec::new();
        for o in &s.options {
            let error = match &o.kind {
                OptKind::Model(m) => InvalidOption::ModelOnApprove {
                    at: o.span,
                    model: m.name.clone(),
                },
                OptKind::Retry(_) => InvalidOption::RetryOnApprove { at: o.span },
                OptKind::Fallback(_) => InvalidOption::FallbackOnApprove { at: o.span },
                // `timeout` and `deadline` bound the wait; `max` and `budget` are reported
                // as not options of a step already.
                _ => continue,
            };
            let kw = o.kind.keyword();
            if reported.contains(&kw) {
                continue; // given twice: reported as such already
            }
            reported.push(kw);
            self.diags.push(error.into());
        }
        let declared = self.g.nodes[id].output_type.clone();
        if let (Some(t), Some(out)) = (&declared, &s.output)
            && !matches!(t, Type::Bool | Type::Json)
        {
            // `json` is what an unknown type resolves to (reported already).
            self.diags.push(
                TypeMismatch::ApprovalOutput {
                    at: out.span,
                    ty: t.clone(),
                    step: s.name.name.clone(),
                }
                .into(),
            );
        }
        let timeout = s.options.iter().find_map(|o| match o.kind {
            OptKind::Timeout(ms) => Some(ms),
            _ => None,
        });
        let deadline = s.options.iter().find_map(|o| match o.kind {
            OptKind::Deadline(ms) => Some(ms),
            _ => None,
        });
        let n = &mut self.g.nodes[id];
        n.retry = 0;
        n.timeout_ms = timeout;
        n.deadline_ms = deadline;
        n.output_type = Some(Type::Bool);
    }
}
