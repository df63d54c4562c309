//! Rate limits of a provider, shared by every step of a run.
//!
//! Two sources hold requests back before they are sent:
//!
//! - **The script**: a provider's `requests_per_minute` and `tokens_per_minute`, enforced with
//!   the GCRA rate limiter of the `governor` crate. Requests are spread out: at most one
//!   second's worth of requests (`ceil(requests_per_minute / 60)`) go at once, then one every
//!   `60 s / requests_per_minute`, since a provider may enforce a per-minute limit over shorter
//!   windows. Tokens may come in bursts of a whole minute's worth; a request counts its
//!   estimated input tokens plus its `max_tokens` (a request larger than the whole minute's
//!   budget waits for a full bucket).
//! - **The provider's answers**: rate-limit response headers. When an answer says that no
//!   requests or tokens remain in the current window, new requests to that provider wait until
//!   the window resets (at most [`MAX_HOLD`]). Headers read:
//!   - Anthropic ("Rate limits", <https://docs.anthropic.com/en/api/rate-limits>, "Response
//!     headers"): `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining`
//!     with `...-reset`, an RFC 3339 time;
//!   - OpenAI ("Rate limits", <https://platform.openai.com/docs/guides/rate-limits>, "Rate
//!     limits in headers"): `x-ratelimit-remaining-{requests,tokens}` with
//!     `x-ratelimit-reset-{requests,tokens}`, a duration such as `1s`, `6m0s` or `12ms`.
//!
//! And one source decides how long a failed request waits before it is tried again:
//! [`retry_after`] and [`backoff`], the official SDKs' rules ([`before_retry`] sleeps it).
//!
//! Time is tokio's clock, so tests on a paused clock see exact waits.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// The longest a provider's rate-limit headers may hold requests back at once, like the
/// longest `retry-after` honoured: a longer reset (a daily window, a clock far off) is probed
/// again after this long.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// governor's clock, read from tokio's (so a paused test clock drives it).
#[derive(Debug, Clone)]
struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// A hold from the provider's headers: no request before `until`.
#[derive(Debug, Clone)]
struct Hold {
    until: Instant,
    why: String,
}

/// The rate limits of one provider: the script's and those its answers announce. One value is
/// shared (behind an `Arc`) by every step that calls the provider.
pub struct ProviderLimits {
    provider: String,
    clock: TokioClock,
    requests: Option<Limiter>,
    /// The token limiter and its capacity (one minute's worth).
    tokens: Option<(Limiter, NonZeroU32)>,
    hold: Mutex<Option<Hold>>,
}

impl std::fmt::Debug for ProviderLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderLimits")
            .field("provider", &self.provider)
            .field("requests", &self.requests.is_some())
            .field("tokens", &self.tokens.as_ref().map(|(_, cap)| cap.get()))
            .finish()
    }
}

impl ProviderLimits {
    /// Limits for the provider named `provider` (used in messages): at most
    /// `requests_per_minute` requests and `tokens_per_minute` tokens per minute (`None`: no
    /// limit of that kind; zero is treated as no limit, the checker refuses it).
    pub fn new(
        provider: &str,
        requests_per_minute: Option<u32>,
        tokens_per_minute: Option<u32>,
    ) -> Self {
        let clock = TokioClock {
            start: Instant::now(),
        };
        let requests = requests_per_minute.and_then(NonZeroU32::new).and_then(|n| {
            let period = Duration::from_secs(60) / n.get();
            let burst = NonZeroU32::new(n.get().div_ceil(60))?;
            let quota = Quota::with_period(period.max(Duration::from_nanos(1)))?;
            Some(Limiter::direct_with_clock(
                quota.allow_burst(burst),
                clock.clone(),
            ))
        });
        let tokens = tokens_per_minute.and_then(NonZeroU32::new).map(|n| {
            (
                Limiter::direct_with_clock(Quota::per_minute(n), clock.clone()),
                n,
            )
        });
        ProviderLimits {
            provider: provider.to_owned(),
            clock,
            requests,
            tokens,
            hold: Mutex::new(None),
        }
    }

