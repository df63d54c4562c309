//! The journal's two threads: the writer, which encodes and writes the records handed to it,
//! and the syncer, which makes written records durable (`fdatasync`) in groups (group
//! commit). Both keep the disk, and the encoding of most records, off the run's thread.
//!
//! A record reaches the file in one of three ways, each of a step's own records in the order
//! they were made:
//! - **deferred** ([`Syncer::defer`]: `step` records of steps that end in a burst,
//!   [`Syncer::in_burst`], and `start` records of steps that start in one,
//!   [`Syncer::starts_in_burst`]): the step's task hands the record over; the writer thread
//!   encodes it and writes it with everything queued before it (one `write(2)` for a batch),
//!   then tells the task (a `step` record's report is handed back). The step counts as
//!   ended, or sends its request, only then, so a `SIGKILL` or a panic never loses a step
//!   the scheduler was told of, and the run's thread neither encodes the record nor waits
//!   for a write. Outside a burst a step's task writes its record itself (below), which
//!   costs less than the two wake-ups of a hand-over;
//! - **held** ([`Syncer::hold_record`]: `attempt`, `warning`, which no resume reads):
//!   queued, and written with the next deferred record or record written after the queue,
//!   or by the syncer thread before its next sync, at most [`IDLE`] after a run went quiet
//!   ([`MAX_DELAY`] under a steady stream): a `SIGKILL` can lose those of the last moment;
//! - **written** ([`Syncer::write`]: `turn`, `tool_start`, `tool`, `batch`, `end`): by their
//!   maker at once, after everything queued, in the same `write(2)`;
//!   a `start` or `step` record outside a burst ([`Syncer::write_now`]), by its step's task
//!   at once, without the records queued: those are another thread's work (the
//!   step's own `attempt` records may follow its `step` record in the file; every reader
//!   matches them by step name).
//!
//! What is batched is the flush to the disk: the writers count the records they made
//! ([`Syncer::wrote`]) and the syncer thread calls `sync_data` on its own handle of the file
//! when [`decide`] says so:
//!
//! - at once when someone waits for a record to be durable ([`Syncer::durable`]: a
//!   `tool_start` record before its call runs, the `end` record) or asked for a prompt sync
//!   (`turn`, `tool`);
//! - when [`BATCH`] records that count ([`Syncer::wrote`] with `counts`: `step` records)
//!   wait, so under load there is at most one sync per [`BATCH`] steps
//!   (more records gather while a sync runs, so a slow disk means larger groups, not a
//!   slower scheduler);
//! - when no record came for [`IDLE`] (a run that went quiet), or the oldest waiting record
//!   is [`MAX_DELAY`] old (a steady trickle).
//!
//! So a power loss or an OS crash (not a killed process) can cost the records written since
//! the last sync: at most the last [`BATCH`] `step` records, or those of the last
//! [`MAX_DELAY`] plus one sync's duration. Those steps run again on resume (they are paid for
//! again); no side effect is repeated, since a `tool_start` record is durable before its call
//! runs, and a sync makes every earlier line of the file durable with it.

use std::fs::File;
use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::run::relay::Relay;

/// Records that count (`step` records) written since the last sync that start a sync.
pub const BATCH: u64 = 10;
/// How long no record may come before what was written is synced.
pub const IDLE: Duration = Duration::from_millis(2);
/// How long a written record may wait for its sync under a steady trickle of records.
pub const MAX_DELAY: Duration = Duration::from_millis(50);

/// A step record made less than this after the record before it (a step's start or end) is
/// part of a burst ([`Syncer::in_burst`]).
pub const BURST_GAP: Duration = Duration::from_micros(50);

/// Whether a step record made at `now` (nanoseconds) follows the record made at `last` (0:
/// none yet) closely enough to be part of a burst.
fn follows_closely(last: u64, now: u64) -> bool {
    last != 0 && now.saturating_sub(last) < BURST_GAP.as_nanos() as u64
}

