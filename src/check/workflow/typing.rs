//! Types of values passed around a workflow: named arguments against the agent's parameter
//! types, and the `return` value against the workflow's declared result type (`E0212`).
//!
//! A step's output is text (structured outputs are not supported yet), a parameter has its
//! declared type, `{block}` renders every branch as text, and a literal is checked by parsing
//! it as the expected type. `text` and `json` accept anything: both are rendered as text when
//! interpolated.

use super::{Binding, Exec, Lowerer};
use crate::check::error::TypeMismatch;
use crate::check::items::value_template;
use crate::check::types::{Type, resolve_type};
use crate::syntax::ast::{self, Template, TemplatePart};

/// What a template evaluates to, as far as the checker can tell.
enum ValueType {
    /// A value of a known type, with a phrase saying where it comes from.
    Typed(Type, String),
    /// A literal written in the script (its text).
    Literal(String),
}

impl Lowerer<'_> {
    /// Checks every recorded named argument against its parameter's type.
    pub(super) fn check_arg_types(&mut self) {
        for (node, param, span) in std::mem::take(&mut self.arg_checks) {
            let n = &self.g.nodes[node];
            let Some(agent) = self.tables.agents.get(&n.agent) else {
                continue;
            };
            let Some(p) = agent.params.iter().find(|p| p.name == param) else {
                continue;
            };
            let Some(t) = n.args.get(&param) else {
                continue;
            };
            let value = self.template_type(t);
            if let Some(found) = mismatch(&p.ty, &value) {
                self.diags.push(
                    TypeMismatch::Argument {
                        at: span,
                        param: param.clone(),
                        agent: agent.name.clone(),
                        ty: p.ty.clone(),
                        found,
                        declared: p.span,
                    }
                    .into(),
                );
            }
        }
    }

    /// Checks every value argument of a workflow call against its parameter's type. A list
    /// literal is checked item by item against the list's item type.
    pub(super) fn check_call_arg_types(&mut self) {
        for c in std::mem::take(&mut self.call_arg_checks) {
            let Some(found) = self.value_mismatch(&c.ty, &c.value) else {
                continue;
            };
            self.diags.push(
                TypeMismatch::WorkflowArgument {
                    at: c.value.span,
                    param: c.param,
                    workflow: c.workflow,
                    ty: c.ty,
                    found,
                    declared: c.declared,
                }
                .into(),
            );
        }
    }

    /// `Some(what was found)` when value `v` written in the script cannot be `expected`.
    fn value_mismatch(&self, expected: &Type, v: &ast::Value) -> Option<String> {
        match (&v.kind, expected) {
            (_, Type::Text | Type::Json) => None,
            (ast::ValueKind::List(items), Type::List(item)) => {
                items.iter().enumerate().find_map(|(k, i)| {
                    let found = self.value_mismatch(item, i)?;
                    Some(format!("in item {}, {found}", k + 1))
                })
            }
            (ast::ValueKind::List(_), _) => Some("this is a list".into()),
            _ => mismatch(expected, &self.template_type(&value_template(v))),
        }
    }

    /// Resolves the declared result type (`workflow w() -> T`) and checks the `return` value
    /// against it.
    pub(super) fn check_return_type(&mut self, wf: &ast::Workflow) {
        let Some(ret) = &wf.ret else {
            return;
        };
        let ty = resolve_type(ret, self.diags);
        let Some(out) = self.g.output.clone() else {
            if !matches!(ty, Type::Text | Type::Json) {
                self.diags.push(
                    TypeMismatch::NoReturn {
                        at: ret.span,
                        workflow: self.g.name.clone(),
                        ty,
                    }
                    .into(),
                );
            }
            return;
        };
        let value = self.template_type(&out);
        if let Some(found) = mismatch(&ty, &value) {
            let span = out.interps().next().map(|p| p.span).unwrap_or(self.g.span);
            self.diags.push(
                TypeMismatch::Return {
                    at: span,
                    workflow: self.g.name.clone(),
                    ty: ty.clone(),
                    found,
                    declared: ret.span,
                }
                .into(),
            );
        }
    }

    /// The type of a template: one interpolation has the type of what it names; one literal
    /// is checked by parsing; anything else is text.
    fn template_type(&self, t: &Template) -> ValueType {
        match t.parts.as_slice() {
            [TemplatePart::Interp(p)] => self.path_type(p),
            [TemplatePart::Text(s)] => ValueType::Literal(s.clone()),
            [] => ValueType::Literal(String::new()),
            _ => ValueType::Typed(Type::Text, "this text interpolates values".into()),
        }
    }

    fn path_type(&self, p: &ast::Path) -> ValueType {
        let name = &p.root.name;
        match self.g.bindings.get(name) {
            Some(Binding::Param(i)) => {
                let mut ty = self.g.params[*i].ty.clone();
                for f in &p.fields {
                    match ty.field(&f.name) {
                        Some(Some(t)) => ty = t,
                        // A bad field is reported as E0210 already; don't pile on.
                        _ => return ValueType::Typed(Type::Json, String::new()),
                    }
                }
                let what = format!("`{}` is {ty}", p.dotted());
                ValueType::Typed(ty, what)
            }
            // An approval answers with a bool.
            Some(Binding::Node(n))
                if matches!(self.g.nodes[*n].exec, Exec::Approval) && p.fields.is_empty() =>
            {
                ValueType::Typed(
                    Type::Bool,
                    format!("`{name}` is the bool answer of approval `{name}`"),
                )
            }
            Some(Binding::Node(_)) => match self.path_value_type(p) {
                Some(Type::Text) => ValueType::Typed(
                    Type::Text,
                    format!("`{}` is the text output of step `{name}`", p.dotted()),
                ),
                Some(ty) => {
                    let what = format!("`{}` is {ty}", p.dotted());
                    ValueType::Typed(ty, what)
                }
                None => ValueType::Typed(Type::Json, String::new()),
            },
            Some(Binding::Group(_)) => ValueType::Typed(
                Type::Text,
                format!("`{}` is the text of a `parallel` block", p.dotted()),
            ),
            // Undefined names are reported as E0201 already.
            None => ValueType::Typed(Type::Json, String::new()),
        }
    }
}

