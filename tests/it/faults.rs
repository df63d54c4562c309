//! The runtime against misbehaving providers: a scripted server on loopback
//! (`common::fault_server`) plays both wire formats (OpenAI Chat Completions and Anthropic Messages) and fails in the ways
//! real servers do. The tests check attempts, the delays chosen, the model that answered and
//! the error messages.
//!
//! Real sockets and tokio's paused clock do not mix (the clock jumps while the runtime waits
//! for the network), so these tests run on the real clock with short durations; they assert
//! lower bounds on time only, never upper bounds that a slow machine could break.

use std::time::{Duration, Instant};

use orch::run::{Event, RunReport, StepStatus};

use crate::common::fault_server::{self, End, FaultServer, Reply};
use crate::common::run::{retries, run_keyed, step};

/// The key every API key variable reads: the servers are on loopback and never check it.
const KEY: &str = "test-key-not-secret";

/// The delays of the retries the run announced, in ms.
fn delays(events: &[Event]) -> Vec<u64> {
    retries(events)
        .into_iter()
        .map(|(_, delay)| delay)
        .collect()
}

/// The errors of the retries the run announced.
fn retry_errors(events: &[Event]) -> Vec<String> {
    retries(events)
        .into_iter()
        .map(|(error, _)| error)
        .collect()
}

/// One step `x` on a provider of `kind` at the server, with extra provider fields and step
/// options.
fn script(kind: &str, server: &FaultServer, provider_fields: &str, options: &str) -> String {
    let base = match kind {
        "openai" => format!("{}/v1", server.uri()),
        _ => server.uri(),
    };
    format!(
        r#"
provider p {{ kind: {kind}, base_url: "{base}", api_key_env: "KEY"{provider_fields} }}
model m {{ provider: p, name: "served", price: {{ input: 1.0, output: 1.0 }} }}
agent a {{ model: m, max_tokens: 50 }}
workflow main() {{ x = a<{options}>("hello") }}
"#
    )
}

