//! Client for the OpenAI Chat Completions API and the servers that speak it (llama.cpp's
//! `llama-server`, Ollama, vLLM, ...).
//!
//! Source: OpenAI API reference, "Create chat completion",
//! <https://platform.openai.com/docs/api-reference/chat/create> (request, response, `stream`
//! and `stream_options.include_usage`), and "The chat completion chunk object",
//! <https://platform.openai.com/docs/api-reference/chat-streaming/streaming> (streamed
//! chunks: `choices[0].delta.content`, a last chunk with `usage` and empty `choices` when
//! `include_usage` is set, then `data: [DONE]`).
//!
//! Structured outputs: OpenAI, "Structured Outputs",
//! <https://platform.openai.com/docs/guides/structured-outputs> (`response_format` of type
//! `json_schema`), and llama-cpp-python's server, which this project tests against
//! (`scripts/llm-server.sh`; see [`FormatMode`] for what it accepts).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::conversation::made_up_id;
use super::{
    ApiKey, Call, Completion, CompletionRequest, HttpOptions, OutputFormat, ProgressFn,
    ProviderError, StopReason, ToolCall, ToolChoice, Turn, Usage, sse, tool_prompt,
};
use crate::plan::estimate_tokens;
use crate::run::limits::ProviderLimits;
use crate::run::structured;

/// Provider kind, as it appears in [`ProviderError`]s.
const PROVIDER: &str = "openai";

/// The public OpenAI endpoint, including the `/v1` segment the API paths hang off.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions client: `POST {base_url}/chat/completions`.
///
/// Cheap to clone; all clients share one process-wide connection pool. `Debug` shows the base
/// URL and whether a key is set, never the key.
#[derive(Clone)]
pub struct OpenAi {
    base_url: String,
    api_key: Option<ApiKey>,
    options: HttpOptions,
    /// Per model identifier: the best way of asking for a structured output that the server
    /// has not rejected (absent: [`FormatMode::JsonSchema`], not tried yet). Shared by clones.
    formats: Arc<Mutex<HashMap<String, FormatMode>>>,
    /// Per model identifier: how tools are offered (absent: [`ToolMode::Native`], not
    /// rejected yet). Shared by clones.
    tool_modes: Arc<Mutex<HashMap<String, ToolMode>>>,
    /// The tool mode of a model not in `tool_modes`.
    default_tools: ToolMode,
}

/// How the tools of a request ([`CompletionRequest::tools`]) are offered to an
/// OpenAI-compatible server. A client starts with `Native` for each model; when the server
/// rejects the request's `tools` (see [`rejects_tools`]) the same call is sent again at once
/// in `Prompt`, and the client keeps to it for that model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolMode {
    /// `tools`, `tool_choice`, assistant messages with `tool_calls` and `role: "tool"`
    /// results; calls read from `message.tool_calls` (streamed: `delta.tool_calls`).
    #[default]
    Native,
    /// As [`ToolMode::Native`], but the answer is asked for whole even when the client
    /// streams: for a server that cannot stream an automatic tool choice (llama-cpp-python's
    /// `chatml-function-calling` sends an empty event stream, [`EMPTY_STREAM`], when its model
    /// chooses a call). Asked whole, such a server generates the call under a grammar, so it
    /// is well formed even from a small model. An answer that says nothing (the model chose
    /// to answer, and that server's grammar then allows no text: [`says_nothing`]) is asked
    /// again, for that request only, in [`ToolMode::Prompt`].
    NativeWhole,
    /// The fallback protocol of [`tool_prompt`]: tools and call format in the system text,
    /// the conversation as plain messages, calls read from the answer's text.
    Prompt,
}

/// The prefix of an error result's content: Chat Completions has no error flag on a
/// `role: "tool"` message.
pub const ERROR_RESULT_PREFIX: &str = "Error: ";

/// The message of a [`ProviderError::Stream`] for a 2xx event stream that closed without any
/// event: what llama-cpp-python sends when, streamed with `tool_choice: "auto"`, its model
/// chooses to call a tool (the server fails with `Automatic streaming tool choice is not
/// supported` after the headers went out).
const EMPTY_STREAM: &str = "the event stream closed without any event";

/// Whether a streamed request failed with an event stream that closed without any event
/// ([`EMPTY_STREAM`]).
fn is_empty_stream(err: &ProviderError) -> bool {
    matches!(err, ProviderError::Stream { kind: None, message, .. } if message.starts_with(EMPTY_STREAM))
}

impl ToolMode {
    /// Whether tools go in the request's `tools` (either native mode).
    fn is_native(self) -> bool {
        matches!(self, ToolMode::Native | ToolMode::NativeWhole)
    }
}

/// Whether a finished answer to a request with native tools has neither text nor calls:
/// what llama-cpp-python's `chatml-function-calling` format always gives when the model
/// chooses to answer with `tool_choice: "auto"` (the grammar it then generates under allows
/// only a function name or the end of the message), so the answer is asked again in the
/// prompt protocol. An answer cut by `max_tokens` is not taken for it.
fn says_nothing(c: &Completion) -> bool {
    c.text.trim().is_empty() && c.calls.is_empty() && c.stop == StopReason::EndTurn
}

/// Whether an error says the server does not take the request's tools: an HTTP 400, 422, 500
/// or 501 whose message speaks of tools or function calling. Seen: Ollama's 400 `... does not
/// support tools`, vLLM's 400 `"auto" tool choice requires --enable-auto-tool-choice ...`,
/// llama.cpp's `tools param requires --jinja flag`, llama-cpp-python's 500 `Automatic
/// streaming tool choice is not supported` (its `chatml-function-calling` format with a
/// streamed `tool_choice: "auto"`, which it reports only as a stream without any event:
/// [`EMPTY_STREAM`]).
fn rejects_tools(err: &ProviderError) -> bool {
    match err {
        ProviderError::Stream { .. } => is_empty_stream(err),
        ProviderError::Http {
            status: 400 | 422 | 500 | 501,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            ["tool", "function"].iter().any(|k| m.contains(k))
        }
        _ => false,
    }
}

