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
//! - `start`: a step was started (not synced: it only explains a step that was in flight
//!   when the process died);
//! - `step`: a step ended — succeeded, failed or interrupted — with its cache key and the
//!   parts behind it ([`KeyParts`]), the output, usage in tokens, cost in USD, the model that
//!   answered, attempts, and its start and end in milliseconds since its run began;
//! - `end`: the run ended: status, why it stopped, total cost.
//!
//! Every `step` and `end` record is flushed to disk (`sync_data`) before the scheduler goes
//! on, so a record that exists is complete. A last line cut short by a crash is ignored (and
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
//! ([`super::Event::Rerun`]).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use tokio::sync::mpsc::UnboundedSender;

use super::cache_key::{self, KeyParts, sha256_hex};
use super::provider::Usage;
use super::render::Scope;
use super::{Event, RunOptions, RunReport, StepReport, StepStatus, Target};
use crate::plan::{NodeId, Plan, Ref};

/// The journal's file name inside a run's directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The format version written in `run` records; a journal of a later version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// The lock file in a run's directory. A process that writes the run's journal holds an
/// exclusive OS lock on it (`flock(2)` on Unix, `LockFileEx` on Windows, through
/// [`File::try_lock`]) from before its first write to the run's `end` record: the operating
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

/// A new run id for a run starting at `now`: `YYYYMMDD-HHMMSS-mmm-xxxxxx` (UTC, then six
/// random lowercase letters and digits), so that ids sort by start time.
pub fn new_run_id(now: SystemTime) -> String {
    let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) as u64;
    let (y, mo, d) = civil_from_days((ms / 86_400_000) as i64);
    let day_ms = ms % 86_400_000;
    let suffix: String = (0..6)
        .map(|_| {
            let i = fastrand::usize(0..36);
            char::from_digit(i as u32, 36).unwrap_or('x')
        })
        .collect();
    format!(
        "{y:04}{mo:02}{d:02}-{:02}{:02}{:02}-{:03}-{suffix}",
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1_000) % 60,
        day_ms % 1_000
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn now_ms() -> u64 {
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

// ------------------------------------------------------------------ records

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first line.
    Run(RunHeader),
    /// A resumed run starts here.
    Resume(ResumeHeader),
    /// A step was started.
    Start(StartRecord),
    /// A step ended.
    Step(Box<StepRecord>),
    /// The run ended.
    End(EndRecord),
}

/// The `run` record: what was run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The run's id.
    pub run_id: String,
    /// The script, as the caller named it (the CLI gives an absolute path).
    pub script: String,
    /// The workflow run.
    pub workflow: String,
    /// Inputs as given on the command line, by parameter name.
    pub inputs: IndexMap<String, String>,
    /// SHA-256 (hex) of the plan's JSON form.
    pub plan_hash: String,
    /// Where models ran: `script providers`, `simulator`, or `endpoint URL`.
    pub target: String,
    /// The plan's step names, in source order.
    pub steps: Vec<String>,
    /// Start, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The orch version that wrote it.
    pub orch_version: String,
}

/// The `resume` record: a later process continuing the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeHeader {
    /// Inputs in force (recorded ones, overridden by any given again).
    pub inputs: IndexMap<String, String>,
    /// SHA-256 (hex) of the plan's JSON form now.
    pub plan_hash: String,
    /// Where models run now.
    pub target: String,
    /// The plan's step names now.
    pub steps: Vec<String>,
    /// Start of this segment, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The `start` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    /// Step name.
    pub name: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// How a recorded step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// It produced an output, which a resumed run may reuse.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// It was in flight when the run was interrupted.
    Interrupted,
}

