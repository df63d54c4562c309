//! Structured outputs (`-> T` on a step): a language [`Type`] as a JSON Schema for providers,
//! tolerant extraction of a JSON value from a model's answer, validation (with light coercion)
//! against the type, the prompt text that asks for it again after a mismatch, and sample
//! values for the simulator.
//!
//! Providers are asked for JSON in the best way they support:
//! - OpenAI-compatible servers take `response_format: {"type": "json_schema", "json_schema":
//!   {"name", "schema", "strict"}}` (OpenAI, "Structured Outputs",
//!   <https://platform.openai.com/docs/guides/structured-outputs>). Strict mode wants every
//!   property listed in `required`, `additionalProperties: false`, a `type` in every schema
//!   (so no `{}` for `json`: see [`strict_compatible`]) and an object at the root (so other
//!   types are wrapped, as for tools: [`tool_schema`]). The client falls back when a server
//!   rejects it (see `provider::openai`).
//! - Anthropic takes a tool whose `input_schema` must be an object (Messages API, "Tool use",
//!   <https://docs.anthropic.com/en/docs/build-with-claude/tool-use>), so a non-record type is
//!   wrapped in `{"value": ...}` ([`tool_schema`]).
//! - Servers that support neither get [`instructions`] in the prompt.
//!
//! Whatever arrives is parsed by [`parse_as`], which accepts the JSON inside code fences or
//! surrounded by prose, because small models rarely answer with bare JSON. `text` is never
//! parsed: a `-> text` step is a plain text step.

use serde_json::{Map, Value, json};

use crate::check::types::Type;

/// The property that wraps a non-record type in an object schema (Anthropic's tool input,
/// OpenAI's strict-mode root).
pub const WRAP_KEY: &str = "value";

/// How many characters of a bad answer an error message quotes.
pub const ANSWER_EXCERPT_CHARS: usize = 200;

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

/// An object schema for `ty` — what an Anthropic tool's `input_schema` and the root of an
/// OpenAI strict schema must be — and whether the type was wrapped in `{"value": ...}` to make
/// it one (then [`unwrap_tool_input`] takes the value out of the answer).
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

/// The value inside an answer to a [`tool_schema`]: `input.value` when the type was wrapped.
/// An object without `value` is returned whole, so that the mismatch is reported against what
/// the model actually sent.
pub fn unwrap_tool_input(input: Value, wrapped: bool) -> Value {
    match (wrapped, input) {
        (true, Value::Object(mut map)) if map.contains_key(WRAP_KEY) => {
            map.remove(WRAP_KEY).unwrap_or(Value::Null)
        }
        (_, other) => other,
    }
}

/// Whether OpenAI's strict mode can enforce [`json_schema`] of `ty`: every schema in strict
/// mode needs a `type`, so a `json` anywhere inside rules it out (the schema is then sent with
/// `strict: false`, as guidance).
pub fn strict_compatible(ty: &Type) -> bool {
    match ty {
        Type::Json | Type::Agent => false,
        Type::List(inner) => strict_compatible(inner),
        Type::Record(fields) => fields.iter().all(|(_, t)| strict_compatible(t)),
        Type::Text | Type::Number | Type::Bool => true,
    }
}

