//! Approval steps (`ok = approve("Deploy {version}?")`): a person answers yes or no.
//!
//! Who answers is the run's [`Approver`]: a function that asks (the CLI asks on the terminal),
//! `--yes` (every approval is approved), or nobody (the run is refused before its first step,
//! saying how to give an answer). The answer is the step's output: the JSON bool `true` or `false`, with the text
//! `"true"` or `"false"`. A declined approval is a step that *succeeded* with `false`: the
//! workflow decides what follows. The step's own `timeout` or `deadline` bounds the wait; when
//! it passes the step fails. An approval takes no permit of `--max-concurrency` or of a
//! `parallel <max N>` block: waiting for a person is not work in flight.
//!
//! Like any step, the answer is journalled with a cache key over the rendered question
//! ([`super::cache_key`]), so a resumed run reuses it instead of asking again.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::prepare::Shared;
use super::{Event, RunError, StepReport, StepStatus};
use crate::common::format_duration;
use crate::plan::{Plan, PlanExec, PlanNode};

/// What an approval asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The step's name.
    pub step: String,
    /// The rendered question.
    pub question: String,
}

/// A function that asks a person and returns the answer (`true`: approved), or why no answer
/// could be had. It may block (reading a terminal): the run calls it on a blocking thread.
pub type AskFn = dyn Fn(&ApprovalRequest) -> Result<bool, String> + Send + Sync;

/// Who answers the run's approval steps.
#[derive(Clone, Default)]
pub enum Approver {
    /// Nobody (what the CLI uses without a terminal and without `--yes`): a run with approval
    /// steps is refused before it starts, and an approval step that still comes up (a resumed
    /// run whose recorded answer no longer matches) fails, saying there is no terminal.
    #[default]
    NoTerminal,
    /// Approve every approval step (`--yes`), recorded as approved `by --yes`.
    Yes,
    /// Ask with `ask`; `via` says how, for the report (`on the terminal`).
    Ask {
        /// How the answer is given, completing "approved ..." / "declined ...".
        via: String,
        /// The function that asks.
        ask: Arc<AskFn>,
    },
}

impl Approver {
    /// An approver that asks with `ask`; `via` completes "approved ..." in reports (`on the
    /// terminal`).
    pub fn ask(
        via: impl Into<String>,
        ask: impl Fn(&ApprovalRequest) -> Result<bool, String> + Send + Sync + 'static,
    ) -> Self {
        Approver::Ask {
            via: via.into(),
            ask: Arc::new(ask),
        }
    }
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Approver::NoTerminal => f.write_str("NoTerminal"),
            Approver::Yes => f.write_str("Yes"),
            Approver::Ask { via, .. } => write!(f, "Ask({via})"),
        }
    }
}

/// How an approval step was answered: in its report and its journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The answer.
    pub approved: bool,
    /// How it was given: `on the terminal`, `by --yes`.
    pub via: String,
}

impl Approval {
    /// `approved on the terminal`, `declined on the terminal`, `approved by --yes`.
    pub fn describe(&self) -> String {
        let verb = if self.approved {
            "approved"
        } else {
            "declined"
        };
        format!("{verb} {}", self.via)
    }
}

/// What the `model` of an approval step's report says: who answered.
pub const ANSWERED_BY_PERSON: &str = "person";
/// The `model` of an approval step approved by `--yes`.
pub const ANSWERED_BY_YES: &str = "--yes";

/// The question as quoted in a message: on one line, redacted, at most 120 characters.
fn quoted(question: &str) -> String {
    const MAX: usize = 120;
    let short = crate::redact::redact(question.trim()).shorten(MAX);
    format!("{:?}", short.as_str())
}

/// The failure of an approval step when nobody can be asked.
pub fn no_terminal_message(step: &str, question: &str) -> String {
    format!(
        "step `{step}` needs a person's approval ({}), but there is no terminal to ask on; run on a terminal, or pass --yes to approve every approval step",
        quoted(question)
    )
}

/// Refuses a run whose approval steps nobody could answer, before anything runs: when the
/// approver is [`Approver::NoTerminal`], every approval step of `plan` except those the
/// resumed run of `journal` recorded as answered (a matching record is reused without
/// asking). A step in a branch that may not be taken counts too: a run that could stop
/// half-way for want of a person is refused before its first step.
///
/// # Errors
/// [`RunError::NoApprover`] with each such step and its question as written in the script.
pub(super) fn check_answerable(
    plan: &Plan,
    approver: &Approver,
    journal: Option<&Journal>,
) -> Result<(), RunError> {
    if !matches!(approver, Approver::NoTerminal) {
        return Ok(());
    }
    let steps: Vec<(String, String)> = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.exec, PlanExec::Approval))
        .filter(|n| !journal.is_some_and(|j| j.has_succeeded(&n.name)))
        .map(|n| {
            let question = n.prompt.as_ref().map(|t| t.source().to_string());
            (n.name.clone(), question.unwrap_or_default())
        })
        .collect();
    if steps.is_empty() {
        Ok(())
    } else {
        Err(RunError::NoApprover(steps))
    }
}

