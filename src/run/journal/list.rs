//! Listing the runs of a state directory (`orch runs`).

use std::path::{Path, PathBuf};

use super::read::{History, LastSeen, read_header, read_journal, read_records};
use super::records::{EndStatus, Record, StepOutcome};
use super::{JOURNAL_FILE, JournalError, io_error};

/// One run in a state directory, for `orch runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The script, as recorded.
    pub script: String,
    /// The workflow.
    pub workflow: String,
    /// `succeeded`, `failed`, `interrupted`, `unfinished` (killed, or still running),
    /// `empty` (stopped before its first record), or `damaged: ...` when the journal cannot
    /// be read.
    pub status: String,
    /// Step executions ([`StepCounts`](super::StepCounts)) that succeeded: as the run's summary counts them
    /// when it ended; for a run without an `end` record, executions whose last record is a
    /// success.
    pub steps_done: usize,
    /// Step executions: those the run's summary reported when it ended; for a run without
    /// an `end` record, those recorded so far (started or ended).
    pub steps_total: usize,
    /// USD spent by every recorded step, re-runs included.
    pub cost_usd: f64,
}

fn status_word(h: &History) -> &'static str {
    match h.end.as_ref().map(|e| e.status) {
        Some(EndStatus::Succeeded) => "succeeded",
        Some(EndStatus::Failed) => "failed",
        Some(EndStatus::Interrupted) => "interrupted",
        None => "unfinished",
    }
}

/// Every run in `state_dir` (oldest first); with `script`, only that script's. A journal
/// that cannot be read is listed with its problem as its status rather than failing the list.
/// A run stopped before its first record ([`JournalError::NoRecords`]) is listed as `empty`,
/// with an empty script, also when only `script`'s runs are asked for: nothing says whose it
/// is.
///
/// # Errors
/// [`JournalError::Io`] when `STATE/runs` exists but cannot be listed.
pub fn list_runs(state_dir: &Path, script: Option<&str>) -> Result<Vec<RunSummary>, JournalError> {
    let mut out = Vec::new();
    for (id, path) in run_dirs(state_dir)? {
        let summary = match read_journal(&path) {
            Ok(l) => {
                let h = l.history;
                let (steps_done, steps_total) = step_counts(&h);
                RunSummary {
                    id,
                    status: status_word(&h).to_string(),
                    steps_done,
                    steps_total,
                    cost_usd: h.spent_usd,
                    script: h.header.script,
                    workflow: h.header.workflow,
                }
            }
            Err(e) => {
                let status = match e {
                    JournalError::NoRecords { .. } => "empty".to_string(),
                    e => format!("damaged: {}", e.to_string().lines().next().unwrap_or("")),
                };
                // A damaged journal whose first line is whole still says whose run it is.
                let header = read_header(&path);
                RunSummary {
                    id,
                    script: header
                        .as_ref()
                        .map(|h| h.script.clone())
                        .unwrap_or_default(),
                    workflow: header.map(|h| h.workflow).unwrap_or_default(),
                    status,
                    steps_done: 0,
                    steps_total: 0,
                    cost_usd: 0.0,
                }
            }
        };
        if script.is_none_or(|s| summary.script == s || summary.status == "empty") {
            out.push(summary);
        }
    }
    Ok(out)
}

/// `(succeeded, total)` step executions of a run ([`RunSummary::steps_done`]).
fn step_counts(h: &History) -> (usize, usize) {
    if let Some(c) = h.end.as_ref().and_then(|e| e.steps) {
        return (c.succeeded, c.total);
    }
    let done = h
        .last
        .values()
        .filter(|l| matches!(l, LastSeen::Ended(r) if r.status == StepOutcome::Succeeded))
        .count();
    (done, h.recorded.len())
}

/// Every record of run `id` in `state_dir`, in order (a last line cut short by a crash left
/// out), for `orch runs show` and reports.
///
/// # Errors
/// [`JournalError::NoRecords`] when the run has no journal (an unknown id: the message names
/// the file looked for) or no complete record; [`JournalError::Corrupt`] for a line that is
/// not a record; [`JournalError::Io`].
pub fn run_records(state_dir: &Path, id: &str) -> Result<Vec<Record>, JournalError> {
    let path = state_dir.join("runs").join(id).join(JOURNAL_FILE);
    let (records, _, _) = read_records(&path)?;
    Ok(records.into_iter().map(|(_, r)| r).collect())
}

/// `(id, journal path)` of every run directory in `STATE/runs`, sorted by id (oldest first).
/// The journal may be missing: a run stopped before its first record has none.
pub(super) fn run_dirs(state_dir: &Path) -> Result<Vec<(String, PathBuf)>, JournalError> {
    let runs = state_dir.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", &runs)(e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join(JOURNAL_FILE),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}
