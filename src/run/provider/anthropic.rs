//! Client for the Anthropic Messages API.
//!
//! Source: Anthropic API reference, "Messages", <https://docs.anthropic.com/en/api/messages>
//! (request and response shapes), "Versions", <https://docs.anthropic.com/en/api/versioning>
//! (the `anthropic-version` header), "Errors", <https://docs.anthropic.com/en/api/errors>
//! (`{"type":"error","error":{"type":...,"message":...}}` bodies) and "Streaming Messages",
//! <https://docs.anthropic.com/en/api/messages-streaming> (with `"stream": true` the answer
//! is a stream of `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop`, then `message_delta`s with the cumulative
//! `usage.output_tokens` and the `stop_reason`, then `message_stop`; `ping` events may come
//! at any time, an `error` event (such as `overloaded_error`, which would be an HTTP 529
//! without streaming) may end the stream, and new event types may be added).
//!
//! Structured outputs use a forced tool call: "Tool use",
//! <https://docs.anthropic.com/en/docs/build-with-claude/tool-use> (`tools: [{name,
//! description, input_schema}]`, `tool_choice: {"type": "tool", "name"}`, and the answer's
//! `{"type": "tool_use", "id", "name", "input": {...}}` content block) and "Streaming
//! Messages" (a `tool_use` block starts with an empty `input`, which arrives as
//! `input_json_delta` deltas whose `partial_json` strings concatenate to the JSON text).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::conversation::made_up_id;
use super::{
    ApiKey, Call, Completion, CompletionRequest, FINAL_STREAM_ERRORS, HttpOptions, OutputFormat,
    ProgressFn, ProviderError, StopReason, ToolCall, ToolChoice as Choice, Turn, Usage, sse,
};
use crate::plan::estimate_tokens;
use crate::run::limits::ProviderLimits;
use crate::run::structured;

/// Provider kind, as it appears in [`ProviderError`]s.
const PROVIDER: &str = "anthropic";

/// The public Anthropic endpoint (the API paths, such as `/v1/messages`, hang off it).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version this client speaks, sent as the `anthropic-version` header.
pub const API_VERSION: &str = "2023-06-01";

/// A Messages API client: `POST {base_url}/v1/messages`.
///
/// Cheap to clone; all clients share one process-wide connection pool. `Debug` shows the base
/// URL, never the key.
#[derive(Clone)]
pub struct Anthropic {
    base_url: String,
    api_key: ApiKey,
    options: HttpOptions,
}

