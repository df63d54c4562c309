//! Providers: the clients that turn one rendered model step into one completion.
//!
//! Every provider answers the same question — "complete this prompt with this model" — and
//! reports token usage as the provider itself counted it (`usage` in the response body), so
//! the run summary and cost are real figures, not estimates.
//!
//! - [`openai::OpenAi`]: the OpenAI Chat Completions API (`POST {base_url}/chat/completions`),
//!   which llama.cpp, Ollama and vLLM servers also speak.
//! - [`anthropic::Anthropic`]: the Anthropic Messages API (`POST {base_url}/v1/messages`).
//! - [`sim::Sim`]: a deterministic simulator for dry runs and tests.
//!
//! Retries, timeouts and fallbacks are policies of the scheduler (`crate::run`), not of the
//! clients: a client makes exactly one HTTP request per call — except that an
//! OpenAI-compatible client asked for a structured output, the first time its server rejects
//! the way it asked, asks again at once the next way down (see [`openai::OpenAi::complete`]).
//!
//! HTTP clients stream by default (server-sent events, see [`sse`]): the answer arrives piece
//! by piece, progress is reported as it comes, and a silent connection is detected by an
//! inactivity timeout ([`HttpOptions::idle_timeout`]) instead of waiting for the whole answer.

pub mod anthropic;
pub mod batch;
pub mod conversation;
pub mod exact_sleep;
pub mod openai;
pub mod sim;
pub mod sse;
pub mod tool_prompt;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::common::format_duration;
use crate::redact::{Redacted, redact, redact_bytes};
use crate::run::cassette::Cassette;
use crate::run::limits::ProviderLimits;

/// An API key. Its `Debug` and `Display` never show the value, and making one registers the
/// value as a secret ([`crate::redact::register`]), so that it is redacted from every text
/// orch takes in or writes should a server, a program or a model ever echo it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment, and registers it as a secret.
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        crate::redact::register(&key);
        ApiKey(key)
    }
    /// The key itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One request to a model: what the scheduler hands a provider for a model step, or for one
/// turn of an agent loop (then `turns` holds the conversation after the prompt and `tools` the
/// tools offered).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionRequest {
    /// The provider's own model identifier (for example `claude-sonnet-4-5`), not the
    /// script's model name.
    pub model: String,
    /// System text, if the agent has one.
    pub system: Option<String>,
    /// The rendered prompt: the step's user message.
    pub prompt: String,
    /// Upper bound on output tokens (Anthropic requires it; OpenAI-compatible servers honour it).
    pub max_tokens: u32,
    /// Sampling temperature, if the agent sets one.
    pub temperature: Option<f64>,
    /// The shape the answer must have, for a step with `-> T` (never `text`); `None` for a
    /// plain text answer. See [`OutputFormat`].
    pub output: Option<OutputFormat>,
    /// The longest answer accepted, in bytes of UTF-8 text (the agent's `max_output_bytes`,
    /// [`DEFAULT_MAX_OUTPUT_BYTES`] by default). Not sent: the client stops reading, and the
    /// attempt fails with [`ProviderError::TooLarge`], as soon as the answer grows past it.
    pub max_output_bytes: u32,
    /// The conversation after the prompt, oldest first: the model's earlier turns with their
    /// tool calls, each followed by those calls' results. Empty for a plain step and for an
    /// agent loop's first turn.
    pub turns: Vec<Turn>,
    /// The tools offered, in grant order; empty for an agent without `tools`.
    pub tools: Vec<OfferedTool>,
    /// Whether the model may, must, or must not call a tool this turn.
    pub tool_choice: ToolChoice,
}

pub use conversation::{StopReason, ToolCall, ToolResult, ToolSpec, Turn};

/// A tool offered to the model on one request.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    /// Its name, description and input schema, as sent.
    pub spec: ToolSpec,
    /// Whether calling it changes nothing (`read`, `list`, `glob`, `grep`, an MCP tool annotated
    /// `readOnlyHint`). Not sent: the simulator calls only read-only tools, so a dry run never
    /// writes.
    pub read_only: bool,
}