/// How a structured output ([`CompletionRequest::output`]) is asked of an OpenAI-compatible
/// server, best first. A client starts at the top for each model; when the server rejects a
/// way (see [`rejects_format`]) the same call is sent again at once the next way down, and the
/// client remembers it for later calls with that model.
///
/// What servers accept (checked against llama-cpp-python 0.3.36, the server of
/// `scripts/llm-server.sh`, with Gemma 3 270M):
/// - OpenAI, vLLM, llama.cpp's `llama-server` and Ollama take `json_schema`. llama-cpp-python
///   does not: its request model allows only `text` and `json_object` as
///   `response_format.type`, and it answers **HTTP 500** (not 400) with a pydantic validation
///   error naming `response_format` and `json_schema`.
/// - llama-cpp-python takes `{"type": "json_object", "schema": ...}` (its extension of JSON
///   mode) and constrains generation to the schema with a grammar, streamed or not. Measured:
///   a `{approved: bool, feedback: text}` schema gave `{ "approved": true, "feedback": "..." }`,
///   where the same prompt with instructions only gave prose.
/// - Any server: no `response_format`, the schema in the prompt ([`structured::instructions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FormatMode {
    /// `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`
    /// with the type's object schema ([`structured::tool_schema`]: OpenAI wants an object at
    /// the root) and `strict` when strict mode can enforce it
    /// ([`structured::strict_compatible`]). The answer's `{"value": ...}` wrapper, if any, is
    /// removed.
    JsonSchema,
    /// `response_format: {"type": "json_object", "schema": <the type's schema>}` and the schema
    /// in the prompt (OpenAI's JSON mode requires the prompt to ask for JSON).
    JsonObject,
    /// No `response_format`; the schema in the prompt.
    Instructions,
}

impl FormatMode {
    fn next(self) -> Option<FormatMode> {
        match self {
            FormatMode::JsonSchema => Some(FormatMode::JsonObject),
            FormatMode::JsonObject => Some(FormatMode::Instructions),
            FormatMode::Instructions => None,
        }
    }
}

/// Whether an error says the server does not take the `response_format` it was sent: an HTTP
/// 400, 422 or 500 (llama-cpp-python reports its request validation errors as 500) whose
/// message names `response_format`, `json_schema` or `json_object`. OpenAI answers 400
/// `Invalid parameter: 'response_format' of type 'json_schema' is not supported with this
/// model.` for models without Structured Outputs, and 400 `Invalid schema for response_format
/// ...` for a schema it cannot take.
fn rejects_format(err: &ProviderError) -> bool {
    match err {
        ProviderError::Http {
            status: 400 | 422 | 500,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            ["response_format", "json_schema", "json_object"]
                .iter()
                .any(|k| m.contains(k))
        }
        _ => false,
    }
}

