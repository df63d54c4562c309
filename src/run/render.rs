//! Rendering templates at run time: `{name}`, `{name.field}` and named blocks.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::check::types::Type;
use crate::plan::{Interp, NodeId, Plan, PlanNode, Ref, Template, TemplatePart};

/// A workflow input after parsing by its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// `text` parameters.
    Text(String),
    /// Any other type, as JSON.
    Json(Json),
}

/// Parses a command-line input for parameter `name` of type `ty`: `text` as given; a number
/// or `true`/`false` as written; a list, a record or `json` as JSON text (a list is a JSON
/// array, a record a JSON object), whose items and fields are checked against the type like a
/// structured output ([`super::structured::conform`]: `"3"` passes for a number).
///
/// # Errors
/// A message saying what was expected and what a value of the type looks like on the command
/// line (`--input items='["text", "text"]'`); the text given is quoted redacted and shortened.
pub fn parse_input(ty: &Type, name: &str, text: &str) -> Result<InputValue, String> {
    match ty {
        Type::Text => Ok(InputValue::Text(text.to_string())),
        Type::Agent => Err(
            "an `agent` parameter is filled by a workflow that calls this one, not by an input"
                .to_string(),
        ),
        // Integers stay integers, so `3` renders as `3`, not `3.0`.
        Type::Number => match text.trim().parse::<i64>() {
            Ok(n) => Ok(InputValue::Json(serde_json::json!(n))),
            Err(_) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(|n| InputValue::Json(serde_json::json!(n)))
                .ok_or_else(|| format!("expected a number, found {}", quoted(text))),
        },
        Type::Bool => match text.trim() {
            "true" => Ok(InputValue::Json(Json::Bool(true))),
            "false" => Ok(InputValue::Json(Json::Bool(false))),
            _ => Err(format!(
                "expected `true` or `false`, found {}",
                quoted(text)
            )),
        },
        Type::Json | Type::List(_) | Type::Record(_) => {
            let v: Json = serde_json::from_str(text).map_err(|e| {
                // Where the JSON breaks, when it spans lines (a file); not serde's words.
                let at = if text.trim().contains('\n') {
                    format!(" (it breaks at line {}, column {})", e.line(), e.column())
                } else {
                    String::new()
                };
                format!(
                    "{} is not JSON{at}; {}",
                    quoted(text),
                    input_shape(ty, name)
                )
            })?;
            super::structured::conform(v, ty)
                .map(InputValue::Json)
                .map_err(|problems| format!("{}; {}", problems.join("; "), input_shape(ty, name)))
        }
    }
}

/// The input text as a message quotes it: redacted, on one line, at most 40 characters.
fn quoted(text: &str) -> String {
    let short = crate::redact::redact(text.trim()).shorten(40);
    format!("`{}`", short.as_str().replace('\n', "\\n"))
}

/// What an input of `ty` looks like on the command line, for parameter `name`: `a list<text>
/// input is a JSON array, like --input items='["text", "text"]' (or --input items=@FILE
/// with the JSON in FILE)`.
fn input_shape(ty: &Type, name: &str) -> String {
    let what = match ty {
        Type::List(_) => "a JSON array",
        Type::Record(_) => "a JSON object",
        _ => "JSON",
    };
    format!(
        "an input of type {ty} is {what}, like `--input {name}='{}'` (or `--input {name}=@FILE` with the JSON in FILE)",
        example_json(ty)
    )
}