/// The `step` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// Agent called.
    pub agent: String,
    /// How it ended.
    pub status: StepOutcome,
    /// The error of a failed step (redacted, as every record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The step's cache key ([`KeyParts::key`]).
    pub cache_key: String,
    /// What the key was made of.
    pub key: KeyParts,
    /// The output of a succeeded step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// A structured output (`-> T`) as a value of its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For an approval step: the answer and how it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<super::Approval>,
    /// The model that answered (after any fallback), `command`, or for an approval `person`
    /// or `--yes`.
    #[serde(default)]
    pub model: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Tokens, as the providers reported them.
    pub usage: Usage,
    /// USD.
    pub cost_usd: f64,
    /// Start, in milliseconds since its run (segment) began.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// End, in milliseconds since its run (segment) began.
    #[serde(default)]
    pub finished_ms: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndStatus {
    /// Every step that had to run succeeded.
    Succeeded,
    /// A step failed, the budget stopped it, or a step could not run.
    Failed,
    /// Ctrl-C (or a [`super::cancel::Cancel`]) stopped it.
    Interrupted,
}

/// The `end` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    /// How it ended.
    pub status: EndStatus,
    /// Why it stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step executions of the run's report, as its summary counts them (absent in
    /// journals of orch before 0.1 wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepCounts>,
    /// USD of the whole run, reused steps included.
    pub cost_usd: f64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Step executions counted one way everywhere (the run summary's `N/M steps succeeded`,
/// `orch runs`): each execution of a step is one — every instance of a `parallel for`,
/// `repeat` or workflow call body (`post[2]`, `draft#3`, `report/plan`), and the region's
/// own step — not the plan's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    /// Executions that succeeded (reused ones included).
    pub succeeded: usize,
    /// Executions reported: succeeded, failed, skipped, cancelled or interrupted.
    pub total: usize,
}

// ------------------------------------------------------------------ reading

/// What a journal says, folded over its records.
#[derive(Debug, Clone)]
struct History {
    header: RunHeader,
    /// Inputs and step names of the latest segment.
    inputs: IndexMap<String, String>,
    steps: Vec<String>,
    /// Succeeded records by step name, oldest first.
    succeeded: HashMap<String, Vec<StepRecord>>,
    /// The last thing recorded of each step.
    last: HashMap<String, LastSeen>,
    /// The `end` record of the latest segment, if it has one.
    end: Option<EndRecord>,
    /// Every step execution recorded (`start` or `step`), by name.
    recorded: HashSet<String>,
    /// USD of every recorded step, re-runs included: what the run has cost so far.
    spent_usd: f64,
}

#[derive(Debug, Clone)]
enum LastSeen {
    Started,
    Ended(Box<StepRecord>),
}

/// A journal read from disk.
struct Loaded {
    history: History,
    /// Bytes up to the end of the last complete record.
    good_len: u64,
    /// The last record is complete but its newline is missing.
    needs_newline: bool,
}

/// The id of the run whose journal is `path` (its directory's name).
fn run_id_of(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and folds a journal.
///
/// # Errors
/// [`JournalError::NoRecords`] when the file is missing or holds no complete record;
/// [`JournalError::Corrupt`] for a line that is not a record; [`JournalError::Io`].
fn read_journal(path: &Path) -> Result<Loaded, JournalError> {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("read", path)(e)),
    }
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut needs_newline = false;
    let mut offset = 0usize;
    // Bytes, not text: offsets must be exact to cut a damaged tail, and a write cut in the
    // middle of a multi-byte character is just another cut line.
    let mut lines = bytes
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
        .peekable();
    while let Some((i, raw)) = lines.next() {
        offset += raw.len();
        let complete = raw.ends_with(b"\n");
        let line = raw.trim_ascii();
        if line.is_empty() {
            if complete {
                good_len = offset as u64;
            }
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                records.push((i + 1, r));
                good_len = offset as u64;
                needs_newline = !complete;
            }
            // A crash in the middle of a write leaves a last line without its newline.
            Err(_) if !complete && lines.peek().is_none() => {}
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not a journal record ({e})"),
                });
            }
        }
    }
    if records.is_empty() {
        return Err(JournalError::NoRecords {
            id: run_id_of(path),
            path: path.to_path_buf(),
        });
    }
    let history = fold(path, records)?;
    Ok(Loaded {
        history,
        good_len,
        needs_newline,
    })
}