    /// Waits until a request of about `tokens` tokens (input estimate plus `max_tokens`) may be
    /// sent, and takes it from the limits. `on_wait(ms, why)` is called before each wait, with
    /// its length in milliseconds and a reason for people. Returns the total wait in
    /// milliseconds.
    pub async fn acquire(&self, tokens: u64, on_wait: &(dyn Fn(u64, &str) + Send + Sync)) -> u64 {
        let start = Instant::now();
        // 1. A hold announced by the provider's headers.
        loop {
            let hold = self.lock_hold().clone();
            match hold {
                Some(h) if h.until > Instant::now() => {
                    on_wait(ms(h.until - Instant::now()), &h.why);
                    tokio::time::sleep_until(h.until).await;
                }
                _ => break,
            }
        }
        // 2. The script's tokens per minute (taken only once they all fit).
        if let Some((limiter, cap)) = &self.tokens {
            let n = u32::try_from(tokens)
                .unwrap_or(u32::MAX)
                .clamp(1, cap.get());
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            loop {
                match limiter.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        on_wait(
                            ms(wait),
                            &format!("`{}` allows {} tokens per minute", self.provider, cap.get()),
                        );
                        tokio::time::sleep(wait).await;
                    }
                    // `n` is clamped to the capacity, so this cannot happen; never spin on it.
                    Err(_) => break,
                }
            }
        }
        // 3. The script's requests per minute.
        if let Some(limiter) = &self.requests {
            while let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(self.clock.now());
                on_wait(
                    ms(wait),
                    &format!("`{}`'s requests_per_minute", self.provider),
                );
                tokio::time::sleep(wait).await;
            }
        }
        ms(start.elapsed())
    }

    /// Reads a response's rate-limit headers: when they say a window is used up, holds new
    /// requests until it resets (at most [`MAX_HOLD`]).
    pub fn observe(&self, headers: &reqwest::header::HeaderMap) {
        if let Some((wait, window)) = exhausted_window(headers, SystemTime::now()) {
            self.hold_for(
                wait,
                format!("`{}` says its {window} are used up", self.provider),
            );
        }
    }

    /// Holds new requests for `wait` (at most [`MAX_HOLD`]); `why` is shown to people. A
    /// longer hold already in place is kept.
    pub fn hold_for(&self, wait: Duration, why: String) {
        let until = Instant::now() + wait.min(MAX_HOLD);
        let mut hold = self.lock_hold();
        if hold.as_ref().is_none_or(|h| h.until < until) {
            *hold = Some(Hold { until, why });
        }
    }

    fn lock_hold(&self) -> std::sync::MutexGuard<'_, Option<Hold>> {
        self.hold.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------ retries

/// The longest delay a server may ask for before a retry and be obeyed (`retry-after`,
/// `retry-after-ms`); a longer one, like zero or a time in the past, gets the normal
/// [`backoff`].
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The first backoff, doubled on each retry up to [`MAX_BACKOFF`] (the SDKs'
/// `INITIAL_RETRY_DELAY`, 0.5 s).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// The longest backoff (the SDKs' `MAX_RETRY_DELAY`, 8 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The delay a failed response asks for before a retry, when it is one to obey: the rule of
/// the official Python SDKs, anthropic-sdk-python and openai-python
/// (`src/{anthropic,openai}/_base_client.py`, `_parse_retry_after_header` and
/// `_calculate_retry_timeout`):
///
/// 1. `retry-after-ms`, when it is a number, is the delay in milliseconds (and
///    `retry-after` is then not read, whatever the number);
/// 2. else `retry-after` as a number of seconds (fractions allowed);
/// 3. else `retry-after` as an HTTP date (RFC 9110 §10.2.3): the time left from `now`,
///    negative when it is past.
///
/// The delay is obeyed only when `0 < delay <= 60 s` ([`MAX_RETRY_AFTER`]): zero, a
/// negative delay, a date in the past, a longer delay, `NaN` or an unreadable value give
/// `None`, and the caller uses the normal [`backoff`] — so a server can never make a client
/// retry at once in a loop. (anthropic-sdk-python obeys up to 60 s; openai-python raised its
/// bound to 120 s in 2026 and then does not retry past it; orch keeps the 60 s of both
/// before that, where a longer wait is probed with the backoff instead.)
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |name: &str| text(name)?.parse::<f64>().ok();
    let seconds = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))
        .or_else(|| {
            let date = httpdate::parse_http_date(text("retry-after")?).ok()?;
            Some(match date.duration_since(now) {
                Ok(ahead) => ahead.as_secs_f64(),
                Err(past) => -past.duration().as_secs_f64(),
            })
        })?;
    (seconds > 0.0 && seconds <= MAX_RETRY_AFTER.as_secs_f64())
        .then(|| Duration::from_secs_f64(seconds))
}

