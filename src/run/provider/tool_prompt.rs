//! The tool-call protocol for servers without native tool calls: the tools and a JSON call
//! format described in the system text, the conversation as plain messages, and the calls
//! read back from the answer's text.
//!
//! An OpenAI-compatible client switches to it for a model when the server rejects a request's
//! `tools` (see `openai::rejects_tools`), and keeps to it for that model. The protocol, as
//! the model is told it ([`system_text`]):
//!
//! ```text
//! {"tool_calls": [{"name": "read", "arguments": {"path": "notes.txt"}}]}
//! ```
//!
//! - a call is an answer holding such a JSON object (alone, or inside a ```` ```json ````
//!   fence, or after some words); several calls go in one list. A lone
//!   `{"name": ..., "arguments": ...}` object is read as one call (small models write it so).
//!   `parameters` is accepted for `arguments`; `arguments` may also be a string holding the
//!   JSON object.
//! - calls get the ids `call_N` (see [`super::conversation::made_up_id`]); arguments that are
//!   not a JSON object, a call without a name, or an answer that mentions `"tool_calls"` but
//!   holds no readable object make [`ToolCall::malformed`] calls (the last one with an empty
//!   name), answered by the agent loop with an error result.
//! - the model's earlier calls go back to it as assistant messages holding the same JSON, and
//!   their results as one user message ([`results_text`]), errors marked `(error)`.
//! - with [`ToolChoice::None`] the system text says not to call tools, and the answer is taken
//!   as text.

use super::conversation::made_up_id;
use super::{OfferedTool, ToolCall, ToolChoice, ToolResult, Turn};

/// The key of the call list in the protocol's JSON object.
pub const CALLS_KEY: &str = "tool_calls";

/// How many `{` of an answer are tried as the start of the protocol's JSON object: enough for
/// any answer a model writes, and bounded so that a pathological answer costs little.
const MAX_OBJECT_STARTS: usize = 64;

/// The system text of a request in the fallback protocol: the agent's system text (if any), a
/// blank line, then the tools (name, description, argument schema) and the protocol, or with
/// [`ToolChoice::None`] the instruction to answer without tools.
pub fn system_text(system: Option<&str>, tools: &[OfferedTool], choice: &ToolChoice) -> String {
    let mut out = String::new();
    if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
        out.push_str(system);
        out.push_str("\n\n");
    }
    if *choice == ToolChoice::None {
        out.push_str(
            "Do not call any tool now: answer the request in plain text, using the tool \
             results you already have.",
        );
        return out;
    }
    out.push_str("You can call these tools (each with the JSON Schema of its arguments):\n");
    for tool in tools {
        let spec = &tool.spec;
        out.push_str(&format!(
            "- {}: {}\n  arguments: {}\n",
            spec.name,
            spec.description.trim(),
            spec.input_schema
        ));
    }
    out.push_str(&format!(
        "\nTo call tools, answer with only a JSON object of this form, and nothing else:\n\
         {{\"{CALLS_KEY}\": [{{\"name\": \"TOOL\", \"arguments\": {{...}}}}]}}\n\
         You may make several calls at once. Their results come back in the next message. \
         When you have what you need, give your answer in plain text, without \"{CALLS_KEY}\"."
    ));
    out
}

/// The text of an assistant turn in the protocol: its text, then (on a line of its own) the
/// JSON object of its calls, if any. Malformed calls go back with `{}` as their arguments.
pub fn assistant_text(text: &str, calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return text.to_owned();
    }
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "arguments": c.input}))
        .collect();
    let object = serde_json::json!({ CALLS_KEY: calls });
    if text.trim().is_empty() {
        object.to_string()
    } else {
        format!("{}\n{object}", text.trim_end())
    }
}

/// The user message carrying a turn's tool results: one section per result, headed by its
/// call's id and tool name (looked up in `turns`), `(error)` for a failure.
pub fn results_text(turns: &[Turn], results: &[ToolResult]) -> String {
    let mut out = String::from("Results of your tool calls:\n");
    for result in results {
        let name = tool_name(turns, &result.call_id).unwrap_or("?");
        let status = if result.is_error { " (error)" } else { "" };
        out.push_str(&format!(
            "\n--- {} {name}{status} ---\n{}\n",
            result.call_id,
            result.content.trim_end()
        ));
    }
    out
}

/// The name of the tool of call `id` in `turns`.
fn tool_name<'a>(turns: &'a [Turn], id: &str) -> Option<&'a str> {
    turns.iter().rev().find_map(|turn| match turn {
        Turn::Assistant { calls, .. } => calls.iter().find(|c| c.id == id).map(|c| c.name.as_str()),
        Turn::Tools { .. } => None,
    })
}

