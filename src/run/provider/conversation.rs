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
