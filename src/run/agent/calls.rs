//! Running the tool calls of one model turn: concurrently, each bounded, each journalled before
//! its result is used.

use std::time::Instant;

use futures_util::future::join_all;

use super::toolbox::Entry;
use super::{LoopCx, Toolbox, delegate};
use crate::common::format_duration;
use crate::run::journal::{ToolRecord, ToolStartRecord, Transcript};
use crate::run::provider::{ToolCall, ToolResult};
use crate::run::tools::{ToolContext, ToolOutput};
use crate::run::{Event, LoopReport, StepReport, ToolCallReport};

/// What an earlier attempt of the run left of a call that started and may have had its effect.
const INTERRUPTED: &str = "this call was started by an earlier attempt of this run, which stopped before the call ended: it may or may not have taken effect, so it was not run again. Check its effect before calling it again.";

/// Runs the calls of turn `turn` concurrently and returns their results in call order; adds
/// their reports to `out`. With `transcript` (a resumed loop), a call recorded there is not
/// run again: its recorded result is used.
///
/// # Errors
/// Only a journal that cannot be written: the loop must not go on with results it could not
/// record (a resumed run would run those calls again).
pub(super) async fn run_calls(
    cx: &LoopCx<'_>,
    toolbox: &Toolbox,
    tcx: &ToolContext,
    turn: u32,
    calls: &[ToolCall],
    transcript: Option<&Transcript>,
    out: &mut LoopReport,
) -> Result<Vec<ToolResult>, String> {
    let ended = join_all(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| one_call(cx, toolbox, tcx, (turn, i), c, transcript)),
    )
    .await;
    let mut results = Vec::with_capacity(calls.len());
    let mut failure = None;
    for e in ended {
        match e {
            Ok((report, content)) => {
                results.push(ToolResult {
                    call_id: report.id.clone(),
                    content,
                    is_error: report.is_error,
                });
                out.tool_calls.push(report);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// One call: its recorded result, or run (refused when malformed or not granted), journalled,
/// and shown.
async fn one_call(
    cx: &LoopCx<'_>,
    toolbox: &Toolbox,
    tcx: &ToolContext,
    (turn, index): (u32, usize),
    call: &ToolCall,
    transcript: Option<&Transcript>,
) -> Result<(ToolCallReport, String), String> {
    let id = (turn, call.id.clone());
    if let Some(rec) = transcript.and_then(|t| t.results.get(&id)) {
        let mut report = rec.call.clone();
        report.reused = true;
        show(cx, &report);
        return Ok((report, rec.content.clone()));
    }
    let start = Instant::now();
    let (output, delegated) = if transcript.is_some_and(|t| t.started.contains(&id)) {
        (interrupted(), None)
    } else {
        run_one(cx, toolbox, tcx, (turn, index), call).await?
    };
    let report = ToolCallReport {
        turn,
        id: call.id.clone(),
        tool: call.name.clone(),
        arguments: match &call.malformed {
            Some(why) => serde_json::Value::String(why.clone()),
            None => call.input.clone(),
        },
        result_bytes: output.content.len(),
        summary: output.summary.clone(),
        time_ms: start.elapsed().as_millis() as u64,
        is_error: output.is_error,
        refused: output.refused,
        reused: false,
        delegated: delegated.map(Box::new),
    };
    record_end(cx, &report, &output.content)?;
    show(cx, &report);
    Ok((report, output.content))
}

/// Runs a call that has no recorded result.
async fn run_one(
    cx: &LoopCx<'_>,
    toolbox: &Toolbox,
    tcx: &ToolContext,
    (turn, index): (u32, usize),
    call: &ToolCall,
) -> Result<(ToolOutput, Option<StepReport>), String> {
    if let Some(why) = &call.malformed {
        let out = ToolOutput::refused(format!(
            "the arguments of this call could not be read ({why}); call `{}` again with a JSON object that fits its input schema",
            call.name
        ));
        return Ok((out, None));
    }
    let Some(entry) = toolbox.get(&call.name) else {
        let out = ToolOutput::refused(format!(
            "`{}` is not one of your tools; you may call: {}",
            call.name,
            toolbox.names().join(", ")
        ));
        return Ok((out, None));
    };
    match entry {
        Entry::Tool(tool) => {
            if !tool.read_only() {
                record_start(cx, turn, call)?;
            }
            let run = tool.call(call.input.clone(), tcx);
            let out = match tokio::time::timeout(tcx.timeout, run).await {
                Ok(out) => out,
                Err(_) => ToolOutput::new(
                    &format!(
                        "the call did not end within {} (the agent's tool_timeout) and was stopped",
                        format_duration(tcx.timeout.as_millis() as u64)
                    ),
                    true,
                    "timed out",
                    tcx.max_result_bytes,
                ),
            };
            Ok((out, None))
        }
        Entry::Delegate(agent) => {
            let (out, report) = delegate::run(cx, agent, (turn, index), call, tcx).await;
            Ok((out, report))
        }
    }
}

/// The result of a call an earlier attempt started and did not finish.
fn interrupted() -> ToolOutput {
    ToolOutput {
        content: INTERRUPTED.to_string(),
        is_error: true,
        refused: false,
        summary: "interrupted earlier, not run again".to_string(),
    }
}

/// Journals that a call which may change something is about to run (synced).
fn record_start(cx: &LoopCx<'_>, turn: u32, call: &ToolCall) -> Result<(), String> {
    let Some((j, key)) = cx.journal() else {
        return Ok(());
    };
    j.tool_started(ToolStartRecord {
        step: cx.step.clone(),
        key: key.to_string(),
        turn,
        call_id: call.id.clone(),
        tool: call.name.clone(),
        at_ms: crate::run::journal::now_ms(),
    })
    .map_err(journal_failed)
}

/// Journals a call's end with the result the model gets (synced), before it is used.
fn record_end(cx: &LoopCx<'_>, report: &ToolCallReport, content: &str) -> Result<(), String> {
    let Some((j, key)) = cx.journal() else {
        return Ok(());
    };
    j.tool(ToolRecord {
        step: cx.step.clone(),
        key: key.to_string(),
        call: report.clone(),
        content: content.to_string(),
    })
    .map_err(journal_failed)
}

fn journal_failed(e: crate::run::journal::JournalError) -> String {
    format!("the journal could not be written, so the agent loop stopped: {e}")
}

/// Progress: the call ended.
fn show(cx: &LoopCx<'_>, report: &ToolCallReport) {
    let _ = cx.tx.send(Event::ToolCalled {
        step: cx.step.clone(),
        call: Box::new(report.clone()),
    });
}
