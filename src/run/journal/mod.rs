//! The run journal: what a run did, written as it happens, so that a run that stopped — a
//! failure, a budget, Ctrl-C, a crash or `kill -9` — can be resumed without paying again for
//! what already completed.
//!
//! Each run has an id (`20260521-101502-347-k3f9qa`: UTC date and time to the millisecond,
//! then a random suffix, so ids sort by start time) and a directory
//! `STATE/runs/ID/` holding `journal.jsonl`, an append-only file of JSON records, one a line
//! (`STATE` is `.orch` next to the script unless `--state-dir`/`ORCH_STATE_DIR` says
//! otherwise). The records, each with a `type`:
//!
//! - `run`: the first line: format version, run id, script path, workflow, inputs (as given,
//!   never API keys), a hash of the plan, where models ran, the step names, the start time;
//! - `resume`: a resumed run appends one before its own records (inputs, plan hash, target,
//!   step names, time);
//! - `start`: a step was started (synced with the next group: it only explains a step that
//!   was in flight when the process died);
//! - `step`: a step ended — succeeded, failed or interrupted — with its cache key and the
//!   parts behind it ([`KeyParts`](super::cache_key::KeyParts)), the output, usage in tokens, cost in USD, the model that
//!   answered, attempts, and its start and end in milliseconds since its run began;
//! - `turn`: a model turn of an agent loop ended: its text, tool calls, usage and cost
//!   (synced promptly);
//! - `tool_start`: a tool call that may change something (not read-only) is about to run
//!   (synced before it runs: the call waits for it);
//! - `tool`: a tool call ended: the call as reported and the result the model gets (written
//!   before the result is used, synced promptly);
//! - `end`: the run ended: status, why it stopped, total cost.
//!
//! Every record a resume reads is in the file when what it records happened (a `step` record
//! before the step counts as done, a `start` record before its request goes out: written by
//! the step's task, or in a burst by the writer thread, a batch to a `write(2)`, while the
//! task waits), so a killed process (`SIGKILL`, a panic) loses nothing completed. The
//! `attempt` and `warning` records, which no resume reads, are held in the process for a
//! moment and go out with the writer thread's next batch or before the next flush, at most
//! [`sync::IDLE`] after the run went quiet: a killed process can lose those of its last
//! moment. The flush to disk
//! (`sync_data`) is group commit, done by a thread of its own ([`sync`]): the scheduler
//! never waits for the disk; a `tool_start` record is waited for before its call runs, and
//! the `end` record before the run returns.
//! A power loss or OS crash can cost the records written since the last flush: at most the
//! last [`sync::BATCH`] `step` records, or those of the last [`sync::MAX_DELAY`] plus one
//! flush; those steps run again on resume, and no side effect is repeated. A record that
//! exists is complete. A last line cut short by a crash is ignored (and
//! dropped before the next append); any other line that is not a record is an error naming
//! the file and the line. Every record is redacted ([`crate::redact`]) before it is written:
//! no API key the run read, nor anything shaped like a key, reaches the file.
//!
//! One process at a time writes a run's journal: it holds the OS lock of the run's
//! [`LOCK_FILE`] from before it reads or writes the journal to its `end` record, and a second
//! process is refused ([`JournalError::Busy`]). The lock dies with its process, so a killed
//! run never stays locked. Only the lock holder cuts a damaged last line.
//!
//! A resumed run reuses a step's recorded output when a `succeeded` record of that step has
//! the cache key the step has now; otherwise the step runs again and the scheduler says why
//! ([`super::Event::Rerun`]). A step of an agent loop that runs again with the same cache key
//! continues from its transcript ([`Transcript`]): the recorded turns are sent again as the
//! conversation, recorded tool results are reused, and a call with a `tool_start` record but
//! no `tool` record is not run again (it may have had its effect): the model is told so. So a
//! tool call's side effect happens at most once per journalled call.

mod list;
mod log;
mod read;
mod records;
mod resume;
pub mod sync;
mod write;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use list::{RunSummary, list_runs, run_records};
pub use log::{LogEntry, RunLog, read_run, read_run_file};
pub use read::{BatchRef, Transcript};
pub use records::{
    AttemptRecord, BatchItemRecord, BatchRecord, EndRecord, EndStatus, Record, ResumeHeader,
    RunHeader, StartRecord, StepCounts, StepOutcome, StepRecord, TextDigest, ToolRecord,
    ToolStartRecord, TurnRecord, WarningRecord,
};
pub use write::Journal;

/// SHA-256 (hex) of a plan's JSON form, as the `run` and `resume` records keep it: a plan
/// made again from the script has the same hash while the script (and what it includes) is
/// unchanged.
pub fn plan_hash(plan: &crate::plan::Plan) -> String {
    super::cache_key::sha256_hex(&serde_json::to_vec(plan).unwrap_or_default())
}

