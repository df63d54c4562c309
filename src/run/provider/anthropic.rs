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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    ApiKey, Call, Completion, CompletionRequest, HttpOptions, OutputFormat, ProgressFn,
    ProviderError, Usage, sse,
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
        let request = client
            .post(&url)
            .header("x-api-key", self.api_key.expose())
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .json(&MessagesRequest::new(req, self.options.stream));
        let format = req.output.as_ref();
        let response = call.response(request).await?;
        if self.options.stream && super::is_event_stream(&response) {
            return read_stream(&call, response, req, progress).await;
        }
        let body = call.body(response, req.max_output_bytes).await?;
        let response: MessagesResponse = super::parse_body(PROVIDER, &body)?;
        Ok(response.into_completion(req, format))
    }
}

/// Assembles a streamed message from its events.
async fn read_stream(
    call: &Call<'_>,
    response: reqwest::Response,
    req: &CompletionRequest,
    progress: &ProgressFn<'_>,
) -> Result<Completion, ProviderError> {
    let mut events = sse::Reader::new(call, response, req.max_output_bytes);
    let mut ticker = sse::Ticker::new(progress);
    let mut text = String::new();
    // The tool call's input, when the request asked for a structured output: the `input` the
    // block started with, then the `partial_json` of its deltas.
    let mut tool: Option<(Option<serde_json::Value>, String)> = None;
    let mut model = None;
    let mut usage = Usage::default();
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
            StreamEvent::ContentBlockStart { content_block } => match content_block.kind.as_str() {
                "text" => {
                    if let Some(t) = content_block.text.filter(|t| !t.is_empty()) {
                        text.push_str(&t);
                        events.grew(answer_len(&text, &tool))?;
                    }
                }
                "tool_use" if req.output.is_some() && tool.is_none() => {
                    tool = Some((content_block.input, String::new()));
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { delta } => match delta.kind.as_str() {
                // Only text (or a tool call's input) is progress: `ping` events and empty
                // deltas do not hold the stream open.
                "text_delta" => {
                    if let Some(t) = delta.text.filter(|t| !t.is_empty()) {
                        text.push_str(&t);
                        events.grew(answer_len(&text, &tool))?;
                        ticker.tick(estimate_tokens(&text));
                    }
                }
                "input_json_delta" => {
                    if let (Some((_, json)), Some(piece)) =
                        (&mut tool, delta.partial_json.filter(|p| !p.is_empty()))
                    {
                        json.push_str(&piece);
                        let tokens = estimate_tokens(json);
                        events.grew(answer_len(&text, &tool))?;
                        ticker.tick(tokens);
                    }
                }
                _ => {}
            },
            StreamEvent::MessageDelta { usage: Some(u) } => {
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
            StreamEvent::MessageDelta { usage: None }
            | StreamEvent::ContentBlockStop {}
            | StreamEvent::Ping {}
            | StreamEvent::Other => {}
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
    let text = match (req.output.as_ref(), tool) {
        (Some(format), Some((start, json))) => {
            if json.trim().is_empty() {
                tool_answer(format, start.unwrap_or_default())
            } else {
                match serde_json::from_str(&json) {
                    Ok(input) => tool_answer(format, input),
                    Err(_) => json,
                }
            }
        }
        _ => text,
    };
    Ok(Completion {
        text,
        usage,
        model: model.unwrap_or_else(|| req.model.clone()),
        ..Default::default()
    })
}

/// Bytes of a streamed answer so far: its text and a tool call's input.
fn answer_len(text: &str, tool: &Option<(Option<serde_json::Value>, String)>) -> usize {
    text.len() + tool.as_ref().map_or(0, |(_, json)| json.len())
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
        content_block: StreamBlock,
    },
    ContentBlockDelta {
        delta: StreamBlock,
    },
    ContentBlockStop {},
    MessageDelta {
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
    messages: [UserMessage<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[Tool<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
}

/// The one tool of a structured output.
#[derive(Debug, Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: String,
    input_schema: serde_json::Value,
}

/// `{"type": "tool", "name": ...}`: the model must call this tool.
#[derive(Debug, Serialize)]
struct ToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct UserMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> MessagesRequest<'a> {
    fn new(req: &'a CompletionRequest, stream: bool) -> Self {
        MessagesRequest {
            model: &req.model,
            max_tokens: req.max_tokens,
            system: req.system.as_deref(),
            messages: [UserMessage {
                role: "user",
                content: &req.prompt,
            }],
            temperature: req.temperature,
            stream,
            tools: req.output.as_ref().map(|f| {
                let (input_schema, wrapped) = structured::tool_schema(&f.ty);
                let description = if wrapped {
                    format!(
                        "Give your answer, a value of type {}, as the `{}` property.",
                        f.ty,
                        structured::WRAP_KEY
                    )
                } else {
                    format!("Give your answer, of type {}.", f.ty)
                };
                [Tool {
                    name: &f.name,
                    description,
                    input_schema,
                }]
            }),
            tool_choice: req.output.as_ref().map(|f| ToolChoice {
                kind: "tool",
                name: &f.name,
            }),
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
    usage: Option<MessagesUsage>,
}

/// One content block: `text` blocks carry answer text, a `tool_use` block a structured
/// output's `input`.
#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
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
    fn into_completion(self, req: &CompletionRequest, format: Option<&OutputFormat>) -> Completion {
        let tool_input = format.and_then(|f| {
            let block = self.content.iter().position(|b| b.kind == "tool_use")?;
            Some((f, self.content[block].input.clone().unwrap_or_default()))
        });
        let text = match tool_input {
            Some((f, input)) => tool_answer(f, input),
            None => self
                .content
                .into_iter()
                .filter(|block| block.kind == "text")
                .filter_map(|block| block.text)
                .collect::<String>(),
        };
        let usage = self
            .usage
            .map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                estimated: false,
            })
            .unwrap_or_default();
        Completion {
            text,
            usage,
            model: self
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| req.model.clone()),
            ..Default::default()
        }
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
                ..Default::default()
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
