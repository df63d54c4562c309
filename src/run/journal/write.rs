//! Writing a journal: a new run's directory, lock and `run` record, then one record a line as
//! the run goes, each redacted: a step's `start` record written before its request goes out
//! and its `step` record before it counts as ended (by its task, or in a burst by the
//! journal's writer thread), the `attempt` and `warning` records (which no resume reads) by
//! the journal's threads with their next batch or flush, the others at once by their maker
//! ([`super::sync`]); the flushes to the disk are done in groups by the syncer thread, and
//! the records an effect must not outrun (`tool_start`, `end`) are waited for.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use indexmap::IndexMap;

use tokio::sync::mpsc::UnboundedSender;

use super::super::cache_key::StepKey;
use super::super::scheduler::Scheduler;
use super::super::{Event, RunOptions, RunReport, StepReport, StepStatus};
use super::read::History;
use super::read::Transcript;
use super::records::{
    AttemptRecord, BatchRecord, EndRecord, EndStatus, Record, ResumeHeader, RunHeader, StartRecord,
    StepLine, StepOutcome, ToolRecord, ToolStartRecord, TurnRecord, WarningRecord,
};
use super::sync::{Deferred, Policy, Syncer};
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
    /// The syncer thread, from [`Journal::begin`] to the `end` record.
    pub(super) syncer: Option<Arc<Syncer>>,
    /// The syncer's syncs, kept when the `end` record closes it (for [`Journal::syncs`]).
    pub(super) syncs_at_end: u64,
    /// How it batches (tests stretch the times).
    pub(super) policy: Policy,
    /// Step records are written by their task, not the writer thread: the run is on tokio's
    /// paused clock (tests, benchmarks of the scheduler), where a task waiting for another
    /// thread looks idle and lets virtual time jump ahead (set by [`Journal::begin`]).
    pub(super) steps_inline: bool,
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
            syncer: None,
            syncs_at_end: 0,
            policy: Policy::default(),
            steps_inline: false,
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
        inner.steps_inline = crate::run::provider::exact_sleep::clock_is_paused();
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
            inner.append(&record, true)?;
            inner.start_syncer()?;
            inner.spawn_relay();
            return Ok(());
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
        inner.create(&record)?;
        inner.start_syncer()?;
        inner.spawn_relay();
        Ok(())
    }

    /// Writes `record` ([`Inner::append_grouped`]), encoded before the lock is taken.
    fn write(&self, record: &Record, how: Durability) -> Result<Option<u64>, JournalError> {
        let line = encode(record);
        self.lock().append_grouped(line, how)
    }

    /// Records that a step started, in the file before its request goes out (so that a run
    /// killed while the step is in flight says so on resume), synced with the next group.
    /// In a burst of starts (a large fan-out, [`Syncer::starts_in_burst`]) the journal's
    /// writer thread encodes and writes it, with the records queued before it (one
    /// `write(2)` for a batch), and the step waits for that; otherwise, and on tokio's paused
    /// clock, the step's task writes it here.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) async fn started(&self, name: &str) -> Result<(), JournalError> {
        let record = Record::Start(StartRecord {
            name: name.to_string(),
            at_ms: now_ms(),
        });
        let Some(syncer) = self.writer_thread().filter(|s| s.starts_in_burst()) else {
            return self.write(&record, Durability::Now).map(drop);
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        syncer.defer(Box::new(StartJob { record, reply }), false);
        // A job dropped unwritten (the journal closed) drops its reply.
        let written = answer
            .await
            .unwrap_or_else(|_| Err("the journal closed before the record was written".into()));
        written.map_err(|message| JournalError::Io {
            action: "write to",
            path: self.path(),
            message,
        })
    }

    /// The syncer, whose writer thread takes records from steps' tasks: `None` before
    /// [`Journal::begin`], after the `end` record, and on tokio's paused clock (where a task
    /// waiting for a real thread would let virtual time jump ahead).
    fn writer_thread(&self) -> Option<Arc<Syncer>> {
        let inner = self.lock();
        inner.syncer.clone().filter(|_| !inner.steps_inline)
    }

    /// Holds `record` (one no one waits for: `attempt`, `warning`), to be encoded
    /// and written by the writer thread with the next batch ([`Syncer::hold_record`]), or
    /// encoded here and held as a line without one.
    ///
    /// # Errors
    /// [`JournalError::Io`] when an earlier write or sync failed.
    fn hold(&self, record: Record) -> Result<(), JournalError> {
        let inner = self.lock();
        let Some(syncer) = &inner.syncer else {
            drop(inner);
            return self.write(&record, Durability::Held).map(drop);
        };
        if let Some((action, message)) = syncer.error() {
            return Err(JournalError::Io {
                action,
                path: inner.path.clone(),
                message,
            });
        }
        syncer.hold_record(Box::new(Later(record)));
        Ok(())
    }

    /// Records a step that ran and ended (succeeded, failed or interrupted): written to the
    /// file at once (a killed process loses nothing), synced with its group
    /// ([`super::sync`]): the caller never waits for the disk. Skipped and cancelled steps are
    /// not recorded. (A step's own task uses [`Journal::step_written`], which leaves the
    /// encoding and the write to the writer thread in a burst of steps.)
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(in crate::run) fn step(
        &self,
        report: &StepReport,
        key: &StepKey,
    ) -> Result<(), JournalError> {
        let Some(line) = step_line(report, key) else {
            return Ok(());
        };
        let line = encode(&line);
        self.lock()
            .append_grouped(line, Durability::Counted)
            .map(drop)
    }

    /// Records a step that ran and ended, as [`Journal::step`] does, from the step's own
    /// task, and hands the report back once its line is in the file, so that the step counts
    /// as ended (and anything may depend on it) only once a killed process can no longer
    /// lose it. When steps end in a burst ([`Syncer::in_burst`]) the report goes to the
    /// journal's writer thread, which encodes the record and writes it with the records
    /// queued before it (one `write(2)` for a batch): the run's thread neither encodes it nor
    /// calls `write(2)`. Otherwise, and on tokio's paused clock (where virtual time would
    /// jump ahead while the task waits for a thread), it is written here, as
    /// [`Journal::step`] does. Synced with its group either way. `None` only if the writer
    /// thread dropped the report, which it does not.
    ///
    /// # Errors
    /// [`JournalError::Io`] (second of the pair) when the journal cannot be written.
    pub(in crate::run) async fn step_written(
        &self,
        report: StepReport,
        key: Arc<StepKey>,
    ) -> Option<(StepReport, Result<(), JournalError>)> {
        let Some(syncer) = self
            .writer_thread()
            .filter(|s| step_line(&report, &key).is_some() && s.in_burst())
        else {
            // Not recorded, not begun through `begin` (no writer thread), on a paused clock,
            // or not in a burst of step records: here.
            let written = self.step(&report, &key);
            return Some((report, written));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        syncer.defer(
            Box::new(StepJob {
                report: Some(report),
                key,
                reply: Some(reply),
            }),
            true,
        );
        let (report, written) = answer.await.ok()?;
        let written = written.map_err(|message| JournalError::Io {
            action: "write to",
            path: self.path(),
            message,
        });
        Some((report, written))
    }

    /// Records a model turn of an agent loop: written at once, synced promptly (not waited
    /// for: a `tool_start` record, which is, makes it durable before any call that may
    /// change something runs).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn turn(&self, record: TurnRecord) -> Result<(), JournalError> {
        self.write(&Record::Turn(Box::new(record)), Durability::Prompt)
            .map(drop)
    }

    /// Records the warnings of a region that ended (held for a moment, then written and
    /// synced with the next group: a resumed run does not need them).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn warnings(&self, report: &StepReport) -> Result<(), JournalError> {
        for message in &report.warnings {
            self.hold(Record::Warning(WarningRecord {
                step: report.name.clone(),
                message: message.clone(),
                at_ms: now_ms(),
            }))?;
        }
        Ok(())
    }

    /// Records a model call that ended (held for a moment, then written and synced with the
    /// next group, or by the syncer thread: a resumed run does not need it; it is for people
    /// and reports). The record is shared, not copied: the writer thread encodes it while
    /// the run's event holds it too.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn attempt(&self, record: &Arc<AttemptRecord>) -> Result<(), JournalError> {
        // Encoded by the writer thread: cheaper on the run's thread than encoding (JSON
        // escapes, the redaction scan) a prompt and an answer here.
        self.hold(Record::Attempt(record.clone()))
    }

    /// Records that a tool call which may change something is about to run, and waits until
    /// the record (with every line before it) is synced to disk: the call runs only then, so
    /// its effect happens at most once per journalled call, even across a power loss.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written or synced.
    pub(crate) async fn tool_started(&self, record: ToolStartRecord) -> Result<(), JournalError> {
        self.append_durable(&Record::ToolStart(record)).await
    }

    /// Records a provider batch that was submitted, and waits until the record is synced: a
    /// process killed while the batch runs leaves a journal that names it, so that a resumed
    /// run polls it instead of paying for it twice.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written or synced.
    pub(crate) async fn batch(&self, record: BatchRecord) -> Result<(), JournalError> {
        self.append_durable(&Record::Batch(Box::new(record))).await
    }

    /// Writes `record` at once and waits until it (with every line before it) is synced to
    /// disk by the syncer thread (at once here without one).
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written or synced.
    async fn append_durable(&self, record: &Record) -> Result<(), JournalError> {
        let line = encode(record);
        let (seq, syncer) = {
            let mut inner = self.lock();
            let seq = inner.append_grouped(line, Durability::Prompt)?;
            (seq, inner.syncer.clone())
        };
        match (seq, syncer) {
            (Some(seq), Some(syncer)) => {
                syncer
                    .durable(seq)
                    .await
                    .map_err(|message| JournalError::Io {
                        action: "sync",
                        path: self.path(),
                        message,
                    })
            }
            _ => Ok(()),
        }
    }

    /// The batch the run being resumed sent step `step`'s request with hash `request` in, and
    /// its `custom_id` there.
    pub(crate) fn batched(
        &self,
        step: &str,
        request: &str,
    ) -> Option<(std::sync::Arc<super::read::BatchRef>, String)> {
        self.lock()
            .history
            .as_ref()?
            .batched
            .get(&(step.to_string(), request.to_string()))
            .cloned()
    }

    /// Records the end of a tool call with its result: written at once (before the result is
    /// used), synced promptly.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the journal cannot be written.
    pub(crate) fn tool(&self, record: ToolRecord) -> Result<(), JournalError> {
        self.write(&Record::Tool(Box::new(record)), Durability::Prompt)
            .map(drop)
    }

    /// Syncs done by the syncer thread so far, the last group's at the `end` record
    /// included (0 before the run begins): for benchmarks and tests of the group commit.
    pub fn syncs(&self) -> u64 {
        let inner = self.lock();
        inner
            .syncer
            .as_ref()
            .map_or(inner.syncs_at_end, |s| inner.syncs_at_end + s.syncs())
    }

    /// On a resumed run, what the earlier segments recorded of the agent loop of `step` run
    /// with cache key `key`: `None` on a new run, for a loop that never ran with that key, and
    /// for one that ended well.
    pub(crate) fn transcript(&self, step: &str, key: &str) -> Option<Transcript> {
        let inner = self.lock();
        let t = inner.history.as_ref()?.transcripts.get(step)?;
        (t.key == key && !t.turns.is_empty()).then(|| t.clone())
    }

    /// Records the end of the run, syncs every record (waiting for the syncer thread to make
    /// the last group durable and end), and releases the lock.
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
        inner.append_grouped(
            encode(&Record::End(EndRecord {
                status,
                reason,
                steps: Some(report.step_counts()),
                cost_usd: report.cost_usd,
                at_ms: now_ms(),
            })),
            Durability::Prompt,
        )?;
        // Everything written is synced by the syncer's last group, waited for here.
        let closed = match inner.syncer.take() {
            Some(s) => match Arc::try_unwrap(s) {
                Ok(s) => {
                    let (syncs, closed) = s.close();
                    inner.syncs_at_end += syncs;
                    closed
                }
                // A tool call still waits for its sync (it cannot: every step ended); sync
                // here instead, the thread ends when the last handle goes.
                Err(_) => inner.sync_now(),
            },
            None => inner.sync_now(),
        };
        // Nothing is written after the `end` record: release the run for others.
        inner.file = None;
        inner.lock = None;
        closed.map_err(|message| JournalError::Io {
            action: "sync",
            path: inner.path.clone(),
            message,
        })
    }
}

