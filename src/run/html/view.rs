//! What a report page shows of a run, gathered from a journal ([`RunView::from_log`]) or from
//! a run that just ended without one ([`RunView::from_report`]).

use std::collections::HashMap;

use indexmap::IndexMap;

use super::super::journal::{
    AttemptRecord, LogEntry, Record, RunLog, StepOutcome, StepRecord, TurnRecord,
};
use super::super::provider::Usage;
use super::super::{RunReport, StepReport, StepStatus};

/// A run as the report page shows it. Every time is in milliseconds since the run began (a
/// resumed run: since its first segment began), so one timeline holds every segment.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    /// The run's id, when it is journalled.
    pub run_id: Option<String>,
    /// The workflow.
    pub workflow: String,
    /// The script, as recorded (an absolute path for runs of the CLI).
    pub script: Option<String>,
    /// Where models ran (`simulator`, `script providers`, `endpoint URL`).
    pub target: Option<String>,
    /// `succeeded`, `failed`, `interrupted` or `unfinished`.
    pub status: String,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// When the run began, in milliseconds since the Unix epoch, when known.
    pub started_at_ms: Option<u64>,
    /// Wall time in milliseconds (for an unfinished run, to its last record).
    pub wall_ms: u64,
    /// Every step execution, in the order it was first recorded (a run's report: source
    /// order).
    pub steps: Vec<StepView>,
    /// The plan's step names of the latest segment (to show the steps that never ran).
    pub planned: Vec<String>,
    /// Every model call ([`AttemptRecord`]), with its times moved to the run's start.
    pub attempts: Vec<AttemptRecord>,
    /// Agent loops' turns by step name, in order.
    pub turns: HashMap<String, Vec<TurnRecord>>,
    /// Tool results sent back to the model, by (step, turn, call id).
    pub tool_results: HashMap<(String, u32, String), String>,
    /// Total tokens of the steps shown.
    pub usage: Usage,
    /// Total USD (from a journal: every recorded step, re-runs included).
    pub cost_usd: f64,
    /// Step executions that succeeded, of all, as the run's summary counted them (a
    /// region's own step included), when known.
    pub counts: Option<(usize, usize)>,
    /// What a user should know of how regions ended though they did not fail (a `repeat`
    /// that stopped at `max`, an empty `parallel for`), as (region step, message); steps'
    /// own warnings are in their reports.
    pub warnings: Vec<(String, String)>,
    /// Things a reader should know about the page (a script changed since the run, ...).
    pub notes: Vec<String>,
}

/// One step execution on the page.
#[derive(Debug, Clone)]
pub struct StepView {
    /// What it did, with its times moved to the run's start.
    pub report: StepReport,
    /// Its result was taken from an earlier segment of a resumed run.
    pub reused: bool,
}

