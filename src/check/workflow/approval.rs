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
use crate::check::types::Type;
use crate::diag::{Code, Diagnostic, Span};
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
                None => self.diags.push(
                    Diagnostic::new(
                        Code::InvalidArguments,
                        a.value.span,
                        "`approve` asks one question; this is a second one",
                    )
                    .with_label("extra argument")
                    .with_help("join the texts into one question: `approve(\"Deploy {version}? {notes}\")`"),
                ),
                Some(n) => {
                    let help = if positional == 0 && s.args.len() == 1 {
                        "pass the question without a name: `approve(\"...\")`".to_string()
                    } else {
                        "`approve` takes nothing but its question; put what the person needs to know in it: `approve(\"Deploy {version}? Notes: {notes}\")`".to_string()
                    };
                    self.diags.push(
                        Diagnostic::new(
                            Code::InvalidArguments,
                            n.span,
                            format!("`approve` has no parameter `{}`", n.name),
                        )
                        .with_label("named arguments are for agents' parameters")
                        .with_help(help),
                    );
                }
            }
        }
        if s.args.is_empty() {
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidArguments,
                    s.callee.span,
                    format!("step `{}` asks `approve` no question", s.name.name),
                )
                .with_label("no question")
                .with_help(
                    "say what the person approves: `approve(\"Deploy {version} to production?\")`",
                ),
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
            let (message, label, help) = match &o.kind {
                OptKind::Model(m) => (
                    "`approve` asks a person; it takes no model".to_string(),
                    format!("model `{}` given here", m.name),
                    format!("remove `{}`: no model is called, the step waits for a person's yes or no", m.name),
                ),
                OptKind::Retry(_) => (
                    "`approve` asks once; it takes no `retry`".to_string(),
                    "`retry` given here".to_string(),
                    "remove `retry`; to bound the wait for an answer, use `timeout` or `deadline`: `approve<timeout 30m>(\"...\")`".to_string(),
                ),
                OptKind::Fallback(_) => (
                    "`approve` has no model to fall back from".to_string(),
                    "`fallback` given here".to_string(),
                    "remove `fallback`; a person answers an approval".to_string(),
                ),
                // `timeout` and `deadline` bound the wait; `max` and `budget` are reported
                // as not options of a step already.
                _ => continue,
            };
            let kw = o.kind.keyword();
            if reported.contains(&kw) {
                continue; // given twice: reported as such already
            }
            reported.push(kw);
            self.diags.push(
                Diagnostic::new(Code::InvalidOption, o.span, message)
                    .with_label(label)
                    .with_help(help),
            );
        }
        let declared = self.g.nodes[id].output_type.clone();
        if let (Some(t), Some(out)) = (&declared, &s.output)
            && !matches!(t, Type::Bool | Type::Json)
        {
            // `json` is what an unknown type resolves to (reported already).
            self.diags.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    out.span,
                    format!("`approve` answers with a bool, not {t}"),
                )
                .with_label(format!("declared {t}"))
                .with_help(format!(
                    "remove `-> {t}`: the output of `{}` is `true` (approved) or `false` (declined)",
                    s.name.name
                )),
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
