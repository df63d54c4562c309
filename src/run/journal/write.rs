//! Writing a journal: a new run's directory, lock and `run` record, then one record a line as
//! the run goes, each redacted and (for `step` and `end`) synced before the scheduler goes on.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use indexmap::IndexMap;

use tokio::sync::mpsc::UnboundedSender;

use super::super::cache_key::KeyParts;
use super::super::scheduler::Scheduler;
use super::super::{Event, RunOptions, RunReport, StepReport, StepStatus};
use super::read::History;
use super::read::Transcript;
use super::records::{
    AttemptRecord, EndRecord, EndStatus, Record, ResumeHeader, RunHeader, StartRecord, StepOutcome,
    StepRecord, ToolRecord, ToolStartRecord, TurnRecord, WarningRecord,
};
use super::{
    FORMAT_VERSION, JOURNAL_FILE, JournalError, LOCK_FILE, NEW_JOURNAL_FILE, io_error, new_run_id,
    now_ms,
};
use crate::plan::{NodeId, Plan};

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

pub(super) struct Inner {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) script: String,
    pub(super) file: Option<File>,
    /// What earlier segments recorded (resume only).
    pub(super) history: Option<History>,
    /// Where the last complete record ends, and whether it lacks its newline (resume only).
    pub(super) good_len: u64,
    pub(super) needs_newline: bool,
    /// The run's lock, held from [`Journal::resume`] or [`Journal::begin`] to the `end`
    /// record.
    pub(super) lock: Option<RunLock>,
}

/// A held run lock ([`LOCK_FILE`]): the OS releases it when this is dropped or the process
/// ends.
pub(super) struct RunLock {
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
pub(super) fn lock_run(dir: &Path, id: &str) -> Result<RunLock, JournalError> {
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

    pub(super) fn from_inner(inner: Inner) -> Journal {
        Journal {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
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

    /// Whether the run being resumed recorded step `name` as succeeded (with any key).
    pub fn has_succeeded(&self, name: &str) -> bool {
        self.lock()
            .history
            .as_ref()
            .is_some_and(|h| h.succeeded.contains_key(name))
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
        let plan_hash = super::plan_hash(plan);
        let target = opts.target.describe();
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
                agent_loop: report.agent_loop.clone(),
                model: report.model.clone(),
                served_model: report.served_model.clone(),
                truncated: report.truncated,
                warnings: report.warnings.clone(),
                attempts: report.attempts,
                usage: report.usage,
                cost_usd: report.cost_usd,
                started_ms: report.started_ms,
                finished_ms: report.finished_ms,
            })),
            true,
        )
    }

    /// Records a model turn of an agent loop, synced to disk (before any of its calls runs).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn turn(&self, record: TurnRecord) -> Result<(), JournalError> {
        self.lock().append(&Record::Turn(Box::new(record)), true)
    }

    /// Records the warnings of a region that ended (not synced: a resumed run does not need
    /// them).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn warnings(&self, report: &StepReport) -> Result<(), JournalError> {
        let mut inner = self.lock();
        for message in &report.warnings {
            inner.append(
                &Record::Warning(WarningRecord {
                    step: report.name.clone(),
                    message: message.clone(),
                    at_ms: now_ms(),
                }),
                false,
            )?;
        }
        Ok(())
    }

    /// Records a model call that ended (not synced: a resumed run does not need it; it is
    /// for people and reports).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn attempt(&self, record: AttemptRecord) -> Result<(), JournalError> {
        self.lock()
            .append(&Record::Attempt(Box::new(record)), false)
    }

    /// Records that a tool call which may change something is about to run, synced to disk
    /// (before it runs).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn tool_started(&self, record: ToolStartRecord) -> Result<(), JournalError> {
        self.lock().append(&Record::ToolStart(record), true)
    }

    /// Records the end of a tool call with its result, synced to disk (before the result is
    /// used).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn tool(&self, record: ToolRecord) -> Result<(), JournalError> {
        self.lock().append(&Record::Tool(Box::new(record)), true)
    }

    /// On a resumed run, what the earlier segments recorded of the agent loop of `step` run
    /// with cache key `key`: `None` on a new run, for a loop that never ran with that key, and
    /// for one that ended well.
    pub(crate) fn transcript(&self, step: &str, key: &str) -> Option<Transcript> {
        let inner = self.lock();
        let t = inner.history.as_ref()?.transcripts.get(step)?;
        (t.key == key && !t.turns.is_empty()).then(|| t.clone())
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

impl Scheduler<'_> {
    /// A step is being spawned: journal its start, and on a resumed run say why it runs again.
    pub(in crate::run) fn record_start(&mut self, id: NodeId, tx: &UnboundedSender<Event>) {
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
    pub(in crate::run) fn record(&mut self, id: NodeId, report: &StepReport) {
        let (Some(j), Some(parts)) = (&self.journal, &self.keys[id]) else {
            return;
        };
        if let Err(e) = j.step(report, parts) {
            self.stopped.get_or_insert_with(|| e.to_string());
        }
    }
}