/// Folds the records (with their 1-based line numbers) into what the run did.
fn fold(path: &Path, records: Vec<(usize, Record)>) -> Result<History, JournalError> {
    let mut it = records.into_iter();
    let header = match it.next() {
        Some((_, Record::Run(h))) => h,
        other => {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                line: other.map_or(1, |(line, _)| line),
                message: "the journal does not start with a `run` record".into(),
            });
        }
    };
    if header.version > FORMAT_VERSION {
        return Err(JournalError::Resume(format!(
            "{} was written by a newer orch ({}, journal format {}); this one reads format {FORMAT_VERSION}: resume it with that version",
            path.display(),
            header.orch_version,
            header.version
        )));
    }
    let mut h = History {
        inputs: header.inputs.clone(),
        steps: header.steps.clone(),
        header,
        succeeded: HashMap::new(),
        last: HashMap::new(),
        end: None,
        recorded: HashSet::new(),
        spent_usd: 0.0,
    };
    for (line, r) in it {
        match r {
            Record::Run(_) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line,
                    message: "a second `run` record: two journals were joined".into(),
                });
            }
            Record::Resume(s) => {
                h.inputs = s.inputs;
                h.steps = s.steps;
                h.end = None;
            }
            Record::Start(s) => {
                h.recorded.insert(s.name.clone());
                h.last.insert(s.name, LastSeen::Started);
            }
            Record::Step(s) => {
                h.recorded.insert(s.name.clone());
                h.spent_usd += s.cost_usd;
                if s.status == StepOutcome::Succeeded {
                    h.succeeded
                        .entry(s.name.clone())
                        .or_default()
                        .push((*s).clone());
                }
                h.last.insert(s.name.clone(), LastSeen::Ended(s));
            }
            Record::End(e) => h.end = Some(e),
        }
    }
    Ok(h)
}

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
    /// Step executions ([`StepCounts`]) that succeeded: as the run's summary counts them
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

/// `(id, journal path)` of every run directory in `STATE/runs`, sorted by id (oldest first).
/// The journal may be missing: a run stopped before its first record has none.
fn run_dirs(state_dir: &Path) -> Result<Vec<(String, PathBuf)>, JournalError> {
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

// ------------------------------------------------------------------ writing

/// A run's journal: created for a new run ([`Journal::create`]) or opened to resume one
/// ([`Journal::resume`]), then handed to the scheduler in [`RunOptions::journal`], which
/// writes to it. Cheap to clone: clones share one file.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Journal")
            .field("id", &inner.id)
            .field("path", &inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    id: String,
    dir: PathBuf,
    path: PathBuf,
    script: String,
    file: Option<File>,
    /// What earlier segments recorded (resume only).
    history: Option<History>,
    /// Where the last complete record ends, and whether it lacks its newline (resume only).
    good_len: u64,
    needs_newline: bool,
    /// The run's lock, held from [`Journal::resume`] or [`Journal::begin`] to the `end`
    /// record.
    lock: Option<RunLock>,
}

/// A held run lock ([`LOCK_FILE`]): the OS releases it when this is dropped or the process
/// ends.
struct RunLock {
    _file: File,
}

/// How long a lock found taken is tried again before the run is refused: a lock just
/// released may linger for an instant in a process being spawned at that moment by the same
/// program (between `fork` and `exec` the child holds a copy of every descriptor, the lock
/// file's too, until `exec` closes it). A real holder is refused after this.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the lock of run `id`, whose directory is `dir`, waiting at most [`LOCK_GRACE`].
///
/// # Errors
/// [`JournalError::Busy`] when another process holds it; [`JournalError::Io`] when the lock
/// file cannot be opened or locked.
fn lock_run(dir: &Path, id: &str) -> Result<RunLock, JournalError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error("create", &path))?;
    let until = std::time::Instant::now() + LOCK_GRACE;
    let mut taken = file.try_lock();
    while matches!(taken, Err(std::fs::TryLockError::WouldBlock))
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        taken = file.try_lock();
    }
    match taken {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(JournalError::Busy {
                id: id.to_string(),
                lock: path,
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error("lock", &path)(e)),
    }
    // For people who look: which process holds it. Best effort, the lock is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
    Ok(RunLock { _file: file })
}

/// What a resumed run does with a step that is ready to start.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// Take the recorded result.
    Reuse(Box<StepReport>),
    /// Run it again, for this reason.
    Rerun(String),
}