/// How the syncer thread batches: [`BATCH`], [`IDLE`] and [`MAX_DELAY`] by default; tests
/// stretch the times to make the count rule the only one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) batch: u64,
    pub(super) idle: Duration,
    pub(super) max_delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            batch: BATCH,
            idle: IDLE,
            max_delay: MAX_DELAY,
        }
    }
}

/// What the syncer thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Sync everything written so far.
    Sync,
    /// Wait for a write, or at most this long.
    Wait(Option<Duration>),
    /// Nothing left to sync and no more writes will come: end.
    Exit,
}

/// What the writers told the syncer thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// Records written (a sequence number: the last written record's).
    pub(super) written: u64,
    /// Of those, the ones that count towards [`BATCH`].
    pub(super) counted: u64,
    /// The highest record someone wants synced promptly.
    pub(super) urgent: u64,
    /// No more writes will come.
    pub(super) closed: bool,
    /// When the last record was written, and when the oldest not yet synced was.
    pub(super) last_write: Option<Instant>,
    pub(super) oldest_unsynced: Option<Instant>,
}

/// The group-commit rule: given what was written, what is synced (`synced` records and
/// `counted_synced` counted ones) and the time now, what the syncer thread does next.
pub(super) fn decide(
    p: &Pending,
    synced: u64,
    counted_synced: u64,
    now: Instant,
    policy: &Policy,
) -> Next {
    if p.written <= synced {
        return if p.closed {
            Next::Exit
        } else {
            Next::Wait(None)
        };
    }
    if p.closed || p.urgent > synced || p.counted - counted_synced >= policy.batch {
        return Next::Sync;
    }
    let idle_left = p
        .last_write
        .map_or(Duration::ZERO, |t| policy.idle.saturating_sub(now - t));
    let age_left = p
        .oldest_unsynced
        .map_or(Duration::ZERO, |t| policy.max_delay.saturating_sub(now - t));
    let left = idle_left.min(age_left);
    if left.is_zero() {
        Next::Sync
    } else {
        Next::Wait(Some(left))
    }
}

/// What the syncer thread has made durable, published to the writers.
#[derive(Debug, Clone, Default)]
pub(super) struct Synced {
    /// Records synced (the sequence number of the last one).
    pub(super) upto: u64,
    /// Syncs done so far.
    pub(super) syncs: u64,
    /// The first sync that failed: the operating system's message.
    pub(super) error: Option<String>,
}

/// A record whose line is made by whoever writes it out (the writer thread, most often),
/// and who is told once that line is in the file: a `step` record, whose task hands its
/// report over and gets it back ([`Syncer::defer`]).
pub(super) trait Deferred: Send {
    /// The record's line: redacted, ending in a newline.
    ///
    /// # Errors
    /// Why it cannot be encoded: it is not written, and [`Deferred::done`] gets the message.
    fn encode(&self) -> Result<String, String>;
    /// The line is in the file (`Ok`), or could not be written (the message).
    fn done(self: Box<Self>, written: Result<(), String>);
}

/// The records made and not yet written ([`Syncer::hold_record`], [`Syncer::defer`]).
#[derive(Default)]
struct Queue {
    /// In the order they were made.
    items: Vec<Box<dyn Deferred>>,
    /// A record someone waits for ([`Syncer::defer`]) is queued: the writer thread has work.
    wanted: bool,
    /// The writer thread waits for work (on [`Shared::ready`]).
    idle: bool,
    /// No more records will come: the writer thread ends.
    closed: bool,
    /// The first write that failed, the operating system's message: later records are
    /// refused with it.
    failed: Option<String>,
}