impl Anthropic {
    /// A client for the server at `base_url` — normally [`DEFAULT_BASE_URL`], without the
    /// `/v1` segment; a trailing slash is tolerated. The key is sent as `x-api-key`.
    ///
    /// It streams answers, with the default inactivity timeout and no rate limits
    /// ([`HttpOptions::default`]); see [`Anthropic::streaming`], [`Anthropic::idle_timeout`]
    /// and [`Anthropic::with_limits`].
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Anthropic {
            base_url,
            api_key,
            options: HttpOptions::default(),
        }
    }

    /// Asks for streamed answers (`true`, the default) or whole ones.
    pub fn streaming(mut self, stream: bool) -> Self {
        self.options.stream = stream;
        self
    }

    /// The longest silence tolerated while a streamed answer arrives.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.options.idle_timeout = idle;
        self
    }

    /// Reports every response's rate-limit headers to `limits`.
    pub fn with_limits(mut self, limits: Arc<ProviderLimits>) -> Self {
        self.options.limits = Some(limits);
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends one Messages request (exactly one HTTP attempt).
    ///
    /// Headers: `x-api-key`, `anthropic-version: 2023-06-01`, `content-type:
    /// application/json`. Body: `{model, max_tokens, system?, messages: [{role: "user",
    /// content: prompt}], temperature?}`. The answer's text is the concatenation of the
    /// `text` of every `content` block whose `type` is `"text"` (other blocks, such as
    /// `thinking`, are skipped); usage is `usage.input_tokens` / `usage.output_tokens` (prompt
    /// caching is never requested, so the cache token counts stay zero and are not added);
    /// the model is the response's `model`, or the requested one if absent.
    ///
    /// # Errors
    /// - [`ProviderError::Http`] for a non-2xx status (429 rate limit, 529 overloaded, ...),
    ///   with the body's `error.message` (or the body, shortened) and `retry_after_ms` from
    ///   `retry-after-ms` / `retry-after`;
    /// - [`ProviderError::Transport`] when the server cannot be reached, the connection breaks
    ///   or the request times out;
    /// - [`ProviderError::Malformed`] when a 2xx body is not a message with a `content` array.
    ///
    /// When streaming (the default), the body also has `"stream": true` and the answer is
    /// assembled from the events: the text is the concatenation of the `text_delta`s (other
    /// deltas, such as `thinking_delta`, are skipped), input tokens come from
    /// `message_start`'s `usage`, output tokens from the last `message_delta`'s cumulative
    /// `usage.output_tokens`. A server that ignores `stream` and answers with one JSON body is
    /// read as above.
    ///
    /// With a structured output ([`CompletionRequest::output`]) the body also has one tool,
    /// `{name: <format name>, description, input_schema}`, whose schema is the type's object
    /// schema ([`structured::tool_schema`]: a record as it is, any other type wrapped in
    /// `{"value": ...}`), and `tool_choice: {"type": "tool", "name": <format name>}`, which
    /// makes the model call it. The answer's text is then the tool call's `input` as compact
    /// JSON, the wrapper removed: the `input` of the `tool_use` block, or when streaming the
    /// concatenated `partial_json` of its `input_json_delta`s (left as received when it is not
    /// JSON, e.g. cut short by `max_tokens`, for the scheduler to report). An answer without a
    /// `tool_use` block falls back to its text blocks.
    ///
    /// # Errors
    /// As above, and when streaming:
    /// - [`ProviderError::Stream`] for an `error` event (its `error.type` decides whether it
    ///   is retried and whether it means overloaded), or a stream that ends before
    ///   `message_stop` (text received so far is dropped);
    /// - [`ProviderError::Idle`] when no bytes arrive for the inactivity timeout.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.complete_with_progress(req, &|_| {}).await
    }

    /// [`Anthropic::complete`], reporting the output tokens received so far (estimated at 4
    /// characters per token) to `progress` while a streamed answer arrives. The answer and any
    /// error are redacted ([`crate::redact`]).
    ///
    /// # Errors
    /// As [`Anthropic::complete`].
    pub async fn complete_with_progress(
        &self,
        req: &CompletionRequest,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        super::redact_outcome(self.send(req, progress).await)
    }

    /// [`Anthropic::complete_with_progress`] before its outcome is redacted.
    async fn send(
        &self,
        req: &CompletionRequest,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        let url = super::join_url(&self.base_url, "/v1/messages");
        let call = Call {
            provider: PROVIDER,
            url: &url,
            options: &self.options,
        };
        let client = super::http_client(PROVIDER, &url)?;
        let answer = answer_tool(req);
        let request = client
            .post(&url)
            .header("x-api-key", self.api_key.expose())
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .json(&MessagesRequest::new(
                req,
                self.options.stream,
                answer.as_ref(),
            ));
        let response = call.response(request).await?;
        if self.options.stream && super::is_event_stream(&response) {
            return read_stream(&call, response, req, answer.as_ref(), progress).await;
        }
        let body = call.body(response, req.max_output_bytes).await?;
        let response: MessagesResponse = super::parse_body(PROVIDER, &body)?;
        Ok(response.into_completion(req, answer.as_ref()))
    }
}

impl Anthropic {
    /// The options of a batch call: a whole body, bounded by the HTTP timeout (a batch call
    /// streams nothing).
    fn batch_options(&self) -> HttpOptions {
        HttpOptions {
            stream: false,
            ..self.options.clone()
        }
    }