/// The journal's file name inside a run's directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The format version written in `run` records; a journal of a later version is refused.
/// Version 2 added the agent loops' `turn`, `tool_start` and `tool` records (an orch that
/// reads version 1 says a version-2 journal needs a newer orch, rather than calling those
/// lines damaged); version 1 journals are read as they are.
pub const FORMAT_VERSION: u32 = 2;

/// The lock file in a run's directory. A process that writes the run's journal holds an
/// exclusive OS lock on it (`flock(2)` on Unix, `LockFileEx` on Windows, through
/// [`std::fs::File::try_lock`]) from before its first write to the run's `end` record: the operating
/// system releases it when the process ends, however it ends, so a lock left by a killed
/// process never blocks. The file stays (removing it would let two processes lock two
/// different files); it holds the holder's process id, for people only.
pub const LOCK_FILE: &str = "lock";

/// Where the `run` record is written before it is renamed to [`JOURNAL_FILE`], so that a
/// journal never exists without its first record.
const NEW_JOURNAL_FILE: &str = "journal.jsonl.new";

/// The state directory used for `script` when none is given: `.orch` in the script's
/// directory, so a run is found again from wherever `orch` is started.
pub fn default_state_dir(script: &Path) -> PathBuf {
    match script.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(".orch"),
        _ => PathBuf::from(".orch"),
    }
}

/// A new run id for a run starting at `now`: `YYYYMMDD-HHMMSS-mmm-xxxxxx` (UTC to the
/// millisecond, cut not rounded, then six random lowercase letters and digits), so that ids
/// sort by start time.
pub fn new_run_id(now: SystemTime) -> String {
    let at = jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let suffix: String = (0..6)
        .map(|_| {
            let i = fastrand::usize(0..36);
            char::from_digit(i as u32, 36).unwrap_or('x')
        })
        .collect();
    format!("{}-{suffix}", at.strftime("%Y%m%d-%H%M%S-%3f"))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a journal cannot be written, read or resumed. Every message names the file or run and
/// says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JournalError {
    /// A file or directory of the state directory cannot be created, read or written.
    #[error(
        "cannot {action} {}: {message}\n  pass `--state-dir DIR` (or set ORCH_STATE_DIR) to keep run journals elsewhere, or `--no-journal` to run without one",
        path.display()
    )]
    Io {
        /// What was being done (`create`, `read`, `write to`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
    /// A line of a journal is not a record (and is not a last line cut short by a crash).
    #[error(
        "{}, line {line}: {message}\n  the journal is damaged: delete that line (the steps it recorded will run again), or start a new run without --resume",
        path.display()
    )]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// `--resume` cannot pick a run: unknown id, none unfinished, another script or workflow.
    #[error("{0}")]
    Resume(String),
    /// Another process holds the run's lock: it is running (or resuming) the run now.
    #[error(
        "run `{id}` is being run by another process{} (it holds the lock {}); wait for it to end or stop it, then resume",
        pid.as_ref().map(|p| format!(" (process {p})")).unwrap_or_default(),
        lock.display()
    )]
    Busy {
        /// The run's id.
        id: String,
        /// The lock file.
        lock: PathBuf,
        /// The process id the holder wrote in the lock file, when it is readable.
        pid: Option<u32>,
    },
    /// No run of that id is in the state directory (or the id could not be one).
    #[error(
        "no run `{id}` in {}: `orch runs` lists the runs there; pass `--state-dir DIR` (or set ORCH_STATE_DIR) when the runs are kept elsewhere",
        runs.display()
    )]
    UnknownRun {
        /// The id asked for.
        id: String,
        /// The `runs` directory looked in.
        runs: PathBuf,
    },
    /// The run has no records: it was stopped before its first one was written, so it has
    /// nothing to resume.
    #[error(
        "run `{id}` has no records ({} is missing or empty): it was stopped before it began, so nothing of it can be reused; start a new run (without --resume), and delete {} if you like",
        path.display(),
        path.parent().unwrap_or(path).display()
    )]
    NoRecords {
        /// The run's id.
        id: String,
        /// Its journal file.
        path: PathBuf,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |e| JournalError::Io {
        action,
        path,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_utc_times_that_sort() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let id = new_run_id(t);
        assert!(id.starts_with("20231114-221320-123-"), "{id}");
        assert_eq!(id.len(), "20231114-221320-123-".len() + 6);
        let later = new_run_id(t + std::time::Duration::from_millis(1));
        assert!(later > id);
        let leap_day = UNIX_EPOCH + std::time::Duration::from_millis(951_782_400_000);
        assert!(new_run_id(leap_day).starts_with("20000229-000000-000-"));
        // Milliseconds are cut, not rounded: an id never sorts after a later start.
        let almost = UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_999_999);
        assert!(new_run_id(almost).starts_with("20231114-221320-123-"));
    }
}