/// The `tool_choice` of a request (Anthropic Messages and OpenAI Chat Completions both have
/// one, with these meanings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default; ignored when no tools are offered).
    #[default]
    Auto,
    /// No tool calls: the loop's last turn, when it must answer.
    None,
}

pub use crate::common::DEFAULT_MAX_OUTPUT_BYTES;

/// A structured output asked of a provider: a value of a language type, described by a JSON
/// Schema.
///
/// Each provider asks for it its own way: OpenAI-compatible servers get a `response_format`
/// (with fallbacks for servers that lack it: see [`openai::OpenAi::complete`]), Anthropic a
/// forced tool call (see [`anthropic::Anthropic::complete`]), the simulator answers with a
/// sample value. In every case [`Completion::text`] is the answer as JSON text (a wrapper the
/// provider added around a non-record type already removed), which the scheduler then parses
/// and checks against [`OutputFormat::ty`] with [`crate::run::structured::parse_as`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFormat {
    /// The schema's name: the step's name reduced to `[a-zA-Z0-9_-]{1,64}`
    /// ([`crate::run::structured::schema_name`]); OpenAI's `json_schema.name`, Anthropic's
    /// tool name.
    pub name: String,
    /// The type the answer must have.
    pub ty: crate::check::types::Type,
    /// The JSON Schema of `ty` ([`crate::run::structured::json_schema`]), unwrapped: a
    /// provider that needs an object at the root wraps it itself.
    pub schema: serde_json::Value,
    /// Whether the prompt already ends with instructions describing the schema (a retry after
    /// a mismatch): a provider that falls back to prompt instructions then adds none.
    pub prompted: bool,
}

impl OutputFormat {
    /// The format of a step named `step` whose output has type `ty`; `None` for `text`, which
    /// is never structured.
    pub fn new(step: &str, ty: &crate::check::types::Type) -> Option<Self> {
        use crate::run::structured;
        (*ty != crate::check::types::Type::Text).then(|| OutputFormat {
            name: structured::schema_name(step),
            ty: ty.clone(),
            schema: structured::json_schema(ty),
            prompted: false,
        })
    }

    /// `prompt` followed by the instructions for providers without schema support (a blank
    /// line between), unless the prompt already has them ([`OutputFormat::prompted`]).
    pub fn prompt_with_instructions(&self, prompt: &str) -> String {
        if self.prompted {
            prompt.to_owned()
        } else {
            format!(
                "{prompt}\n\n{}",
                crate::run::structured::instructions(&self.ty)
            )
        }
    }
}

/// Token usage of one completion, as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Whether the counts are orch's estimate rather than the provider's report: a streaming
    /// server that ignores `stream_options.include_usage` sends no usage, and then input is
    /// estimated at 4 characters per token and output as one token per streamed text chunk.
    /// Serialized only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    /// Adds another completion's usage (estimated if either is).
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.estimated |= other.estimated;
    }
}

/// The answer to one [`CompletionRequest`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    /// The text of the answer (all text blocks / the first choice's message content).
    pub text: String,
    /// Usage as reported by the provider.
    pub usage: Usage,
    /// The model that answered, as the provider reported it (falls back to the requested one).
    pub model: String,
    /// The tool calls the model made, in order; empty for a plain answer.
    pub calls: Vec<ToolCall>,
    /// Why the model stopped.
    pub stop: StopReason,
}

