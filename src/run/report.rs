//! What a run reports: progress [`Event`]s as it goes, a [`StepReport`] per step and the
//! [`RunReport`] at the end.

use serde::{Deserialize, Serialize};

use super::approval::Approval;
use super::journal;
use super::provider::Usage;
use crate::plan::PlanNode;

/// Progress of a run, reported as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step started an attempt.
    Started {
        /// Step name.
        step: String,
        /// Model or command shown to users.
        runs_on: String,
        /// 1-based attempt (of the step; in an agent loop, of this turn's model call).
        attempt: u32,
        /// In an agent loop: the 1-based turn this model call is for.
        turn: Option<u32>,
    },
    /// An attempt failed and will be retried after `delay_ms`.
    Retrying {
        /// Step name.
        step: String,
        /// The error.
        error: String,
        /// Backoff before the next attempt, in milliseconds.
        delay_ms: u64,
    },
    /// A streamed answer is arriving (reported at most every 250 ms per attempt).
    Streaming {
        /// Step name.
        step: String,
        /// Output tokens received so far in this attempt (an estimate; see
        /// [`super::provider::ProgressFn`]).
        tokens: u64,
    },
    /// An attempt waits for its provider's rate limits before it is sent.
    Waiting {
        /// Step name.
        step: String,
        /// How long, in milliseconds.
        delay_ms: u64,
        /// Which limit, for people (``"`anthropic` says its requests are used up"``).
        reason: String,
    },
    /// An attempt of a step in a `parallel <batch>` block waits in its block's queue for a
    /// provider batch (answered within 24 hours).
    Batched {
        /// Step name.
        step: String,
    },
    /// A step switches to its fallback model.
    FallingBack {
        /// Step name.
        step: String,
        /// The fallback model.
        model: String,
    },
    /// A step finished (successfully or not). Its report is boxed, as in [`Event::Reused`] and
    /// [`Event::Cached`]: every event is moved through a channel, and an inline report (384
    /// bytes) would make each of them that large.
    Finished(Box<StepReport>),
    /// On a resumed run: a step's result was taken from the journal instead of running it.
    /// The report is the one recorded when it ran.
    Reused(Box<StepReport>),
    /// With `--cache DIR`: a step's result was taken from the cross-run cache
    /// ([`crate::run::step_cache`]) instead of running it. The report is the cached one, with
    /// this run's times and no tokens or cost (nothing was spent on it now).
    Cached(Box<StepReport>),
    /// An agent loop's tool call ended (its result is about to go back to the model); for a
    /// delegation, the nested step's report is in [`ToolCallReport::delegated`].
    ToolCalled {
        /// Step name (a nested step's: `lead/scout#2.1`).
        step: String,
        /// The call.
        call: Box<ToolCallReport>,
    },
    /// A model call is about to be sent (after any wait for permits and rate limits): what
    /// it sends, redacted ([`crate::redact`]), for `orch run -v`.
    Sending(Box<Sending>),
    /// A model call ended (journaled as an `attempt` record; see
    /// [`journal::AttemptRecord`]). Shared with the journal's writer thread, which encodes
    /// the same record.
    Attempt(std::sync::Arc<journal::AttemptRecord>),
    /// On a resumed run: a step runs again, and why (`it failed last time: ...`, `prompt
    /// changed (upstream `plan` re-ran)`, `model changed sonnet → opus`, ...).
    Rerun {
        /// Step name.
        step: String,
        /// The reason, in words.
        why: String,
    },
}

/// A model call about to be sent ([`Event::Sending`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Sending {
    /// Step name (a nested step's: `lead/scout#2.1`).
    pub step: String,
    /// The model, as the plan names it.
    pub model: String,
    /// 1-based attempt (of the step; in an agent loop, of this turn's model call).
    pub attempt: u32,
    /// In an agent loop: the 1-based turn.
    pub turn: Option<u32>,
    /// The rendered system text, redacted.
    pub system: Option<String>,
    /// The rendered prompt, redacted; in an agent loop after the first turn, the tool results
    /// sent back.
    pub prompt: String,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "reason")]
pub enum StepStatus {
    /// It produced an output.
    Succeeded,
    /// Every attempt failed.
    Failed(String),
    /// It never started because a dependency failed, the budget ran out, or the run stopped.
    Skipped(String),
    /// A `gather <any|first N>` no longer needed it.
    Cancelled,
    /// It was running when the run was interrupted (Ctrl-C): its request was dropped (its
    /// program killed) and a resumed run runs it again.
    Interrupted,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// The agent.
    pub agent: String,
    /// The model that produced the output (after any fallback), `command`, or for an
    /// approval who answered: `person` or `--yes`.
    pub model: Option<String>,
    /// Outcome.
    #[serde(flatten)]
    pub status: StepStatus,
    /// Attempts made, over all models.
    pub attempts: u32,
    /// Tokens, as reported by the provider(s), over all attempts.
    pub usage: Usage,
    /// USD, from usage and the models' prices.
    pub cost_usd: f64,
    /// Start, in milliseconds since the run began.
    pub started_ms: Option<u64>,
    /// End, in milliseconds since the run began.
    pub finished_ms: Option<u64>,
    /// The output as text (absent when the step did not succeed); a structured output is its
    /// JSON text.
    pub output: Option<String>,
    /// A structured output (`-> T`) as a value of its type; absent for text outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For an answered approval step: the answer and how it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// For a step of an agent with `tools`: its loop's turns and tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_loop: Option<LoopReport>,
    /// The model the provider said answered the step's last model call (the response's
    /// `model` field: with `--endpoint`, the server's model, not the script's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// Whether the answer the step kept was cut off by the token limit (stop reason
    /// `max_tokens` / `length`), accepted under the agent's `on_truncated: warn` (the
    /// default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// What a user should know of how the step ended though it did not fail, in words: an
    /// answer cut off at the token limit, a `repeat` that stopped at `max` without its
    /// `until` holding, a `parallel for` over an empty list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What an agent loop did: its model turns and every tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopReport {
    /// Model turns taken (a resumed loop counts the turns of its transcript too).
    pub turns: u32,
    /// Every tool call: turn by turn, and in call order within a turn (a delegation's nested
    /// calls are in its [`ToolCallReport::delegated`] report).
    pub tool_calls: Vec<ToolCallReport>,
}

