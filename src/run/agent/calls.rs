//! Running the tool calls of one model turn: concurrently, each bounded, each journalled before
//! its result is used.

use std::time::Instant;

use futures_util::future::join_all;

use super::toolbox::Entry;
use super::{LoopCx, Toolbox, delegate};
use crate::common::format_duration;
use crate::grant::{MAX_CALLS_PER_TURN, MAX_TURN_RESULT_BYTES, REFUSAL_MAX_BYTES};
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
/// At most [`MAX_CALLS_PER_TURN`] calls of a turn run; each further call gets a short refusal.
/// The results of a turn together are cut to [`MAX_TURN_RESULT_BYTES`], in call order (the
/// bounds `orch plan`'s worst case relies on). Both are decided from the calls and their
/// recorded results alone, so a resumed loop sends the same conversation again.
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
    let (run, over) = calls.split_at(calls.len().min(MAX_CALLS_PER_TURN));
    let ended = join_all(
        run.iter()
            .enumerate()
            .map(|(i, c)| one_call(cx, toolbox, tcx, (turn, i), c, transcript)),
    )
    .await;
    let mut results = Vec::with_capacity(calls.len());
    let mut reports = Vec::with_capacity(calls.len());
    for e in ended {
        let (report, content) = e?;
        results.push(ToolResult {
            call_id: report.id.clone(),
            content,
            is_error: report.is_error,
        });
        reports.push(report);
    }
    for call in over {
        let (report, result) = not_run(turn, call);
        show(cx, &report);
        reports.push(report);
        results.push(result);
    }
    cut_to_turn_bound(&mut results);
    for (report, result) in reports.iter_mut().zip(&results) {
        report.result_bytes = result.content.len();
    }
    out.tool_calls.extend(reports);
    Ok(results)
}

/// A call past [`MAX_CALLS_PER_TURN`]: not run, refused in a few words.
fn not_run(turn: u32, call: &ToolCall) -> (ToolCallReport, ToolResult) {
    let content = format!("not run: at most {MAX_CALLS_PER_TURN} calls a turn");
    debug_assert!(content.len() <= REFUSAL_MAX_BYTES);
    let report = ToolCallReport {
        turn,
        id: call.id.clone(),
        tool: call.name.clone(),
        arguments: call.input.clone(),
        result_bytes: content.len(),
        summary: "refused".into(),
        time_ms: 0,
        is_error: true,
        refused: true,
        reused: false,
        delegated: None,
    };
    let result = ToolResult {
        call_id: call.id.clone(),
        content,
        is_error: true,
    };
    (report, result)
}

/// Cuts a turn's results, in call order, to [`MAX_TURN_RESULT_BYTES`] together: a result past
/// the total keeps what fits, with a note; one left with no room is replaced by a note of at
/// most [`REFUSAL_MAX_BYTES`].
fn cut_to_turn_bound(results: &mut [ToolResult]) {
    const CUT: &str = "\n[cut: this turn's results passed 128 KiB]";
    const OMITTED: &str = "[omitted: this turn's results passed 128 KiB]";
    let mut left = MAX_TURN_RESULT_BYTES;
    for r in results {
        let len = r.content.len();
        if len <= left {
            left -= len;
            continue;
        }
        if left > CUT.len() {
            let mut end = left - CUT.len();
            while !r.content.is_char_boundary(end) {
                end -= 1;
            }
            r.content.truncate(end);
            r.content.push_str(CUT);
        } else {
            r.content = OMITTED.to_string();
        }
        left = 0;
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
                record_start(cx, turn, call).await?;
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

/// Journals that a call which may change something is about to run, and waits until the
/// record is synced (the call runs only then).
async fn record_start(cx: &LoopCx<'_>, turn: u32, call: &ToolCall) -> Result<(), String> {
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
    .await
    .map_err(journal_failed)
}

/// Journals a call's end with the result the model gets (written, synced promptly), before
/// it is used.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(n: usize) -> ToolResult {
        ToolResult {
            call_id: "c".into(),
            content: "é".repeat(n / 2),
            is_error: false,
        }
    }

    #[test]
    fn a_turns_results_are_cut_to_the_turn_bound_in_call_order() {
        let mut rs = vec![result(100 * 1024), result(60 * 1024), result(1024)];
        cut_to_turn_bound(&mut rs);
        assert_eq!(rs[0].content.len(), 100 * 1024);
        assert!(rs[1].content.ends_with("passed 128 KiB]"));
        assert!(rs[0].content.len() + rs[1].content.len() <= MAX_TURN_RESULT_BYTES);
        assert!(rs[2].content.starts_with("[omitted") && rs[2].content.len() <= REFUSAL_MAX_BYTES);
    }
}