    /// A request to `url` with this client's headers.
    fn batch_request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, url)
            .header("x-api-key", self.api_key.expose())
            .header("anthropic-version", API_VERSION)
    }

    /// Creates a Message Batch of `items`: `POST {base_url}/v1/messages/batches` with
    /// `{requests: [{custom_id, params}]}`, each `params` the body [`Anthropic::complete`]
    /// would send without streaming (a structured output's forced tool included). Returns
    /// the batch's `id`. Source: Anthropic API reference, "Create a Message Batch",
    /// <https://docs.anthropic.com/en/api/creating-message-batches>.
    ///
    /// # Errors
    /// As [`Anthropic::complete`] for the HTTP call; [`ProviderError::Malformed`] when the
    /// answer has no `id`.
    pub(super) async fn batch_create(
        &self,
        items: &[super::batch::BatchItem<'_>],
    ) -> Result<String, ProviderError> {
        let url = super::join_url(&self.base_url, "/v1/messages/batches");
        let options = self.batch_options();
        let call = Call {
            provider: PROVIDER,
            url: &url,
            options: &options,
        };
        let client = super::http_client(PROVIDER, &url)?;
        let answers: Vec<Option<AnswerTool<'_>>> =
            items.iter().map(|i| answer_tool(i.req)).collect();
        let requests: Vec<serde_json::Value> = items
            .iter()
            .zip(&answers)
            .map(|(i, a)| {
                serde_json::json!({
                    "custom_id": i.custom_id,
                    "params": MessagesRequest::new(i.req, false, a.as_ref()),
                })
            })
            .collect();
        let request = self
            .batch_request(&client, reqwest::Method::POST, &url)
            .json(&serde_json::json!({ "requests": requests }));
        let outcome = async {
            let response = call.response(request).await?;
            let body = call.body(response, 0).await?;
            let batch: MessageBatch = super::parse_body(PROVIDER, &body)?;
            Ok(batch.id)
        };
        outcome.await.map_err(ProviderError::redacted)
    }

    /// Polls Message Batch `id`: `GET {base_url}/v1/messages/batches/{id}`; it has ended when
    /// `processing_status` is `ended` (before: `in_progress`, `canceling`), its results at
    /// `results_url`. Source: Anthropic API reference, "Retrieve a Message Batch",
    /// <https://docs.anthropic.com/en/api/retrieving-message-batches>.
    ///
    /// # Errors
    /// As [`Anthropic::complete`] for the HTTP call; [`ProviderError::Malformed`] when the
    /// answer is not a batch.
    pub(super) async fn batch_poll(
        &self,
        id: &str,
    ) -> Result<super::batch::BatchPoll, ProviderError> {
        let url = super::join_url(&self.base_url, &format!("/v1/messages/batches/{id}"));
        let options = self.batch_options();
        let call = Call {
            provider: PROVIDER,
            url: &url,
            options: &options,
        };
        let client = super::http_client(PROVIDER, &url)?;
        let outcome = async {
            let response = call
                .response(self.batch_request(&client, reqwest::Method::GET, &url))
                .await?;
            let body = call.body(response, 0).await?;
            let batch: MessageBatch = super::parse_body(PROVIDER, &body)?;
            Ok(super::batch::BatchPoll {
                ended: batch.processing_status == "ended",
                status: batch.processing_status,
                results: batch.results_url.into_iter().collect(),
                error: None,
            })
        };
        outcome.await.map_err(ProviderError::redacted)
    }

    /// The results of an ended Message Batch: the JSON Lines at its `results_url` (at most
    /// `limit` bytes, redacted), each `{custom_id, result}` with `result.type` `succeeded`
    /// (and the `message`, read as [`Anthropic::complete`] reads one), `errored`
    /// (`result.error.error.{type, message}`; retried as an ordinary request unless its type
    /// is final, such as `invalid_request_error`), `canceled` or `expired` (both retried):
    /// see [`Anthropic::batch_read`]. Source: Anthropic API reference, "Retrieve Message Batch
    /// results", <https://docs.anthropic.com/en/api/retrieving-message-batch-results>.
    ///
    /// # Errors
    /// As [`Anthropic::complete`] for the HTTP call; [`ProviderError::Malformed`] when a line
    /// is not a result; [`ProviderError::TooLarge`] when the results are longer than `limit`.
    pub(super) async fn batch_raw(
        &self,
        poll: &super::batch::BatchPoll,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, ProviderError> {
        let Some(url) = poll.results.first() else {
            return Ok(Vec::new());
        };
        let options = self.batch_options();
        let call = Call {
            provider: PROVIDER,
            url,
            options: &options,
        };
        let client = super::http_client(PROVIDER, url)?;
        let body = async {
            let response = call
                .response(self.batch_request(&client, reqwest::Method::GET, url))
                .await?;
            match call.read_body(response, limit).await? {
                (body, false) => Ok(super::redact_bytes(&body)),
                (_, true) => Err(ProviderError::TooLarge {
                    provider: PROVIDER,
                    max_output_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
                }),
            }
        }
        .await
        .map_err(ProviderError::redacted)?;
        super::batch::jsonl_lines(PROVIDER, &body)
    }

    /// The outcome of `req` in a line of a Message Batch's results (see
    /// [`Anthropic::batch_raw`]), redacted.
    pub(super) fn batch_read(
        id: &str,
        line: &serde_json::Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let result = line.get("result").cloned().unwrap_or_default();
        let kind = result.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let outcome = match kind {
            "succeeded" => {
                let message = result.get("message").cloned().unwrap_or_default();
                serde_json::from_value::<MessagesResponse>(message)
                    .map_err(|e| ProviderError::Malformed {
                        provider: PROVIDER,
                        message: format!("batch result `{id}`: {e}"),
                    })
                    .map(|m| m.into_completion(req, answer_tool(req).as_ref()))
            }
            "errored" => {
                let error = result
                    .pointer("/error/error")
                    .or_else(|| result.get("error"));
                let kind = error
                    .and_then(|e| e.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("error");
                let message = error
                    .and_then(|e| e.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("no message");
                Err(ProviderError::Batch {
                    provider: PROVIDER,
                    message: format!("{kind}: {message}"),
                    retryable: !FINAL_STREAM_ERRORS.contains(&kind),
                })
            }
            other => Err(ProviderError::Batch {
                provider: PROVIDER,
                message: format!(
                    "the request was {}",
                    if other.is_empty() {
                        "not answered"
                    } else {
                        other
                    }
                ),
                retryable: true,
            }),
        };
        super::redact_outcome(outcome)
    }
}

/// The parts of a Message Batch object this client reads.
#[derive(Debug, Deserialize)]
struct MessageBatch {
    id: String,
    #[serde(default)]
    processing_status: String,
    #[serde(default)]
    results_url: Option<String>,
}

/// The forced tool of a structured output: its format and name. Asked for when the request
/// has an output format and either offers no tools or has [`Choice::None`] (the agent loop's
/// final answer); while tools are offered with [`Choice::Auto`] the model must be free to
/// call them, and no output tool is added.
struct AnswerTool<'a> {
    format: &'a OutputFormat,
    name: String,
}

fn answer_tool(req: &CompletionRequest) -> Option<AnswerTool<'_>> {
    let format = req.output.as_ref()?;
    if !req.tools.is_empty() && req.tool_choice != Choice::None {
        return None;
    }
    // The step's name, unless a granted tool has it: then `_answer` is appended.
    let mut name = format.name.clone();
    while req.tools.iter().any(|t| t.spec.name == name) {
        name.push_str("_answer");
    }
    Some(AnswerTool { format, name })
}

/// The tool calls of an answer and, for a structured output, the answer tool's input as the
/// answer's text.
struct ToolBlocks {
    calls: Vec<ToolCall>,
    answer: Option<String>,
}

/// Sorts the `tool_use` blocks `(id, name, call)` of an answer: the answer tool's first call
/// becomes the text — or, without agent tools, the first call at all (a forced tool call
/// comes back under its name, but the test servers of other projects may not) — and the
/// others are tool calls, ids made up where missing.
fn sort_tool_blocks(
    req: &CompletionRequest,
    answer: Option<&AnswerTool<'_>>,
    blocks: Vec<(ToolCall, Option<String>)>,
) -> ToolBlocks {
    let mut out = ToolBlocks {
        calls: Vec::new(),
        answer: None,
    };
    for (i, (mut call, raw)) in blocks.into_iter().enumerate() {
        if let Some(a) =
            answer.filter(|a| out.answer.is_none() && (call.name == a.name || req.tools.is_empty()))
        {
            out.answer = Some(match (call.malformed, raw) {
                (Some(_), Some(raw)) => raw,
                _ => tool_answer(a.format, call.input),
            });
            continue;
        }
        if call.id.is_empty() {
            call.id = made_up_id(&req.turns, i);
        }
        out.calls.push(call);
    }
    out
}

/// Assembles a streamed message from its events.
async fn read_stream(
    call: &Call<'_>,
    response: reqwest::Response,
    req: &CompletionRequest,
    answer: Option<&AnswerTool<'_>>,
    progress: &ProgressFn<'_>,
) -> Result<Completion, ProviderError> {
    let mut events = sse::Reader::new(call, response, req.max_output_bytes);
    let mut ticker = sse::Ticker::new(progress);
    let mut text = String::new();
    // The `tool_use` blocks so far, by their index in the message.
    let mut tools: Vec<StreamedTool> = Vec::new();
    let mut model = None;
    let mut usage = Usage::default();
    let mut stop_reason = None;
    let mut stopped = false;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data.trim().is_empty() {
            continue;
        }
        match sse::parse_data::<StreamEvent>(call, &event.data)? {
            StreamEvent::MessageStart { message } => {
                model = message.model.filter(|m| !m.is_empty());
                if let Some(u) = message.usage {
                    usage.input_tokens = u.input_tokens.unwrap_or(0);
                    usage.output_tokens = u.output_tokens.unwrap_or(0);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block.kind.as_str() {
                "text" => {
                    if let Some(t) = content_block.text.filter(|t| !t.is_empty()) {
                        text.push_str(&t);
                        events.grew(answer_len(&text, &tools))?;
                    }
                }
                "tool_use" => tools.push(StreamedTool {
                    index,
                    id: content_block.id.unwrap_or_default(),
                    name: content_block.name.unwrap_or_default(),
                    start: content_block.input,
                    json: String::new(),
                }),
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta.kind.as_str() {
                // Only text (or a tool call's input) is progress: `ping` events and empty
                // deltas do not hold the stream open.
                "text_delta" => {
                    if let Some(t) = delta.text.filter(|t| !t.is_empty()) {
                        text.push_str(&t);
                        events.grew(answer_len(&text, &tools))?;
                        ticker.tick(estimate_tokens(&text) + tools_tokens(&tools));
                    }
                }
                "input_json_delta" => {
                    let block = tools.iter_mut().rev().find(|t| t.index == index);
                    if let (Some(block), Some(piece)) =
                        (block, delta.partial_json.filter(|p| !p.is_empty()))
                    {
                        block.json.push_str(&piece);
                        events.grew(answer_len(&text, &tools))?;
                        ticker.tick(estimate_tokens(&text) + tools_tokens(&tools));
                    }
                }
                _ => {}
            },
            StreamEvent::MessageDelta {
                delta,
                usage: Some(u),
            } => {
                if let Some(reason) = delta.and_then(|d| d.stop_reason) {
                    stop_reason = Some(reason);
                }
                // Counts in `message_delta` are cumulative.
                if let Some(n) = u.output_tokens {
                    usage.output_tokens = n;
                }
                if let Some(n) = u.input_tokens {
                    usage.input_tokens = n;
                }
            }
            StreamEvent::MessageStop {} => {
                stopped = true;
                break;
            }
            StreamEvent::Error { error } => {
                return Err(ProviderError::Stream {
                    provider: PROVIDER,
                    message: error
                        .message
                        .unwrap_or_else(|| "an error event without a message".into()),
                    kind: error.kind,
                });
            }
            StreamEvent::MessageDelta { delta, usage: None } => {
                if let Some(reason) = delta.and_then(|d| d.stop_reason) {
                    stop_reason = Some(reason);
                }
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Ping {} | StreamEvent::Other => {}
        }
    }
    if !stopped {
        return Err(ProviderError::Stream {
            provider: PROVIDER,
            kind: None,
            message: format!(
                "the connection closed before `message_stop` ({} characters received)",
                text.chars().count()
            ),
        });
    }
    let blocks = tools.into_iter().map(StreamedTool::finish).collect();
    Ok(completion(
        req,
        answer,
        text,
        blocks,
        stop_reason,
        usage,
        model,
    ))
}

/// The completion of an answer: its text blocks, its `tool_use` blocks (a call and, for a
/// streamed one, its raw JSON), why it stopped.
fn completion(
    req: &CompletionRequest,
    answer: Option<&AnswerTool<'_>>,
    text: String,
    blocks: Vec<(ToolCall, Option<String>)>,
    stop_reason: Option<String>,
    usage: Usage,
    model: Option<String>,
) -> Completion {
    let sorted = sort_tool_blocks(req, answer, blocks);
    let stop = match &sorted.answer {
        // The forced answer tool's call is the answer, not a call to run.
        Some(_) if sorted.calls.is_empty() => {
            StopReason::from_wire(stop_reason.as_deref().filter(|r| *r != "tool_use"), 0)
        }
        _ => StopReason::from_wire(stop_reason.as_deref(), sorted.calls.len()),
    };
    Completion {
        text: sorted.answer.unwrap_or(text),
        usage,
        model: model.unwrap_or_else(|| req.model.clone()),
        calls: sorted.calls,
        stop,
    }
}

/// A streamed `tool_use` block: its index in the message, id, name, the `input` it started
/// with, and the `partial_json` of its `input_json_delta`s.
struct StreamedTool {
    index: usize,
    id: String,
    name: String,
    start: Option<serde_json::Value>,
    json: String,
}

impl StreamedTool {
    /// The call, and the raw JSON when it came in deltas.
    fn finish(self) -> (ToolCall, Option<String>) {
        if self.json.trim().is_empty() {
            let input = self.start.unwrap_or_default();
            (ToolCall::from_json_value(self.id, self.name, input), None)
        } else {
            let call = ToolCall::from_json_text(self.id, self.name, &self.json);
            (call, Some(self.json))
        }
    }
}

/// Bytes of a streamed answer so far: its text and its tool calls' input.
fn answer_len(text: &str, tools: &[StreamedTool]) -> usize {
    text.len() + tools.iter().map(|t| t.json.len()).sum::<usize>()
}

/// The tool calls' input so far, in tokens (4 characters per token).
fn tools_tokens(tools: &[StreamedTool]) -> u64 {
    tools.iter().map(|t| estimate_tokens(&t.json)).sum()
}

/// The answer text of a structured output: the tool call's input as compact JSON, without the
/// `{"value": ...}` wrapper of a non-record type.
fn tool_answer(format: &OutputFormat, input: serde_json::Value) -> String {
    let (_, wrapped) = structured::tool_schema(&format.ty);
    structured::unwrap_tool_input(input, wrapped).to_string()
}

/// The events of a streamed message, by their `type` (unknown types are skipped, as the
/// versioning policy asks).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: usize,
        content_block: StreamBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: usize,
        delta: StreamBlock,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: Option<MessageDeltaBody>,
        #[serde(default)]
        usage: Option<StreamUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: StreamError,
    },
    #[serde(other)]
    Other,
}

/// `message_delta.delta`: `{stop_reason, stop_sequence}`.
#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<StreamUsage>,
}

/// A content block as started (`{type: "text", text: ""}`, `{type: "tool_use", id, name,
/// input: {}}`) or a delta (`{type: "text_delta", text: "..."}`, `{type: "input_json_delta",
/// partial_json: "..."}`).
#[derive(Debug, Deserialize)]
struct StreamBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StreamError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("stream", &self.options.stream)
            .finish()
    }
}