/// A schema or tool name from a step name: the characters OpenAI's `json_schema.name` and
/// Anthropic's tool `name` allow (`[a-zA-Z0-9_-]`, 1 to 64 of them), others replaced by `_`.
pub fn schema_name(step: &str) -> String {
    let name = crate::grant::wire_safe(step);
    if name.is_empty() {
        "answer".to_owned()
    } else {
        name
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

/// Prompt text for a retry after the answer did not match: the problems, the start of the
/// previous answer, then the shape again ([`instructions`]).
pub fn retry_instructions(ty: &Type, problems: &[String], previous: &str) -> String {
    let mut out = String::from("Your previous answer could not be used:\n");
    for p in problems {
        out.push_str("- ");
        out.push_str(p);
        out.push('\n');
    }
    let excerpt = excerpt(previous);
    if !excerpt.is_empty() {
        out.push_str("It began: ");
        out.push_str(&excerpt);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&instructions(ty));
    out
}

/// The message of a step whose answer is not a value of its type: the step, the type, the
/// problems and the start of the answer, e.g. ``the answer of `tasks` is not a valid
/// list<text>: expected a JSON array, found an object {"a":1} (answer began: {"a":1})``.
pub fn mismatch_message(step: &str, ty: &Type, problems: &[String], answer: &str) -> String {
    let began = excerpt(answer);
    let began = if began.is_empty() {
        "the answer was empty".to_owned()
    } else {
        format!("answer began: {began}")
    };
    format!(
        "the answer of `{step}` is not a valid {ty}: {} ({began})",
        problems.join("; ")
    )
}

/// The first [`ANSWER_EXCERPT_CHARS`] characters of `text`, whitespace runs collapsed to one
/// space, redacted before it is cut, with `…` when cut.
fn excerpt(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::redact::redact(flat)
        .shorten(ANSWER_EXCERPT_CHARS)
        .into_string()
}

/// Parses a model's answer as a value of `ty`.
///
/// `text` is taken as is. Anything else is looked for, in order: the whole answer as JSON,
/// the contents of each fenced code block, then every balanced `{...}` or `[...]` in the text;
/// for `number` and `bool`, also the bare words (`7`, `yes`). The first candidate that
/// [`conform`]s wins.
///
/// # Errors
/// The problems with the first candidate (or "no JSON value found"), worded to be sent back
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

/// Every outermost balanced `{...}` / `[...]` segment, in order, found in one pass (linear
/// time, whatever the text): brackets inside JSON strings do not count, and quotes outside
/// any bracket are prose, not strings. A closer that does not match the innermost opener is
/// ignored; an opener that never closes encloses nothing.
fn balanced_segments(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut open: Vec<(usize, u8)> = Vec::new();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
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
            b'"' if !open.is_empty() => in_string = true,
            b'{' | b'[' => open.push((i, b)),
            b'}' | b']' => {
                let opener = if b == b'}' { b'{' } else { b'[' };
                if open.last().is_some_and(|&(_, o)| o == opener)
                    && let Some((start, _)) = open.pop()
                {
                    pairs.push((start, i));
                }
            }
            _ => {}
        }
    }
    // Pairs nest or are disjoint: sorted by start, the outermost are those starting after the
    // end of the last one kept.
    pairs.sort_unstable();
    let mut out = Vec::new();
    let mut end = None;
    for (start, close) in pairs {
        if end.is_none_or(|e| start > e) {
            out.push(&text[start..=close]);
            end = Some(close);
        }
    }
    out
}

/// `7`, `-2.5`, `yes`, `No.`: a whole answer that is one word of the wanted scalar type.
fn bare_word(text: &str, ty: &Type) -> Option<Value> {
    let word = text.trim_end_matches(['.', '!']).trim();
    match ty {
        Type::Number => number(word),
        Type::Bool => match word.to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(Value::Bool(true)),
            "false" | "no" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

/// A number written as text: integers stay integers (`3`, not `3.0`), like inputs do.
fn number(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(json!(n));
    }
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// Checks `value` against `ty`, coercing what is unambiguous: a numeric string to a number,
/// `"true"`/`"false"` to a bool, a number or bool to text; a record's extra fields are dropped.
///
/// # Errors
/// Every mismatch, each with its place below the root (`$.verdict.approved: expected true or
/// false, found "maybe"`; a mismatch of the whole value has no place).
pub fn conform(value: Value, ty: &Type) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let v = conform_at(value, ty, "$", &mut problems);
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems)
    }
}

/// `"$.a: "` for a place below the root, `""` for the root.
fn place(at: &str) -> String {
    if at == "$" {
        String::new()
    } else {
        format!("{at}: ")
    }
}

fn conform_at(value: Value, ty: &Type, at: &str, problems: &mut Vec<String>) -> Value {
    match (ty, value) {
        (Type::Json, v) => v,
        (Type::Text, Value::String(s)) => Value::String(s),
        (Type::Text, v @ (Value::Number(_) | Value::Bool(_))) => Value::String(v.to_string()),
        (Type::Number, Value::Number(n)) => Value::Number(n),
        (Type::Number, Value::String(s)) if number(&s).is_some() => {
            number(&s).unwrap_or(Value::Null)
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
                    None => problems.push(format!(
                        "{}missing field `{k}` ({})",
                        place(at),
                        describe(t)
                    )),
                }
            }
            Value::Object(out)
        }
        (ty, v) => {
            problems.push(format!(
                "{}expected {}, found {}",
                place(at),
                describe(ty),
                found(&v)
            ));
            v
        }
    }
}

