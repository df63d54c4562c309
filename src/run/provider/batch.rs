//! Provider batch APIs: many requests sent at once, answered within a day, at half the price
//! (`parallel <batch>`, docs/language.md, "Batches").
//!
//! - Anthropic Message Batches ([`super::anthropic::Anthropic::batch_create`]): `POST
//!   /v1/messages/batches` with `{requests: [{custom_id, params}]}`, `params` being a Messages
//!   request body; `GET /v1/messages/batches/{id}` until `processing_status` is `ended`
//!   (`in_progress`, `canceling`, `ended`); then the JSON Lines at `results_url`, one
//!   `{custom_id, result: {type: succeeded|errored|canceled|expired, ...}}` a request. Source:
//!   Anthropic API reference, "Create a Message Batch", "Retrieve a Message Batch",
//!   "Retrieve Message Batch results", <https://docs.anthropic.com/en/api/creating-message-batches>.
//! - The OpenAI Batch API ([`super::openai::OpenAi::batch_create`]): the requests as a JSON
//!   Lines file (`{custom_id, method: "POST", url: "/v1/chat/completions", body}` a line)
//!   uploaded with `POST /v1/files` (multipart, `purpose=batch`); `POST /v1/batches` with
//!   `{input_file_id, endpoint: "/v1/chat/completions", completion_window: "24h"}`; `GET
//!   /v1/batches/{id}` until `status` is `completed`, `failed`, `expired` or `cancelled`
//!   (before: `validating`, `in_progress`, `finalizing`, `cancelling`); then `GET
//!   /v1/files/{output_file_id}/content` and `/v1/files/{error_file_id}/content`, one
//!   `{custom_id, response: {status_code, body}, error}` a line. Source: OpenAI API
//!   reference, "Batch", <https://platform.openai.com/docs/api-reference/batch>, and "Files",
//!   <https://platform.openai.com/docs/api-reference/files/create>.
//! - The simulator ([`super::sim::Sim`]): a batch that ends after the simulator's latency,
//!   answered as the simulator answers one request.
//!
//! Every text that comes back is redacted ([`crate::redact`]) before it is parsed, as the
//! clients' other answers are.

use std::collections::HashMap;

use super::{Completion, CompletionRequest, Provider, ProviderError};

/// One request of a batch: its `custom_id` (unique within the batch: `[A-Za-z0-9_-]{1,64}`,
/// which both APIs accept) and the request.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// The request's id within its batch.
    pub custom_id: &'a str,
    /// The request.
    pub req: &'a CompletionRequest,
}

/// What a poll of a batch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPoll {
    /// The provider's status word (`in_progress`, `ended`, `completed`, `expired`, ...).
    pub status: String,
    /// Whether the batch has ended: its results, if any, can be read.
    pub ended: bool,
    /// Where the results are: Anthropic's `results_url`; OpenAI's `output_file_id` and
    /// `error_file_id`.
    pub results: Vec<String>,
    /// Why a batch failed as a whole (OpenAI's `errors.data[].message`), when it says.
    pub error: Option<String>,
}

/// The outcome of each request of an ended batch, by `custom_id` (a request the batch did not
/// answer has a [`ProviderError::Batch`]).
pub type BatchResults = HashMap<String, Result<Completion, ProviderError>>;

/// A provider's batch API, when it has one.
#[derive(Debug, Clone, Copy)]
pub enum BatchApi<'a> {
    /// Anthropic Message Batches.
    Anthropic(&'a super::anthropic::Anthropic),
    /// The OpenAI Batch API.
    OpenAi(&'a super::openai::OpenAi),
    /// The simulator's batches.
    Sim(&'a super::sim::Sim),
}

impl Provider {
    /// The batch API of this provider: the provider's own (a recorded one's too, `--record`);
    /// `None` for a replayed cassette (`--replay`), which answers each request by its identity
    /// instead.
    pub fn batch_api(&self) -> Option<BatchApi<'_>> {
        match self {
            Provider::Anthropic(p) => Some(BatchApi::Anthropic(p)),
            Provider::OpenAi(p) => Some(BatchApi::OpenAi(p)),
            Provider::Sim(p) => Some(BatchApi::Sim(p)),
            Provider::Record(inner, _) => inner.batch_api(),
            Provider::Replay(_) => None,
        }
    }

    /// When recording (`--record`): writes each outcome of a batch to the cassette, as if each
    /// request had been sent alone, so that a replay answers it by its identity.
    ///
    /// # Errors
    /// The cassette cannot be written.
    pub fn note_batch_outcome(
        &self,
        req: &CompletionRequest,
        outcome: &Result<Completion, ProviderError>,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Record(_, cassette) => cassette
                .note_completion(req, outcome)
                .map_err(ProviderError::NotRecorded),
            _ => Ok(()),
        }
    }
}