/// A small JSON value of `ty`, as written on a command line: `["text", "text"]`,
/// `{"score": 1, "ok": true}`.
fn example_json(ty: &Type) -> String {
    match ty {
        Type::Text => "\"text\"".into(),
        Type::Number => "1".into(),
        Type::Bool => "true".into(),
        Type::Json | Type::Agent => "{\"key\": \"value\"}".into(),
        Type::List(t) => format!("[{0}, {0}]", example_json(t)),
        Type::Record(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, t)| format!("\"{k}\": {}", example_json(t)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Text of a value inside a prompt: strings raw; lists as numbered items (`1. a`), or, when
/// an item spans several lines, as numbered sections (`## 1` and the item); the rest as JSON.
pub fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(items) => {
            let texts: Vec<String> = items.iter().map(json_text).collect();
            if texts.iter().any(|t| t.trim_end().contains('\n')) {
                texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("## {}\n{}", i + 1, t.trim_end()))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            } else {
                texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("{}. {t}", i + 1))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// [`json_text`], borrowed when `v` is a string.
fn json_text_ref(v: &Json) -> Cow<'_, str> {
    match v {
        Json::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(json_text(other)),
    }
}

/// The value at a field path (`Null` where a field is missing).
fn field_of<'v>(mut v: &'v Json, fields: &[String]) -> &'v Json {
    for f in fields {
        v = v.get(f).unwrap_or(&Json::Null);
    }
    v
}

/// What templates can see while a run is in progress.
pub struct Scope<'a> {
    /// The plan (groups and step names, for `{block}`).
    pub plan: &'a Plan,
    /// Workflow inputs, one per parameter of [`Plan::params`], in its order.
    pub inputs: &'a IndexMap<String, InputValue>,
    /// Outputs of finished steps, by node id (`None`: not available): text as a JSON string.
    pub outputs: &'a [Option<Json>],
}

