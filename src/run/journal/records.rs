//! The records of a journal, one JSON object a line, each with a `type`.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::super::Approval;
use super::super::cache_key::KeyParts;
use super::super::provider::Usage;

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first line.
    Run(RunHeader),
    /// A resumed run starts here.
    Resume(ResumeHeader),
    /// A step was started.
    Start(StartRecord),
    /// A step ended.
    Step(Box<StepRecord>),
    /// A model turn of an agent loop ended.
    Turn(Box<TurnRecord>),
    /// A tool call that may have side effects is about to run.
    ToolStart(ToolStartRecord),
    /// A tool call of an agent loop ended.
    Tool(Box<ToolRecord>),
    /// A model call (one attempt of a step, or of a turn of its agent loop) ended.
    Attempt(std::sync::Arc<AttemptRecord>),
    /// A provider batch was submitted (`parallel <batch>`).
    Batch(Box<BatchRecord>),
    /// A region (`repeat`, `parallel for`, ...), which has no `step` record of its own, ended
    /// with something a user should know (its steps have their own records).
    Warning(WarningRecord),
    /// The run ended.
    End(EndRecord),
}

/// The `batch` record: a provider batch was submitted (`parallel <batch>`), written and synced
/// as soon as the provider gave its id. A resumed run whose step sends a request this record
/// holds (the same step and request) polls this batch for its answer instead of submitting
/// the request again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The script's provider name.
    pub provider: String,
    /// Its API (`anthropic`, `openai`, `sim`).
    pub api: String,
    /// The provider's id of the batch.
    pub batch_id: String,
    /// Its requests.
    pub items: Vec<BatchItemRecord>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// One request of a `batch` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItemRecord {
    /// Its `custom_id` in the batch.
    pub custom_id: String,
    /// The step that sent it.
    pub step: String,
    /// SHA-256 (hex) of the request's identity (model, system text, prompt, options, turns,
    /// tools: what a cassette matches requests by).
    pub request: String,
}

/// The `warning` record: what a user should know of how a region ended though it did not
/// fail ([`crate::run::StepReport::warnings`]): a `repeat` that stopped at `max` without its
/// `until` holding, a `parallel for` over an empty list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningRecord {
    /// The region's step name (`repeat_1`, `posts`).
    pub step: String,
    /// The warning, in words.
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The `turn` record: one model turn of an agent loop, written when the answer is in (synced promptly),
/// before any of its calls runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// The step (a nested step: `lead/scout#2.1`).
    pub step: String,
    /// The cache key of the step when the turn ran (of its top step, for a nested one): a
    /// resumed run continues the loop only while it is unchanged.
    pub key: String,
    /// 1-based turn.
    pub turn: u32,
    /// The model that answered.
    pub model: String,
    /// What the model said besides its calls.
    pub text: String,
    /// The calls it made (none: its final answer).
    pub calls: Vec<crate::run::provider::ToolCall>,
    /// Tokens of the turn, every attempt of it.
    pub usage: Usage,
    /// USD of the turn.
    pub cost_usd: f64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The `tool_start` record: a call that may change something (not read-only) is about to
/// run. Written and synced before it runs: a resumed run that finds it without its `tool`
/// record does not run the call again (its effect is unknown) and tells the model so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolStartRecord {
    /// The step.
    pub step: String,
    /// The step's cache key (see [`TurnRecord::key`]).
    pub key: String,
    /// The 1-based turn that made the call.
    pub turn: u32,
    /// The call's id.
    pub call_id: String,
    /// The tool's wire name.
    pub tool: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The `tool` record: a call ended, with the result the model gets. Written (synced promptly) before
/// the result is used, so a resumed run never runs a recorded call again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// The step.
    pub step: String,
    /// The step's cache key (see [`TurnRecord::key`]).
    pub key: String,
    /// The call, as reported (arguments, size, time, error, refused, a delegation's nested
    /// step).
    pub call: crate::run::ToolCallReport,
    /// The result text the model gets (redacted, capped).
    pub content: String,
}

/// The `attempt` record: one model call ended — each retry, each fallback, each turn of an
/// agent loop is one. It keeps what was sent and what came back (redacted like every record;
/// without the texts under `--no-store-prompts`), so a bad answer can be traced to the prompt
/// that caused it, and the timeline of a report shows every attempt and the wait before it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The step (a nested step: `lead/scout#2.1`; an instance: `post[2]`).
    pub step: String,
    /// 1-based attempt of the step (of this turn's model call, in an agent loop), over all
    /// its models.
    pub attempt: u32,
    /// In an agent loop: the 1-based turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// The model asked, as the plan names it (`sonnet`, a fallback's name).
    pub model: String,
    /// Where the call went: the script's provider name (`anthropic`), `simulator` under
    /// `--simulate`, or the host of an `--endpoint` URL (`127.0.0.1`).
    pub provider: String,
    /// The model the provider says answered (the response's `model` field; the identifier
    /// requested when the response has none). Absent for a failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// The rendered system text sent (absent: none, or not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The rendered prompt sent; in an agent loop after the first turn, the tool results
    /// sent back (absent: not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The answer's text (absent: the call failed, or not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Why the model stopped, in orch's words for the providers' ones: `end_turn` (Anthropic
    /// `end_turn`/`stop_sequence`, OpenAI `stop`), `tool_use` (`tool_use`, `tool_calls`),
    /// `max_tokens` (Anthropic `max_tokens`, OpenAI `length`), or any other word as the
    /// provider said it. Absent for a failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The answer was cut by the token limit (`max_tokens` / `length`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The error of a failed call (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Under `--no-store-prompts`: the SHA-256 and length of the system text that was sent
    /// (it is not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_digest: Option<TextDigest>,
    /// Under `--no-store-prompts`: the SHA-256 and length of the prompt that was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_digest: Option<TextDigest>,
    /// Under `--no-store-prompts`: the SHA-256 and length of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_digest: Option<TextDigest>,
    /// Tokens of this call.
    pub usage: Usage,
    /// USD of this call.
    pub cost_usd: f64,
    /// Milliseconds waited before it was sent: since the previous attempt of this call ended
    /// (its backoff), or since the call began for the first attempt, including any wait for
    /// the provider's permit (`max_concurrency`) and rate limits.
    #[serde(default)]
    pub wait_ms: u64,
    /// Sent, in milliseconds since the run (segment) began.
    pub started_ms: u64,
    /// Ended, in milliseconds since the run (segment) began.
    pub finished_ms: u64,
}

