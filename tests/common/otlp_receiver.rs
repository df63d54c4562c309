//! A tiny OTLP/HTTP receiver on loopback for the tests of `orch run`'s OpenTelemetry trace:
//! it accepts `POST /v1/traces` requests (HTTP/1.1, keep-alive, `content-length` bodies),
//! answers each `200 {}`, and keeps what it received. With
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` the bodies are OTLP JSON, which [`Receiver::spans`]
//! flattens into [`SpanSeen`]s.
//!
//! The server runs on threads of its own and stops accepting when the [`Receiver`] is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST /v1/traces` → `/v1/traces`.
    pub path: String,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A receiver listening on `127.0.0.1` at a free port.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`: the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub url: String,
    received: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Receiver {
    /// Starts one.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().expect("its address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let r = r.clone();
                std::thread::spawn(move || serve(conn, &r));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}"),
            received,
            stop,
            port,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    /// Every span of every OTLP JSON request received so far.
    ///
    /// # Panics
    /// A body that is not OTLP JSON.
    pub fn spans(&self) -> Vec<SpanSeen> {
        let mut out = Vec::new();
        for req in self.requests() {
            let doc: Value = serde_json::from_slice(&req.body).unwrap_or_else(|e| {
                panic!(
                    "not OTLP JSON ({e}): {}",
                    String::from_utf8_lossy(&req.body)
                )
            });
            for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
                let resource = attributes(&rs["resource"]["attributes"]);
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push(SpanSeen {
                            trace_id: s["traceId"].as_str().unwrap_or_default().to_string(),
                            span_id: s["spanId"].as_str().unwrap_or_default().to_string(),
                            parent_span_id: s["parentSpanId"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            name: s["name"].as_str().unwrap_or_default().to_string(),
                            kind: s["kind"].as_i64().unwrap_or_default(),
                            attributes: attributes(&s["attributes"]),
                            resource: resource.clone(),
                            status_code: s["status"]["code"].as_i64().unwrap_or_default(),
                        });
                    }
                }
            }
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One span, flattened.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP `SpanKind`: 1 internal, 3 client.
    pub kind: i64,
    /// Attribute values as JSON (`"text"`, `12`, `0.5`, `true`, `["stop"]`).
    pub attributes: Vec<(String, Value)>,
    /// The resource's attributes.
    pub resource: Vec<(String, Value)>,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
}

impl SpanSeen {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The text of attribute `key` (a number as its decimal text).
    pub fn text(&self, key: &str) -> Option<String> {
        self.attr(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// OTLP JSON `KeyValue`s as (key, plain JSON value) pairs.
fn attributes(list: &Value) -> Vec<(String, Value)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_string(),
                any_value(&kv["value"]),
            )
        })
        .collect()
}

/// An OTLP JSON `AnyValue` as a plain JSON value (`intValue`, sent as a string or a number,
/// becomes a number).
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(i.clone()),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        return Value::Array(
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    Value::Null
}

/// Serves one connection: requests until the client closes it.
fn serve(conn: TcpStream, received: &Mutex<Vec<Request>>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        // A bound, so that a broken client cannot make the test allocate without limit.
        let mut body = vec![0; length.min(64 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().unwrap().push(Request {
            path,
            headers,
            body,
        });
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