impl Journal {
    /// A journal for a new run of `script`'s workflow, kept in `STATE/runs/ID/` with
    /// `STATE` = `state_dir`. Nothing is written before the run starts.
    pub fn create(state_dir: &Path, script: &str) -> Journal {
        let id = new_run_id(SystemTime::now());
        let dir = state_dir.join("runs").join(&id);
        Journal::from_inner(Inner {
            path: dir.join(JOURNAL_FILE),
            dir,
            id,
            script: script.to_string(),
            file: None,
            history: None,
            good_len: 0,
            needs_newline: false,
            lock: None,
        })
    }

    /// Opens run `id` of `script`'s `workflow` in `state_dir` to resume it; without an id,
    /// the most recent run of that script and workflow that did not succeed. Takes the run's
    /// lock ([`LOCK_FILE`]) before reading its journal, and holds it until the run's `end`
    /// record (or until the journal is dropped): while it is held no other process can
    /// resume the run, so one process alone ever appends to (or cuts a damaged tail off) a
    /// journal.
    ///
    /// # Errors
    /// [`JournalError::Resume`] when there is no such run or it belongs to another script or
    /// workflow; [`JournalError::Busy`] when another process is running it;
    /// [`JournalError::NoRecords`] when it was stopped before its first record;
    /// [`JournalError::Corrupt`] or [`JournalError::Io`] when its journal cannot be read.
    pub fn resume(
        state_dir: &Path,
        script: &str,
        workflow: &str,
        id: Option<&str>,
    ) -> Result<Journal, JournalError> {
        let runs = run_dirs(state_dir)?;
        let (id, path) = match id {
            Some(id) => match runs.iter().find(|(r, _)| r == id) {
                Some((_, path)) => (id.to_string(), path.clone()),
                None => {
                    return Err(JournalError::Resume(format!(
                        "no run `{id}` in {}; `orch runs {script}` lists the runs of this script (pass `--state-dir DIR` if it was kept elsewhere)",
                        state_dir.join("runs").display()
                    )));
                }
            },
            None => latest_unfinished(state_dir, &runs, script, workflow)?,
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let lock = lock_run(&dir, &id)?;
        // Read under the lock: no other process writes it any more.
        let loaded = read_journal(&path)?;
        let h = &loaded.history.header;
        if h.script != script {
            return Err(JournalError::Resume(format!(
                "run `{id}` is a run of {}, not of {script}; resume it with `orch run {} --resume {id}`",
                h.script, h.script
            )));
        }
        if h.workflow != workflow {
            return Err(JournalError::Resume(format!(
                "run `{id}` ran workflow `{}`, not `{workflow}`; pass `--workflow {}` to resume it",
                h.workflow, h.workflow
            )));
        }
        Ok(Journal::from_inner(Inner {
            id,
            dir,
            path,
            script: script.to_string(),
            file: None,
            good_len: loaded.good_len,
            needs_newline: loaded.needs_newline,
            history: Some(loaded.history),
            lock: Some(lock),
        }))
    }

    fn from_inner(inner: Inner) -> Journal {
        Journal {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the journal half-updated in memory in
        // a way that matters: every write is one line.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run's id.
    pub fn id(&self) -> String {
        self.lock().id.clone()
    }

    /// The journal file (`STATE/runs/ID/journal.jsonl`).
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// Whether this journal continues an earlier run.
    pub fn is_resume(&self) -> bool {
        self.lock().history.is_some()
    }

    /// The inputs recorded by the run being resumed (empty for a new run): the CLI uses them
    /// for every input not given again.
    pub fn recorded_inputs(&self) -> IndexMap<String, String> {
        self.lock()
            .history
            .as_ref()
            .map(|h| h.inputs.clone())
            .unwrap_or_default()
    }

    /// What the run being resumed has spent so far in USD, every recorded step included.
    pub fn recorded_spend_usd(&self) -> f64 {
        self.lock().history.as_ref().map_or(0.0, |h| h.spent_usd)
    }

    /// Starts the run's records and writes the `run` or `resume` record. A new run creates
    /// its directory, takes its lock ([`LOCK_FILE`]), then creates the journal with its `run`
    /// record whole (written aside, synced, then renamed into place), so a journal never
    /// exists without one. A resumed run (which holds the lock since [`Journal::resume`])
    /// opens the journal for appending, drops a last line cut short by a crash, and appends
    /// its `resume` record. Records are redacted ([`crate::redact`]); the run registers its keys before.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the directory or file cannot be created or written;
    /// [`JournalError::Busy`] when another process took the new run's lock first.
    pub(crate) fn begin(&self, plan: &Plan, opts: &RunOptions) -> Result<(), JournalError> {
        let mut inner = self.lock();
        let plan_hash = sha256_hex(&serde_json::to_vec(plan).unwrap_or_default());
        let target = match &opts.target {
            Target::Script => "script providers".to_string(),
            Target::Simulate { .. } => "simulator".to_string(),
            Target::Endpoint(e) => format!("endpoint {}", e.base_url),
        };
        let steps: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
        if inner.history.is_some() {
            inner.reopen()?;
            let record = Record::Resume(ResumeHeader {
                inputs: opts.inputs.clone(),
                plan_hash,
                target,
                steps,
                at_ms: now_ms(),
            });
            return inner.append(&record, true);
        }
        let record = Record::Run(RunHeader {
            version: FORMAT_VERSION,
            run_id: inner.id.clone(),
            script: inner.script.clone(),
            workflow: plan.workflow.clone(),
            inputs: opts.inputs.clone(),
            plan_hash,
            target,
            steps,
            at_ms: now_ms(),
            orch_version: env!("CARGO_PKG_VERSION").to_string(),
        });
        inner.create(&record)
    }

    /// On a resumed run, what to do with a step about to start whose cache key parts are
    /// `parts`: reuse a recorded result with the same key, or run again, saying why.
    /// `describe_use` says why the value of an interpolated name changed. `None` on a new run.
    pub(crate) fn decide(
        &self,
        name: &str,
        parts: &KeyParts,
        key: &str,
        describe_use: &dyn Fn(&str) -> String,
    ) -> Option<Decision> {
        let inner = self.lock();
        let h = inner.history.as_ref()?;
        if let Some(r) = h
            .succeeded
            .get(name)
            .and_then(|rs| rs.iter().rev().find(|r| r.cache_key == key))
        {
            return Some(Decision::Reuse(Box::new(StepReport {
                name: r.name.clone(),
                agent: r.agent.clone(),
                model: r.model.clone(),
                status: StepStatus::Succeeded,
                attempts: r.attempts,
                usage: r.usage,
                cost_usd: r.cost_usd,
                started_ms: r.started_ms,
                finished_ms: r.finished_ms,
                output: r.output.clone(),
                value: r.value.clone(),
                approval: r.approval.clone(),
            })));
        }
        let why = match h.last.get(name) {
            Some(LastSeen::Ended(r)) => match r.status {
                StepOutcome::Failed => format!(
                    "it failed last time: {}",
                    r.error.as_deref().unwrap_or("no error recorded")
                ),
                StepOutcome::Interrupted => "it was interrupted last time".to_string(),
                StepOutcome::Succeeded => parts.changes_since(&r.key, describe_use),
            },
            Some(LastSeen::Started) => {
                "it was in flight when the earlier run was killed (no result in the journal)"
                    .to_string()
            }
            None if h.steps.iter().any(|s| s == name) => {
                "it did not start last time (the run stopped before it)".to_string()
            }
            None => "it is new: the journal has no entry for it".to_string(),
        };
        Some(Decision::Rerun(why))
    }

    /// Records that a step started (not synced to disk: it only explains a step that was in
    /// flight when the process died).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn started(&self, name: &str) -> Result<(), JournalError> {
        self.lock().append(
            &Record::Start(StartRecord {
                name: name.to_string(),
                at_ms: now_ms(),
            }),
            false,
        )
    }

    /// Records a step that ran and ended (succeeded, failed or interrupted), synced to disk.
    /// Skipped and cancelled steps are not recorded.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn step(&self, report: &StepReport, parts: &KeyParts) -> Result<(), JournalError> {
        let (status, error) = match &report.status {
            StepStatus::Succeeded => (StepOutcome::Succeeded, None),
            StepStatus::Failed(e) => (StepOutcome::Failed, Some(e.clone())),
            StepStatus::Interrupted => (StepOutcome::Interrupted, None),
            StepStatus::Skipped(_) | StepStatus::Cancelled => return Ok(()),
        };
        self.lock().append(
            &Record::Step(Box::new(StepRecord {
                name: report.name.clone(),
                agent: report.agent.clone(),
                status,
                error,
                cache_key: parts.key(),
                key: parts.clone(),
                output: report.output.clone(),
                value: report.value.clone(),
                approval: report.approval.clone(),
                model: report.model.clone(),
                attempts: report.attempts,
                usage: report.usage,
                cost_usd: report.cost_usd,
                started_ms: report.started_ms,
                finished_ms: report.finished_ms,
            })),
            true,
        )
    }

    /// Records the end of the run, synced to disk, and releases the lock.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn end(&self, report: &RunReport) -> Result<(), JournalError> {
        let mut inner = self.lock();
        let status = if report.interrupted {
            EndStatus::Interrupted
        } else if report.succeeded {
            EndStatus::Succeeded
        } else {
            EndStatus::Failed
        };
        let reason = report.stopped.clone().or_else(|| {
            (!report.succeeded).then(|| {
                let failed: Vec<&str> = report
                    .steps
                    .iter()
                    .filter(|s| matches!(s.status, StepStatus::Failed(_)))
                    .map(|s| s.name.as_str())
                    .collect();
                format!("steps failed: {}", failed.join(", "))
            })
        });
        inner.append(
            &Record::End(EndRecord {
                status,
                reason,
                steps: Some(report.step_counts()),
                cost_usd: report.cost_usd,
                at_ms: now_ms(),
            }),
            true,
        )?;
        // Nothing is written after the `end` record: release the run for others.
        inner.file = None;
        inner.lock = None;
        Ok(())
    }
}