/// Why a provider call failed. The messages of errors returned by the clients are redacted
/// ([`crate::redact`]): they hold no API key, nor anything shaped like one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The server answered with a non-success HTTP status.
    #[error("HTTP {status} from {provider}: {message}")]
    Http {
        /// Provider kind (`openai`, `anthropic`).
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// The error message from the body, or the body itself, shortened.
        message: String,
        /// The delay the server asked for before a retry, in milliseconds (rounded up),
        /// when it is one to obey: more than zero and at most 60 s
        /// ([`crate::run::limits::retry_after`]).
        retry_after_ms: Option<u64>,
        /// The server's `x-should-retry` header, when it sent one: it overrides the
        /// status-based decision (as in the official Anthropic and OpenAI SDKs).
        should_retry: Option<bool>,
    },
    /// The request did not reach the server or the connection broke.
    #[error("cannot reach {provider} at {url}: {message}")]
    Transport {
        /// Provider kind.
        provider: &'static str,
        /// The URL that was requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered 2xx, but the body is not what the API documents.
    #[error("malformed response from {provider}: {message}")]
    Malformed {
        /// Provider kind.
        provider: &'static str,
        /// What was missing or wrong.
        message: String,
    },
    /// The server accepted the request (2xx) but the streamed answer broke off: an `error`
    /// event arrived in the stream, or the connection closed before the end-of-stream marker
    /// (Anthropic's `message_stop`, OpenAI's `data: [DONE]`).
    #[error("streamed answer from {provider} broke off: {message}")]
    Stream {
        /// Provider kind.
        provider: &'static str,
        /// The error's type when the server sent one (Anthropic: `overloaded_error`,
        /// `api_error`, ...); `None` for a stream cut short.
        kind: Option<String>,
        /// What happened.
        message: String,
    },
    /// A streamed answer did not grow for `idle_ms` milliseconds: no response, or no text,
    /// since the response or the last piece of text — bytes that carry no answer (comments,
    /// pings, empty deltas) do not count (the inactivity timeout, distinct from the step's
    /// per-attempt `timeout`).
    #[error("the answer from {provider} did not grow for {}", format_duration(*idle_ms))]
    Idle {
        /// Provider kind.
        provider: &'static str,
        /// The inactivity timeout, in milliseconds.
        idle_ms: u64,
    },
    /// The answer grew past [`CompletionRequest::max_output_bytes`]: a stream that does not
    /// end, a body or a single event too large. Final: the same request would be read as
    /// far again.
    #[error("the answer from {provider} grew past {max_output_bytes} bytes")]
    TooLarge {
        /// Provider kind.
        provider: &'static str,
        /// The bound, in bytes.
        max_output_bytes: u32,
    },
    /// A request of a provider batch (`parallel <batch>`) was not answered: the provider
    /// reported an error for it, or the batch expired, was cancelled or failed before it was
    /// processed ([`batch`]).
    #[error("batched request to {provider} not answered: {message}")]
    Batch {
        /// Provider kind.
        provider: &'static str,
        /// What the provider said of it.
        message: String,
        /// Whether sending it again (as an ordinary request) may succeed: not for a request
        /// the provider found invalid.
        retryable: bool,
    },
    /// The simulator was told to fail (for tests of retry and failure policies).
    #[error("simulated failure: {0}")]
    Simulated(String),
    /// A failure recorded in a cassette, replayed (`--replay`): the recorded error's message,
    /// retried and failed over as the recorded error was.
    #[error("{message}")]
    Replayed {
        /// The recorded error, as it was said.
        message: String,
        /// Whether the recorded error was worth retrying ([`ProviderError::is_retryable`]).
        retryable: bool,
        /// Whether the recorded error said the provider was overloaded
        /// ([`ProviderError::is_overloaded`]).
        overloaded: bool,
    },
    /// A request a replayed cassette does not have (`--replay`), with the nearest recorded
    /// request's first difference ([`crate::run::cassette::Cassette::complete`]); never
    /// retried. Also a cassette that cannot be written while recording (`--record`).
    #[error("{0}")]
    NotRecorded(String),
}

/// Error types an Anthropic stream may carry that the same request cannot get past: they are
/// final, like their HTTP status (400, 401, 403, 404, 413). Source: Anthropic API reference,
/// "Errors", <https://docs.anthropic.com/en/api/errors>.
const FINAL_STREAM_ERRORS: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
];