/// The wait before retry `k` (0 for the first retry): `server`, the delay the failed
/// response asked for ([`retry_after`]), when there is one of at most [`MAX_RETRY_AFTER`];
/// otherwise `min(0.5 s · 2^k, 8 s)` shortened by a random jitter of up to 25%, so that many
/// clients failing together do not retry together. `jitter` is a uniform sample from
/// [0, 1). Formula and constants are the official SDKs' `_calculate_retry_timeout` (see
/// [`retry_after`]): `min(INITIAL_RETRY_DELAY * 2 ** retries_taken, MAX_RETRY_DELAY) * (1 -
/// 0.25 * random())`.
pub fn backoff(k: u32, server: Option<Duration>, jitter: f64) -> Duration {
    if let Some(d) = server.filter(|d| !d.is_zero() && *d <= MAX_RETRY_AFTER) {
        return d;
    }
    let base = (INITIAL_BACKOFF * 2u32.pow(k.min(5))).min(MAX_BACKOFF);
    base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// Waits before retry `k`: the [`backoff`], rounded to whole milliseconds, which
/// `announce` is told (in milliseconds) before the wait starts. Returns the wait in
/// milliseconds.
pub async fn before_retry(
    k: u32,
    server: Option<Duration>,
    jitter: f64,
    announce: impl FnOnce(u64),
) -> u64 {
    let wait = ms(backoff(k, server, jitter) + Duration::from_micros(500));
    announce(wait);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    wait
}

/// Pairs of (remaining, reset) headers, with the window's name for people.
const WINDOWS: &[(&str, &str, &str)] = &[
    (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "requests",
    ),
    (
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        "tokens",
    ),
    (
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "input tokens",
    ),
    (
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        "output tokens",
    ),
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "requests",
    ),
    (
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "tokens",
    ),
];

/// The longest wait among the windows the headers say are used up (remaining `0` with a
/// readable reset), with that window's name. `now` is the wall clock, for absolute resets.
pub fn exhausted_window(
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Option<(Duration, &'static str)> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    WINDOWS
        .iter()
        .filter(|(remaining, _, _)| text(remaining).and_then(|r| r.parse::<u64>().ok()) == Some(0))
        .filter_map(|(_, reset, window)| Some((parse_reset(text(reset)?, now)?, *window)))
        .max_by_key(|(wait, _)| *wait)
}

/// A reset header: a duration (`1s`, `6m0s`, `12ms`, `1.5s`), an RFC 3339 time
/// (`2025-08-21T12:40:59Z`, turned into the time left from `now`; a past time is zero), or a
/// bare number of seconds.
pub fn parse_reset(text: &str, now: SystemTime) -> Option<Duration> {
    if let Some(d) = parse_go_duration(text) {
        return Some(d);
    }
    if let Some(at) = parse_rfc3339(text) {
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)))
}

/// A duration as Go prints it (OpenAI's reset headers): one or more `<number><unit>` with
/// units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`, e.g. `6m0s`, `1.5s`, `20ms`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * seconds;
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(1e9)))
}