impl Scope<'_> {
    /// A step's rendered prompt (empty without one) and arguments (the call's, then the
    /// defaults it leaves out), as the scheduler sends them and the cache key hashes them.
    pub fn render_call(&self, node: &PlanNode) -> (String, IndexMap<String, String>) {
        let prompt = node
            .prompt
            .as_ref()
            .map(|t| self.render(t))
            .unwrap_or_default();
        let mut args: IndexMap<String, String> = node
            .args
            .iter()
            .map(|(k, t)| (k.clone(), self.render(t)))
            .collect();
        args.extend(node.defaults.iter().map(|(k, v)| (k.clone(), v.clone())));
        (prompt, args)
    }

    /// The interpolation of `node`'s prompt whose value is the longest, as written (`doc`,
    /// `plan.tasks`) with its estimated tokens ([`crate::plan::estimate_tokens`]): what a
    /// message about a prompt too large for its model names. `None` without interpolations.
    pub fn largest_interp(&self, node: &PlanNode) -> Option<(String, u64)> {
        node.prompt
            .iter()
            .flat_map(Template::interps)
            .map(|i| {
                (
                    i.path.clone(),
                    crate::plan::estimate_tokens(&self.text_ref(i)),
                )
            })
            .max_by_key(|(_, tokens)| *tokens)
    }

    /// Renders a workflow-level template.
    pub fn render(&self, t: &Template) -> String {
        let mut s = String::new();
        for part in t.parts() {
            match part {
                TemplatePart::Text(x) => s.push_str(x),
                TemplatePart::Interp(i) => s.push_str(&self.text_ref(i)),
            }
        }
        s
    }

    /// The value an interpolation reads (a parameter, a step's output, a field of one), as
    /// JSON: text is a string; a block or a block's step is its rendered text. `None` when it
    /// has no value (yet).
    pub fn value(&self, i: &Interp) -> Option<Json> {
        let fields = &i.fields;
        match i.target {
            Ref::Param(p) => match self.inputs.get_index(p)?.1 {
                InputValue::Text(t) if fields.is_empty() => Some(Json::String(t.clone())),
                InputValue::Text(_) => None,
                InputValue::Json(v) => Some(field_of(v, fields).clone()),
            },
            Ref::Node(n) => {
                let v = self.outputs.get(n)?.as_ref()?;
                Some(field_of(v, fields).clone()).filter(|v| !v.is_null())
            }
            Ref::Group(_) | Ref::Member(_) => Some(Json::String(self.text(i))),
            Ref::Arg(_) | Ref::Unbound => None,
        }
    }

    /// The text an interpolation renders to (empty when it has no value).
    pub fn text(&self, i: &Interp) -> String {
        self.text_ref(i).into_owned()
    }

    /// [`Scope::text`], borrowed where the value is text already (an input given as text, a
    /// step's text output or a text field of one: the common case), so that rendering a
    /// prompt, hashing the values it uses and sizing its largest one copy nothing.
    pub fn text_ref(&self, i: &Interp) -> Cow<'_, str> {
        let fields = &i.fields;
        let output = |n: NodeId| self.outputs.get(n).and_then(Option::as_ref);
        match i.target {
            Ref::Param(p) => match self.inputs.get_index(p).map(|(_, v)| v) {
                Some(InputValue::Text(t)) => Cow::Borrowed(t.as_str()),
                Some(InputValue::Json(v)) => json_text_ref(field_of(v, fields)),
                None => Cow::Borrowed(""),
            },
            Ref::Node(n) | Ref::Member(n) => {
                output(n).map_or(Cow::Borrowed(""), |v| json_text_ref(field_of(v, fields)))
            }
            Ref::Group(g) => Cow::Owned(
                self.plan.groups[g]
                    .members
                    .iter()
                    .filter_map(|&m| {
                        output(m).map(|o| {
                            format!(
                                "## {}\n{}",
                                self.plan.nodes[m].name,
                                json_text(o).trim_end()
                            )
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            ),
            Ref::Arg(_) | Ref::Unbound => Cow::Borrowed(""),
        }
    }
}

/// Renders an agent-level template (system text, argv, env) over the step's rendered
/// arguments ([`Scope::render_call`]).
pub fn render_with_args(t: &Template, args: &IndexMap<String, String>) -> String {
    t.parts()
        .iter()
        .map(|p| match p {
            TemplatePart::Text(x) => x.as_str(),
            TemplatePart::Interp(i) => match i.target {
                Ref::Arg(a) => args.get_index(a).map_or("", |(_, v)| v.as_str()),
                _ => "",
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_are_lent_and_others_rendered() {
        let src = "provider s { kind: sim }\nmodel m { provider: s }\nagent a { model: m }\n\
                   workflow main(topic: text) {\n  x = a(\"about {topic}\")\n  \
                   y = a(\"after {x} on {topic}\")\n}\n";
        let (program, diags) = crate::compile_source(
            "t.orch",
            src,
            std::path::Path::new("."),
            &crate::resolve::ResolveOptions::default(),
        );
        assert!(!diags.has_errors());
        let span = crate::diag::Span::new(crate::diag::FileId(0), 0, 0);
        let wf = crate::plan::entry_workflow(&program, None, span).unwrap();
        let plan = crate::plan::lower(&program, wf);
        let id = |name: &str| plan.nodes.iter().position(|n| n.name == name).unwrap();
        let inputs: IndexMap<String, InputValue> =
            [("topic".to_string(), InputValue::Text("tea".into()))].into();
        let mut outputs = vec![None; plan.nodes.len()];
        outputs[id("x")] = Some(Json::String("hot".into()));
        let y = &plan.nodes[id("y")];
        let interps: Vec<&Interp> = y.prompt.iter().flat_map(Template::interps).collect();
        let scope = Scope {
            plan: &plan,
            inputs: &inputs,
            outputs: &outputs,
        };
        // A step's text output and a text input are lent, not copied ...
        for i in &interps {
            assert!(matches!(scope.text_ref(i), Cow::Borrowed(_)), "{}", i.path);
        }
        assert_eq!(scope.render_call(y).0, "after hot on tea");
        // ... a value of another type is rendered as text.
        let mut numbers = outputs.clone();
        numbers[id("x")] = Some(serde_json::json!(3));
        let scope = Scope {
            outputs: &numbers,
            ..scope
        };
        assert!(matches!(scope.text_ref(interps[0]), Cow::Owned(ref t) if t == "3"));
        assert_eq!(scope.render_call(y).0, "after 3 on tea");
    }
}
