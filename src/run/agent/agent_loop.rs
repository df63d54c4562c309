//! The loop itself: model turn, tool calls, results back, until an answer without calls.

use std::time::Duration;

use super::calls::run_calls;
use super::{LoopCx, Toolbox};
use crate::run::LoopReport;
use crate::run::journal::{Transcript, TurnRecord};
use crate::run::provider::{Completion, CompletionRequest, ToolChoice, Turn};
use crate::run::tools::{BoxFuture, ToolContext};

/// One model call of a loop, with the step's retries and fallback: how the loop reaches the
/// model (the step's clients in a run, a script in tests).
pub(in crate::run) trait TurnModel: Send {
    /// Answers `req` (whose `model` the implementation sets), or says why it could not.
    fn complete<'a>(
        &'a mut self,
        req: &'a CompletionRequest,
    ) -> BoxFuture<'a, Result<Answer, String>>;

    /// The most `req` can cost, in USD: its input (estimated at 4 characters a token) and its
    /// `max_tokens` out, at the model's price.
    fn worst_usd(&self, req: &CompletionRequest) -> f64;
}

/// A model turn's answer.
#[derive(Debug, Clone)]
pub(in crate::run) struct Answer {
    /// What the model said and the calls it made.
    pub(in crate::run) completion: Completion,
    /// What the call cost, every attempt of it, in USD.
    pub(in crate::run) cost_usd: f64,
    /// The script's name of the model that answered.
    pub(in crate::run) model: String,
}

/// What a loop is asked to do.
pub(in crate::run) struct LoopSpec {
    /// The first request: system text, prompt, `max_tokens`, temperature, output bound (no
    /// turns; tools and tool choice are the loop's).
    pub(in crate::run) first: CompletionRequest,
    /// The most model turns.
    pub(in crate::run) max_turns: u32,
    /// Bound on one tool call.
    pub(in crate::run) tool_timeout: Duration,
    /// The agent, for messages.
    pub(in crate::run) agent: String,
}

/// Runs an agent loop to its answer: the text of the first answer without tool calls.
///
/// The last turn `max_turns` allows is asked with [`ToolChoice::None`]. With a journal, a loop
/// recorded by an earlier attempt of the run (same step, same cache key) continues from its
/// transcript: its turns are not asked again and its recorded calls are not run again.
/// `out` is kept up to date as the loop goes (a deadline may drop the loop at any point).
///
/// # Errors
/// A model call that failed (after its retries and fallback), a turn the budget refuses,
/// `max_turns` reached by a model that still calls tools, a journal that cannot be written.
pub(in crate::run) async fn run_loop(
    cx: &LoopCx<'_>,
    model: &mut dyn TurnModel,
    spec: &LoopSpec,
    toolbox: &Toolbox,
    out: &mut LoopReport,
) -> Result<String, String> {
    let result = turns(cx, model, spec, toolbox, out).await;
    cx.release();
    result
}

async fn turns(
    cx: &LoopCx<'_>,
    model: &mut dyn TurnModel,
    spec: &LoopSpec,
    toolbox: &Toolbox,
    out: &mut LoopReport,
) -> Result<String, String> {
    let tcx = ToolContext {
        workspace: cx.env().workspace.clone(),
        timeout: spec.tool_timeout,
        max_result_bytes: crate::run::tools::DEFAULT_MAX_RESULT_BYTES,
    };
    let transcript = cx
        .journal()
        .and_then(|(j, key)| j.transcript(&cx.step, key));
    let mut turns = Vec::new();
    if let Some(t) = &transcript
        && let Some(answer) = replay(cx, t, toolbox, &tcx, &mut turns, out).await?
    {
        return Ok(answer);
    }
    let mut req = spec.first.clone();
    req.tools = toolbox.offered();
    loop {
        let turn = out.turns + 1;
        let last = turn >= spec.max_turns;
        req.turns = std::mem::take(&mut turns);
        req.tool_choice = if last {
            ToolChoice::None
        } else {
            ToolChoice::Auto
        };
        cx.before_turn(turn, model.worst_usd(&req))?;
        let answer = model.complete(&req).await?;
        out.turns = turn;
        cx.after_turn(answer.cost_usd);
        record_turn(cx, turn, &answer)?;
        let c = answer.completion;
        turns = std::mem::take(&mut req.turns);
        if c.calls.is_empty() {
            return Ok(c.text);
        }
        if last {
            return Err(max_turns_reached(&cx.step, spec));
        }
        let results = run_calls(cx, toolbox, &tcx, turn, &c.calls, None, out).await?;
        turns.push(Turn::Assistant {
            text: c.text,
            calls: c.calls,
        });
        turns.push(Turn::Tools { results });
    }
}

/// Rebuilds the conversation of a recorded loop into `turns`, running the calls of its last
/// turn that have no record (a call with a `tool_start` record is answered with an error
/// instead, see [`super::calls`]). Returns the answer when the transcript ends with one (the
/// run stopped between the answer and the step's record).
async fn replay(
    cx: &LoopCx<'_>,
    t: &Transcript,
    toolbox: &Toolbox,
    tcx: &ToolContext,
    turns: &mut Vec<Turn>,
    out: &mut LoopReport,
) -> Result<Option<String>, String> {
    for rec in &t.turns {
        out.turns = rec.turn;
        if rec.calls.is_empty() {
            return Ok(Some(rec.text.clone()));
        }
        let results = run_calls(cx, toolbox, tcx, rec.turn, &rec.calls, Some(t), out).await?;
        turns.push(Turn::Assistant {
            text: rec.text.clone(),
            calls: rec.calls.clone(),
        });
        turns.push(Turn::Tools { results });
    }
    Ok(None)
}

/// Journals a model turn (written, synced promptly), before any of its calls runs.
fn record_turn(cx: &LoopCx<'_>, turn: u32, a: &Answer) -> Result<(), String> {
    let Some((j, key)) = cx.journal() else {
        return Ok(());
    };
    j.turn(TurnRecord {
        step: cx.step.clone(),
        key: key.to_string(),
        turn,
        model: a.model.clone(),
        text: a.completion.text.clone(),
        calls: a.completion.calls.clone(),
        usage: a.completion.usage,
        cost_usd: a.cost_usd,
        at_ms: crate::run::journal::now_ms(),
    })
    .map_err(|e| format!("the journal could not be written, so the agent loop stopped: {e}"))
}

/// The failure of a loop whose last turn still asked for tools.
fn max_turns_reached(step: &str, spec: &LoopSpec) -> String {
    format!(
        "step `{step}`: the agent loop reached max_turns ({}) and the model still called tools on its last turn (asked to answer without them); raise `max_turns` on agent `{}` (or `<max_turns N>` on the call) if the task needs more turns",
        spec.max_turns, spec.agent
    )
}
