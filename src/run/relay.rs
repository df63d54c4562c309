//! Telling a run's tasks from threads of their own in batches.
//!
//! Waking a task of a tokio runtime from a thread outside it pushes the task onto the
//! runtime's queue and then unparks the runtime's thread: an `eventfd` write, one system call
//! per task (tokio 1.54, `runtime/scheduler/current_thread/mod.rs`, `schedule`; the
//! multi-thread scheduler does likewise for a thread that sleeps). The journal's writer
//! thread tells every task whose record it wrote, and the simulator's timer thread every task
//! whose sleep is over, so a fan-out of 20,000 steps cost each some 20,000 such calls. A
//! [`Relay`] gathers what a thread has to tell into one queue and wakes one task of the
//! runtime, [`Relay::task`], which tells them all from the runtime's own thread, where
//! waking a task is a push onto a local queue: one system call per batch.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::task::AtomicWaker;

/// Something to do on the runtime's thread (tell a task that its record was written).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The queue of jobs from other threads and the waker of the task that runs them. Cheap to
/// clone: clones share one queue.
#[derive(Clone, Default)]
pub(crate) struct Relay {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// The relay's task exists: jobs wait for it. Before [`Relay::task`] made it, and once it
    /// ended (closed, or dropped with its runtime), jobs run where they are sent.
    running: bool,
    /// No more jobs are wanted by the task: it ends once the queue is empty.
    closed: bool,
}

impl Relay {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock: a poisoned lock still holds whole jobs.
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on the runtime's thread, by the relay's task, which is woken only when the
    /// queue was empty; where no task runs (not started, ended), here and now.
    pub(crate) fn send(&self, job: Job) {
        let mut queue = self.queue();
        if !queue.running {
            drop(queue);
            job();
            return;
        }
        let first = queue.jobs.is_empty();
        queue.jobs.push(job);
        drop(queue);
        // A queue that was not empty has a wake-up on its way (or its task is running and
        // will take this job with the others).
        if first {
            self.inner.waker.wake();
        }
    }

    /// Ends the relay's task once the jobs queued have run; later jobs run where they are
    /// sent.
    pub(crate) fn close(&self) {
        self.queue().closed = true;
        self.inner.waker.wake();
    }

    /// The task that runs the jobs, to be spawned on the runtime whose tasks they tell. It
    /// ends when the relay is closed; dropped unfinished (its runtime shut down), it runs
    /// what is queued then and leaves later jobs to run where they are sent.
    pub(crate) fn task(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let relay = self.clone();
        relay.queue().running = true;
        let guard = Stopped(relay.clone());
        std::future::poll_fn(move |cx| {
            let _keep = &guard;
            // Registered before the queue is looked at: a job sent after the look wakes it.
            relay.inner.waker.register(cx.waker());
            let (jobs, closed) = {
                let mut queue = relay.queue();
                (std::mem::take(&mut queue.jobs), queue.closed)
            };
            for job in jobs {
                job();
            }
            // Jobs sent from now on are run by the guard when the task ends, or woke it.
            if closed {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }
}

/// Marks the relay's task as ended (finished or dropped) and runs what is left in its queue.
struct Stopped(Relay);

impl Drop for Stopped {
    fn drop(&mut self) {
        let jobs = {
            let mut queue = self.0.queue();
            queue.running = false;
            std::mem::take(&mut queue.jobs)
        };
        for job in jobs {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn without_a_task_jobs_run_where_they_are_sent() {
        let relay = Relay::default();
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        relay.send(Box::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn jobs_from_another_thread_run_on_the_runtime_and_the_task_ends_when_closed() {
        let relay = Relay::default();
        let task = tokio::spawn(relay.task());
        let here = std::thread::current().id();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = relay.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                let tx = tx.clone();
                sender.send(Box::new(move || {
                    let _ = tx.send((i, std::thread::current().id()));
                }));
            }
        })
        .join()
        .unwrap();
        let mut rx = rx;
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(rx.recv().await.unwrap());
        }
        // In the order sent, each on the runtime's thread.
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (j, t))| i == *j && *t == here)
        );
        relay.close();
        task.await.unwrap();
        // Ended: a later job runs where it is sent.
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        relay.send(Box::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_task_dropped_with_its_runtime_runs_what_was_queued_and_lets_later_jobs_run_at_once() {
        let relay = Relay::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Spawned but never polled: the runtime is dropped first.
        rt.spawn(relay.task());
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        relay.send(Box::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 0, "queued for the task");
        drop(rt);
        assert_eq!(n.load(Ordering::SeqCst), 1, "run when the task was dropped");
        let m = n.clone();
        relay.send(Box::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
