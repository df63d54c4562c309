//! The shapes of an agent loop's conversation with a provider: the tools offered, the tool
//! calls a model makes, their results, and the turns so far.
//!
//! Provider-neutral: each client maps them to its wire format — Anthropic's `tools`,
//! `tool_use` and `tool_result` content blocks (Messages API, "Tool use"), OpenAI's `tools`,
//! `message.tool_calls` and `role: "tool"` messages (Chat Completions, "Function calling") —
//! and servers without native tool calls get a documented JSON protocol in the prompt.

use serde::{Deserialize, Serialize};

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its wire name (`^[a-zA-Z0-9_-]{1,64}$`, see [`crate::grant`]).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its input (an object schema).
    pub input_schema: serde_json::Value,
}

/// One tool call a model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call (Anthropic `tool_use.id`, OpenAI `tool_calls[].id`), which
    /// its result must quote; made up (`call_N`) where the server gives none.
    pub id: String,
    /// The tool's wire name.
    pub name: String,
    /// The arguments, when they parse as a JSON object.
    pub input: serde_json::Value,
    /// Why the arguments could not be read (not JSON, not an object), with the raw text's
    /// start: the call is then answered with an error result, never executed.
    pub malformed: Option<String>,
}

/// The result of one tool call, as sent back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The [`ToolCall::id`] it answers.
    pub call_id: String,
    /// The result text (redacted, capped).
    pub content: String,
    /// Whether it reports a failure or a refusal (Anthropic `is_error`; OpenAI has no flag,
    /// so the client prefixes the content instead).
    pub is_error: bool,
}

/// One turn of the conversation after the step's prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Turn {
    /// What the model said: its text (possibly empty) and the tool calls it made.
    Assistant {
        /// Text before or beside the calls.
        text: String,
        /// The calls, in the order the model made them.
        calls: Vec<ToolCall>,
    },
    /// The results of the previous assistant turn's calls, one per call, in call order.
    Tools {
        /// The results.
        results: Vec<ToolResult>,
    },
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A finished answer (Anthropic `end_turn`/`stop_sequence`, OpenAI `stop`).
    #[default]
    EndTurn,
    /// It wants its tool calls run (Anthropic `tool_use`, OpenAI `tool_calls`).
    ToolUse,
    /// It hit the output-token limit (Anthropic `max_tokens`, OpenAI `length`): the answer is
    /// cut off.
    MaxTokens,
    /// Anything else the provider said, as it said it.
    Other(String),
}

/// How many characters of malformed arguments a [`ToolCall::malformed`] quotes.
pub const MALFORMED_EXCERPT_CHARS: usize = 200;

impl ToolCall {
    /// A call whose arguments arrived as JSON text (OpenAI's `function.arguments`, Anthropic's
    /// streamed `partial_json`, the fallback protocol's `arguments`). Blank text is no
    /// arguments (`{}`: servers send `""` for a tool without parameters). Text that is not a
    /// JSON object makes a [`ToolCall::malformed`] call — with `{}` as its input, so that it
    /// can be sent back to the server as it is — whose reason quotes the text's start,
    /// redacted ([`crate::redact`]) before it is shortened.
    pub fn from_json_text(id: String, name: String, raw: &str) -> ToolCall {
        if raw.trim().is_empty() {
            return ToolCall::new(id, name, serde_json::json!({}));
        }
        let why = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(value @ serde_json::Value::Object(_)) => return ToolCall::new(id, name, value),
            Ok(other) => format!("the arguments are {}, not a JSON object", json_kind(&other)),
            Err(e) => format!("the arguments are not JSON ({e})"),
        };
        ToolCall::malformed(id, name, &why, raw)
    }

    /// A call whose arguments arrived as a JSON value (Anthropic's `tool_use.input`, a server
    /// that sends OpenAI's `arguments` as an object, or as a string of JSON text).
    pub fn from_json_value(id: String, name: String, value: serde_json::Value) -> ToolCall {
        match value {
            serde_json::Value::Object(_) => ToolCall::new(id, name, value),
            serde_json::Value::String(raw) => ToolCall::from_json_text(id, name, &raw),
            serde_json::Value::Null => ToolCall::new(id, name, serde_json::json!({})),
            other => {
                let why = format!("the arguments are {}, not a JSON object", json_kind(&other));
                ToolCall::malformed(id, name, &why, &other.to_string())
            }
        }
    }

    fn new(id: String, name: String, input: serde_json::Value) -> ToolCall {
        ToolCall {
            id,
            name,
            input,
            malformed: None,
        }
    }

    /// A call that cannot be run, for `why` (a phrase), quoting the start of `raw` (redacted,
    /// then shortened to [`MALFORMED_EXCERPT_CHARS`]); its input is `{}`.
    pub fn malformed(id: String, name: String, why: &str, raw: &str) -> ToolCall {
        let excerpt = crate::redact::redact(raw.trim()).shorten(MALFORMED_EXCERPT_CHARS);
        ToolCall {
            id,
            name,
            input: serde_json::json!({}),
            malformed: Some(format!("{why}: {excerpt}")),
        }
    }

    /// The call with every text from the server in it redacted: name, argument strings (keys
    /// and values) and the malformed reason.
    pub fn redacted(self) -> ToolCall {
        ToolCall {
            id: crate::redact::redact(self.id).into_string(),
            name: crate::redact::redact(self.name).into_string(),
            input: redact_value(self.input),
            malformed: self
                .malformed
                .map(|m| crate::redact::redact(m).into_string()),
        }
    }
}

