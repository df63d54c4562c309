//! Delegation: `agent(NAME)` granted to a step's agent lets its model hand a subtask (a prompt)
//! to agent NAME, which runs as a nested step with its own model, tools, retry and limits (its
//! own agent loop if it has tools). Its answer is the tool's result.
//!
//! A nested step is named after its parent, the agent, and the call's turn and place in it:
//! `lead/scout#2.1` is the first call of `lead`'s second turn, to `scout`. The name is stable
//! across a resumed run (the transcript gives the same turns), so a nested loop interrupted by
//! a crash continues from its own transcript. Its costs count against the budgets of the step
//! it runs for as they happen, and are added to that step's usage and cost; its report is the
//! call's [`crate::run::ToolCallReport::delegated`].

use super::{LoopCx, MAX_DELEGATION_DEPTH};
use crate::run::provider::ToolCall;
use crate::run::tools::{ToolContext, ToolOutput};
use crate::run::{StepReport, StepStatus};

/// Runs the delegation `call` to `agent`, made by turn `turn` of the loop `cx` (its `index`th
/// call): the tool's output, and the nested step's report when it ran.
pub(super) async fn run(
    cx: &LoopCx<'_>,
    agent: &str,
    (turn, index): (u32, usize),
    call: &ToolCall,
    tcx: &ToolContext,
) -> (ToolOutput, Option<StepReport>) {
    if cx.depth >= MAX_DELEGATION_DEPTH {
        let why = format!(
            "delegation refused: `{}` is already {} delegations deep, the most orch allows ({MAX_DELEGATION_DEPTH}); do the task yourself",
            cx.step, cx.depth
        );
        return (ToolOutput::refused(why), None);
    }
    let Some(prompt) = call.input.get("prompt").and_then(|p| p.as_str()) else {
        let why = format!(
            "`{}` takes {{\"prompt\": \"...\"}}: a text prompt for agent `{agent}`",
            call.name
        );
        return (ToolOutput::refused(why), None);
    };
    let Some(d) = cx.env().delegates.get(agent) else {
        let why = format!("agent `{agent}` cannot be delegated to in this run");
        return (ToolOutput::refused(why), None);
    };
    let mut node = cx.top.clone();
    node.name = format!("{}/{}#{}.{}", cx.step, agent, turn, index + 1);
    node.agent = d.agent.clone();
    node.exec = d.exec.clone();
    node.retry = d.retry;
    node.timeout_ms = d.timeout_ms;
    node.max_output_bytes = d.max_output_bytes;
    node.on_truncated = d.on_truncated;
    node.output_type = None;
    node.prompt = None;
    node.deadline_ms = None;
    // The agent's parameters take their defaults (a delegation passes a prompt only).
    let args = d.defaults.clone();
    let report = crate::run::step::run_nested(node, prompt.to_string(), args, cx).await;
    (output_of(&report, agent, tcx), Some(report))
}

/// The tool's output for a nested step's report: its answer, or why it failed.
fn output_of(report: &StepReport, agent: &str, tcx: &ToolContext) -> ToolOutput {
    let took = crate::common::format_duration(
        report
            .finished_ms
            .unwrap_or(0)
            .saturating_sub(report.started_ms.unwrap_or(0)),
    );
    match (&report.status, &report.output) {
        (StepStatus::Succeeded, Some(text)) => ToolOutput::new(
            text,
            false,
            format!("answered in {took}"),
            tcx.max_result_bytes,
        ),
        (status, _) => {
            let why = match status {
                StepStatus::Failed(e) => e.clone(),
                other => format!("{other:?}"),
            };
            ToolOutput::new(
                &format!("agent `{agent}` failed: {why}"),
                true,
                "failed",
                tcx.max_result_bytes,
            )
        }
    }
}