struct Shared {
    batch: u64,
    /// When this journal began, the origin of [`Shared::last_record_ns`].
    began: Instant,
    /// When the last `start` or `step` record was made, in nanoseconds since
    /// [`Shared::began`] ([`Syncer::in_burst`]).
    last_record_ns: std::sync::atomic::AtomicU64,
    /// When the last `start` record was made, likewise ([`Syncer::starts_in_burst`]).
    last_start_ns: std::sync::atomic::AtomicU64,
    queue: Mutex<Queue>,
    /// Wakes the writer thread.
    ready: Condvar,
    /// Held while the records taken from the queue are written: taken before the queue's
    /// lock is let go, so that records reach the file in the order they were queued, while
    /// new records can be queued during the encoding and the `write(2)`.
    order: Mutex<()>,
    pending: Mutex<Pending>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
    /// Tells the run's tasks that their records were written, in batches, from the run's
    /// runtime ([`Syncer::relay_task`]; here and now without it).
    relay: Relay,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned lock still holds whole records.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why records are refused, given the queue's lock: the first write or sync that
    /// failed (what failed, and the operating system's message).
    fn refused(&self, queue: &Queue) -> Option<(&'static str, String)> {
        if let Some(e) = &queue.failed {
            return Some(("write to", e.clone()));
        }
        self.synced.borrow().error.clone().map(|e| ("sync", e))
    }
}