impl ProviderError {
    /// The error with every text in it redacted ([`crate::redact::redact`]).
    fn redacted(self) -> Self {
        let scrub = |text: String| redact(text).into_string();
        match self {
            ProviderError::Http {
                provider,
                status,
                message,
                retry_after_ms,
                should_retry,
            } => ProviderError::Http {
                provider,
                status,
                message: scrub(message),
                retry_after_ms,
                should_retry,
            },
            ProviderError::Transport {
                provider,
                url,
                message,
            } => ProviderError::Transport {
                provider,
                url: scrub(url),
                message: scrub(message),
            },
            ProviderError::Malformed { provider, message } => ProviderError::Malformed {
                provider,
                message: scrub(message),
            },
            ProviderError::Stream {
                provider,
                kind,
                message,
            } => ProviderError::Stream {
                provider,
                kind: kind.map(scrub),
                message: scrub(message),
            },
            ProviderError::Simulated(message) => ProviderError::Simulated(scrub(message)),
            ProviderError::Batch {
                provider,
                message,
                retryable,
            } => ProviderError::Batch {
                provider,
                message: scrub(message),
                retryable,
            },
            ProviderError::NotRecorded(message) => ProviderError::NotRecorded(scrub(message)),
            ProviderError::Replayed {
                message,
                retryable,
                overloaded,
            } => ProviderError::Replayed {
                message: scrub(message),
                retryable,
                overloaded,
            },
            unchanged @ (ProviderError::Idle { .. } | ProviderError::TooLarge { .. }) => unchanged,
        }
    }

    /// Whether the provider said it is overloaded (HTTP 529, Anthropic's `overloaded_error`,
    /// or 503): a fallback model, if any, is tried at once instead of waiting on this one.
    pub fn is_overloaded(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => matches!(status, 529 | 503),
            ProviderError::Stream { kind, .. } => kind.as_deref() == Some("overloaded_error"),
            ProviderError::Replayed { overloaded, .. } => *overloaded,
            _ => false,
        }
    }

    /// The back-off the server asked for, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ProviderError::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }

    /// Whether trying the same request again may succeed. The server's `x-should-retry`
    /// decides when present; otherwise 408 (timeout), 409 (conflict), 429 (rate limit) and
    /// 5xx (including Anthropic's 529 "overloaded") are retried, and every other 4xx — 400
    /// (including context-length errors), 401, 403, 404, 413, 422 — is final, since the same
    /// request cannot succeed. Transport errors, malformed bodies and simulated failures are
    /// retried. The rule is the official SDKs' (anthropic-sdk-python and openai-python,
    /// `_should_retry`). A stream that broke off or fell silent is retried, unless its `error`
    /// event has a type that is final as an HTTP status (`invalid_request_error`,
    /// `authentication_error`, `permission_error`, `not_found_error`, `request_too_large`).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Http {
                status,
                should_retry,
                ..
            } => should_retry.unwrap_or(matches!(status, 408 | 409 | 429) || *status >= 500),
            ProviderError::Stream { kind, .. } => kind
                .as_deref()
                .is_none_or(|k| !FINAL_STREAM_ERRORS.contains(&k)),
            ProviderError::Transport { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::Idle { .. }
            | ProviderError::Simulated(_) => true,
            ProviderError::Replayed { retryable, .. } | ProviderError::Batch { retryable, .. } => {
                *retryable
            }
            ProviderError::TooLarge { .. } | ProviderError::NotRecorded(_) => false,
        }
    }
}

/// A configured provider client. Cheap to clone (clients share one connection pool).
#[derive(Debug, Clone)]
pub enum Provider {
    /// OpenAI Chat Completions or a compatible server.
    OpenAi(openai::OpenAi),
    /// Anthropic Messages API.
    Anthropic(anthropic::Anthropic),
    /// Built-in simulator.
    Sim(sim::Sim),
    /// Another provider whose every exchange is written to a cassette (`--record`).
    Record(Box<Provider>, Arc<Cassette>),
    /// The answers of a cassette, with no provider behind it (`--replay`).
    Replay(Arc<Cassette>),
}

