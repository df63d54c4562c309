//! Structured outputs: a language [`Type`] as a JSON Schema for providers, tolerant extraction
//! of a JSON value from a model's answer, validation (with light coercion) against the type,
//! the prompt text that asks for it again after a mismatch, and sample values for the
//! simulator.
//!
//! Providers are asked for JSON in the best way they support: OpenAI-compatible servers take
//! `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`
//! (OpenAI, "Structured Outputs", platform.openai.com/docs/guides/structured-outputs), where
//! strict mode wants every property listed in `required` and `additionalProperties: false`;
//! Anthropic takes a tool whose `input_schema` must be an object (Messages API, "Tool use",
//! docs.anthropic.com/en/docs/build-with-claude/tool-use), so a non-record type is wrapped
//! in `{"value": ...}` ([`tool_schema`]). Servers that support neither get [`instructions`]
//! in the prompt. Whatever arrives is parsed by [`parse_as`], which accepts the JSON inside
//! code fences or surrounded by prose, because small models rarely answer with bare JSON.

use serde_json::{Map, Value, json};

use crate::check::types::Type;

/// The property that wraps a non-record type in a tool's object schema.
pub const WRAP_KEY: &str = "value";

/// The JSON Schema of `ty`: `text` → string, `number` → number, `bool` → boolean, `json` → any
/// value (`{}`), `list<T>` → array of T, a record → object with every field required and no
/// others (the shape OpenAI's strict mode accepts).
pub fn json_schema(ty: &Type) -> Value {
    match ty {
        Type::Text => json!({ "type": "string" }),
        Type::Number => json!({ "type": "number" }),
        Type::Bool => json!({ "type": "boolean" }),
        Type::Json | Type::Agent => json!({}),
        Type::List(inner) => json!({ "type": "array", "items": json_schema(inner) }),
        Type::Record(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(k, t)| (k.clone(), json_schema(t)))
                .collect();
            let required: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
    }
}

/// A schema usable as an Anthropic tool's `input_schema` (which must describe an object), and
/// whether the type was wrapped in `{"value": ...}` to make it one (then [`unwrap_tool_input`]
/// takes the value out of the tool call's input).
pub fn tool_schema(ty: &Type) -> (Value, bool) {
    match ty {
        Type::Record(_) => (json_schema(ty), false),
        other => (
            json!({
                "type": "object",
                "properties": { WRAP_KEY: json_schema(other) },
                "required": [WRAP_KEY],
                "additionalProperties": false,
            }),
            true,
        ),
    }
}

/// The value inside a tool call's input built from [`tool_schema`].
pub fn unwrap_tool_input(input: Value, wrapped: bool) -> Value {
    match (wrapped, input) {
        (true, Value::Object(mut map)) => map.remove(WRAP_KEY).unwrap_or(Value::Null),
        (_, other) => other,
    }
}

/// Prompt text asking for a value of `ty`, for providers without schema support.
pub fn instructions(ty: &Type) -> String {
    format!(
        "Answer with only a JSON value, with no text before or after it, matching this JSON \
         Schema:\n{}",
        json_schema(ty)
    )
}

/// Prompt text for a retry after the answer did not match: the problems, then the shape again.
pub fn retry_instructions(ty: &Type, problems: &[String]) -> String {
    let mut out = String::from("Your previous answer could not be used:\n");
    for p in problems {
        out.push_str("- ");
        out.push_str(p);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&instructions(ty));
    out
}

/// Parses a model's answer as a value of `ty`.
///
/// `text` is taken as is. Anything else is looked for, in order: the whole answer as JSON,
/// the contents of each fenced code block, then every balanced `{...}` or `[...]` in the text;
/// for `number` and `bool`, also the bare words (`7`, `yes`). The first candidate that
/// [`conform`]s wins.
///
/// # Errors
/// The problems with the best candidate (or "no JSON value found"), worded to be sent back
/// to the model by [`retry_instructions`] and shown to the user.
pub fn parse_as(answer: &str, ty: &Type) -> Result<Value, Vec<String>> {
    if *ty == Type::Text {
        return Ok(Value::String(answer.to_string()));
    }
    let mut first_problems: Option<Vec<String>> = None;
    for candidate in candidates(answer, ty) {
        match conform(candidate, ty) {
            Ok(v) => return Ok(v),
            Err(p) => {
                first_problems.get_or_insert(p);
            }
        }
    }
    Err(first_problems.unwrap_or_else(|| {
        vec![format!(
            "no JSON value was found in the answer (expected {})",
            describe(ty)
        )]
    }))
}