impl Inner {
    /// A new run: its directory, its lock, and its journal holding `header`, which is
    /// written to [`NEW_JOURNAL_FILE`], synced and renamed: a run killed before that leaves a
    /// directory without a journal, which `orch runs` lists as `empty`.
    fn create(&mut self, header: &Record) -> Result<(), JournalError> {
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        std::fs::create_dir(&self.dir).map_err(io_error("create", &self.dir))?;
        self.lock = Some(lock_run(&self.dir, &self.id)?);
        let new = self.dir.join(NEW_JOURNAL_FILE);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&new)
            .map_err(io_error("create", &new))?;
        self.file = Some(file);
        let line = self.encode(header)?;
        self.write_line(line, true)?;
        std::fs::rename(&new, &self.path).map_err(io_error("create", &self.path))?;
        // Make the new directory entries durable too (best effort: not every platform can
        // open a directory).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A resumed run, holding the lock: opens the journal for appending, drops a last line
    /// cut short by a crash, and ends a complete one that lost its newline.
    fn reopen(&mut self) -> Result<(), JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_error("write to", &self.path))?;
        // Only the lock holder may cut: another process could be appending otherwise.
        debug_assert!(self.lock.is_some(), "a journal is cut only under its lock");
        file.set_len(self.good_len)
            .map_err(io_error("write to", &self.path))?;
        self.file = Some(file);
        if self.needs_newline {
            self.write_line("\n".to_string(), true)?;
        }
        Ok(())
    }

    /// `record` as one journal line, redacted ([`crate::redact`]).
    fn encode(&self, record: &Record) -> Result<String, JournalError> {
        let mut line = serde_json::to_string(record).map_err(|e| JournalError::Io {
            action: "write to",
            path: self.path.clone(),
            message: format!("cannot encode a record: {e}"),
        })?;
        line.push('\n');
        Ok(crate::redact::redact(line).into_string())
    }

    fn append(&mut self, record: &Record, sync: bool) -> Result<(), JournalError> {
        let line = self.encode(record)?;
        self.write_line(line, sync)
    }

    fn write_line(&mut self, line: String, sync: bool) -> Result<(), JournalError> {
        let path = self.path.clone();
        let Some(file) = self.file.as_mut() else {
            return Err(JournalError::Io {
                action: "write to",
                path,
                message: "the journal was not opened (the run did not begin)".into(),
            });
        };
        file.write_all(line.as_bytes())
            .map_err(io_error("write to", &path))?;
        if sync {
            file.sync_data().map_err(io_error("write to", &path))?;
        }
        Ok(())
    }
}