/// Called while a streamed answer arrives, with the output tokens received so far (an
/// estimate: one per text chunk for OpenAI-compatible servers, 4 characters per token for
/// Anthropic). Called at most every [`sse::PROGRESS_EVERY`].
pub type ProgressFn<'a> = dyn Fn(u64) + Send + Sync + 'a;

impl Provider {
    /// Sends one request and returns the completion. Makes exactly one attempt.
    ///
    /// # Errors
    /// [`ProviderError`] on HTTP errors, transport errors, malformed responses, and streams
    /// that break off or fall silent.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.complete_with_progress(req, &|_| {}).await
    }

    /// [`Provider::complete`], reporting streamed progress to `progress`.
    ///
    /// # Errors
    /// As [`Provider::complete`].
    pub async fn complete_with_progress(
        &self,
        req: &CompletionRequest,
        progress: &ProgressFn<'_>,
    ) -> Result<Completion, ProviderError> {
        // The HTTP calls are boxed: their futures are several KB, which every step's task
        // would otherwise carry (a simulated call's too), for the whole time it runs.
        let (provider, completion) = match self {
            Provider::OpenAi(p) => (
                "openai",
                Box::pin(p.complete_with_progress(req, progress)).await?,
            ),
            Provider::Anthropic(p) => (
                "anthropic",
                Box::pin(p.complete_with_progress(req, progress)).await?,
            ),
            Provider::Sim(p) => ("sim", p.complete(req).await?),
            Provider::Record(inner, cassette) => {
                // Boxed: the recorded provider's call is this same function.
                let outcome = Box::pin(inner.complete_with_progress(req, progress)).await;
                cassette
                    .note_completion(req, &outcome)
                    .map_err(ProviderError::NotRecorded)?;
                return outcome;
            }
            Provider::Replay(cassette) => ("cassette", cassette.complete(req)?),
        };
        // Streams are cut as they outgrow the bound; a whole body is checked here.
        if completion.text.len() > req.max_output_bytes as usize {
            return Err(ProviderError::TooLarge {
                provider,
                max_output_bytes: req.max_output_bytes,
            });
        }
        Ok(completion)
    }
}

/// Default per-request HTTP timeout of a non-streamed request when the step sets none:
/// generous, because the scheduler's `timeout` option is the real bound on an attempt.
/// Streamed requests have no such bound; their inactivity timeout
/// ([`HttpOptions::idle_timeout`]) catches a server that stops sending.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(600);

/// Default inactivity timeout of a streamed answer: 60 s without the answer growing. Servers
/// stream each token as it is generated, so a minute without one means a stalled
/// connection or generation. Bytes that carry no answer — SSE comments, Anthropic's `ping`
/// events, empty deltas, keep-alive whitespace — do not count as progress: a server that
/// sends only those is as stalled as a silent one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How an HTTP client talks to its server, beyond the URL and key.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Ask for a streamed answer (server-sent events). On by default; off for servers that
    /// lack streaming (a server that ignores the request and answers with one JSON body is
    /// understood either way).
    pub stream: bool,
    /// When streaming: the longest wait tolerated for the response headers, and then for the
    /// answer to grow (see [`DEFAULT_IDLE_TIMEOUT`] for what counts).
    pub idle_timeout: Duration,
    /// The provider's rate limits, told about every response's rate-limit headers.
    pub limits: Option<Arc<ProviderLimits>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            stream: true,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            limits: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared HTTP plumbing for the `openai` and `anthropic` clients (private to this module tree).
// ---------------------------------------------------------------------------------------------

/// The longest wait for a TCP (and TLS) connection to be set up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many characters of a non-JSON error body go into [`ProviderError::Http`].
const ERROR_BODY_CHARS: usize = 300;

