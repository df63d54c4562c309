//! A misbehaving HTTP/1.1 server on loopback, scripted per request, for tests of what the
//! runtime does when providers fail: error statuses with `retry-after`, slow headers, slow
//! bodies, connections reset mid-response, malformed JSON, and server-sent event streams that
//! are cut short or carry an `error` event. (wiremock answers whole responses only; it cannot
//! stall between bytes or reset a connection.)
//!
//! Every connection carries one request: the server answers with `connection: close` (or drops
//! the connection), so each request the client makes takes the next scripted [`Reply`]. A
//! request beyond the script gets a 500 with the body `unscripted request`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a scripted response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The body is complete: the connection is closed after its last byte (the body is
    /// delimited by the close, as HTTP/1.1 allows without `content-length`).
    Complete,
    /// The connection is reset (TCP RST) after the pieces sent: the client sees a broken
    /// connection, not an end of body.
    Reset,
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole response, with `content-length`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Headers, then the body in pieces, each after its pause; then the end.
    Pieces {
        status: u16,
        headers: Vec<(String, String)>,
        pieces: Vec<(Duration, String)>,
        end: End,
    },
    /// Waits this long before answering at all (slow headers).
    Delay(Duration, Box<Reply>),
    /// Resets the connection without answering.
    Reset,
}

impl Reply {
    /// A JSON response.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// A JSON response with extra headers.
    pub fn json_with(status: u16, headers: &[(&str, &str)], body: serde_json::Value) -> Reply {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(("content-type".into(), "application/json".into()));
        Reply::Full {
            status,
            headers: all,
            body: body.to_string(),
        }
    }

    /// A 200 with a body that is not JSON at all.
    pub fn garbage(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// A `text/event-stream` response of these raw SSE pieces, sent without pauses.
    pub fn sse(pieces: Vec<String>, end: End) -> Reply {
        Reply::sse_paced(
            pieces.into_iter().map(|p| (Duration::ZERO, p)).collect(),
            end,
        )
    }

    /// A `text/event-stream` response whose pieces each come after a pause.
    pub fn sse_paced(pieces: Vec<(Duration, String)>, end: End) -> Reply {
        Reply::Pieces {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces,
            end,
        }
    }

    /// This reply after a pause before the status line.
    pub fn after(self, pause: Duration) -> Reply {
        Reply::Delay(pause, Box::new(self))
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The body as text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// The server. It runs until the test's runtime ends; it is bound to 127.0.0.1 only.
pub struct FaultServer {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FaultServer {
    /// Starts a server that answers successive requests with `script`, in order.
    pub async fn start(script: Vec<Reply>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            // Bounded: a test makes a handful of requests; never serve more than this.
            for _ in 0..1000 {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    serve(socket, script, log).await;
                });
            }
        });
        FaultServer { addr, received }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    log: Arc<Mutex<Vec<Received>>>,
) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    log.lock().unwrap().push(request);
    let reply = script.lock().unwrap().pop_front().unwrap_or(Reply::Full {
        status: 500,
        headers: Vec::new(),
        body: "unscripted request".into(),
    });
    answer(socket, reply).await;
}

/// Reads one request: headers up to the blank line, then `content-length` bytes of body.
async fn read_request(socket: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    // The request line, then `name: value` header lines.
    let length: usize = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        body: String::from_utf8_lossy(&body).into_owned(),
        at,
    })
}