/// The most recent run of `script`'s `workflow` that did not succeed.
fn latest_unfinished(
    state_dir: &Path,
    runs: &[(String, PathBuf)],
    script: &str,
    workflow: &str,
) -> Result<(String, PathBuf), JournalError> {
    let mut other_workflow = None;
    let mut succeeded = None;
    let mut empty = None;
    for (id, path) in runs.iter().rev() {
        // Journals of other scripts are not this command's business, even damaged ones.
        let Some(header) = read_header(path) else {
            if matches!(read_journal(path), Err(JournalError::NoRecords { .. })) {
                empty.get_or_insert(id.clone());
            }
            continue;
        };
        if header.script != script {
            continue;
        }
        if header.workflow != workflow {
            other_workflow.get_or_insert((id.clone(), header.workflow));
            continue;
        }
        let loaded = read_journal(path)?;
        if loaded.history.end.as_ref().map(|e| e.status) == Some(EndStatus::Succeeded) {
            succeeded.get_or_insert(id.clone());
            continue;
        }
        return Ok((id.clone(), path.clone()));
    }
    let mut msg = format!(
        "no unfinished run of {script} (workflow `{workflow}`) in {}; start one with `orch run {script}` (without --resume)",
        state_dir.join("runs").display()
    );
    if let Some(id) = succeeded {
        msg.push_str(&format!(
            "\n  its latest run, `{id}`, succeeded; `--resume {id}` reuses its results anyway"
        ));
    }
    if let Some((id, wf)) = other_workflow {
        msg.push_str(&format!(
            "\n  run `{id}` of this script ran workflow `{wf}`: pass `--workflow {wf}` to resume it"
        ));
    }
    if let Some(id) = empty {
        msg.push_str(&format!(
            "\n  run `{id}` has no records (it was stopped before it began): there is nothing of it to resume"
        ));
    }
    Err(JournalError::Resume(msg))
}