/// How many bytes of an error body are read (its message is shortened anyway).
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The most bytes of JSON that may carry an answer of `max_output_bytes` bytes — a whole
/// body, or one streamed event: JSON escapes a byte in at most 6 (`\u001f`), plus 64 KiB
/// for the rest of the envelope (ids, usage, a tool call's wrapper).
fn envelope_bytes(max_output_bytes: u32) -> usize {
    (max_output_bytes as usize)
        .saturating_mul(6)
        .saturating_add(64 * 1024)
}

/// How many characters of an API's own `error.message` go into [`ProviderError::Http`].
const ERROR_MESSAGE_CHARS: usize = 1000;

/// The process-wide HTTP client (one connection pool), built on first use. It has no overall
/// timeout: non-streamed requests get [`DEFAULT_HTTP_TIMEOUT`] each, streamed ones the
/// inactivity timeout.
///
/// # Errors
/// [`ProviderError::Transport`] when the client cannot be built (for example the TLS backend
/// fails to initialise); the failure is remembered, so every later call reports it too.
fn http_client(provider: &'static str, url: &str) -> Result<reqwest::Client, ProviderError> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| error_chain(&e.without_url()))
        })
        .clone()
        .map_err(|message| ProviderError::Transport {
            provider,
            url: url.to_owned(),
            message: format!("cannot build the HTTP client: {message}"),
        })
}

/// Joins a base URL (with or without a trailing slash) and a path starting with `/`.
fn join_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// One HTTP call's context: who is called, where, and the provider's options.
struct Call<'a> {
    provider: &'static str,
    url: &'a str,
    options: &'a HttpOptions,
}

