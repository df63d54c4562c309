//! Tools an agent loop may call: one [`Tool`] interface, so the loop does not know where a
//! tool comes from (a built-in file tool, `exec`, an MCP server, a delegation).
//!
//! Principles (`docs/language.md`, "Tools"):
//! - a tool failure, and a refused call (outside the workspace, not allowlisted), is data for
//!   the model: an error [`ToolOutput`], never a crash of the run;
//! - every text a tool returns passes [`crate::redact::redact`] before anything else reads it,
//!   then is cut to the output cap ([`ToolOutput::new`] does both, in that order).

pub mod builtin;
pub mod exec;
pub mod mcp;
pub mod paths;
pub mod search;

pub use builtin::tools_for;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::redact::redact;
use crate::run::provider::conversation::ToolSpec;

/// A boxed future, for dyn-compatible async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bound on the text of one tool result sent back to the model, in bytes: 64 KiB, about 16,000
/// tokens at 4 bytes a token, so one result cannot fill a context window by itself.
pub const DEFAULT_MAX_RESULT_BYTES: usize = crate::grant::MAX_RESULT_BYTES;

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result text for the model: redacted, then cut to the cap.
    pub content: String,
    /// Whether it reports a failure (the model sees it as an error result).
    pub is_error: bool,
    /// Whether the call was refused before it ran (outside the workspace, not granted, not
    /// allowlisted, malformed arguments): counted and reported apart from failures.
    pub refused: bool,
    /// A few words for progress lines and reports (`12 matches`, `wrote 3 lines`).
    pub summary: String,
}

impl ToolOutput {
    /// A result from outside text: redacted first, then cut to `max_bytes` (on a character
    /// boundary, saying how much was cut).
    pub fn new(text: &str, is_error: bool, summary: impl Into<String>, max_bytes: usize) -> Self {
        let redacted = redact(text).into_string();
        ToolOutput {
            content: cap(redacted, max_bytes),
            is_error,
            refused: false,
            summary: summary.into(),
        }
    }

    /// A refusal: an error result saying why, which the model can react to.
    pub fn refused(why: impl Into<String>) -> Self {
        let why = redact(why.into()).into_string();
        ToolOutput {
            summary: "refused".into(),
            content: why,
            is_error: true,
            refused: true,
        }
    }
}

/// `text` cut to at most `max_bytes` bytes on a character boundary, with a note of what was
/// left out.
fn cap(text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[... {} more bytes not shown]",
        &text[..end],
        text.len() - end
    )
}

/// What every tool call may need from the run.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The workspace root, canonical: file tools never reach outside it (`--workspace`, by
    /// default the directory orch runs in).
    pub workspace: PathBuf,
    /// Bound on one call (the agent's `tool_timeout`).
    pub timeout: Duration,
    /// Bound on one result's text, in bytes ([`DEFAULT_MAX_RESULT_BYTES`] by default).
    pub max_result_bytes: usize,
}

/// A tool an agent loop can call.
pub trait Tool: Send + Sync {
    /// Its name, description and input schema, as offered to the model.
    fn spec(&self) -> ToolSpec;
    /// Whether it only reads (the simulator calls only these; MCP tools say so by their
    /// `readOnlyHint` annotation).
    fn read_only(&self) -> bool;
    /// Runs one call with `input` (a JSON object the model wrote: validate it). Never
    /// panics on bad input; a failure is an error [`ToolOutput`].
    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_redacted_before_they_are_cut() {
        let key = "sk-tools-cap-0123456789abcdef";
        crate::redact::register(key);
        // The cut would fall inside the key: redaction first leaves no part of it.
        let text = format!("{}{key}", "x".repeat(10));
        let out = ToolOutput::new(&text, false, "read", 20);
        assert!(!out.content.contains("sk-tools"), "{}", out.content);
        assert!(out.content.starts_with("xxxxxxxxxx<redacted>"));
    }

    #[test]
    fn long_results_say_what_was_cut() {
        let out = ToolOutput::new(&"é".repeat(100), false, "", 11);
        assert!(
            out.content
                .starts_with("ééééé\n[... 190 more bytes not shown]")
        );
        let refused = ToolOutput::refused("`../x` is outside the workspace");
        assert!(refused.is_error && refused.refused);
    }
}
