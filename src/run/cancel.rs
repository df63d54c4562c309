//! Stopping a run from outside: the handle behind Ctrl-C.
//!
//! The CLI turns the first Ctrl-C into [`Cancel::cancel`]; tests call it directly. The
//! scheduler then starts nothing new, drops the futures of the steps in flight (which closes
//! their HTTP requests and, through tokio's `kill_on_drop`, kills the programs of command
//! agents), records them as interrupted in the report and the journal, and returns.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::scheduler::{Outcome, report_finished};
use super::{Event, StepReport, StepStatus};
use crate::plan::NodeId;

/// A cheap-to-clone cancellation handle shared by whoever may stop a run and the run itself.
/// Cancelling is one-way and idempotent: once cancelled, a handle stays cancelled.
#[derive(Clone, Debug)]
pub struct Cancel {
    flag: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    /// A handle that is not cancelled yet.
    pub fn new() -> Self {
        Cancel {
            flag: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Asks the run to stop. Calling it again does nothing more.
    pub fn cancel(&self) {
        self.flag.send_replace(true);
    }

    /// Whether [`Cancel::cancel`] was called on this handle or a clone of it.
    pub fn is_cancelled(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once the handle is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

/// Waits on an optional handle: never resolves without one.
pub(crate) async fn cancelled(cancel: Option<&Cancel>) {
    match cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

impl super::scheduler::Scheduler<'_> {
    /// Cancellation hook: the run was interrupted. Keeps the results that are already in,
    /// drops every step still in flight (closing its request, killing its program) and
    /// records it as interrupted; nothing new starts after this.
    pub(super) fn interrupt(
        &mut self,
        tasks: &mut JoinSet<Outcome>,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) {
        self.interrupted = true;
        while let Some(joined) = tasks.try_join_next() {
            if let Ok(outcome) = joined {
                self.finish(outcome, on_event);
            }
        }
        // A region's task stops by itself: its schedulers see the same cancellation and
        // report their steps.
        let mut in_flight: Vec<NodeId> = self
            .abort
            .keys()
            .copied()
            .filter(|&id| !self.is_region(id))
            .collect();
        in_flight.sort_unstable();
        let names: Vec<String> = in_flight
            .iter()
            .map(|&id| format!("`{}`", self.plan.nodes[id].name))
            .collect();
        self.stopped.get_or_insert_with(|| {
            if names.is_empty() {
                "interrupted".to_string()
            } else {
                format!("interrupted; stopped in flight: {}", names.join(", "))
            }
        });
        for id in in_flight {
            if let Some(h) = self.abort.remove(&id) {
                h.abort();
            }
            self.holds.remove(&id);
            let report = StepReport::not_run(
                &self.plan.nodes[id],
                StepStatus::Interrupted,
                Some(self.elapsed_ms()),
            );
            self.record(id, &report);
            self.settle(id, report_finished(Box::new(report), on_event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn cancelled_resolves_for_every_clone_once_cancelled() {
        let c = Cancel::new();
        let other = c.clone();
        assert!(!other.is_cancelled());
        let waiter = tokio::spawn(async move {
            other.cancelled().await;
            tokio::time::Instant::now()
        });
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.cancel();
        c.cancel();
        let woke = waiter.await.expect("waiter");
        assert_eq!(woke - start, Duration::from_secs(3));
        assert!(c.is_cancelled());
        // Already cancelled: resolves at once.
        tokio::time::timeout(Duration::from_millis(1), c.cancelled())
            .await
            .expect("resolves at once");
    }

    #[tokio::test(start_paused = true)]
    async fn no_handle_never_resolves() {
        let r = tokio::time::timeout(Duration::from_secs(3600), cancelled(None)).await;
        assert!(r.is_err());
    }
}