impl LoopReport {
    /// How many calls were refused (not granted, malformed arguments, outside the workspace,
    /// not allowlisted).
    pub fn refused(&self) -> usize {
        self.tool_calls.iter().filter(|c| c.refused).count()
    }

    /// How many calls returned an error result, refusals included.
    pub fn errors(&self) -> usize {
        self.tool_calls.iter().filter(|c| c.is_error).count()
    }
}

/// One tool call of an agent loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallReport {
    /// The 1-based model turn that made it.
    pub turn: u32,
    /// The provider's call id.
    pub id: String,
    /// The tool's wire name (`read`, `fs__read_text_file`, `agent__scout`).
    pub tool: String,
    /// The arguments the model gave (a JSON object; for malformed arguments, the reason they
    /// could not be read, as a string).
    pub arguments: serde_json::Value,
    /// Size of the result sent back to the model, in bytes (after redaction and the cap).
    pub result_bytes: usize,
    /// A few words on the result (`12 matches`, `refused`), as progress shows them.
    pub summary: String,
    /// How long the call took, in milliseconds.
    pub time_ms: u64,
    /// Whether the result reports a failure (a refusal too).
    pub is_error: bool,
    /// Whether the call was refused before it ran.
    pub refused: bool,
    /// Whether the result was taken from the journal of an earlier attempt of this run
    /// (`--resume`) instead of running the call again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// For a delegation (`agent__NAME`): the nested step's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated: Option<Box<StepReport>>,
}

impl StepReport {
    /// The value later steps see: the structured value, or the text as a JSON string.
    pub fn output_value(&self) -> Option<serde_json::Value> {
        self.value
            .clone()
            .or_else(|| self.output.clone().map(serde_json::Value::String))
    }
}

impl StepReport {
    /// A report with only a name, an agent and a status: no model, no attempts, no usage,
    /// no times, no output. The other constructors, and reports made outside a run (an
    /// engine's failures, a journal's missing records), start from it.
    pub fn blank(name: impl Into<String>, agent: impl Into<String>, status: StepStatus) -> Self {
        StepReport {
            name: name.into(),
            agent: agent.into(),
            model: None,
            status,
            attempts: 0,
            usage: Usage::default(),
            cost_usd: 0.0,
            started_ms: None,
            finished_ms: None,
            output: None,
            value: None,
            approval: None,
            agent_loop: None,
            served_model: None,
            truncated: false,
            warnings: Vec::new(),
        }
    }

    /// The report of a step that did not run (skipped or cancelled): no model, no attempts.
    pub(super) fn not_run(node: &PlanNode, status: StepStatus, finished_ms: Option<u64>) -> Self {
        StepReport {
            finished_ms,
            ..StepReport::blank(node.name.clone(), node.agent.clone(), status)
        }
    }

    /// The report of a step starting at `started_ms`, before its first attempt: it succeeds
    /// unless an attempt says otherwise.
    pub(super) fn starting(node: &PlanNode, started_ms: u64) -> Self {
        StepReport {
            started_ms: Some(started_ms),
            ..StepReport::not_run(node, StepStatus::Succeeded, None)
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Workflow name.
    pub workflow: String,
    /// Every step, in source order.
    pub steps: Vec<StepReport>,
    /// The rendered `return` value (or, without `return`, the outputs of the final steps).
    pub output: Option<String>,
    /// Whether every step that had to run succeeded.
    pub succeeded: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Total tokens.
    pub usage: Usage,
    /// Total USD.
    pub cost_usd: f64,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
    /// The run's id, when it is journalled.
    pub run_id: Option<String>,
    /// Steps whose result was taken from the journal of an earlier attempt of this run
    /// (`--resume`), in source order. Their reports are those recorded when they ran.
    pub reused: Vec<String>,
    /// Whether the run was interrupted ([`super::RunOptions::cancel`], Ctrl-C).
    pub interrupted: bool,
}

impl RunReport {
    /// Its step executions and how many succeeded, counted as the summary and `orch runs`
    /// count them ([`journal::StepCounts`]).
    pub fn step_counts(&self) -> journal::StepCounts {
        journal::StepCounts {
            succeeded: self
                .steps
                .iter()
                .filter(|x| x.status == StepStatus::Succeeded)
                .count(),
            total: self.steps.len(),
        }
    }
}
