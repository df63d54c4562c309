//! Server-sent events: the transport of streamed answers.
//!
//! A streamed answer is a `text/event-stream` body (WHATWG HTML, "Server-sent events",
//! <https://html.spec.whatwg.org/multipage/server-sent-events.html>): events of `event:` and
//! `data:` lines separated by blank lines. The `eventsource-stream` crate parses them from
//! reqwest's byte stream; this module adds the inactivity timeout (no bytes for
//! [`super::HttpOptions::idle_timeout`] → [`ProviderError::Idle`]), turns transport and
//! parse failures into [`ProviderError`]s, and throttles progress reports. What the events
//! mean is each API's business (`openai.rs`, `anthropic.rs`).

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

/// Why the body stopped: the connection broke, or it fell silent.
#[derive(Debug)]
enum BodyError {
    Transport(reqwest::Error),
    Idle,
}

/// A stream of events, ending when the body ends.
pub(super) type Events<'a> =
    Pin<Box<dyn Stream<Item = Result<SseEvent, ProviderError>> + Send + 'a>>;

/// The events of a streamed response body. Each item is an event, or the error that ends the
/// stream: [`ProviderError::Idle`] when no bytes arrived for the inactivity timeout,
/// [`ProviderError::Transport`] when the connection broke, [`ProviderError::Malformed`] when
/// the body is not UTF-8 or not an event stream.
pub(super) fn events<'a>(call: &'a Call<'a>, response: reqwest::Response) -> Events<'a> {
    let idle = call.options.idle_timeout;
    let bytes = Box::pin(response.bytes_stream());
    let guarded = futures_util::stream::unfold(Some(bytes), move |state| async move {
        let mut bytes = state?;
        match tokio::time::timeout(idle, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
            Ok(Some(Err(e))) => Some((Err(BodyError::Transport(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(BodyError::Idle), None)),
        }
    });
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
                Err(EventStreamError::Transport(BodyError::Idle)) => Err(call.idle()),
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