impl OpenAi {
    /// A client for the server at `base_url`, the URL the API paths hang off — including the
    /// version segment, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1` for a
    /// local llama.cpp server. A trailing slash is tolerated.
    ///
    /// With `api_key: None` no `Authorization` header is sent (local servers usually need
    /// none); otherwise `Authorization: Bearer <key>`.
    ///
    /// It streams answers, with the default inactivity timeout and no rate limits
    /// ([`HttpOptions::default`]); see [`OpenAi::streaming`], [`OpenAi::idle_timeout`] and
    /// [`OpenAi::with_limits`].
    pub fn new(base_url: impl Into<String>, api_key: Option<ApiKey>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        OpenAi {
            base_url,
            api_key,
            options: HttpOptions::default(),
            formats: Arc::default(),
            tool_modes: Arc::default(),
            default_tools: ToolMode::Native,
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

    /// Offers tools in `mode` from the first request on ([`ToolMode::Native`] by default,
    /// until the server rejects them). [`ToolMode::Prompt`] suits servers that take `tools`
    /// but do not show `role: "tool"` results to the model: llama-cpp-python's
    /// `chatml-function-calling` format drops their content (measured: the prompt's token
    /// count does not change with the result's length).
    pub fn tool_mode(mut self, mode: ToolMode) -> Self {
        self.default_tools = mode;
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

    /// Sends one chat completion request (exactly one HTTP attempt).
    ///
    /// The body is `{model, messages, max_tokens, temperature?}` with `messages` holding the
    /// system message (when the request has system text) and the user message (the prompt).
    /// The answer's text is `choices[0].message.content`; usage is `usage.prompt_tokens` /
    /// `usage.completion_tokens` (zeros if the server sends no `usage` object); the model is
    /// the response's `model`, or the requested one if absent.
    ///
    /// Note: OpenAI's newer reasoning models want `max_completion_tokens` instead of
    /// `max_tokens`; this client sends `max_tokens`, which every compatible server accepts.
    ///
    /// With a structured output ([`CompletionRequest::output`]) the body also has a
    /// `response_format` (or the prompt the schema), the best way the server has not rejected
    /// for this model, and the answer's text is the JSON it sent: see [`FormatMode`]. A
    /// rejection sends the request again the next way down, at most twice per call and only
    /// until the client has learnt what the server takes.
    ///
    /// # Errors
    /// - [`ProviderError::Http`] for a non-2xx status, with the body's `error.message` (or the
    ///   body, shortened) and `retry_after_ms` from `retry-after-ms` / `retry-after`;
    /// - [`ProviderError::Transport`] when the server cannot be reached, the connection breaks
    ///   or the request times out;
    /// - [`ProviderError::Malformed`] when a 2xx body is not a chat completion with text in
    ///   `choices[0].message.content`.
    ///
    /// When streaming (the default), the body also has `stream: true` and
    /// `stream_options: {include_usage: true}`, and the answer is assembled from the chunks:
    /// the text is the concatenation of `choices[0].delta.content`, usage comes from the last
    /// chunk. A server that ignores `include_usage` (llama-cpp-python does) sends no usage:
    /// then input tokens are estimated at 4 characters per token and output tokens as one per
    /// text chunk, and the usage is marked [`Usage::estimated`]. A server that ignores
    /// `stream` and answers with one JSON body is read as above.
    ///
    /// # Errors
    /// As above, and when streaming:
    /// - [`ProviderError::Stream`] when a chunk carries an `error`, or the stream ends (with
    ///   or without `data: [DONE]`) before any `finish_reason` came: the answer was cut short,
    ///   and the text received so far is dropped;
    /// - [`ProviderError::Idle`] when no bytes arrive for the inactivity timeout.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.complete_with_progress(req, &|_| {}).await
    }

    /// [`OpenAi::complete`], reporting the output tokens received so far to `progress` while a
    /// streamed answer arrives (one per text chunk). The answer and any error are redacted
    /// ([`crate::redact`]).
    ///
    /// # Errors
    /// As [`OpenAi::complete`].
    pub async fn complete_with_progress(
        &self,
        req: &CompletionRequest,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        super::redact_outcome(self.complete_in_format(req, progress).await)
    }

    /// [`OpenAi::complete_with_progress`] before its outcome is redacted: the request in the
    /// best format and tool mode the server takes.
    ///
    /// While tools are offered with [`ToolChoice::Auto`], a structured output is not asked
    /// for: a format constraint would keep the model from calling tools (llama-cpp-python
    /// turns it into a grammar), and the agent loop asks for the final answer in a turn with
    /// [`ToolChoice::None`], where it is.
    async fn complete_in_format(
        &self,
        req: &CompletionRequest,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        let mut tools = (!req.tools.is_empty()).then(|| self.tools_for(&req.model));
        let format = req
            .output
            .as_ref()
            .filter(|_| req.tools.is_empty() || req.tool_choice == ToolChoice::None);
        let mut mode = self.format_mode(&req.model);
        loop {
            let prompt = match (format, mode) {
                (Some(f), FormatMode::JsonObject | FormatMode::Instructions) => {
                    Cow::Owned(f.prompt_with_instructions(&req.prompt))
                }
                _ => Cow::Borrowed(req.prompt.as_str()),
            };
            let sent = Sent {
                prompt,
                format: format.map(|f| (f, mode)),
                tools,
            };
            match self.send(req, &sent, progress).await {
                Err(e) if format.is_some() && rejects_format(&e) => match mode.next() {
                    Some(next) => {
                        mode = next;
                        self.remember_format(&req.model, mode);
                    }
                    None => return Err(e),
                },
                Err(e)
                    if tools == Some(ToolMode::Native)
                        && self.options.stream
                        && is_empty_stream(&e) =>
                {
                    tools = Some(ToolMode::NativeWhole);
                    self.remember_tools(&req.model, ToolMode::NativeWhole);
                }
                Err(e) if tools.is_some_and(ToolMode::is_native) && rejects_tools(&e) => {
                    tools = Some(ToolMode::Prompt);
                    self.remember_tools(&req.model, ToolMode::Prompt);
                }
                Ok(c) if tools == Some(ToolMode::Native) && says_nothing(&c) => {
                    tools = Some(ToolMode::Prompt);
                    self.remember_tools(&req.model, ToolMode::Prompt);
                }
                Ok(c) if tools == Some(ToolMode::NativeWhole) && says_nothing(&c) => {
                    // This request only: the next one may be a call again.
                    tools = Some(ToolMode::Prompt);
                }
                Ok(completion) => return Ok(finish_answer(req, &sent, completion)),
                Err(e) => return Err(e),
            }
        }
    }

    /// How tools are offered to `model`.
    fn tools_for(&self, model: &str) -> ToolMode {
        let modes = self.tool_modes.lock().unwrap_or_else(|e| e.into_inner());
        modes.get(model).copied().unwrap_or(self.default_tools)
    }

    /// Remembers that tools are offered to `model` in `mode`.
    fn remember_tools(&self, model: &str, mode: ToolMode) {
        let mut modes = self.tool_modes.lock().unwrap_or_else(|e| e.into_inner());
        modes.insert(model.to_owned(), mode);
    }

    /// The best way of asking for a structured output that the server has not rejected for
    /// `model`.
    fn format_mode(&self, model: &str) -> FormatMode {
        let formats = self.formats.lock().unwrap_or_else(|e| e.into_inner());
        formats
            .get(model)
            .copied()
            .unwrap_or(FormatMode::JsonSchema)
    }

    /// Remembers that the server takes nothing better than `mode` for `model`.
    fn remember_format(&self, model: &str, mode: FormatMode) {
        let mut formats = self.formats.lock().unwrap_or_else(|e| e.into_inner());
        let known = formats.entry(model.to_owned()).or_insert(mode);
        *known = (*known).max(mode);
    }

    /// One HTTP request for `req`, as `sent` says.
    async fn send(
        &self,
        req: &CompletionRequest,
        sent: &Sent<'_>,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        let url = super::join_url(&self.base_url, "/chat/completions");
        let stream = self.options.stream && sent.tools != Some(ToolMode::NativeWhole);
        // A whole answer sends nothing until it is done: the inactivity timeout, which a
        // streamed answer resets with every piece, must not cut it (the HTTP timeout does).
        let whole = HttpOptions {
            stream: false,
            ..self.options.clone()
        };
        let call = Call {
            provider: PROVIDER,
            url: &url,
            options: if stream { &self.options } else { &whole },
        };
        let client = super::http_client(PROVIDER, &url)?;
        let mut body = ChatRequest::new(req, sent, stream);
        body.response_format = sent.format.and_then(|(f, mode)| response_format(f, mode));
        let mut request = client.post(&url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = call.response(request).await?;
        if stream && super::is_event_stream(&response) {
            return read_stream(&call, response, req, progress).await;
        }
        let body = call.body(response, req.max_output_bytes).await?;
        let response: ChatResponse = super::parse_body(PROVIDER, &body)?;
        response.into_completion(req)
    }
}

/// A completion as the step reads it, after the server answered `req` sent as `sent`: a
/// [`FormatMode::JsonSchema`] answer without its wrapper, and with tools in
/// [`ToolMode::Prompt`] the calls read from the text.
fn finish_answer(
    req: &CompletionRequest,
    sent: &Sent<'_>,
    mut completion: Completion,
) -> Completion {
    if let Some((f, FormatMode::JsonSchema)) = sent.format {
        completion.text = unwrap_answer(completion.text, &f.ty);
    }
    if sent.tools == Some(ToolMode::Prompt) && req.tool_choice == ToolChoice::Auto {
        let (text, calls) = tool_prompt::parse_answer(&completion.text, &req.turns);
        if !calls.is_empty() {
            completion.stop = StopReason::ToolUse;
        }
        completion.text = text;
        completion.calls = calls;
    }
    completion
}

impl OpenAi {
    /// How `req` goes in a batch: in the best format and tool mode the server has not
    /// rejected for its model (a batch cannot try the next way down at once; a request the
    /// server rejects fails, and its retry, an ordinary request, does).
    fn batch_sent<'r>(&self, req: &'r CompletionRequest) -> Sent<'r> {
        let tools = (!req.tools.is_empty()).then(|| match self.tools_for(&req.model) {
            ToolMode::NativeWhole => ToolMode::Native,
            mode => mode,
        });
        let format = req
            .output
            .as_ref()
            .filter(|_| req.tools.is_empty() || req.tool_choice == ToolChoice::None);
        let mode = self.format_mode(&req.model);
        let prompt = match (format, mode) {
            (Some(f), FormatMode::JsonObject | FormatMode::Instructions) => {
                Cow::Owned(f.prompt_with_instructions(&req.prompt))
            }
            _ => Cow::Borrowed(req.prompt.as_str()),
        };
        Sent {
            prompt,
            format: format.map(|f| (f, mode)),
            tools,
        }
    }

    /// A whole-body call of the batch API (`stream: false`: bounded by the HTTP timeout).
    fn batch_options(&self) -> HttpOptions {
        HttpOptions {
            stream: false,
            ..self.options.clone()
        }
    }

    /// `request` with the key, when there is one.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// A `GET {base_url}{path}` of the batch API: the body, redacted, at most `limit` bytes.
    async fn batch_get(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<crate::redact::Redacted, ProviderError> {
        let url = super::join_url(&self.base_url, path);
        let options = self.batch_options();
        let call = Call {
            provider: PROVIDER,
            url: &url,
            options: &options,
        };
        let client = super::http_client(PROVIDER, &url)?;
        let outcome = async {
            let response = call.response(self.authorized(client.get(&url))).await?;
            match call.read_body(response, limit).await? {
                (body, false) => Ok(super::redact_bytes(&body)),
                (_, true) => Err(ProviderError::TooLarge {
                    provider: PROVIDER,
                    max_output_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
                }),
            }
        };
        outcome.await.map_err(ProviderError::redacted)
    }

    /// Creates a batch of `items` (requests for one model): uploads them as a JSON Lines file,
    /// one `{custom_id, method: "POST", url: "/v1/chat/completions", body}` a line, `body`
    /// the request [`OpenAi::complete`] would send without streaming, with `POST
    /// {base_url}/files` (multipart: `purpose=batch` and the file), then `POST
    /// {base_url}/batches` with `{input_file_id, endpoint: "/v1/chat/completions",
    /// completion_window: "24h"}`. Returns the batch's `id`. Source: OpenAI API reference,
    /// "Upload file", <https://platform.openai.com/docs/api-reference/files/create>, "The
    /// request input object", <https://platform.openai.com/docs/api-reference/batch/request-input>,
    /// and "Create batch", <https://platform.openai.com/docs/api-reference/batch/create>.
    ///
    /// # Errors
    /// As [`OpenAi::complete`] for each HTTP call; [`ProviderError::Malformed`] when an answer
    /// has no `id`.
    pub(super) async fn batch_create(
        &self,
        items: &[super::batch::BatchItem<'_>],
    ) -> Result<String, ProviderError> {
        let mut file = Vec::new();
        for item in items {
            let sent = self.batch_sent(item.req);
            let mut body = ChatRequest::new(item.req, &sent, false);
            body.response_format = sent.format.and_then(|(f, mode)| response_format(f, mode));
            let line = serde_json::json!({
                "custom_id": item.custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            });
            file.extend_from_slice(line.to_string().as_bytes());
            file.push(b'\n');
        }
        let options = self.batch_options();
        let files_url = super::join_url(&self.base_url, "/files");
        let batches_url = super::join_url(&self.base_url, "/batches");
        let client = super::http_client(PROVIDER, &files_url)?;
        let outcome = async {
            let call = Call {
                provider: PROVIDER,
                url: &files_url,
                options: &options,
            };
            // `multipart/form-data` (RFC 7578): the purpose, then the JSONL file.
            let part = reqwest::multipart::Part::bytes(file)
                .file_name("orch-batch.jsonl")
                .mime_str("application/jsonl")
                .map_err(|e| ProviderError::Malformed {
                    provider: PROVIDER,
                    message: format!("cannot build the batch upload: {e}"),
                })?;
            let form = reqwest::multipart::Form::new()
                .text("purpose", "batch")
                .part("file", part);
            let request = self.authorized(client.post(&files_url).multipart(form));
            let response = call.response(request).await?;
            let body = call.body(response, 0).await?;
            let uploaded: Identified = super::parse_body(PROVIDER, &body)?;
            let call = Call {
                provider: PROVIDER,
                url: &batches_url,
                options: &options,
            };
            let request = self.authorized(client.post(&batches_url).json(&serde_json::json!({
                "input_file_id": uploaded.id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            })));
            let response = call.response(request).await?;
            let body = call.body(response, 0).await?;
            let batch: Identified = super::parse_body(PROVIDER, &body)?;
            Ok(batch.id)
        };
        outcome.await.map_err(ProviderError::redacted)
    }

    /// Polls batch `id`: `GET {base_url}/batches/{id}`; it has ended when `status` is
    /// `completed`, `failed`, `expired` or `cancelled` (before: `validating`, `in_progress`,
    /// `finalizing`, `cancelling`), its results in `output_file_id` and `error_file_id`.
    /// Source: OpenAI API reference, "The batch object",
    /// <https://platform.openai.com/docs/api-reference/batch/object>.
    ///
    /// # Errors
    /// As [`OpenAi::complete`] for the HTTP call; [`ProviderError::Malformed`] when the answer
    /// is not a batch.
    pub(super) async fn batch_poll(
        &self,
        id: &str,
    ) -> Result<super::batch::BatchPoll, ProviderError> {
        let body = self.batch_get(&format!("/batches/{id}"), 64 * 1024).await?;
        let batch: BatchObject = super::parse_body(PROVIDER, &body)?;
        let ended = matches!(
            batch.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        );
        let error = batch.errors.and_then(|e| {
            let messages: Vec<String> = e.data.into_iter().filter_map(|d| d.message).collect();
            (!messages.is_empty()).then(|| messages.join("; "))
        });
        Ok(super::batch::BatchPoll {
            status: batch.status,
            ended,
            results: batch
                .output_file_id
                .into_iter()
                .chain(batch.error_file_id)
                .filter(|f| !f.is_empty())
                .collect(),
            error,
        })
    }

    /// The results of an ended batch: the content of its output and error files (`GET
    /// {base_url}/files/{id}/content`, each at most `limit` bytes, redacted), one
    /// `{custom_id, response: {status_code, body}, error}` a line. A line with a 2xx
    /// `status_code` is read as [`OpenAi::complete`] reads an answer; any other is the
    /// request's failure, retried as an ordinary request as its status would be (its
    /// `error.code`, such as `batch_expired`, named): see [`OpenAi::batch_read`]. Source:
    /// OpenAI API reference, "The request output object",
    /// <https://platform.openai.com/docs/api-reference/batch/request-output>.
    ///
    /// # Errors
    /// As [`OpenAi::complete`] for the HTTP calls; [`ProviderError::Malformed`] when a line is
    /// not an output; [`ProviderError::TooLarge`] when a file is longer than `limit`.
    pub(super) async fn batch_raw(
        &self,
        poll: &super::batch::BatchPoll,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, ProviderError> {
        let mut lines = Vec::new();
        for file in &poll.results {
            let body = self
                .batch_get(&format!("/files/{file}/content"), limit)
                .await?;
            lines.extend(super::batch::jsonl_lines(PROVIDER, &body)?);
        }
        Ok(lines)
    }

    /// The outcome of `req` in a line of a batch's output or error file (see
    /// [`OpenAi::batch_raw`]), redacted.
    pub(super) fn batch_read(
        &self,
        id: &str,
        line: &serde_json::Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let status = line
            .pointer("/response/status_code")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let outcome = if (200..300).contains(&status) {
            let body = line.pointer("/response/body").cloned().unwrap_or_default();
            serde_json::from_value::<ChatResponse>(body)
                .map_err(|e| ProviderError::Malformed {
                    provider: PROVIDER,
                    message: format!("batch result `{id}`: {e}"),
                })
                .and_then(|r| r.into_completion(req))
                .map(|c| finish_answer(req, &self.batch_sent(req), c))
        } else {
            let error = line
                .get("error")
                .filter(|e| !e.is_null())
                .or_else(|| line.pointer("/response/body/error"));
            let code = error
                .and_then(|e| e.get("code"))
                .and_then(|c| c.as_str())
                .unwrap_or("error");
            let message = error
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .unwrap_or("no message");
            let retryable = status == 0 || matches!(status, 408 | 409 | 429) || status >= 500;
            Err(ProviderError::Batch {
                provider: PROVIDER,
                message: if status == 0 {
                    format!("{code}: {message}")
                } else {
                    format!("HTTP {status}, {code}: {message}")
                },
                retryable,
            })
        };
        super::redact_outcome(outcome)
    }
}

/// An object of the Files or Batch API, of which only the `id` is read.
#[derive(Debug, Deserialize)]
struct Identified {
    id: String,
}

/// The parts of a batch object this client reads.
#[derive(Debug, Deserialize)]
struct BatchObject {
    #[serde(default)]
    status: String,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    errors: Option<BatchErrors>,
}

#[derive(Debug, Deserialize)]
struct BatchErrors {
    #[serde(default)]
    data: Vec<BatchErrorData>,
}

#[derive(Debug, Deserialize)]
struct BatchErrorData {
    #[serde(default)]
    message: Option<String>,
}

/// How one request is sent: its user message, structured output and tool mode (`None`: no
/// tools offered).
struct Sent<'a> {
    prompt: Cow<'a, str>,
    format: Option<(&'a OutputFormat, FormatMode)>,
    tools: Option<ToolMode>,
}

/// The `response_format` of a structured output asked for in `mode` (see [`FormatMode`]).
fn response_format(format: &OutputFormat, mode: FormatMode) -> Option<serde_json::Value> {
    match mode {
        FormatMode::JsonSchema => {
            let (schema, _) = structured::tool_schema(&format.ty);
            Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": {
                    "name": format.name,
                    "schema": schema,
                    "strict": structured::strict_compatible(&format.ty),
                },
            }))
        }
        FormatMode::JsonObject => Some(serde_json::json!({
            "type": "json_object",
            "schema": format.schema,
        })),
        FormatMode::Instructions => None,
    }
}