/// `a number`, `a JSON array`, `true or false`.
fn describe(ty: &Type) -> String {
    match ty {
        Type::Text => "text".into(),
        Type::Number => "a number".into(),
        Type::Bool => "true or false".into(),
        Type::Json | Type::Agent => "any JSON value".into(),
        Type::List(_) => "a JSON array".into(),
        Type::Record(_) => "a JSON object".into(),
    }
}

fn found(v: &Value) -> String {
    let short = crate::redact::redact(v.to_string()).shorten(40);
    match v {
        Value::Null => "null".into(),
        Value::Array(_) => format!("an array {short}"),
        Value::Object(_) => format!("an object {short}"),
        _ => short.into_string(),
    }
}

/// A valid value of `ty` for the simulator, fully determined by `seed` (the simulator passes
/// a hash of the request): numbers from 1 to 10, bools either way, lists of 3 items, a `json`
/// value as `{"note": <text>}`, and every text from `text(seed')` for a seed derived from
/// `seed` and the value's place, so that fields and items differ.
pub fn sample(ty: &Type, seed: u64, text: &dyn Fn(u64) -> String) -> Value {
    match ty {
        Type::Text => Value::String(text(seed)),
        Type::Json | Type::Agent => json!({ "note": text(seed) }),
        Type::Number => json!(mix(seed, 1) % 10 + 1),
        Type::Bool => Value::Bool(mix(seed, 2).is_multiple_of(2)),
        Type::List(inner) => Value::Array(
            (0..3)
                .map(|i| sample(inner, mix(seed, 100 + i), text))
                .collect(),
        ),
        Type::Record(fields) => Value::Object(
            fields
                .iter()
                .zip(1000u64..)
                .map(|((k, t), i)| (k.clone(), sample(t, mix(seed, i), text)))
                .collect(),
        ),
    }
}