/// Request body of `POST /v1/messages`.
#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
}

/// A tool: the agent's, or the one of a structured output.
#[derive(Debug, Serialize)]
struct Tool<'a> {
    name: Cow<'a, str>,
    description: Cow<'a, str>,
    input_schema: Cow<'a, serde_json::Value>,
}

/// `{"type": "auto" | "none"}`, or `{"type": "tool", "name": ...}`: the model must call this
/// tool.
#[derive(Debug, Serialize)]
struct ToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// A message: the prompt as a string, a turn as content blocks.
#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

/// The content blocks of a turn: an assistant's text and `tool_use` calls, the user's
/// `tool_result`s.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a serde_json::Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

/// The message of one turn. The API rejects empty text blocks, so an assistant's empty text
/// is left out.
fn turn_message(turn: &Turn) -> Message<'_> {
    match turn {
        Turn::Assistant { text, calls } if calls.is_empty() => Message {
            role: "assistant",
            content: Content::Text(text),
        },
        Turn::Assistant { text, calls } => {
            let text = (!text.trim().is_empty()).then_some(Block::Text { text });
            let uses = calls.iter().map(|c| Block::ToolUse {
                id: &c.id,
                name: &c.name,
                input: &c.input,
            });
            Message {
                role: "assistant",
                content: Content::Blocks(text.into_iter().chain(uses).collect()),
            }
        }
        Turn::Tools { results } => Message {
            role: "user",
            content: Content::Blocks(
                results
                    .iter()
                    .map(|r| Block::ToolResult {
                        tool_use_id: &r.call_id,
                        content: &r.content,
                        is_error: r.is_error,
                    })
                    .collect(),
            ),
        },
    }
}

