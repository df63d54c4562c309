//! Exact sleeps for the simulator's latency on a real clock.
//!
//! tokio's timer counts whole milliseconds and rounds every deadline up to the next one, and
//! its driver then parks with a timeout in milliseconds too: a 10 ms `tokio::time::sleep`
//! ends after about 11.2 ms. Simulated latency must be exact for makespans to be compared
//! with their bounds, so on a real clock the simulator's waits are kept by one thread of
//! their own ([`sleep_until`]): a heap of deadlines, slept to with the operating system's
//! nanosecond timeouts (a `Condvar` wait, a futex on Linux, without timer slack), each waking
//! its task through a one-shot channel. The error is then a thread's and a task's wake-up
//! (tens of µs on an idle machine).
//!
//! On tokio's paused clock (tests, benchmarks of the scheduler) time is virtual and
//! `tokio::time::sleep` is already exact, to the millisecond the latency is given in:
//! [`clock_is_paused`] tells which is in use.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A waiting sleep: its deadline, an order number (so equal deadlines keep their order) and
/// where to say it is over.
struct Entry {
    at: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
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
    loop {
        let now = Instant::now();
        while heap.entries.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = heap.entries.pop() {
                // The sleeper may be gone (its task was cancelled): nothing to tell then.
                let _ = e.done.send(());
            }
        }
        heap = match heap.entries.peek() {
            None => t.wake.wait(heap).unwrap_or_else(|e| e.into_inner()),
            Some(Reverse(e)) => {
                let left = e.at.saturating_duration_since(now);
                t.wake
                    .wait_timeout(heap, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// Sleeps until `at` on the real clock, to within the OS's timer slack (not rounded to a
/// millisecond like `tokio::time::sleep_until`). Falls back to tokio's timer if the timer
/// thread cannot be started.
pub async fn sleep_until(at: Instant) {
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
        heap.entries.push(Reverse(Entry { at, seq, done }));
        if earliest {
            t.wake.notify_one();
        }
    }
    let _ = rx.await;
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
                sleep_until(start + Duration::from_millis(ms)).await;
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
}