#[tokio::test]
async fn a_429_waits_the_retry_after_then_succeeds() {
    let server = FaultServer::start(vec![
        Reply::json_with(
            429,
            &[("retry-after", "1")],
            serde_json::json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        ),
        fault_server::openai_stream("fine"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 2);
    assert_eq!(x.output.as_deref(), Some("fine"));
    assert_eq!(delays(&events), [1000]);
    assert_eq!(
        retry_errors(&events),
        ["HTTP 429 from openai: Rate limit reached"]
    );
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert!(got[1].at - got[0].at >= Duration::from_millis(1000));
    // Streaming is the default, with usage asked for.
    assert_eq!(got[0].json()["stream"], true);
    assert_eq!(got[0].json()["stream_options"]["include_usage"], true);
    assert_eq!((x.usage.input_tokens, x.usage.output_tokens), (10, 3));
}

#[tokio::test]
async fn a_500_then_a_529_are_retried_with_the_default_backoff() {
    let server = FaultServer::start(vec![
        Reply::json(
            500,
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": "Internal"}}),
        ),
        Reply::json(
            529,
            serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        fault_server::anthropic_stream("third time lucky"),
    ])
    .await;
    // No `retry` anywhere: a model step retries twice by default.
    let (r, events) = run_keyed(KEY, &script("anthropic", &server, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 3);
    assert_eq!(x.model.as_deref(), Some("m"));
    assert_eq!(x.output.as_deref(), Some("third time lucky"));
    assert_eq!((x.usage.input_tokens, x.usage.output_tokens), (20, 4));
    let d = delays(&events);
    assert_eq!(d.len(), 2);
    assert!((375..=500).contains(&d[0]), "{d:?}");
    assert!((750..=1000).contains(&d[1]), "{d:?}");
    assert_eq!(
        retry_errors(&events),
        [
            "HTTP 500 from anthropic: Internal",
            "HTTP 529 from anthropic: Overloaded"
        ]
    );
    let got = server.received();
    assert!(got[2].at - got[1].at >= Duration::from_millis(d[1]));
    assert_eq!(got[0].json()["stream"], true);
}

#[tokio::test]
async fn a_400_is_final_on_both_wire_formats() {
    for kind in ["openai", "anthropic"] {
        let server = FaultServer::start(vec![Reply::json(
            400,
            serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}),
        )])
        .await;
        let (r, events) = run_keyed(KEY, &script(kind, &server, "", "retry 3")).await;
        let x = step(&r, "x");
        assert_eq!(x.attempts, 1, "{kind}");
        assert!(delays(&events).is_empty());
        assert_eq!(
            x.status,
            StepStatus::Failed(format!(
                "HTTP 400 from {kind}: prompt is too long (on `m`, attempt 1)"
            ))
        );
        assert_eq!(server.received().len(), 1);
    }
}

#[tokio::test]
async fn slow_headers_trip_the_inactivity_timeout_when_streaming() {
    let server = FaultServer::start(vec![
        fault_server::openai_stream("late").after(Duration::from_secs(5)),
        fault_server::openai_stream("on time"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, ", idle_timeout: 1s", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.output.as_deref(), Some("on time"));
    assert_eq!(x.attempts, 2);
    assert_eq!(
        retry_errors(&events),
        ["the answer from openai did not grow for 1s"]
    );
}

#[tokio::test]
async fn a_stalled_stream_is_reported_as_silence_not_as_a_timeout() {
    let mut pieces: Vec<(Duration, String)> = vec![
        (Duration::ZERO, fault_server::openai_chunk("first words")),
        // Then nothing for far longer than the inactivity timeout.
        (
            Duration::from_secs(5),
            fault_server::openai_chunk(" never seen"),
        ),
    ];
    pieces.extend(
        fault_server::openai_end(1, 1)
            .into_iter()
            .map(|p| (Duration::ZERO, p)),
    );
    let server = FaultServer::start(vec![
        Reply::sse_paced(pieces, End::Complete),
        fault_server::anthropic_stream("unused"),
    ])
    .await;
    let (r, _) = run_keyed(
        KEY,
        &script(
            "openai",
            &server,
            ", idle_timeout: 400ms",
            "retry 0, timeout 1m",
        ),
    )
    .await;
    let x = step(&r, "x");
    assert_eq!(
        x.status,
        StepStatus::Failed(
            "the answer from openai did not grow for 400ms (on `m`, attempt 1)".into()
        )
    );
}

#[tokio::test]
async fn a_slow_but_steady_stream_is_not_idle_and_reports_progress() {
    // Twenty pieces 100 ms apart: two seconds in all, but never a second of silence.
    let mut pieces: Vec<(Duration, String)> = (0..20)
        .map(|i| {
            (
                Duration::from_millis(100),
                fault_server::openai_chunk(&format!("w{i} ")),
            )
        })
        .collect();
    pieces.extend(
        fault_server::openai_end(7, 10)
            .into_iter()
            .map(|p| (Duration::ZERO, p)),
    );
    let server = FaultServer::start(vec![Reply::sse_paced(pieces, End::Complete)]).await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, ", idle_timeout: 1s", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 1);
    let expected: String = (0..20).map(|i| format!("w{i} ")).collect();
    assert_eq!(x.output.as_deref(), Some(expected.as_str()));
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Streaming { step, tokens } if step == "x" => Some(*tokens),
            _ => None,
        })
        .collect();
    // The first chunk at once, then at most one report every 250 ms, counts rising.
    assert!(progress.first() == Some(&1), "{progress:?}");
    assert!(progress.len() >= 2 && progress.len() <= 10, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
}

#[tokio::test]
async fn a_slow_body_without_streaming_hits_the_attempt_timeout() {
    let slow = Reply::Pieces {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        pieces: vec![
            (Duration::ZERO, "{\"choices\": [".into()),
            (Duration::from_secs(10), "]}".into()),
        ],
        end: End::Complete,
    };
    let server = FaultServer::start(vec![slow, fault_server::openai_json("whole")]).await;
    let (r, events) = run_keyed(
        KEY,
        &script("openai", &server, ", stream: false", "timeout 2s"),
    )
    .await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.output.as_deref(), Some("whole"));
    assert_eq!(retry_errors(&events), ["attempt timed out after 2s"]);
    // Without streaming, no `stream` in the request.
    assert!(server.received()[0].json().get("stream").is_none());
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let half = Reply::Pieces {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("content-length".into(), "500".into()),
        ],
        pieces: vec![(Duration::ZERO, "{\"choices\": [{\"message\"".into())],
        end: End::Reset,
    };
    let server = FaultServer::start(vec![
        Reply::Reset,
        half,
        fault_server::openai_json("after two resets"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, ", stream: false", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.attempts, 3);
    assert_eq!(x.output.as_deref(), Some("after two resets"));
    let errors = retry_errors(&events);
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(e.starts_with("cannot reach openai at "), "{e}");
        assert!(!e.contains("test-key-not-secret"), "{e}");
    }
}

#[tokio::test]
async fn malformed_json_is_retried_then_reported() {
    let server = FaultServer::start(vec![
        Reply::garbage("{\"choices\": [oops"),
        Reply::garbage("<html>502 Bad Gateway</html>"),
        Reply::garbage("{\"choices\": [oops"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.attempts, 3);
    assert_eq!(delays(&events).len(), 2);
    match &x.status {
        StepStatus::Failed(e) => {
            assert!(e.starts_with("malformed response from openai: "), "{e}");
            assert!(e.contains("{\"choices\": [oops"), "{e}");
            assert!(e.ends_with("(on `m`, attempt 3)"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stream_cut_short_is_retried_on_both_wire_formats() {
    let openai = FaultServer::start(vec![
        Reply::sse(
            vec![fault_server::openai_chunk("half an ans")],
            End::Complete,
        ),
        fault_server::openai_stream("a whole answer"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &openai, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.output.as_deref(), Some("a whole answer"));
    assert_eq!(x.attempts, 2);
    assert_eq!(
        retry_errors(&events),
        [
            "streamed answer from openai broke off: the connection closed before `data: [DONE]` (11 characters received)"
        ]
    );

    let mut cut = fault_server::anthropic_start(5);
    cut.push(fault_server::anthropic_text("half"));
    let anthropic = FaultServer::start(vec![
        Reply::sse(cut.clone(), End::Reset),
        Reply::sse(cut, End::Complete),
        fault_server::anthropic_stream("whole"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("anthropic", &anthropic, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.output.as_deref(), Some("whole"));
    assert_eq!(x.attempts, 3);
    let errors = retry_errors(&events);
    // A reset breaks the connection; a clean close ends the stream early.
    assert!(
        errors[0].starts_with("cannot reach anthropic at "),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        "streamed answer from anthropic broke off: the connection closed before `message_stop` (4 characters received)"
    );
}

#[tokio::test]
async fn an_overloaded_error_event_goes_to_the_fallback_at_once() {
    let mut overloaded = fault_server::anthropic_start(5);
    overloaded.push(fault_server::anthropic_text("Par"));
    overloaded.push(fault_server::anthropic_event(serde_json::json!({
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}
    })));
    let primary = FaultServer::start(vec![Reply::sse(overloaded, End::Complete)]).await;
    let backup = FaultServer::start(vec![fault_server::openai_stream("from the backup")]).await;
    let src = format!(
        r#"
provider claude {{ kind: anthropic, base_url: "{}", api_key_env: "KEY" }}
provider local {{ kind: openai, base_url: "{}/v1" }}
model big {{ provider: claude, name: "claude-served" }}
model small {{ provider: local, name: "local-served" }}
agent a {{ model: big, fallback: small, retry: 3 }}
workflow main() {{ x = a("hello"); return x }}
"#,
        primary.uri(),
        backup.uri()
    );
    let (r, events) = run_keyed(KEY, &src).await;
    let x = step(&r, "x");
    assert_eq!(x.status, StepStatus::Succeeded, "{:?}", x.status);
    assert_eq!(x.model.as_deref(), Some("small"));
    assert_eq!(x.attempts, 2);
    assert_eq!(r.output.as_deref(), Some("from the backup"));
    assert_eq!(
        primary.received().len(),
        1,
        "no retry on an overloaded model"
    );
    assert!(delays(&events).is_empty());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::FallingBack { model, .. } if model == "small"))
    );
}

#[tokio::test]
async fn an_error_event_mid_stream_on_openai_is_retried() {
    let mut failing = vec![fault_server::openai_chunk("partial")];
    failing.push(format!(
        "data: {}\n\n",
        serde_json::json!({"error": {"message": "upstream failure", "type": "server_error"}})
    ));
    let server = FaultServer::start(vec![
        Reply::sse(failing, End::Complete),
        fault_server::openai_stream("recovered"),
    ])
    .await;
    let (r, events) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.output.as_deref(), Some("recovered"));
    assert_eq!(
        retry_errors(&events),
        ["streamed answer from openai broke off: upstream failure"]
    );
}

#[tokio::test]
async fn rate_limit_headers_hold_the_next_request() {
    // OpenAI: a duration. The first answer says no requests remain for 600 ms.
    let mut first = fault_server::openai_stream("one");
    if let Reply::Pieces { headers, .. } = &mut first {
        headers.push(("x-ratelimit-remaining-requests".into(), "0".into()));
        headers.push(("x-ratelimit-reset-requests".into(), "600ms".into()));
    }
    let server = FaultServer::start(vec![first, fault_server::openai_stream("two")]).await;
    let base = format!("{}/v1", server.uri());
    let src = format!(
        r#"
provider p {{ kind: openai, base_url: "{base}" }}
model m {{ provider: p }}
agent a {{ model: m }}
workflow main() {{ x = a("one"); y = a("two") }}
"#
    );
    let started = Instant::now();
    let (r, events) = run_keyed(KEY, &src).await;
    assert!(r.succeeded, "{r:?}");
    let got = server.received();
    assert!(got[1].at - got[0].at >= Duration::from_millis(600));
    assert!(started.elapsed() >= Duration::from_millis(600));
    let waits: Vec<(String, u64, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Waiting {
                step,
                delay_ms,
                reason,
            } => Some((step.clone(), *delay_ms, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0].0, "y");
    assert!(waits[0].1 > 0 && waits[0].1 <= 600, "{waits:?}");
    assert_eq!(waits[0].2, "`p` says its requests are used up");

    // Anthropic: an RFC 3339 time, two seconds ahead (to the second).
    let mut first = fault_server::anthropic_stream("one");
    if let Reply::Pieces { headers, .. } = &mut first {
        headers.push(("anthropic-ratelimit-tokens-remaining".into(), "0".into()));
        headers.push((
            "anthropic-ratelimit-tokens-reset".into(),
            fault_server::rfc3339_in(Duration::from_secs(2)),
        ));
    }
    let server = FaultServer::start(vec![first, fault_server::anthropic_stream("two")]).await;
    let src = format!(
        r#"
provider p {{ kind: anthropic, base_url: "{}", api_key_env: "KEY" }}
model m {{ provider: p }}
agent a {{ model: m }}
workflow main() {{ x = a("one"); y = a("two") }}
"#,
        server.uri()
    );
    let (r, _) = run_keyed(KEY, &src).await;
    assert!(r.succeeded, "{r:?}");
    let got = server.received();
    // The reset is two seconds ahead, cut to the second: at least one second of hold.
    assert!(got[1].at - got[0].at >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_deadline_bounds_retries_against_a_hanging_server() {
    let hang = || fault_server::openai_json("too late").after(Duration::from_secs(10));
    let server = FaultServer::start(vec![hang(), hang(), hang(), hang()]).await;
    let (r, _) = run_keyed(
        KEY,
        &script(
            "openai",
            &server,
            "",
            "timeout 300ms, retry 5, deadline 1500ms",
        ),
    )
    .await;
    let x = step(&r, "x");
    match &x.status {
        StepStatus::Failed(e) => {
            assert!(
                e.starts_with(&format!(
                    "deadline of 1.5s passed after {} attempts on `m`",
                    x.attempts
                )),
                "{e}"
            );
            assert!(
                e.ends_with("(last error: attempt timed out after 300ms)"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // 300 ms attempts with 375–500 ms and 750–1000 ms of backoff: two or three attempts fit.
    assert!((2..=3).contains(&x.attempts), "{}", x.attempts);
    let span = x.finished_ms.unwrap() - x.started_ms.unwrap();
    assert!(span >= 1500, "{span}");
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_is_read_whole() {
    let server = FaultServer::start(vec![fault_server::openai_json("not streamed")]).await;
    let (r, _) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    let x = step(&r, "x");
    assert_eq!(x.output.as_deref(), Some("not streamed"));
    assert_eq!((x.usage.input_tokens, x.usage.output_tokens), (10, 3));
    assert!(!x.usage.estimated);
}

// ------------------------------------------------------------------ bounded answers

/// One step `x` of an agent with extra fields (such as `max_output_bytes`), on a provider of
/// `kind` at the server.
fn script_with_agent(
    kind: &str,
    server: &FaultServer,
    provider_fields: &str,
    agent_fields: &str,
) -> String {
    script(kind, server, provider_fields, "").replace(
        "agent a { model: m, max_tokens: 50 }",
        &format!("agent a {{ model: m, max_tokens: 50{agent_fields} }}"),
    )
}

/// Runs step `x` of an agent with `max_output_bytes: 4096` on a provider of `kind` at the
/// server.
async fn run_bounded(
    kind: &str,
    server: &FaultServer,
    provider_fields: &str,
) -> (RunReport, Vec<Event>) {
    run_keyed(
        KEY,
        &script_with_agent(kind, server, provider_fields, ", max_output_bytes: 4096"),
    )
    .await
}

/// A stream that sends `pieces` of text and never ends by itself (it is cut at the end of
/// the script without its end events, so a client that reads it all sees a stream cut
/// short, not a too-long answer).
fn endless(kind: &str, pieces: usize, piece: &str) -> Reply {
    let mut all = match kind {
        "openai" => Vec::new(),
        _ => fault_server::anthropic_start(20),
    };
    for _ in 0..pieces {
        all.push(match kind {
            "openai" => fault_server::openai_chunk(piece),
            _ => fault_server::anthropic_text(piece),
        });
    }
    Reply::sse(all, End::Complete)
}

fn failure(r: &RunReport) -> String {
    match &step(r, "x").status {
        StepStatus::Failed(e) => e.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_answer_that_never_ends_is_cut_at_max_output_bytes_on_both_wire_formats() {
    for kind in ["openai", "anthropic"] {
        // 100 KB of text against a bound of 4096 bytes.
        let server = FaultServer::start(vec![endless(kind, 1000, &"y".repeat(100))]).await;
        let (r, events) = run_bounded(kind, &server, "").await;
        let e = failure(&r);
        assert!(
            e.starts_with("step `x`: the answer of `m` is longer than 4096 bytes (its agent's `max_output_bytes`); if so long an output is expected, raise `max_output_bytes` in agent `a`"),
            "{kind}: {e}"
        );
        // Final: asking again would read as far again.
        assert_eq!(step(&r, "x").attempts, 1, "{kind}");
        assert!(retry_errors(&events).is_empty(), "{kind}");
        assert_eq!(server.received().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn the_default_bound_is_one_mebibyte() {
    // 1100 KiB of text, without `max_output_bytes`.
    let server = FaultServer::start(vec![endless("openai", 1100, &"z".repeat(1024))]).await;
    let (r, _) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    let e = failure(&r);
    assert!(
        e.contains("is longer than 1048576 bytes (the default `max_output_bytes`)"),
        "{e}"
    );
    // An answer of exactly the bound is whole.
    let exact = "z".repeat(1 << 20);
    let server = FaultServer::start(vec![fault_server::openai_stream(&exact)]).await;
    let (r, _) = run_keyed(KEY, &script("openai", &server, "", "")).await;
    assert_eq!(step(&r, "x").output.as_deref().map(str::len), Some(1 << 20));
}

#[tokio::test]
async fn a_whole_body_is_bounded_too_on_both_wire_formats() {
    let anthropic_json = |text: &str| {
        Reply::json(
            200,
            serde_json::json!({
                "id": "msg", "type": "message", "role": "assistant", "model": "claude-served",
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 5}
            }),
        )
    };
    // A body a little over the bound (read, then refused), and one far over (not read
    // past the JSON that could carry the bound).
    for size in [5000, 200_000] {
        let text = "w".repeat(size);
        for (kind, reply) in [
            ("openai", fault_server::openai_json(&text)),
            ("anthropic", anthropic_json(&text)),
        ] {
            let server = FaultServer::start(vec![reply]).await;
            let (r, _) = run_bounded(kind, &server, ", stream: false").await;
            let e = failure(&r);
            assert!(
                e.contains("is longer than 4096 bytes"),
                "{kind} {size}: {e}"
            );
            assert_eq!(step(&r, "x").attempts, 1);
        }
    }
}

#[tokio::test]
async fn bytes_that_carry_no_answer_do_not_hold_a_stream_open() {
    let tick = Duration::from_millis(100);
    // Anthropic: a word, then `ping` events for two seconds.
    let mut anthropic: Vec<(Duration, String)> = fault_server::anthropic_start(20)
        .into_iter()
        .map(|p| (Duration::ZERO, p))
        .collect();
    anthropic.push((Duration::ZERO, fault_server::anthropic_text("hi")));
    for _ in 0..20 {
        anthropic.push((
            tick,
            fault_server::anthropic_event(serde_json::json!({"type": "ping"})),
        ));
    }
    anthropic.extend(
        fault_server::anthropic_end(1)
            .into_iter()
            .map(|p| (tick, p)),
    );
    // OpenAI-compatible: SSE comments, empty deltas and blank keep-alive lines.
    let mut openai = vec![(Duration::ZERO, fault_server::openai_chunk("hi"))];
    for i in 0..20 {
        let filler = match i % 3 {
            0 => ": keep-alive\n\n".to_string(),
            1 => fault_server::openai_chunk(""),
            _ => "\n".to_string(),
        };
        openai.push((tick, filler));
    }
    openai.extend(
        fault_server::openai_end(1, 1)
            .into_iter()
            .map(|p| (tick, p)),
    );
    for (kind, pieces) in [("anthropic", anthropic), ("openai", openai)] {
        let server = FaultServer::start(vec![Reply::sse_paced(pieces, End::Complete)]).await;
        let (r, _) = run_keyed(
            KEY,
            &script(kind, &server, ", idle_timeout: 500ms", "retry 0"),
        )
        .await;
        assert_eq!(
            failure(&r),
            format!("the answer from {kind} did not grow for 500ms (on `m`, attempt 1)")
        );
    }
}

#[tokio::test]
async fn one_endless_event_is_cut_too() {
    // A `data:` line that never ends: no event ever comes out of the parser, and the bytes
    // it holds are bounded all the same.
    let line = format!("data: {}", "v".repeat(400_000));
    let server = FaultServer::start(vec![Reply::sse(vec![line], End::Complete)]).await;
    let (r, _) = run_bounded("openai", &server, "").await;
    assert!(
        failure(&r).contains("is longer than 4096 bytes"),
        "{}",
        failure(&r)
    );
}

#[tokio::test]
async fn a_command_that_writes_without_end_is_stopped_at_max_output_bytes() {
    let (r, _) = run_keyed(
        KEY,
        r#"
agent endless { run: ["yes", "all work and no play"], max_output_bytes: 10000 }
workflow main() { x = endless("") }
"#,
    )
    .await;
    assert_eq!(
        failure(&r),
        "step `x`: the stdout of `yes` is longer than 10000 bytes (its agent's `max_output_bytes`); if so long an output is expected, raise `max_output_bytes` in agent `endless`"
    );
}

// ------------------------------------------------------------------ retry-after

#[tokio::test]
async fn a_retry_after_of_zero_or_in_the_past_gets_the_normal_backoff() {
    let past = "Wed, 21 Oct 2015 07:28:00 GMT";
    for (kind, header, value) in [
        ("openai", "retry-after", "0"),
        ("anthropic", "retry-after", past),
        ("openai", "retry-after-ms", "0"),
    ] {
        let ok = match kind {
            "openai" => fault_server::openai_stream("fine"),
            _ => fault_server::anthropic_stream("fine"),
        };
        let server = FaultServer::start(vec![
            Reply::json_with(
                429,
                &[(header, value)],
                serde_json::json!({"error": {"message": "slow down"}}),
            ),
            ok,
        ])
        .await;
        let (r, events) = run_keyed(KEY, &script(kind, &server, "", "")).await;
        assert_eq!(step(&r, "x").status, StepStatus::Succeeded, "{kind}");
        // Not a retry at once: 500 ms less up to 25% jitter, as without the header.
        let d = delays(&events);
        assert!(
            d.len() == 1 && (375..=500).contains(&d[0]),
            "{header}: {value}: {d:?}"
        );
        let got = server.received();
        assert!(
            got[1].at - got[0].at >= Duration::from_millis(375),
            "{header}: {value}"
        );
    }
}