/// JSON values found in `answer`, most likely first.
fn candidates(answer: &str, ty: &Type) -> Vec<Value> {
    let mut out = Vec::new();
    let trimmed = answer.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        out.push(v);
    }
    for block in fenced_blocks(answer) {
        if let Ok(v) = serde_json::from_str::<Value>(block.trim()) {
            out.push(v);
        }
    }
    for segment in balanced_segments(answer) {
        if let Ok(v) = serde_json::from_str::<Value>(segment) {
            out.push(v);
        }
    }
    if let Some(v) = bare_word(trimmed, ty) {
        out.push(v);
    }
    out
}

/// The contents of ``` fenced blocks (the info string, like `json`, is skipped).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        let Some(end) = body.find("```") else {
            break;
        };
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

/// Every top-level balanced `{...}` / `[...]` segment, skipping brackets inside JSON strings.
fn balanced_segments(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'{' | b'[')
            && let Some(end) = matching_close(bytes, i)
        {
            out.push(&text[i..=end]);
            i = end + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// Index of the bracket closing the one at `open`, if the text closes it.
fn matching_close(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `7`, `-2.5`, `yes`, `No.`: a whole answer that is one word of the wanted scalar type.
fn bare_word(text: &str, ty: &Type) -> Option<Value> {
    let word = text.trim_end_matches(['.', '!']).trim();
    match ty {
        Type::Number => word
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Type::Bool => match word.to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(Value::Bool(true)),
            "false" | "no" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

/// Checks `value` against `ty`, coercing what is unambiguous: a numeric string to a number,
/// `"true"`/`"false"` to a bool, any scalar to text, and a record's extra fields are dropped.
///
/// # Errors
/// Every mismatch, each with its place (`$.verdict.approved: expected bool, found "maybe"`).
pub fn conform(value: Value, ty: &Type) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let v = conform_at(value, ty, "$", &mut problems);
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems)
    }
}

fn conform_at(value: Value, ty: &Type, at: &str, problems: &mut Vec<String>) -> Value {
    match (ty, value) {
        (Type::Json, v) => v,
        (Type::Text, Value::String(s)) => Value::String(s),
        (Type::Text, v @ (Value::Number(_) | Value::Bool(_))) => Value::String(v.to_string()),
        (Type::Number, Value::Number(n)) => Value::Number(n),
        (Type::Number, Value::String(s)) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
            let n = s.trim().parse::<f64>().unwrap_or_default();
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
        (Type::Bool, Value::Bool(b)) => Value::Bool(b),
        (Type::Bool, Value::String(s)) if matches!(s.trim(), "true" | "false") => {
            Value::Bool(s.trim() == "true")
        }
        (Type::List(inner), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| conform_at(v, inner, &format!("{at}[{i}]"), problems))
                .collect(),
        ),
        (Type::Record(fields), Value::Object(mut map)) => {
            let mut out = Map::new();
            for (k, t) in fields {
                match map.remove(k) {
                    Some(v) => {
                        out.insert(k.clone(), conform_at(v, t, &format!("{at}.{k}"), problems));
                    }
                    None => problems.push(format!("{at}: missing field `{k}` ({})", describe(t))),
                }
            }
            Value::Object(out)
        }
        (ty, v) => {
            problems.push(format!(
                "{at}: expected {}, found {}",
                describe(ty),
                found(&v)
            ));
            v
        }
    }
}

/// `a number`, `a list of text`, `a record { approved: bool, feedback: text }`.
fn describe(ty: &Type) -> String {
    match ty {
        Type::Text => "text".into(),
        Type::Number => "a number".into(),
        Type::Bool => "true or false".into(),
        Type::Json | Type::Agent => "any JSON value".into(),
        Type::List(_) => format!("a JSON array ({ty})"),
        Type::Record(_) => format!("a JSON object {ty}"),
    }
}

fn found(v: &Value) -> String {
    let text = v.to_string();
    let short: String = text.chars().take(40).collect();
    let ellipsis = if text.chars().count() > 40 { "…" } else { "" };
    match v {
        Value::Null => "null".into(),
        Value::Array(_) => format!("an array {short}{ellipsis}"),
        Value::Object(_) => format!("an object {short}{ellipsis}"),
        _ => format!("{short}{ellipsis}"),
    }
}