/// The conversation after the prompt as `(role, text)` messages: assistant turns as
/// [`assistant_text`], results as user messages ([`results_text`]), so that the roles
/// alternate as every chat template wants.
pub fn messages(turns: &[Turn]) -> Vec<(&'static str, String)> {
    turns
        .iter()
        .enumerate()
        .map(|(i, turn)| match turn {
            Turn::Assistant { text, calls } => ("assistant", assistant_text(text, calls)),
            Turn::Tools { results } => ("user", results_text(&turns[..i], results)),
        })
        .collect()
}

/// An answer in the protocol: the text outside the call object (trimmed, a code fence around
/// the object removed) and the calls, with ids following `turns` (see the module doc). An
/// answer without calls is returned whole.
pub fn parse_answer(answer: &str, turns: &[Turn]) -> (String, Vec<ToolCall>) {
    // A model that was shown its earlier calls HTML-escaped (llama-cpp-python's
    // `chatml-function-calling` template escapes every message) writes its calls so too.
    let unescaped;
    let answer = if find_call_object(answer).is_none() && answer.contains("&#34;") {
        unescaped = unescape_html(answer);
        unescaped.as_str()
    } else {
        answer
    };
    let Some((start, end, object)) = find_call_object(answer) else {
        if answer.contains(&format!("\"{CALLS_KEY}\"")) {
            let call = ToolCall::malformed(
                made_up_id(turns, 0),
                String::new(),
                &format!("the answer mentions \"{CALLS_KEY}\" but holds no readable JSON object"),
                answer,
            );
            return (String::new(), vec![call]);
        }
        return (answer.to_owned(), Vec::new());
    };
    let calls = calls_of(object, turns);
    let before = strip_fence_open(&answer[..start]);
    let after = strip_fence_close(&answer[end..]);
    let text = format!("{}{}", before.trim(), after.trim());
    (text.trim().to_owned(), calls)
}