impl BatchApi<'_> {
    /// The provider kind, for messages (`anthropic`, `openai`, `sim`).
    pub fn kind(&self) -> &'static str {
        match self {
            BatchApi::Anthropic(_) => "anthropic",
            BatchApi::OpenAi(_) => "openai",
            BatchApi::Sim(_) => "sim",
        }
    }

    /// Whether requests for different models may share one batch: Anthropic's may (each
    /// request names its model); an OpenAI batch input file "can only include requests to a
    /// single model" (OpenAI, "Batch API" guide, <https://platform.openai.com/docs/guides/batch>).
    pub fn mixes_models(&self) -> bool {
        !matches!(self, BatchApi::OpenAi(_))
    }

    /// Submits `items` as one batch; returns the batch's id.
    ///
    /// # Errors
    /// [`ProviderError`] when the provider refuses the batch or cannot be reached.
    pub async fn create(&self, items: &[BatchItem<'_>]) -> Result<String, ProviderError> {
        match self {
            BatchApi::Anthropic(p) => p.batch_create(items).await,
            BatchApi::OpenAi(p) => p.batch_create(items).await,
            BatchApi::Sim(p) => Ok(p.batch_create(items)),
        }
    }

    /// Asks how batch `id` is doing.
    ///
    /// # Errors
    /// [`ProviderError`] when the provider cannot be reached or answers with an error (a
    /// batch it does not know: HTTP 404).
    pub async fn poll(&self, id: &str) -> Result<BatchPoll, ProviderError> {
        match self {
            BatchApi::Anthropic(p) => p.batch_poll(id).await,
            BatchApi::OpenAi(p) => p.batch_poll(id).await,
            BatchApi::Sim(p) => Ok(p.batch_poll(id)),
        }
    }

    /// The lines of an ended batch's results (`poll` is its last poll), at most `limit`
    /// bytes a file, by `custom_id`; read each with [`BatchApi::read`]. The simulator has
    /// none: it answers in [`BatchApi::read`].
    ///
    /// # Errors
    /// [`ProviderError`] when the results cannot be fetched, are longer than `limit` or are
    /// not JSON Lines with a `custom_id` each.
    pub async fn raw_results(
        &self,
        poll: &BatchPoll,
        limit: usize,
    ) -> Result<HashMap<String, serde_json::Value>, ProviderError> {
        let lines = match self {
            BatchApi::Anthropic(p) => p.batch_raw(poll, limit).await?,
            BatchApi::OpenAi(p) => p.batch_raw(poll, limit).await?,
            BatchApi::Sim(_) => Vec::new(),
        };
        Ok(lines.into_iter().collect())
    }

    /// The outcome of `item` in its batch's results (`line`, absent when the results have no
    /// line for it: [`ProviderError::Batch`] saying how the batch ended, from `poll`). The
    /// simulator answers the request.
    ///
    /// # Errors
    /// The request's failure in the batch; [`ProviderError::Malformed`] for a line that is not
    /// an answer.
    pub fn read(
        &self,
        item: BatchItem<'_>,
        line: Option<&serde_json::Value>,
        poll: &BatchPoll,
    ) -> Result<Completion, ProviderError> {
        match (self, line) {
            (BatchApi::Sim(p), _) => p.batch_answer(item.req),
            (BatchApi::Anthropic(_), Some(line)) => {
                super::anthropic::Anthropic::batch_read(item.custom_id, line, item.req)
            }
            (BatchApi::OpenAi(p), Some(line)) => p.batch_read(item.custom_id, line, item.req),
            (_, None) => Err(ProviderError::Batch {
                provider: self.kind(),
                message: format!(
                    "the batch ended `{}` without an answer to it{}",
                    poll.status,
                    poll.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
                retryable: true,
            }),
        }
    }

    /// The outcomes of `items`, the requests of an ended batch (`poll` is its last poll),
    /// each parsed as that request's answer would be, by `custom_id`.
    ///
    /// # Errors
    /// As [`BatchApi::raw_results`], with every request's answer bound together as the limit.
    pub async fn results(
        &self,
        poll: &BatchPoll,
        items: &[BatchItem<'_>],
    ) -> Result<BatchResults, ProviderError> {
        let raw = self.raw_results(poll, results_bytes(items)).await?;
        Ok(items
            .iter()
            .map(|&i| {
                (
                    i.custom_id.to_string(),
                    self.read(i, raw.get(i.custom_id), poll),
                )
            })
            .collect())
    }
}

/// The most bytes of a batch's results read: the bound of each request's answer
/// ([`super::envelope_bytes`]) summed, plus 64 KiB.
pub fn results_bytes(items: &[BatchItem<'_>]) -> usize {
    items
        .iter()
        .map(|i| super::envelope_bytes(i.req.max_output_bytes))
        .fold(64 * 1024, usize::saturating_add)
}

/// The lines of a JSON Lines body that are JSON objects with a `custom_id`, with that id; a
/// blank line is skipped.
///
/// # Errors
/// [`ProviderError::Malformed`] naming the first line that is not such an object.
pub(super) fn jsonl_lines(
    provider: &'static str,
    body: &str,
) -> Result<Vec<(String, serde_json::Value)>, ProviderError> {
    let mut lines = Vec::new();
    for (n, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| ProviderError::Malformed {
                provider,
                message: format!("batch results, line {}: {e}", n + 1),
            })?;
        let Some(id) = value.get("custom_id").and_then(|v| v.as_str()) else {
            return Err(ProviderError::Malformed {
                provider,
                message: format!("batch results, line {}: no `custom_id`", n + 1),
            });
        };
        lines.push((id.to_string(), value));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_need_a_custom_id() {
        let ok = jsonl_lines(
            "openai",
            "{\"custom_id\":\"r1\"}\n\n{\"custom_id\":\"r2\"}\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].0, "r2");
        let err = jsonl_lines("openai", "{\"custom_id\":\"r1\"}\n{}\n").unwrap_err();
        assert!(err.to_string().contains("line 2: no `custom_id`"), "{err}");
        let err = jsonl_lines("openai", "nope\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