impl RunView {
    /// The view of a run that just ended without a journal (`--no-journal`): its report and
    /// the attempts its events reported ([`super::super::Event::Attempt`]). Tool results are
    /// not in a report, so the page says they were not recorded.
    pub fn from_report(
        report: &RunReport,
        attempts: Vec<AttemptRecord>,
        script: Option<String>,
        target: Option<String>,
    ) -> RunView {
        let status = if report.interrupted {
            "interrupted"
        } else if report.succeeded {
            "succeeded"
        } else {
            "failed"
        };
        RunView {
            run_id: report.run_id.clone(),
            workflow: report.workflow.clone(),
            script,
            target,
            status: status.to_string(),
            stopped: report.stopped.clone(),
            started_at_ms: None,
            wall_ms: report.wall_ms,
            steps: report
                .steps
                .iter()
                .map(|s| StepView {
                    reused: report.reused.contains(&s.name),
                    report: s.clone(),
                })
                .collect(),
            planned: report.steps.iter().map(|s| s.name.clone()).collect(),
            attempts,
            turns: HashMap::new(),
            tool_results: HashMap::new(),
            usage: report.usage,
            cost_usd: report.cost_usd,
            counts: Some({
                let c = report.step_counts();
                (c.succeeded, c.total)
            }),
            warnings: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The view of a journalled run, from its records: the last record of each step
    /// execution, every attempt, turn and tool result.
    pub fn from_log(log: &RunLog) -> RunView {
        let t0 = log.header.at_ms;
        let latest = log.entries.last().map_or(0, |e| e.segment);
        let mut planned = log.header.steps.clone();
        // The last record of each step execution, in the order of first appearance.
        let mut last: IndexMap<String, (usize, u64, Option<StepRecord>)> = IndexMap::new();
        let mut attempts = Vec::new();
        let mut turns: HashMap<String, Vec<TurnRecord>> = HashMap::new();
        let mut tool_results = HashMap::new();
        let mut end_ms = 0u64;
        let mut warnings: Vec<(String, String)> = Vec::new();
        for LogEntry {
            segment,
            segment_at_ms,
            record,
        } in &log.entries
        {
            let offset = segment_at_ms.saturating_sub(t0);
            match record {
                Record::Resume(r) => planned.clone_from(&r.steps),
                Record::Start(s) => {
                    last.insert(s.name.clone(), (*segment, offset, None));
                    end_ms = end_ms.max(s.at_ms.saturating_sub(t0));
                }
                Record::Step(s) => {
                    last.insert(s.name.clone(), (*segment, offset, Some((**s).clone())));
                    end_ms = end_ms.max(offset + s.finished_ms.unwrap_or(0));
                }
                Record::Attempt(a) => {
                    let mut a = (**a).clone();
                    a.started_ms += offset;
                    a.finished_ms += offset;
                    end_ms = end_ms.max(a.finished_ms);
                    attempts.push(a);
                }
                Record::Turn(t) => {
                    let list = turns.entry(t.step.clone()).or_default();
                    // A loop that ran again (a resume, a retry of its step) starts over.
                    if list.last().is_some_and(|p| p.turn >= t.turn) {
                        list.clear();
                    }
                    list.push((**t).clone());
                }
                Record::Tool(t) => {
                    tool_results.insert(
                        (t.step.clone(), t.call.turn, t.call.id.clone()),
                        t.content.clone(),
                    );
                }
                Record::Warning(w) => {
                    let seen = (w.step.clone(), w.message.clone());
                    if !warnings.contains(&seen) {
                        warnings.push(seen);
                    }
                }
                Record::Run(_) | Record::ToolStart(_) | Record::Batch(_) | Record::End(_) => {}
            }
        }
        let mut usage = Usage::default();
        let steps: Vec<StepView> = last
            .into_iter()
            .map(|(name, (segment, offset, record))| {
                let report = match record {
                    Some(r) => step_report(r, offset),
                    None => StepReport::blank(name, "", StepStatus::Interrupted),
                };
                usage.add(report.usage);
                StepView {
                    reused: segment < latest && report.status == StepStatus::Succeeded,
                    report,
                }
            })
            .collect();
        let wall_ms = match &log.end {
            Some(e) => e.at_ms.saturating_sub(t0),
            None => end_ms,
        };
        let mut notes = Vec::new();
        if latest > 0 {
            notes.push(format!(
                "resumed {latest} time{}: steps marked `reused` were taken from an earlier segment",
                if latest == 1 { "" } else { "s" }
            ));
        }
        if log.end.is_none() {
            notes.push(
                "the journal has no `end` record: the run was killed, or is still running"
                    .to_string(),
            );
        }
        RunView {
            run_id: Some(log.header.run_id.clone()),
            workflow: log.header.workflow.clone(),
            script: Some(log.header.script.clone()),
            target: Some(log.target.clone()),
            status: log.status().to_string(),
            stopped: log.end.as_ref().and_then(|e| e.reason.clone()),
            started_at_ms: Some(t0),
            wall_ms,
            steps,
            planned,
            attempts,
            turns,
            tool_results,
            usage,
            cost_usd: log.spent_usd,
            counts: log
                .end
                .as_ref()
                .and_then(|e| e.steps)
                .map(|c| (c.succeeded, c.total)),
            warnings,
            notes,
        }
    }
}

/// A step record as a report, its times moved by `offset` ms.
fn step_report(r: StepRecord, offset: u64) -> StepReport {
    StepReport {
        status: match r.status {
            StepOutcome::Succeeded => StepStatus::Succeeded,
            StepOutcome::Failed => StepStatus::Failed(r.error.unwrap_or_default()),
            StepOutcome::Interrupted => StepStatus::Interrupted,
        },
        name: r.name,
        agent: r.agent,
        model: r.model,
        attempts: r.attempts,
        usage: r.usage,
        cost_usd: r.cost_usd,
        started_ms: r.started_ms.map(|t| t + offset),
        finished_ms: r.finished_ms.map(|t| t + offset),
        output: r.output,
        value: r.value,
        approval: r.approval,
        agent_loop: r.agent_loop,
        served_model: r.served_model,
        truncated: r.truncated,
        warnings: r.warnings,
    }
}
