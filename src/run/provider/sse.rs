//! Server-sent events: the transport of streamed answers.
//!
//! A streamed answer is a `text/event-stream` body (WHATWG HTML, "Server-sent events",
//! <https://html.spec.whatwg.org/multipage/server-sent-events.html>): events of `event:` and
//! `data:` lines separated by blank lines. The `eventsource-stream` crate parses them from
//! reqwest's byte stream; this module bounds what the stream may cost and turns transport and
//! parse failures into [`ProviderError`]s (`Reader`), and throttles progress reports. What
//! the events mean is each API's business (`openai.rs`, `anthropic.rs`), which tells the
//! reader when the answer grew.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use tokio::time::Instant;

use super::{Call, ProgressFn, ProviderError};
use crate::redact::{Redacted, redact};

/// The shortest interval between two progress reports of one streamed answer.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One server-sent event: its `event:` name (empty when absent) and its `data:` text,
/// redacted before anything reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `""`.
    pub event: String,
    /// The `data:` lines, joined with `\n`, redacted ([`crate::redact`]).
    pub data: Redacted,
}

/// Why the body stopped: the connection broke, or one event grew too large.
#[derive(Debug)]
enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// A stream of events, ending when the body ends.
type Events<'a> = Pin<Box<dyn Stream<Item = Result<SseEvent, ProviderError>> + Send + 'a>>;

/// The events of a streamed answer, with its bounds:
///
/// - **inactivity**: [`Reader::next`] fails with [`ProviderError::Idle`] when the answer has
///   not grown for [`super::HttpOptions::idle_timeout`] — since the response came, or since
///   the last [`Reader::grew`]. Only the API's reader knows what is answer, so bytes that
///   carry none (SSE comments, `ping` events, empty deltas, keep-alive whitespace) do not
///   hold the stream open;
/// - **size**: [`Reader::grew`] fails with [`ProviderError::TooLarge`] once the answer is
///   longer than [`super::CompletionRequest::max_output_bytes`], and a single event whose
///   bytes outgrow the JSON that could carry such an answer ([`super::envelope_bytes`]) ends
///   the stream the same way, so neither a stream that never ends nor one endless line
///   grows memory without bound.
pub(super) struct Reader<'a> {
    events: Events<'a>,
    call: &'a Call<'a>,
    deadline: Instant,
    max_output_bytes: u32,
}

impl<'a> Reader<'a> {
    /// Reads `response`'s body as events, for an answer of at most `max_output_bytes`.
    pub(super) fn new(
        call: &'a Call<'a>,
        response: reqwest::Response,
        max_output_bytes: u32,
    ) -> Self {
        Reader {
            events: events(call, response, max_output_bytes),
            call,
            deadline: Instant::now() + call.options.idle_timeout,
            max_output_bytes,
        }
    }

    /// The next event; `None` at the end of the body. An error ends the stream:
    /// [`ProviderError::Idle`] when the answer did not grow in time,
    /// [`ProviderError::TooLarge`] for an event too large, [`ProviderError::Transport`] when
    /// the connection broke, [`ProviderError::Malformed`] when the body is not UTF-8 or not
    /// an event stream.
    pub(super) async fn next(&mut self) -> Option<Result<SseEvent, ProviderError>> {
        match tokio::time::timeout_at(self.deadline, self.events.next()).await {
            Ok(item) => item,
            Err(_) => Some(Err(self.call.idle())),
        }
    }

    /// The answer grew to `len` bytes: restarts the inactivity clock.
    ///
    /// # Errors
    /// [`ProviderError::TooLarge`] when `len` is over the bound.
    pub(super) fn grew(&mut self, len: usize) -> Result<(), ProviderError> {
        if len > self.max_output_bytes as usize {
            return Err(ProviderError::TooLarge {
                provider: self.call.provider,
                max_output_bytes: self.max_output_bytes,
            });
        }
        self.deadline = Instant::now() + self.call.options.idle_timeout;
        Ok(())
    }
}

