//! Types of parameters and values.

use serde::Serialize;

use crate::diag::Diagnostics;
use crate::diag::suggest::did_you_mean;
use crate::syntax::ast::{TypeExpr, TypeKind};

/// A type of the language.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "of")]
pub enum Type {
    /// Text (the default).
    Text,
    /// A number.
    Number,
    /// `true` / `false`.
    Bool,
    /// Any JSON value; field access is not checked.
    Json,
    /// `list<T>`.
    List(Box<Type>),
    /// `{ field: T, ... }`.
    Record(Vec<(String, Type)>),
    /// An agent (a parameter of a reusable pattern, filled with an agent's name at a call).
    Agent,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Type::Text => f.write_str("text"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::Json => f.write_str("json"),
            Type::Agent => f.write_str("agent"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Record(fields) => {
                f.write_str("{ ")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {t}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

impl Type {
    /// The type of field `name`, if this type has fields: `Some(None)` means "has fields but not
    /// this one", `None` means "has no fields at all".
    pub fn field(&self, name: &str) -> Option<Option<Type>> {
        match self {
            Type::Json => Some(Some(Type::Json)),
            Type::Record(fields) => Some(
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, t)| t.clone()),
            ),
            _ => None,
        }
    }
}

const TYPE_NAMES: &[&str] = &["text", "number", "bool", "json", "list", "agent", OUTCOME];

/// The name of the type of a command's outcome: `-> outcome` on a command step.
pub const OUTCOME: &str = "outcome";

impl Type {
    /// How a command exited (docs/language.md, "A command's outcome as a value"):
    /// `{ ok: bool, exit_code: number, stdout: text, stderr: text }`; `ok` is an exit code of 0.
    pub fn outcome() -> Type {
        Type::Record(vec![
            ("ok".into(), Type::Bool),
            ("exit_code".into(), Type::Number),
            ("stdout".into(), Type::Text),
            ("stderr".into(), Type::Text),
        ])
    }
}

/// Whether a written type is `outcome`.
pub fn is_outcome(t: &TypeExpr) -> bool {
    matches!(&t.kind, TypeKind::Named(id) if id.name == OUTCOME)
}

/// Resolves a written type, reporting unknown names.
pub fn resolve_type(t: &TypeExpr, diags: &mut Diagnostics) -> Type {
    match &t.kind {
        TypeKind::Named(id) => match id.name.as_str() {
            "text" => Type::Text,
            "number" => Type::Number,
            "bool" => Type::Bool,
            "json" => Type::Json,
            "agent" => Type::Agent,
            OUTCOME => Type::outcome(),
            other => {
                let synonym = match other {
                    "string" | "str" | "String" => Some("text"),
                    "int" | "integer" | "float" | "double" | "i64" | "f64" => Some("number"),
                    "boolean" => Some("bool"),
                    "object" | "map" | "any" => Some("json"),
                    "array" | "vec" | "Vec" => Some("list<T>"),
                    _ => None,
                };
                diags.push(
                    super::error::UnknownType {
                        at: id.span,
                        name: other.to_string(),
                        suggestion: synonym
                            .or_else(|| did_you_mean(other, TYPE_NAMES.iter().copied())),
                    }
                    .into(),
                );
                Type::Json
            }
        },
        TypeKind::List(inner) => Type::List(Box::new(resolve_type(inner, diags))),
        TypeKind::Record(fields) => Type::Record(
            fields
                .iter()
                .map(|(k, t)| (k.name.clone(), resolve_type(t, diags)))
                .collect(),
        ),
    }
}