impl Call<'_> {
    /// A reqwest error as [`ProviderError::Transport`], redacted.
    fn transport(&self, err: reqwest::Error) -> ProviderError {
        let message = if err.is_timeout() {
            format!(
                "timed out ({}; the HTTP timeout is {} s)",
                error_chain(&err.without_url()),
                DEFAULT_HTTP_TIMEOUT.as_secs()
            )
        } else {
            error_chain(&err.without_url())
        };
        ProviderError::Transport {
            provider: self.provider,
            url: self.url.to_owned(),
            message: redact(message).into_string(),
        }
    }

    fn idle(&self) -> ProviderError {
        ProviderError::Idle {
            provider: self.provider,
            idle_ms: u64::try_from(self.options.idle_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Sends a prepared POST and returns the response of a 2xx answer, its body unread. Every
    /// response's rate-limit headers go to the provider's limits. When streaming, the wait for
    /// the response headers is bounded by the inactivity timeout.
    ///
    /// # Errors
    /// - [`ProviderError::Transport`] when the request cannot be sent;
    /// - [`ProviderError::Idle`] when streaming and no response came within the inactivity
    ///   timeout;
    /// - [`ProviderError::Http`] for a non-2xx status, with the body's `error.message` (both
    ///   the OpenAI and the Anthropic error shapes put it there) or the shortened body, and the
    ///   `retry-after-ms` / `retry-after` header converted to milliseconds.
    async fn response(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = if self.options.stream {
            match tokio::time::timeout(self.options.idle_timeout, request.send()).await {
                Ok(r) => r.map_err(|e| self.transport(e))?,
                Err(_) => return Err(self.idle()),
            }
        } else {
            request
                .timeout(DEFAULT_HTTP_TIMEOUT)
                .send()
                .await
                .map_err(|e| self.transport(e))?
        };
        if let Some(limits) = &self.options.limits {
            limits.observe(response.headers());
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // Kept only when it is a delay to obey: the official SDKs' rule.
        let retry_after_ms =
            crate::run::limits::retry_after(response.headers(), std::time::SystemTime::now())
                .map(|d| d.as_micros().div_ceil(1000) as u64);
        let should_retry = should_retry(response.headers());
        let (body, _cut) = self.read_body(response, ERROR_BODY_BYTES).await?;
        Err(ProviderError::Http {
            provider: self.provider,
            status: status.as_u16(),
            message: error_message(&redact_bytes(&body)).into_string(),
            retry_after_ms,
            should_retry,
        })
    }

    /// Reads a whole 2xx body that carries an answer of at most `max_output_bytes` bytes
    /// (so at most [`envelope_bytes`] of JSON), redacted before anything reads it; when
    /// streaming, no piece may take longer than the inactivity timeout.
    ///
    /// # Errors
    /// [`ProviderError::TooLarge`] when the body is longer; [`ProviderError::Transport`]
    /// when the connection breaks; [`ProviderError::Idle`] when streaming and the body
    /// stalls.
    async fn body(
        &self,
        response: reqwest::Response,
        max_output_bytes: u32,
    ) -> Result<Redacted, ProviderError> {
        match self
            .read_body(response, envelope_bytes(max_output_bytes))
            .await?
        {
            (body, false) => Ok(redact_bytes(&body)),
            (_, true) => Err(ProviderError::TooLarge {
                provider: self.provider,
                max_output_bytes,
            }),
        }
    }

    /// Reads a body up to `limit` bytes: the bytes, and whether it was longer (the rest is
    /// not read).
    async fn read_body(
        &self,
        response: reqwest::Response,
        limit: usize,
    ) -> Result<(Vec<u8>, bool), ProviderError> {
        use futures_util::StreamExt as _;
        let mut body = Vec::new();
        let mut chunks = std::pin::pin!(response.bytes_stream());
        loop {
            let next = if self.options.stream {
                tokio::time::timeout(self.options.idle_timeout, chunks.next())
                    .await
                    .map_err(|_| self.idle())?
            } else {
                chunks.next().await
            };
            match next {
                Some(Ok(chunk)) if body.len() + chunk.len() > limit => {
                    body.extend_from_slice(&chunk[..limit - body.len()]);
                    return Ok((body, true));
                }
                Some(Ok(chunk)) => body.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(self.transport(e)),
                None => return Ok((body, false)),
            }
        }
    }
}

/// Whether a response is a stream of server-sent events (`content-type: text/event-stream`).
fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Parses a 2xx body as the documented response type.
///
/// # Errors
/// [`ProviderError::Malformed`] with serde's description and the start of the body.
fn parse_body<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    body: &Redacted,
) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|err| ProviderError::Malformed {
        provider,
        message: format!(
            "{err} (body: {})",
            body.slice(str::trim).shorten(ERROR_BODY_CHARS)
        ),
    })
}

/// A client's outcome with every text from the server redacted once more, now that it is
/// decoded: a key may have reached it in pieces (streamed chunks) or in JSON escapes
/// (`\u0073k-...`) that the raw body did not show.
fn redact_outcome(outcome: Result<Completion, ProviderError>) -> Result<Completion, ProviderError> {
    match outcome {
        Ok(c) => Ok(Completion {
            text: redact(c.text).into_string(),
            model: redact(c.model).into_string(),
            calls: c.calls.into_iter().map(ToolCall::redacted).collect(),
            stop: match c.stop {
                StopReason::Other(why) => StopReason::Other(redact(why).into_string()),
                known => known,
            },
            ..c
        }),
        Err(e) => Err(e.redacted()),
    }
}

/// A reqwest error and its sources, joined with `: ` (reqwest's own `Display` shows only the
/// outermost layer, which says nothing like "connection refused").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The human-readable message of an error body: `error.message` (OpenAI, Anthropic,
/// llama.cpp, vLLM), a plain-string `error` (Ollama) or a top-level `message`; otherwise the
/// body itself. Shortened, after redaction.
fn error_message(body: &Redacted) -> Redacted {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let error = value.get("error");
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .or_else(|| error.and_then(|e| e.as_str()))
            .or_else(|| value.get("message").and_then(|m| m.as_str()));
        if let Some(message) = message {
            return redact(message.trim()).shorten(ERROR_MESSAGE_CHARS);
        }
    }
    let text = body.slice(str::trim);
    if text.is_empty() {
        redact("(empty body)")
    } else {
        text.shorten(ERROR_BODY_CHARS)
    }
}