/// The `run` record of a journal, if its first line is one.
fn read_header(path: &Path) -> Option<RunHeader> {
    let file = File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first).ok()?;
    match serde_json::from_str::<Record>(first.trim_end()) {
        Ok(Record::Run(h)) => Some(h),
        _ => None,
    }
}

// ------------------------------------------------------------------ scheduler hooks

impl super::scheduler::Scheduler<'_> {
    /// A step is ready to start. With a journal, computes its cache key parts; on a resumed
    /// run, settles it with its recorded result when one has the same key (returns `true`),
    /// or notes why it runs again.
    pub(super) fn reuse(&mut self, id: NodeId, on_event: &(dyn Fn(&Event) + Send + Sync)) -> bool {
        let (Some(journal), Some(ids)) = (self.journal.clone(), self.identities.as_ref()) else {
            return false;
        };
        let node = &self.plan.nodes[id];
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let parts = cache_key::step_parts(node, &scope, ids, self.max_tokens_cap);
        let key = parts.key();
        let decision = journal.decide(&node.name, &parts, &key, &|name| {
            self.describe_use(id, name)
        });
        self.keys[id] = Some(parts);
        match decision {
            None => false,
            Some(Decision::Rerun(why)) => {
                self.rerun_why[id] = Some(why);
                false
            }
            Some(Decision::Reuse(report)) => {
                self.reused[id] = true;
                // A reused `gather <any|first N>` no longer needs the rest of its block, as
                // when it first ran.
                self.cancel_rest_of_join(id, on_event);
                on_event(&Event::Reused((*report).clone()));
                self.settle(id, *report);
                true
            }
        }
    }

    /// Why the value of an interpolated name (`topic`, `plan`, `found.a`) of step `id`
    /// differs from the one its last record used.
    fn describe_use(&self, id: NodeId, dotted: &str) -> String {
        let node = &self.plan.nodes[id];
        let target = node
            .prompt
            .iter()
            .chain(node.args.values())
            .flat_map(|t| t.interps())
            .find(|i| i.path == dotted)
            .map_or(Ref::Unbound, |i| i.target);
        let upstream = |n: NodeId| {
            let name = &self.plan.nodes[n].name;
            if self.ran[n] {
                format!("upstream `{name}` re-ran")
            } else {
                format!("upstream `{name}`'s output changed")
            }
        };
        let root = dotted.split('.').next().unwrap_or(dotted);
        match target {
            Ref::Param(_) => format!("input `{root}` changed"),
            Ref::Node(n) | Ref::Member(n) => upstream(n),
            Ref::Group(g) => {
                let reran: Vec<String> = self.plan.groups[g]
                    .members
                    .iter()
                    .filter(|&&m| self.ran[m])
                    .map(|&m| format!("`{}`", self.plan.nodes[m].name))
                    .collect();
                if reran.is_empty() {
                    format!("block `{root}`'s output changed")
                } else {
                    format!("upstream {} re-ran", reran.join(", "))
                }
            }
            Ref::Arg(_) | Ref::Unbound => format!("`{dotted}` changed"),
        }
    }

    /// A step is being spawned: journal its start, and on a resumed run say why it runs again.
    pub(super) fn record_start(&mut self, id: NodeId, tx: &UnboundedSender<Event>) {
        let name = &self.plan.nodes[id].name;
        if let Some(why) = self.rerun_why[id].take() {
            let _ = tx.send(Event::Rerun {
                step: name.clone(),
                why,
            });
        }
        if let Some(j) = &self.journal
            && let Err(e) = j.started(name)
        {
            self.stopped.get_or_insert_with(|| e.to_string());
        }
    }

    /// A step that ran has ended: journal it (synced). If the journal cannot be written, new
    /// work stops: results that could not be recorded would be paid for again on resume.
    pub(super) fn record(&mut self, id: NodeId, report: &StepReport) {
        let (Some(j), Some(parts)) = (&self.journal, &self.keys[id]) else {
            return;
        };
        if let Err(e) = j.step(report, parts) {
            self.stopped.get_or_insert_with(|| e.to_string());
        }
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
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(JOURNAL_FILE);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn header_line() -> String {
        serde_json::to_string(&Record::Run(RunHeader {
            version: FORMAT_VERSION,
            run_id: "r".into(),
            script: "/s.orch".into(),
            workflow: "main".into(),
            inputs: IndexMap::new(),
            plan_hash: "h".into(),
            target: "simulator".into(),
            steps: vec!["a".into()],
            at_ms: 0,
            orch_version: "0".into(),
        }))
        .unwrap()
    }

    #[test]
    fn a_cut_last_line_is_tolerated_and_a_damaged_middle_line_is_not() {
        let dir = std::env::temp_dir().join(format!("orch-journal-unit-{}", std::process::id()));
        let h = header_line();
        let p = write(&dir, &format!("{h}\n{{\"type\":\"start\",\"na"));
        let l = read_journal(&p).expect("cut last line tolerated");
        assert_eq!(l.good_len as usize, h.len() + 1);
        assert!(!l.needs_newline);

        let p = write(&dir, &format!("{h}\n{{oops}}\n{h}\n"));
        let e = read_journal(&p).err().expect("damaged");
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains(JOURNAL_FILE),
            "{msg}"
        );
        assert!(msg.contains("delete that line"), "{msg}");

        let p = write(
            &dir,
            "{\"type\":\"end\",\"status\":\"failed\",\"cost_usd\":0,\"at_ms\":0}\n",
        );
        let msg = read_journal(&p).err().expect("no header").to_string();
        assert!(
            msg.contains("line 1") && msg.contains("`run` record"),
            "{msg}"
        );

        // Cut in the middle of a multi-byte character: still just a cut line.
        let mut bytes = format!("{h}\n{{\"type\":\"start\",\"name\":\"caf").into_bytes();
        bytes.push(0xc3);
        std::fs::write(&p, &bytes).unwrap();
        let l = read_journal(&p).expect("cut character tolerated");
        assert_eq!(l.good_len as usize, h.len() + 1);

        // A complete last record without its newline is kept.
        let p = write(&dir, &h);
        let l = read_journal(&p).expect("complete record");
        assert!(l.needs_newline);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
