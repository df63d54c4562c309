//! The record of every model call: what was sent and what came back, redacted, as an `attempt`
//! journal record ([`journal::AttemptRecord`]) and an [`Event::Attempt`]; and what is about to
//! be sent, as an [`Event::Sending`] (`orch run -v`).

use super::journal::{AttemptRecord, TextDigest};
use super::provider::{CompletionRequest, StopReason, Turn};
use super::report::Sending;
use super::{Event, prepare::Shared};
use crate::redact::redact;

/// What a request sends, as people read it, redacted: its system text, and its prompt — for
/// a turn of an agent loop after the first, the tool results it sends back.
pub(super) fn sent_texts(req: &CompletionRequest) -> (Option<String>, String) {
    let system = req
        .system
        .as_ref()
        .map(|s| redact(s.as_str()).into_string());
    let prompt = match req.turns.last() {
        Some(Turn::Tools { results }) => {
            let names = match req.turns.iter().rev().nth(1) {
                Some(Turn::Assistant { calls, .. }) => calls.as_slice(),
                _ => &[],
            };
            let parts: Vec<String> = results
                .iter()
                .map(|r| {
                    let tool = names
                        .iter()
                        .find(|c| c.id == r.call_id)
                        .map_or("?", |c| c.name.as_str());
                    let error = if r.is_error { ", error" } else { "" };
                    format!("[result of `{tool}` ({}){error}]\n{}", r.call_id, r.content)
                })
                .collect();
            parts.join("\n\n")
        }
        _ => req.prompt.clone(),
    };
    (system, redact(prompt).into_string())
}

/// The stop reason in the journal's words ([`AttemptRecord::stop_reason`]).
pub fn stop_word(stop: &StopReason) -> String {
    match stop {
        StopReason::EndTurn => "end_turn".into(),
        StopReason::ToolUse => "tool_use".into(),
        StopReason::MaxTokens => "max_tokens".into(),
        StopReason::Other(word) => word.clone(),
    }
}

/// Sends [`Event::Sending`] for a model call about to go out, when the run asked for these
/// events ([`super::RunOptions::sending_events`]); `sent` is what it sends ([`sent_texts`],
/// computed once per attempt for this event and the attempt's [`record`]).
pub(super) fn sending(
    shared: &Shared,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    step: &str,
    model: &str,
    attempt: u32,
    turn: Option<u32>,
    sent: &(Option<String>, String),
) {
    if !shared.sending_events {
        return;
    }
    let (system, prompt) = sent.clone();
    let _ = tx.send(Event::Sending(Box::new(Sending {
        step: step.to_string(),
        model: model.to_string(),
        attempt,
        turn,
        system,
        prompt,
    })));
}

/// Journals a model call that ended (when the run has a journal) and reports it as an
/// [`Event::Attempt`]. Its texts are redacted first; when the run does not store prompts
/// (`--no-store-prompts`), the system text, prompt and answer are replaced by their digests in
/// both. A journal that cannot be written stops nothing here: the step's own record will fail
/// to be written too, and that stops the run. `sent` is what the request sent
/// ([`sent_texts`]).
pub(super) fn record(
    shared: &Shared,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    sent: (Option<String>, String),
    answer: Option<&str>,
    mut record: AttemptRecord,
) {
    let (system, prompt) = sent;
    let answer = answer.map(|a| redact(a).into_string());
    record.error = record.error.map(|e| redact(e).into_string());
    if shared.store_prompts {
        record.system = system;
        record.prompt = Some(prompt);
        record.answer = answer;
    } else {
        record.system_digest = system.as_deref().map(TextDigest::of);
        record.prompt_digest = Some(TextDigest::of(&prompt));
        record.answer_digest = answer.as_deref().map(TextDigest::of);
    }
    let record = std::sync::Arc::new(record);
    if let Some(j) = &shared.agents.journal {
        // Shared with the writer thread (not copied).
        let _ = j.attempt(&record);
    }
    let _ = tx.send(Event::Attempt(record));
}