/// `Some(what was found)` when `value` cannot be used where `expected` is.
fn mismatch(expected: &Type, value: &ValueType) -> Option<String> {
    match (expected, value) {
        (Type::Text | Type::Json, _) => None,
        (_, ValueType::Typed(Type::Json, _)) => None,
        (_, ValueType::Typed(found, what)) => (!compatible(expected, found)).then(|| {
            if what.is_empty() {
                format!("this is {found}")
            } else {
                what.clone()
            }
        }),
        (_, ValueType::Literal(text)) => {
            (!literal_fits(expected, text)).then(|| format!("`{}` is not {expected}", text.trim()))
        }
    }
}

fn compatible(expected: &Type, found: &Type) -> bool {
    match (expected, found) {
        (Type::Text | Type::Json, _) | (_, Type::Json) => true,
        (Type::List(a), Type::List(b)) => compatible(a, b),
        (Type::Record(a), Type::Record(b)) => a.iter().all(|(k, ta)| {
            b.iter()
                .find(|(kb, _)| kb == k)
                .is_some_and(|(_, tb)| compatible(ta, tb))
        }),
        (a, b) => a == b,
    }
}

/// Whether a literal's text parses as a value of `expected`.
fn literal_fits(expected: &Type, text: &str) -> bool {
    let text = text.trim();
    match expected {
        Type::Text | Type::Json => true,
        Type::Agent => false,
        Type::Number => text.parse::<f64>().is_ok_and(f64::is_finite),
        Type::Bool => matches!(text, "true" | "false"),
        Type::List(_) => matches!(
            serde_json::from_str::<serde_json::Value>(text),
            Ok(serde_json::Value::Array(_))
        ),
        Type::Record(_) => matches!(
            serde_json::from_str::<serde_json::Value>(text),
            Ok(serde_json::Value::Object(_))
        ),
    }
}