/// The tool of a structured output, named `name`.
fn answer_tool_spec<'a>(format: &OutputFormat, name: &'a str) -> Tool<'a> {
    let (input_schema, wrapped) = structured::tool_schema(&format.ty);
    let description = if wrapped {
        format!(
            "Give your answer, a value of type {}, as the `{}` property.",
            format.ty,
            structured::WRAP_KEY
        )
    } else {
        format!("Give your answer, of type {}.", format.ty)
    };
    Tool {
        name: Cow::Borrowed(name),
        description: Cow::Owned(description),
        input_schema: Cow::Owned(input_schema),
    }
}

impl<'a> MessagesRequest<'a> {
    /// The body of `req`. The tools are the agent's, then the structured output's answer tool
    /// when it is asked for ([`answer_tool`]); `tool_choice` forces the answer tool when
    /// there is one, else says `auto` or `none` when tools are offered.
    fn new(req: &'a CompletionRequest, stream: bool, answer: Option<&'a AnswerTool<'a>>) -> Self {
        let mut tools: Vec<Tool<'a>> = req
            .tools
            .iter()
            .map(|t| Tool {
                name: Cow::Borrowed(&t.spec.name),
                description: Cow::Borrowed(&t.spec.description),
                input_schema: Cow::Borrowed(&t.spec.input_schema),
            })
            .collect();
        tools.extend(answer.map(|a| answer_tool_spec(a.format, &a.name)));
        let tool_choice = match answer {
            Some(a) => Some(ToolChoice {
                kind: "tool",
                name: Some(&a.name),
            }),
            None if req.tools.is_empty() => None,
            None => Some(ToolChoice {
                kind: match req.tool_choice {
                    Choice::Auto => "auto",
                    Choice::None => "none",
                },
                name: None,
            }),
        };
        let mut messages = Vec::with_capacity(1 + req.turns.len());
        messages.push(Message {
            role: "user",
            content: Content::Text(&req.prompt),
        });
        messages.extend(req.turns.iter().map(turn_message));
        MessagesRequest {
            model: &req.model,
            max_tokens: req.max_tokens,
            system: req.system.as_deref(),
            messages,
            temperature: req.temperature,
            stream,
            tools,
            tool_choice,
        }
    }
}