/// What is kept of a text that is not stored (`--no-store-prompts`): enough to tell whether
/// two runs sent the same prompt, nothing to read it from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TextDigest {
    /// SHA-256 (hex) of the text, redacted ([`crate::redact`]) as it would have been stored.
    pub sha256: String,
    /// Its length in characters.
    pub chars: usize,
}

impl TextDigest {
    /// The digest of `text`.
    pub fn of(text: &str) -> Self {
        TextDigest {
            sha256: super::super::cache_key::sha256_hex(text.as_bytes()),
            chars: text.chars().count(),
        }
    }
}

/// The `run` record: what was run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// [`FORMAT_VERSION`](super::FORMAT_VERSION) of the writer.
    pub version: u32,
    /// The run's id.
    pub run_id: String,
    /// The script, as the caller named it (the CLI gives an absolute path).
    pub script: String,
    /// The workflow run.
    pub workflow: String,
    /// Inputs as given on the command line, by parameter name.
    pub inputs: IndexMap<String, String>,
    /// SHA-256 (hex) of the plan's JSON form.
    pub plan_hash: String,
    /// Where models ran: `script providers`, `simulator`, or `endpoint URL`.
    pub target: String,
    /// The plan's step names, in source order.
    pub steps: Vec<String>,
    /// Start, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The orch version that wrote it.
    pub orch_version: String,
}

/// The `resume` record: a later process continuing the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeHeader {
    /// Inputs in force (recorded ones, overridden by any given again).
    pub inputs: IndexMap<String, String>,
    /// SHA-256 (hex) of the plan's JSON form now.
    pub plan_hash: String,
    /// Where models run now.
    pub target: String,
    /// The plan's step names now.
    pub steps: Vec<String>,
    /// Start of this segment, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The `start` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    /// Step name.
    pub name: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// How a recorded step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// It produced an output, which a resumed run may reuse.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// It was in flight when the run was interrupted.
    Interrupted,
}

/// The `step` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// Agent called.
    pub agent: String,
    /// How it ended.
    pub status: StepOutcome,
    /// The error of a failed step (redacted, as every record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The step's cache key ([`KeyParts::key`]).
    pub cache_key: String,
    /// What the key was made of.
    pub key: KeyParts,
    /// The output of a succeeded step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// A structured output (`-> T`) as a value of its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For an approval step: the answer and how it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// For an agent loop: its turns and tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_loop: Option<crate::run::LoopReport>,
    /// The model that answered (after any fallback), `command`, or for an approval `person`
    /// or `--yes`.
    #[serde(default)]
    pub model: Option<String>,
    /// The model the provider said answered ([`crate::run::StepReport::served_model`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// The answer kept was cut off by the token limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// What a user should know of how it ended ([`crate::run::StepReport::warnings`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Tokens, as the providers reported them.
    pub usage: Usage,
    /// USD.
    pub cost_usd: f64,
    /// Start, in milliseconds since its run (segment) began.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// End, in milliseconds since its run (segment) began.
    #[serde(default)]
    pub finished_ms: Option<u64>,
}

/// The `step` record borrowed from what it records (the step's report and cache key), for
/// writing it without copying them: it serializes exactly as [`Record::Step`] of the same
/// fields (a test holds the two together), and the journal reads it back as that.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "step")]
pub(super) struct StepLine<'a> {
    pub name: &'a str,
    pub agent: &'a str,
    pub status: StepOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub cache_key: &'a str,
    pub key: &'a KeyParts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<&'a Approval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_loop: Option<&'a crate::run::LoopReport>,
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_model: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
    pub attempts: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndStatus {
    /// Every step that had to run succeeded.
    Succeeded,
    /// A step failed, the budget stopped it, or a step could not run.
    Failed,
    /// Ctrl-C (or a [`crate::run::cancel::Cancel`]) stopped it.
    Interrupted,
}

/// The `end` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    /// How it ended.
    pub status: EndStatus,
    /// Why it stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step executions of the run's report, as its summary counts them (absent in
    /// journals of orch before 0.1 wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepCounts>,
    /// USD of the whole run, reused steps included.
    pub cost_usd: f64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Step executions counted one way everywhere (the run summary's `N/M steps succeeded`,
/// `orch runs`): each execution of a step is one — every instance of a `parallel for`,
/// `repeat` or workflow call body (`post[2]`, `draft#3`, `report/plan`), and the region's
/// own step — not the plan's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    /// Executions that succeeded (reused ones included).
    pub succeeded: usize,
    /// Executions reported: succeeded, failed, skipped, cancelled or interrupted.
    pub total: usize,
}