/// An answer to a [`FormatMode::JsonSchema`] request, its `{"value": ...}` wrapper removed
/// when the type needed one; any other answer (not JSON, or without the wrapper) is left as
/// the model wrote it, for the scheduler to parse or report.
fn unwrap_answer(text: String, ty: &crate::check::types::Type) -> String {
    let (_, wrapped) = structured::tool_schema(ty);
    if !wrapped {
        return text;
    }
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(serde_json::Value::Object(mut map)) if map.contains_key(structured::WRAP_KEY) => map
            .remove(structured::WRAP_KEY)
            .unwrap_or_default()
            .to_string(),
        _ => text,
    }
}

/// The estimated input tokens of one offered tool's definition (name, description, input
/// schema; 4 characters per token), for servers that send no usage: a small model's prompt is
/// mostly its tool definitions.
fn tool_tokens(tool: &super::OfferedTool) -> u64 {
    estimate_tokens(&tool.spec.name)
        + estimate_tokens(&tool.spec.description)
        + estimate_tokens(&tool.spec.input_schema.to_string())
}

/// Assembles a streamed chat completion from its chunks.
async fn read_stream(
    call: &Call<'_>,
    response: reqwest::Response,
    req: &CompletionRequest,
    progress: &ProgressFn<'_>,
) -> Result<Completion, ProviderError> {
    let mut events = sse::Reader::new(call, response, req.max_output_bytes);
    let mut ticker = sse::Ticker::new(progress);
    let mut text = String::new();
    let mut chunks = 0u64;
    let mut model = None;
    let mut usage = None;
    let mut finish_reason = None;
    let mut refusal = String::new();
    let mut calls = StreamedCalls::default();
    let mut done = false;
    let mut any_event = false;
    while let Some(event) = events.next().await {
        let event = event?;
        any_event = true;
        if event.data.trim() == "[DONE]" {
            done = true;
            break;
        }
        let chunk: ChatChunk = sse::parse_data(call, &event.data)?;
        if let Some(error) = chunk.error {
            return Err(ProviderError::Stream {
                provider: PROVIDER,
                message: error
                    .message
                    .unwrap_or_else(|| "an error event without a message".into()),
                kind: error.kind,
            });
        }
        if let Some(m) = chunk.model.filter(|m| !m.is_empty()) {
            model = Some(m);
        }
        if let Some(u) = chunk.usage {
            usage = Some(u);
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                // Only text is progress: empty deltas and keep-alives do not hold the stream
                // open.
                if let Some(piece) = delta.content.filter(|p| !p.is_empty()) {
                    text.push_str(&piece);
                    chunks += 1;
                    events.grew(text.len() + refusal.len() + calls.len())?;
                    ticker.tick(chunks);
                }
                if let Some(r) = delta.refusal.filter(|r| !r.is_empty()) {
                    refusal.push_str(&r);
                    events.grew(text.len() + refusal.len() + calls.len())?;
                }
                let before = calls.len();
                for piece in delta.tool_calls.into_iter().flatten() {
                    calls.add(piece);
                }
                // A call's arguments are progress as text is.
                if calls.len() > before {
                    chunks += 1;
                    events.grew(text.len() + refusal.len() + calls.len())?;
                    ticker.tick(chunks);
                }
            }
            if choice.finish_reason.is_some() {
                finish_reason = choice.finish_reason;
            }
        }
    }
    // The answer is whole once its `finish_reason` came: a server that then closes without
    // `[DONE]` lost nothing. Without a `finish_reason` the generation was cut short, even if
    // `[DONE]` came (llama-cpp-python ends a stream it interrupts for a newer request so).
    if finish_reason.is_none() {
        let how = if !any_event {
            EMPTY_STREAM
        } else if done {
            "`data: [DONE]` came before any `finish_reason`: the generation was interrupted"
        } else {
            "the connection closed before `data: [DONE]`"
        };
        return Err(ProviderError::Stream {
            provider: PROVIDER,
            kind: None,
            message: format!("{how} ({} characters received)", text.chars().count()),
        });
    }
    let calls = calls.finish(&req.turns);
    if text.is_empty() && calls.is_empty() && !refusal.is_empty() {
        return Err(ProviderError::Malformed {
            provider: PROVIDER,
            message: format!("the streamed answer has no content (the model refused: {refusal})"),
        });
    }
    let usage = match usage {
        Some(u) => Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            estimated: false,
        },
        None => Usage {
            input_tokens: req.system.as_deref().map_or(0, estimate_tokens)
                + estimate_tokens(&req.prompt)
                + req.tools.iter().map(tool_tokens).sum::<u64>()
                + req.turns.iter().map(Turn::estimate_tokens).sum::<u64>(),
            output_tokens: chunks,
            estimated: true,
        },
    };
    Ok(Completion {
        text,
        usage,
        model: model.unwrap_or_else(|| req.model.clone()),
        stop: StopReason::from_wire(finish_reason.as_deref(), calls.len()),
        calls,
    })
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.options.stream)
            .finish()
    }
}

