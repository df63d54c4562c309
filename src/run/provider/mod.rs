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
//! clients: a client makes exactly one HTTP request per call.

pub mod anthropic;
pub mod openai;
pub mod sim;

use std::fmt;
use std::time::Duration;

/// An API key. Its `Debug` and `Display` never show the value, so a key cannot leak into logs,
/// plans, journals or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
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

/// One request to a model: what the scheduler hands a provider for a model step.
#[derive(Debug, Clone, PartialEq)]
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
}

/// Token usage of one completion, as reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
}

/// The answer to one [`CompletionRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text of the answer (all text blocks / the first choice's message content).
    pub text: String,
    /// Usage as reported by the provider.
    pub usage: Usage,
    /// The model that answered, as the provider reported it (falls back to the requested one).
    pub model: String,
}

/// Why a provider call failed. Messages never contain API keys.
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
        /// `retry-after` in milliseconds, when the server sent one.
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
    /// The simulator was told to fail (for tests of retry and failure policies).
    #[error("simulated failure: {0}")]
    Simulated(String),
}

impl ProviderError {
    /// Whether the provider said it is overloaded (HTTP 529, Anthropic's `overloaded_error`,
    /// or 503): a fallback model, if any, is tried at once instead of waiting on this one.
    pub fn is_overloaded(&self) -> bool {
        matches!(
            self,
            ProviderError::Http {
                status: 529 | 503,
                ..
            }
        )
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
    /// `_should_retry`).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Http {
                status,
                should_retry,
                ..
            } => should_retry.unwrap_or(matches!(status, 408 | 409 | 429) || *status >= 500),
            ProviderError::Transport { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::Simulated(_) => true,
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
}

impl Provider {
    /// Sends one request and returns the completion. Makes exactly one attempt.
    ///
    /// # Errors
    /// [`ProviderError`] on HTTP errors, transport errors or malformed responses.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.complete(req).await,
            Provider::Anthropic(p) => p.complete(req).await,
            Provider::Sim(p) => p.complete(req).await,
        }
    }
}

/// Default per-request HTTP timeout when the step sets none: generous, because the scheduler's
/// `timeout` option is the real bound on an attempt.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// Shared HTTP plumbing for the `openai` and `anthropic` clients (private to this module tree).
// ---------------------------------------------------------------------------------------------

/// How many characters of a non-JSON error body go into [`ProviderError::Http`].
const ERROR_BODY_CHARS: usize = 300;

/// How many characters of an API's own `error.message` go into [`ProviderError::Http`].
const ERROR_MESSAGE_CHARS: usize = 1000;

/// The process-wide HTTP client (one connection pool), built on first use with
/// [`DEFAULT_HTTP_TIMEOUT`] as its per-request timeout.
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
                .timeout(DEFAULT_HTTP_TIMEOUT)
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

/// Sends a prepared POST and returns the body of a 2xx answer.
///
/// `key` is only used to scrub the key out of any message, should a server or the network
/// stack ever echo it.
///
/// # Errors
/// - [`ProviderError::Transport`] when the request cannot be sent or the body cannot be read;
/// - [`ProviderError::Http`] for a non-2xx status, with the body's `error.message` (both the
///   OpenAI and the Anthropic error shapes put it there) or the shortened body, and the
///   `retry-after-ms` / `retry-after` header converted to milliseconds.
async fn send(
    provider: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
    key: Option<&ApiKey>,
) -> Result<Vec<u8>, ProviderError> {
    let transport = |err: reqwest::Error| {
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
            provider,
            url: url.to_owned(),
            message: redact(message, key),
        }
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let retry_after_ms = retry_after_ms(response.headers(), std::time::SystemTime::now());
    let should_retry = should_retry(response.headers());
    let body = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        Ok(Vec::from(body))
    } else {
        Err(ProviderError::Http {
            provider,
            status: status.as_u16(),
            message: redact(error_message(&body), key),
            retry_after_ms,
            should_retry,
        })
    }
}

/// Parses a 2xx body as the documented response type.
///
/// # Errors
/// [`ProviderError::Malformed`] with serde's description and the start of the body.
fn parse_body<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    body: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|err| ProviderError::Malformed {
        provider,
        message: format!(
            "{err} (body: {})",
            shorten(String::from_utf8_lossy(body).trim(), ERROR_BODY_CHARS)
        ),
    })
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
/// body itself, shortened.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = value.get("error");
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .or_else(|| error.and_then(|e| e.as_str()))
            .or_else(|| value.get("message").and_then(|m| m.as_str()));
        if let Some(message) = message {
            return shorten(message.trim(), ERROR_MESSAGE_CHARS);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        shorten(text, ERROR_BODY_CHARS)
    }
}

/// The server's requested back-off in milliseconds: `retry-after-ms` (milliseconds, sent by
/// OpenAI and Anthropic) wins over `retry-after`, which is either seconds or an HTTP date
/// (RFC 9110 §10.2.3); a date in the past means "now" (0 ms).
fn retry_after_ms(headers: &reqwest::header::HeaderMap, now: std::time::SystemTime) -> Option<u64> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |name: &str| {
        text(name)?
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    // `as` saturates for huge values, which is the right answer for a back-off.
    number("retry-after-ms")
        .map(|ms| ms.ceil() as u64)
        .or_else(|| number("retry-after").map(|s| (s * 1000.0).ceil() as u64))
        .or_else(|| {
            let date = httpdate::parse_http_date(text("retry-after")?).ok()?;
            Some(date.duration_since(now).map_or(0, |d| d.as_millis() as u64))
        })
}

/// `x-should-retry: true|false`, the servers' explicit say on retrying.
fn should_retry(headers: &reqwest::header::HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// At most `max` characters of `text`, with `…` appended when something was cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Keys shorter than this are not scrubbed from messages: a placeholder such as `x` for a
/// local server is no secret, and replacing every `x` would garble the message.
const MIN_REDACTED_KEY_CHARS: usize = 8;

/// Replaces every occurrence of the key in `message` with `<redacted>` (keys of at least
/// [`MIN_REDACTED_KEY_CHARS`] characters).
fn redact(message: String, key: Option<&ApiKey>) -> String {
    match key {
        Some(key)
            if key.expose().chars().count() >= MIN_REDACTED_KEY_CHARS
                && message.contains(key.expose()) =>
        {
            message.replace(key.expose(), "<redacted>")
        }
        _ => message,
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
    fn retry_after_headers() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_445_412_470);
        let retry_after_ms = |h: &HeaderMap| retry_after_ms(h, now);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after_ms(&headers), Some(2000));
        headers.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(retry_after_ms(&headers), Some(151));
        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        // Ten seconds after `now`.
        assert_eq!(retry_after_ms(&date), Some(10_000));
        let mut past = HeaderMap::new();
        past.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:00:00 GMT"),
        );
        assert_eq!(retry_after_ms(&past), Some(0));
        let mut should = HeaderMap::new();
        assert_eq!(should_retry(&should), None);
        should.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&should), Some(false));
        let mut negative = HeaderMap::new();
        negative.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after_ms(&negative), None);
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("héllo", 5), "héllo");
    }

    #[test]
    fn redact_scrubs_key() {
        let key = ApiKey::new("sk-12345678");
        assert_eq!(
            redact("bad key sk-12345678!".into(), Some(&key)),
            "bad key <redacted>!"
        );
        assert_eq!(redact("fine".into(), None), "fine");
        let placeholder = ApiKey::new("k");
        assert_eq!(redact("lookup".into(), Some(&placeholder)), "lookup");
    }
}