/// A valid value of `ty` for the simulator, varied by `seed` (a hash of the step and attempt)
/// so that different steps get different values; lists have 2 or 3 items.
pub fn sample(ty: &Type, seed: u64) -> Value {
    let mix = |k: u64| seed.wrapping_mul(6364136223846793005).wrapping_add(k) >> 33;
    match ty {
        Type::Text | Type::Json | Type::Agent => {
            Value::String(format!("sample text {}", mix(1) % 1000))
        }
        Type::Number => json!(mix(2) % 10 + 1),
        Type::Bool => Value::Bool(mix(3) % 2 == 0),
        Type::List(inner) => {
            let n = 2 + mix(4) % 2;
            Value::Array(
                (0..n)
                    .map(|i| sample(inner, seed ^ ((i + 1) * 0x9E37)))
                    .collect(),
            )
        }
        Type::Record(fields) => Value::Object(
            fields
                .iter()
                .enumerate()
                .map(|(i, (k, t))| (k.clone(), sample(t, seed ^ ((i as u64 + 1) << 20))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> Type {
        Type::Record(vec![
            ("approved".into(), Type::Bool),
            ("feedback".into(), Type::Text),
        ])
    }

    #[test]
    fn json_is_found_in_fences_and_prose() {
        let fenced =
            "Here you go:\n```json\n{\"approved\": true, \"feedback\": \"ok\"}\n```\nThanks";
        assert_eq!(
            parse_as(fenced, &verdict()).unwrap(),
            json!({"approved": true, "feedback": "ok"})
        );
        let prose =
            "I think {\"approved\": \"false\", \"feedback\": \"needs {work}\", \"x\": 1} is fair.";
        assert_eq!(
            parse_as(prose, &verdict()).unwrap(),
            json!({"approved": false, "feedback": "needs {work}"})
        );
        let list = Type::List(Box::new(Type::Text));
        assert_eq!(
            parse_as("Subtasks: [\"a\", \"b\"] done", &list).unwrap(),
            json!(["a", "b"])
        );
    }

    #[test]
    fn scalars_accept_bare_words() {
        assert_eq!(parse_as(" 7.\n", &Type::Number).unwrap(), json!(7.0));
        assert_eq!(parse_as("Yes", &Type::Bool).unwrap(), json!(true));
        assert!(parse_as("maybe", &Type::Bool).is_err());
        assert_eq!(
            parse_as("anything", &Type::Text).unwrap(),
            json!("anything")
        );
    }

    #[test]
    fn mismatches_name_their_place() {
        let err = parse_as("{\"approved\": \"perhaps\"}", &verdict()).unwrap_err();
        assert_eq!(
            err,
            vec![
                "$.approved: expected true or false, found \"perhaps\"".to_string(),
                "$: missing field `feedback` (text)".to_string(),
            ]
        );
        let err = parse_as("no json here", &verdict()).unwrap_err();
        assert!(err[0].contains("no JSON value"), "{err:?}");
        let retry = retry_instructions(&verdict(), &err);
        assert!(retry.contains("no JSON value") && retry.contains("\"approved\""));
    }

    #[test]
    fn schemas_follow_strict_mode_and_tools_get_objects() {
        let s = json_schema(&verdict());
        assert_eq!(s["required"], json!(["approved", "feedback"]));
        assert_eq!(s["additionalProperties"], json!(false));
        let (tool, wrapped) = tool_schema(&Type::List(Box::new(Type::Number)));
        assert!(wrapped);
        assert_eq!(tool["properties"]["value"]["items"]["type"], "number");
        assert_eq!(
            unwrap_tool_input(json!({"value": [1, 2]}), true),
            json!([1, 2])
        );
    }

    #[test]
    fn samples_conform_to_their_type() {
        let ty = Type::Record(vec![
            ("subtasks".into(), Type::List(Box::new(Type::Text))),
            ("score".into(), Type::Number),
            ("ok".into(), verdict()),
        ]);
        for seed in 0..50 {
            let v = sample(&ty, seed);
            assert_eq!(conform(v.clone(), &ty), Ok(v));
        }
    }

    #[test]
    fn unbalanced_or_hostile_text_does_not_panic() {
        for text in [
            "{",
            "[[[",
            "{\"a\": \"\\\"}",
            "```",
            "```json\n{",
            "}{",
            "é{é}",
        ] {
            let _ = parse_as(text, &verdict());
        }
    }
}
