//! Exact sleeps for the simulator's latency on a real clock.
//!
//! tokio's timer counts whole milliseconds and rounds every deadline up to the next one, and
//! its driver then parks with a timeout in milliseconds too: a 10 ms `tokio::time::sleep`
//! ends after about 11.2 ms. Simulated latency must be exact for makespans to be compared
//! with their bounds, so on a real clock the simulator's waits are kept by one thread of
//! their own ([`sleep_until`]): a heap of deadlines, slept to with the operating system's
//! nanosecond timeouts (a `Condvar` wait, a futex on Linux, without timer slack), each waking
//! its task through a one-shot channel (sent from the runtime's own thread by the
//! simulator's [`Relay`], so that the sleeps that end together cost the runtime one
//! wake-up). That takes two wake-ups, the timer thread's and the task's runtime thread
//! (about 130 µs together on an idle 2-core VM, 1.3% of a 10 ms call), so
//! while few sleeps wait the thread ends each one early by the wake-ups' cost as measured on
//! the sleeps before (a running mean, at most [`LEAD_MAX`]), and the task, woken, spins what
//! is left to its deadline: sleeps end on time, never early. With many sleeps waiting (a
//! large fan-out) they end at their deadline as before, without spinning. `orch run` has one
//! runtime thread, so a spin (at most [`LEAD_MAX`]) holds up its other tasks for that long:
//! the price of exact simulated latency, paid only by simulated runs with few calls waiting.
//!
//! On tokio's paused clock (tests, benchmarks of the scheduler) time is virtual and
//! `tokio::time::sleep` is already exact, to the millisecond the latency is given in:
//! [`clock_is_paused`] tells which is in use.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::run::relay::Relay;

/// A waiting sleep: its deadline, an order number (so equal deadlines keep their order) and
/// where to say it is over.
struct Entry {
    at: Instant,
    seq: u64,
    /// Told how early the sleep was ended (its lead).
    done: oneshot::Sender<Duration>,
    /// Tells it from its runtime's thread, in a batch with the others that end together
    /// ([`Relay`]); without one, from the timer thread.
    relay: Option<Relay>,
}

/// The most a sleep is ended early to make up for the wake-ups (and so the most its task
/// spins).
const LEAD_MAX: Duration = Duration::from_micros(200);

/// Up to how many waiting sleeps are ended early (beyond, the spinning would cost more CPU
/// time than exactness is worth: many calls overlap and none waits for one alone).
const LEAD_WAITERS: usize = 4;

/// The running mean of how late a task resumes after the time its sleep was ended at (the
/// timer thread's and the task's wake-ups), in nanoseconds.
static WAKE_NS: AtomicU64 = AtomicU64::new(0);

/// How early the timer thread ends sleeps while `waiting` of them wait.
fn lead(waiting: usize) -> Duration {
    if waiting > LEAD_WAITERS {
        return Duration::ZERO;
    }
    Duration::from_nanos(WAKE_NS.load(Ordering::Relaxed)).min(LEAD_MAX)
}

/// Adds how late a task resumed to the running mean (weight 1/8).
fn record_wake(late: Duration) {
    let late = late.min(Duration::from_millis(10)).as_nanos() as i64;
    let _ = WAKE_NS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
        Some((mean as i64 + (late - mean as i64) / 8) as u64)
    });
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

struct Timers {
    heap: Mutex<Heap>,
    wake: Condvar,
}

/// The process's timer thread, started on first use. `None` when it cannot be started.
fn timers() -> Option<&'static Timers> {
    static TIMERS: OnceLock<Option<&'static Timers>> = OnceLock::new();
    *TIMERS.get_or_init(|| {
        let t: &'static Timers = Box::leak(Box::new(Timers {
            heap: Mutex::new(Heap::default()),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("orch-sim-timer".into())
            .spawn(move || run(t))
            .ok()
            .map(|_| t)
    })
}