/// The writers' side of a journal's writer and syncer threads. Dropping it ends both after
/// the records queued are written and a last sync.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the writer and syncer threads of `file` (a handle of their own on the journal
    /// file).
    ///
    /// # Errors
    /// The operating system's error when a thread cannot be started.
    pub(super) fn start(file: File, policy: Policy) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            batch: policy.batch.max(1),
            began: Instant::now(),
            last_record_ns: std::sync::atomic::AtomicU64::new(0),
            last_start_ns: std::sync::atomic::AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            order: Mutex::new(()),
            pending: Mutex::new(Pending {
                written: 0,
                counted: 0,
                urgent: 0,
                closed: false,
                last_write: None,
                oldest_unsynced: None,
            }),
            wake: Condvar::new(),
            synced: watch::channel(Synced::default()).0,
            relay: Relay::default(),
        });
        let file = Arc::new(file);
        let mut syncer = Syncer {
            shared,
            threads: Vec::with_capacity(2),
        };
        let (s, f) = (syncer.shared.clone(), file.clone());
        syncer.threads.push(
            std::thread::Builder::new()
                .name("orch-journal-write".into())
                .spawn(move || write_loop(&s, &f))?,
        );
        let s = syncer.shared.clone();
        syncer.threads.push(
            std::thread::Builder::new()
                .name("orch-journal-sync".into())
                .spawn(move || sync_loop(&s, &file, &policy))?,
        );
        Ok(syncer)
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The thread never panics while holding it; a poisoned lock still holds good counts.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `line` (one or more whole records) to `file` (the writers' handle of the
    /// journal) at once, after the records queued before it, with one `write(2)`: its
    /// sequence number. `counts`: it counts towards [`BATCH`]; `urgent`: sync it promptly
    /// (without waiting for it).
    ///
    /// # Errors
    /// The operating system's error when the write fails (the records queued are refused
    /// with it: a journal that cannot be written stops the run).
    pub(super) fn write(&self, file: &File, line: &str, urgent: bool) -> std::io::Result<u64> {
        flush(&self.shared, file, Some(line))?;
        Ok(self.wrote(false, urgent))
    }

    /// Writes `line` (one whole record) to `file` at once with one `write(2)`, without
    /// writing the records queued (they may follow it): for a `start` record, which must be
    /// in the file before its step's request goes out, and a `step` record written by its
    /// task. Encoding the queue (attempt records hold a prompt and an answer) is the writer
    /// and syncer threads' work, not the run thread's. One `write(2)` to a file opened for
    /// appending is not interleaved with another. `counts`: it counts towards [`BATCH`]. Its
    /// sequence number.
    ///
    /// # Errors
    /// The operating system's error when the write fails (later records are refused).
    pub(super) fn write_now(
        &self,
        mut file: &File,
        line: &str,
        counts: bool,
    ) -> std::io::Result<u64> {
        if let Err(e) = file.write_all(line.as_bytes()) {
            self.shared.queue().failed.get_or_insert(e.to_string());
            return Err(e);
        }
        Ok(self.wrote(counts, false))
    }

    /// Nanoseconds since this journal began.
    fn since_began(&self) -> u64 {
        u64::try_from(self.shared.began.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Holds `record` (a record no one waits for) in the process: it is written with the
    /// next record written or deferred, or by the syncer thread before its next sync, within
    /// [`IDLE`] of the last record (or [`MAX_DELAY`] under a steady trickle), and encoded by
    /// whoever writes it out (the writer thread, most often): the run's thread does not
    /// encode it. Its sequence number.
    pub(super) fn hold_record(&self, record: Box<dyn Deferred>) -> u64 {
        self.shared.queue().items.push(record);
        self.wrote(false, false)
    }

    /// Whether a step record comes in a burst: the `start` or `step` record before it came
    /// less than [`BURST_GAP`] ago. (Starts count: in a large fan-out the steps that end are
    /// interleaved with steps starting, and the run's thread is busy with both.) In a burst a
    /// step's record goes to the writer thread, where the records of many steps share one
    /// wake-up and one `write(2)`; otherwise its task writes it itself, which costs less than
    /// handing it over (two thread wake-ups, about 40 µs of CPU time a step on a 2-core VM:
    /// measured on the layered 10,000-step DAG over HTTP, 2.1 against 2.6 s of CPU).
    pub(super) fn in_burst(&self) -> bool {
        let now = self.since_began();
        let last = self
            .shared
            .last_record_ns
            .swap(now, std::sync::atomic::Ordering::Relaxed);
        follows_closely(last, now)
    }

    /// Whether a `start` record comes in a burst of starts: the `start` before it came less
    /// than [`BURST_GAP`] ago (a large fan-out, where the run's thread starts one step after
    /// another). Only starts count here: in a chain each step starts just after the one
    /// before it ended, and handing its `start` over would add the two wake-ups to every
    /// step. Also marks the time for [`Syncer::in_burst`]: a step that ends among steps
    /// starting is in a burst too.
    pub(super) fn starts_in_burst(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = self.since_began();
        self.shared.last_record_ns.store(now, Ordering::Relaxed);
        let last = self.shared.last_start_ns.swap(now, Ordering::Relaxed);
        follows_closely(last, now)
    }

    /// Queues `record` for the writer thread, which encodes it, writes it with the records
    /// queued before it, and then tells it ([`Deferred::done`]); at once, with the message,
    /// once a write has failed. `counts`: it counts towards [`BATCH`] (a `step` record, not
    /// a `start`).
    pub(super) fn defer(&self, record: Box<dyn Deferred>, counts: bool) {
        let mut queue = self.shared.queue();
        if let Some((_, e)) = self.shared.refused(&queue) {
            drop(queue);
            record.done(Err(e));
            return;
        }
        queue.items.push(record);
        // The writer thread is told once per batch: a busy one looks again before it waits.
        let wake = queue.idle && !queue.wanted;
        queue.wanted = true;
        drop(queue);
        if wake {
            self.shared.ready.notify_one();
        }
        self.wrote(counts, false);
    }

    /// A record was written (or queued): its sequence number.
    fn wrote(&self, counts: bool, urgent: bool) -> u64 {
        let now = Instant::now();
        let mut p = self.pending();
        p.written += 1;
        if counts {
            p.counted += 1;
        }
        if urgent {
            p.urgent = p.written;
        }
        p.last_write = Some(now);
        // The first record after a sync starts the clock of the next group.
        let first = p.oldest_unsynced.is_none();
        p.oldest_unsynced.get_or_insert(now);
        let seq = p.written;
        // Wake the thread only when its decision may change: a waiting thread re-decides
        // by itself when its timeout passes.
        let wake = first || urgent || (counts && p.counted.is_multiple_of(self.shared.batch));
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
        seq
    }

    /// The first failure, if a write or a sync failed: what failed (`"write to"`, `"sync"`)
    /// and the operating system's message. Every later record is refused with it.
    pub(super) fn error(&self) -> Option<(&'static str, String)> {
        self.shared.refused(&self.shared.queue())
    }

    /// Records synced so far (the sequence number of the last).
    #[cfg(test)]
    pub(super) fn synced_upto(&self) -> u64 {
        self.shared.synced.borrow().upto
    }

    /// Syncs done so far.
    pub(super) fn syncs(&self) -> u64 {
        self.shared.synced.borrow().syncs
    }

    /// Waits until record `seq` is durable (synced, promptly).
    ///
    /// # Errors
    /// The operating system's message when the sync failed (or the thread is gone).
    pub(super) async fn durable(&self, seq: u64) -> Result<(), String> {
        let mut rx = self.shared.synced.subscribe();
        {
            let mut p = self.pending();
            p.urgent = p.urgent.max(seq);
        }
        self.shared.wake.notify_one();
        let state = rx
            .wait_for(|s| s.upto >= seq || s.error.is_some())
            .await
            .map_err(|_| "the journal's sync thread ended".to_string())?;
        match &state.error {
            Some(e) if state.upto < seq => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Writes what is queued, syncs everything written and ends the threads, waiting for
    /// them (at run end). Returns the syncs done in all, and whether they succeeded.
    ///
    /// # Errors
    /// The operating system's message (second of the pair) when a write or a sync failed.
    pub(super) fn close(mut self) -> (u64, Result<(), String>) {
        self.stop();
        let closed = match self.error() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        };
        (self.syncs(), closed)
    }

    fn stop(&mut self) {
        // The writer first (it writes what it was asked to), then the syncer, whose last
        // group writes whatever is left and syncs it.
        self.shared.queue().closed = true;
        self.shared.ready.notify_one();
        self.pending().closed = true;
        self.shared.wake.notify_one();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.relay.close();
    }

    /// The task that tells the run's tasks of their written records from the run's own
    /// thread, one wake-up of that thread per batch instead of one per task ([`Relay`]):
    /// spawned on the run's runtime by [`super::Journal::begin`]; it ends with the journal.
    /// Without it they are told from the writer and syncer threads.
    pub(super) fn relay_task(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.relay.task()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Takes the records queued and writes them, then `last` (a record written by its maker),
/// with one `write(2)` on `file`, and tells each deferred record whether it was written.
///
/// # Errors
/// The operating system's error when the write fails (or failed before): the records taken
/// are not written, and every later one is refused.
fn flush(shared: &Shared, mut file: &File, last: Option<&str>) -> std::io::Result<()> {
    let mut queue = shared.queue();
    let items = std::mem::take(&mut queue.items);
    queue.wanted = false;
    if let Some((_, e)) = shared.refused(&queue) {
        drop(queue);
        tell(&shared.relay, items, &Err(e.clone()));
        return Err(std::io::Error::other(e));
    }
    let order = shared.order.lock().unwrap_or_else(|e| e.into_inner());
    drop(queue);
    let mut out = Vec::new();
    let mut told = Vec::new();
    for record in items {
        match record.encode() {
            Ok(line) => {
                out.extend_from_slice(line.as_bytes());
                told.push(record);
            }
            Err(e) => record.done(Err(e)),
        }
    }
    if let Some(line) = last {
        out.extend_from_slice(line.as_bytes());
    }
    let written = if out.is_empty() {
        Ok(())
    } else {
        file.write_all(&out)
    };
    drop(order);
    let result = match &written {
        Ok(()) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            shared.queue().failed.get_or_insert(message.clone());
            Err(message)
        }
    };
    tell(&shared.relay, told, &result);
    written
}

/// Tells each record of `items` how its write went, through `relay` (one job for the batch).
fn tell(relay: &Relay, items: Vec<Box<dyn Deferred>>, result: &Result<(), String>) {
    if items.is_empty() {
        return;
    }
    let result = result.clone();
    relay.send(Box::new(move || {
        for record in items {
            record.done(result.clone());
        }
    }));
}

/// The writer thread: writes the records queued whenever a deferred one waits, in batches
/// (records queued while it writes go out in its next `write(2)`).
fn write_loop(shared: &Shared, file: &File) {
    let mut queue = shared.queue();
    loop {
        if queue.wanted {
            drop(queue);
            // A failure is kept in the queue and told to the records it concerns.
            let _ = flush(shared, file, None);
            queue = shared.queue();
            continue;
        }
        if queue.closed {
            return;
        }
        queue.idle = true;
        queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        queue.idle = false;
    }
}

fn sync_loop(shared: &Shared, file: &File, policy: &Policy) {
    let (mut synced, mut counted_synced) = (0u64, 0u64);
    let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match decide(&pending, synced, counted_synced, Instant::now(), policy) {
            Next::Exit => return,
            Next::Wait(None) => {
                pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            Next::Wait(Some(d)) => {
                pending = shared
                    .wake
                    .wait_timeout(pending, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Next::Sync => {
                let (upto, counted) = (pending.written, pending.counted);
                pending.oldest_unsynced = None;
                drop(pending);
                // Every record counted up to `upto` is in the file or queued: write the
                // queued ones, then sync.
                let result = flush(shared, file, None).and_then(|()| file.sync_data());
                synced = upto;
                counted_synced = counted;
                let failed = result.is_err();
                shared.synced.send_modify(|s| {
                    s.syncs += 1;
                    match result {
                        Ok(()) => s.upto = upto,
                        Err(e) => {
                            s.error.get_or_insert_with(|| e.to_string());
                        }
                    }
                });
                pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                if failed {
                    // Nothing more can be made durable: report it and stop trying. Records
                    // queued from now on are refused with it, those queued are told at the
                    // end (a flush after a failed sync refuses what it takes).
                    while !pending.closed {
                        pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(pending);
                    let _ = flush(shared, file, None);
                    return;
                }
                // Records written during the sync are the next group's: their age counts
                // from now (they were written while this sync ran).
                if pending.written > synced {
                    pending.oldest_unsynced = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(written: u64, counted: u64) -> Pending {
        Pending {
            written,
            counted,
            urgent: 0,
            closed: false,
            last_write: None,
            oldest_unsynced: None,
        }
    }

    /// A deferred record with a given line (or encoding error) that reports how it went.
    struct Probe {
        line: Result<String, String>,
        told: std::sync::mpsc::Sender<Result<(), String>>,
    }

    impl Deferred for Probe {
        fn encode(&self) -> Result<String, String> {
            self.line.clone()
        }

        fn done(self: Box<Self>, written: Result<(), String>) {
            let _ = self.told.send(written);
        }
    }

    fn probe(
        line: Result<&str, &str>,
        told: &std::sync::mpsc::Sender<Result<(), String>>,
    ) -> Box<Probe> {
        Box::new(Probe {
            line: line.map(str::to_string).map_err(str::to_string),
            told: told.clone(),
        })
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn deferred_records_are_written_in_order_by_the_writer_thread_before_they_are_told() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j");
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        // The syncer thread flushes the queue by count or at the close only (its idle and
        // age times are an hour): what is written when does not depend on timing.
        let policy = Policy {
            idle: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            ..Policy::default()
        };
        let syncer = Syncer::start(file(), policy).unwrap();
        let (tx, told) = std::sync::mpsc::channel();
        // Held records are told too, on a channel of their own.
        let (held_tx, held) = std::sync::mpsc::channel();
        // A held record goes out with the next deferred record, before it.
        syncer.hold_record(probe(Ok("a\n"), &held_tx));
        syncer.defer(probe(Ok("b\n"), &tx), true);
        told.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        // One that cannot be encoded is told why and not written; the next one is.
        syncer.defer(probe(Err("cannot encode"), &tx), true);
        syncer.defer(probe(Ok("c\n"), &tx), true);
        assert_eq!(
            told.recv_timeout(WAIT).unwrap(),
            Err("cannot encode".into())
        );
        told.recv_timeout(WAIT).unwrap().unwrap();
        // A record written by its maker follows what was queued before it.
        syncer.hold_record(probe(Ok("d\n"), &held_tx));
        syncer.write(&file(), "e\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\nd\ne\n");
        for _ in 0..2 {
            held.recv_timeout(WAIT).unwrap().unwrap();
        }
        // One written at once by its task goes out alone: what is queued is the threads'
        // work, written after it (here by the last group, at the close).
        syncer.hold_record(probe(Ok("f\n"), &held_tx));
        syncer.write_now(&file(), "g\n", true).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("e\ng\n"));
        let (syncs, closed) = syncer.close();
        closed.unwrap();
        assert!(syncs >= 1);
        held.recv_timeout(WAIT).unwrap().unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("e\ng\nf\n")
        );
    }

    #[test]
    fn a_failed_write_is_told_to_its_records_and_refuses_the_later_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j");
        std::fs::write(&path, "").unwrap();
        // A handle that cannot write: every write(2) fails.
        let read_only = File::open(&path).unwrap();
        let syncer = Syncer::start(read_only, Policy::default()).unwrap();
        let (tx, told) = std::sync::mpsc::channel();
        syncer.defer(probe(Ok("a\n"), &tx), true);
        assert!(told.recv_timeout(WAIT).unwrap().is_err());
        let (action, _) = syncer.error().expect("the failure is kept");
        assert_eq!(action, "write to");
        // Refused at once from now on, and nothing reached the file.
        syncer.defer(probe(Ok("b\n"), &tx), true);
        assert!(told.recv_timeout(WAIT).unwrap().is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let (_, closed) = syncer.close();
        assert!(closed.is_err());
    }

    #[test]
    fn step_records_closer_than_the_gap_are_a_burst() {
        let gap = BURST_GAP.as_nanos() as u64;
        // The first record of a run is never part of a burst.
        assert!(!follows_closely(0, 10));
        assert!(follows_closely(1_000, 1_000 + gap - 1));
        assert!(!follows_closely(1_000, 1_000 + gap));
        // A clock read out of order (two threads) counts as close.
        assert!(follows_closely(5_000, 4_000));
    }

    #[test]
    fn the_rule_syncs_per_batch_when_urgent_idle_old_or_closing() {
        let pol = Policy::default();
        let t0 = Instant::now();
        let fresh = |written, counted| Pending {
            last_write: Some(t0),
            oldest_unsynced: Some(t0),
            ..pending(written, counted)
        };
        // Nothing written: wait for a write; closed: end.
        assert_eq!(decide(&pending(0, 0), 0, 0, t0, &pol), Next::Wait(None));
        let closed = Pending {
            closed: true,
            ..pending(5, 5)
        };
        assert_eq!(decide(&closed, 5, 5, t0, &pol), Next::Exit);
        // Closing with records left: sync them first.
        assert_eq!(decide(&closed, 3, 3, t0, &pol), Next::Sync);
        // Nine counted records just written: wait (at most the idle time).
        assert_eq!(decide(&fresh(9, 9), 0, 0, t0, &pol), Next::Wait(Some(IDLE)));
        // The tenth: sync.
        assert_eq!(decide(&fresh(10, 10), 0, 0, t0, &pol), Next::Sync);
        // Uncounted records (`start`) alone never fill a batch.
        assert_eq!(
            decide(&fresh(100, 0), 0, 0, t0, &pol),
            Next::Wait(Some(IDLE))
        );
        // Someone waits for record 3: sync at once.
        let urgent = Pending {
            urgent: 3,
            ..fresh(4, 1)
        };
        assert_eq!(decide(&urgent, 2, 0, t0, &pol), Next::Sync);
        // ... but not once it is synced.
        assert_eq!(decide(&urgent, 3, 0, t0, &pol), Next::Wait(Some(IDLE)));
        // Idle: sync.
        assert_eq!(decide(&fresh(1, 1), 0, 0, t0 + IDLE, &pol), Next::Sync);
        // A steady trickle: the last write is recent, but the oldest is too old.
        let trickle = Pending {
            last_write: Some(t0 + MAX_DELAY),
            ..fresh(5, 5)
        };
        assert_eq!(decide(&trickle, 0, 0, t0 + MAX_DELAY, &pol), Next::Sync);
        let younger = Pending {
            last_write: Some(t0 + MAX_DELAY / 2),
            ..fresh(5, 5)
        };
        assert_eq!(
            decide(&younger, 0, 0, t0 + MAX_DELAY / 2, &pol),
            Next::Wait(Some(IDLE))
        );
        // The batch counts from the last sync.
        assert_eq!(
            decide(&fresh(25, 25), 20, 20, t0, &pol),
            Next::Wait(Some(IDLE))
        );
        assert_eq!(decide(&fresh(30, 30), 20, 20, t0, &pol), Next::Sync);
    }
}