/// Request body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
}

/// `stream_options`: ask for a last chunk with the usage of the whole request.
#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One message: `content` always a string (empty for an assistant message with only tool
/// calls: the API reference allows `null` there, but llama-cpp-python answers it with an
/// HTTP 500); `tool_calls` only on assistant messages, `tool_call_id` only on `role: "tool"`
/// messages.
#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> Message<'a> {
    fn text(role: &'static str, content: impl Into<Cow<'a, str>>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// `{"type": "function", "function": {name, description, parameters}}`.
#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a serde_json::Value,
}

/// A call of an earlier assistant turn: `{id, type: "function", function: {name,
/// arguments}}`, the arguments as JSON text.
#[derive(Debug, Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCallFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireCallFunction<'a> {
    name: &'a str,
    arguments: String,
}

impl<'a> ChatRequest<'a> {
    fn new(req: &'a CompletionRequest, sent: &'a Sent<'a>, stream: bool) -> Self {
        let system = match sent.tools {
            Some(ToolMode::Prompt) => Some(Cow::Owned(tool_prompt::system_text(
                req.system.as_deref(),
                &req.tools,
                &req.tool_choice,
            ))),
            _ => req.system.as_deref().map(Cow::Borrowed),
        };
        let mut messages = Vec::with_capacity(2 + req.turns.len());
        messages.extend(system.map(|s| Message::text("system", s)));
        messages.push(Message::text("user", sent.prompt.as_ref()));
        match sent.tools {
            Some(ToolMode::Prompt) => messages.extend(
                tool_prompt::messages(&req.turns)
                    .into_iter()
                    .map(|(role, text)| Message::text(role, text)),
            ),
            _ => messages.extend(req.turns.iter().flat_map(native_messages)),
        }
        let native = sent.tools.is_some_and(ToolMode::is_native);
        ChatRequest {
            model: &req.model,
            messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            response_format: None,
            tools: if native {
                req.tools
                    .iter()
                    .map(|t| WireTool {
                        kind: "function",
                        function: WireFunction {
                            name: &t.spec.name,
                            description: &t.spec.description,
                            parameters: &t.spec.input_schema,
                        },
                    })
                    .collect()
            } else {
                Vec::new()
            },
            tool_choice: native.then_some(match req.tool_choice {
                ToolChoice::Auto => "auto",
                ToolChoice::None => "none",
            }),
        }
    }
}