/// `x-should-retry: true|false`, the servers' explicit say on retrying.
fn should_retry(headers: &reqwest::header::HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted() {
        let key = ApiKey::new("sk-secret-123");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(key.to_string(), "<redacted>");
        assert_eq!(key.expose(), "sk-secret-123");
    }

    #[test]
    fn retryable_statuses() {
        let http = |status, should_retry| ProviderError::Http {
            provider: "openai",
            status,
            message: String::new(),
            retry_after_ms: None,
            should_retry,
        };
        for status in [408, 409, 429, 500, 503, 529] {
            assert!(http(status, None).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(!http(status, None).is_retryable(), "{status}");
        }
        // `x-should-retry` overrides the status, both ways.
        assert!(http(400, Some(true)).is_retryable());
        assert!(!http(500, Some(false)).is_retryable());
        assert!(http(529, None).is_overloaded() && !http(500, None).is_overloaded());
    }

    #[test]
    fn join_url_tolerates_trailing_slash() {
        assert_eq!(join_url("http://h/v1", "/x"), "http://h/v1/x");
        assert_eq!(join_url("http://h/v1/", "/x"), "http://h/v1/x");
    }

    /// The message of an error body, read as the client reads it.
    fn error_message(body: &[u8]) -> String {
        super::error_message(&redact_bytes(body)).into_string()
    }

    #[test]
    fn error_message_shapes() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        assert_eq!(error_message(openai), "Rate limit reached");
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_message(anthropic), "Overloaded");
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(b"  "), "(empty body)");
        let long = "x".repeat(1000);
        let short = error_message(long.as_bytes());
        assert_eq!(short.chars().count(), ERROR_BODY_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn should_retry_header() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut should = HeaderMap::new();
        assert_eq!(should_retry(&should), None);
        should.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&should), Some(false));
    }

    #[test]
    fn an_error_message_is_redacted_before_it_is_shortened() {
        let key = ApiKey::new("mod-test-Kq3Wz8Lx5Rv2");
        // The key straddles the cut of a long `error.message`.
        let long = format!("{} {}", "y".repeat(ERROR_MESSAGE_CHARS - 8), key.expose());
        let body = serde_json::json!({"error": {"message": long}}).to_string();
        let message = error_message(body.as_bytes());
        assert!(!message.contains("mod-test"), "{message}");
        assert!(message.ends_with(" <redact…"), "{message}");
    }

    #[test]
    fn a_key_in_json_escapes_is_redacted_once_decoded() {
        let key = ApiKey::new("esc-test-Pb6Tn1Yc9Hd4");
        // `\u0065` is `e`: the raw body does not hold the key, its decoded message does.
        let body = format!(
            r#"{{"error":{{"message":"bad key \u0065{}"}}}}"#,
            &key.expose()[1..]
        );
        assert!(!body.contains(key.expose()));
        assert_eq!(error_message(body.as_bytes()), "bad key <redacted>");
    }

    #[test]
    fn outcomes_are_redacted_whole() {
        let key = ApiKey::new("out-test-Mv7Gs2Qa5Je8");
        // Streamed in two pieces, the key only appears once the text is assembled.
        let completion = Completion {
            text: format!("echo: {}", key.expose()),
            usage: Usage::default(),
            model: "m".into(),
            ..Default::default()
        };
        let text = redact_outcome(Ok(completion)).unwrap().text;
        assert_eq!(text, "echo: <redacted>");
        let err = ProviderError::Stream {
            provider: "openai",
            kind: None,
            message: format!("broke at {}", key.expose()),
        };
        let shown = redact_outcome(Err(err)).unwrap_err().to_string();
        assert!(!shown.contains(key.expose()), "{shown}");
    }
}
