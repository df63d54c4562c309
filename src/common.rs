//! Small values every stage after the parser shares, kept below all of them so that no
//! stage reaches up the pipeline for them: a `gather`'s join [`Policy`] and a condition's
//! [`CmpOp`] (written in the AST, carried by the plan, obeyed by the run), durations in
//! milliseconds ([`parse_duration`], [`format_duration`]: the one reading and the one
//! writing of `30s`) and the default bound on a step's output ([`DEFAULT_MAX_OUTPUT_BYTES`],
//! which the checker states and the run enforces), and the maps the checker, planner and
//! run look up at every step ([`NameMap`], [`FastMap`]).

/// Join policy of a `gather`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "policy", content = "n")]
pub enum Policy {
    /// Every branch must succeed.
    All,
    /// The first success; the rest are cancelled.
    Any,
    /// The first N successes; the rest are cancelled.
    First(u32),
    /// Wait for all to settle; go on if at least N succeeded.
    Min(u32),
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::All => f.write_str("all"),
            Policy::Any => f.write_str("any"),
            Policy::First(n) => write!(f, "first {n}"),
            Policy::Min(n) => write!(f, "min {n}"),
        }
    }
}

/// What a step does when its model's answer is cut off by the token limit (stop reason
/// `max_tokens` / `length`): an agent's `on_truncated:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTruncated {
    /// Accept the answer, and flag it: a warning in progress, the summary, the journal and
    /// the report (the default).
    #[default]
    Warn,
    /// Fail the step (its `fallback` model, if any, is tried next).
    Fail,
    /// Ask again at once with `max_tokens` doubled, up to [`MAX_TRUNCATED_RETRY_TOKENS`]
    /// (and `--max-tokens`), within the step's `retry` count; an answer still cut off when no
    /// attempt or no more room is left fails the step.
    Retry,
}

impl OnTruncated {
    /// Whether it is the default, [`OnTruncated::Warn`] (plans leave it out).
    pub fn is_warn(&self) -> bool {
        *self == OnTruncated::Warn
    }
}

/// The most output tokens `on_truncated: retry` asks for: 128,000, the largest output limit
/// of today's models (Claude's extended output; most allow less, and a server that refuses a
/// `max_tokens` above its model's limit fails the attempt with its own message).
pub const MAX_TRUNCATED_RETRY_TOKENS: u32 = 128_000;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
    /// Whether it orders numbers (as opposed to testing equality).
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` into milliseconds (saturating).
pub fn parse_duration(s: &str) -> u64 {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 1,
    };
    n.saturating_mul(factor)
}

/// The completion window of a provider batch (`parallel <batch>`): 24 hours, in
/// milliseconds. Anthropic: "Message Batches" — a batch ends when all its requests are
/// processed or after 24 hours, whichever comes first
/// (<https://docs.anthropic.com/en/docs/build-with-claude/batch-processing>); OpenAI: the
/// Batch API's only `completion_window` is `"24h"`
/// (<https://platform.openai.com/docs/api-reference/batch/create>).
pub const BATCH_WINDOW_MS: u64 = 24 * 3_600_000;

/// What a request sent in a provider batch costs, as a share of the model's prices: both
/// batch APIs charge half the standard input and output prices. Anthropic: "Batch processing
/// costs 50% of standard API prices" (<https://docs.anthropic.com/en/docs/about-claude/pricing>,
/// "Batch processing"); OpenAI: "Batch API ... 50% cost discount compared to synchronous
/// APIs" (<https://platform.openai.com/docs/guides/batch>).
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// `1.5s`, `250ms`, `2m`, `1h`: a duration in milliseconds, for people.
pub fn format_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..3_600_000 if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1_000),
        _ => format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// `1 step`, `2 steps`, `0 steps`: a count and its noun, plural unless the count is one.
/// Every count printed for people goes through it (the nouns used take an `s`).
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The default bound on one answer (and on a command's stdout): 1 MiB of text. The longest
/// answers models give today are bounded by their output-token limits — 64,000 tokens for
/// Claude Sonnet 4.5, 128,000 for GPT-5 (their model pages) — which at about 4 bytes of
/// UTF-8 a token (OpenAI's rule of thumb, 4 characters a token in English) come to 250–500
/// KiB: 1 MiB leaves twice that, so no real answer is cut, while a stream that never ends
/// (75 MB/s on loopback) is stopped after 1 MiB instead of growing memory without bound, and
/// a run holds at most 1 MiB per step in flight. The agent field `max_output_bytes` raises
/// it.
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 1 << 20;

/// A table of names for the checker and planner (agents, models, a workflow's bindings): an
/// [`indexmap::IndexMap`], so it iterates in insertion order and output stays deterministic,
/// hashed with foldhash rather than std's SipHash-1-3. They are looked up several times per
/// step (SipHash was 6% of `orch check`'s instructions on a 10,000-step script; foldhash is a
/// fast non-cryptographic hash, seeded per process: the names come from the user's own
/// scripts). Build one with `NameMap::default()` or `collect()`.
pub type NameMap<K, V> = indexmap::IndexMap<K, V, foldhash::fast::RandomState>;

/// An unordered map for a run's lookups at every step (tasks by step id, clients by model,
/// the simulator's calls by prompt hash): a [`std::collections::HashMap`] hashed with foldhash,
/// for the reason [`NameMap`] gives (SipHash was 4% of a simulated run's instructions per
/// step). Build one with `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_plural_unless_one() {
        assert_eq!(plural(1u64, "step"), "1 step");
        assert_eq!(plural(0u64, "level"), "0 levels");
        assert_eq!(plural(2u32, "attempt"), "2 attempts");
    }

    #[test]
    fn durations_read_and_print() {
        assert_eq!(parse_duration("500ms"), 500);
        assert_eq!(parse_duration("2m"), 120_000);
        assert_eq!(parse_duration("1h"), 3_600_000);
        assert_eq!(format_duration(1_500), "1.5s");
        assert_eq!(format_duration(120_000), "2m");
        assert_eq!(format_duration(3_660_000), "1h1m");
    }
}