/// The messages of one turn: an assistant message with its `tool_calls`, or one `role:
/// "tool"` message per result (an error's content prefixed with [`ERROR_RESULT_PREFIX`]).
/// A malformed call goes back with `{}` as its arguments.
fn native_messages(turn: &Turn) -> Vec<Message<'_>> {
    match turn {
        Turn::Assistant { text, calls } => vec![Message {
            role: "assistant",
            // A string even when empty: llama-cpp-python rejects `null` (HTTP 500).
            content: Some(Cow::Borrowed(text)),
            tool_calls: calls
                .iter()
                .map(|c| WireCall {
                    id: &c.id,
                    kind: "function",
                    function: WireCallFunction {
                        name: &c.name,
                        arguments: c.input.to_string(),
                    },
                })
                .collect(),
            tool_call_id: None,
        }],
        Turn::Tools { results } => results
            .iter()
            .map(|r| Message {
                role: "tool",
                content: Some(if r.is_error {
                    Cow::Owned(format!("{ERROR_RESULT_PREFIX}{}", r.content))
                } else {
                    Cow::Borrowed(&r.content)
                }),
                tool_calls: Vec::new(),
                tool_call_id: Some(&r.call_id),
            })
            .collect(),
    }
}

/// The parts of a chat completion chunk this client reads (and an `error` object, which
/// servers send mid-stream when generation fails).
#[derive(Debug, Deserialize)]
struct ChatChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    error: Option<ChunkError>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<DeltaCall>>,
}

