//! Client for the Anthropic Messages API.
//!
//! Source: Anthropic API reference, "Messages", <https://docs.anthropic.com/en/api/messages>
//! (request and response shapes), "Versions", <https://docs.anthropic.com/en/api/versioning>
//! (the `anthropic-version` header) and "Errors", <https://docs.anthropic.com/en/api/errors>
//! (`{"type":"error","error":{"type":...,"message":...}}` bodies).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ApiKey, Completion, CompletionRequest, ProviderError, Usage};

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
}

impl Anthropic {
    /// A client for the server at `base_url` — normally [`DEFAULT_BASE_URL`], without the
    /// `/v1` segment; a trailing slash is tolerated. The key is sent as `x-api-key`.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Anthropic { base_url, api_key }
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
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let url = super::join_url(&self.base_url, "/v1/messages");
        let client = super::http_client(PROVIDER, &url)?;
        let request = client
            .post(&url)
            .header("x-api-key", self.api_key.expose())
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .json(&MessagesRequest::new(req));
        let body = super::send(PROVIDER, &url, request, Some(&self.api_key)).await?;
        let response: MessagesResponse = super::parse_body(PROVIDER, &body)?;
        Ok(response.into_completion(req))
    }
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
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
}

#[derive(Debug, Serialize)]
struct UserMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> MessagesRequest<'a> {
    fn new(req: &'a CompletionRequest) -> Self {
        MessagesRequest {
            model: &req.model,
            max_tokens: req.max_tokens,
            system: req.system.as_deref(),
            messages: [UserMessage {
                role: "user",
                content: &req.prompt,
            }],
            temperature: req.temperature,
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

/// One content block; only `text` blocks carry answer text.
#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessagesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl MessagesResponse {
    fn into_completion(self, req: &CompletionRequest) -> Completion {
        let text = self
            .content
            .into_iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text)
            .collect::<String>();
        let usage = self
            .usage
            .map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
            })
            .unwrap_or_default();
        Completion {
            text,
            usage,
            model: self
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| req.model.clone()),
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

        let client = Anthropic::new(format!("{}/", server.uri()), ApiKey::new(KEY));
        let completion = client.complete(&request()).await.expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Blue, mostly.".into(),
                usage: Usage {
                    input_tokens: 21,
                    output_tokens: 5
                },
                model: "claude-sonnet-4-5-20250929".into(),
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
        let client = Anthropic::new(server.uri(), ApiKey::new(KEY));
        let req = CompletionRequest {
            model: "claude-haiku-4-5".into(),
            system: None,
            prompt: "hi".into(),
            max_tokens: 10,
            temperature: None,
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