/// SplitMix64 of `seed` and a salt: a well-mixed child seed.
fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

    fn list(t: Type) -> Type {
        Type::List(Box::new(t))
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
        assert_eq!(
            parse_as("Subtasks: [\"a\", \"b\"] done", &list(Type::Text)).unwrap(),
            json!(["a", "b"])
        );
        // An unclosed bracket and prose quotes before the value do not hide it.
        let noisy =
            "He said \"sure { ok. Then [1, 2] and {\"approved\": true, \"feedback\": \"]\"}";
        assert_eq!(
            parse_as(noisy, &verdict()).unwrap(),
            json!({"approved": true, "feedback": "]"})
        );
        assert_eq!(
            balanced_segments("a {b [c] {d}} e [f] {"),
            ["{b [c] {d}}", "[f]"]
        );
    }

    #[test]
    fn scalars_accept_bare_words_and_numbers_stay_integers() {
        assert_eq!(parse_as(" 7.\n", &Type::Number).unwrap(), json!(7));
        assert_eq!(parse_as("-2.5", &Type::Number).unwrap(), json!(-2.5));
        assert_eq!(
            parse_as("[\"3\", 4.5]", &list(Type::Number)).unwrap(),
            json!([3, 4.5])
        );
        assert_eq!(parse_as("Yes", &Type::Bool).unwrap(), json!(true));
        assert!(parse_as("maybe", &Type::Bool).is_err());
        assert_eq!(
            parse_as("anything {", &Type::Text).unwrap(),
            json!("anything {")
        );
        assert_eq!(parse_as("[1, {}]", &Type::Json).unwrap(), json!([1, {}]));
    }

    #[test]
    fn mismatches_name_their_place() {
        let err = parse_as("{\"approved\": \"perhaps\"}", &verdict()).unwrap_err();
        assert_eq!(
            err,
            [
                "$.approved: expected true or false, found \"perhaps\"",
                "missing field `feedback` (text)",
            ]
        );
        let err = parse_as("{\"a\": 1}", &list(Type::Text)).unwrap_err();
        assert_eq!(err, ["expected a JSON array, found an object {\"a\":1}"]);
        let nested = list(verdict());
        let err = parse_as("[{\"approved\": true}]", &nested).unwrap_err();
        assert_eq!(err, ["$[0]: missing field `feedback` (text)"]);
        let err = parse_as("no json here", &verdict()).unwrap_err();
        assert!(err[0].contains("no JSON value"), "{err:?}");
        let retry = retry_instructions(&verdict(), &err, "no json\n\nhere");
        assert!(
            retry.contains("- no JSON value")
                && retry.contains("It began: no json here\n")
                && retry.ends_with(&instructions(&verdict())),
            "{retry}"
        );
    }

    #[test]
    fn mismatch_messages_quote_the_start_of_the_answer() {
        let answer = format!("{{\"a\": 1}}\n{}", "x".repeat(500));
        let err = parse_as(&answer, &list(Type::Text)).unwrap_err();
        let message = mismatch_message("tasks", &list(Type::Text), &err, &answer);
        assert!(
            message.starts_with(
                "the answer of `tasks` is not a valid list<text>: expected a JSON array, found an \
                 object {\"a\":1} (answer began: {\"a\": 1} xxx"
            ),
            "{message}"
        );
        assert!(message.ends_with("…)"), "{message}");
        assert!(message.chars().count() < 400, "{message}");
        assert!(
            mismatch_message("n", &Type::Number, &["x".into()], "  ")
                .ends_with("(the answer was empty)")
        );
    }

    #[test]
    fn schemas_follow_strict_mode_and_tools_get_objects() {
        let s = json_schema(&verdict());
        assert_eq!(s["required"], json!(["approved", "feedback"]));
        assert_eq!(s["additionalProperties"], json!(false));
        let (tool, wrapped) = tool_schema(&list(Type::Number));
        assert!(wrapped);
        assert_eq!(tool["properties"]["value"]["items"]["type"], "number");
        assert_eq!(tool["required"], json!(["value"]));
        let (record, wrapped) = tool_schema(&verdict());
        assert!(!wrapped);
        assert_eq!(record, json_schema(&verdict()));
        assert_eq!(
            unwrap_tool_input(json!({"value": [1, 2]}), true),
            json!([1, 2])
        );
        // Without the wrapper the whole input is kept, to be reported as it came.
        assert_eq!(unwrap_tool_input(json!({"x": 1}), true), json!({"x": 1}));
        assert_eq!(
            unwrap_tool_input(json!({"value": 1}), false),
            json!({"value": 1})
        );
        assert!(strict_compatible(&list(verdict())));
        assert!(!strict_compatible(&Type::Record(vec![(
            "extra".into(),
            list(Type::Json)
        )])));
        assert_eq!(schema_name("verdict"), "verdict");
        assert_eq!(schema_name("résumé step"), "r_sum__step");
        assert_eq!(schema_name(""), "answer");
        assert_eq!(schema_name(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn samples_conform_to_their_type_and_vary() {
        let ty = Type::Record(vec![
            ("subtasks".into(), list(Type::Text)),
            ("score".into(), Type::Number),
            ("ok".into(), verdict()),
            ("items".into(), list(verdict())),
            ("extra".into(), Type::Json),
        ]);
        let text = |s: u64| format!("text {}", s % 97);
        let mut approvals = 0;
        for seed in 0..50 {
            let v = sample(&ty, seed, &text);
            assert_eq!(conform(v.clone(), &ty), Ok(v.clone()));
            assert_eq!(v["subtasks"].as_array().map(Vec::len), Some(3));
            assert_eq!(v["items"].as_array().map(Vec::len), Some(3));
            assert_eq!(sample(&ty, seed, &text), v, "deterministic");
            if v["ok"]["approved"] == json!(true) {
                approvals += 1;
            }
        }
        // Bools go both ways across seeds.
        assert!((10..=40).contains(&approvals), "{approvals} of 50 approved");
        let items = sample(&list(Type::Text), 7, &text);
        let distinct: std::collections::HashSet<_> = items
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(distinct.len(), 3, "{items}");
    }

    #[test]
    fn unbalanced_or_hostile_text_does_not_panic_and_stays_linear() {
        for text in [
            "{",
            "[[[",
            "{\"a\": \"\\\"}",
            "```",
            "```json\n{",
            "}{",
            "é{é}",
            "]}[{",
        ] {
            let _ = parse_as(text, &verdict());
        }
        // Half a megabyte of unclosed brackets: one pass, not one scan per bracket.
        let hostile = "{[".repeat(250_000);
        let start = std::time::Instant::now();
        assert!(parse_as(&hostile, &verdict()).is_err());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