impl Turn {
    /// The turn's size in tokens, estimated at 4 characters per token
    /// ([`crate::plan::estimate_tokens`]): text, calls' names and arguments, results.
    pub fn estimate_tokens(&self) -> u64 {
        use crate::plan::estimate_tokens;
        match self {
            Turn::Assistant { text, calls } => {
                estimate_tokens(text)
                    + calls
                        .iter()
                        .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.input.to_string()))
                        .sum::<u64>()
            }
            Turn::Tools { results } => results.iter().map(|r| estimate_tokens(&r.content)).sum(),
        }
    }
}

/// `value` with every string in it (object keys too) redacted.
fn redact_value(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let scrub = |s: String| crate::redact::redact(s).into_string();
    match value {
        Value::String(s) => Value::String(scrub(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scrub(k), redact_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// "a JSON array", "a string", ...: what a JSON value is, for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The id of a call whose server gave none: `call_N`, N counting every call of the
/// conversation so far (`earlier`, the calls of `turns`) plus its place in this answer
/// (`index`, from 0), so that ids stay unique across turns.
pub fn made_up_id(turns: &[Turn], index: usize) -> String {
    let earlier: usize = turns
        .iter()
        .map(|t| match t {
            Turn::Assistant { calls, .. } => calls.len(),
            Turn::Tools { .. } => 0,
        })
        .sum();
    format!("call_{}", earlier + index + 1)
}

impl StopReason {
    /// The stop reason of an answer with `calls` tool calls, from the provider's word for it
    /// (`None` when it gave none). Some servers (Ollama, some llama.cpp versions) say `stop`
    /// for an answer with tool calls: an answer that has calls always stopped for them.
    pub fn from_wire(reason: Option<&str>, calls: usize) -> StopReason {
        let stop = match reason {
            None | Some("stop" | "end_turn" | "stop_sequence") => StopReason::EndTurn,
            Some("tool_calls" | "tool_use" | "function_call") => StopReason::ToolUse,
            Some("length" | "max_tokens") => StopReason::MaxTokens,
            Some(other) => StopReason::Other(other.to_owned()),
        };
        if calls > 0 && stop == StopReason::EndTurn {
            StopReason::ToolUse
        } else {
            stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_as_text() {
        let ok = ToolCall::from_json_text("a".into(), "read".into(), r#"{"path": "x"}"#);
        assert_eq!((ok.input, ok.malformed), (json!({"path": "x"}), None));
        let blank = ToolCall::from_json_text("a".into(), "list".into(), "  ");
        assert_eq!((blank.input, blank.malformed), (json!({}), None));
        let cut = ToolCall::from_json_text("a".into(), "read".into(), r#"{"path": "x"#);
        let why = cut.malformed.expect("malformed");
        assert!(why.starts_with("the arguments are not JSON ("), "{why}");
        assert!(why.ends_with(r#": {"path": "x"#), "{why}");
        assert_eq!(cut.input, json!({}));
        let list = ToolCall::from_json_text("a".into(), "read".into(), "[1, 2]");
        assert_eq!(
            list.malformed.as_deref(),
            Some("the arguments are an array, not a JSON object: [1, 2]")
        );
        let long = ToolCall::from_json_text("a".into(), "read".into(), &"x".repeat(1000));
        let why = long.malformed.expect("malformed");
        assert!(why.ends_with('…') && why.len() < 400, "{why}");
    }

    #[test]
    fn arguments_as_values() {
        let text = ToolCall::from_json_value("a".into(), "r".into(), json!(r#"{"n": 1}"#));
        assert_eq!(text.input, json!({"n": 1}));
        let null = ToolCall::from_json_value("a".into(), "r".into(), json!(null));
        assert_eq!((null.input, null.malformed), (json!({}), None));
        let number = ToolCall::from_json_value("a".into(), "r".into(), json!(3));
        assert_eq!(
            number.malformed.as_deref(),
            Some("the arguments are a number, not a JSON object: 3")
        );
    }

    #[test]
    fn a_secret_in_arguments_is_redacted() {
        let key = crate::run::provider::ApiKey::new("conv-test-Zq8Rt3Wm6Ky1");
        let raw = format!("not json {}", key.expose());
        let call = ToolCall::from_json_text("a".into(), "r".into(), &raw);
        assert!(!call.malformed.as_deref().unwrap().contains(key.expose()));
        let call = ToolCall::from_json_text(
            "a".into(),
            "r".into(),
            &json!({ "k": key.expose(), key.expose(): [key.expose()] }).to_string(),
        )
        .redacted();
        assert!(!call.input.to_string().contains(key.expose()), "{call:?}");
    }

    #[test]
    fn ids_and_stop_reasons() {
        let call = ToolCall::from_json_text("x".into(), "r".into(), "{}");
        let turns = [
            Turn::Assistant {
                text: String::new(),
                calls: vec![call.clone(), call],
            },
            Turn::Tools { results: vec![] },
        ];
        assert_eq!(made_up_id(&[], 0), "call_1");
        assert_eq!(made_up_id(&turns, 1), "call_4");
        assert_eq!(StopReason::from_wire(Some("stop"), 0), StopReason::EndTurn);
        assert_eq!(StopReason::from_wire(Some("stop"), 2), StopReason::ToolUse);
        assert_eq!(StopReason::from_wire(None, 0), StopReason::EndTurn);
        assert_eq!(
            StopReason::from_wire(Some("tool_calls"), 1),
            StopReason::ToolUse
        );
        assert_eq!(
            StopReason::from_wire(Some("length"), 1),
            StopReason::MaxTokens
        );
        assert_eq!(
            StopReason::from_wire(Some("content_filter"), 0),
            StopReason::Other("content_filter".into())
        );
    }
}