fn head(status: u16, headers: &[(String, String)], length: Option<usize>) -> String {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = length {
        h.push_str(&format!("content-length: {n}\r\n"));
    }
    h.push_str("connection: close\r\n\r\n");
    h
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Closes with a TCP reset: linger zero makes the close send RST instead of FIN. (tokio
/// deprecates `set_linger` because a non-zero linger blocks the thread on drop; a zero linger
/// does not wait.)
#[allow(deprecated)]
fn reset(socket: TcpStream) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

async fn answer(mut socket: TcpStream, reply: Reply) {
    match reply {
        Reply::Delay(pause, inner) => {
            tokio::time::sleep(pause).await;
            Box::pin(answer(socket, *inner)).await;
        }
        Reply::Reset => reset(socket),
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let h = head(status, &headers, Some(body.len()));
            let _ = socket.write_all(h.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        Reply::Pieces {
            status,
            headers,
            pieces,
            end,
        } => {
            let h = head(status, &headers, None);
            if socket.write_all(h.as_bytes()).await.is_err() {
                return;
            }
            let _ = socket.flush().await;
            for (pause, piece) in pieces {
                tokio::time::sleep(pause).await;
                if socket.write_all(piece.as_bytes()).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
            }
            match end {
                End::Complete => {
                    let _ = socket.shutdown().await;
                }
                End::Reset => reset(socket),
            }
        }
    }
}

/// A `data:` event of an OpenAI chat completion stream.
pub fn openai_chunk(content: &str) -> String {
    let chunk = serde_json::json!({
        "id": "c", "object": "chat.completion.chunk", "model": "served-model",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

/// The end of an OpenAI stream: a finish chunk, the usage chunk, `[DONE]`.
pub fn openai_end(prompt_tokens: u64, completion_tokens: u64) -> Vec<String> {
    vec![
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ),
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
        ),
        "data: [DONE]\n\n".to_string(),
    ]
}

/// A whole OpenAI stream answering `text`.
pub fn openai_stream(text: &str) -> Reply {
    let mut pieces = vec![openai_chunk(text)];
    pieces.extend(openai_end(10, 3));
    Reply::sse(pieces, End::Complete)
}

/// A whole (non-streamed) OpenAI chat completion answering `text`.
pub fn openai_json(text: &str) -> Reply {
    Reply::json(200, openai_completion("served-model", text, 10, 3))
}

/// The body of a whole OpenAI chat completion by `model` answering `text`, with its usage in
/// tokens (also the body the tests' wiremock servers answer with).
pub fn openai_completion(
    model: &str,
    text: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    })
}

/// The body of a whole OpenAI chat completion making tool `calls` (`(id, tool, raw arguments
/// text)`, arguments as the server would send them: possibly not JSON), with `prompt_tokens`
/// of input and 5 of output (Chat Completions, "Function calling": `message.tool_calls`,
/// `finish_reason: "tool_calls"`).
pub fn openai_tool_calls(calls: &[(&str, &str, &str)], prompt_tokens: u64) -> serde_json::Value {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|(id, name, args)| {
            serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    serde_json::json!({
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 5}
    })
}

/// An Anthropic stream event, its `event:` name taken from the data's `type`.
pub fn anthropic_event(data: serde_json::Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap_or("unknown")
    )
}

/// The start of an Anthropic stream: `message_start` and a text block.
pub fn anthropic_start(input_tokens: u64) -> Vec<String> {
    vec![
        anthropic_event(serde_json::json!({"type": "message_start", "message": {
            "id": "msg", "type": "message", "role": "assistant", "content": [],
            "model": "claude-served", "usage": {"input_tokens": input_tokens, "output_tokens": 1}
        }})),
        anthropic_event(serde_json::json!({
            "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}
        })),
    ]
}

/// A `text_delta` event.
pub fn anthropic_text(text: &str) -> String {
    anthropic_event(serde_json::json!({
        "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}
    }))
}

/// The end of an Anthropic stream: block stop, `message_delta` with usage, `message_stop`.
pub fn anthropic_end(output_tokens: u64) -> Vec<String> {
    vec![
        anthropic_event(serde_json::json!({"type": "content_block_stop", "index": 0})),
        anthropic_event(serde_json::json!({
            "type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": output_tokens}
        })),
        anthropic_event(serde_json::json!({"type": "message_stop"})),
    ]
}

/// A whole Anthropic stream answering `text`.
pub fn anthropic_stream(text: &str) -> Reply {
    let mut pieces = anthropic_start(20);
    pieces.push(anthropic_text(text));
    pieces.extend(anthropic_end(4));
    Reply::sse(pieces, End::Complete)
}

/// An RFC 3339 UTC time `ahead` from now (for Anthropic's reset headers).
pub fn rfc3339_in(ahead: Duration) -> String {
    let t = std::time::SystemTime::now() + ahead;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