/// A piece of a streamed tool call: `{index, id?, type?, function: {name?, arguments?}}`.
/// The first piece of a call has its id and name, later ones fragments of its arguments
/// (llama-cpp-python repeats the id and name in every piece).
#[derive(Debug, Deserialize)]
struct DeltaCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Debug, Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The tool calls of a streamed answer, assembled from their pieces by `index` (several
/// calls may be in progress in one answer).
#[derive(Debug, Default)]
struct StreamedCalls {
    calls: Vec<PartialCall>,
}

#[derive(Debug, Default)]
struct PartialCall {
    index: Option<u32>,
    id: String,
    name: String,
    arguments: String,
}

impl StreamedCalls {
    /// Adds a piece. A piece without `index` continues the last call, unless it brings an id
    /// of its own.
    fn add(&mut self, piece: DeltaCall) {
        let at = match piece.index {
            Some(i) => self.calls.iter().position(|c| c.index == Some(i)),
            None => match (&piece.id, self.calls.last()) {
                (Some(id), Some(last)) if !id.is_empty() && *id != last.id => None,
                (_, Some(_)) => Some(self.calls.len() - 1),
                (_, None) => None,
            },
        };
        let at = at.unwrap_or_else(|| {
            self.calls.push(PartialCall {
                index: piece.index,
                ..Default::default()
            });
            self.calls.len() - 1
        });
        let call = &mut self.calls[at];
        if let Some(id) = piece.id.filter(|id| !id.is_empty())
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(f) = piece.function {
            // A name comes whole in one piece; a server that repeats it is not appending.
            if let Some(name) = f.name.filter(|n| !n.is_empty() && *n != call.name) {
                call.name.push_str(&name);
            }
            if let Some(arguments) = f.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    /// Bytes received so far (names and arguments), counted against the answer's bound.
    fn len(&self) -> usize {
        self.calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum()
    }

    /// The calls, ids made up where the server gave none.
    fn finish(self, turns: &[Turn]) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = if c.id.is_empty() {
                    made_up_id(turns, i)
                } else {
                    c.id
                };
                ToolCall::from_json_text(id, c.name, &c.arguments)
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct ChunkError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// The parts of a chat completion object this client reads.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseCall>>,
}

/// A tool call of a whole answer: `{id, type: "function", function: {name, arguments}}`,
/// `arguments` JSON text (some servers send an object).
#[derive(Debug, Deserialize)]
struct ResponseCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ResponseFunction>,
}

#[derive(Debug, Deserialize)]
struct ResponseFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl ChatResponse {
    fn into_completion(self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let usage = self
            .usage
            .map(|u| Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                estimated: false,
            })
            .unwrap_or_default();
        let Some(choice) = self.choices.into_iter().next() else {
            return Err(ProviderError::Malformed {
                provider: PROVIDER,
                message: "`choices` is empty".to_owned(),
            });
        };
        let calls: Vec<ToolCall> = choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, call)| {
                let id = call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| made_up_id(&req.turns, i));
                let (name, arguments) = call
                    .function
                    .map(|f| (f.name.unwrap_or_default(), f.arguments))
                    .unwrap_or_default();
                ToolCall::from_json_value(id, name, arguments)
            })
            .collect();
        let text = match choice.message.content {
            Some(text) => text,
            None if !calls.is_empty() => String::new(),
            None => {
                let why = match (choice.message.refusal, choice.finish_reason) {
                    (Some(refusal), _) => format!("the model refused: {refusal}"),
                    (None, Some(reason)) => format!("finish_reason: {reason}"),
                    (None, None) => "no finish_reason".to_owned(),
                };
                return Err(ProviderError::Malformed {
                    provider: PROVIDER,
                    message: format!("`choices[0].message.content` is missing or null ({why})"),
                });
            }
        };
        Ok(Completion {
            text,
            usage,
            model: self
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| req.model.clone()),
            stop: StopReason::from_wire(choice.finish_reason.as_deref(), calls.len()),
            calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-test-SECRET-4242";

    fn request() -> CompletionRequest {
        CompletionRequest {
            model: "gpt-4o-mini".into(),
            system: Some("Be brief.".into()),
            prompt: "Say hi".into(),
            max_tokens: 64,
            temperature: Some(0.2),
            output: None,
            max_output_bytes: crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        }
    }

    fn ok_body() -> serde_json::Value {
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!", "refusal": null},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        })
    }

    #[tokio::test]
    async fn sends_documented_request_and_parses_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Say hi"}
                ],
                "max_tokens": 64,
                "temperature": 0.2
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
            .expect(1)
            .mount(&server)
            .await;

        // Trailing slash on the base URL is tolerated.
        let client =
            OpenAi::new(format!("{}/v1/", server.uri()), Some(ApiKey::new(KEY))).streaming(false);
        let completion = client.complete(&request()).await.expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Hi!".into(),
                usage: Usage {
                    input_tokens: 12,
                    output_tokens: 3,
                    estimated: false,
                },
                model: "gpt-4o-mini-2024-07-18".into(),
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn no_key_no_authorization_no_system_no_temperature() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_json(json!({
                "model": "local",
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 16
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "choices": [{"message": {"role": "assistant", "content": "hello"}}]
            })))
            .expect(1)
            .mount(&server)
            .await;

        let client = OpenAi::new(format!("{}/v1", server.uri()), None).streaming(false);
        let req = CompletionRequest {
            model: "local".into(),
            system: None,
            prompt: "Say hi".into(),
            max_tokens: 16,
            temperature: None,
            output: None,
            max_output_bytes: crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        };
        let completion = client.complete(&req).await.expect("completion");
        assert_eq!(completion.text, "hello");
        assert_eq!(completion.usage, Usage::default());
        assert_eq!(completion.model, "local");

        let received = server.received_requests().await.expect("recording on");
        assert_eq!(received.len(), 1);
        assert!(!received[0].headers.contains_key("authorization"));
    }

    #[tokio::test]
    async fn error_status_with_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "7")
                    .set_body_json(json!({
                        "error": {"message": "Rate limit reached", "type": "requests", "code": null}
                    })),
            )
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), Some(ApiKey::new(KEY)));
        let err = client.complete(&request()).await.expect_err("429");
        assert_eq!(
            err,
            ProviderError::Http {
                provider: "openai",
                status: 429,
                message: "Rate limit reached".into(),
                retry_after_ms: Some(7000),
                should_retry: None,
            }
        );
        assert!(err.is_retryable());
        assert!(!err.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn error_status_with_retry_after_ms_and_plain_body() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(503)
                    .insert_header("retry-after-ms", "250")
                    .insert_header("retry-after", "1")
                    .set_body_string(format!("upstream down; {}", "x".repeat(500))),
            )
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        match client.complete(&request()).await {
            Err(ProviderError::Http {
                status: 503,
                message,
                retry_after_ms: Some(250),
                should_retry: None,
                ..
            }) => {
                assert!(message.starts_with("upstream down; xxx"));
                assert!(message.chars().count() <= 301, "{}", message.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn echoed_key_is_scrubbed_from_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": {"message": format!("Incorrect API key provided: {KEY}")}
            })))
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), Some(ApiKey::new(KEY)));
        let err = client.complete(&request()).await.expect_err("401");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains(KEY), "{err}");
        assert!(!format!("{err:?}").contains(KEY), "{err:?}");
        assert!(err.to_string().contains("<redacted>"));
    }

    #[tokio::test]
    async fn garbage_2xx_is_malformed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        let err = client.complete(&request()).await.expect_err("garbage");
        assert!(
            matches!(&err, ProviderError::Malformed { provider: "openai", message } if message.contains("<html>oops</html>")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn empty_choices_and_null_content_are_malformed() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"choices": []})))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "choices": [{"message": {"content": null, "refusal": "no"}, "finish_reason": "stop"}]
            })))
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        let first = client.complete(&request()).await.expect_err("empty");
        assert!(
            matches!(first, ProviderError::Malformed { .. }),
            "{first:?}"
        );
        let second = client.complete(&request()).await.expect_err("null");
        assert!(
            matches!(&second, ProviderError::Malformed { message, .. } if message.contains("refused")),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_transport() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let base = format!("http://127.0.0.1:{port}/v1");
        let client = OpenAi::new(base.clone(), Some(ApiKey::new(KEY)));
        let err = client.complete(&request()).await.expect_err("refused");
        match &err {
            ProviderError::Transport {
                provider: "openai",
                url,
                message,
            } => {
                assert_eq!(url, &format!("{base}/chat/completions"));
                assert!(!message.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.is_retryable());
        assert!(!err.to_string().contains(KEY));
        assert!(!format!("{err:?}").contains(KEY));
    }

    /// An SSE body of `data:` events.
    fn sse(events: &[serde_json::Value], done: bool) -> String {
        let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        if done {
            body.push_str("data: [DONE]\n\n");
        }
        body
    }

    fn chunk(content: &str) -> serde_json::Value {
        json!({
            "id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
            "usage": null
        })
    }

    #[tokio::test]
    async fn streams_by_default_and_reads_usage_chunk() {
        let server = MockServer::start().await;
        let body = sse(
            &[
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                chunk("Hi"),
                chunk(" there"),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}),
                json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}}),
            ],
            true,
        );
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_json(json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Say hi"}
                ],
                "max_tokens": 64,
                "temperature": 0.2,
                "stream": true,
                "stream_options": {"include_usage": true}
            })))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(body, "text/event-stream; charset=utf-8"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), Some(ApiKey::new(KEY)));
        let seen = std::sync::Mutex::new(Vec::new());
        let completion = client
            .complete_with_progress(&request(), &|n| seen.lock().unwrap().push(n))
            .await
            .expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Hi there".into(),
                usage: Usage {
                    input_tokens: 12,
                    output_tokens: 2,
                    estimated: false
                },
                model: "gpt-4o-mini-2024-07-18".into(),
                ..Default::default()
            }
        );
        // The first chunk is reported at once; the second falls within the throttle.
        assert_eq!(seen.into_inner().unwrap(), [1]);
    }

    #[tokio::test]
    async fn a_stream_without_usage_is_estimated_and_done_is_optional_after_finish() {
        let server = MockServer::start().await;
        // llama-cpp-python's shape: no usage chunk despite include_usage.
        let body = sse(
            &[
                chunk("one"),
                chunk(" two"),
                chunk(" three"),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
            ],
            false,
        );
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        let completion = client.complete(&request()).await.expect("completion");
        assert_eq!(completion.text, "one two three");
        assert_eq!(
            completion.usage,
            Usage {
                // "Be brief." (9 chars) → 3, "Say hi" (6 chars) → 2.
                input_tokens: 5,
                output_tokens: 3,
                estimated: true
            }
        );
    }

    #[tokio::test]
    async fn stream_errors_and_cut_streams() {
        let server = MockServer::start().await;
        let error = sse(
            &[
                chunk("par"),
                json!({"error": {"message": "The server had an error", "type": "server_error"}}),
            ],
            false,
        );
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(error, "text/event-stream"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let cut = sse(&[chunk("partial")], false);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(cut, "text/event-stream"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let interrupted = sse(&[chunk("half")], true);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(interrupted, "text/event-stream"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let garbage = "data: {not json\n\n".to_string();
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(garbage, "text/event-stream"))
            .mount(&server)
            .await;
        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        let err = client.complete(&request()).await.expect_err("error event");
        assert_eq!(
            err,
            ProviderError::Stream {
                provider: "openai",
                kind: Some("server_error".into()),
                message: "The server had an error".into()
            }
        );
        assert!(err.is_retryable() && !err.is_overloaded());
        let err = client.complete(&request()).await.expect_err("cut");
        assert!(
            matches!(&err, ProviderError::Stream { kind: None, message, .. } if message.contains("before `data: [DONE]` (7 characters")),
            "{err:?}"
        );
        assert!(err.is_retryable());
        let err = client.complete(&request()).await.expect_err("interrupted");
        assert_eq!(
            err.to_string(),
            "streamed answer from openai broke off: `data: [DONE]` came before any `finish_reason`: the generation was interrupted (4 characters received)"
        );
        assert!(err.is_retryable());
        let err = client.complete(&request()).await.expect_err("garbage");
        assert!(
            matches!(&err, ProviderError::Malformed { message, .. } if message.contains("{not json")),
            "{err:?}"
        );
    }

    #[test]
    fn only_format_complaints_about_the_request_count_as_rejections() {
        let http = |status, message: &str| ProviderError::Http {
            provider: "openai",
            status,
            message: message.into(),
            retry_after_ms: None,
            should_retry: None,
        };
        let unsupported = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.";
        assert!(rejects_format(&http(400, unsupported)));
        assert!(rejects_format(&http(422, "unknown field `json_schema`")));
        assert!(rejects_format(&http(
            500,
            "('body', 'response_format', 'type')"
        )));
        // Not about the format, or not a rejection of the request.
        assert!(!rejects_format(&http(
            400,
            "maximum context length exceeded"
        )));
        assert!(!rejects_format(&http(
            429,
            "Rate limit reached (response_format)"
        )));
        assert!(!rejects_format(&http(401, "bad key; response_format")));
        assert!(!rejects_format(&ProviderError::Malformed {
            provider: "openai",
            message: "response_format".into()
        }));
        assert_eq!(FormatMode::JsonSchema.next(), Some(FormatMode::JsonObject));
        assert_eq!(FormatMode::Instructions.next(), None);
    }

    #[test]
    fn debug_never_shows_key() {
        let client = OpenAi::new(DEFAULT_BASE_URL, Some(ApiKey::new(KEY)));
        let debug = format!("{client:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("redacted"));
        let provider = super::super::Provider::OpenAi(client);
        assert!(!format!("{provider:?}").contains(KEY));
        assert_eq!(
            OpenAi::new("http://127.0.0.1:8080/v1/", None).base_url(),
            "http://127.0.0.1:8080/v1"
        );
    }
}