/// The parts of a Message object this client reads.
#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<MessagesUsage>,
}

/// One content block: `text` blocks carry answer text, `tool_use` blocks a call (`id`,
/// `name`, `input`).
#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct MessagesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl MessagesResponse {
    fn into_completion(
        self,
        req: &CompletionRequest,
        answer: Option<&AnswerTool<'_>>,
    ) -> Completion {
        let mut text = String::new();
        let mut blocks = Vec::new();
        for block in self.content {
            match block.kind.as_str() {
                "text" => text.push_str(block.text.as_deref().unwrap_or_default()),
                "tool_use" => blocks.push((
                    ToolCall::from_json_value(
                        block.id.unwrap_or_default(),
                        block.name.unwrap_or_default(),
                        block.input.unwrap_or_default(),
                    ),
                    None,
                )),
                _ => {}
            }
        }
        let usage = self
            .usage
            .map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                estimated: false,
            })
            .unwrap_or_default();
        let model = self.model.filter(|m| !m.is_empty());
        completion(req, answer, text, blocks, self.stop_reason, usage, model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-ant-test-SECRET-777";

    fn request() -> CompletionRequest {
        CompletionRequest {
            model: "claude-sonnet-4-5".into(),
            system: Some("You are terse.".into()),
            prompt: "Name a colour.".into(),
            max_tokens: 128,
            temperature: Some(0.5),
            output: None,
            max_output_bytes: crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn sends_documented_request_and_parses_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", KEY))
            .and(header("anthropic-version", "2023-06-01"))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 128,
                "system": "You are terse.",
                "messages": [{"role": "user", "content": "Name a colour."}],
                "temperature": 0.5
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "Blue"},
                    {"type": "tool_use", "id": "t", "name": "n", "input": {}},
                    {"type": "text", "text": ", mostly."}
                ],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 21, "output_tokens": 5}
            })))
            .expect(1)
            .mount(&server)
            .await;

        let client =
            Anthropic::new(format!("{}/", server.uri()), ApiKey::new(KEY)).streaming(false);
        let completion = client.complete(&request()).await.expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Blue, mostly.".into(),
                usage: Usage {
                    input_tokens: 21,
                    output_tokens: 5,
                    estimated: false,
                },
                model: "claude-sonnet-4-5-20250929".into(),
                // A `tool_use` block is a call (the model stopped for it, whatever it said).
                calls: vec![ToolCall::from_json_value("t".into(), "n".into(), json!({}))],
                stop: StopReason::ToolUse,
            }
        );
        let received = server.received_requests().await.expect("recording on");
        assert!(!received[0].headers.contains_key("authorization"));
    }

    #[tokio::test]
    async fn omits_system_and_temperature_when_unset() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(body_json(json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "content": [{"type": "text", "text": "hello"}],
                "usage": {"input_tokens": 1, "output_tokens": 1}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY)).streaming(false);
        let req = CompletionRequest {
            model: "claude-haiku-4-5".into(),
            system: None,
            prompt: "hi".into(),
            max_tokens: 10,
            temperature: None,
            output: None,
            max_output_bytes: crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        };
        let completion = client.complete(&req).await.expect("completion");
        assert_eq!(completion.text, "hello");
        assert_eq!(completion.model, "claude-haiku-4-5");
    }

    #[tokio::test]
    async fn error_status_with_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(529)
                    .insert_header("retry-after", "3")
                    .set_body_json(json!({
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                        "request_id": "req_1"
                    })),
            )
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let err = client.complete(&request()).await.expect_err("529");
        assert_eq!(
            err,
            ProviderError::Http {
                provider: "anthropic",
                status: 529,
                message: "Overloaded".into(),
                retry_after_ms: Some(3000),
                should_retry: None,
            }
        );
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "HTTP 529 from anthropic: Overloaded");
    }

    #[tokio::test]
    async fn client_error_is_final_and_scrubbed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "type": "error",
                "error": {"type": "authentication_error", "message": format!("invalid x-api-key {KEY}")}
            })))
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let err = client.complete(&request()).await.expect_err("401");
        assert!(!err.is_retryable());
        assert!(
            matches!(
                &err,
                ProviderError::Http {
                    status: 401,
                    retry_after_ms: None,
                    should_retry: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(KEY), "{err}");
        assert!(!format!("{err:?}").contains(KEY));
    }

    #[tokio::test]
    async fn garbage_2xx_is_malformed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "msg"})))
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let err = client.complete(&request()).await.expect_err("no content");
        assert!(
            matches!(&err, ProviderError::Malformed { provider: "anthropic", message } if message.contains("content")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_transport() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let base = format!("http://127.0.0.1:{port}");
        let client = Anthropic::new(base.clone(), ApiKey::new(KEY));
        let err = client.complete(&request()).await.expect_err("refused");
        assert!(
            matches!(&err, ProviderError::Transport { provider: "anthropic", url, .. } if *url == format!("{base}/v1/messages")),
            "{err:?}"
        );
        assert!(!err.to_string().contains(KEY));
        assert!(!format!("{err:?}").contains(KEY));
    }

    /// An SSE body with `event:` names taken from each event's `type`.
    fn sse(events: &[serde_json::Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
    }

    fn start() -> serde_json::Value {
        json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5-20250929", "stop_reason": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}
        }})
    }

    fn text_delta(t: &str) -> serde_json::Value {
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
    }

    #[tokio::test]
    async fn streams_by_default_and_assembles_the_message() {
        let server = MockServer::start().await;
        let body = sse(&[
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            text_delta("Blue"),
            text_delta(", mostly."),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "some_future_event", "x": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            json!({"type": "message_stop"}),
        ]);
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(body_json(json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 128,
                "system": "You are terse.",
                "messages": [{"role": "user", "content": "Name a colour."}],
                "temperature": 0.5,
                "stream": true
            })))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
            .expect(1)
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let seen = std::sync::Mutex::new(Vec::new());
        let completion = client
            .complete_with_progress(&request(), &|n| seen.lock().unwrap().push(n))
            .await
            .expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Blue, mostly.".into(),
                usage: Usage {
                    input_tokens: 25,
                    output_tokens: 15,
                    estimated: false
                },
                model: "claude-sonnet-4-5-20250929".into(),
                ..Default::default()
            }
        );
        // "Blue" is one token by the 4-characters rule; later deltas fall within the throttle.
        assert_eq!(seen.into_inner().unwrap(), [1]);
    }

    #[tokio::test]
    async fn error_events_and_cut_streams() {
        let server = MockServer::start().await;
        let overloaded = sse(&[
            start(),
            text_delta("Bl"),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(overloaded, "text/event-stream"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let invalid = sse(&[
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("bad key {KEY}")}}),
        ]);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(invalid, "text/event-stream"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let cut = sse(&[start(), text_delta("Blue")]);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(cut, "text/event-stream"))
            .mount(&server)
            .await;
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let err = client.complete(&request()).await.expect_err("overloaded");
        assert_eq!(
            err.to_string(),
            "streamed answer from anthropic broke off: Overloaded"
        );
        assert!(err.is_retryable() && err.is_overloaded());
        let err = client.complete(&request()).await.expect_err("invalid");
        assert!(!err.is_retryable() && !err.is_overloaded());
        assert!(!err.to_string().contains(KEY), "{err}");
        let err = client.complete(&request()).await.expect_err("cut");
        assert!(
            err.to_string()
                .contains("closed before `message_stop` (4 characters received)"),
            "{err}"
        );
        assert!(err.is_retryable() && !err.is_overloaded());
    }

    #[test]
    fn debug_never_shows_key() {
        let client = Anthropic::new(DEFAULT_BASE_URL, ApiKey::new(KEY));
        let debug = format!("{client:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("redacted"));
        let provider = super::super::Provider::Anthropic(client);
        assert!(!format!("{provider:?}").contains(KEY));
    }
}
