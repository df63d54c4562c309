//! Client for the OpenAI Chat Completions API and the servers that speak it (llama.cpp's
//! `llama-server`, Ollama, vLLM, ...).
//!
//! Source: OpenAI API reference, "Create chat completion",
//! <https://platform.openai.com/docs/api-reference/chat/create>.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ApiKey, Completion, CompletionRequest, ProviderError, Usage};

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
}

impl OpenAi {
    /// A client for the server at `base_url`, the URL the API paths hang off — including the
    /// version segment, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1` for a
    /// local llama.cpp server. A trailing slash is tolerated.
    ///
    /// With `api_key: None` no `Authorization` header is sent (local servers usually need
    /// none); otherwise `Authorization: Bearer <key>`.
    pub fn new(base_url: impl Into<String>, api_key: Option<ApiKey>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        OpenAi { base_url, api_key }
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
    /// # Errors
    /// - [`ProviderError::Http`] for a non-2xx status, with the body's `error.message` (or the
    ///   body, shortened) and `retry_after_ms` from `retry-after-ms` / `retry-after`;
    /// - [`ProviderError::Transport`] when the server cannot be reached, the connection breaks
    ///   or the request times out;
    /// - [`ProviderError::Malformed`] when a 2xx body is not a chat completion with text in
    ///   `choices[0].message.content`.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let url = super::join_url(&self.base_url, "/chat/completions");
        let client = super::http_client(PROVIDER, &url)?;
        let mut request = client.post(&url).json(&ChatRequest::new(req));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        let body = super::send(PROVIDER, &url, request, self.api_key.as_ref()).await?;
        let response: ChatResponse = super::parse_body(PROVIDER, &body)?;
        response.into_completion(req)
    }
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
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
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> ChatRequest<'a> {
    fn new(req: &'a CompletionRequest) -> Self {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &req.system {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        messages.push(Message {
            role: "user",
            content: &req.prompt,
        });
        ChatRequest {
            model: &req.model,
            messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
        }
    }
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
            })
            .unwrap_or_default();
        let Some(choice) = self.choices.into_iter().next() else {
            return Err(ProviderError::Malformed {
                provider: PROVIDER,
                message: "`choices` is empty".to_owned(),
            });
        };
        let Some(text) = choice.message.content else {
            let why = match (choice.message.refusal, choice.finish_reason) {
                (Some(refusal), _) => format!("the model refused: {refusal}"),
                (None, Some(reason)) => format!("finish_reason: {reason}"),
                (None, None) => "no finish_reason".to_owned(),
            };
            return Err(ProviderError::Malformed {
                provider: PROVIDER,
                message: format!("`choices[0].message.content` is missing or null ({why})"),
            });
        };
        Ok(Completion {
            text,
            usage,
            model: self
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| req.model.clone()),
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
        let client = OpenAi::new(format!("{}/v1/", server.uri()), Some(ApiKey::new(KEY)));
        let completion = client.complete(&request()).await.expect("completion");
        assert_eq!(
            completion,
            Completion {
                text: "Hi!".into(),
                usage: Usage {
                    input_tokens: 12,
                    output_tokens: 3
                },
                model: "gpt-4o-mini-2024-07-18".into(),
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

        let client = OpenAi::new(format!("{}/v1", server.uri()), None);
        let req = CompletionRequest {
            model: "local".into(),
            system: None,
            prompt: "Say hi".into(),
            max_tokens: 16,
            temperature: None,
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
