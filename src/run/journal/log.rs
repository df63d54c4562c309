//! Reading a whole run back, record by record, for people: the HTML report (`orch report`,
//! `orch run --report run.html`) shows every attempt, turn and tool call, which a resume
//! (that needs only the outcomes) folds away.

use std::path::{Path, PathBuf};

use super::read::{History, read_records};
use super::records::{EndRecord, EndStatus, Record, RunHeader};
use super::{JOURNAL_FILE, JournalError};

/// A journal read whole: its header, what its latest segment ran, how it ended, and every
/// record in order with the start of the segment (the first run or a resume) it belongs to.
#[derive(Debug, Clone)]
pub struct RunLog {
    /// The journal file.
    pub path: PathBuf,
    /// The `run` record.
    pub header: RunHeader,
    /// SHA-256 (hex) of the plan's JSON form when the latest segment ran ([`plan_hash`]).
    ///
    /// [`plan_hash`]: super::plan_hash
    pub plan_hash: String,
    /// Where models ran in the latest segment (`simulator`, `script providers`,
    /// `endpoint URL`).
    pub target: String,
    /// The latest segment's `end` record; absent while it runs, or when it was killed.
    pub end: Option<EndRecord>,
    /// USD spent by every recorded step, re-runs included, and by the turns of agent loops
    /// that never ended.
    pub spent_usd: f64,
    /// Every record after the `run` record, in order.
    pub entries: Vec<LogEntry>,
}

/// One record of a [`RunLog`].
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// 0 for the first run, then 1 for each `resume` in turn (the `resume` record itself is
    /// in the segment it starts).
    pub segment: usize,
    /// When the segment started, in milliseconds since the Unix epoch: times recorded as
    /// milliseconds since the run (segment) began are relative to it.
    pub segment_at_ms: u64,
    /// The record.
    pub record: Record,
}

impl RunLog {
    /// `succeeded`, `failed`, `interrupted`, or `unfinished` (no `end` record: killed, or
    /// still running), as `orch runs` says it.
    pub fn status(&self) -> &'static str {
        match self.end.as_ref().map(|e| e.status) {
            Some(EndStatus::Succeeded) => "succeeded",
            Some(EndStatus::Failed) => "failed",
            Some(EndStatus::Interrupted) => "interrupted",
            None => "unfinished",
        }
    }
}

/// Whether `id` can name a run directory: letters, digits, `-`, `_` and `.` (not only dots),
/// so that it never reaches outside `STATE/runs`.
fn is_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().any(|c| c != '.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reads the journal of run `id` in `state_dir` (`STATE/runs/ID/journal.jsonl`).
///
/// # Errors
/// [`JournalError::UnknownRun`] when `id` is not a run id or names no run there;
/// otherwise as [`read_run_file`].
pub fn read_run(state_dir: &Path, id: &str) -> Result<RunLog, JournalError> {
    let dir = state_dir.join("runs").join(id);
    if !is_run_id(id) || !dir.is_dir() {
        return Err(JournalError::UnknownRun {
            id: id.to_string(),
            runs: state_dir.join("runs"),
        });
    }
    read_run_file(&dir.join(JOURNAL_FILE))
}

/// Reads the journal at `path` whole.
///
/// # Errors
/// [`JournalError::NoRecords`] when it is missing or holds no complete record;
/// [`JournalError::Corrupt`] for a line that is not a record, or a journal that does not
/// start with a `run` record; [`JournalError::Resume`] for a journal of a newer format;
/// [`JournalError::Io`].
pub fn read_run_file(path: &Path) -> Result<RunLog, JournalError> {
    let records = read_records(path)?.records;
    let history: History = super::read::fold(path, records.clone())?;
    let mut plan_hash = history.header.plan_hash.clone();
    let mut target = history.header.target.clone();
    let mut segment = 0;
    let mut segment_at_ms = history.header.at_ms;
    let mut entries = Vec::with_capacity(records.len());
    // `fold` checked that the first record is the `run` record.
    for (_, record) in records.into_iter().skip(1) {
        if let Record::Resume(r) = &record {
            segment += 1;
            segment_at_ms = r.at_ms;
            plan_hash.clone_from(&r.plan_hash);
            target.clone_from(&r.target);
        }
        entries.push(LogEntry {
            segment,
            segment_at_ms,
            record,
        });
    }
    Ok(RunLog {
        path: path.to_path_buf(),
        header: history.header,
        plan_hash,
        target,
        end: history.end,
        spent_usd: history.spent_usd,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_never_leave_the_runs_directory() {
        assert!(is_run_id("20260521-101502-347-k3f9qa"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "x y"] {
            assert!(!is_run_id(bad), "{bad}");
        }
        let dir = std::env::temp_dir().join(format!("orch-log-unit-{}", std::process::id()));
        let e = read_run(&dir, "../etc").unwrap_err();
        assert!(matches!(e, JournalError::UnknownRun { .. }), "{e}");
        assert!(e.to_string().contains("orch runs"), "{e}");
    }
}