/// How soon a record written by [`Inner::append_grouped`] must reach the file and the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Not counted in its group and written with it (`attempt`, `warning`: no resume reads
    /// them). With a syncer such records are held as records ([`Syncer::hold_record`]) and
    /// never come here; without one, they are written at once and not synced.
    Held,
    /// At once, not counted in its group, and without the records queued (`start`; see
    /// [`Syncer::write_now`]).
    Now,
    /// At once, without the records queued, counted towards its group's size (`step`).
    Counted,
    /// Promptly (`turn`, `tool_start`, `tool`).
    Prompt,
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
        let line = self.encoded(encode(header))?;
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

    /// `line` ([`encode`]), or why it could not be made, as the error of a write to this
    /// journal.
    fn encoded(&self, line: Result<String, String>) -> Result<String, JournalError> {
        line.map_err(|message| JournalError::Io {
            action: "write to",
            path: self.path.clone(),
            message,
        })
    }

    fn append(&mut self, record: &Record, sync: bool) -> Result<(), JournalError> {
        let line = self.encoded(encode(record))?;
        self.write_line(line, sync)
    }

    /// Starts the syncer thread on a handle of its own of the open journal.
    fn start_syncer(&mut self) -> Result<(), JournalError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let own = file
            .try_clone()
            .and_then(|f| Syncer::start(f, self.policy))
            .map_err(io_error("write to", &self.path))?;
        self.syncer = Some(Arc::new(own));
        Ok(())
    }

    /// Spawns the syncer's relay task ([`Syncer::relay_task`]) on the runtime this is called
    /// in, which runs the step tasks that wait for their records. Not on tokio's paused clock,
    /// where no task waits for the writer thread, nor outside a runtime (tests).
    fn spawn_relay(&self) {
        if let (Some(syncer), Ok(runtime), false) = (
            &self.syncer,
            tokio::runtime::Handle::try_current(),
            self.steps_inline,
        ) {
            runtime.spawn(syncer.relay_task());
        }
    }

    /// Syncs the journal here and now (the run's end, when the syncer thread cannot be).
    fn sync_now(&self) -> Result<(), String> {
        match &self.file {
            Some(f) => f.sync_data().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Writes `line` (a record [`encode`]d, before the lock was taken) at once and leaves its
    /// sync to the syncer thread (grouped, or prompt): its sequence number there (`None`
    /// without a syncer, where it was synced here). A sync that failed earlier fails this
    /// write: a record that cannot be made durable must stop new work.
    fn append_grouped(
        &mut self,
        line: Result<String, String>,
        how: Durability,
    ) -> Result<Option<u64>, JournalError> {
        let line = self.encoded(line)?;
        let Some(syncer) = &self.syncer else {
            // Not begun through `begin` (no syncer): the old way, synced unless uncounted.
            let sync = matches!(how, Durability::Counted | Durability::Prompt);
            self.write_line(line, sync)?;
            return Ok(None);
        };
        if let Some((action, message)) = syncer.error() {
            return Err(JournalError::Io {
                action,
                path: self.path.clone(),
                message,
            });
        }
        let Some(file) = &self.file else {
            return Err(self.not_open());
        };
        let written = match how {
            Durability::Now | Durability::Counted => {
                syncer.write_now(file, &line, how == Durability::Counted)
            }
            Durability::Held | Durability::Prompt => {
                syncer.write(file, &line, how == Durability::Prompt)
            }
        };
        written
            .map(Some)
            .map_err(|e| io_error("write to", &self.path)(e))
    }

    fn not_open(&self) -> JournalError {
        JournalError::Io {
            action: "write to",
            path: self.path.clone(),
            message: "the journal was not opened (the run did not begin)".into(),
        }
    }

    fn write_line(&mut self, line: String, sync: bool) -> Result<(), JournalError> {
        let Some(file) = self.file.as_mut() else {
            return Err(self.not_open());
        };
        let mut done = file.write_all(line.as_bytes());
        if sync && done.is_ok() {
            done = file.sync_data();
        }
        // The path is copied only for an error (`io_error` copies it when called).
        done.map_err(|e| io_error("write to", &self.path)(e))
    }
}

/// The `step` record of `report` with its `key`, borrowed from both (the line is all that is
/// made): `None` for a step that is not recorded (skipped or cancelled).
fn step_line<'a>(report: &'a StepReport, key: &'a StepKey) -> Option<StepLine<'a>> {
    let (status, error) = match &report.status {
        StepStatus::Succeeded => (StepOutcome::Succeeded, None),
        StepStatus::Failed(e) => (StepOutcome::Failed, Some(e.as_str())),
        StepStatus::Interrupted => (StepOutcome::Interrupted, None),
        StepStatus::Skipped(_) | StepStatus::Cancelled => return None,
    };
    Some(StepLine {
        name: &report.name,
        agent: &report.agent,
        status,
        error,
        cache_key: &key.key,
        key: &key.parts,
        output: report.output.as_deref(),
        value: report.value.as_ref(),
        approval: report.approval.as_ref(),
        agent_loop: report.agent_loop.as_ref(),
        model: report.model.as_deref(),
        served_model: report.served_model.as_deref(),
        truncated: report.truncated,
        warnings: &report.warnings,
        attempts: report.attempts,
        usage: report.usage,
        cost_usd: report.cost_usd,
        started_ms: report.started_ms,
        finished_ms: report.finished_ms,
    })
}

/// A `step` record on its way to the writer thread ([`Journal::step_written`]): its report
/// goes back to its task once the line is written, or could not be, and even if the job is
/// dropped unwritten (the journal closed): a step's result is never lost on the way.
struct StepJob {
    report: Option<StepReport>,
    key: Arc<StepKey>,
    reply: Option<tokio::sync::oneshot::Sender<(StepReport, Result<(), String>)>>,
}

impl StepJob {
    fn reply(&mut self, written: Result<(), String>) {
        if let (Some(report), Some(reply)) = (self.report.take(), self.reply.take()) {
            // The task may be gone (cancelled by a gather): its record was written all the
            // same, as a step that ended does.
            let _ = reply.send((report, written));
        }
    }
}

impl Deferred for StepJob {
    fn encode(&self) -> Result<String, String> {
        match self.report.as_ref().and_then(|r| step_line(r, &self.key)) {
            Some(line) => encode(&line),
            None => Err("a step record without its report".into()),
        }
    }

    fn done(mut self: Box<Self>, written: Result<(), String>) {
        self.reply(written);
    }
}

impl Drop for StepJob {
    fn drop(&mut self) {
        self.reply(Err(
            "the journal closed before the record was written".into()
        ));
    }
}

/// A `start` record on its way to the writer thread ([`Journal::started`]), whose step waits
/// for it to be written.
struct StartJob {
    record: Record,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl Deferred for StartJob {
    fn encode(&self) -> Result<String, String> {
        encode(&self.record)
    }

    fn done(self: Box<Self>, written: Result<(), String>) {
        // The step's task may be gone (cancelled): nothing to tell then.
        let _ = self.reply.send(written);
    }
}

/// A record no one waits for, encoded by the writer thread ([`Journal::hold`]).
struct Later(Record);

impl Deferred for Later {
    fn encode(&self) -> Result<String, String> {
        encode(&self.0)
    }

    fn done(self: Box<Self>, _written: Result<(), String>) {}
}

/// `record` as one journal line, redacted ([`crate::redact`]); encoded by the caller before
/// it takes the journal's lock, so that writers on other threads do not wait for it.
fn encode(record: &impl serde::Serialize) -> Result<String, String> {
    thread_local! {
        /// The thread's last line, whose buffer the next one is serialized into: a record is
        /// then copied once, at its size, instead of grown (and moved) from a small one.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut buf = scratch.take();
        buf.clear();
        let encoded = serde_json::to_writer(&mut buf, record);
        let line = encoded
            .map_err(|e| format!("cannot encode a record: {e}"))
            .and_then(|()| {
                // serde_json writes UTF-8.
                let mut line = String::with_capacity(buf.len() + 1);
                line.push_str(std::str::from_utf8(&buf).map_err(|e| e.to_string())?);
                line.push('\n');
                Ok(line)
            });
        // A very large record's buffer is not kept for the thread's life.
        if buf.capacity() <= 1 << 16 {
            scratch.replace(buf);
        }
        Ok(crate::redact::redact(line?).into_string())
    })
}

impl Scheduler<'_> {
    /// A step is being spawned: on a resumed run, say why it runs again. (Its task journals
    /// its start, [`Journal::started`], before anything else.)
    pub(in crate::run) fn record_start(&mut self, id: NodeId, tx: &UnboundedSender<Event>) {
        if let Some(why) = self.rerun_why[id].take() {
            let _ = tx.send(Event::Rerun {
                step: self.plan.nodes[id].name.clone(),
                why,
            });
        }
    }

    /// A step that ran has ended: journal it (synced). If the journal cannot be written, new
    /// work stops: results that could not be recorded would be paid for again on resume.
    pub(in crate::run) fn record(&mut self, id: NodeId, report: &StepReport) {
        // A step is recorded once: its key parts are not needed after.
        let (Some(j), Some(key)) = (&self.journal, self.keys[id].take()) else {
            return;
        };
        if let Err(e) = j.step(report, &key) {
            self.stopped.get_or_insert_with(|| e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::journal::read::read_journal;
    use std::time::Duration;

    const SCRIPT: &str = r#"
provider s { kind: sim }
model m { provider: s }
agent a { model: m, max_tokens: 10 }
workflow main() {
  x = a("one")
}
"#;

    fn parts() -> StepKey {
        let parts = crate::run::cache_key::KeyParts {
            kind: "model".into(),
            provider: None,
            model: None,
            model_id: None,
            max_tokens: None,
            temperature: None,
            system: None,
            prompt: "p".into(),
            argv: None,
            env: None,
            cwd: None,
            output_type: None,
            source: "s".into(),
            uses: IndexMap::new(),
        };
        StepKey {
            key: parts.key(),
            parts,
        }
    }

    /// A begun journal in a new temporary directory whose syncer syncs only by count or when
    /// asked (its idle and age times are an hour): what it syncs does not depend on timing.
    fn begun(dir: &Path) -> (Journal, Plan) {
        let (_program, plan) = crate::plan::plan_for_test(SCRIPT);
        let journal = Journal::create(dir, "/scripts/x.orch");
        journal.lock().policy = Policy {
            idle: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            ..Policy::default()
        };
        journal.begin(&plan, &RunOptions::default()).expect("begin");
        (journal, plan)
    }

    fn step(plan: &Plan, name: &str) -> StepReport {
        let mut r = StepReport::not_run(&plan.nodes[0], StepStatus::Succeeded, Some(1));
        r.name = name.to_string();
        r
    }

    fn done() -> RunReport {
        RunReport {
            workflow: "main".into(),
            succeeded: true,
            stopped: None,
            output: None,
            usage: Default::default(),
            cost_usd: 0.0,
            wall_ms: 0,
            steps: Vec::new(),
            run_id: None,
            reused: Vec::new(),
            interrupted: false,
        }
    }

    fn tool_start(step: &str) -> ToolStartRecord {
        ToolStartRecord {
            step: step.into(),
            key: "k".into(),
            turn: 1,
            call_id: "c1".into(),
            tool: "exec".into(),
            at_ms: 0,
        }
    }

    fn names(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ty = v["type"].as_str().unwrap_or("").to_string();
                match v.get("name").or_else(|| v.get("step")) {
                    Some(n) => format!("{ty} {}", n.as_str().unwrap_or("")),
                    None => ty,
                }
            })
            .collect()
    }

    /// The borrowed `step` and `start` lines the journal writes serialize exactly as the
    /// records it reads back, with every optional field set and with none.
    #[test]
    fn borrowed_lines_are_the_records_byte_for_byte() {
        use super::super::records::StepRecord;
        let key = parts();
        let full = StepRecord {
            name: "post[2]".into(),
            agent: "a".into(),
            status: StepOutcome::Failed,
            error: Some("boom \"quoted\"".into()),
            cache_key: key.key.clone(),
            key: key.parts.clone(),
            output: Some("out\nput".into()),
            value: Some(serde_json::json!({"n": 1})),
            approval: Some(crate::run::Approval {
                approved: true,
                via: "by --yes".into(),
            }),
            agent_loop: Some(crate::run::LoopReport::default()),
            model: Some("m".into()),
            served_model: Some("m-2".into()),
            truncated: true,
            warnings: vec!["w".into()],
            attempts: 2,
            usage: Default::default(),
            cost_usd: 0.25,
            started_ms: Some(1),
            finished_ms: Some(9),
        };
        let bare = StepRecord {
            error: None,
            output: None,
            value: None,
            approval: None,
            agent_loop: None,
            model: None,
            served_model: None,
            truncated: false,
            warnings: Vec::new(),
            started_ms: None,
            finished_ms: None,
            status: StepOutcome::Succeeded,
            ..full.clone()
        };
        for r in [full, bare] {
            // The report and key the record was made of, as a step's task holds them.
            let report = StepReport {
                name: r.name.clone(),
                agent: r.agent.clone(),
                status: match (&r.status, &r.error) {
                    (StepOutcome::Failed, Some(e)) => StepStatus::Failed(e.clone()),
                    _ => StepStatus::Succeeded,
                },
                output: r.output.clone(),
                value: r.value.clone(),
                approval: r.approval.clone(),
                agent_loop: r.agent_loop.clone(),
                model: r.model.clone(),
                served_model: r.served_model.clone(),
                truncated: r.truncated,
                warnings: r.warnings.clone(),
                attempts: r.attempts,
                usage: r.usage,
                cost_usd: r.cost_usd,
                started_ms: r.started_ms,
                finished_ms: r.finished_ms,
            };
            let line = step_line(&report, &key).unwrap();
            let owned = serde_json::to_string(&Record::Step(Box::new(r.clone()))).unwrap();
            assert_eq!(serde_json::to_string(&line).unwrap(), owned);
        }
    }

    #[test]
    fn records_reach_the_file_in_order_at_once_and_the_syncs_come_in_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, plan) = begun(tmp.path());
        for i in 0..25 {
            futures::executor::block_on(journal.started(&format!("s{i}"))).unwrap();
            journal
                .step(&step(&plan, &format!("s{i}")), &parts())
                .unwrap();
            // Written at once (one write each, nothing kept in the process): another
            // reader sees the record before the next one is made.
            let last = names(&journal.path()).pop().unwrap();
            assert_eq!(last, format!("step s{i}"));
        }
        // 25 counted records and no idle sync: at most one sync per 10 of them.
        assert!(journal.syncs() <= 2, "{} syncs", journal.syncs());
        journal.end(&done()).unwrap();
        let got = names(&journal.path());
        assert_eq!(got.first().map(String::as_str), Some("run"));
        assert_eq!(got.last().map(String::as_str), Some("end"));
        let middle: Vec<String> = (0..25)
            .flat_map(|i| [format!("start s{i}"), format!("step s{i}")])
            .collect();
        assert_eq!(&got[1..got.len() - 1], middle.as_slice());
        // The journal reads back whole.
        let loaded = read_journal(&journal.path()).unwrap();
        assert_eq!(loaded.history.succeeded.len(), 25);
    }

    #[test]
    fn attempt_records_are_held_and_go_out_with_the_next_sync_not_with_their_step() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, plan) = begun(tmp.path());
        let attempt = |step: &str| {
            Arc::new(AttemptRecord {
                step: step.into(),
                attempt: 1,
                ..AttemptRecord::default()
            })
        };
        futures::executor::block_on(journal.started("s0")).unwrap();
        journal.attempt(&attempt("s0")).unwrap();
        // Held in the process (no resume reads it) ...
        assert_eq!(names(&journal.path()), vec!["run", "start s0"]);
        // ... also when the step's own record is written by its task: encoding the queue
        // is the journal threads' work, not the run thread's ...
        journal.step(&step(&plan, "s0"), &parts()).unwrap();
        assert_eq!(names(&journal.path()), vec!["run", "start s0", "step s0"]);
        journal.attempt(&attempt("s1")).unwrap();
        let path = journal.path();
        // ... and written, in the order they were made, by the thread's next sync (here:
        // the journal dropped).
        drop(journal);
        assert_eq!(
            names(&path),
            vec!["run", "start s0", "step s0", "attempt s0", "attempt s1"]
        );
    }

    #[tokio::test]
    async fn a_step_record_from_its_task_is_in_the_file_when_its_report_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, plan) = begun(tmp.path());
        let key = Arc::new(parts());
        for i in 0..3 {
            let name = format!("s{i}");
            journal.started(&name).await.unwrap();
            let mut report = step(&plan, &name);
            report.output = Some(format!("out {i}"));
            let (back, written) = journal.step_written(report, key.clone()).await.unwrap();
            written.unwrap();
            // The same report, handed back, and its record (after its `start`) already in
            // the file: a process killed now loses nothing the scheduler was told of.
            assert_eq!(back.output.as_deref(), Some(format!("out {i}").as_str()));
            let got = names(&journal.path());
            assert_eq!(
                &got[got.len() - 2..],
                [format!("start {name}"), format!("step {name}")]
            );
        }
        // A step that is not recorded comes back at once, and nothing is written for it.
        let skipped = StepReport {
            status: StepStatus::Skipped("no".into()),
            ..step(&plan, "s3")
        };
        let before = names(&journal.path()).len();
        let (back, written) = journal.step_written(skipped, key).await.unwrap();
        written.unwrap();
        assert!(matches!(back.status, StepStatus::Skipped(_)));
        assert_eq!(names(&journal.path()).len(), before);
        journal.end(&done()).unwrap();
        let loaded = read_journal(&journal.path()).unwrap();
        assert_eq!(loaded.history.succeeded.len(), 3);
    }

    #[tokio::test]
    async fn a_tool_start_record_is_synced_before_the_call_may_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, plan) = begun(tmp.path());
        for i in 0..3 {
            journal
                .step(&step(&plan, &format!("s{i}")), &parts())
                .unwrap();
        }
        // Three records, no batch, no idle sync: nothing synced yet by the thread...
        assert_eq!(journal.syncs(), 0);
        journal.tool_started(tool_start("s3")).await.unwrap();
        // ... and once `tool_started` returns, a sync covered it and every record before it.
        let syncer = journal.lock().syncer.clone().unwrap();
        assert!(syncer.syncs() >= 1);
        let shared = syncer.synced_upto();
        assert!(shared >= 4, "synced up to record {shared}");
        journal.end(&done()).unwrap();
    }

    #[test]
    fn a_journal_dropped_without_its_end_still_syncs_and_ends_its_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let (journal, plan) = begun(tmp.path());
        journal.step(&step(&plan, "s0"), &parts()).unwrap();
        let path = journal.path();
        let syncer = std::sync::Arc::downgrade(journal.lock().syncer.as_ref().unwrap());
        drop(journal);
        // The last handle is gone: the thread synced what was written and ended (`Drop`
        // joins it), and the record is there for a resume.
        assert!(syncer.upgrade().is_none());
        assert_eq!(names(&path), vec!["run", "step s0"]);
    }
}