/// `text` with the entities Jinja's HTML escaping makes (`&#34;`, `&#39;`, `&lt;`, `&gt;`,
/// `&amp;`, `&quot;`) turned back into characters.
fn unescape_html(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The first JSON object in `answer` that is a call list or a lone call: its byte range and
/// value.
fn find_call_object(answer: &str) -> Option<(usize, usize, serde_json::Value)> {
    answer
        .match_indices('{')
        .take(MAX_OBJECT_STARTS)
        .find_map(|(start, _)| {
            let mut values = serde_json::Deserializer::from_str(&answer[start..])
                .into_iter::<serde_json::Value>();
            let value = values.next()?.ok()?;
            let end = start + values.byte_offset();
            is_call_object(&value).then_some((start, end, value))
        })
}

fn is_call_object(value: &serde_json::Value) -> bool {
    value.get(CALLS_KEY).is_some_and(|v| v.is_array())
        || (value.get("name").is_some_and(|n| n.is_string())
            && (value.get("arguments").is_some() || value.get("parameters").is_some()))
}

/// The calls of a call object.
fn calls_of(object: serde_json::Value, turns: &[Turn]) -> Vec<ToolCall> {
    let items = match object.get(CALLS_KEY) {
        Some(serde_json::Value::Array(items)) => items.clone(),
        _ => vec![object],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| call_of(item, made_up_id(turns, i)))
        .collect()
}

fn call_of(mut item: serde_json::Value, id: String) -> ToolCall {
    let Some(name) = item
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
    else {
        let raw = item.to_string();
        return ToolCall::malformed(id, String::new(), "a call without a \"name\"", &raw);
    };
    let key = if item.get("arguments").is_some() {
        "arguments"
    } else {
        "parameters"
    };
    let arguments = item.get_mut(key).map(serde_json::Value::take);
    ToolCall::from_json_value(id, name, arguments.unwrap_or_default())
}

/// Text before a call object, without the opening of a code fence right before it.
fn strip_fence_open(text: &str) -> &str {
    let trimmed = text.trim_end();
    for fence in ["```json", "```JSON", "```"] {
        if let Some(rest) = trimmed.strip_suffix(fence) {
            return rest;
        }
    }
    text
}

/// Text after a call object, without the closing of a code fence right after it.
fn strip_fence_close(text: &str) -> &str {
    text.trim_start().strip_prefix("```").unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::provider::ToolSpec;
    use serde_json::json;

    fn tool(name: &str) -> OfferedTool {
        OfferedTool {
            spec: ToolSpec {
                name: name.into(),
                description: format!("The {name} tool."),
                input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            },
            read_only: true,
        }
    }

    #[test]
    fn system_text_lists_tools_and_protocol() {
        let text = system_text(
            Some("Be brief."),
            &[tool("read"), tool("grep")],
            &ToolChoice::Auto,
        );
        assert!(
            text.starts_with("Be brief.\n\nYou can call these tools"),
            "{text}"
        );
        assert!(
            text.contains("- read: The read tool.\n  arguments: {\"type\":\"object\""),
            "{text}"
        );
        assert!(text.contains("- grep: The grep tool."), "{text}");
        assert!(text.contains(r#"{"tool_calls": [{"name": "TOOL", "arguments": {...}}]}"#));
        let none = system_text(None, &[tool("read")], &ToolChoice::None);
        assert!(none.starts_with("Do not call any tool now"), "{none}");
        assert!(!none.contains("- read"), "{none}");
    }

    #[test]
    fn parses_call_lists_lone_calls_and_fences() {
        let (text, calls) = parse_answer(
            r#"{"tool_calls": [{"name": "read", "arguments": {"path": "a"}}, {"name": "grep", "arguments": "{\"pattern\": \"x\"}"}]}"#,
            &[],
        );
        assert_eq!(text, "");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_1", "read")
        );
        assert_eq!(calls[0].input, json!({"path": "a"}));
        assert_eq!(calls[1].input, json!({"pattern": "x"}));
        let (text, calls) = parse_answer(
            "Let me look.\n```json\n{\"name\": \"list\", \"parameters\": {\"path\": \".\"}}\n```\n",
            &[],
        );
        assert_eq!(text, "Let me look.");
        assert_eq!(calls[0].name, "list");
        assert_eq!(calls[0].input, json!({"path": "."}));
        // A JSON answer that is no call is the answer.
        let plain = r#"The config is {"debug": true}."#;
        assert_eq!(parse_answer(plain, &[]), (plain.to_owned(), vec![]));
    }

    #[test]
    fn html_escaped_calls_are_read() {
        let (text, calls) = parse_answer(
            "{&#34;tool_calls&#34;:[{&#34;name&#34;:&#34;read&#34;,&#34;arguments&#34;:{&#34;path&#34;:&#34;a &amp; b&#34;}}]}",
            &[],
        );
        assert_eq!(text, "");
        assert_eq!(calls[0].input, json!({"path": "a & b"}));
    }

    #[test]
    fn malformed_calls_are_calls_with_a_reason() {
        let (_, calls) = parse_answer(
            r#"{"tool_calls": [{"name": "read", "arguments": 7}, {"arguments": {}}]}"#,
            &[],
        );
        assert!(calls[0].malformed.as_deref().unwrap().contains("a number"));
        assert_eq!(calls[1].name, "");
        assert_eq!(
            calls[1].malformed.as_deref(),
            Some(r#"a call without a "name": {"arguments":{}}"#)
        );
        let (text, calls) = parse_answer(
            r#"{"tool_calls": [{"name": "read", "arguments": {"path"#,
            &[],
        );
        assert_eq!(text, "");
        assert_eq!(calls.len(), 1);
        assert!(
            calls[0]
                .malformed
                .as_deref()
                .unwrap()
                .contains("no readable JSON object")
        );
    }

    #[test]
    fn the_conversation_goes_back_as_alternating_messages() {
        let call = ToolCall::from_json_text("call_1".into(), "read".into(), r#"{"path":"a"}"#);
        let turns = vec![
            Turn::Assistant {
                text: "Looking.".into(),
                calls: vec![call],
            },
            Turn::Tools {
                results: vec![ToolResult {
                    call_id: "call_1".into(),
                    content: "no such file\n".into(),
                    is_error: true,
                }],
            },
        ];
        assert_eq!(
            messages(&turns),
            vec![
                (
                    "assistant",
                    "Looking.\n{\"tool_calls\":[{\"name\":\"read\",\"arguments\":{\"path\":\"a\"}}]}"
                        .to_owned()
                ),
                (
                    "user",
                    "Results of your tool calls:\n\n--- call_1 read (error) ---\nno such file\n"
                        .to_owned()
                ),
            ]
        );
        // The next call's id follows the conversation's.
        let (_, calls) = parse_answer(r#"{"name": "read", "arguments": {}}"#, &turns);
        assert_eq!(calls[0].id, "call_2");
    }
}