fn run(t: &Timers) {
    // The kernel may end a thread's timed wait up to its timer slack late (50 µs by default,
    // to group wake-ups): this thread asks for none (Linux's `PR_SET_TIMERSLACK`; best
    // effort, the default stays where it is refused).
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    // The sleeps that are over, with how early each was ended.
    let mut due: Vec<(Entry, Duration)> = Vec::new();
    loop {
        let now = Instant::now();
        let mut early = lead(heap.entries.len());
        while heap
            .entries
            .peek()
            .is_some_and(|Reverse(e)| e.at <= now + early)
        {
            if let Some(Reverse(e)) = heap.entries.pop() {
                due.push((e, early));
            }
            early = lead(heap.entries.len());
        }
        if !due.is_empty() {
            // Told without the lock: each is a wake-up of a runtime's thread (a system call),
            // and new sleeps wait for the lock meanwhile.
            drop(heap);
            for (e, early) in due.drain(..) {
                // The sleeper may be gone (its task was cancelled): nothing to tell then.
                let Entry { done, relay, .. } = e;
                match relay {
                    Some(relay) => relay.send(Box::new(move || {
                        let _ = done.send(early);
                    })),
                    None => {
                        let _ = done.send(early);
                    }
                }
            }
            heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        heap = match heap.entries.peek() {
            None => t.wake.wait(heap).unwrap_or_else(|e| e.into_inner()),
            Some(Reverse(e)) => {
                let left = e.at.saturating_duration_since(now + early);
                t.wake
                    .wait_timeout(heap, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// Sleeps until `at` on the real clock, never before it and, while few sleeps wait, within a
/// few µs after it (not rounded to a millisecond like `tokio::time::sleep_until`). With a
/// `relay` (whose task runs on this runtime) the sleep's end is told through it, one
/// wake-up of the runtime's thread for the sleeps that end together. Falls back to tokio's
/// timer if the timer thread cannot be started.
pub(crate) async fn sleep_until(at: Instant, relay: Option<&Relay>) {
    let Some(t) = timers() else {
        tokio::time::sleep_until(at.into()).await;
        return;
    };
    let (done, rx) = oneshot::channel();
    {
        let mut heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
        let seq = heap.next_seq;
        heap.next_seq += 1;
        let earliest = heap.entries.peek().is_none_or(|Reverse(e)| at < e.at);
        heap.entries.push(Reverse(Entry {
            at,
            seq,
            done,
            relay: relay.cloned(),
        }));
        if earliest {
            t.wake.notify_one();
        }
    }
    let Ok(early) = rx.await else {
        return;
    };
    let now = Instant::now();
    // Ended at `at - early`: how late after that this task runs is the wake-ups' cost.
    record_wake(now.saturating_duration_since(at.checked_sub(early).unwrap_or(at)));
    // Woken early: spin the rest (at most `LEAD_MAX`), never ending before `at`.
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

/// Whether tokio's clock is paused in the current runtime (virtual time): its `now` does not
/// move while real time passes. Costs a busy wait of about a microsecond.
pub fn clock_is_paused() -> bool {
    let before = tokio::time::Instant::now();
    let real = Instant::now();
    while real.elapsed() < Duration::from_micros(1) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_is_told_apart() {
        assert!(clock_is_paused());
    }

    #[tokio::test]
    async fn a_real_clock_is_told_apart_and_sleeps_end_in_deadline_order() {
        assert!(!clock_is_paused());
        let start = Instant::now();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, ms) in [(0, 6u64), (1, 2), (2, 4)] {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                sleep_until(start + Duration::from_millis(ms), None).await;
                // Never early.
                assert!(start.elapsed() >= Duration::from_millis(ms));
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 0]);
    }

    /// A chain of sleeps, one waiting at a time, is ended early by the wake-ups' measured cost,
    /// and still none ends before its deadline (the task spins the rest).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_ended_early_for_the_wake_ups_still_never_end_early() {
        for _ in 0..30 {
            let at = Instant::now() + Duration::from_millis(2);
            sleep_until(at, None).await;
            assert!(Instant::now() >= at);
        }
        assert!(lead(1) <= LEAD_MAX);
        assert_eq!(lead(LEAD_WAITERS + 1), Duration::ZERO);
    }
}
