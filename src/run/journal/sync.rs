//! Group commit: the journal's syncer thread, which makes written records durable
//! (`fdatasync`) in groups, off the scheduler's path, and writes the records held in the
//! process for a moment.
//!
//! Every record a resume reads (`start`, `step`, `turn`, `tool_start`, `tool`, `batch`, `end`)
//! is written to the file with one `write(2)` by the caller, as it happens (no buffer in the
//! process: a record written is in the operating system's hands, so a `SIGKILL` or a panic
//! loses nothing written). The records no resume reads (`attempt`, `warning`: for people and
//! reports) are held in the process for a moment ([`Syncer::hold`]) and go out in the same
//! `write(2)` as the next record written ([`Syncer::write`]), or from this thread before its
//! next sync, at most [`IDLE`] after a run went quiet: a `SIGKILL` can lose those of the last
//! moment, never a record a resume reads. What is batched is the flush to the disk:
//! the writers count the records they wrote ([`Syncer::write`]) and this thread calls
//! `sync_data` on its own handle of the file when [`decide`] says so:
//!
//! - at once when someone waits for a record to be durable ([`Syncer::durable`]: a
//!   `tool_start` record before its call runs, the `end` record) or asked for a prompt sync
//!   (`turn`, `tool`);
//! - when [`BATCH`] records that count ([`Syncer::wrote`] with `counts`: `step` records, not
//!   `start` records) wait, so under load there is at most one sync per [`BATCH`] steps
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

/// Records that count (`step` records) written since the last sync that start a sync.
pub const BATCH: u64 = 10;
/// How long no record may come before what was written is synced.
pub const IDLE: Duration = Duration::from_millis(2);
/// How long a written record may wait for its sync under a steady trickle of records.
pub const MAX_DELAY: Duration = Duration::from_millis(50);

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

struct Shared {
    batch: u64,
    /// Records held in the process ([`Syncer::hold`]), to be written before the next record
    /// or sync. Every write to the file is made holding this lock, so records reach the file
    /// in the order they were made.
    held: Mutex<Vec<u8>>,
    pending: Mutex<Pending>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
}

/// The writers' side of a journal's syncer thread. Dropping it ends the thread after a last
/// sync of whatever was written.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the syncer thread of `file` (a handle of its own on the journal file).
    ///
    /// # Errors
    /// The operating system's error when the thread cannot be started.
    pub(super) fn start(file: File, policy: Policy) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            batch: policy.batch.max(1),
            held: Mutex::new(Vec::new()),
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
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("orch-journal-sync".into())
            .spawn(move || sync_loop(&s, &file, &policy))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The thread never panics while holding it; a poisoned lock still holds good counts.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `line` (one or more whole records) to `file` (the writers' handle of the
    /// journal) with one `write(2)`, after the records held ([`Syncer::hold`]) in the same
    /// call: its sequence number. `counts`: it counts towards [`BATCH`]; `urgent`: sync it
    /// promptly (without waiting for it).
    ///
    /// # Errors
    /// The operating system's error when the write fails (the records held are dropped
    /// with it: a journal that cannot be written stops the run).
    pub(super) fn write(
        &self,
        mut file: &File,
        line: &str,
        counts: bool,
        urgent: bool,
    ) -> std::io::Result<u64> {
        {
            let mut held = self.held();
            if held.is_empty() {
                file.write_all(line.as_bytes())?;
            } else {
                held.extend_from_slice(line.as_bytes());
                let written = file.write_all(&held);
                held.clear();
                written?;
            }
        }
        Ok(self.wrote(counts, urgent))
    }

    /// Holds `line` (a record no resume reads) in the process: it is written with the next
    /// record ([`Syncer::write`]) or by the thread before its next sync, within [`IDLE`] of
    /// the last write (or [`MAX_DELAY`] under a steady trickle). Its sequence number.
    pub(super) fn hold(&self, line: &str) -> u64 {
        self.held().extend_from_slice(line.as_bytes());
        self.wrote(false, false)
    }

    fn held(&self) -> MutexGuard<'_, Vec<u8>> {
        // A writer that panicked while holding it left whole records or none.
        self.shared.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A record was written (or held): its sequence number.
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

    /// The first sync error, if a sync failed: every later write is refused with it.
    pub(super) fn error(&self) -> Option<String> {
        self.shared.synced.borrow().error.clone()
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

    /// Syncs everything written and ends the thread, waiting for it (at run end). Returns
    /// the syncs it did in all, and whether they succeeded.
    ///
    /// # Errors
    /// The operating system's message (second of the pair) when a sync failed.
    pub(super) fn close(mut self) -> (u64, Result<(), String>) {
        self.stop();
        let closed = match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        (self.syncs(), closed)
    }

    fn stop(&mut self) {
        self.pending().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
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
                // Every record counted up to `upto` is in the file or held: write the held
                // ones, then sync.
                let result = write_held(shared, file).and_then(|()| file.sync_data());
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
                    // Nothing more can be made durable: report it and stop trying.
                    while !pending.closed {
                        pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
                    }
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

/// Writes the records held ([`Syncer::hold`]) with the thread's own handle of the file.
fn write_held(shared: &Shared, mut file: &File) -> std::io::Result<()> {
    let mut held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
    if held.is_empty() {
        return Ok(());
    }
    let written = file.write_all(&held);
    held.clear();
    written
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
