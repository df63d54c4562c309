//! The AST back as source text, for messages and the plan: a template, a literal value and a
//! condition as they would be written. (The whole file's canonical layout is the formatter's,
//! in the `fmt` module.)

use super::ast::{Cond, CondKind, Template, TemplatePart, Value, ValueKind};

/// A template as source text: literal text with `{path}` placeholders and braces doubled.
pub fn template_source(t: &Template) -> String {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Text(s) => {
                // Copied a run at a time: most text holds no brace (a copy per character was
                // 2.5% of `orch check`'s instructions on a 10,000-step script).
                out.reserve(s.len());
                let mut rest = s.as_str();
                while let Some(i) = memchr::memchr2(b'{', b'}', rest.as_bytes()) {
                    out.push_str(&rest[..=i]);
                    out.push_str(&rest[i..=i]);
                    rest = &rest[i + 1..];
                }
                out.push_str(rest);
            }
            TemplatePart::Interp(p) => {
                out.push('{');
                out.push_str(&p.root.name);
                for f in &p.fields {
                    out.push('.');
                    out.push_str(&f.name);
                }
                out.push('}');
            }
        }
    }
    out
}

/// The text a literal value stands for when it is used as text (defaults, arguments): a
/// string's text with `{path}` for its interpolations (braces not doubled), numbers and
/// booleans as written, `500ms` for a duration, `$2.00` for money, a list or a record as
/// JSON of its items' texts, a name as its dotted path.
pub fn value_text(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str(t) => t
            .parts
            .iter()
            .map(|p| match p {
                TemplatePart::Text(s) => s.clone(),
                TemplatePart::Interp(p) => format!("{{{}}}", p.dotted()),
            })
            .collect(),
        ValueKind::Int(n) => n.to_string(),
        ValueKind::Decimal(x) => x.to_string(),
        ValueKind::Duration(ms) => format!("{ms}ms"),
        ValueKind::Money(x) => format!("${x:.2}"),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::List(items) => {
            serde_json::to_string(&items.iter().map(value_text).collect::<Vec<_>>())
                .unwrap_or_default()
        }
        ValueKind::Record(fields) => {
            let map: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|f| {
                    (
                        f.key.name.clone(),
                        serde_json::Value::String(value_text(&f.value)),
                    )
                })
                .collect();
            serde_json::Value::Object(map).to_string()
        }
        ValueKind::Path(p) => p.dotted(),
        ValueKind::Call { name, args } => format!(
            "{}({})",
            name.name,
            args.iter()
                .map(|a| match &a.kind {
                    ValueKind::Str(t) => format!("\"{}\"", template_source(t)),
                    _ => value_text(a),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ValueKind::Wildcard(server) => format!("{}.*", server.name),
    }
}

/// A condition as source text, with the parentheses its precedence needs (for the plan).
pub fn cond_source(c: &Cond) -> String {
    fn operand(v: &Value) -> String {
        match &v.kind {
            ValueKind::Path(p) => p.dotted(),
            ValueKind::Str(t) => format!("\"{}\"", template_source(t)),
            _ => value_text(v),
        }
    }
    fn go(c: &Cond, parent: u8) -> String {
        let (s, prec) = match &c.kind {
            CondKind::Value(v) => (operand(v), 3),
            CondKind::Compare(a, op, b) => {
                (format!("{} {} {}", operand(a), op.symbol(), operand(b)), 3)
            }
            CondKind::Not(x) => (format!("not {}", go(x, 2)), 2),
            CondKind::And(a, b) => (format!("{} and {}", go(a, 1), go(b, 1)), 1),
            CondKind::Or(a, b) => (format!("{} or {}", go(a, 0), go(b, 0)), 0),
        };
        if prec < parent { format!("({s})") } else { s }
    }
    go(c, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::FileId;
    use crate::syntax::ast::{Item, Stmt};

    /// A template prints back as it was written: text with its braces doubled, the places as
    /// `{path}`, characters of any width.
    #[test]
    fn a_template_prints_as_written() {
        let written = "x {{y}} }}{n.f}é{{ and {m}}}";
        let src = format!("workflow w {{ a = f(\"{written}\") }}");
        let m = crate::syntax::parse(FileId(0), &src).expect("parses");
        let Item::Workflow(w) = &m.items[0] else {
            panic!("a workflow")
        };
        let Stmt::Step(s) = &w.body.stmts[0] else {
            panic!("a step")
        };
        let ValueKind::Str(t) = &s.args[0].value.kind else {
            panic!("a string")
        };
        assert_eq!(template_source(t), written);
    }
}