/// An RFC 3339 time (`2025-08-21T12:40:59Z`, `2025-08-21T12:40:59.5+02:00`), as jiff reads
/// a timestamp: a date, a time and an offset (`Z` or `±HH:MM`); ISO 8601's basic offset
/// `+0200` is read too. A time without an offset is not one.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    text.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use std::sync::{Arc, Mutex as StdMutex};
    use std::time::UNIX_EPOCH;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("3x"), None);
    }

    #[test]
    fn rfc3339_times() {
        let t = parse_rfc3339("2025-08-21T12:40:59Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_755_780_059
        );
        let t = parse_rfc3339("2025-08-21T14:40:59.250+02:00").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_755_780_059, 250_000_000)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        // ISO 8601's basic offset is the same time as RFC 3339's `+02:00`.
        assert_eq!(
            parse_rfc3339("2025-08-21T12:40:59+0200"),
            parse_rfc3339("2025-08-21T12:40:59+02:00")
        );
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-08-21 12:40",
            "2025-08-21T12:40:59",
            "yesterday",
            "2025-08-21T12:4x:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn exhausted_windows_from_headers() {
        let now = parse_rfc3339("2025-08-21T12:40:00Z").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(exhausted_window(&h, now), None);
        // Anthropic: requests used up, reset in 59 s; tokens left.
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            HeaderValue::from_static("0"),
        );
        h.insert(
            "anthropic-ratelimit-requests-reset",
            HeaderValue::from_static("2025-08-21T12:40:59Z"),
        );
        h.insert(
            "anthropic-ratelimit-tokens-remaining",
            HeaderValue::from_static("96000"),
        );
        h.insert(
            "anthropic-ratelimit-tokens-reset",
            HeaderValue::from_static("2025-08-21T12:41:30Z"),
        );
        assert_eq!(
            exhausted_window(&h, now),
            Some((Duration::from_secs(59), "requests"))
        );
        // OpenAI: tokens used up for 6m0s, requests for 1s: the longer wins.
        let mut o = HeaderMap::new();
        o.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        o.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
        o.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("0"),
        );
        o.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
        assert_eq!(
            exhausted_window(&o, now),
            Some((Duration::from_secs(360), "tokens"))
        );
        // Remaining but unreadable reset, or remaining > 0: no hold.
        let mut u = HeaderMap::new();
        u.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        u.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("soon"),
        );
        assert_eq!(exhausted_window(&u, now), None);
        u.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("-1"),
        );
        u.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
        assert_eq!(exhausted_window(&u, now), None);
        // A reset in the past: zero wait.
        assert_eq!(
            parse_reset("2025-08-21T12:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_reset("2.5", now), Some(Duration::from_millis(2500)));
    }

    /// The waits reported: milliseconds and reason.
    type Waits = Arc<StdMutex<Vec<(u64, String)>>>;

    fn recorder() -> (Waits, impl Fn(u64, &str) + Send + Sync) {
        let waits = Arc::new(StdMutex::new(Vec::new()));
        let sink = waits.clone();
        (waits, move |ms: u64, why: &str| {
            sink.lock().unwrap().push((ms, why.to_owned()))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_spreads_requests() {
        let limits = ProviderLimits::new("p", Some(60), None);
        let (waits, on_wait) = recorder();
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            limits.acquire(1, &on_wait).await;
            at.push(start.elapsed().as_millis());
        }
        // 60 per minute: one at once, then one a second.
        assert_eq!(at, [0, 1000, 2000, 3000]);
        assert_eq!(waits.lock().unwrap().len(), 3);
        assert!(waits.lock().unwrap()[0].1.contains("requests_per_minute"));
        // 600 per minute: bursts of 10, then one every 100 ms.
        let fast = ProviderLimits::new("p", Some(600), None);
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(fast.acquire(1, &|_, _| {}).await, 0);
        }
        fast.acquire(1, &|_, _| {}).await;
        assert_eq!(start.elapsed().as_millis(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_waits_for_room() {
        let limits = ProviderLimits::new("p", None, Some(1000));
        let (waits, on_wait) = recorder();
        let start = Instant::now();
        // A whole minute's worth at once, then 600 more need 36 s of refill.
        limits.acquire(1000, &on_wait).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire(600, &on_wait).await;
        assert_eq!(start.elapsed().as_millis(), 36_000);
        assert!(
            waits.lock().unwrap()[0]
                .1
                .contains("1000 tokens per minute")
        );
        // Larger than the whole budget: waits for a full bucket, never forever.
        limits.acquire(5000, &on_wait).await;
        assert_eq!(start.elapsed().as_millis(), 96_000);
    }

    #[tokio::test(start_paused = true)]
    async fn header_hold_delays_the_next_request() {
        let limits = ProviderLimits::new("openai", None, None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        h.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("1.5s"),
        );
        limits.observe(&h);
        let (waits, on_wait) = recorder();
        let start = Instant::now();
        assert_eq!(limits.acquire(1, &on_wait).await, 1500);
        assert_eq!(start.elapsed().as_millis(), 1500);
        let first = waits.lock().unwrap()[0].clone();
        assert_eq!(first.0, 1500);
        assert!(first.1.contains("`openai` says its requests are used up"));
        // The hold is over: the next request goes at once.
        assert_eq!(limits.acquire(1, &on_wait).await, 0);
        // A reset beyond MAX_HOLD is capped.
        let mut far = HeaderMap::new();
        far.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("0"),
        );
        far.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("2h"));
        limits.observe(&far);
        assert_eq!(limits.acquire(1, &on_wait).await, 60_000);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_is_obeyed_only_between_zero_and_sixty_seconds() {
        // Wed, 21 Oct 2015 07:27:50 GMT
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        let after = |pairs: &[(&'static str, &'static str)]| retry_after(&headers(pairs), now);
        let s = Duration::from_secs;
        assert_eq!(after(&[]), None);
        assert_eq!(after(&[("retry-after", "2")]), Some(s(2)));
        assert_eq!(
            after(&[("retry-after", "0.25")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(after(&[("retry-after", "60")]), Some(s(60)));
        // `retry-after-ms` wins, fractions and all.
        assert_eq!(
            after(&[("retry-after", "2"), ("retry-after-ms", "150.5")]),
            Some(Duration::from_micros(150_500))
        );
        // A number in `retry-after-ms` decides even when it is not obeyed; an unreadable
        // one is skipped.
        assert_eq!(
            after(&[("retry-after", "2"), ("retry-after-ms", "0")]),
            None
        );
        assert_eq!(
            after(&[("retry-after", "2"), ("retry-after-ms", "soon")]),
            Some(s(2))
        );
        // HTTP dates: ten seconds ahead; in the past; too far ahead.
        assert_eq!(
            after(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            Some(s(10))
        );
        assert_eq!(
            after(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")]),
            None
        );
        assert_eq!(
            after(&[("retry-after", "Wed, 21 Oct 2015 07:30:00 GMT")]),
            None
        );
        // Zero, negative, too long, not a number: the normal backoff.
        for bad in ["0", "-1", "60.5", "3600", "NaN", "inf", "tomorrow", ""] {
            assert_eq!(after(&[("retry-after", bad)]), None, "{bad}");
        }
        assert_eq!(after(&[("retry-after-ms", "-5")]), None);
        assert_eq!(after(&[("retry-after-ms", "60001")]), None);
    }

    #[test]
    fn backoff_doubles_to_eight_seconds_less_a_jitter_of_a_quarter() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(0, None, 0.0), ms(500));
        assert_eq!(
            backoff(0, None, 0.999_999),
            ms(375) + Duration::from_nanos(125)
        );
        assert_eq!(backoff(1, None, 0.0), ms(1000));
        assert_eq!(backoff(3, None, 0.5), ms(3500));
        assert_eq!(backoff(4, None, 0.0), ms(8000));
        assert_eq!(backoff(40, None, 1.0), ms(6000));
        // A server's delay within bounds is taken as it is; zero or longer ones are not.
        assert_eq!(backoff(3, Some(ms(1500)), 0.0), ms(1500));
        assert_eq!(backoff(0, Some(Duration::ZERO), 0.0), ms(500));
        assert_eq!(backoff(1, Some(Duration::from_secs(61)), 0.0), ms(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn before_retry_announces_then_sleeps_the_backoff() {
        let start = Instant::now();
        let mut told = Vec::new();
        // A server that says `retry-after: 0` gets the backoff, not a retry at once.
        let server = retry_after(&headers(&[("retry-after", "0")]), SystemTime::now());
        let waited = before_retry(0, server, 0.0, |ms| told.push(ms)).await;
        assert_eq!((waited, start.elapsed()), (500, Duration::from_millis(500)));
        let server = retry_after(&headers(&[("retry-after-ms", "1250")]), SystemTime::now());
        before_retry(1, server, 0.9, |ms| told.push(ms)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1750));
        before_retry(2, None, 0.5, |ms| told.push(ms)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
        assert_eq!(told, [500, 1250, 1750]);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limits = ProviderLimits::new("p", None, None);
        for _ in 0..1000 {
            assert_eq!(limits.acquire(1_000_000, &|_, _| panic!("waited")).await, 0);
        }
    }
}