/// Why a run whose approval steps `steps` nobody can answer is refused: each step with its
/// question as written, and the fixes.
pub fn refused_message(steps: &[(String, String)]) -> String {
    let listed: Vec<String> = steps
        .iter()
        .map(|(name, question)| format!("`{name}` ({})", quoted(question)))
        .collect();
    let (noun, verb) = if steps.len() == 1 {
        ("step", "needs")
    } else {
        ("steps", "need")
    };
    format!(
        "{noun} {} {verb} a person's approval, but there is no terminal to ask on and --yes was not given; nothing was run.\n  Run on a terminal to answer, or pass --yes to approve every approval step",
        listed.join(", ")
    )
}

/// Runs approval step `node` with its rendered question.
pub(super) async fn execute(
    node: &PlanNode,
    question: String,
    shared: &Shared,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> StepReport {
    let now = || shared.start.elapsed().as_millis() as u64;
    let mut report = StepReport::starting(node, now());
    let answer = match &shared.approver {
        Approver::NoTerminal => Err(no_terminal_message(&node.name, &question)),
        Approver::Yes => {
            report.attempts = 1;
            report.model = Some(ANSWERED_BY_YES.into());
            let _ = tx.send(Event::Started {
                step: node.name.clone(),
                runs_on: ANSWERED_BY_YES.into(),
                attempt: 1,
                turn: None,
            });
            Ok(Approval {
                approved: true,
                via: "by --yes".into(),
            })
        }
        Approver::Ask { via, ask } => {
            report.attempts = 1;
            report.model = Some(ANSWERED_BY_PERSON.into());
            let _ = tx.send(Event::Started {
                step: node.name.clone(),
                runs_on: ANSWERED_BY_PERSON.into(),
                attempt: 1,
                turn: None,
            });
            let ask = ask.clone();
            let request = ApprovalRequest {
                step: node.name.clone(),
                question: question.clone(),
            };
            // The question may wait for a person for long: on a blocking thread, so it holds
            // no worker of the runtime. A run that stops meanwhile (Ctrl-C, a timeout) drops
            // the wait; the thread ends when the person answers or the process exits.
            let asking = tokio::task::spawn_blocking(move || ask(&request));
            let bound = match (node.timeout_ms, node.deadline_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let joined = match bound {
                None => Ok(asking.await),
                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), asking)
                    .await
                    .map_err(|_| format!("no answer within {}", format_duration(ms))),
            };
            match joined {
                Ok(Ok(Ok(approved))) => Ok(Approval {
                    approved,
                    via: via.clone(),
                }),
                Ok(Ok(Err(e))) => Err(format!("could not ask for approval: {e}")),
                Ok(Err(e)) => Err(format!("asking for approval failed: {e}")),
                Err(e) => Err(e),
            }
        }
    };
    report.finished_ms = Some(now());
    record(&mut report, answer);
    report
}

/// Records `answer` in an approval step's report: the answer as its output (`true` or
/// `false`, and as a JSON bool) with how it was given, or the step failed with why there is
/// no answer.
fn record(report: &mut StepReport, answer: Result<Approval, String>) {
    match answer {
        Ok(a) => {
            report.output = Some(a.approved.to_string());
            report.value = Some(serde_json::Value::Bool(a.approved));
            report.approval = Some(a);
        }
        Err(e) => report.status = StepStatus::Failed(e),
    }
}

/// The report of approval step `node` answered elsewhere than in this process (a durable
/// engine's signal, or `--yes` there): asked at `asked_ms`, settled at `settled_ms` (both
/// milliseconds since the run began); `by` is who answered ([`ANSWERED_BY_PERSON`] or
/// [`ANSWERED_BY_YES`]); `answer` as in [`execute`] (an `Err`: no answer, the step failed).
pub fn answered_report(
    node: &PlanNode,
    asked_ms: u64,
    settled_ms: u64,
    by: &str,
    answer: Result<Approval, String>,
) -> StepReport {
    let mut report = StepReport::starting(node, asked_ms);
    report.attempts = 1;
    report.model = Some(by.to_string());
    report.finished_ms = Some(settled_ms);
    record(&mut report, answer);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_terminal_message_quotes_the_question_on_one_line() {
        assert_eq!(
            no_terminal_message("ok", "Deploy 1.2 to production?"),
            "step `ok` needs a person's approval (\"Deploy 1.2 to production?\"), but there is no terminal to ask on; run on a terminal, or pass --yes to approve every approval step"
        );
        let long = format!("Ship it?\n{}", "x".repeat(300));
        let m = no_terminal_message("ok", &long);
        assert!(m.contains("(\"Ship it?\\nxxx"), "{m}");
        assert!(m.contains("x…\")"), "{m}");
    }

    #[test]
    fn approvals_describe_who_answered() {
        let a = Approval {
            approved: true,
            via: "on the terminal".into(),
        };
        assert_eq!(a.describe(), "approved on the terminal");
        let d = Approval {
            approved: false,
            ..a
        };
        assert_eq!(d.describe(), "declined on the terminal");
    }
}