/// The events of a response body carrying an answer of at most `max_output_bytes`: an event
/// may take at most [`super::envelope_bytes`] of the body ([`EventBytes`]).
fn events<'a>(
    call: &'a Call<'a>,
    response: reqwest::Response,
    max_output_bytes: u32,
) -> Events<'a> {
    let max_event_bytes = super::envelope_bytes(max_output_bytes);
    let bytes = Box::pin(response.bytes_stream());
    let guarded = futures_util::stream::unfold(
        Some((bytes, EventBytes::default())),
        move |state| async move {
            let (mut bytes, mut event) = state?;
            match bytes.next().await? {
                Ok(chunk) if event.feed(&chunk) > max_event_bytes => {
                    Some((Err(BodyError::TooLarge), None))
                }
                Ok(chunk) => Some((Ok(chunk), Some((bytes, event)))),
                Err(e) => Some((Err(BodyError::Transport(e)), None)),
            }
        },
    );
    let mut failed = false;
    Box::pin(
        guarded
            .eventsource()
            .take_while(move |item| {
                // Stop after the first error: the stream cannot be trusted beyond it.
                let go = !failed;
                failed |= item.is_err();
                std::future::ready(go)
            })
            .map(move |item| match item {
                Ok(e) => Ok(SseEvent {
                    event: e.event,
                    data: redact(e.data),
                }),
                Err(EventStreamError::Transport(BodyError::TooLarge)) => {
                    Err(ProviderError::TooLarge {
                        provider: call.provider,
                        max_output_bytes,
                    })
                }
                Err(EventStreamError::Transport(BodyError::Transport(e))) => Err(call.transport(e)),
                Err(EventStreamError::Utf8(e)) => Err(ProviderError::Malformed {
                    provider: call.provider,
                    message: format!("the event stream is not UTF-8: {e}"),
                }),
                Err(EventStreamError::Parser(e)) => Err(ProviderError::Malformed {
                    provider: call.provider,
                    message: redact(format!("the event stream cannot be parsed: {e}"))
                        .into_string(),
                }),
            }),
    )
}

/// The length of the event being received: the bytes since the last blank line (the end of
/// an event, or of a comment), which is what an SSE parser may be holding. Comments and
/// `ping` events end with a blank line, so a stream of them stays short; one endless line,
/// or endless `data:` lines, do not.
#[derive(Debug, Default)]
struct EventBytes {
    /// Bytes since the last blank line.
    len: usize,
    /// Whether the current line has anything but `\r` yet.
    line_has_text: bool,
}

impl EventBytes {
    /// Counts `chunk`; returns the length of the event now being received.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        for &b in chunk {
            self.len += 1;
            match b {
                b'\n' if !self.line_has_text => self.len = 0,
                b'\n' => self.line_has_text = false,
                b'\r' => {}
                _ => self.line_has_text = true,
            }
        }
        self.len
    }
}

/// Reports progress at most every [`PROGRESS_EVERY`] (the first report at once).
pub(super) struct Ticker<'a> {
    progress: &'a ProgressFn<'a>,
    last: Option<Instant>,
}

impl<'a> Ticker<'a> {
    pub(super) fn new(progress: &'a ProgressFn<'a>) -> Self {
        Ticker {
            progress,
            last: None,
        }
    }

    /// Reports `tokens` so far, unless a report went out less than [`PROGRESS_EVERY`] ago.
    pub(super) fn tick(&mut self, tokens: u64) {
        let now = Instant::now();
        if self.last.is_none_or(|t| now - t >= PROGRESS_EVERY) {
            self.last = Some(now);
            (self.progress)(tokens);
        }
    }
}

/// Parses one event's JSON data.
///
/// # Errors
/// [`ProviderError::Malformed`] with serde's description and the start of the data.
pub(super) fn parse_data<T: serde::de::DeserializeOwned>(
    call: &Call<'_>,
    data: &Redacted,
) -> Result<T, ProviderError> {
    serde_json::from_str(data).map_err(|err| ProviderError::Malformed {
        provider: call.provider,
        message: format!(
            "{err} in a streamed event (data: {})",
            data.slice(str::trim).shorten(super::ERROR_BODY_CHARS)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bytes_count_from_the_last_blank_line() {
        let mut e = EventBytes::default();
        assert_eq!(e.feed(b"data: abc\n"), 10);
        assert_eq!(e.feed(b"data: de"), 18);
        assert_eq!(e.feed(b"f\n\n"), 0);
        // Comments, pings and keep-alive blank lines never add up.
        for _ in 0..1000 {
            assert!(e.feed(b": keep-alive\n\nevent: ping\ndata: {}\r\n\r\n\n") < 40);
        }
        // A blank line split across chunks, with CRLF.
        assert_eq!(e.feed(b"data: x\r\n\r"), 10);
        assert_eq!(e.feed(b"\n"), 0);
        // One endless line grows.
        assert_eq!(e.feed(&[b'v'; 5000]), 5000);
    }
}
