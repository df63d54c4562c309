//! A counting fake OpenAI-compatible provider (wiremock) for tests that kill and resume runs:
//! `tests/it/resume.rs` (`--resume`) and `tests/it/temporal.rs` (a worker killed mid-run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fault_server::openai_completion;

/// A local OpenAI-compatible server: answers each prompt with a text derived from it, counts
/// requests per step (prompts start with `sN:`), and holds back the answer of one step.
#[derive(Clone, Default)]
pub struct Llm {
    state: Arc<Mutex<LlmState>>,
}

#[derive(Default)]
struct LlmState {
    counts: HashMap<String, usize>,
    hold: Option<String>,
}

impl Llm {
    /// How many requests step `step` sent.
    pub fn count(&self, step: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .counts
            .get(step)
            .copied()
            .unwrap_or(0)
    }
    /// Holds back the answers of `step` (300 s), or of none.
    pub fn hold(&self, step: Option<&str>) {
        self.state.lock().unwrap().hold = step.map(String::from);
    }
    /// Serves on a new local port until dropped.
    pub async fn serve(&self) -> wiremock::MockServer {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }
}

impl wiremock::Respond for Llm {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let step = prompt.split(':').next().unwrap_or_default().to_string();
        let mut st = self.state.lock().unwrap();
        *st.counts.entry(step.clone()).or_default() += 1;
        let text = format!(
            "{step} answered {}",
            &orch::run::cache_key::sha256_hex(prompt.as_bytes())[..16]
        );
        let prompt_tokens = prompt.len() as u64 / 4;
        let mut t = if body["stream"] == true {
            // A streaming client gets the same answer as server-sent events.
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]});
            let usage = serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": 5});
            let last = serde_json::json!({"choices": [], "usage": usage});
            wiremock::ResponseTemplate::new(200).set_body_raw(
                format!("data: {chunk}\n\ndata: {last}\n\ndata: [DONE]\n\n"),
                "text/event-stream",
            )
        } else {
            wiremock::ResponseTemplate::new(200).set_body_json(openai_completion(
                "local",
                &text,
                prompt_tokens,
                5,
            ))
        };
        if st.hold.as_deref() == Some(step.as_str()) {
            t = t.set_delay(Duration::from_secs(300));
        }
        t
    }
}
